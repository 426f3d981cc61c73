// Shared helpers of the Google Benchmark binaries (bench_*.cpp): random tensors on a device, the
// policy that pins an op to that device, and the timed loop.
//
// Timing: every benchmark uses manual time. One iteration is the op (on resident tensors, output
// preallocated, `_into` form) followed by lc::synchronize(), measured with steady_clock: the same
// "call + sync" the Python suites time in resident mode, so the numbers compare directly. (The
// runtime's CUDA stream is internal, so CUDA events recorded from here would not be ordered with
// its work; synchronising wall clock is exact for "call returns with its work done".)
// CUDA rows skip themselves (SkipWithError) when no CUDA device is usable.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "lightning_core/ops.h"
#include "lightning_core/policy.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"

namespace lcbench {

inline const char* dev_name(lc::DeviceKind d) { return d == lc::DeviceKind::cuda ? "cuda" : "cpu"; }

// Random normal float32 data (scaled), uploaded to `dev`.
inline lc::Tensor randn(const std::vector<std::int64_t>& shape, lc::DeviceKind dev, unsigned seed,
                        float scale = 1.0f) {
  lc::Tensor host = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  float* p = host.data_as<float>();
  for (std::int64_t i = 0; i < host.numel(); ++i) p[i] = nd(g);
  return dev == lc::DeviceKind::cpu ? host : host.to(dev);
}

inline lc::Tensor empty(const std::vector<std::int64_t>& shape, lc::DeviceKind dev) {
  return lc::Tensor::empty(shape, lc::DType::f32, dev);
}

// Runs on `dev`; results stay where they are computed (download only on the CPU, where the policy
// requires it: there is nothing to download).
inline lc::ExecutionPolicy policy_on(lc::DeviceKind dev, lc::Precision prec = lc::Precision::fp32) {
  lc::ExecutionPolicy p;
  p.device = dev == lc::DeviceKind::cuda ? lc::DeviceRequest::cuda : lc::DeviceRequest::cpu;
  p.download = dev == lc::DeviceKind::cpu;
  p.precision = prec;
  return p;
}

// True when the row can run; otherwise marks it skipped.
inline bool device_ready(benchmark::State& st, lc::DeviceKind dev) {
  if (dev == lc::DeviceKind::cuda && !lc::cuda_available()) {
    st.SkipWithError("CUDA unavailable (no device or no CUDA backend in this build)");
    return false;
  }
  return true;
}

// The timed loop: warm-up calls, then per iteration op + lc::synchronize() by steady_clock.
template <class F>
void timed_loop(benchmark::State& st, F&& op, double flops = 0.0, double bytes = 0.0) {
  try {
    for (int i = 0; i < 3; ++i) op();
    lc::synchronize();
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    op();
    lc::synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    st.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
  if (flops > 0) st.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  if (bytes > 0) st.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}

using BenchFn = std::function<void(benchmark::State&, lc::DeviceKind, const std::vector<std::int64_t>&)>;

// Registers `name/<cpu|cuda>/<arg>:<v>...` for both devices and every argument set.
inline void register_both(const std::string& name, const std::vector<std::string>& arg_names,
                          const std::vector<std::vector<std::int64_t>>& arg_sets, BenchFn fn) {
  for (lc::DeviceKind dev : {lc::DeviceKind::cpu, lc::DeviceKind::cuda}) {
    for (const auto& args : arg_sets) {
      std::string full = name + "/" + dev_name(dev);
      for (std::size_t i = 0; i < args.size(); ++i)
        full += "/" + (i < arg_names.size() ? arg_names[i] : "arg") + ":" + std::to_string(args[i]);
      benchmark::RegisterBenchmark(full.c_str(), [fn, dev, args](benchmark::State& st) {
        if (!device_ready(st, dev)) return;
        fn(st, dev, args);
      })->UseManualTime()->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace lcbench
