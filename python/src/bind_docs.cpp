// lc._set_doc(fn, text): replaces the docstring of a bound function or method.
//
// The numpydoc docstrings of the native functions (Parameters / Returns / Raises) live in the
// Python layer, python/lightning_core/_docs.py, one table next to the code that reads it; the
// package applies them at import (before anything reads __doc__, nanobind's stubgen included).
// nanobind's function objects expose __doc__ read-only, so this writes the docstring field of
// the function's first overload (the one help() and the stub show) through nanobind's internal
// header: the module builds nanobind from source (NB_STATIC), so the layout used here is the
// one compiled into the module. nanobind frees a docstring flagged has_doc with free(), hence
// strdup. Once per function at import; nothing on the call path.
#include <cstdlib>
#include <cstring>
#include <string>

#include <nanobind/stl/string.h>

#include "bindings.h"
#include "convert.h"
#include "nb_internals.h"  // nanobind/src (include path set for this file only)

namespace lcpy {

namespace {

bool is_nb_function(PyObject* o) {
  const std::string name = py_type_name(o);
  return name == "nanobind.nb_func" || name == "nanobind.nb_method";
}

void set_doc(nb::handle fn, const std::string& doc) {
  if (!fn.is_valid() || !is_nb_function(fn.ptr()))
    throw nb::type_error("_set_doc: expects a nanobind function or method");
  namespace nbd = nb::detail;
  nbd::func_data* f = nbd::nb_func_data(fn.ptr());
  const auto count = static_cast<std::uint32_t>(Py_SIZE(fn.ptr()));
  constexpr auto kHasDoc = static_cast<std::uint32_t>(nbd::func_flags::has_doc);
  char* copy = strdup(doc.c_str());
  if (!copy) throw std::bad_alloc();
  for (std::uint32_t i = 0; i < count; ++i) {
    if (f[i].flags & kHasDoc) std::free(const_cast<char*>(f[i].doc));
    f[i].doc = nullptr;
    f[i].flags &= ~kHasDoc;
  }
  f[0].doc = copy;
  f[0].flags |= kHasDoc;
  // One text for the whole overload chain: __doc__ renders the signatures, then the text once.
  reinterpret_cast<nbd::nb_func*>(fn.ptr())->doc_uniform = true;
}

}  // namespace

void register_docs(nb::module_& m) {
  m.def("_set_doc", &set_doc, nb::arg("fn"), nb::arg("doc"),
        "Replaces the docstring of a native function or method (python/lightning_core/_docs.py).");
}

}  // namespace lcpy
