// bench_attention: single-head attention2d through the C++ API on resident tensors.
#include "bench_common.h"

namespace {

void attention(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t seq = a[0], d = a[1];
  const bool causal = a[2] != 0;
  lc::Tensor q = lcbench::randn({seq, d}, dev, 1), k = lcbench::randn({seq, d}, dev, 2),
             v = lcbench::randn({seq, d}, dev, 3), out = lcbench::empty({seq, d}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::attention2d_into(q, k, v, out, causal, p); },
                      4.0 * seq * seq * d);
}

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("attention2d", {"seq", "head_dim", "causal"},
                         {{8, 16, 0}, {8, 32, 0}, {12, 12, 0}, {256, 64, 0}, {512, 64, 0},
                          {4096, 64, 0}, {4096, 64, 1}},
                         attention);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
