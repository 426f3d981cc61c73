// GraphIR: building (add_tensor / add_node) and validation (resolve: the passes of
// validate_report). Attribute names, types and defaults, input lists and shape/dtype inference
// all come from the op registry (src/ops/registry.h): there is no second op list here.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "graph/graph_internal.h"
#include "lightning_core/errors.h"
#include "ops/checks.h"

namespace lc {

std::string GraphAttr::repr() const {
  switch (kind) {
    case Kind::none: return "None";
    case Kind::boolean: return b ? "True" : "False";
    case Kind::integer: return std::to_string(i);
    case Kind::real: {
      std::ostringstream o;
      o << r;
      return o.str();
    }
    case Kind::string: return "'" + s + "'";
    case Kind::ints: {
      std::string r = "(";
      for (std::size_t k = 0; k < v.size(); ++k) r += (k ? ", " : "") + std::to_string(v[k]);
      return r + (v.size() == 1 ? ",)" : ")");
    }
  }
  return "?";
}

namespace graph {

std::string node_label(const std::string& name, const char* op) {
  return "node '" + name + "' (" + (op ? op : "?") + ")";
}

namespace {

constexpr const char* kWho = "graph";

[[noreturn]] void node_error(const std::string& name, const char* op, const std::string& msg,
                             bool type_error = false) {
  const std::string m = node_label(name, op) + ": " + msg;
  if (type_error) throw_type(kWho, m);
  throw_value(kWho, m);
}

const OpAttr* find_attr(const OpDef& d, const std::string& name) {
  for (int i = 0; i < d.num_attrs(); ++i)
    if (name == d.attrs[static_cast<std::size_t>(i)].name) return &d.attrs[static_cast<std::size_t>(i)];
  return nullptr;
}

std::string attr_names(const OpDef& d) {
  std::string s;
  for (int i = 0; i < d.num_attrs(); ++i)
    s += std::string(s.empty() ? "" : ", ") + d.attrs[static_cast<std::size_t>(i)].name;
  return s.empty() ? "none" : s;
}

// Ops a graph cannot hold: conv_attention_nchw is itself a composition (src/pipelines/).
bool executable(const OpDef& d) { return &d != &opdefs::conv_attention_nchw; }

// Outputs the op produces for these attributes (attention with return_lse has two).
int expected_outputs(const OpDef& d, const StepAttrs& a) {
  if (&d == &opdefs::attention) return a.return_lse ? 2 : 1;
  int n = 0;
  for (const char* o : d.outputs)
    if (o) ++n;
  return n;
}

}  // namespace

StepAttrs decode_attrs(const OpDef& d, const GraphAttrs& attrs) {
  StepAttrs s;
  auto get = [&](const char* name) -> const GraphAttr* {
    for (const auto& [k, v] : attrs)
      if (k == name) return &v;
    return nullptr;
  };
  if (const GraphAttr* a = get("activation")) s.act = parse_activation(a->s, d.name);
  else if (&d == &opdefs::conv_attention_nchw) s.act = Activation::relu;
  if (const GraphAttr* a = get("causal")) s.causal = a->b;
  if (const GraphAttr* a = get("scale"); a && a->kind != GraphAttr::Kind::none)
    s.scale = static_cast<float>(a->kind == GraphAttr::Kind::integer ? static_cast<double>(a->i) : a->r);
  if (const GraphAttr* a = get("eps"))
    s.eps = static_cast<float>(a->kind == GraphAttr::Kind::integer ? static_cast<double>(a->i) : a->r);
  if (const GraphAttr* a = get("alpha"))
    s.alpha = static_cast<float>(a->kind == GraphAttr::Kind::integer ? static_cast<double>(a->i) : a->r);
  if (const GraphAttr* a = get("stride_h")) s.stride_h = static_cast<int>(a->i);
  if (const GraphAttr* a = get("stride_w")) s.stride_w = static_cast<int>(a->i);
  if (const GraphAttr* a = get("pad_h")) s.pad_h = static_cast<int>(a->i);
  if (const GraphAttr* a = get("pad_w")) s.pad_w = static_cast<int>(a->i);
  if (const GraphAttr* a = get("approximate")) s.approximate = a->s;
  if (const GraphAttr* a = get("return_lse")) s.return_lse = a->b;
  if (const GraphAttr* a = get("batch_first")) s.batch_first = a->b;
  if (const GraphAttr* a = get("program")) s.prog = parse_ew_program(a->s, d.name);  // checked by add_node
  // The view nodes' (views.cpp).
  if (const GraphAttr* a = get("shape")) s.ints = a->v;
  if (const GraphAttr* a = get("dims")) s.ints = a->v;
  if (const GraphAttr* a = get("dim0")) s.dim0 = a->i;
  if (const GraphAttr* a = get("dim1")) s.dim1 = a->i;
  if (const GraphAttr* a = get("dim")) s.dim = a->i;
  if (const GraphAttr* a = get("start"); a && a->kind == GraphAttr::Kind::integer) s.start = a->i;
  if (const GraphAttr* a = get("stop"); a && a->kind == GraphAttr::Kind::integer) s.stop = a->i;
  if (const GraphAttr* a = get("step")) s.step = a->i;
  if (const GraphAttr* a = get("index")) s.index = a->i;
  return s;
}

std::string StepAttrs::describe(const OpDef& d) const {
  std::ostringstream o;
  for (int i = 0; i < d.num_attrs(); ++i) {
    const std::string n = d.attrs[static_cast<std::size_t>(i)].name;
    if (!o.str().empty()) o << ' ';
    o << n << '=';
    if (n == "activation") o << '\'' << to_string(act) << '\'';
    else if (n == "causal") o << (causal ? "True" : "False");
    else if (n == "scale") { if (scale > 0) o << scale; else o << "None"; }
    else if (n == "eps") o << eps;
    else if (n == "alpha") o << alpha;
    else if (n == "stride_h") o << stride_h;
    else if (n == "stride_w") o << stride_w;
    else if (n == "pad_h") o << pad_h;
    else if (n == "pad_w") o << pad_w;
    else if (n == "approximate") o << '\'' << approximate << '\'';
    else if (n == "return_lse") o << (return_lse ? "True" : "False");
    else if (n == "batch_first") o << (batch_first ? "True" : "False");
    else if (n == "program") o << '\'' << ew_program_text(prog) << '\'';
    else if (n == "shape" || n == "dims") o << GraphAttr::of(ints).repr();
    else if (n == "dim0") o << dim0;
    else if (n == "dim1") o << dim1;
    else if (n == "dim") o << dim;
    else if (n == "start") { if (start == kNone) o << "None"; else o << start; }
    else if (n == "stop") { if (stop == kNoStop) o << "None"; else o << stop; }
    else if (n == "step") o << step;
    else if (n == "index") o << index;
    else o << '?';
  }
  return o.str();
}

OpArgs step_args(const Resolved& g, const Step& s) {
  OpArgs a;
  bool first = true;
  for (int id : s.in) {
    if (a.n == OpArgs::kMaxInputs) break;
    ShapeRef& r = a.shapes[static_cast<std::size_t>(a.n)];
    const int slot = a.n++;
    if (id < 0) {
      r = {nullptr, -1};
      continue;
    }
    const TensorEntry& t = g.tensors[static_cast<std::size_t>(id)];
    r = {t.shape.data(), static_cast<int>(t.shape.size())};
    const OpInput& in = s.def->inputs[static_cast<std::size_t>(slot)];
    const bool is_mask = in.name && std::string(in.name) == "mask";
    if (first && !in.index && !is_mask) {
      a.dtype = t.dtype;
      first = false;
    }
  }
  a.stride_h = s.attrs.stride_h;
  a.stride_w = s.attrs.stride_w;
  a.pad_h = s.attrs.pad_h;
  a.pad_w = s.attrs.pad_w;
  a.batch_first = s.attrs.batch_first;
  return a;
}

// The passes. Every finding goes to `issues` (when given); the result is usable only when no
// finding is an error.
Resolved resolve(const std::vector<TensorEntry>& tensors, const std::vector<NodeEntry>& nodes,
                 const std::vector<std::string>& outputs, std::vector<GraphIssue>* issues) {
  Resolved g;
  g.tensors = tensors;
  for (std::size_t i = 0; i < tensors.size(); ++i) g.ids[tensors[i].name] = static_cast<int>(i);
  auto report = [&](const char* pass, const std::string& where, const std::string& msg,
                    bool error = true) {
    if (issues) issues->push_back({pass, where, "[graph] " + msg, error});
  };
  auto id_of = [&](const std::string& n, bool create) -> int {
    auto it = g.ids.find(n);
    if (it != g.ids.end()) return it->second;
    if (!create) return -1;
    TensorEntry t;
    t.name = n;
    g.tensors.push_back(t);
    const int id = static_cast<int>(g.tensors.size()) - 1;
    g.ids[n] = id;
    return id;
  };

  // Pass 1 (unknown_op, arity, producers): node structure, every output gets a tensor id.
  const std::size_t nn = nodes.size();
  std::vector<Step> steps(nn);
  std::vector<bool> ok(nn, true);
  std::vector<int> producer_node;
  for (std::size_t i = 0; i < nn; ++i) {
    const NodeEntry& n = nodes[i];
    Step& s = steps[i];
    s.name = n.name;
    s.def = n.def;
    const std::string label = node_label(n.name, n.def ? n.def->name : n.op.c_str());
    if (!n.def) {
      report("unknown_op", n.name, label + ": unknown op '" + n.op + "'");
      ok[i] = false;
      continue;
    }
    const OpDef& d = *n.def;
    if (!executable(d)) {
      report("unsupported", n.name, label + ": " + d.name + " is a pipeline, not an op a graph "
                                        "can hold; build it from conv2d_nchw and attention2d nodes");
      ok[i] = false;
    }
    s.attrs = decode_attrs(d, n.attrs);
    const int ni = d.num_inputs();
    int required = 0;
    for (int k = 0; k < ni; ++k)
      if (!d.inputs[static_cast<std::size_t>(k)].optional) ++required;
    if (static_cast<int>(n.inputs.size()) > ni || static_cast<int>(n.inputs.size()) < required) {
      report("arity", n.name, label + ": takes " + std::to_string(required) +
                                  (required == ni ? "" : " to " + std::to_string(ni)) +
                                  " input(s), got " + std::to_string(n.inputs.size()));
      ok[i] = false;
    }
    for (std::size_t k = 0; k < n.inputs.size() && static_cast<int>(k) < ni; ++k) {
      const OpInput& in = d.inputs[k];
      if (n.inputs[k].empty()) {
        if (!in.optional) {
          report("arity", n.name, label + ": input '" + in.name + "' is required");
          ok[i] = false;
        }
        s.in.push_back(-1);
        continue;
      }
      s.in.push_back(id_of(n.inputs[k], true));
    }
    while (static_cast<int>(s.in.size()) < ni) s.in.push_back(-1);
    const int no = expected_outputs(d, s.attrs);
    if (static_cast<int>(n.outputs.size()) != no) {
      report("arity", n.name, label + ": produces " + std::to_string(no) + " output(s), got " +
                                  std::to_string(n.outputs.size()) + " output name(s)");
      ok[i] = false;
    }
    for (const std::string& o : n.outputs) {
      if (o.empty()) {
        report("arity", n.name, label + ": an output name is empty");
        ok[i] = false;
        continue;
      }
      s.out.push_back(id_of(o, true));
    }
  }
  const std::size_t nt = g.tensors.size();
  g.producer.assign(nt, -1);
  std::vector<std::vector<int>> consumers(nt);
  for (std::size_t i = 0; i < nn; ++i) {
    for (int id : steps[i].in)
      if (id >= 0) consumers[static_cast<std::size_t>(id)].push_back(static_cast<int>(i));
    for (int id : steps[i].out) {
      TensorEntry& t = g.tensors[static_cast<std::size_t>(id)];
      const std::string label = node_label(steps[i].name, steps[i].def ? steps[i].def->name : "?");
      if (t.constant) {
        report("producers", steps[i].name, label + ": writes constant tensor '" + t.name + "'");
        ok[i] = false;
      } else if (g.producer[static_cast<std::size_t>(id)] >= 0) {
        report("producers", steps[i].name,
               label + ": writes tensor '" + t.name + "', which node '" +
                   steps[static_cast<std::size_t>(g.producer[static_cast<std::size_t>(id)])].name +
                   "' writes already");
        ok[i] = false;
      } else {
        g.producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
      }
    }
  }
  // dangling: read, never declared, never produced.
  for (std::size_t id = tensors.size(); id < nt; ++id) {
    if (g.producer[id] >= 0) continue;
    const int c = consumers[id].front();
    const Step& s = steps[static_cast<std::size_t>(c)];
    report("dangling", s.name,
           node_label(s.name, s.def ? s.def->name : "?") + ": reads tensor '" +
               g.tensors[id].name + "', which is neither declared (add_tensor) nor produced by any node");
    ok[static_cast<std::size_t>(c)] = false;
  }
  // unused: declared, never read or written (a warning); constants without a value (errors).
  for (std::size_t id = 0; id < tensors.size(); ++id) {
    const TensorEntry& t = g.tensors[id];
    if (consumers[id].empty() && g.producer[id] < 0)
      report("unused", t.name, "tensor '" + t.name + "' is declared but no node reads or writes it",
             false);
    if (t.constant && !t.value.defined())
      report("constant", t.name, "constant tensor '" + t.name +
                                     "' has no value; pass it to add_tensor or set_constant");
  }

  // cycle: Kahn's algorithm in node order (stable: independent nodes keep their order).
  std::vector<int> indeg(nn, 0);
  for (std::size_t i = 0; i < nn; ++i)
    for (int id : steps[i].in)
      if (id >= 0 && g.producer[static_cast<std::size_t>(id)] >= 0) ++indeg[i];
  std::vector<int> order;
  std::vector<bool> done(nn, false);
  for (bool progress = true; progress;) {
    progress = false;
    for (std::size_t i = 0; i < nn; ++i) {
      if (done[i] || indeg[i] != 0) continue;
      done[i] = true;
      progress = true;
      order.push_back(static_cast<int>(i));
      for (int id : steps[i].out)
        for (int c : consumers[static_cast<std::size_t>(id)]) --indeg[static_cast<std::size_t>(c)];
    }
  }
  if (order.size() != nn) {
    std::string names;
    for (std::size_t i = 0; i < nn; ++i)
      if (!done[i]) names += std::string(names.empty() ? "" : ", ") + "'" + steps[i].name + "'";
    const std::size_t first = static_cast<std::size_t>(
        std::find(done.begin(), done.end(), false) - done.begin());
    report("cycle", steps[first].name,
           node_label(steps[first].name, steps[first].def ? steps[first].def->name : "?") +
               ": is on a cycle (nodes " + names + " depend on each other)");
    return g;  // no order: shapes cannot be inferred
  }

  // shape / dtype: the registry's inference in topological order.
  std::vector<bool> known(nt, false);
  for (std::size_t id = 0; id < nt; ++id) known[id] = id < tensors.size() && g.producer[id] < 0;
  for (int i : order) {
    Step& s = steps[static_cast<std::size_t>(i)];
    bool inputs_known = ok[static_cast<std::size_t>(i)];
    for (int id : s.in)
      if (id >= 0 && !known[static_cast<std::size_t>(id)]) inputs_known = false;
    if (!inputs_known) continue;  // an earlier finding explains it
    const OpDef& d = *s.def;
    const std::string label = node_label(s.name, d.name);
    if (is_view_op(&d)) {  // views: any dtype; the shape from the attributes (views.cpp)
      const TensorEntry& src = g.tensors[static_cast<std::size_t>(s.in[0])];
      std::vector<std::int64_t> shape;
      try {
        shape = infer_view(s, src.shape);
      } catch (const std::exception& e) {
        std::string m = e.what();
        if (m.rfind("[", 0) == 0 && m.find("] ") != std::string::npos) m = m.substr(m.find("] ") + 2);
        report("shape", s.name, label + ": " + m);
        continue;
      }
      TensorEntry& t = g.tensors[static_cast<std::size_t>(s.out[0])];
      if (t.declared && (t.shape != shape || t.dtype != src.dtype)) {
        report("shape", s.name, label + ": output '" + t.name + "' is declared " + shape_str(t.shape) +
                                    " " + to_string(t.dtype) + " but the view is " + shape_str(shape) +
                                    " " + to_string(src.dtype));
        continue;
      }
      t.shape = std::move(shape);
      t.dtype = src.dtype;
      known[static_cast<std::size_t>(s.out[0])] = true;
      continue;
    }
    // dtypes: float inputs share one storage dtype the backend stores; ids are integers.
    bool dtype_ok = true;
    DType fdt = DType::f32;
    bool have_f = false;
    for (std::size_t k = 0; k < s.in.size(); ++k) {
      const int id = s.in[k];
      if (id < 0) continue;
      const TensorEntry& t = g.tensors[static_cast<std::size_t>(id)];
      const OpInput& in = d.inputs[k];
      // attention's mask may be an integer keep-mask (a float one is an additive mask of q's
      // dtype, which the op checks); softmax's is additive: one float dtype with x, checked here
      const bool is_mask = std::string(in.name) == "mask" && d.family == OpFamily::attention &&
                           !is_floating(t.dtype);
      if (in.index) {
        if (!kIndexDTypes.has(t.dtype)) {
          report("dtype", s.name, label + ": input '" + in.name + "' (tensor '" + t.name +
                                      "') must be int32 or int64, got " + to_string(t.dtype));
          dtype_ok = false;
        }
      } else if (is_mask) {
        // an integer keep-mask of attention: no float dtype to agree on
      } else if (!have_f) {
        fdt = t.dtype;
        have_f = true;
      } else if (t.dtype != fdt) {
        report("dtype", s.name, label + ": input '" + in.name + "' (tensor '" + t.name + "') is " +
                                    to_string(t.dtype) + " but the op's other inputs are " +
                                    to_string(fdt) + "; every float input must have one dtype");
        dtype_ok = false;
      }
    }
    if (have_f && dtype_ok && !d.cpu_dtypes.has(fdt) && !d.cuda_dtypes.has(fdt)) {
      report("dtype", s.name, label + ": " + d.name + " does not take " + to_string(fdt) + " inputs");
      dtype_ok = false;
    }
    if (!dtype_ok) continue;
    OpResult res;
    try {
      res = d.infer_result(step_args(g, s));
    } catch (const std::exception& e) {
      std::string m = e.what();
      if (m.rfind("[", 0) == 0 && m.find("] ") != std::string::npos) m = m.substr(m.find("] ") + 2);
      report("shape", s.name, label + ": " + m);
      continue;
    }
    // Every result: the inferred (shape, dtype) of the op's outputs.
    std::vector<std::pair<std::vector<std::int64_t>, DType>> outs{{res.shape, res.dtype}};
    if (&d == &opdefs::attention && s.attrs.return_lse) {
      const auto& q = g.tensors[static_cast<std::size_t>(s.in[0])].shape;
      outs.push_back({std::vector<std::int64_t>(q.begin(), q.end() - 1), DType::f32});
    }
    if (&d == &opdefs::attention_backward) {
      outs.push_back({g.tensors[static_cast<std::size_t>(s.in[2])].shape, res.dtype});
      outs.push_back({g.tensors[static_cast<std::size_t>(s.in[3])].shape, res.dtype});
    }
    if (&d == &opdefs::lstm) {  // h_n, c_n: h0's shape
      outs.push_back({g.tensors[static_cast<std::size_t>(s.in[1])].shape, res.dtype});
      outs.push_back({g.tensors[static_cast<std::size_t>(s.in[1])].shape, res.dtype});
    }
    for (std::size_t k = 0; k < s.out.size() && k < outs.size(); ++k) {
      TensorEntry& t = g.tensors[static_cast<std::size_t>(s.out[k])];
      if (t.declared && t.shape != outs[k].first) {
        report("shape", s.name, label + ": output '" + t.name + "' is declared " +
                                    shape_str(t.shape) + " but the op produces " +
                                    shape_str(outs[k].first));
        continue;
      }
      if (t.declared && t.dtype != outs[k].second) {
        report("dtype", s.name, label + ": output '" + t.name + "' is declared " +
                                    to_string(t.dtype) + " but the op produces " +
                                    to_string(outs[k].second));
        continue;
      }
      t.shape = outs[k].first;
      t.dtype = outs[k].second;
      known[static_cast<std::size_t>(s.out[k])] = true;
    }
  }

  for (int i : order) g.steps.push_back(steps[static_cast<std::size_t>(i)]);
  for (std::size_t id = 0; id < tensors.size(); ++id)
    if (!g.tensors[id].constant && g.producer[id] < 0 && !consumers[id].empty())
      g.inputs.push_back(static_cast<int>(id));
  if (!outputs.empty()) {
    for (const std::string& o : outputs) {
      auto it = g.ids.find(o);
      if (it == g.ids.end() || g.producer[static_cast<std::size_t>(it->second)] < 0) {
        report("outputs", o, "graph output '" + o + "' is not produced by any node");
        continue;
      }
      if (std::find(g.outputs.begin(), g.outputs.end(), it->second) != g.outputs.end()) {
        report("outputs", o, "graph output '" + o + "' is listed twice");
        continue;
      }
      g.outputs.push_back(it->second);
    }
  } else {
    for (const Step& s : g.steps)
      for (int id : s.out)
        if (consumers[static_cast<std::size_t>(id)].empty()) g.outputs.push_back(id);
  }
  // Producers by step index (after the topological sort).
  g.producer.assign(g.tensors.size(), -1);
  for (std::size_t i = 0; i < g.steps.size(); ++i)
    for (int id : g.steps[i].out) g.producer[static_cast<std::size_t>(id)] = static_cast<int>(i);
  return g;
}

}  // namespace graph

// ---- GraphIR: building ---------------------------------------------------------------------

using graph::node_error;

GraphIR::GraphIR() : impl_(std::make_unique<Impl>()) {}
GraphIR::~GraphIR() = default;
GraphIR::GraphIR(GraphIR&&) noexcept = default;
GraphIR& GraphIR::operator=(GraphIR&&) noexcept = default;

void GraphIR::add_tensor(const std::string& name, const std::vector<std::int64_t>& shape,
                         DType dtype, bool constant, const Tensor* value) {
  if (name.empty()) throw_value("graph", "add_tensor: the tensor needs a name");
  if (impl_->tensor_ids.count(name))
    throw_value("graph", "add_tensor: tensor '" + name + "' is declared already");
  if (shape.size() > static_cast<std::size_t>(kMaxDims))
    throw_value("graph", "add_tensor: tensor '" + name + "' has " + std::to_string(shape.size()) +
                             " dimensions; at most " + std::to_string(kMaxDims));
  for (std::int64_t d : shape)
    if (d < 0)
      throw_value("graph", "add_tensor: tensor '" + name + "' has a negative size in " + shape_str(shape));
  if (value && !constant)
    throw_value("graph", "add_tensor: tensor '" + name + "' has a value but constant=False");
  graph::TensorEntry t;
  t.name = name;
  t.shape = shape;
  t.dtype = dtype;
  t.declared = true;
  t.constant = constant;
  impl_->tensors.push_back(std::move(t));
  impl_->tensor_ids[name] = static_cast<int>(impl_->tensors.size()) - 1;
  impl_->invalidate();
  if (value) set_constant(name, *value);
}

void GraphIR::set_constant(const std::string& name, const Tensor& value, bool copy) {
  auto it = impl_->tensor_ids.find(name);
  if (it == impl_->tensor_ids.end())
    throw_value("graph", "set_constant: no tensor '" + name + "'; declare it with add_tensor(..., constant=True)");
  graph::TensorEntry& t = impl_->tensors[static_cast<std::size_t>(it->second)];
  if (!t.constant)
    throw_value("graph", "set_constant: tensor '" + name + "' is not a constant (a graph input: "
                                                         "pass it to execute)");
  if (value.dtype() != t.dtype)
    throw_type("graph", "set_constant: tensor '" + name + "' is declared " + to_string(t.dtype) +
                            ", the value is " + to_string(value.dtype()));
  if (value.shape() != t.shape)
    throw_value("graph", "set_constant: tensor '" + name + "' is declared " + shape_str(t.shape) +
                             ", the value is " + value.shape_str());
  if (!copy && value.is_contiguous()) {
    t.value = value;  // shared (the caller keeps it unchanged)
  } else {
    // An owned contiguous copy: the caller's array may change or go away.
    Tensor owned = Tensor::empty(t.shape, t.dtype, value.device());
    value.copy_to(owned);
    t.value = std::move(owned);
  }
  impl_->invalidate();
}

void GraphIR::add_node(const std::string& op, const std::vector<std::string>& inputs,
                       const std::vector<std::string>& outputs, const GraphAttrs& attrs,
                       const std::string& name_in) {
  const std::string name =
      name_in.empty() ? op + "_" + std::to_string(impl_->nodes.size()) : name_in;
  const OpDef* d = find_op(op);
  if (!d) d = graph::find_view_op(op);
  if (!d) {
    std::string names;
    for (const OpDef* o : all_ops()) names += std::string(names.empty() ? "" : ", ") + o->name;
    node_error(name, op.c_str(), "unknown op '" + op + "'; the registered ops are " + names +
                                     "; the view nodes are reshape (view), permute, transpose, "
                                     "slice, select, contiguous, expand");
  }
  if (impl_->node_ids.count(name))
    node_error(name, d->name, "a node of this name exists already; names must be unique");
  for (std::size_t i = 0; i < attrs.size(); ++i) {
    const auto& [key, v] = attrs[i];
    const OpAttr* a = graph::find_attr(*d, key);
    if (!a)
      node_error(name, d->name, "unknown attribute '" + key + "'; " + d->name + " takes " +
                                    graph::attr_names(*d));
    for (std::size_t j = 0; j < i; ++j)
      if (attrs[j].first == key) node_error(name, d->name, "attribute '" + key + "' is given twice");
    using K = GraphAttr::Kind;
    const bool none_ok = a->default_value && std::string(a->default_value) == "None";
    bool ok = false;
    switch (a->type) {
      case AttrType::boolean: ok = v.kind == K::boolean; break;
      case AttrType::integer: ok = v.kind == K::integer; break;
      case AttrType::real: ok = v.kind == K::real || v.kind == K::integer; break;
      case AttrType::string: ok = v.kind == K::string; break;
      case AttrType::ints: ok = v.kind == K::ints; break;
    }
    if (v.kind == K::none && none_ok) ok = true;
    if (!ok)
      node_error(name, d->name, "attribute '" + key + "' must be " + to_string(a->type) +
                                    (none_ok ? " or None" : "") + ", got " + v.repr(),
                 true);
    // Values the op itself would refuse, caught here with the node's name.
    if (key == "activation") {
      if (v.s != "none" && v.s != "relu" && v.s != "gelu")
        node_error(name, d->name, "activation must be 'none', 'relu' or 'gelu', got " + v.repr());
    } else if (key == "approximate") {
      if (v.s != "tanh" && v.s != "none")
        node_error(name, d->name, "approximate must be 'tanh' or 'none', got " + v.repr());
    } else if (key == "scale" && v.kind != K::none) {
      const double s = v.kind == K::integer ? static_cast<double>(v.i) : v.r;
      if (!(s > 0) || !std::isfinite(s))
        node_error(name, d->name, "scale must be a finite number > 0 (or None), got " + v.repr());
    } else if (key == "eps" && !(v.kind == K::integer ? v.i > 0 : v.r > 0)) {
      node_error(name, d->name, "eps must be > 0, got " + v.repr());
    } else if ((key == "stride_h" || key == "stride_w") && (v.i < 1 || v.i > 2147483647)) {
      node_error(name, d->name, key + " must be >= 1, got " + v.repr());
    } else if ((key == "pad_h" || key == "pad_w") && (v.i < 0 || v.i > 2147483647)) {
      node_error(name, d->name, key + " must be >= 0, got " + v.repr());
    } else if (key == "program") {
      EwProgram prog;
      try {
        prog = parse_ew_program(v.s, d->name);
      } catch (const ValueError& e) {
        std::string m = e.what();
        if (m.rfind("[", 0) == 0 && m.find("] ") != std::string::npos) m = m.substr(m.find("] ") + 2);
        node_error(name, d->name, m);
      }
      if (prog.n_inputs > static_cast<int>(inputs.size()))
        node_error(name, d->name, "the program reads x" + std::to_string(prog.n_inputs - 1) + " but the node has " +
                                      std::to_string(inputs.size()) + " input(s)");
    } else if (key == "step" && v.i == 0) {
      node_error(name, d->name, "step cannot be zero (a negative step slices backwards)");
    }
  }
  for (int i = 0; i < d->num_attrs(); ++i) {
    const OpAttr& a = d->attrs[static_cast<std::size_t>(i)];
    if (a.default_value) continue;
    bool given = false;
    for (const auto& kv : attrs) given = given || kv.first == a.name;
    if (!given) node_error(name, d->name, std::string("attribute '") + a.name + "' is required");
  }
  graph::NodeEntry n;
  n.name = name;
  n.op = op;
  n.def = d;
  n.inputs = inputs;
  n.outputs = outputs;
  n.attrs = attrs;
  impl_->nodes.push_back(std::move(n));
  impl_->node_ids[name] = static_cast<int>(impl_->nodes.size()) - 1;
  impl_->invalidate();
}

void GraphIR::set_outputs(const std::vector<std::string>& names) {
  impl_->outputs = names;
  impl_->invalidate();
}

std::vector<GraphIssue> GraphIR::validate_report() const {
  std::vector<GraphIssue> issues;
  graph::resolve(impl_->tensors, impl_->nodes, impl_->outputs, &issues);
  return issues;
}

void GraphIR::validate() const {
  const std::vector<GraphIssue> issues = validate_report();
  std::string msg;
  int errors = 0;
  bool all_dtype = true;
  for (const GraphIssue& i : issues) {
    if (!i.error) continue;
    ++errors;
    all_dtype = all_dtype && i.pass == "dtype";
    msg += (msg.empty() ? "" : "\n") + i.message;
  }
  if (errors == 0) return;
  if (errors > 1) msg = "[graph] " + std::to_string(errors) + " errors:\n" + msg;
  if (all_dtype) throw TypeError(msg);
  throw ValueError(msg);
}

std::size_t GraphIR::num_nodes() const { return impl_->nodes.size(); }

namespace {
// f(the planned graph), or f(a fresh resolution) when not planned (no copy of the plan's graph:
// the bindings ask these per execute).
template <class F>
auto with_resolved(const GraphIR::Impl& im, F&& f) {
  if (im.plan) return f(im.plan->g);
  const graph::Resolved g = graph::resolve(im.tensors, im.nodes, im.outputs, nullptr);
  return f(g);
}
const graph::TensorEntry& find_tensor(const graph::Resolved& g, const std::string& name) {
  auto it = g.ids.find(name);
  if (it == g.ids.end()) throw_value("graph", "no tensor '" + name + "'");
  return g.tensors[static_cast<std::size_t>(it->second)];
}
}  // namespace

std::vector<std::string> GraphIR::input_names() const {
  return with_resolved(*impl_, [](const graph::Resolved& g) {
    std::vector<std::string> r;
    for (int id : g.inputs) r.push_back(g.tensors[static_cast<std::size_t>(id)].name);
    return r;
  });
}

std::vector<std::string> GraphIR::output_names() const {
  return with_resolved(*impl_, [](const graph::Resolved& g) {
    std::vector<std::string> r;
    for (int id : g.outputs) r.push_back(g.tensors[static_cast<std::size_t>(id)].name);
    return r;
  });
}

std::vector<std::int64_t> GraphIR::tensor_shape(const std::string& name) const {
  return with_resolved(*impl_, [&](const graph::Resolved& g) { return find_tensor(g, name).shape; });
}

DType GraphIR::tensor_dtype(const std::string& name) const {
  return with_resolved(*impl_, [&](const graph::Resolved& g) { return find_tensor(g, name).dtype; });
}

// ---- planning ------------------------------------------------------------------------------

namespace {
// Fusion, views, placement and buffers of the (validated) graph under `opts`.
std::unique_ptr<graph::Plan> build_plan(const GraphIR::Impl& im, const GraphPlanOptions& opts) {
  auto p = std::make_unique<graph::Plan>();
  p->opts = opts;
  p->g = graph::resolve(im.tensors, im.nodes, im.outputs, nullptr);
  p->summary.fusions = graph::fuse(p->g, opts.fusion);
  graph::lower_views(p->g, &p->summary.view_aliases, &p->summary.view_copies);
  graph::place(*p);
  graph::pack_buffers(*p);
  return p;
}
}  // namespace

const GraphPlanSummary& GraphIR::plan(const GraphPlanOptions& opts) {
  validate();
  impl_->invalidate();
  auto p = build_plan(*impl_, opts);
  std::lock_guard<std::mutex> lock(impl_->exec_mu);
  impl_->exec.reset();
  impl_->plan = std::move(p);
  return impl_->plan->summary;
}

void GraphIR::Impl::use_residency(const graph::Residency& r) {
  if (graph::plan_matches(*plan, r)) return;
  auto hit = std::find_if(others.begin(), others.end(),
                          [&](const OtherPlan& o) { return graph::plan_matches(*o.plan, r); });
  OtherPlan cur{std::move(plan), std::move(exec)};
  if (hit != others.end()) {
    plan = std::move(hit->plan);
    exec = std::move(hit->exec);
    others.erase(hit);
  } else {
    GraphPlanOptions o = cur.plan->opts;
    o.resident_inputs.clear();
    for (std::size_t k = 0; k < r.input_gpu.size(); ++k)
      if (r.input_gpu[k] >= 0)
        o.resident_inputs.emplace_back(cur.plan->g.tensors[static_cast<std::size_t>(cur.plan->g.inputs[k])].name,
                                       r.input_gpu[k]);
    o.results_on_device = r.results_on_device;
    try {
      plan = build_plan(*this, o);
    } catch (...) {
      plan = std::move(cur.plan);
      exec = std::move(cur.exec);
      throw;
    }
    ++stats.residency_plans;
  }
  others.push_back(std::move(cur));  // most recently used last
  while (others.size() + 1 > static_cast<std::size_t>(GraphIR::kResidencyPlans)) others.erase(others.begin());
}

const GraphIR::Impl& GraphIR::impl() const { return *impl_; }

bool GraphIR::planned() const { return impl_->plan != nullptr; }

const GraphPlanSummary& GraphIR::plan_summary() const {
  if (!impl_->plan) throw_value("graph", "plan_summary: the graph is not planned; call plan() first");
  return impl_->plan->summary;
}

std::vector<GraphFusion> GraphIR::fusion_report() const {
  if (impl_->plan) return impl_->plan->summary.fusions;
  // Not planned: what the default rules would do.
  graph::Resolved g = graph::resolve(impl_->tensors, impl_->nodes, impl_->outputs, nullptr);
  validate();
  return graph::fuse(g, GraphFusionOptions{});
}

GraphIR::Stats GraphIR::stats() const { return impl_->stats; }

}  // namespace lc
