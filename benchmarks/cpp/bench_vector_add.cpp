// bench_vector_add: vector_add through the C++ API on resident tensors (64K .. 64M floats).
#include "bench_common.h"

namespace {

void vector_add(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t n = a[0];
  lc::Tensor x = lcbench::randn({n}, dev, 1), y = lcbench::randn({n}, dev, 2), out = lcbench::empty({n}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::elementwise_into("vector_add", x, &y, 1.0f, out, p); }, 0.0,
                      3.0 * 4.0 * n);
}

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("vector_add", {"n"},
                         {{1 << 16}, {1 << 18}, {1 << 20}, {1 << 22}, {1 << 26}}, vector_add);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
