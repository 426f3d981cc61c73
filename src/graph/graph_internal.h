// The GraphIR's inside, shared by its files:
//   graph_ir.cpp   building and validation (resolve: names -> ids, registry inference)
//   fusion.cpp     the fusion rules (nodes -> steps); ew_chain.cpp the elementwise_chain rule
//   attention_proj.cpp  the attention_out_proj rule
//   views.cpp      the view nodes (reshape, permute, slice, ...) and their lowering to aliases
//   planner.cpp    topological order, whole-graph placement, liveness buffer packing
//   executor.cpp   running the steps through the public op API and the capture seam
// The graph floor sits above src/ops/ (it reads the op registry) and uses only the public op API
// (include/lightning_core/ops.h) and the backend seam (src/backends/backend.h).
#pragma once

#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lightning_core/ew_program.h"
#include "lightning_core/graph.h"
#include "ops/registry.h"

namespace lc {

class CapturedGraph;
struct CaptureKey;

namespace graph {

constexpr std::size_t kAlign = 256;  // arena offsets (cuBLASLt and vector loads like 16+)
inline std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

struct TensorEntry {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype = DType::f32;
  bool declared = false;  // add_tensor'ed (its shape and dtype are the user's word)
  bool constant = false;
  Tensor value;           // constants: the host (or device) value, contiguous
};

struct NodeEntry {
  std::string name;
  std::string op;
  const OpDef* def = nullptr;  // nullptr: unknown op (add_node refuses those; kept for safety)
  std::vector<std::string> inputs, outputs;
  GraphAttrs attrs;
};

// The attributes a step's op call needs, decoded once from GraphAttrs with the OpDef's defaults.
struct StepAttrs {
  Activation act = Activation::none;
  bool causal = false;
  float scale = 0.0f;  // 0: 1/sqrt(d)
  float eps = 1e-5f;
  float alpha = 1.0f;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  std::string approximate = "tanh";
  bool return_lse = false;
  bool batch_first = false;  // lstm
  // attention only (attention_out_proj): the step's output is the merged-heads [..., S, H, Dv]
  // buffer, written through its [..., H, S, Dv] view (heads_out_view).
  bool out_heads_merged = false;
  // elementwise_program: the parsed program (its `program` attribute, or what the
  // elementwise_chain rule built).
  EwProgram prog;
  // View nodes (views.cpp): reshape's shape / permute's dims; transpose's dim0, dim1; slice's
  // and select's dim, start, stop (kNone: Python's None, the end the step walks from / to),
  // step, index.
  std::vector<std::int64_t> ints;
  static constexpr std::int64_t kNone = INT64_MAX;
  static constexpr std::int64_t kNoStop = kNone;
  std::int64_t dim0 = 0, dim1 = 1, dim = 0, start = kNone, stop = kNone, step = 1, index = 0;
  std::string describe(const OpDef& d) const;
};

// An executable step: one op call (a node, or an anchor node with others folded into it).
struct Step {
  std::string name;
  const OpDef* def = nullptr;
  std::vector<int> in;   // tensor ids in OpDef input order; -1: absent optional input
  std::vector<int> out;  // tensor ids
  StepAttrs attrs;
  std::vector<std::string> fused;
  DeviceKind device = DeviceKind::cpu;
  double cpu_us = 0, gpu_us = 0;
};

// The resolved graph: ids instead of names, every tensor's shape and dtype known.
struct Resolved {
  std::vector<TensorEntry> tensors;  // the IR's tensors plus inferred ones
  std::unordered_map<std::string, int> ids;
  std::vector<Step> steps;           // one per node, in topological order
  std::vector<int> inputs, outputs;  // tensor ids
  std::vector<int> producer;         // per tensor: step index or -1 (a view: its base's)
  // Column views (qkv_projection): per tensor the tensor it is a view of (-1: none) and the
  // element offset of its first column; its shape is the base's with a narrower last dimension.
  std::vector<int> view_base;
  std::vector<std::int64_t> view_offset;
  // Per view tensor its strides in elements over its base (views.cpp's lower_views fills them
  // for column views and for the view nodes: reshape, permute, transpose, slice, select).
  // A view's base is never a view itself (views of views are composed onto the root).
  std::vector<std::vector<std::int64_t>> view_strides;
};

// Where each tensor lives during execution.
// `none`: no step reads or writes it (an intermediate fusion removed, an unused declaration).
// `view`: an alias of another tensor's memory (Resolved::view_base): a column view (fusion) or a
// view node (reshape, permute, transpose, slice, select).
enum class Slot : std::uint8_t { none, input, constant, arena, output, view };

struct Plan {
  Resolved g;                        // after fusion (steps) and with fusion's new tensors
  GraphPlanSummary summary;
  GraphPlanOptions opts;
  std::vector<Slot> slot;            // per tensor
  std::vector<std::size_t> offset;   // arena byte offset per tensor (Slot::arena / staged)
  std::size_t arena_bytes[2] = {0, 0};  // per device (cpu, cuda)
  DeviceKind device = DeviceKind::cpu;  // the device of the replayed graph (single-device plans)
  int gpu_index = -1;                   // cuda:N of the GPU steps (-1: no GPU step)
  // The residency the plan was made for (place() fills it from opts.resident_inputs): per
  // graph input (Resolved::inputs order) the GPU it lives on, -1: host memory.
  std::vector<int> input_gpu;
  bool results_on_device = false;
  // Captured plans whose outputs are plain tensors (no view reads them, none is a view) write
  // them in place into output buffers the executor binds: a small ring of output sets, each with
  // its own recording, so a replay's results are handed out without a copy (executor.cpp).
  // Otherwise a captured plan keeps its outputs in the arena and copies them out per call.
  bool bind_outputs = false;
};
// At most this many outputs are bound in place (the binding holds the arena, the outputs and
// the inputs bound in place: kMaxGraphBinding pointers).
constexpr std::size_t kMaxBoundOutputs = 8;

// Residency: where a call's inputs live and where its results go (the plan-cache key next to
// the plan's own options; docs/graph.md, "Residency").
struct Residency {
  std::vector<int> input_gpu;  // per graph input: the GPU it lives on, -1: host memory
  bool results_on_device = false;
  bool operator==(const Residency&) const = default;
};
inline bool plan_matches(const Plan& p, const Residency& r) {
  return p.input_gpu == r.input_gpu && p.results_on_device == r.results_on_device;
}
// "cpu", "cuda:1"
std::string place_name(DeviceKind k, int index);

// graph_ir.cpp
Resolved resolve(const std::vector<TensorEntry>& tensors, const std::vector<NodeEntry>& nodes,
                 const std::vector<std::string>& outputs, std::vector<GraphIssue>* issues);
StepAttrs decode_attrs(const OpDef& d, const GraphAttrs& attrs);
// The OpArgs of a step's inputs (shapes borrowed from `g`).
OpArgs step_args(const Resolved& g, const Step& s);
std::string node_label(const std::string& name, const char* op);  // "node 'fc1' (linear)"

// fusion.cpp: rewrites g.steps (and may add tensors: a transposed constant weight).
std::vector<GraphFusion> fuse(Resolved& g, const GraphFusionOptions& o);
// ew_chain.cpp: the elementwise_chain rule (fuse() runs it last): marks the steps it folds in
// `dead` and appends its findings to `report`.
void fuse_elementwise_chains(Resolved& g, const GraphFusionOptions& o, std::vector<bool>& dead,
                             std::vector<GraphFusion>& report);

// views.cpp: the view nodes (reshape, permute, transpose, slice, select, contiguous, expand). They are
// graph-local OpDefs, not registered ops (no kernel, no Python function of their own: the tracer
// records lc.Tensor's view methods). Until lower_views they are steps like any other (fusion
// sees them as readers); lower_views turns every one the strides allow into an alias (a view
// tensor of its root's memory, no step) and keeps a step only where a copy is needed (a reshape
// of a layout no strides express, contiguous() of a strided view), which the executor runs as
// a strided copy.
namespace viewdefs {
extern const OpDef reshape, permute, transpose, slice, select, contiguous, expand;
}
const OpDef* find_view_op(std::string_view name);
bool is_view_op(const OpDef* d);
// The result shape of view step `s` on an input of shape `in` (ValueError without the node's
// name: the caller adds it).
std::vector<std::int64_t> infer_view(const Step& s, const std::vector<std::int64_t>& in);
// After fusion: view steps -> aliases (Resolved::view_*) or copy steps.
void lower_views(Resolved& g, int* aliases = nullptr, int* copies = nullptr);
// The strides of a contiguous tensor of this shape.
std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape);

// attention_proj.cpp: the attention_out_proj rule (fuse() calls it last), its feature check
// (the attention writes a strided out in place; `why` says what is missing when not) and the
// attention's [..., H, S, Dv] view of a merged-heads [..., S, H, Dv] buffer (the executor).
void attention_out_proj(Resolved& g, const GraphFusionOptions& o, std::vector<GraphFusion>& report);
bool attention_strided_out(std::string* why);
bool attention_strided_out_native();  // the op takes the strided view itself (no forcing)
Tensor heads_out_view(const Tensor& merged);

// planner.cpp. place() reads opts.resident_inputs / results_on_device / device_index and
// raises ValueError for inputs on two GPUs or on a GPU other than the plan's cuda:N.
void place(Plan& p);
void pack_buffers(Plan& p);

// executor.cpp
struct ExecState;
void destroy_exec_state(ExecState* s);
// The capture key of a plan: topology, shapes, dtypes, precision, aliases and the GPU
// (cuda:N); never addresses.
CaptureKey capture_key(const Plan& p);

}  // namespace graph

struct GraphIR::Impl {
  std::vector<graph::TensorEntry> tensors;
  std::unordered_map<std::string, int> tensor_ids;
  std::vector<graph::NodeEntry> nodes;
  std::unordered_map<std::string, int> node_ids;
  std::vector<std::string> outputs;
  using ExecPtr = std::unique_ptr<graph::ExecState, void (*)(graph::ExecState*)>;
  // The plan in use (plan()'s, or the one execute() last ran: its residency's).
  std::unique_ptr<graph::Plan> plan;
  ExecPtr exec{nullptr, &graph::destroy_exec_state};
  // Plans of plan()'s options for other residencies, least recently used first (at most
  // GraphIR::kResidencyPlans - 1 besides `plan`), each with its buffers and recording.
  struct OtherPlan {
    std::unique_ptr<graph::Plan> plan;
    ExecPtr exec{nullptr, &graph::destroy_exec_state};
  };
  std::vector<OtherPlan> others;
  // Constants uploaded to a GPU, per (constant's name, cuda:N): shared by the residency plans
  // (their fusion is the same, so the names mean the same values), uploaded once per device.
  std::map<std::pair<std::string, int>, Tensor> device_constants;
  GraphIR::Stats stats;
  std::mutex exec_mu;  // execute_into: one call at a time (the per-call table is shared)
  // Drops the plans (and their buffers and recordings); waits for an execute in flight.
  void invalidate() {
    std::lock_guard<std::mutex> lock(exec_mu);
    exec.reset();
    plan.reset();
    others.clear();
    device_constants.clear();
  }
  // Makes the plan for residency `r` current (from `others`, else planned with the current
  // plan's options and `r`); the caller holds exec_mu. Throws (place()'s ValueError) leaving
  // the current plan as it was.
  void use_residency(const graph::Residency& r);
};

}  // namespace lc
