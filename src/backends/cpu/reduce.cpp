// Whole-tensor reductions of the CPU backend: sum_squares (Backend::sum_squares), the training
// step's MSE loss. Accumulates in float64 over fixed blocks of kBlock elements whose partial
// sums are added in block order, so the result does not depend on the thread count.
#include <cstdint>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_convert.h"
#include "backends/cpu/thread_pool.h"

namespace lc::cpu {

namespace {

constexpr std::int64_t kBlock = 1 << 16;

// sum of squares of x[lo, hi) in float64; 16-bit values are widened through a float32 chunk.
double block_sum_squares(const void* x, DType t, std::int64_t lo, std::int64_t hi) {
  double acc = 0.0;
  switch (t) {
    case DType::f64: {
      const double* p = static_cast<const double*>(x);
      for (std::int64_t i = lo; i < hi; ++i) acc += p[i] * p[i];
      return acc;
    }
    case DType::f32: {
      const float* p = static_cast<const float*>(x);
      for (std::int64_t i = lo; i < hi; ++i) {
        const double v = p[i];
        acc += v * v;
      }
      return acc;
    }
    default: {  // f16 / bf16
      float buf[1024];
      const auto* p = static_cast<const std::uint16_t*>(x);
      for (std::int64_t i = lo; i < hi; i += 1024) {
        const std::int64_t m = hi - i < 1024 ? hi - i : 1024;
        widen_to_f32(t, p + i, buf, m);
        for (std::int64_t j = 0; j < m; ++j) {
          const double v = buf[j];
          acc += v * v;
        }
      }
      return acc;
    }
  }
}

}  // namespace

double sum_squares(const void* x, DType t, std::int64_t n) {
  if (n <= 0) return 0.0;
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  if (blocks == 1) return block_sum_squares(x, t, 0, n);
  std::vector<double> part(static_cast<std::size_t>(blocks), 0.0);
  parallel_for(0, blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b)
      part[static_cast<std::size_t>(b)] =
          block_sum_squares(x, t, b * kBlock, b + 1 == blocks ? n : (b + 1) * kBlock);
  });
  double acc = 0.0;
  for (double v : part) acc += v;
  return acc;
}

}  // namespace lc::cpu
