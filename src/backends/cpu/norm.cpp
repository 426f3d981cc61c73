// Row-wise layernorm and softmax on the CPU.
//
// Both are two-pass per row (mean then centred variance; max then exp-sum), which is as
// stable as Welford for fp32 rows that fit in cache and keeps every loop vectorisable.
// Rows go to the pool only when the tensor is large (>= kParallelElems): below that a
// worker wake-up (~10-20 us) costs more than the whole op.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

constexpr i64 kParallelElems = i64{1} << 18;
constexpr i64 kTaskElems = i64{1} << 15;  // elements per task once threaded

// 8 partial sums: vectorisable, and pairwise-ish summation also halves the rounding error
// growth of a single running sum over long rows.
inline float sum8(const float* x, i64 n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) s[u] += x[j + u];
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; j < n; ++j) t += x[j];
  return t;
}

// sum of (x - shift) and of (x - shift - mean)^2, each with 8 partial sums.
inline float shifted_sum8(const float* x, i64 n, float shift) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) s[u] += x[j + u] - shift;
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; j < n; ++j) t += x[j] - shift;
  return t;
}

inline float centred_sq_sum8(const float* x, i64 n, float shift, float mean) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) {
      const float d = (x[j + u] - shift) - mean;
      s[u] += d * d;
    }
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; j < n; ++j) t += ((x[j] - shift) - mean) * ((x[j] - shift) - mean);
  return t;
}

template <class RowFn>
void for_rows(i64 rows, i64 cols, RowFn&& row) {
  auto body = [&](i64 lo, i64 hi) {
    for (i64 r = lo; r < hi; ++r) row(r);
  };
  if (rows * cols < kParallelElems) {
    body(0, rows);
  } else {
    parallel_for(0, rows, std::max<i64>(1, kTaskElems / std::max<i64>(cols, 1)), body);
  }
}

}  // namespace

void layernorm(const LayerNormArgs& p) {
  if (p.rows <= 0 || p.cols <= 0) return;
  const i64 n = p.cols;
  for_rows(p.rows, n, [&](i64 r) {
    const float* x = p.x + r * n;
    float* y = p.out + r * n;
    // Work relative to x[0]: for rows with a large common offset (activations around 100,
    // say) x - shift is exact and small, so the mean is summed and represented without the
    // offset's rounding error (an fp32 mean near 100 alone is off by up to 4e-6).
    const float shift = x[0];
    const float mean = shifted_sum8(x, n, shift) / static_cast<float>(n);  // of x - shift
    const float var = centred_sq_sum8(x, n, shift, mean) / static_cast<float>(n);
    const float inv = 1.0f / std::sqrt(var + p.eps);
    // Separate loops per optional operand keep each one branch-free and vectorised; the
    // stores to y come last, so out may alias x.
    if (p.gamma && p.beta) {
      for (i64 c = 0; c < n; ++c) y[c] = ((x[c] - shift) - mean) * inv * p.gamma[c] + p.beta[c];
    } else if (p.gamma) {
      for (i64 c = 0; c < n; ++c) y[c] = ((x[c] - shift) - mean) * inv * p.gamma[c];
    } else if (p.beta) {
      for (i64 c = 0; c < n; ++c) y[c] = ((x[c] - shift) - mean) * inv + p.beta[c];
    } else {
      for (i64 c = 0; c < n; ++c) y[c] = ((x[c] - shift) - mean) * inv;
    }
  });
}

void softmax(const SoftmaxArgs& p) {
  if (p.rows <= 0 || p.cols <= 0) return;
  const i64 n = p.cols;
  for_rows(p.rows, n, [&](i64 r) {
    const float* x = p.x + r * n;
    float* y = p.out + r * n;
    float mx = x[0];
    for (i64 c = 1; c < n; ++c) mx = x[c] > mx ? x[c] : mx;
    for (i64 c = 0; c < n; ++c) y[c] = fast_exp(x[c] - mx);
    const float inv = 1.0f / sum8(y, n);
    for (i64 c = 0; c < n; ++c) y[c] *= inv;
  });
}

}  // namespace lc::cpu
