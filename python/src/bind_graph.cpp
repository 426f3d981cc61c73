// lc.GraphIR: the Graph IR (include/lightning_core/graph.h) for Python.
//   g = lc.GraphIR()
//   g.add_tensor(shape, dtype, name, constant=False, *, value=None) -> name
//   g.set_constant(name, value)
//   g.add_node(op, inputs, outputs, attributes=None, name=None) -> name
//   g.set_outputs(names)
//   g.validate() / g.validate_report() -> [{"pass", "node", "message", "error"}]
//   g.plan(device=None, *, fusion=True, strict=False, use_graph=True, precision=None,
//          assume_gpu=False, resident=None, results_on_device=False) -> dict
//     device "cuda:N" (or a policy's device index) picks the GPU; resident={input: "cuda:0"}
//     and results_on_device are the residency the placement assumes (execute() plans again,
//     cached, for the residency of the inputs it is given).
//   g.plan_summary() -> dict;  g.fusion_report() -> [dict];  g.explain() -> str
//   g.execute(inputs: {name: array | lc.Tensor}, *, execution_mode="graph", scalars=None)
//     -> {name: result}; scalars={name: number} feeds one-element inputs (lc.compile's lifted floats)
// Results are numpy arrays when every input is numpy (written in place by the plan's last
// steps on the CPU), lc.Tensor objects otherwise (on the device when the plan ran there).
#include <memory>

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "convert.h"
#include "lightning_core/errors.h"
#include "lightning_core/graph.h"
#include "lightning_core/runtime.h"

namespace lcpy {

namespace {

constexpr const char* kOp = "GraphIR";

std::vector<std::int64_t> shape_param(nb::handle h, const char* what) {
  std::vector<std::int64_t> s;
  if (!nb::isinstance<nb::sequence>(h) || nb::isinstance<nb::str>(h))
    lc::throw_type(kOp, std::string(what) + ": shape must be a sequence of ints, got " +
                            py_type_name(h.ptr()));
  for (nb::handle d : nb::iter(h)) s.push_back(int_param(d, kOp, "shape", 0, INT64_MAX));
  return s;
}

std::vector<std::string> names_param(nb::handle h, const char* what) {
  std::vector<std::string> r;
  if (h.is_none()) return r;
  if (nb::isinstance<nb::str>(h)) return {nb::cast<std::string>(h)};
  if (!nb::isinstance<nb::sequence>(h))
    lc::throw_type(kOp, std::string(what) + " must be a list of tensor names, got " + py_type_name(h.ptr()));
  for (nb::handle x : nb::iter(h)) {
    if (x.is_none()) {
      r.emplace_back();  // an absent optional input
      continue;
    }
    if (!nb::isinstance<nb::str>(x))
      lc::throw_type(kOp, std::string(what) + " must hold tensor names (str) or None, got " +
                              py_type_name(x.ptr()));
    r.push_back(nb::cast<std::string>(x));
  }
  return r;
}

lc::GraphAttr attr_value(nb::handle v, const std::string& node, const std::string& key) {
  if (v.is_none()) return {};
  if (PyBool_Check(v.ptr())) return lc::GraphAttr::of(v.ptr() == Py_True);
  if (PyFloat_Check(v.ptr())) return lc::GraphAttr::of(PyFloat_AsDouble(v.ptr()));
  if (nb::isinstance<nb::str>(v)) return lc::GraphAttr::of(nb::cast<std::string>(v));
  if (PyTuple_Check(v.ptr()) || PyList_Check(v.ptr())) {  // a view node's shape / dims
    std::vector<std::int64_t> ints;
    for (nb::handle e : v) {
      PyObject* i = PyBool_Check(e.ptr()) ? nullptr : PyNumber_Index(e.ptr());
      if (!i) {
        PyErr_Clear();
        lc::throw_type("graph", "node '" + node + "': attribute '" + key +
                                    "' must be a tuple of int, got an element of type " +
                                    py_type_name(e.ptr()));
      }
      const long long x = PyLong_AsLongLong(i);
      Py_DECREF(i);
      if (x == -1 && PyErr_Occurred()) throw nb::python_error();
      ints.push_back(static_cast<std::int64_t>(x));
    }
    return lc::GraphAttr::of(std::move(ints));
  }
  if (PyObject* i = PyNumber_Index(v.ptr())) {  // int, numpy integers
    const long long x = PyLong_AsLongLong(i);
    Py_DECREF(i);
    if (x == -1 && PyErr_Occurred()) throw nb::python_error();
    return lc::GraphAttr::of(static_cast<std::int64_t>(x));
  }
  PyErr_Clear();
  lc::throw_type("graph", "node '" + node + "': attribute '" + key +
                              "' must be a bool, int, float, str, None or a tuple of int, got " + py_type_name(v.ptr()));
}

lc::GraphAttrs attrs_param(nb::handle h, const std::string& node) {
  lc::GraphAttrs a;
  if (h.is_none()) return a;
  if (!nb::isinstance<nb::dict>(h))
    lc::throw_type("graph", "node '" + node + "': attributes must be a dict, got " + py_type_name(h.ptr()));
  for (auto [k, v] : nb::borrow<nb::dict>(h)) {
    if (!nb::isinstance<nb::str>(k))
      lc::throw_type("graph", "node '" + node + "': attribute names must be str");
    const std::string key = nb::cast<std::string>(k);
    a.emplace_back(key, attr_value(v, node, key));
  }
  return a;
}

nb::dict fusion_dict(const lc::GraphFusion& f) {
  nb::dict d;
  d["rule"] = f.rule;
  d["nodes"] = f.nodes;
  d["applied"] = f.applied;
  d["reason"] = f.reason;
  return d;
}

nb::list fusion_list(const std::vector<lc::GraphFusion>& fs) {
  nb::list l;
  for (const auto& f : fs) l.append(fusion_dict(f));
  return l;
}

nb::dict summary_dict(const lc::GraphPlanSummary& s) {
  nb::dict d;
  d["device"] = lc::to_string(s.device);
  d["crosses_devices"] = s.crosses_devices;
  d["placement_reason"] = s.placement_reason;
  d["captured"] = s.captured;
  d["capture_reason"] = s.capture_reason;
  d["peak_bytes"] = s.peak_bytes;
  d["naive_bytes"] = s.naive_bytes;
  d["constant_bytes"] = s.constant_bytes;
  d["buffers"] = s.buffers;
  d["view_aliases"] = s.view_aliases;
  d["view_copies"] = s.view_copies;
  d["est_cpu_us"] = s.est_cpu_us;
  d["est_gpu_us"] = s.est_gpu_us;
  d["est_plan_us"] = s.est_plan_us;
  d["device_index"] = s.device_index;
  d["device_name"] = s.device_index >= 0 && s.device != lc::DeviceKind::cpu
                         ? std::string(lc::to_string(s.device)) + ":" + std::to_string(s.device_index)
                         : std::string(lc::to_string(s.device));
  d["residency"] = s.residency;
  nb::list steps;
  for (const lc::GraphStep& st : s.steps) {
    nb::dict e;
    e["name"] = st.name;
    e["op"] = st.op;
    e["device"] = lc::to_string(st.device);
    e["device_name"] = st.device != lc::DeviceKind::cpu && s.device_index >= 0
                           ? std::string(lc::to_string(st.device)) + ":" + std::to_string(s.device_index)
                           : std::string(lc::to_string(st.device));
    e["fused"] = st.fused;
    e["attributes"] = st.attrs;
    e["cpu_us"] = st.cpu_us;
    e["gpu_us"] = st.gpu_us;
    steps.append(e);
  }
  d["steps"] = steps;
  d["fusions"] = fusion_list(s.fusions);
  d["text"] = s.to_string();
  return d;
}

lc::GraphFusionOptions fusion_param(nb::handle h) {
  lc::GraphFusionOptions o;
  if (h.is_none() || PyBool_Check(h.ptr())) {
    o.set_all(h.is_none() || h.ptr() == Py_True);
    return o;
  }
  if (!nb::isinstance<nb::dict>(h))
    lc::throw_type(kOp, "plan: fusion must be True, False or a dict {rule: bool}, got " +
                            py_type_name(h.ptr()));
  for (auto [k, v] : nb::borrow<nb::dict>(h)) {
    const std::string key = nb::isinstance<nb::str>(k) ? nb::cast<std::string>(k) : "";
    const bool on = bool_param(v, kOp, "fusion");
    if (key == "linear_epilogue") o.linear_epilogue = on;
    else if (key == "residual_epilogue") o.residual_epilogue = on;
    else if (key == "conv_activation") o.conv_activation = on;
    else if (key == "layernorm_affine") o.layernorm_affine = on;
    else if (key == "scale_chain") o.scale_chain = on;
    else if (key == "qkv_projection") o.qkv_projection = on;
    else if (key == "residual_layernorm") o.residual_layernorm = on;
    else if (key == "softmax_scale") o.softmax_scale = on;
    else if (key == "attention_out_proj") o.attention_out_proj = on;
    else if (key == "elementwise_chain") o.elementwise_chain = on;
    else
      lc::throw_value(kOp, "plan: unknown fusion rule '" + key +
                               "'; the rules are linear_epilogue, residual_epilogue, "
                               "conv_activation, layernorm_affine, scale_chain, qkv_projection, "
                               "residual_layernorm, softmax_scale, attention_out_proj, elementwise_chain");
  }
  return o;
}

// plan(resident={name: "cuda:N" | "cuda" | "cpu" | N}): the residency the placement assumes.
std::vector<std::pair<std::string, int>> resident_param(nb::handle h) {
  std::vector<std::pair<std::string, int>> r;
  if (h.is_none()) return r;
  if (!nb::isinstance<nb::dict>(h))
    lc::throw_type(kOp, "plan: resident must be a dict {input name: 'cuda:N' or 'cpu'}, got " +
                            py_type_name(h.ptr()));
  for (auto [k, v] : nb::borrow<nb::dict>(h)) {
    if (!nb::isinstance<nb::str>(k)) lc::throw_type(kOp, "plan: resident's keys must be input names (str)");
    const std::string name = nb::cast<std::string>(k);
    int index = -1;
    if (nb::isinstance<nb::str>(v)) {
      const std::string dev = nb::cast<std::string>(v);
      const lc::DeviceRequest d = lc::parse_device_index(dev, kOp, &index);
      if (d == lc::DeviceRequest::cpu) index = -1;
      else if (d != lc::DeviceRequest::cuda)
        lc::throw_value(kOp, "plan: resident['" + name + "'] must be 'cpu', 'cuda' or 'cuda:N', got '" + dev + "'");
      else if (index < 0)  // "cuda": this thread's current GPU
        index = lc::cuda_available() ? lc::current_device(lc::DeviceKind::cuda) : 0;
    } else {
      index = static_cast<int>(int_param(v, kOp, "resident", -1, lc::kMaxDeviceIndex));
    }
    r.emplace_back(name, index);
  }
  return r;
}

nb::object execute(lc::GraphIR& g, nb::handle inputs, const std::string& mode, nb::handle scalars) {
  if (mode != "graph" && mode != "eager")
    lc::throw_value(kOp, "execute: execution_mode must be 'graph' or 'eager', got '" + mode + "'");
  if (!nb::isinstance<nb::dict>(inputs))
    lc::throw_type(kOp, "execute: inputs must be a dict {name: array or lc.Tensor}, got " +
                            py_type_name(inputs.ptr()));
  if (!g.planned()) g.plan();
  std::vector<std::unique_ptr<Arg>> args;
  std::vector<std::pair<std::string, lc::Tensor>> in;
  bool any_lc = false, all_on_device = true;
  for (auto [k, v] : nb::borrow<nb::dict>(inputs)) {
    if (!nb::isinstance<nb::str>(k)) lc::throw_type(kOp, "execute: input names must be str");
    const std::string name = nb::cast<std::string>(k);
    args.push_back(std::make_unique<Arg>());
    to_arg(v, "graph", name.c_str(), *args.back());
    any_lc = any_lc || args.back()->from_lc;
    all_on_device = all_on_device && args.back()->t.device() != lc::DeviceKind::cpu;
    in.emplace_back(name, args.back()->t);
  }
  // scalars={name: number}: one-element host inputs in the input's declared dtype (lc.compile's
  // lifted float arguments). They do not count for where the results go: a host number says
  // nothing about where the caller wants them.
  if (!scalars.is_none()) {
    if (!nb::isinstance<nb::dict>(scalars))
      lc::throw_type(kOp, "execute: scalars must be a dict {input name: number}, got " +
                              py_type_name(scalars.ptr()));
    for (auto [k, v] : nb::borrow<nb::dict>(scalars)) {
      if (!nb::isinstance<nb::str>(k)) lc::throw_type(kOp, "execute: scalar names must be str");
      const std::string name = nb::cast<std::string>(k);
      const double value = float_param(v, kOp, "scalars");
      lc::Tensor t = lc::Tensor::empty({1}, g.tensor_dtype(name), lc::DeviceKind::cpu);
      lc::convert_elements(lc::DType::f64, &value, t.dtype(), t.data(), 1);
      in.emplace_back(name, t);
    }
  }
  const std::vector<std::string> names = g.output_names();
  std::vector<lc::Tensor> outs;
  nb::list arrays;
  if (!any_lc) {  // numpy in: numpy results, written in place
    for (const std::string& n : names) {
      lc::Tensor view;
      arrays.append(new_numpy(g.tensor_shape(n), view, "graph", g.tensor_dtype(n)));
      outs.push_back(view);
    }
  }
  // Results stay on the device when every input lives there, or when the policy says not to
  // download (the ops' rule, OpRunner::result); numpy inputs give numpy results.
  const bool keep = any_lc && (all_on_device || !resolve_policy(nb::none(), nb::none(), kOp).download);
  {
    nb::gil_scoped_release nogil;
    g.execute_into(in, outs, mode == "graph", /*results_on_device=*/keep);
  }
  nb::dict r;
  for (std::size_t i = 0; i < names.size(); ++i)
    r[names[i].c_str()] = any_lc ? wrap_tensor(std::move(outs[i])) : nb::object(arrays[i]);
  return r;
}

}  // namespace

void register_graph(nb::module_& m) {
  nb::class_<lc::GraphIR>(m, "GraphIR", "A graph of registered ops over named tensors (docs/graph.md).")
      .def(nb::init<>())
      .def(
          "add_tensor",
          [](lc::GraphIR& g, nb::handle shape, nb::handle dtype, const std::string& name,
             bool constant, nb::handle value, bool copy) {
            const lc::DType dt = dtype_param(dtype, kOp);
            g.add_tensor(name, shape_param(shape, "add_tensor"), dt, constant);
            if (!value.is_none()) {
              if (!constant)
                lc::throw_value("graph", "add_tensor: tensor '" + name + "' has a value but constant=False");
              Arg a;
              to_arg(value, "graph", name.c_str(), a);
              // copy=False shares an lc.Tensor's memory (never a numpy array's: the binding's
              // wrap of it does not keep the array alive past this call).
              g.set_constant(name, a.t, copy || !nb::isinstance<lc::Tensor>(value));
            }
            return name;
          },
          nb::arg("shape"), nb::arg("dtype"), nb::arg("name"),
          nb::arg("constant") = false, nb::kw_only(), nb::arg("value") = nb::none(),
          nb::arg("copy") = true,
          "Declare a tensor: a graph input, or a constant (value here or set_constant; copied, "
          "or shared with copy=False for an lc.Tensor the caller keeps unchanged; uploaded once "
          "per device). Returns the name.")
      .def(
          "set_constant",
          [](lc::GraphIR& g, const std::string& name, nb::handle value) {
            Arg a;
            to_arg(value, "graph", name.c_str(), a);
            g.set_constant(name, a.t);
          },
          nb::arg("name"), nb::arg("value"), "Give constant tensor `name` its value (copied).")
      .def(
          "add_node",
          [](lc::GraphIR& g, const std::string& op, nb::handle inputs, nb::handle outputs,
             nb::handle attributes, nb::handle name) {
            const std::string n = name.is_none() ? op + "_" + std::to_string(g.num_nodes())
                                                 : str_param(name, kOp, "name");
            g.add_node(op, names_param(inputs, "inputs"), names_param(outputs, "outputs"),
                       attrs_param(attributes, n), n);
            return n;
          },
          nb::arg("op"), nb::arg("inputs"), nb::arg("outputs"),
          nb::arg("attributes") = nb::none(), nb::arg("name") = nb::none(),
          "Add a node running registered op `op` (lc.ops()); inputs in op_info(op)['inputs'] "
          "order (None: an absent optional input); attributes by the registry's names. Unknown "
          "op / attribute, wrong type: ValueError / TypeError naming the node. Returns its name.")
      .def("set_outputs", [](lc::GraphIR& g, nb::handle names) {
        g.set_outputs(names_param(names, "outputs"));
      }, nb::arg("names"), "The graph's outputs, in this order (default: produced tensors no node reads).")
      .def("validate", &lc::GraphIR::validate,
           "Raise ValueError (TypeError: only dtype errors) listing every error, each naming its node.")
      .def("validate_report", [](const lc::GraphIR& g) {
        nb::list l;
        for (const lc::GraphIssue& i : g.validate_report()) {
          nb::dict d;
          d["pass"] = i.pass;
          d["node"] = i.where;
          d["message"] = i.message;
          d["error"] = i.error;
          l.append(d);
        }
        return l;
      }, "Every finding of the validation passes: [{'pass', 'node', 'message', 'error'}].")
      .def(
          "plan",
          [](lc::GraphIR& g, nb::handle device, nb::handle fusion, bool strict, bool use_graph,
             nb::handle precision, bool assume_gpu, nb::handle resident, bool results_on_device) {
            lc::GraphPlanOptions o;
            const lc::ExecutionPolicy base = resolve_policy(device, nb::none(), kOp);
            o.device = base.device;
            o.device_index = base.device == lc::DeviceRequest::cpu ? -1 : base.device_index;  // cuda:N
            o.resident_inputs = resident_param(resident);
            o.results_on_device = results_on_device;
            o.precision = precision.is_none()
                              ? base.precision
                              : lc::parse_precision(str_param(precision, kOp, "precision"), kOp);
            o.fusion = fusion_param(fusion);
            o.strict = strict;
            o.use_graph = use_graph;
            o.assume_gpu = assume_gpu;
            return summary_dict(g.plan(o));
          },
          nb::arg("device") = nb::none(), nb::kw_only(), nb::arg("fusion") = true,
          nb::arg("strict") = false, nb::arg("use_graph") = true,
          nb::arg("precision") = nb::none(), nb::arg("assume_gpu") = false,
          nb::arg("resident") = nb::none(), nb::arg("results_on_device") = false,
          "Validate, fuse, place the whole graph (cost model), pack buffers by liveness; returns "
          "the summary dict (steps, devices, fusions, peak_bytes, captured, residency, text). "
          "device='cuda:N' picks the GPU; resident={input: 'cuda:N'} and results_on_device "
          "are the residency the placement assumes (execute() plans again, cached, for the "
          "residency of the inputs it gets).")
      .def("plan_summary", [](const lc::GraphIR& g) { return summary_dict(g.plan_summary()); },
           "The last plan's summary (ValueError when not planned).")
      .def("fusion_report", [](const lc::GraphIR& g) { return fusion_list(g.fusion_report()); },
           "Every fusion candidate: [{'rule', 'nodes', 'applied', 'reason'}].")
      .def("explain", [](lc::GraphIR& g) {
        if (!g.planned()) g.plan();
        return g.plan_summary().to_string();
      }, "The plan as text: steps, devices, fusions (and why not), memory.")
      .def("execute", &execute, nb::arg("inputs"), nb::kw_only(),
           nb::arg("execution_mode") = "graph", nb::arg("scalars") = nb::none(),
           "Run the plan on {input name: array or lc.Tensor}; returns {output name: result} "
           "(numpy for numpy inputs). execution_mode='eager' runs the steps one by one. "
           "scalars={input name: number} feeds one-element inputs from Python numbers (in the "
           "input's dtype; they do not decide where the results go).")
      .def_prop_ro("inputs", &lc::GraphIR::input_names)
      .def_prop_ro("outputs", &lc::GraphIR::output_names)
      .def("tensor_shape", [](const lc::GraphIR& g, const std::string& n) {
        nb::list l;
        for (auto d : g.tensor_shape(n)) l.append(d);
        return nb::tuple(l);
      }, nb::arg("name"))
      .def("tensor_dtype", [](const lc::GraphIR& g, const std::string& n) {
        return std::string(lc::to_string(g.tensor_dtype(n)));
      }, nb::arg("name"))
      .def("stats", [](const lc::GraphIR& g) {
        const lc::GraphIR::Stats s = g.stats();
        nb::dict d;
        d["executions"] = s.executions;
        d["replays"] = s.replays;
        d["records"] = s.records;
        d["eager_runs"] = s.eager_runs;
        d["residency_plans"] = s.residency_plans;
        d["outputs_handed_out"] = s.outputs_handed_out;
        return d;
      })
      .def("__len__", &lc::GraphIR::num_nodes);
}

}  // namespace lcpy
