// The one place where "which device runs this op" is decided (CPU vs GPU crossover).
//
// Inputs: the policy's device request, where the op's data lives, and a work estimate. For an
// explicit request the answer is that device (or an lc::Unavailable error). For "auto":
//   1. data already on the GPU stays there (no transfers);
//   2. no usable GPU -> CPU;
//   3. otherwise the cheaper side by the cost model: CPU time = overhead + flops / cpu rate;
//      GPU time = launch + upload + flops / gpu rate + download + sync.
// The cost model's constants come from defaults, LC_* / CJ_* environment knobs
// (docs/environment.md) and an optional calibration; tests install a fake one.
#pragma once

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
};

struct CostModel {
  // Per-family sustained rates (GFLOP/s) and fixed overheads (µs).
  double cpu_gflops[static_cast<int>(OpFamily::count)] = {60, 20, 30, 4, 4};
  double gpu_gflops[static_cast<int>(OpFamily::count)] = {40000, 12000, 15000, 1000, 500};
  double cpu_overhead_us = 0.3;
  double gpu_launch_us = 8.0;   // launch + sync round trip
  double h2d_gbps = 12.0;       // pageable/pinned upload
  double d2h_gbps = 12.0;
  double conv_cpu_crossover_macs = 260000;  // CJ_CONV2D_CPU_CROSSOVER_MACS
  bool calibrated = false;

  double cpu_us(const WorkEstimate& w) const;
  double gpu_us(const WorkEstimate& w) const;
};

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

// ---- calibration (src/core/calibrate.cpp) -------------------------------------------------
// LC_CALIBRATE=0 turns calibration off (the defaults and knobs are used).
bool calibration_enabled();
// Measures the machine now (CPU rates per family from tiny runs; with a usable GPU also the
// launch+sync round trip, H2D/D2H bandwidth and GPU rates; with
// CJ_CONV2D_CPU_CROSSOVER_DYNAMIC=1 also the conv crossover), stores the result in the
// auto-tune cache keyed by the device fingerprints and installs it. Unless `force`, a cached
// result is reused without measuring. Returns the measured (or cached) values before knobs.
CostModel calibrate(bool force);
// Called by placement at the first "auto" decision with a GPU present: calibrates once per
// process (cache hit: no measurement) unless disabled or the model is fixed. Never throws.
void ensure_calibrated();

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

// Work estimate of an op from its argument shapes (what the op front-ends compute), for
// lc.explain_placement(): "matmul2d" a[m,k] b[k,n]; "linear" x[m,in] w[out,in];
// "attention2d" q k v; "conv2d_nchw" x w (stride / padding given); "conv_attention_nchw" x w;
// "layernorm" / "softmax" / elementwise names: x. Throws lc::ValueError for unknown ops or
// shapes of the wrong rank.
WorkEstimate estimate_work(const std::string& op, const std::vector<std::vector<std::int64_t>>& shapes,
                           int stride_h = 1, int stride_w = 1, int pad_h = 0, int pad_w = 0);

}  // namespace lc
