// The planner: whole-graph placement from the cost model (src/runtime/placement.h) and
// liveness-based buffer packing.
//
// Placement. Per step the cost model gives a CPU time (cpu_us) and a GPU compute time (gpu_us
// without its launch round trip and transfers). A plan's cost is the sum of its steps' times,
// plus one GPU launch round trip (gpu_launch_us) per run of consecutive GPU steps (a captured
// graph, or a queue of launches, pays the host round trip once), plus a transfer (latency +
// bytes / bandwidth) for every tensor a step reads on the other device: host inputs uploaded,
// results downloaded, intermediates crossing. Constants are uploaded once per plan and cost
// nothing per run. The plan starts from the cheaper of all-CPU and all-GPU and then moves single
// steps to the other device while that lowers the cost: a chain stays on one device unless a
// crossing pays for itself. An explicit device puts every step there; a step that device cannot
// run (the OpDef's supports(): dtype, size limits) falls back to the CPU, or raises with strict.
//
// Buffers. Every intermediate (not an input, constant or graph output) lives in one arena per
// device at an offset chosen by first-fit over liveness intervals [producing step, last reading
// step], largest first: two tensors whose intervals do not overlap may share bytes. The arena's
// size is the reported peak; naive_bytes is one buffer per intermediate. Plans replayed as a
// CUDA graph also keep the graph outputs and a staging slot per input in the arena, so the
// recording's addresses stay fixed.
#include <algorithm>
#include <map>
#include <sstream>

#include "backends/backend.h"
#include "graph/graph_internal.h"
#include "lightning_core/errors.h"
#include "lightning_core/runtime.h"
#include "runtime/placement.h"

namespace lc::graph {

namespace {

double transfer_us(const CostModel& m, double bytes, bool up) {
  if (bytes <= 0) return 0;
  const double small = up ? m.h2d_small_gbps : m.d2h_small_gbps;
  const double large = up ? m.h2d_gbps : m.d2h_gbps;
  const double bw = bytes <= m.small_copy_bytes && small > 0 ? small : large;
  return (up ? m.h2d_latency_us : m.d2h_latency_us) + bytes / (bw * 1e3);
}

double nbytes(const TensorEntry& t) {
  double n = static_cast<double>(dtype_size(t.dtype));
  for (auto d : t.shape) n *= static_cast<double>(d);
  return n;
}

// The cost of an assignment (true = GPU) of the steps. `resident[id]`: graph input `id` lives
// on the GPU (free to read there, a download to read on the CPU); other inputs live in host
// memory (an upload to read on the GPU). Results a GPU step produces pay a download unless
// `results_on_device`.
double plan_cost(const Resolved& g, const std::vector<bool>& on_gpu, const CostModel& m,
                 const std::vector<bool>& resident, bool results_on_device) {
  double t = 0;
  bool prev_gpu = false;
  for (std::size_t i = 0; i < g.steps.size(); ++i) {
    const Step& s = g.steps[i];
    t += on_gpu[i] ? s.gpu_us : s.cpu_us;
    if (on_gpu[i] && !prev_gpu) t += m.gpu_launch_us;
    prev_gpu = on_gpu[i];
    for (int id : s.in) {
      if (id < 0) continue;
      const TensorEntry& te = g.tensors[static_cast<std::size_t>(id)];
      const int root = id < static_cast<int>(g.view_base.size()) && g.view_base[static_cast<std::size_t>(id)] >= 0
                           ? g.view_base[static_cast<std::size_t>(id)]
                           : id;
      // Constants (and views of them) are uploaded once per plan.
      if (g.tensors[static_cast<std::size_t>(root)].constant) continue;
      const int p = g.producer[static_cast<std::size_t>(id)];
      const bool src_gpu = p >= 0 ? on_gpu[static_cast<std::size_t>(p)]
                                  : resident[static_cast<std::size_t>(root)];  // graph inputs
      if (src_gpu != on_gpu[i]) t += transfer_us(m, nbytes(te), on_gpu[i]);
    }
  }
  if (!results_on_device) {
    for (int id : g.outputs) {
      const int p = g.producer[static_cast<std::size_t>(id)];
      if (p >= 0 && on_gpu[static_cast<std::size_t>(p)])
        t += transfer_us(m, nbytes(g.tensors[static_cast<std::size_t>(id)]), false);
    }
  }
  return t;
}

std::string us(double v) {
  std::ostringstream o;
  o.precision(3);
  o << v << " us";
  return o.str();
}

// The list "x, y" of the graph inputs `ids`.
std::string name_list(const Resolved& g, const std::vector<int>& ids) {
  std::string r;
  for (int id : ids) r += (r.empty() ? "" : ", ") + g.tensors[static_cast<std::size_t>(id)].name;
  return r;
}

const std::string& first_reader(const Resolved& g, int id) {
  for (const Step& s : g.steps)
    for (int x : s.in)
      if (x == id || (x >= 0 && g.view_base[static_cast<std::size_t>(x)] == id)) return s.name;
  return g.tensors[static_cast<std::size_t>(id)].name;
}

// Reads opts.resident_inputs into p.input_gpu (checked: graph inputs only, GPU indices >= -1).
void read_residency(Plan& p) {
  const Resolved& g = p.g;
  p.input_gpu.assign(g.inputs.size(), -1);
  p.results_on_device = p.opts.results_on_device;
  for (const auto& [name, gpu] : p.opts.resident_inputs) {
    std::size_t k = 0;
    while (k < g.inputs.size() && g.tensors[static_cast<std::size_t>(g.inputs[k])].name != name) ++k;
    if (k == g.inputs.size())
      throw_value("graph", "plan: resident input '" + name + "' is not a graph input; the inputs are " +
                               (g.inputs.empty() ? std::string("none") : name_list(g, g.inputs)));
    if (gpu < -1)
      throw_value("graph", "plan: resident input '" + name + "': GPU index " + std::to_string(gpu) +
                               " (use -1 for host memory, N for cuda:N)");
    p.input_gpu[k] = gpu;
  }
}

// The GPU a plan's GPU steps use: the request's cuda:N, else the resident inputs' GPU (they
// must share one, and it must be the requested one: the eager ops' rule, OpRunner::place),
// else this thread's current device.
int choose_gpu(const Plan& p) {
  const Resolved& g = p.g;
  int resident = -1, first = -1;
  for (std::size_t k = 0; k < g.inputs.size(); ++k) {
    const int gpu = p.input_gpu[k];
    if (gpu < 0) continue;
    if (resident < 0) {
      resident = gpu;
      first = g.inputs[k];
      continue;
    }
    if (gpu != resident) {
      const int id = g.inputs[k];
      throw_value("graph", "input '" + g.tensors[static_cast<std::size_t>(id)].name + "' (read by node '" +
                               first_reader(g, id) + "') is on " + place_name(DeviceKind::cuda, gpu) +
                               " but input '" + g.tensors[static_cast<std::size_t>(first)].name +
                               "' (read by node '" + first_reader(g, first) + "') is on " +
                               place_name(DeviceKind::cuda, resident) + "; move it with .to(\"" +
                               place_name(DeviceKind::cuda, resident) +
                               "\") (every GPU input of a graph must be on one device)");
    }
  }
  const int want = p.opts.device == DeviceRequest::cpu ? -1 : p.opts.device_index;
  if (want >= 0 && resident >= 0 && resident != want) {
    throw_value("graph", "input '" + g.tensors[static_cast<std::size_t>(first)].name + "' (read by node '" +
                             first_reader(g, first) + "') is on " + place_name(DeviceKind::cuda, resident) +
                             " but the plan runs on " + place_name(DeviceKind::cuda, want) +
                             " (device='" + place_name(DeviceKind::cuda, want) + "'); move it with .to(\"" +
                             place_name(DeviceKind::cuda, want) + "\") or plan with device='" +
                             place_name(DeviceKind::cuda, resident) + "'");
  }
  if (want >= 0) return want;
  if (resident >= 0) return resident;
  return cuda_available() ? lc::current_device(DeviceKind::cuda) : 0;
}

// "inputs x, y resident on cuda:0: no upload charged (a download where a CPU step reads them);
// input z in host memory: an upload where a GPU step reads it; results in host memory".
std::string residency_text(const Plan& p) {
  const Resolved& g = p.g;
  std::map<int, std::vector<int>> by_gpu;  // -1: host
  for (std::size_t k = 0; k < g.inputs.size(); ++k) by_gpu[p.input_gpu[k]].push_back(g.inputs[k]);
  std::string r;
  for (const auto& [gpu, ids] : by_gpu) {
    const bool one = ids.size() == 1;
    r += (r.empty() ? "" : "; ") + std::string(one ? "input " : "inputs ") + name_list(g, ids);
    if (gpu >= 0)
      r += " resident on " + place_name(DeviceKind::cuda, gpu) + ": no upload charged (a download where a CPU step reads " +
           (one ? "it)" : "them)");
    else
      r += std::string(" in host memory: an upload charged where a GPU step reads ") + (one ? "it" : "them");
  }
  r += (r.empty() ? "" : "; ") +
       std::string(p.results_on_device ? "results stay on the device (no download charged)"
                                       : "results in host memory (a download charged for those a GPU step produces)");
  return r;
}

}  // namespace

std::string place_name(DeviceKind k, int index) {
  std::string r = to_string(k);
  if (k != DeviceKind::cpu && index >= 0) {
    r += ':';
    r += std::to_string(index);
  }
  return r;
}

void place(Plan& p) {
  Resolved& g = p.g;
  GraphPlanSummary& sum = p.summary;
  const CostModel& m = cost_model();
  const std::size_t n = g.steps.size();
  std::vector<bool> gpu_ok(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    Step& s = g.steps[i];
    const OpArgs a = step_args(g, s);
    WorkEstimate w = s.def->work(a);
    w.host_bytes_in = w.host_bytes_out = 0;
    w.inputs_on_gpu = true;
    s.cpu_us = m.cpu_us(w);
    s.gpu_us = std::max(0.0, m.gpu_us(w) - m.gpu_launch_us);
    gpu_ok[i] = s.def->supports(DeviceKind::cuda, a);
  }
  read_residency(p);
  std::vector<bool> resident(g.tensors.size(), false);  // per tensor: a GPU-resident input
  for (std::size_t k = 0; k < g.inputs.size(); ++k)
    resident[static_cast<std::size_t>(g.inputs[k])] = p.input_gpu[k] >= 0;
  const bool rod = p.results_on_device;
  const int gpu = choose_gpu(p);  // also checks the inputs' GPUs (a CPU plan too: as eager)
  sum.residency = residency_text(p);
  std::vector<bool> on_gpu(n, false);
  const DeviceRequest req = p.opts.device;
  if (req == DeviceRequest::cpu) {
    sum.placement_reason = "device='cpu' requested";
  } else if (req == DeviceRequest::metal) {
    require_device(req, "graph");  // throws: not on this platform
  } else if (req == DeviceRequest::cuda) {
    if (!p.opts.assume_gpu) {
      require_device(req, "graph");  // lc::Unavailable without a GPU
      require_device_index(DeviceKind::cuda, gpu, "graph");  // cuda:N must exist
    }
    sum.placement_reason = "device='" + place_name(DeviceKind::cuda, p.opts.device_index) + "' requested";
    for (std::size_t i = 0; i < n; ++i) {
      on_gpu[i] = gpu_ok[i];
      if (!gpu_ok[i]) {
        const std::string msg = node_label(g.steps[i].name, g.steps[i].def->name) +
                                ": CUDA cannot run it at these dtypes/sizes (the op registry's "
                                "supports())";
        if (p.opts.strict) throw_value("graph", msg + "; strict mode does not fall back");
        sum.placement_reason += "; " + msg + ", so it runs on the CPU";
      }
    }
  } else if (!p.opts.assume_gpu && !cuda_available()) {
    sum.placement_reason = "device='auto': no usable GPU, every step on the CPU";
  } else {
    std::vector<bool> all_gpu = gpu_ok;
    const double c_cpu = plan_cost(g, on_gpu, m, resident, rod), c_gpu = plan_cost(g, all_gpu, m, resident, rod);
    if (c_gpu < c_cpu) on_gpu = all_gpu;
    double best = std::min(c_cpu, c_gpu);
    for (bool improved = true; improved;) {  // single-step moves while they pay
      improved = false;
      for (std::size_t i = 0; i < n; ++i) {
        if (!gpu_ok[i] && !on_gpu[i]) continue;
        on_gpu[i] = !on_gpu[i];
        const double c = plan_cost(g, on_gpu, m, resident, rod);
        if (c + 1e-9 < best) {
          best = c;
          improved = true;
        } else {
          on_gpu[i] = !on_gpu[i];
        }
      }
    }
    sum.placement_reason = "device='auto': cost model: all-CPU " + us(c_cpu) + ", all-GPU " +
                           us(c_gpu) + ", chosen plan " + us(best);
  }
  std::size_t n_gpu = 0;
  for (std::size_t i = 0; i < n; ++i) {
    g.steps[i].device = on_gpu[i] ? DeviceKind::cuda : DeviceKind::cpu;
    n_gpu += on_gpu[i] ? 1 : 0;
  }
  std::vector<bool> none(n, false), all = gpu_ok;
  sum.est_cpu_us = plan_cost(g, none, m, resident, rod);
  sum.est_gpu_us = plan_cost(g, all, m, resident, rod);
  sum.est_plan_us = plan_cost(g, on_gpu, m, resident, rod);
  sum.device = n_gpu * 2 > n ? DeviceKind::cuda : DeviceKind::cpu;
  sum.crosses_devices = n_gpu != 0 && n_gpu != n;
  p.device = sum.device;
  p.gpu_index = n_gpu > 0 ? gpu : -1;
  sum.device_index = p.gpu_index;
  // A GPU of an "auto" plan (the resident inputs' or the policy's cuda:N) must exist too.
  if (p.gpu_index >= 0 && !p.opts.assume_gpu && req != DeviceRequest::cuda)
    require_device_index(DeviceKind::cuda, p.gpu_index, "graph");

  // Capture: one recording of the whole plan through the backend's seam. A real graph needs a
  // single-device GPU plan of steps that never wait for the host (embedding checks its ids with
  // a synchronising download).
  const Backend& be = get_backend(p.device);
  if (!p.opts.use_graph) {
    sum.capture_reason = "use_graph=False: steps run one by one";
  } else if (p.device == DeviceKind::cpu) {
    sum.capture_reason = "CPU plan: the seam's DirectGraph runs the steps directly";
  } else if (sum.crosses_devices) {
    sum.capture_reason = "the plan crosses devices: steps run one by one";
  } else if (!be.graphs_supported() && !p.opts.assume_gpu) {
    sum.capture_reason = std::string("the ") + to_string(p.device) + " backend has no graphs";
  } else {
    bool ok = true;
    for (const Step& s : g.steps)
      if (s.def == &opdefs::embedding) {
        ok = false;
        sum.capture_reason = node_label(s.name, s.def->name) +
                             ": checks its ids with a synchronising download, which a capture "
                             "forbids; steps run one by one";
      }
    sum.captured = ok;
    if (ok)
      sum.capture_reason = "one CUDA graph per (graph, shapes, dtypes, device), on " +
                           place_name(DeviceKind::cuda, p.gpu_index);
  }
  if (p.opts.strict && p.opts.use_graph && p.device != DeviceKind::cpu && !sum.captured)
    throw_value("graph", "strict: the plan cannot be captured as one graph: " + sum.capture_reason);

  for (const Step& s : g.steps) {
    GraphStep st;
    st.name = s.name;
    st.op = s.def->name;
    st.device = s.device;
    st.fused = s.fused;
    st.attrs = s.attrs.describe(*s.def);
    st.cpu_us = s.cpu_us;
    st.gpu_us = s.gpu_us;
    sum.steps.push_back(std::move(st));
  }
}

void pack_buffers(Plan& p) {
  Resolved& g = p.g;
  GraphPlanSummary& sum = p.summary;
  const std::size_t nt = g.tensors.size();
  const std::size_t ns = g.steps.size();
  p.slot.assign(nt, Slot::arena);
  p.offset.assign(nt, 0);
  std::vector<bool> is_out(nt, false);
  for (int id : g.outputs) is_out[static_cast<std::size_t>(id)] = true;
  // Liveness: [first step that writes, last step that reads].
  std::vector<int> first(nt, -1), last(nt, -1);
  for (std::size_t i = 0; i < ns; ++i) {
    for (int id : g.steps[i].out) {
      first[static_cast<std::size_t>(id)] = static_cast<int>(i);
      last[static_cast<std::size_t>(id)] = std::max(last[static_cast<std::size_t>(id)], static_cast<int>(i));
    }
    for (int id : g.steps[i].in)
      if (id >= 0) last[static_cast<std::size_t>(id)] = static_cast<int>(i);
  }
  // A view (a column view, a view node's alias) keeps its root alive as long as the view is
  // read, to the end when the view is a graph output (copied out after the last step); a root
  // with views stays in the plan's memory (not the caller's output buffer, whose layout the
  // views cannot assume).
  std::vector<bool> has_views(nt, false);
  for (std::size_t id = 0; id < nt; ++id) {
    const int b = g.view_base[id];
    if (b < 0) continue;
    const std::size_t r = static_cast<std::size_t>(b);
    has_views[r] = true;
    last[r] = std::max(last[r], is_out[id] ? static_cast<int>(ns) : last[id]);
  }
  p.bind_outputs = sum.captured && g.outputs.size() <= kMaxBoundOutputs;
  for (int id : g.outputs)
    if (has_views[static_cast<std::size_t>(id)] || g.view_base[static_cast<std::size_t>(id)] >= 0)
      p.bind_outputs = false;
  for (std::size_t id = 0; id < nt; ++id) {
    const TensorEntry& t = g.tensors[id];
    if (t.constant) p.slot[id] = Slot::constant;
    else if (g.view_base[id] >= 0) p.slot[id] = Slot::view;
    else if (g.producer[id] < 0)
      p.slot[id] = std::find(g.inputs.begin(), g.inputs.end(), static_cast<int>(id)) != g.inputs.end()
                       ? Slot::input
                       : Slot::none;
    else if (is_out[id] && !has_views[id] && (!sum.captured || p.bind_outputs)) p.slot[id] = Slot::output;
  }
  // Constants some step reads (a matmul weight replaced by its transposed copy is not counted).
  for (std::size_t id = 0; id < nt; ++id)
    if (p.slot[id] == Slot::constant && last[id] >= 0) sum.constant_bytes += g.tensors[id].value.nbytes();

  // Per device: the tensors that live in its arena (a tensor lives where its producer runs;
  // captured plans stage their inputs in the GPU arena, live from the start).
  for (int dev = 0; dev < 2; ++dev) {
    struct Item {
      std::size_t id, bytes;
      int lo, hi;
    };
    std::vector<Item> items;
    for (std::size_t id = 0; id < nt; ++id) {
      const std::size_t bytes = align_up(static_cast<std::size_t>(nbytes(g.tensors[id])));
      if (p.slot[id] == Slot::arena) {
        const int prod = g.producer[id];
        if (static_cast<int>(g.steps[static_cast<std::size_t>(prod)].device) != dev) continue;
        const int hi = is_out[id] ? static_cast<int>(ns) : std::max(last[id], first[id]);
        items.push_back({id, bytes, first[id], hi});
        if (!is_out[id]) {
          sum.naive_bytes += bytes;
          ++sum.buffers;
        }
      } else if (p.slot[id] == Slot::input && sum.captured && dev == static_cast<int>(p.device)) {
        items.push_back({id, bytes, 0, last[id]});
      }
    }
    std::stable_sort(items.begin(), items.end(),
                     [](const Item& a, const Item& b) { return a.bytes > b.bytes; });
    std::vector<const Item*> placed;
    std::size_t top = 0;
    for (const Item& it : items) {
      // Candidate offsets: 0 and the end of every placed block whose lifetime overlaps.
      std::vector<std::pair<std::size_t, std::size_t>> busy;
      for (const Item* q : placed)
        if (q->lo <= it.hi && it.lo <= q->hi)
          busy.emplace_back(p.offset[q->id], p.offset[q->id] + q->bytes);
      std::sort(busy.begin(), busy.end());
      std::size_t off = 0;
      for (const auto& [b0, b1] : busy) {
        if (off + it.bytes <= b0) break;
        off = std::max(off, b1);
      }
      p.offset[it.id] = off;
      top = std::max(top, off + it.bytes);
      placed.push_back(&it);
    }
    p.arena_bytes[dev] = top;
  }
  sum.peak_bytes = p.arena_bytes[0] + p.arena_bytes[1];
}

std::string fmt_bytes(std::size_t b) {
  std::ostringstream o;
  if (b >= (1u << 20)) o << static_cast<double>(b) / (1 << 20) << " MiB";
  else if (b >= 1024) o << static_cast<double>(b) / 1024 << " KiB";
  else o << b << " B";
  return o.str();
}

}  // namespace lc::graph

namespace lc {

std::string GraphPlanSummary::to_string() const {
  std::ostringstream o;
  o << "plan: " << steps.size() << " step(s) on "
    << graph::place_name(device, device == DeviceKind::cpu ? -1 : device_index)
    << (crosses_devices ? " (crosses devices)" : "") << "\n";
  o << "placement: " << placement_reason << "\n";
  if (!residency.empty()) o << "residency: " << residency << "\n";
  o << "execution: " << (captured ? "captured graph" : "direct") << " (" << capture_reason << ")\n";
  o << "memory: peak " << graph::fmt_bytes(peak_bytes) << " for " << buffers
    << " intermediate(s) (one buffer each: " << graph::fmt_bytes(naive_bytes) << "), constants "
    << graph::fmt_bytes(constant_bytes) << "\n";
  if (view_aliases + view_copies > 0)
    o << "views: " << view_aliases << " alias(es) of their producer's memory (no step), "
      << view_copies << " copy step(s) (a layout no strides express)\n";
  o << "steps:\n";
  for (const GraphStep& s : steps) {
    o << "  " << s.name << ": " << s.op << " on "
      << graph::place_name(s.device, s.device == DeviceKind::cpu ? -1 : device_index);
    if (!s.attrs.empty()) o << " [" << s.attrs << "]";
    if (!s.fused.empty()) {
      o << " + fused";
      for (const std::string& f : s.fused) o << " " << f;
    }
    o << "\n";
  }
  if (!fusions.empty()) {
    o << "fusion:\n";
    for (const GraphFusion& f : fusions) {
      o << "  " << f.rule << " " << (f.applied ? "applied" : "not applied") << " (";
      for (std::size_t i = 0; i < f.nodes.size(); ++i) o << (i ? " -> " : "") << f.nodes[i];
      o << "): " << f.reason << "\n";
    }
  }
  return o.str();
}

}  // namespace lc
