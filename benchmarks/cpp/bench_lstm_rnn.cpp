// bench_lstm_rnn: one LSTM layer (lc::lstm_into, torch.nn.LSTM's layout) on resident tensors
// with preallocated outputs, float32 and bfloat16. The reference size is seq 128,
// batch 32, hidden 512, input 512 (the Python suite, benchmarks/python/ml_bench.py, times the same
// shapes next to torch.nn.LSTM / cuDNN); smaller rows show the per-step overhead. On CUDA the
// step loop replays as one captured graph after the warm-up calls (LC_LSTM_GRAPH=0: eager).
// flops: 2 * T * B * 4H * (I + H) (the two GEMMs; the pointwise pass is not counted).
#include <cmath>

#include "bench_common.h"

namespace {

using lcbench::randn;

void lstm(benchmark::State& st, lc::DeviceKind dev, const std::vector<std::int64_t>& a) {
  const std::int64_t T = a[0], B = a[1], I = a[2], H = a[3];
  const lc::DType dt = a[4] ? lc::DType::bf16 : lc::DType::f32;
  const float k = 1.0f / std::sqrt(static_cast<float>(H));
  auto make = [&](const std::vector<std::int64_t>& shape, unsigned seed, float scale) {
    lc::Tensor t = randn(shape, lc::DeviceKind::cpu, seed, scale).astype(dt);
    return dev == lc::DeviceKind::cpu ? t : t.to(dev);
  };
  lc::Tensor x = make({T, B, I}, 1, 1.0f), h0 = make({B, H}, 2, 0.5f), c0 = make({B, H}, 3, 1.0f),
             w_ih = make({4 * H, I}, 4, k), w_hh = make({4 * H, H}, 5, k),
             b_ih = make({4 * H}, 6, k), b_hh = make({4 * H}, 7, k);
  lc::Tensor y = lc::Tensor::empty({T, B, H}, dt, dev), h_n = lc::Tensor::empty({B, H}, dt, dev),
             c_n = lc::Tensor::empty({B, H}, dt, dev);
  const lc::ExecutionPolicy p = lcbench::policy_on(dev);
  lcbench::timed_loop(st, dev, [&] {
    lc::lstm_into(x, h0, c0, w_ih, w_hh, &b_ih, &b_hh, y, h_n, c_n, false, p);
  }, 2.0 * T * B * 4.0 * H * (I + H));
}

[[maybe_unused]] const bool registered = [] {
  lcbench::register_both("lstm", {"seq", "batch", "input", "hidden", "bf16"},
                         {{128, 32, 512, 512, 0}, {128, 32, 512, 512, 1}, {32, 1, 128, 128, 0},
                          {512, 8, 256, 256, 0}},
                         lstm);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
