// The one place where "which device runs this op" is decided (CPU vs GPU crossover).
//
// Inputs: the policy's device request, where the op's data lives, and a work estimate. For an
// explicit request the answer is that device (or an lc::Unavailable error). For "auto":
//   1. data already on the GPU stays there (no transfers);
//   2. no usable GPU -> CPU;
//   3. upload="never" with host data -> CPU;
//   4. conv2d: the original's MAC crossover (CJ_CONV2D_CPU_CROSSOVER_MACS) while no fitted
//      CPU+GPU model exists or when the crossover was set explicitly; else rule 5;
//   5. otherwise the cheaper side by the cost model (per family f):
//        CPU time = cpu_overhead + cpu_family_overhead[f] + flops / cpu_rate[f]
//        GPU time = gpu_launch + gpu_family_overhead[f] + flops / gpu_rate[f]
//                 + uploads(f) * h2d_latency + bytes_in / h2d_bw     (only with host inputs)
//                 + d2h_latency + bytes_out / d2h_bw                 (only with host results)
//      where a copy of <= small_copy_bytes (per input: bytes_in / uploads) uses the small-copy
//      bandwidth (the direct, unstaged path) when one was measured.
// The cost model's constants come from defaults, a calibration (a two-point fit per family and
// side, calibrate.cpp) and LC_* / CJ_* environment knobs (docs/environment.md); tests install a
// fake one.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/types.h"

namespace lc {

enum class OpFamily : std::uint8_t { matmul = 0, attention, conv2d, norm, elementwise, count };
const char* to_string(OpFamily f);

struct WorkEstimate {
  OpFamily family = OpFamily::elementwise;
  double flops = 0;           // floating-point operations (2 per multiply-add)
  double host_bytes_in = 0;   // bytes that would have to be uploaded for a GPU placement
  double host_bytes_out = 0;  // bytes that would have to be downloaded for a GPU placement
  bool inputs_on_gpu = false; // some input already lives on the GPU
  double conv_macs = 0;       // conv2d only: multiply-accumulates (the original's crossover unit)
  // A pipeline's second stage (conv -> attention): its flops run at that family's rates and pay
  // its per-family overhead on either side; transfers stay those of the whole pipeline.
  OpFamily family2 = OpFamily::elementwise;
  double flops2 = 0;
};

// Upload copies a one-shot op of this family makes (matmul a,b; attention q,k,v; conv x,w;
// norm x; elementwise a,b): each pays the H2D latency once.
int typical_host_inputs(OpFamily f);

struct CostModel {
  static constexpr int kFamilies = static_cast<int>(OpFamily::count);
  // Per-family sustained rates (GFLOP/s): the slope of t(flops) = a + flops / r.
  double cpu_gflops[kFamilies] = {60, 20, 30, 4, 4};
  double gpu_gflops[kFamilies] = {40000, 12000, 15000, 1000, 500};
  // Per-family fixed costs (µs) on top of the shared ones below: the fitted intercept a minus
  // cpu_overhead_us (thread-pool dispatch, packing, ...) / minus gpu_launch_us (cuBLASLt or
  // cuDNN setup, several kernels, ...). Never negative.
  double cpu_family_overhead_us[kFamilies] = {0, 0, 0, 0, 0};
  double gpu_family_overhead_us[kFamilies] = {0, 0, 0, 0, 0};
  double cpu_overhead_us = 0.3;  // any CPU call (a 1-element op)
  double gpu_launch_us = 8.0;    // any GPU placement: launch + sync round trip of a tiny kernel
  // One-shot transfers: latency per copy + bytes / bandwidth (pageable host memory, staged).
  double h2d_gbps = 12.0;
  double d2h_gbps = 12.0;
  double h2d_latency_us = 2.0;
  double d2h_latency_us = 2.0;
  // Copies of at most small_copy_bytes (the CUDA backend's direct pageable cudaMemcpyAsync, no
  // pinned staging: staging.h kDirectBytes) run at their own, slower bandwidth. 0 = the same
  // as the large-copy bandwidth above. Measured on the H100 host: a 256 KiB one-shot copy took
  // ~35 us where latency + bytes / (8 MB bandwidth) predicted ~20 us.
  double h2d_small_gbps = 0;
  double d2h_small_gbps = 0;
  double small_copy_bytes = 256 * 1024;
  double conv_cpu_crossover_macs = 260000;  // CJ_CONV2D_CPU_CROSSOVER_MACS
  // The crossover was given explicitly (env knob, set_cost_model, or measured with
  // CJ_CONV2D_CPU_CROSSOVER_DYNAMIC=1): it decides conv2d even with a fitted model.
  bool conv_crossover_explicit = false;
  bool calibrated = false;      // CPU side measured (calibration ran or came from the cache)
  bool gpu_calibrated = false;  // GPU side measured too

  double cpu_us(const WorkEstimate& w) const;
  double gpu_us(const WorkEstimate& w) const;
  double transfer_us(const WorkEstimate& w) const;  // the transfer part of gpu_us
  // conv2d placement uses the MAC crossover (rule 4) rather than the model.
  bool conv_uses_crossover() const { return conv_crossover_explicit || !calibrated || !gpu_calibrated; }
};

// ---- the CostModel's fields, written once -----------------------------------------------------
// lc.cost_model() / set_cost_model (bind_policy.cpp), the calibration cache (calibrate.cpp) and
// the LC_* knobs (apply_env_knobs) walk these tables instead of listing the fields. The family
// names are to_string(OpFamily) (upper case in the knobs). Not here: conv_cpu_crossover_macs
// (its knobs and set_cost_model make the crossover explicit) and the flags.
enum class CostSide : std::uint8_t { none, cpu, gpu };  // which calibration measures (and caches) it
struct CostScalarField {
  const char* name;  // lc.cost_model() key and calibration-cache key
  double CostModel::*field;
  const char* env;   // the LC_* knob that overrides it (nullptr: none)
  bool positive;     // > 0 (rates, bandwidths); else >= 0 (times, sizes; small-copy 0 = unset)
  CostSide measured;
};
struct CostFamilyField {
  const char* name;          // lc.cost_model() key ({family: value})
  double (CostModel::*field)[CostModel::kFamilies];
  const char* env_prefix;    // + the upper-case family: LC_CPU_GFLOPS_MATMUL
  const char* cache_prefix;  // + the family: cpu_gflops_matmul
  bool positive;
  CostSide measured;
};
inline constexpr CostScalarField kCostScalarFields[] = {
    {"cpu_overhead_us", &CostModel::cpu_overhead_us, "LC_CPU_OVERHEAD_US", false, CostSide::cpu},
    {"gpu_launch_us", &CostModel::gpu_launch_us, "LC_GPU_LAUNCH_US", false, CostSide::gpu},
    {"h2d_gbps", &CostModel::h2d_gbps, "LC_H2D_GBPS", true, CostSide::gpu},
    {"d2h_gbps", &CostModel::d2h_gbps, "LC_D2H_GBPS", true, CostSide::gpu},
    {"h2d_latency_us", &CostModel::h2d_latency_us, "LC_H2D_LATENCY_US", false, CostSide::gpu},
    {"d2h_latency_us", &CostModel::d2h_latency_us, "LC_D2H_LATENCY_US", false, CostSide::gpu},
    {"h2d_small_gbps", &CostModel::h2d_small_gbps, "LC_H2D_SMALL_GBPS", false, CostSide::gpu},
    {"d2h_small_gbps", &CostModel::d2h_small_gbps, "LC_D2H_SMALL_GBPS", false, CostSide::gpu},
    {"small_copy_bytes", &CostModel::small_copy_bytes, nullptr, false, CostSide::none},
};
inline constexpr CostFamilyField kCostFamilyFields[] = {
    {"cpu_gflops", &CostModel::cpu_gflops, "LC_CPU_GFLOPS_", "cpu_gflops_", true, CostSide::cpu},
    {"gpu_gflops", &CostModel::gpu_gflops, "LC_GPU_GFLOPS_", "gpu_gflops_", true, CostSide::gpu},
    {"cpu_family_overhead_us", &CostModel::cpu_family_overhead_us, "LC_CPU_OVERHEAD_US_",
     "cpu_overhead_us_", false, CostSide::cpu},
    {"gpu_family_overhead_us", &CostModel::gpu_family_overhead_us, "LC_GPU_OVERHEAD_US_",
     "gpu_overhead_us_", false, CostSide::gpu},
};

// t(flops) = a_us + flops / (gflops * 1e3) through two measured points (f1, t1) and (f2, t2)
// (flops, µs; f2 > f1), clamped: a_us >= 0, gflops > 0, and the compute part at f2 is at least
// a quarter of t2 (a noisy, overhead-bound probe cannot produce an absurd rate).
struct LinearFit {
  double a_us = 0;
  double gflops = 1;
};
LinearFit fit_two_points(double f1, double t1_us, double f2, double t2_us);

// The model in force: defaults, then calibration (when it ran), then environment knobs (an
// explicitly set knob always wins over a measured value).
const CostModel& cost_model();
// Replace the model (tests, a fake model): fixed until reset_cost_model(); calibration never
// overrides a fixed model. Thread-safe with respect to later placements.
void set_cost_model(const CostModel& m);
void reset_cost_model();
bool cost_model_fixed();
// The defaults with the LC_* / CJ_* knobs of docs/environment.md applied on top of `base`.
CostModel apply_env_knobs(CostModel base);
// Installs a calibrated model (env knobs are applied on top); ignored while the model is fixed.
void install_calibrated_model(const CostModel& m);

// ---- calibration (src/runtime/calibrate.cpp) -------------------------------------------------
// LC_CALIBRATE=0 turns calibration off (the defaults and knobs are used).
bool calibration_enabled();
// Measures the machine now (per family and side a two-point fit of overhead + rate, each point
// the median of >= 7 runs after a warm-up; the CPU call overhead; with a usable GPU also the
// launch+sync round trip and H2D/D2H latency and bandwidth; with
// CJ_CONV2D_CPU_CROSSOVER_DYNAMIC=1 also the conv crossover), stores the result in the
// auto-tune cache keyed by the device fingerprints and installs it. Unless `force`, a cached
// result is reused without measuring. Returns the measured (or cached) values before knobs.
CostModel calibrate(bool force);
// Called by placement at the first "auto" decision with a GPU present: calibrates once per
// process (cache hit: no measurement) unless disabled or the model is fixed. Never throws.
void ensure_calibrated();

// The calibration's probes: per family and side (gpu), two sizes (which = 0 small, 1 medium) of
// the op that stands for the family (matmul2d, attention2d, conv2d_nchw 3x3 with padding 1,
// layernorm, vector_add), as registry arguments. `flops` is the op's OpDef estimate
// (estimate_work below), so the fitted rates are in the units placement divides by.
struct CalibrationProbe {
  OpFamily family = OpFamily::elementwise;
  const char* op = nullptr;                       // the registered op it measures
  std::vector<std::vector<std::int64_t>> shapes;  // its inputs, in OpDef::inputs order
  int pad = 0;                                    // conv padding (both sides)
  double flops = 0;
};
CalibrationProbe calibration_probe(OpFamily family, bool gpu, int which);

// Work estimates by op name and shapes: the op registry's OpDef::estimate (src/ops/work.cpp,
// documented in src/ops/work.h: explain_placement, lc.placement, the pipelines' chain
// decision). Declared on this floor so the calibration probes above use the op's own formula;
// defined above it, by the registry (same library).
WorkEstimate estimate_work(const std::string& op,
                           const std::vector<std::vector<std::int64_t>>& shapes, int stride_h = 1,
                           int stride_w = 1, int pad_h = 0, int pad_w = 0);

struct Placement {
  DeviceKind device = DeviceKind::cpu;
  bool fallback = false;     // a requested device could not run this op; ran elsewhere
  std::string reason;        // filled only when `explain` is true
};

// `gpu_can_run`: the GPU backend supports this op at these sizes (else CPU fallback).
// Queries the real CUDA backend for availability (and calibrates at the first auto use).
Placement choose_device(const char* op, const WorkEstimate& w, const ExecutionPolicy& p,
                        bool gpu_can_run = true, bool explain = false);

// The pure decision, for tests and "what if" queries: availability is given (`gpu_present`,
// `no_gpu_reason` for the explanation) and the model is passed in, so nothing is probed,
// calibrated or launched. choose_device() is this with the real backend and cost_model().
Placement choose_device_with(const char* op, const WorkEstimate& w, const ExecutionPolicy& p,
                             bool gpu_present, bool gpu_can_run, bool explain, const CostModel& m,
                             const std::string& no_gpu_reason = "no CUDA device");

// ---- chains of ops: one device, and the policies of their steps ------------------------------
// A chain runs several ops back to back with its intermediates kept where they were computed:
// lc.ffn (linear -> linear), lc.layernorm_linear (layernorm -> linear), lc.conv_attention_nchw
// (conv -> arrange -> attention) and its sessions. The rule, written once here and used by the
// C++ pipelines (src/pipelines/conv_attention.cpp) and, through lc._chain_device /
// lc._chain_policies, by the Python ones (python/lightning_core/api.py):
//
// Device (choose_chain_device): the whole chain runs on one device.
//   - An explicit request ("cpu" / "cuda") is the first block's op-level decision
//     (choose_device: honoured; ValueError/Unavailable when the device is missing; the CPU when
//     the first block cannot run on the GPU at these sizes).
//   - "auto": no usable GPU -> CPU; upload="never" with any input in host memory -> CPU (as a
//     single op would); otherwise the first block the op-level rule would send off the CPU
//     decides for the whole chain, else the CPU. Data already on the GPU counts for every block
//     (it stays there; no uploads are counted). Placing block by block instead would put a
//     light first block (a layernorm of host data) on the CPU and then upload its result for
//     the heavy block: the same bytes as uploading the input, plus a CPU pass and a round trip.
// Step policies (chain_policies), from the caller's policy and the chain's device:
//   - CPU: every step runs with device="cpu", upload="always", download=True,
//     sync="per_call", precision fp32 when bf16 was asked (a GPU-only precision); nothing moves.
//   - GPU: the last step follows the caller's policy with the device made explicit; the inner
//     steps keep their results on the device (download=False) and never synchronise
//     (sync="none": the last step's sync covers them).
struct ChainBlock {
  const char* op = nullptr;  // the block's op (errors and explanations name it)
  WorkEstimate work;         // its estimate (the op's OpDef), host_bytes_in its own inputs
  bool gpu_can_run = true;   // the CUDA backend supports it at these sizes (OpDef::supports)
};
// `blocks` non-empty, in chain order. `inputs_on_gpu`: some input of the chain lives on the GPU;
// `host_data`: some input lives in host memory. `gpu_present`: nullptr asks the real CUDA
// backend (and calibrates at the first "auto" use, like choose_device); else the assumed answer
// (tests, lc._chain_device(gpu_available=...)), with the model in force and nothing probed.
Placement choose_chain_device(std::span<const ChainBlock> blocks, const ExecutionPolicy& p,
                              bool inputs_on_gpu, bool host_data, const bool* gpu_present = nullptr,
                              bool explain = false);

struct ChainPolicies {
  ExecutionPolicy inner;  // every step but the last
  ExecutionPolicy last;   // the last step (the chain's result)
};
// `device`: the chain's device (cpu / cuda) or DeviceRequest::automatic when no decision could
// be made (the Python pipelines when a block's shapes were unreadable: each op then decides
// and raises its own error).
ChainPolicies chain_policies(const ExecutionPolicy& base, DeviceRequest device);
DeviceRequest request_for(DeviceKind d);  // the explicit request that runs on `d`

}  // namespace lc
