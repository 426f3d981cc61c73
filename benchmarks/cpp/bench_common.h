// Shared helpers of the Google Benchmark binaries (bench_*.cpp): random tensors on a device, the
// policy that pins an op to that device, and the timed loop.
//
// Timing: every benchmark uses manual time. One iteration is the op on resident tensors (output
// preallocated, `_into` form). CPU rows: steady_clock around op + lc::synchronize(). CUDA rows:
// the device time between two CUDA events recorded on the runtime's own stream around the op
// (Backend::mark / elapsed_ns, the trace's device clock), and the "call + sync" wall time the
// Python suites report in resident mode as the counter wall_us, so both compare directly.
// CUDA rows skip themselves (SkipWithError) when no CUDA device is usable.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
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

// The timed loop: warm-up calls, then per iteration op (+ sync); manual time as described above.
template <class F>
void timed_loop(benchmark::State& st, lc::DeviceKind dev, F&& op, double flops = 0.0,
                double bytes = 0.0) {
  try {
    for (int i = 0; i < 3; ++i) op();
    lc::synchronize();
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
    return;
  }
  lc::Backend& be = lc::get_backend(dev);
  double wall_s = 0.0;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t m0 = be.mark();
    op();
    const std::int64_t m1 = be.mark();
    lc::synchronize();
    const auto t1 = std::chrono::steady_clock::now();
    const double wall = std::chrono::duration<double>(t1 - t0).count();
    wall_s += wall;
    const double dev_ns = (m0 >= 0 && m1 >= 0) ? be.elapsed_ns(m0, m1) : -1.0;
    if (m0 >= 0) be.release_marks();
    st.SetIterationTime(dev_ns > 0 ? dev_ns * 1e-9 : wall);
  }
  if (dev == lc::DeviceKind::cuda && st.iterations() > 0)
    st.counters["wall_us"] = benchmark::Counter(wall_s * 1e6 / static_cast<double>(st.iterations()));
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
