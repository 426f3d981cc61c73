// The executor: runs a plan's steps through the public op API (the `_into` forms, writing into
// the planned buffers), as one recording of the backend's capture seam (Backend::capture_graph:
// a CUDA graph on CUDA, DirectGraph on the CPU) or step by step (eager, A/B).
//
// Per plan (ExecState, made at the first execute): the arenas (one allocation per device), a
// typed view per arena tensor, the constants on their device (uploaded once), and the
// CapturedGraph under a CaptureKey of the plan's topology, shapes and dtypes (no addresses).
// Per call: a table of the tensor each id refers to (arena views, constants, the caller's
// inputs and outputs), filled without allocating; the replay's binding is the arena and the
// inputs' device addresses, so a call with other device inputs re-records the work and
// updates the executable graph in place (host inputs are copied into fixed staging slots).
#include <cstring>
#include <map>

#include "backends/backend.h"
#include "graph/graph_internal.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "ops/checks.h"

namespace lc::graph {

// One set of output buffers of a captured plan with bound outputs (Plan::bind_outputs) and the
// recording that writes into them. Set 0 is the plan's own (never handed out: the results are
// copied from it into the caller's buffers, or into fresh ones when every other set is held);
// sets 1.. are handed out as the call's results and reused once the caller let go of them.
struct OutSet {
  std::vector<Tensor> outs;  // per graph output
  std::unique_ptr<CapturedGraph> graph;
  bool held() const {  // a result of an earlier call still alive (the set's own reference: 1)
    for (const Tensor& t : outs)
      if (t.owner().use_count() > 1) return true;
    return false;
  }
};
// Sets handed out at most (the ring): enough for `y = g(x)` loops, which still hold the previous
// result during the call, and a few live results; a caller keeping more gets copies.
constexpr std::size_t kOutRing = 3;

struct ExecState {
  Tensor arena[2];
  std::vector<Tensor> fixed;  // per tensor: its arena view or (device) constant; else empty
  std::vector<Tensor> cur;    // per call: what each id refers to
  std::unique_ptr<CapturedGraph> graph;  // plans without bound outputs
  std::vector<OutSet> sets;              // plans with bound outputs: [0] own, [1..] handed out
  CaptureKey key;
  bool warmed = false;        // one eager run happened (the capture's precondition)
  bool staged_inputs = false; // captured plans whose inputs do not fit the binding
};

void destroy_exec_state(ExecState* s) { delete s; }

namespace {

ExecutionPolicy step_policy(const ExecutionPolicy& base, const Plan& p, DeviceKind dev, bool captured) {
  ExecutionPolicy q = base;
  q.device = dev == DeviceKind::cpu ? DeviceRequest::cpu : DeviceRequest::cuda;
  q.device_index = static_cast<std::int8_t>(dev == DeviceKind::cpu ? -1 : p.gpu_index);  // cuda:N
  q.precision = p.opts.precision;
  // Every step writes into a buffer of the plan (the `_into` forms), so `download` only
  // matters for the policy's validity: true on the CPU, false on a GPU.
  q.download = dev == DeviceKind::cpu;
  if (dev == DeviceKind::cpu) {
    q.sync = SyncMode::per_call;
    q.upload = UploadMode::always;
    if (q.precision == Precision::bf16) q.precision = Precision::fp32;
  } else {
    q.sync = SyncMode::none;  // the executor synchronises once at the end
    q.upload = captured ? UploadMode::never : UploadMode::always;
  }
  return q;
}

void run_step(const Step& s, std::vector<Tensor>& cur, const ExecutionPolicy& q) {
  auto in = [&](int k) -> const Tensor& { return cur[static_cast<std::size_t>(s.in[static_cast<std::size_t>(k)])]; };
  auto opt = [&](int k) -> const Tensor* {
    const int id = s.in[static_cast<std::size_t>(k)];
    return id < 0 ? nullptr : &cur[static_cast<std::size_t>(id)];
  };
  Tensor& out = cur[static_cast<std::size_t>(s.out[0])];
  const OpDef* d = s.def;
  const StepAttrs& a = s.attrs;
  namespace od = opdefs;
  if (d == &od::linear) linear_into(in(0), in(1), opt(2), a.act, out, q, opt(3));
  else if (d == &od::matmul2d) matmul2d_into(in(0), in(1), out, q);
  else if (d == &od::matmul) matmul_into(in(0), in(1), out, q);
  else if (d == &od::attention2d) attention2d_into(in(0), in(1), in(2), out, a.causal, q, a.scale);
  else if (d == &od::attention && a.out_heads_merged) {  // attention_out_proj (attention_proj.cpp)
    Tensor o = heads_out_view(out);
    if (attention_strided_out_native()) {
      attention_into(in(0), in(1), in(2), o, a.causal, opt(3), a.scale, q, nullptr);
    } else {  // forced without the in-place strided write: staged (correct, no saving)
      Tensor t = Tensor::empty(o.shape(), o.dtype(), o.device());
      attention_into(in(0), in(1), in(2), t, a.causal, opt(3), a.scale, q, nullptr);
      t.copy_to(o);
    }
  } else if (d == &od::attention)
    attention_into(in(0), in(1), in(2), out, a.causal, opt(3), a.scale, q,
                   s.out.size() > 1 ? &cur[static_cast<std::size_t>(s.out[1])] : nullptr);
  else if (d == &od::attention_backward)
    attention_backward_into(in(0), in(1), in(2), in(3), in(4), in(5), out,
                            cur[static_cast<std::size_t>(s.out[1])],
                            cur[static_cast<std::size_t>(s.out[2])], a.causal, opt(6), a.scale, q);
  else if (d == &od::conv2d_nchw)
    conv2d_nchw_into(in(0), in(1), opt(2), a.stride_h, a.stride_w, a.pad_h, a.pad_w, a.act, out, q);
  else if (d == &od::layernorm) layernorm_into(in(0), opt(1), opt(2), a.eps, out, q, opt(3));
  else if (d == &od::softmax) softmax_into(in(0), out, q, a.scale > 0 ? a.scale : 1.0f, opt(1));
  else if (d == &od::gelu) gelu_into(in(0), out, a.approximate.c_str(), q);
  else if (d == &od::embedding) embedding_into(in(0), in(1), out, q);
  else if (d == &od::lstm)
    lstm_into(in(0), in(1), in(2), in(3), in(4), opt(5), opt(6), out,
              cur[static_cast<std::size_t>(s.out[1])], cur[static_cast<std::size_t>(s.out[2])],
              a.batch_first, q);
  else if (d == &od::vector_scale) elementwise_into("vector_scale", in(0), nullptr, a.alpha, out, q);
  else if (d == &od::relu) elementwise_into("relu", in(0), nullptr, 1.0f, out, q);
  else if (d == &od::elementwise_program) {
    // The given inputs (absent optional ones are -1: trailing; a gap stays nullptr, which the
    // op refuses).
    const Tensor* ins[kEwProgMaxInputs] = {};
    std::size_t n = 0;
    for (std::size_t k = 0; k < s.in.size() && k < static_cast<std::size_t>(kEwProgMaxInputs); ++k) {
      const int id = s.in[k];
      ins[k] = id < 0 ? nullptr : &cur[static_cast<std::size_t>(id)];
      if (id >= 0) n = k + 1;
    }
    elementwise_program_into(a.prog, std::span<const Tensor* const>(ins, n), out, q);
  }
  else if (d == &viewdefs::reshape || d == &viewdefs::contiguous) {
    // A view node that needs a copy (views.cpp): the values in row-major order into the
    // contiguous result, seen in the source's shape (a strided copy: a kernel on the GPU).
    const Tensor& src = in(0);
    if (out.is_contiguous()) {
      Tensor dst = out.view(src.shape(), contiguous_strides(src.shape()), 0);
      src.copy_to(dst);
    } else {  // a caller's strided output buffer (C++ execute_into)
      src.contiguous().view(out.shape(), contiguous_strides(out.shape()), 0).copy_to(out);
    }
  } else if (d->family == OpFamily::elementwise && d->num_inputs() == 2)
    elementwise_into(d->name, in(0), &in(1), 1.0f, out, q);  // add/sub/mul/div, vector_*, matrix_sub
  else
    throw_value("graph", node_label(s.name, d->name) + ": the executor has no call for this op");
}

}  // namespace

CaptureKey capture_key(const Plan& p) {
  CaptureKey k;
  k.topology = "graph";
  for (const Step& s : p.g.steps) {
    k.topology += ';';
    k.topology += s.def->name;
    k.topology += '(' + s.attrs.describe(*s.def) + ')';
    for (int id : s.in) k.topology += ' ' + std::to_string(id);
    k.topology += " ->";
    for (int id : s.out) k.topology += ' ' + std::to_string(id);
  }
  for (const TensorEntry& t : p.g.tensors) {
    k.dims.push_back(static_cast<std::int64_t>(t.dtype));
    k.dims.push_back(static_cast<std::int64_t>(t.shape.size()));
    k.dims.insert(k.dims.end(), t.shape.begin(), t.shape.end());
  }
  k.dims.push_back(static_cast<std::int64_t>(p.opts.precision));
  // The aliases (view nodes, column views): which memory each step reads.
  for (std::size_t id = 0; id < p.g.tensors.size(); ++id) {
    if (p.g.view_base[id] < 0) continue;
    k.dims.push_back(static_cast<std::int64_t>(id));
    k.dims.push_back(p.g.view_base[id]);
    k.dims.push_back(p.g.view_offset[id]);
    k.dims.insert(k.dims.end(), p.g.view_strides[id].begin(), p.g.view_strides[id].end());
  }
  // The device (cuda:N): a recording belongs to one GPU (the backend's pool matches the device
  // too; the key says it on its own).
  k.dims.push_back(static_cast<std::int64_t>(p.device));
  k.dims.push_back(p.gpu_index);
  return k;
}

namespace {

// A tensor of the plan at `offset` in the arena of `dev`. The device comes from the plan, not the
// arena: a plan whose tensors on `dev` are all empty has no arena there (arena_bytes 0), and its
// zero-size tensors must still say they live on `dev`.
Tensor arena_view(const Tensor& arena, std::size_t offset, const TensorEntry& t, DeviceKind dev,
                  int gpu_index) {
  std::int64_t strides[kMaxDims];
  std::int64_t s = 1;
  for (int i = static_cast<int>(t.shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= t.shape[static_cast<std::size_t>(i)];
  }
  char* base = arena.defined() ? static_cast<char*>(arena.data()) : nullptr;
  const int index = arena.defined() ? arena.device_index()
                    : dev == DeviceKind::cpu ? 0 : gpu_index;
  return Tensor::wrap(base ? base + offset : nullptr, static_cast<int>(t.shape.size()),
                      t.shape.data(), strides, t.dtype, dev, arena.owner(), true, index);
}

// The caller makes the plan's GPU current (DeviceScope): the arena and uploads go there.
// `device_constants`: the graph's constants already on a GPU, per (name, cuda:N).
std::unique_ptr<ExecState> make_state(const Plan& p,
                                      std::map<std::pair<std::string, int>, Tensor>& device_constants) {
  auto st = std::make_unique<ExecState>();
  const Resolved& g = p.g;
  for (int dev = 0; dev < 2; ++dev)
    if (p.arena_bytes[dev] > 0)
      st->arena[dev] = Tensor::empty({static_cast<std::int64_t>((p.arena_bytes[dev] + 3) / 4)},
                                     DType::f32, static_cast<DeviceKind>(dev));
  st->fixed.resize(g.tensors.size());
  st->cur.resize(g.tensors.size());
  const bool captured = p.summary.captured;
  for (std::size_t id = 0; id < g.tensors.size(); ++id) {
    const TensorEntry& t = g.tensors[id];
    const Slot sl = p.slot[id];
    if (sl == Slot::arena) {
      const DeviceKind dev = g.steps[static_cast<std::size_t>(g.producer[id])].device;
      st->fixed[id] = arena_view(st->arena[static_cast<int>(dev)], p.offset[id], t, dev, p.gpu_index);
    } else if (sl == Slot::input && captured) {
      st->fixed[id] = arena_view(st->arena[static_cast<int>(p.device)], p.offset[id], t, p.device, p.gpu_index);
    } else if (sl == Slot::constant) {
      // Uploaded once to the device of the steps that read it (the GPU when any GPU step does).
      // Reads through a view of the constant count as reads of it.
      DeviceKind dev = DeviceKind::cpu;
      for (const Step& s : g.steps)
        for (int x : s.in)
          if (x >= 0 && (x == static_cast<int>(id) || g.view_base[static_cast<std::size_t>(x)] == static_cast<int>(id)) &&
              s.device != DeviceKind::cpu)
            dev = s.device;
      if (dev == DeviceKind::cpu) {
        st->fixed[id] = t.value.device() == dev ? t.value : t.value.to(dev);
      } else {  // once per (constant, cuda:N), shared by the graph's residency plans
        Tensor& d = device_constants[{t.name, p.gpu_index}];
        if (!d.defined()) d = t.value.to(dev, p.gpu_index);
        st->fixed[id] = d;
      }
    }
  }
  // Views (column views, view nodes) of arena tensors and constants, after their roots; views
  // of graph inputs are made per call (the caller's tensor is their root).
  for (std::size_t id = 0; id < g.tensors.size(); ++id) {
    if (p.slot[id] != Slot::view) continue;
    const std::size_t root = static_cast<std::size_t>(g.view_base[id]);
    if (p.slot[root] == Slot::input) continue;
    st->fixed[id] = st->fixed[root].view(g.tensors[id].shape, g.view_strides[id], g.view_offset[id]);
  }
  // The binding holds the arena, the bound outputs and the inputs bound in place; with more
  // inputs, all are staged.
  const std::size_t bound_outs = p.bind_outputs ? g.outputs.size() : 0;
  st->staged_inputs = captured && g.inputs.size() + 1 + bound_outs > static_cast<std::size_t>(kMaxGraphBinding);
  st->key = capture_key(p);
  return st;
}

const std::string& reader_of(const Resolved& g, int id) {
  for (const Step& s : g.steps)
    for (int x : s.in)
      if (x == id) return s.name;
  return g.tensors[static_cast<std::size_t>(id)].name;
}

}  // namespace

}  // namespace lc::graph

namespace lc {

using namespace graph;

void GraphIR::execute_into(const std::vector<std::pair<std::string, Tensor>>& inputs,
                           std::vector<Tensor>& outs, bool graph_mode, bool results_on_device) {
  if (!impl_->plan) plan();
  std::lock_guard<std::mutex> lock(impl_->exec_mu);
  std::vector<const Tensor*> given;
  if (!impl_->plan) throw_value("graph", "execute: the graph changed while it was being executed");
  {  // the inputs are checked against the plan in use (all plans share the graph's inputs)
  const Plan& p = *impl_->plan;
  const Resolved& g = p.g;
  // ---- the inputs: every graph input, by name, its declared shape and dtype -------------------
  given.assign(g.tensors.size(), nullptr);
  for (const auto& [name, t] : inputs) {
    auto it = g.ids.find(name);
    const bool is_input = it != g.ids.end() && p.slot[static_cast<std::size_t>(it->second)] == Slot::input;
    if (!is_input) {
      std::string names;
      for (int id : g.inputs) names += std::string(names.empty() ? "" : ", ") + "'" + g.tensors[static_cast<std::size_t>(id)].name + "'";
      throw_value("graph", "execute: '" + name + "' is not a graph input; the inputs are " +
                               (names.empty() ? "none" : names));
    }
    given[static_cast<std::size_t>(it->second)] = &t;
  }
  for (int id : g.inputs) {
    const TensorEntry& te = g.tensors[static_cast<std::size_t>(id)];
    const Tensor* t = given[static_cast<std::size_t>(id)];
    const std::string& node = reader_of(g, id);
    if (!t || !t->defined())
      throw_value("graph", "execute: graph input '" + te.name + "' (read by node '" + node +
                               "') is missing; pass it in the inputs");
    if (t->dtype() != te.dtype)
      throw_type("graph", "execute: input '" + te.name + "' (read by node '" + node + "') must be " +
                              to_string(te.dtype) + ", got " + to_string(t->dtype()));
    if (t->shape() != te.shape)
      throw_value("graph", "execute: input '" + te.name + "' (read by node '" + node + "') must have shape " +
                               shape_str(te.shape) + ", got " + t->shape_str() +
                               " (a graph has fixed shapes; lc.compile re-traces for new ones)");
  }
  }
  // ---- residency: the plan made for where these inputs live and where the results go --------
  if (!results_on_device && !outs.empty()) {  // caller's buffers, all on a GPU: no download
    results_on_device = true;
    for (const Tensor& o : outs) results_on_device = results_on_device && o.defined() && o.device() != DeviceKind::cpu;
  }
  {
    const Plan& p0 = *impl_->plan;
    auto gpu_of = [&](int id) {
      const Tensor& t = *given[static_cast<std::size_t>(id)];
      return t.device() == DeviceKind::cpu ? -1 : t.device_index();
    };
    bool same = p0.results_on_device == results_on_device;
    for (std::size_t k = 0; k < p0.g.inputs.size() && same; ++k) same = p0.input_gpu[k] == gpu_of(p0.g.inputs[k]);
    if (!same) {  // a new residency: its plan (cached per residency), not a blind reuse
      Residency r;
      r.results_on_device = results_on_device;
      for (int id : p0.g.inputs) r.input_gpu.push_back(gpu_of(id));
      impl_->use_residency(r);
      given.resize(impl_->plan->g.tensors.size(), nullptr);
    }
  }
  Plan& p = *impl_->plan;
  const Resolved& g = p.g;
  // The plan's GPU is current for the call: the arena, uploads, results and the recording.
  DeviceScope device_scope(DeviceKind::cuda, p.gpu_index);
  // ---- the outputs --------------------------------------------------------------------------
  const bool on_gpu = p.device != DeviceKind::cpu;
  const bool captured = p.summary.captured && graph_mode;
  if (!impl_->exec) impl_->exec.reset(make_state(p, impl_->device_constants).release());
  ExecState& st = *impl_->exec;
  // A captured plan with bound outputs writes into one of its output sets: a free set of the
  // ring becomes the call's results (no copy) when the caller wants new device results;
  // otherwise set 0, copied into the caller's (or fresh) buffers after the replay.
  std::size_t set_index = 0;
  bool hand_out = false;
  if (captured && p.bind_outputs) {
    auto new_set = [&] {
      OutSet set;
      for (int id : g.outputs) {
        const TensorEntry& te = g.tensors[static_cast<std::size_t>(id)];
        set.outs.push_back(Tensor::empty(te.shape, te.dtype, p.device));
      }
      return set;
    };
    if (st.sets.empty()) st.sets.push_back(new_set());
    if (outs.empty() && results_on_device) {
      for (std::size_t k = 1; k < st.sets.size() && !hand_out; ++k)
        if (!st.sets[k].held()) set_index = k, hand_out = true;
      if (!hand_out && st.sets.size() < 1 + kOutRing) {
        st.sets.push_back(new_set());
        set_index = st.sets.size() - 1;
        hand_out = true;
      }
    }
    if (hand_out) outs = st.sets[set_index].outs;
  }
  if (outs.empty()) {
    for (int id : g.outputs) {
      const TensorEntry& te = g.tensors[static_cast<std::size_t>(id)];
      outs.push_back(Tensor::empty(te.shape, te.dtype,
                                   results_on_device && on_gpu ? p.device : DeviceKind::cpu));
    }
  }
  if (outs.size() != g.outputs.size())
    throw_value("graph", "execute: " + std::to_string(g.outputs.size()) + " output buffer(s) needed, got " +
                             std::to_string(outs.size()));
  for (std::size_t k = 0; k < outs.size(); ++k)
    check_out("graph", outs[k], g.tensors[static_cast<std::size_t>(g.outputs[k])].shape,
              g.tensors[static_cast<std::size_t>(g.outputs[k])].dtype);

  ++impl_->stats.executions;
  OutSet* set = captured && p.bind_outputs ? &st.sets[set_index] : nullptr;
  const ExecutionPolicy base = current_policy();
  ExecutionPolicy pol[2] = {step_policy(base, p, DeviceKind::cpu, captured),
                            step_policy(base, p, DeviceKind::cuda, captured)};

  // ---- the table of this call -----------------------------------------------------------------
  std::vector<Tensor>& cur = st.cur;
  for (std::size_t id = 0; id < g.tensors.size(); ++id) {
    const Slot sl = p.slot[id];
    if (sl == Slot::input) {
      const Tensor& t = *given[id];
      const bool bind = captured && !st.staged_inputs && t.device() == p.device &&
                        t.device_index() == p.gpu_index && t.is_contiguous();
      if (captured && !bind) {
        t.copy_to(st.fixed[id]);  // into the fixed staging slot (queued on the stream)
        cur[id] = st.fixed[id];
      } else {
        cur[id] = t;
      }
    } else if (sl == Slot::output) {
      for (std::size_t k = 0; k < g.outputs.size(); ++k)
        if (g.outputs[k] == static_cast<int>(id)) cur[id] = set ? set->outs[k] : outs[k];
    } else {
      cur[id] = st.fixed[id];
    }
  }
  // Views of graph inputs: over the caller's tensor (contiguous: a strided input with views
  // is copied once here) or its staging slot.
  for (std::size_t id = 0; id < g.tensors.size(); ++id) {
    if (p.slot[id] != Slot::view) continue;
    const std::size_t root = static_cast<std::size_t>(g.view_base[id]);
    if (p.slot[root] != Slot::input) continue;
    if (!cur[root].is_contiguous()) cur[root] = cur[root].contiguous();
    cur[id] = cur[root].view(g.tensors[id].shape, g.view_strides[id], g.view_offset[id]);
  }
  auto work = [&] {
    for (const Step& s : g.steps) run_step(s, cur, pol[s.device == DeviceKind::cpu ? 0 : 1]);
  };

  // Through the seam: a captured GPU plan (a CUDA graph), or a CPU plan (DirectGraph runs the
  // work). Everything else (eager mode, plans that cross devices or hold a step that
  // synchronises) runs the steps directly.
  const bool seam = captured || (graph_mode && p.opts.use_graph && p.device == DeviceKind::cpu &&
                                 !p.summary.crosses_devices);
  if (!seam) {
    work();
    ++impl_->stats.eager_runs;
  } else {
    Backend& be = get_backend(p.device);
    if (captured && !st.warmed) {
      work();  // first use outside the capture: one-time set-up (algorithm searches) may sync
      be.synchronize();
      st.warmed = true;
      ++impl_->stats.eager_runs;
    } else {
      std::unique_ptr<CapturedGraph>& graph = set ? set->graph : st.graph;
      if (!graph) graph = be.capture_graph(st.key);
      // What the recording uses besides its fixed buffers: the arena (unbound graph outputs
      // live there), the bound outputs and the inputs bound in place (staged ones are inside
      // the arena).
      GraphBinding binding;
      if (captured) {
        binding.add(st.arena[static_cast<int>(p.device)].data());
        if (set)
          for (const Tensor& o : set->outs) binding.add(o.data());
        for (int id : g.inputs) {
          const Tensor& t = cur[static_cast<std::size_t>(id)];
          if (t.data() != st.fixed[static_cast<std::size_t>(id)].data() && !binding.add(t.data()))
            throw_value("graph", "execute: internal: the binding does not fit");
        }
      }
      const std::uint64_t rec = graph->stats().records;
      graph->replay(work, binding);
      ++impl_->stats.replays;
      impl_->stats.records += graph->stats().records - rec;
    }
  }
  // Captured plans keep unbound outputs in the arena, bound ones in set 0 unless handed out:
  // copy them out (a download for host outs).
  for (std::size_t k = 0; k < g.outputs.size(); ++k) {
    const int id = g.outputs[k];
    const Slot sl = p.slot[static_cast<std::size_t>(id)];
    if (sl == Slot::arena || sl == Slot::view || (set && !hand_out))
      cur[static_cast<std::size_t>(id)].copy_to(outs[k]);
    // The table lets go of the outputs: a handed-out set is free again once the caller drops it.
    cur[static_cast<std::size_t>(id)] = Tensor();
  }
  if (hand_out) ++impl_->stats.outputs_handed_out;
  if (on_gpu) get_backend(p.device).synchronize();
}

std::vector<Tensor> GraphIR::execute(const std::vector<std::pair<std::string, Tensor>>& inputs,
                                     bool graph_mode) {
  std::vector<Tensor> outs;
  execute_into(inputs, outs, graph_mode);
  return outs;
}

}  // namespace lc
