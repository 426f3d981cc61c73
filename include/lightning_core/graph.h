// GraphIR: a graph of registered ops (src/ops/registry.h) over named tensors, validated, planned
// (fusion, whole-graph placement, liveness-based buffer reuse) and executed through the public
// op API; on a GPU as one recording of the backend's capture seam. docs/graph.md.
//
//   GraphIR g;
//   g.add_tensor("x", {8, 64}, DType::f32);
//   g.add_tensor("w", {128, 64}, DType::f32, /*constant=*/true, &w_value);
//   g.add_node("linear", {"x", "w"}, {"h"}, {{"activation", GraphAttr::of("gelu")}}, "fc1");
//   g.plan({});                      // validates first: ValueError naming the node
//   auto outs = g.execute({{"x", x}});
//
// Tensors: declared with add_tensor (graph inputs, constants, and optionally intermediates whose
// shape should be checked) or named only as a node's output (shape and dtype inferred by the
// op's OpDef). A non-constant tensor that no node produces is a graph input; the graph's outputs
// are set_outputs()'s names, else every produced tensor that no node reads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"

namespace lc {

// An attribute value (the OpDef says which type each attribute has). `none` stands for Python's
// None (an attribute whose default is None, e.g. attention's scale); `ints` a tuple of ints
// (the view nodes' shape / dims).
struct GraphAttr {
  enum class Kind : std::uint8_t { none, boolean, integer, real, string, ints };
  Kind kind = Kind::none;
  bool b = false;
  std::int64_t i = 0;
  double r = 0;
  std::string s;
  std::vector<std::int64_t> v;
  static GraphAttr of(bool v) { GraphAttr a; a.kind = Kind::boolean; a.b = v; return a; }
  static GraphAttr of(int v) { return of(static_cast<std::int64_t>(v)); }
  static GraphAttr of(std::int64_t v) { GraphAttr a; a.kind = Kind::integer; a.i = v; return a; }
  static GraphAttr of(double v) { GraphAttr a; a.kind = Kind::real; a.r = v; return a; }
  static GraphAttr of(const char* v) { GraphAttr a; a.kind = Kind::string; a.s = v; return a; }
  static GraphAttr of(std::string v) { GraphAttr a; a.kind = Kind::string; a.s = std::move(v); return a; }
  static GraphAttr of(std::vector<std::int64_t> v) { GraphAttr a; a.kind = Kind::ints; a.v = std::move(v); return a; }
  std::string repr() const;  // Python literal: True, 3, 0.5, 'gelu', None, (2, 3)
};
using GraphAttrs = std::vector<std::pair<std::string, GraphAttr>>;

// One finding of validate_report(): the pass that found it, the node (or tensor) it names, and
// a message that starts with "[graph] node 'name' (op): ...". Warnings do not fail validate().
struct GraphIssue {
  std::string pass;     // unknown_op, attribute, arity, dangling, producers, cycle, shape,
                        // dtype, unsupported, unused
  std::string where;    // the node's name (or the tensor's, for tensor-level findings)
  std::string message;
  bool error = true;
};

// The fusion rules, each with its own switch (all on by default). docs/graph.md, "Fusion".
struct GraphFusionOptions {
  bool linear_epilogue = true;    // linear / matmul(x, const W) + bias add + relu/gelu -> linear
  bool residual_epilogue = true;  // + add of a same-shape tensor -> linear's residual
  bool conv_activation = true;    // conv2d_nchw + relu/gelu -> conv2d_nchw(activation)
  bool layernorm_affine = true;   // layernorm + mul(gamma) + add(beta) -> layernorm(gamma, beta)
  bool residual_layernorm = true; // add(a, b) read only by a layernorm -> layernorm(a, residual=b)
  bool softmax_scale = true;      // vector_scale / add(mask) read only by a softmax -> softmax(scale, mask)
  bool scale_chain = true;        // vector_scale(vector_scale(x, a), b) -> vector_scale(x, a*b)
  bool qkv_projection = true;     // linears of one x with constant weights -> one GEMM, column views
  // attention -> permute(heads, rows) -> reshape -> linear: the attention writes [B, S, H, D]
  // (where it can write a strided out in place), the reshape's copy goes.
  bool attention_out_proj = true;
  // Chains / trees of elementwise nodes -> one elementwise_program. On by default since the
  // rewritten kernel measured faster than the unfused chain on the H200 (4394350: 6 ops on 1M
  // floats with a broadcast operand, one replay: 0.0335 ms fused against 0.0362 ms unfused; the
  // first kernel, registers in local memory, took 0.060) and ~3x faster on the CPU
  // (docs/graph.md, "Fusion").
  bool elementwise_chain = true;
  void set_all(bool on) {
    linear_epilogue = residual_epilogue = conv_activation = layernorm_affine = scale_chain =
        qkv_projection = residual_layernorm = softmax_scale = on;
    attention_out_proj = elementwise_chain = on;
  }
};

struct GraphPlanOptions {
  DeviceRequest device = DeviceRequest::automatic;
  GraphFusionOptions fusion;
  // Raise instead of falling back: a node its device cannot run, a plan that cannot be
  // captured as one graph on a GPU.
  bool strict = false;
  // Replay through the backend's capture seam (one CUDA graph on a GPU; direct on the CPU).
  bool use_graph = true;
  Precision precision = Precision::fp32;
  // A what-if for placement (tests, explain): plan as if a usable GPU with graphs were present.
  // Executing such a plan without a GPU raises (lc::Unavailable, a ValueError).
  bool assume_gpu = false;
  // cuda:N: the GPU a plan's GPU steps run on (device="cuda:1", a policy's device_index);
  // -1: the GPU the resident inputs live on, else this thread's current device.
  int device_index = -1;
  // Residency the placement assumes (docs/graph.md, "Residency"): per graph input the GPU it
  // lives on (-1 or not listed: host memory). A resident input costs nothing to read on its GPU
  // and a download to read on the CPU; a host input an upload to read on a GPU. execute() sets
  // this from the inputs it is given and plans again (cached per residency) when it differs.
  std::vector<std::pair<std::string, int>> resident_inputs;
  // The caller keeps the results on the device (policy download=False, or every input
  // resident): a GPU plan pays no download for them.
  bool results_on_device = false;
};

// A fusion rule's verdict on one candidate (applied or not, and why).
struct GraphFusion {
  std::string rule;                 // linear_epilogue, residual_epilogue, ...
  std::vector<std::string> nodes;   // the graph nodes involved (the anchor first)
  bool applied = false;
  std::string reason;
};

// One step of the plan: a (possibly fused) op on one device.
struct GraphStep {
  std::string name;                 // the anchor node's name
  std::string op;
  DeviceKind device = DeviceKind::cpu;
  std::vector<std::string> fused;   // graph nodes folded into this step (besides the anchor)
  std::string attrs;                // the step's effective attributes, "activation='gelu' ..."
  double cpu_us = 0, gpu_us = 0;    // the cost model's estimates for this step
};

struct GraphPlanSummary {
  std::vector<GraphStep> steps;     // topological order
  std::vector<GraphFusion> fusions;
  DeviceKind device = DeviceKind::cpu;  // where most steps run (all, unless the plan crosses)
  bool crosses_devices = false;
  std::string placement_reason;
  double est_cpu_us = 0, est_gpu_us = 0, est_plan_us = 0;  // all-CPU, all-GPU, the chosen plan
  // Memory: intermediate buffers packed by liveness into one arena per device.
  std::size_t peak_bytes = 0;       // the arena (the most live at once, with alignment)
  std::size_t naive_bytes = 0;      // one buffer per intermediate
  std::size_t constant_bytes = 0;   // constants (uploaded once per device)
  int buffers = 0;                  // intermediate tensors placed in the arena
  // View nodes (reshape, permute, ...): aliases of their root's memory (no step) and the
  // copies that remain steps (a reshape no strides express, contiguous() of a strided view).
  int view_aliases = 0, view_copies = 0;
  bool captured = false;            // replays through a real graph (CUDA)
  std::string capture_reason;
  int device_index = -1;            // the GPU of the plan's GPU steps (-1: none runs on a GPU)
  // The residency the placement assumed ("inputs x, y resident on cuda:0: no upload charged;
  // ..."): from GraphPlanOptions::resident_inputs / results_on_device.
  std::string residency;
  std::string to_string() const;   // the human-readable plan (explain())
};

class GraphIR {
 public:
  GraphIR();
  ~GraphIR();
  GraphIR(GraphIR&&) noexcept;
  GraphIR& operator=(GraphIR&&) noexcept;
  GraphIR(const GraphIR&) = delete;
  GraphIR& operator=(const GraphIR&) = delete;

  // Declares a tensor. A constant needs a value (here or set_constant) before plan(); it is
  // copied (contiguous, in host memory or where it lives) and uploaded once per device.
  void add_tensor(const std::string& name, const std::vector<std::int64_t>& shape, DType dtype,
                  bool constant = false, const Tensor* value = nullptr);
  // copy=false keeps `value` itself when it is contiguous (the caller promises not to change
  // it while the graph lives: model weights shared by several graphs); else a copy is kept.
  void set_constant(const std::string& name, const Tensor& value, bool copy = true);
  // Adds a node running registered op `op` (unknown op or attribute, a wrong attribute type or
  // a missing required attribute -> ValueError / TypeError naming the node). Inputs in the
  // OpDef's order; "" for an absent optional input. An empty name becomes "<op>_<index>".
  void add_node(const std::string& op, const std::vector<std::string>& inputs,
                const std::vector<std::string>& outputs, const GraphAttrs& attrs = {},
                const std::string& name = "");
  // The graph's outputs, in this order (default: produced tensors no node reads).
  void set_outputs(const std::vector<std::string>& names);

  std::vector<GraphIssue> validate_report() const;
  // Throws ValueError (TypeError when every error is a dtype error) listing every error.
  void validate() const;

  // Validates, fuses, places and packs buffers. Throws as validate(); with strict, also for
  // fallbacks. Replaces the previous plan.
  const GraphPlanSummary& plan(const GraphPlanOptions& opts = {});
  bool planned() const;
  const GraphPlanSummary& plan_summary() const;  // ValueError when not planned
  std::vector<GraphFusion> fusion_report() const;

  // Names, shapes and dtypes of the graph inputs (no producer, not constant) and outputs
  // (plan() first for outputs whose shape is inferred).
  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;
  std::vector<std::int64_t> tensor_shape(const std::string& name) const;
  DType tensor_dtype(const std::string& name) const;
  std::size_t num_nodes() const;

  // Runs the plan (plan() with defaults first when not planned). Inputs by name, any device,
  // any strides; every graph input is required (ValueError naming it and a node that reads it),
  // with its declared shape (ValueError) and dtype (TypeError). When the inputs' residency (the
  // GPU each lives on, or host memory) or `results_on_device` differs from what the plan
  // assumed, the graph is planned again with plan()'s options and this residency (kept: up to
  // kResidencyPlans plans per graph, least recently used dropped; plan_summary() then describes
  // the plan in use). Inputs on two GPUs, or on a GPU other than the plan's cuda:N, raise
  // ValueError naming the input, its node, both devices and the fix (as the eager ops). `outs` receives the outputs in
  // output_names() order: empty tensors are allocated (host memory unless `results_on_device`
  // and the plan ran on a GPU), defined ones are written in place (any device, their shape and
  // dtype). graph_mode=false runs the steps eagerly one by one (A/B), true through the seam.
  void execute_into(const std::vector<std::pair<std::string, Tensor>>& inputs,
                    std::vector<Tensor>& outs, bool graph_mode = true,
                    bool results_on_device = false);
  std::vector<Tensor> execute(const std::vector<std::pair<std::string, Tensor>>& inputs,
                              bool graph_mode = true);

  struct Stats {
    std::uint64_t executions = 0, replays = 0, records = 0, eager_runs = 0;
    std::uint64_t residency_plans = 0;  // plans execute() made for a new input residency
    // Captured calls whose results are the recording's own output buffers (a set of the ring,
    // handed out without a copy: docs/graph.md, "Results without a copy").
    std::uint64_t outputs_handed_out = 0;
  };
  static constexpr int kResidencyPlans = 4;
  Stats stats() const;

  struct Impl;
  const Impl& impl() const;  // the inside (src/graph/graph_internal.h; tests of the plan keys)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lc
