// lc.ExecutionPolicy and the process-default / scoped policy.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "backends/backend.h"
#include "bindings.h"
#include "convert.h"
#include "runtime/op_runner.h"
#include "runtime/placement.h"
#include "ops/registry.h"
#include "ops/work.h"
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

void init_policy(lc::ExecutionPolicy* self, nb::handle device, nb::handle upload,
                 nb::handle download, nb::handle sync, nb::handle precision, nb::handle fusion,
                 nb::handle autotune) {
  static constexpr const char* op = "ExecutionPolicy";
  lc::ExecutionPolicy p;
  int index = -1;
  p.device = lc::parse_device_index(str_param(device, op, "device"), op, &index);
  p.device_index = static_cast<std::int8_t>(index);
  p.upload = lc::parse_upload(str_param(upload, op, "upload"), op);
  p.download = parse_download(download, op);
  p.sync = lc::parse_sync(str_param(sync, op, "sync"), op);
  p.precision = lc::parse_precision(str_param(precision, op, "precision"), op);
  p.fusion = bool_param(fusion, op, "fusion");
  p.autotune = bool_param(autotune, op, "autotune");
  p.validate(op);
  new (self) lc::ExecutionPolicy(p);
}

const char* family_name(int i) { return lc::to_string(static_cast<lc::OpFamily>(i)); }

// The fields come from placement.h's tables (kCostFamilyFields, kCostScalarFields).
nb::dict model_to_dict(const lc::CostModel& m) {
  nb::dict d;
  for (const lc::CostFamilyField& f : lc::kCostFamilyFields) {
    nb::dict per;
    for (int i = 0; i < lc::CostModel::kFamilies; ++i) per[family_name(i)] = (m.*f.field)[i];
    d[f.name] = per;
  }
  for (const lc::CostScalarField& f : lc::kCostScalarFields) d[f.name] = m.*f.field;
  d["conv_cpu_crossover_macs"] = m.conv_cpu_crossover_macs;
  d["conv_crossover_explicit"] = m.conv_crossover_explicit;
  d["calibrated"] = m.calibrated;
  d["gpu_calibrated"] = m.gpu_calibrated;
  return d;
}

// Starts from the model in force and overrides the given fields (a fake model for tests).
// Giving conv_cpu_crossover_macs makes the crossover explicit (it then decides conv2d even with
// a fitted model) unless conv_crossover_explicit is given too.
lc::CostModel model_from_dict(const nb::dict& d) {
  static constexpr const char* op = "set_cost_model";
  auto num = [](nb::handle v, const std::string& k) { return float_param(v, op, k.c_str()); };
  auto flag = [](nb::handle v, const std::string& k) { return bool_param(v, op, k.c_str()); };
  lc::CostModel m = lc::cost_model();
  bool explicit_given = false;
  for (auto [k_, v] : d) {
    const std::string k = str_param(k_, op, "field name");
    const lc::CostFamilyField* fam_field = nullptr;
    for (const lc::CostFamilyField& f : lc::kCostFamilyFields)
      if (k == f.name) fam_field = &f;
    const lc::CostScalarField* scalar = nullptr;
    for (const lc::CostScalarField& f : lc::kCostScalarFields)
      if (k == f.name) scalar = &f;
    if (fam_field) {
      const bool rates = fam_field->positive;
      double* dst = m.*fam_field->field;
      if (!PyDict_Check(v.ptr()))
        lc::throw_type(op, k + " must be a dict {op family: number}");
      for (auto [fk_, fv] : nb::borrow<nb::dict>(v)) {
        const std::string fk = str_param(fk_, op, "op family");
        int idx = -1;
        for (int i = 0; i < lc::CostModel::kFamilies; ++i)
          if (fk == family_name(i)) idx = i;
        if (idx < 0) lc::throw_value(op, "unknown op family '" + fk + "'");
        dst[idx] = num(fv, k + "[" + fk + "]");
        if (rates && !(dst[idx] > 0)) lc::throw_value(op, k + "[" + fk + "] must be > 0");
        if (!rates && !(dst[idx] >= 0)) lc::throw_value(op, k + "[" + fk + "] must be >= 0");
      }
    } else if (scalar) {
      m.*scalar->field = num(v, k);
    } else if (k == "conv_cpu_crossover_macs") {
      m.conv_cpu_crossover_macs = num(v, k);
      if (!explicit_given) m.conv_crossover_explicit = true;
    } else if (k == "conv_crossover_explicit") {
      m.conv_crossover_explicit = flag(v, k);
      explicit_given = true;
    } else if (k == "calibrated") {
      m.calibrated = flag(v, k);
    } else if (k == "gpu_calibrated") {
      m.gpu_calibrated = flag(v, k);
    } else {
      lc::throw_value(op, "unknown cost-model field '" + k + "'");
    }
  }
  bool valid = true;
  for (const lc::CostScalarField& f : lc::kCostScalarFields)
    valid = valid && (f.positive ? m.*f.field > 0 : m.*f.field >= 0);
  if (!valid)
    lc::throw_value(op, "bandwidths must be > 0 (small-copy ones >= 0, 0 = same as large) and "
                        "overheads / latencies / small_copy_bytes >= 0");
  return m;
}

// lc._placement(op, shapes, policy, inputs_on_gpu, gpu_available, stride/pad) -> dict.
nb::dict placement_query(const std::string& op, const std::vector<std::vector<std::int64_t>>& shapes,
                         const lc::ExecutionPolicy& p, bool inputs_on_gpu, nb::handle gpu_available,
                         int sh, int sw, int ph, int pw) {
  // The op's OpDef: its estimate (estimate_work) and what the CUDA backend supports at these
  // shapes (float32 storage).
  const lc::OpDef& def = lc::get_op(op, "explain_placement");
  lc::OpArgs args = lc::OpArgs::of_shapes(shapes);
  args.stride_h = sh;
  args.stride_w = sw;
  args.pad_h = ph;
  args.pad_w = pw;
  lc::WorkEstimate w = def.estimate(args);
  const bool gpu_can_run = def.supports(lc::DeviceKind::cuda, args);
  if (inputs_on_gpu) {
    w.inputs_on_gpu = true;
    w.host_bytes_in = 0;
  }
  const lc::CostModel m = lc::cost_model();
  lc::Placement pl;
  if (gpu_available.is_none()) {
    pl = lc::choose_device(op.c_str(), w, p, gpu_can_run, true);
  } else {
    const bool present = bool_param(gpu_available, "placement", "gpu_available");
    pl = lc::choose_device_with(op.c_str(), w, p, present, gpu_can_run, true, m,
                                present ? std::string() : "assumed absent (gpu_available=False)");
  }
  const lc::CostModel m2 = lc::cost_model();  // choose_device may have calibrated
  nb::dict d;
  d["op"] = op;
  d["device"] = lc::to_string(pl.device);
  d["fallback"] = pl.fallback;
  d["reason"] = pl.reason;
  d["cpu_us"] = m2.cpu_us(w);
  d["gpu_us"] = m2.gpu_us(w);
  d["transfer_us"] = m2.transfer_us(w);
  d["flops"] = w.flops;
  d["family"] = lc::to_string(w.family);
  return d;
}

// lc._chain_device(ops, shapes, policy, inputs_on_gpu, gpu_available, host_data, device)
//   -> "cpu" / "cuda" (or the request itself when a block's shapes cannot be read).
// Where a chain of blocks runs (python/lightning_core/api.py _chain_device): the chain rule of
// runtime/placement.h (choose_chain_device), with each block's estimate and CUDA support from
// its op's OpDef. `device` (None: the policy's) is the request. One native call with no reason
// strings: pipelines ask it on every call, so it must cost well under a microsecond. A block
// whose shapes the registry cannot read gives the request back ("auto": each op then decides
// and raises with its own message).
std::string chain_device(const std::vector<std::string>& ops,
                         const std::vector<std::vector<std::vector<std::int64_t>>>& shapes,
                         const lc::ExecutionPolicy& base, bool inputs_on_gpu,
                         nb::handle gpu_available, bool host_data, nb::handle device) {
  if (ops.size() != shapes.size()) lc::throw_value("_chain_device", "one shape list per op");
  lc::ExecutionPolicy p = base;
  constexpr const char* who = "_chain_device";
  if (!device.is_none()) p.device = lc::parse_device(str_param(device, who, "device"), who);
  if (ops.empty()) return lc::to_string(p.device);
  constexpr std::size_t kMaxBlocks = 8;
  if (ops.size() > kMaxBlocks) lc::throw_value("_chain_device", "at most 8 blocks");
  lc::ChainBlock blocks[kMaxBlocks];
  for (std::size_t i = 0; i < ops.size(); ++i) {
    try {
      const lc::OpDef& def = lc::get_op(ops[i], "explain_placement");
      const lc::OpArgs args = lc::OpArgs::of_shapes(shapes[i]);
      blocks[i] = {def.name, def.estimate(args), def.supports(lc::DeviceKind::cuda, args)};
    } catch (const std::exception&) {
      return lc::to_string(p.device);
    }
  }
  bool present = false;
  const bool assumed = !gpu_available.is_none();
  if (assumed) present = bool_param(gpu_available, "placement", "gpu_available");
  const lc::Placement pl = lc::choose_chain_device({blocks, ops.size()}, p, inputs_on_gpu,
                                                   host_data, assumed ? &present : nullptr);
  return lc::to_string(pl.device);
}

// lc._chain_policies(policy, device) -> (inner, last): the step policies of a chain on `device`
// ("cpu" / "cuda" / "auto"), chain_policies() of runtime/placement.h. api.py caches the pair per
// (device, policy fields).
nb::tuple chain_step_policies(const lc::ExecutionPolicy& base, const std::string& device) {
  const lc::ChainPolicies c = lc::chain_policies(base, lc::parse_device(device, "_chain_policies"));
  return nb::make_tuple(c.inner, c.last);
}

}  // namespace

void register_policy(nb::module_& m) {
  nb::class_<lc::ExecutionPolicy>(m, "ExecutionPolicy",
      "Where an op runs and what it may cost: device (auto/cpu/cuda/cuda:N), upload (always/once/never), "
      "download (True/False), sync (per_call/batch/none), precision (fp32/tf32/bf16), fusion, "
      "autotune. Invalid combinations raise ValueError.")
      .def("__init__", &init_policy, nb::arg("device").none() = "auto",
           nb::arg("upload").none() = "always", nb::arg("download").none() = true,
           nb::arg("sync").none() = "per_call", nb::arg("precision").none() = "fp32",
           nb::arg("fusion").none() = true, nb::arg("autotune").none() = true)
      .def_prop_ro("device", [](const lc::ExecutionPolicy& p) { return p.device_string(); })
      .def_prop_ro("upload", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.upload)); })
      .def_prop_ro("download", [](const lc::ExecutionPolicy& p) { return p.download; })
      .def_prop_ro("sync", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.sync)); })
      .def_prop_ro("precision", [](const lc::ExecutionPolicy& p) { return std::string(lc::to_string(p.precision)); })
      .def_prop_ro("fusion", [](const lc::ExecutionPolicy& p) { return p.fusion; })
      .def_prop_ro("autotune", [](const lc::ExecutionPolicy& p) { return p.autotune; })
      .def("__eq__", [](const lc::ExecutionPolicy& a, nb::handle b) -> nb::object {
        lc::ExecutionPolicy* other = nullptr;
        if (!nb::try_cast<lc::ExecutionPolicy*>(b, other) || !other)
          return nb::borrow(Py_NotImplemented);  // == None / other types: False, no error
        return nb::bool_(a == *other);
      }, nb::arg("other").none())
      .def("__hash__", [](const lc::ExecutionPolicy& p) { return std::hash<std::string>{}(p.to_string()); })
      .def("__repr__", [](const lc::ExecutionPolicy& p) {
        // Valid Python: eval(repr(p)) == p with the package imported as lc (its usual name).
        auto q = [](const char* s) { return std::string("'") + s + "'"; };
        auto b = [](bool v) { return std::string(v ? "True" : "False"); };
        return "lc.ExecutionPolicy(device=" + q(p.device_string().c_str()) + ", upload=" +
               q(lc::to_string(p.upload)) + ", download=" + b(p.download) + ", sync=" +
               q(lc::to_string(p.sync)) + ", precision=" + q(lc::to_string(p.precision)) +
               ", fusion=" + b(p.fusion) + ", autotune=" + b(p.autotune) + ")";
      });
  m.def("get_default_policy", &lc::default_policy);
  m.def("set_default_policy", &lc::set_default_policy, nb::arg("policy"));
  m.def("current_policy", [] {
    lc::ExecutionPolicy p;
    if (!context_policy(p)) p = lc::current_policy();
    return p;
  }, "The policy ops use when given none: the innermost `with lc.policy(...)` of this context "
     "(asyncio task / thread), else the default.");
  m.def("_policy_scopes_used", &mark_policy_scopes_used,
        "Tells the ops that a policy scope exists somewhere (policy.py calls it once).");
  m.def("_set_policy_context_var", &set_policy_context_var, nb::arg("var"),
        "Installs the contextvars.ContextVar holding the `with lc.policy` scope (policy.py does "
        "this at import); ops given no policy read it.");
  m.def("_explain_enabled", &lc::explain_enabled);

  m.def("_placement", &placement_query, nb::arg("op"), nb::arg("shapes"), nb::arg("policy"),
        nb::arg("inputs_on_gpu") = false, nb::arg("gpu_available") = nb::none(),
        nb::arg("stride_h") = 1, nb::arg("stride_w") = 1, nb::arg("pad_h") = 0,
        nb::arg("pad_w") = 0);
  m.def("_chain_device", &chain_device, nb::arg("ops"), nb::arg("shapes"), nb::arg("policy"),
        nb::arg("inputs_on_gpu") = false, nb::arg("gpu_available") = nb::none(),
        nb::arg("host_data") = false, nb::arg("device") = nb::none());
  m.def("_chain_policies", &chain_step_policies, nb::arg("policy"), nb::arg("device"));
  m.def("cost_model", [] { return model_to_dict(lc::cost_model()); },
        "The CPU/GPU cost model placement uses now (defaults, calibration, then env knobs).");
  m.def("set_cost_model", [](const nb::dict& d) { lc::set_cost_model(model_from_dict(d)); },
        nb::arg("fields"),
        "Fixes the cost model (fields not given keep their current values); calibration will "
        "not replace it until reset_cost_model(). Meant for tests and experiments.");
  m.def("reset_cost_model", &lc::reset_cost_model,
        "Back to defaults + calibration + environment knobs.");
  m.def("cost_model_fixed", &lc::cost_model_fixed);
  m.def("calibrate", [](bool force) {
    lc::CostModel r;
    {
      nb::gil_scoped_release nogil;
      r = lc::calibrate(force);
    }
    return model_to_dict(r);
  }, nb::arg("force") = false,
  "Measures (or with force=False loads from the auto-tune cache) the machine's CPU/GPU rates, "
  "launch latency and bandwidth and installs them in the cost model.");
  m.def("calibration_enabled", &lc::calibration_enabled);
}

}  // namespace lcpy
