// bench_matmul: matmul2d and linear through the C++ API on resident tensors (CPU and CUDA rows).
// Usage: bench_matmul [--benchmark_format=json] [--benchmark_out=FILE] [--benchmark_filter=...]
#include "bench_common.h"

namespace {

using lcbench::empty;
using lcbench::randn;

void matmul(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t m = a[0], k = a[1], n = a[2];
  lc::Tensor x = randn({m, k}, dev, 1), w = randn({k, n}, dev, 2), out = empty({m, n}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev, a[3] ? lc::Precision::tf32 : lc::Precision::fp32);
  lcbench::timed_loop(st, dev, [&] { lc::matmul2d_into(x, w, out, p); }, 2.0 * m * k * n);
}

void linear(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t m = a[0], in = a[1], o = a[2];
  lc::Tensor x = randn({m, in}, dev, 1), w = randn({o, in}, dev, 2, 0.03f), b = randn({o}, dev, 3),
             out = empty({m, o}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::linear_into(x, w, &b, lc::Activation::none, out, p); }, 2.0 * m * in * o);
}

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("matmul2d", {"m", "k", "n", "tf32"},
                         {{256, 256, 256, 0}, {896, 896, 896, 0}, {1024, 1024, 1024, 0},
                          {2048, 2048, 2048, 0}, {4096, 4096, 4096, 0}, {4096, 1024, 4096, 0},
                          {1024, 1024, 1024, 1}, {4096, 4096, 4096, 1}},
                         matmul);
  lcbench::register_both("linear", {"batch", "in", "out"},
                         {{1024, 1024, 512}, {2048, 1024, 512}, {4096, 1024, 1024}}, linear);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
