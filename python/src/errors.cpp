// Maps the C++ exception types (include/lightning_core/errors.h) to Python exceptions:
//   lc::TypeError -> TypeError, lc::ValueError / lc::Unavailable -> ValueError,
//   lc::OutOfMemory -> MemoryError, lc::BackendError -> lightning_core.BackendError(RuntimeError),
//   lc::OutDTypeError (wrong `out` dtype) -> lightning_core.OutDTypeError(TypeError, ValueError),
//   nanobind's cast_error (an argument of the wrong type) -> TypeError.
#include "bindings.h"
#include "op_binding.h"
#include "lightning_core/errors.h"
#include "ops/checks.h"

namespace lcpy {

namespace {
PyObject* g_backend_error = nullptr;
PyObject* g_out_dtype_error = nullptr;
}  // namespace

void register_errors(nb::module_& m) {
  g_backend_error = PyErr_NewExceptionWithDoc(
      "lightning_core.BackendError",
      "A backend (CUDA, cuBLAS, cuDNN) failed. The message names the op, its shapes and the "
      "backend's error. The runtime stays usable.",
      PyExc_RuntimeError, nullptr);
  PyObject* bases = PyTuple_Pack(2, PyExc_TypeError, PyExc_ValueError);
  g_out_dtype_error = PyErr_NewExceptionWithDoc(
      "lightning_core.OutDTypeError",
      "An `out` buffer has the wrong dtype (a TypeError and a ValueError).", bases, nullptr);
  Py_DECREF(bases);
  m.attr("BackendError") = nb::borrow(g_backend_error);
  m.attr("OutDTypeError") = nb::borrow(g_out_dtype_error);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const lc::OutDTypeError& e) {
      PyErr_SetString(g_out_dtype_error, e.what());
    } catch (const lc::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const lc::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const lc::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const lc::BackendError& e) {
      PyErr_SetString(g_backend_error, e.what());
    } catch (const lc::Error& e) {
      PyErr_SetString(g_backend_error, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "[lightning_core] host memory allocation failed");
    } catch (const nb::cast_error&) {
      // A conversion the bindings left to nanobind failed: an argument of the wrong type
      // (every op argument is converted with a message naming it; this is the backstop).
      PyErr_SetString(PyExc_TypeError,
                      "[lightning_core] an argument has the wrong type (nanobind could not "
                      "convert it); see the function's signature");
    }
  });
}

namespace {

// The functions whose every parameter is an nb::handle (their converters raise "[op] ..."
// themselves): for them nanobind can only fail on arity or keywords, so an overload that takes
// anything is reached only then (nanobind tries it after the real one) and reports it with the
// op's name and signature.
// The op functions def_op registered (op_binding.h: both forms of every op of bind_ops.cpp,
// conv_attention_nchw and attention), and these sessions, bound elsewhere:
const char* kOtherFunctions[] = {
    "matmul2d_resident_session", "attention2d_resident_session",
    "conv_attention_resident_session", "attention_resident_session"};

}  // namespace

void register_argument_errors(nb::module_& m) {
  std::vector<std::string> names = op_function_names();
  names.insert(names.end(), std::begin(kOtherFunctions), std::end(kOtherFunctions));
  for (const std::string& name : names) {
    // The real overload's signature, for the message (taken before the overload is added).
    std::string sig = nb::cast<std::string>(nb::str(m.attr(name.c_str()).attr("__doc__")));
    sig = sig.substr(0, sig.find('\n'));
    m.def(name.c_str(), [name, sig](nb::args args, nb::kwargs kwargs) -> nb::object {
      std::string got = std::to_string(args.size()) + " positional argument(s)";
      if (kwargs.size() > 0) {
        got += " and keyword(s)";
        for (auto [k, v] : kwargs) got += " '" + nb::cast<std::string>(nb::str(k)) + "'";
      }
      lc::throw_type(name.c_str(), "invalid arguments: got " + got + "; expected " + sig +
                               " (check the keyword names and the number of arguments)");
    });
  }
}

}  // namespace lcpy
