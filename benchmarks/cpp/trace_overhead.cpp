// Per-op cost of the runtime trace, disabled and enabled, measured in C++ (no Python in the
// loop). Standalone (not a Google Benchmark binary, not in CMake); build against a build tree:
//
//   g++ -O3 -std=c++20 -Iinclude -Isrc benchmarks/cpp/trace_overhead.cpp \
//       build-trace/liblightning_core_lib.a -lopenblas -lpthread -o /tmp/trace_overhead
//   /tmp/trace_overhead [cuda]     (drop -lopenblas if the build found no OpenBLAS; for a CUDA
//                                   build add the CUDA libraries, see docs/trace.md)
//
// Three measurements, each the fastest of 9 runs of 200k iterations (the
// machine's noise only ever adds time):
//  1. launch(): OpRunner::launch with an empty kernel, trace off / on, against a hand-written
//     launch without the trace lines (same NVTX hooks) -> the disabled cost of the trace lines
//     and the enabled cost of one op record.
//  2. A whole tiny op (relu_into on a [1] CPU tensor) with trace off / on -> what a user sees,
//     with device="cpu" and with the default device="auto".
//  3. trace_record() alone (an event copied into the ring).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/op_runner.h"
#include "lightning_core/ops.h"
#include "lightning_core/trace.h"

namespace {

template <class F>
double ns_per_iter(F&& f, int iters = 200000, int runs = 9) {
  std::vector<double> r;
  for (int k = 0; k < runs; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    const auto t1 = std::chrono::steady_clock::now();
    r.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / iters);
  }
  std::sort(r.begin(), r.end());
  return r.front();
}

volatile int g_sink = 0;

}  // namespace

int main(int argc, char** argv) {
  // `trace_overhead cuda`: the same on the GPU with resident tensors, download=False and
  // sync="batch" (so no per-op sync hides the trace cost).
  const bool cuda = argc > 1 && std::string(argv[1]) == "cuda";
  const lc::DeviceKind dev = cuda ? lc::DeviceKind::cuda : lc::DeviceKind::cpu;
  lc::ExecutionPolicy p;
  p.device = cuda ? lc::DeviceRequest::cuda : lc::DeviceRequest::cpu;
  if (cuda) {
    p.download = false;
    p.sync = lc::SyncMode::batch;
  }
  lc::Tensor hx = lc::Tensor::empty({1});
  hx.data_as<float>()[0] = 1.0f;
  lc::Tensor x = hx.to(dev), out = lc::Tensor::empty({1}, lc::DType::f32, dev);
  std::printf("device: %s\n", lc::to_string(dev));
  // Small by default: the enabled runs wrap the ring (steady state). argv[2] overrides it.
  lc::trace_set_capacity(argc > 2 ? std::stoul(argv[2]) : 4096);
  // argv[3] == "host": no device timing (CUDA events) -- host times only.
  if (argc > 3 && std::string(argv[3]) == "host") lc::trace_set_device_timing(false);

  // 1. launch() alone.
  lc::OpRunner r("bench", p);
  lc::WorkEstimate w;
  w.family = lc::OpFamily::elementwise;
  w.flops = 1;
  r.place(w, {&x});
  lc::Backend& be = r.backend();
  auto kernel = [](lc::Backend&) { g_sink = g_sink + 1; };
  const double bare = ns_per_iter([&] {
    be.range_push("bench");
    try {
      kernel(be);
    } catch (const lc::Error&) {
      throw;
    }
    be.range_pop();
  });
  lc::trace_enable(false);
  const double launch_off = ns_per_iter([&] { r.launch(kernel); });
  lc::trace_enable(true);
  const double launch_on = ns_per_iter([&] { r.launch(kernel); });
  lc::trace_enable(false);
  lc::trace_clear();

  // 2. A whole tiny op.
  auto op = [&] { lc::elementwise_into("relu", x, nullptr, 1.0f, out, p); };
  const double op_off = ns_per_iter(op);
  lc::trace_enable(true);
  const double op_on = ns_per_iter(op);
  lc::trace_enable(false);
  lc::trace_clear();

  // 2b. The same op with the default policy (device="auto": the placement decides).
  lc::ExecutionPolicy autop = p;
  autop.device = lc::DeviceRequest::automatic;
  auto op_auto = [&] { lc::elementwise_into("relu", x, nullptr, 1.0f, out, autop); };
  const double auto_off = ns_per_iter(op_auto);
  lc::trace_enable(true);
  const double auto_on = ns_per_iter(op_auto);
  lc::trace_enable(false);
  lc::trace_clear();

  // 3. trace_record() alone.
  const double rec = ns_per_iter([] {
    lc::TraceEvent e;
    e.op = "bench";
    lc::trace_record(std::move(e));
  });
  lc::trace_clear();

  std::printf("launch(), hand-written without trace lines : %7.1f ns\n", bare);
  std::printf("launch(), trace disabled                   : %7.1f ns  (disabled cost %+.1f ns)\n",
              launch_off, launch_off - bare);
  std::printf("launch(), trace enabled                    : %7.1f ns  (enabled cost %+.1f ns)\n",
              launch_on, launch_on - bare);
  std::printf("relu_into [1], trace disabled              : %7.1f ns\n", op_off);
  std::printf("relu_into [1], trace enabled               : %7.1f ns  (enabled cost %+.1f ns)\n",
              op_on, op_on - op_off);
  std::printf("relu_into [1] device=auto, trace disabled  : %7.1f ns\n", auto_off);
  std::printf("relu_into [1] device=auto, trace enabled   : %7.1f ns  (enabled cost %+.1f ns)\n",
              auto_on, auto_on - auto_off);
  std::printf("trace_record() alone                       : %7.1f ns\n", rec);
  return 0;
}
