// bench_matrix_ops: elementwise and row-wise matrix ops through the C++ API on resident tensors:
// matrix_sub, vector_scale, relu, gelu, softmax, layernorm.
#include "bench_common.h"

namespace {

using lcbench::empty;
using lcbench::randn;

void binary(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a, const char* op) {
  lc::Tensor x = randn({a[0], a[1]}, dev, 1), y = randn({a[0], a[1]}, dev, 2), out = empty({a[0], a[1]}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::elementwise_into(op, x, &y, 1.0f, out, p); }, 0.0, 12.0 * a[0] * a[1]);
}

void unary(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a, const char* op) {
  lc::Tensor x = randn({a[0], a[1]}, dev, 1), out = empty({a[0], a[1]}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::elementwise_into(op, x, nullptr, 0.5f, out, p); }, 0.0, 8.0 * a[0] * a[1]);
}

void softmax(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  lc::Tensor x = randn({a[0], a[1]}, dev, 1), out = empty({a[0], a[1]}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::softmax_into(x, out, p); }, 0.0, 8.0 * a[0] * a[1]);
}

void layernorm(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  lc::Tensor x = randn({a[0], a[1]}, dev, 1), g = randn({a[1]}, dev, 2), b = randn({a[1]}, dev, 3),
             out = empty({a[0], a[1]}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::layernorm_into(x, &g, &b, 1e-5f, out, p); }, 0.0, 8.0 * a[0] * a[1]);
}

const std::vector<std::vector<std::int64_t>> kShapes = {{512, 512}, {1024, 1024}, {2048, 1024}};

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("matrix_sub", {"rows", "cols"}, kShapes,
                         [](auto& st, auto dev, const auto& a) { binary(st, dev, a, "matrix_sub"); });
  lcbench::register_both("vector_scale", {"rows", "cols"}, kShapes,
                         [](auto& st, auto dev, const auto& a) { unary(st, dev, a, "vector_scale"); });
  lcbench::register_both("relu", {"rows", "cols"}, kShapes,
                         [](auto& st, auto dev, const auto& a) { unary(st, dev, a, "relu"); });
  lcbench::register_both("gelu", {"rows", "cols"}, kShapes,
                         [](auto& st, auto dev, const auto& a) { unary(st, dev, a, "gelu"); });
  lcbench::register_both("softmax", {"rows", "cols"}, kShapes, softmax);
  lcbench::register_both("layernorm", {"rows", "cols"}, {{1024, 1024}, {2048, 1024}}, layernorm);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
