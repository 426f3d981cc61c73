// lc.ExecutionPolicy and the process-default / scoped policy.
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "lightning_core/errors.h"
#include "lightning_core/policy.h"

namespace lcpy {

namespace {

bool parse_download(nb::handle v, const char* op) {
  if (PyBool_Check(v.ptr())) return v.ptr() == Py_True;
  if (PyUnicode_Check(v.ptr())) {
    const std::string s = nb::cast<std::string>(v);
    if (s == "yes" || s == "true" || s == "always") return true;
    if (s == "no" || s == "false" || s == "never") return false;
  }
  lc::throw_value(op, "download must be True/False (or \"yes\"/\"no\")");
}

void init_policy(lc::ExecutionPolicy* self, const std::string& device, const std::string& upload,
                 nb::handle download, const std::string& sync, const std::string& precision,
                 bool fusion, bool autotune) {
  static constexpr const char* op = "ExecutionPolicy";
  lc::ExecutionPolicy p;
  p.device = lc::parse_device(device, op);
  p.upload = lc::parse_upload(upload, op);
  p.download = parse_download(download, op);
  p.sync = lc::parse_sync(sync, op);
  p.precision = lc::parse_precision(precision, op);
  p.fusion = fusion;
  p.autotune = autotune;
  p.validate(op);
  new (self) lc::ExecutionPolicy(p);
}

}  // namespace

void register_policy(nb::module_& m) {
  nb::class_<lc::ExecutionPolicy>(m, "ExecutionPolicy",
      "Where an op runs and what it may cost: device (auto/cpu/cuda), upload (always/once/never), "
      "download (True/False), sync (per_call/batch/none), precision (fp32/tf32/bf16), fusion, "
      "autotune. Invalid combinations raise ValueError.")
      .def("__init__", &init_policy, nb::arg("device") = "auto", nb::arg("upload") = "always",
           nb::arg("download") = true, nb::arg("sync") = "per_call", nb::arg("precision") = "fp32",
           nb::arg("fusion") = true, nb::arg("autotune") = true)
      .def_prop_ro("device", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.device)); })
      .def_prop_ro("upload", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.upload)); })
      .def_prop_ro("download", [](const lc::ExecutionPolicy& p) { return p.download; })
      .def_prop_ro("sync", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.sync)); })
      .def_prop_ro("precision", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.precision)); })
      .def_prop_ro("fusion", [](const lc::ExecutionPolicy& p) { return p.fusion; })
      .def_prop_ro("autotune", [](const lc::ExecutionPolicy& p) { return p.autotune; })
      .def("__eq__", [](const lc::ExecutionPolicy& a, const lc::ExecutionPolicy& b) { return a == b; })
      .def("__repr__", [](const lc::ExecutionPolicy& p) { return "ExecutionPolicy(" + p.to_string() + ")"; });
  m.def("get_default_policy", &lc::default_policy);
  m.def("set_default_policy", &lc::set_default_policy, nb::arg("policy"));
  m.def("current_policy", [] { return lc::current_policy(); },
        "The policy ops use when given none: the innermost `with lc.policy(...)`, else the default.");
  m.def("_push_policy", &lc::push_policy);
  m.def("_pop_policy", &lc::pop_policy);
}

}  // namespace lcpy
