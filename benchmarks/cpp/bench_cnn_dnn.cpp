// bench_cnn_dnn: conv2d_nchw (3x3, stride 1, pad 1, bias) and a dense classifier layer through the
// C++ API on resident tensors.
#include "bench_common.h"

namespace {

using lcbench::empty;
using lcbench::randn;

void conv(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t n = a[0], c = a[1], h = a[2], w = a[3], oc = a[4];
  const lc::Activation act = a[5] ? lc::Activation::relu : lc::Activation::none;
  lc::Tensor x = randn({n, c, h, w}, dev, 1), wt = randn({oc, c, 3, 3}, dev, 2, 0.2f),
             b = randn({oc}, dev, 3), out = empty({n, oc, h, w}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::conv2d_nchw_into(x, wt, &b, 1, 1, 1, 1, act, out, p); },
                      2.0 * n * oc * h * w * c * 9);
}

void dense_relu(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t m = a[0], in = a[1], o = a[2];
  lc::Tensor x = randn({m, in}, dev, 1), w = randn({o, in}, dev, 2, 0.03f), b = randn({o}, dev, 3),
             out = empty({m, o}, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] { lc::linear_into(x, w, &b, lc::Activation::relu, out, p); }, 2.0 * m * in * o);
}

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("conv2d_3x3", {"n", "c", "h", "w", "oc", "relu"},
                         {{1, 3, 16, 16, 16, 0}, {1, 3, 24, 24, 16, 0}, {2, 3, 16, 16, 16, 0},
                          {1, 3, 28, 28, 16, 0}, {1, 3, 32, 32, 16, 0}, {2, 3, 32, 32, 16, 0},
                          {8, 64, 56, 56, 64, 0}, {8, 64, 56, 56, 64, 1}},
                         conv);
  lcbench::register_both("dense_relu", {"batch", "in", "out"},
                         {{1024, 1024, 512}, {4096, 1024, 1024}}, dense_relu);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
