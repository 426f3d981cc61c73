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

// The model in force: defaults + environment knobs (+ calibration when available).
const CostModel& cost_model();
// Replace the model (tests, calibration). Thread-safe with respect to later placements.
void set_cost_model(const CostModel& m);
void reset_cost_model();

struct Placement {
  DeviceKind device = DeviceKind::cpu;
  bool fallback = false;     // a requested device could not run this op; ran elsewhere
  std::string reason;        // filled only when `explain` is true
};

// `gpu_can_run`: the GPU backend supports this op at these sizes (else CPU fallback).
Placement choose_device(const char* op, const WorkEstimate& w, const ExecutionPolicy& p,
                        bool gpu_can_run = true, bool explain = false);

}  // namespace lc
