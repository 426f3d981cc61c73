// Row-wise layernorm and softmax on the CPU.
//
// Both are two-pass per row (mean then centred variance; max then exp-sum), which is as
// stable as Welford for fp32 rows that fit in cache. The row loops (norm_rows.inc) use explicit
// vectors and are compiled for SSE2 / AVX2+FMA / AVX-512, picked at run time (simd.h): the
// plain loops this replaced stayed scalar (a float max reduction and the clamps in fast_exp
// defeat g++'s vectoriser), e.g. softmax 64x768 took ~240 us.
// Rows go to the pool only when the tensor is large (>= kParallelElems): below that a
// worker wake-up (~10-20 us) costs more than the whole op.
//
// Storage dtypes: float32 rows go straight to the vector kernels. float16 / bfloat16 rows are
// widened into a per-thread float32 scratch block (<= kChunkElems, or one row), computed there
// by the same kernels in place, and rounded once into `out` (gamma / beta are widened once per
// call). float64 rows are computed in float64 by the plain two-pass loops below.
// LayerNormArgs::residual (the fused residual add) is summed into the row as it is read: into
// `out`'s row for float32 / float64 (then normalised there in place), into the float32 scratch
// block for 16-bit rows. softmax's fused scale and mask (SoftmaxArgs) the same way: x * scale +
// mask into `out`'s row, or into the float32 block (the 16-bit mask widened once per call).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>


#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_convert.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

constexpr i64 kParallelElems = i64{1} << 18;
constexpr i64 kTaskElems = i64{1} << 15;  // elements per task once threaded
// float32 scratch per thread for 16-bit rows: 32 KB (L1-sized) or one row when rows are longer.
constexpr i64 kChunkElems = i64{1} << 13;

#define LC_ISA_KERNEL "backends/cpu/norm_rows.inc"
#include "backends/cpu/isa_variants.inc"

using LayerNormFn = void (*)(const LayerNormArgs&, i64, i64);
using SoftmaxFn = void (*)(const SoftmaxArgs&, i64, i64);

LayerNormFn layernorm_kernel(int isa) {
  return LC_ISA_PICK(std::min(isa, simd_level()), layernorm_rows);
}

SoftmaxFn softmax_kernel(int isa) {
  return LC_ISA_PICK(std::min(isa, simd_level()), softmax_rows);
}

// Rows [0, rows) through fn, threaded over rows only when the tensor is large.
template <class Args, class Fn>
void run_rows(const Args& p, Fn fn) {
  if (p.rows * p.cols < kParallelElems) {
    fn(p, 0, p.rows);
  } else {
    parallel_for(0, p.rows, std::max<i64>(1, kTaskElems / std::max<i64>(p.cols, 1)),
                 [&](i64 lo, i64 hi) { fn(p, lo, hi); });
  }
}

// ---- float16 / bfloat16: widen into float32 scratch, compute, round once on store ---------

// Grow-only per-thread buffer: no allocation once it has reached the largest size used.
struct Scratch {
  std::unique_ptr<float[]> p;
  i64 n = 0;
  float* get(i64 need) {
    if (need > n) {
      p.reset(new float[static_cast<std::size_t>(need)]);
      n = need;
    }
    return p.get();
  }
};

// p has a 16-bit dtype; f32 is p with float32 gamma / beta (LayerNormArgs) already set. Each
// task widens blocks of its rows into its own scratch, runs the float32 row kernel in place
// (the kernels allow out == x) and narrows the block into p.out. A layernorm's residual is
// widened into the second half of the scratch and added to the block there (in float32).
template <class Args, class Fn>
void run_rows_16(const Args& p, const Args& f32, Fn fn) {
  const i64 n = p.cols;
  const std::size_t es = dtype_size(p.dtype);
  const i64 chunk = std::max<i64>(1, kChunkElems / n);
  const void* res = nullptr;
  if constexpr (requires { p.residual; }) res = p.residual;
  // softmax: scale and mask (f32 holds the mask widened once) applied to the float32 block
  float scale = 1.0f;
  const float* mask = nullptr;
  auto mask_row = [&](i64 r) -> i64 {
    if constexpr (requires { p.mask; }) return p.mask_row(r);
    else return r * 0;
  };
  if constexpr (requires { p.mask; }) {
    scale = p.scale;
    mask = static_cast<const float*>(f32.mask);
  }
  const bool pre = mask || scale != 1.0f;
  run_rows(p, [&](const Args&, i64 lo, i64 hi) {
    thread_local Scratch scratch;
    const i64 block = std::min(chunk, hi - lo) * n;
    float* buf = scratch.get(res ? 2 * block : block);
    for (i64 r = lo; r < hi; r += chunk) {
      const i64 nr = std::min(chunk, hi - r);
      const std::size_t off = static_cast<std::size_t>(r * n) * es;
      widen_to_f32(p.dtype, static_cast<const char*>(p.x) + off, buf, nr * n);
      if (res) {
        float* rb = buf + block;
        widen_to_f32(p.dtype, static_cast<const char*>(res) + off, rb, nr * n);
        for (i64 k = 0; k < nr * n; ++k) buf[k] += rb[k];
      }
      if (pre) {
        for (i64 j = 0; j < nr; ++j) {
          float* row = buf + j * n;
          const float* m = mask ? mask + mask_row(r + j) * n : nullptr;
          for (i64 k = 0; k < n; ++k) row[k] = row[k] * scale + (m ? m[k] : 0.0f);
        }
      }
      Args a = f32;
      if constexpr (requires { a.residual; }) a.residual = nullptr;  // already added
      if constexpr (requires { a.mask; }) {  // already applied
        a.mask = nullptr;
        a.scale = 1.0f;
      }
      a.x = buf;
      a.out = buf;
      a.rows = nr;
      a.dtype = DType::f32;
      fn(a, 0, nr);
      narrow_from_f32(p.dtype, buf, static_cast<char*>(p.out) + off, nr * n);
    }
  });
}

// ---- float64: computed in float64 ---------------------------------------------------------

void layernorm_rows_f64(const LayerNormArgs& p, i64 lo, i64 hi) {
  const i64 n = p.cols;
  const auto* g = static_cast<const double*>(p.gamma);
  const auto* b = static_cast<const double*>(p.beta);
  for (i64 r = lo; r < hi; ++r) {
    const double* x = static_cast<const double*>(p.x) + r * n;
    double* y = static_cast<double*>(p.out) + r * n;
    if (p.residual) {  // the fused residual add, as in the float32 kernels
      const double* rs = static_cast<const double*>(p.residual) + r * n;
      for (i64 j = 0; j < n; ++j) y[j] = x[j] + rs[j];
      x = y;
    }
    const double shift = x[0];  // relative to x[0], as the float32 kernels
    double mean = 0.0;
    for (i64 j = 0; j < n; ++j) mean += x[j] - shift;
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (i64 j = 0; j < n; ++j) var += ((x[j] - shift) - mean) * ((x[j] - shift) - mean);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(n) + static_cast<double>(p.eps));
    for (i64 j = 0; j < n; ++j) {
      double t = ((x[j] - shift) - mean) * inv;
      if (g) t *= g[j];
      if (b) t += b[j];
      y[j] = t;
    }
  }
}

// Rows of all -inf give NaN (inf - inf), as torch.softmax does.
void softmax_rows_f64(const SoftmaxArgs& p, i64 lo, i64 hi) {
  const i64 n = p.cols;
  const double scale = p.scale;
  for (i64 r = lo; r < hi; ++r) {
    const double* x = static_cast<const double*>(p.x) + r * n;
    double* y = static_cast<double*>(p.out) + r * n;
    if (p.mask || p.scale != 1.0f) {  // the fused scale and mask, as in the float32 kernels
      const double* m = p.mask ? static_cast<const double*>(p.mask) + p.mask_row(r) * n : nullptr;
      for (i64 j = 0; j < n; ++j) y[j] = x[j] * scale + (m ? m[j] : 0.0);
      x = y;
    }
    double mx = x[0];
    for (i64 j = 1; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
    double sum = 0.0;
    for (i64 j = 0; j < n; ++j) {
      y[j] = std::exp(x[j] - mx);
      sum += y[j];
    }
    const double inv = 1.0 / sum;
    for (i64 j = 0; j < n; ++j) y[j] *= inv;
  }
}

}  // namespace

void layernorm_with_isa(int isa, const LayerNormArgs& p) {
  if (p.rows <= 0 || p.cols <= 0) return;
  const LayerNormFn kernel = layernorm_kernel(std::max(isa, 0));
  switch (p.dtype) {
    case DType::f32: return run_rows(p, kernel);
    case DType::f64: return run_rows(p, layernorm_rows_f64);
    case DType::f16:
    case DType::bf16: {
      // gamma / beta widened once, read by every task (they outlive the pool job).
      thread_local Scratch affine;
      LayerNormArgs f32 = p;
      float* gb = (p.gamma || p.beta) ? affine.get(2 * p.cols) : nullptr;
      if (p.gamma) widen_to_f32(p.dtype, p.gamma, gb, p.cols);
      if (p.beta) widen_to_f32(p.dtype, p.beta, gb + p.cols, p.cols);
      f32.gamma = p.gamma ? gb : nullptr;
      f32.beta = p.beta ? gb + p.cols : nullptr;
      return run_rows_16(p, f32, kernel);
    }
    default: return;  // the core admits only floating dtypes
  }
}

void softmax_with_isa(int isa, const SoftmaxArgs& p) {
  if (p.rows <= 0 || p.cols <= 0) return;
  const SoftmaxFn kernel = softmax_kernel(std::max(isa, 0));
  switch (p.dtype) {
    case DType::f32: return run_rows(p, kernel);
    case DType::f64: return run_rows(p, softmax_rows_f64);
    case DType::f16:
    case DType::bf16: {
      // the mask widened once, read by every task (as layernorm's gamma / beta)
      SoftmaxArgs f32 = p;
      if (p.mask) {
        thread_local Scratch mask;
        const i64 n = p.mask_outer * p.mask_rows * p.cols;
        float* m = mask.get(n);
        widen_to_f32(p.dtype, p.mask, m, n);
        f32.mask = m;
      }
      return run_rows_16(p, f32, kernel);
    }
    default: return;
  }
}

void layernorm(const LayerNormArgs& p) { layernorm_with_isa(simd_level(), p); }

void softmax(const SoftmaxArgs& p) { softmax_with_isa(simd_level(), p); }

}  // namespace lc::cpu
