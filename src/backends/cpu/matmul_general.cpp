// The CPU matmul forms beyond one float32 product (cpu_ops.h matmul_general): storage dtypes,
// batches and the fused residual.
//
//   float16 / bfloat16  the operands are converted to float32 (thread-local buffers that only
//                       grow), the float32 GEMM of matmul.cpp runs, and bias + residual +
//                       activation are applied in float32 before the one rounding into out:
//                       the same arithmetic as the CUDA path (cuBLASLt, fp32 accumulation).
//   float64             cblas_dgemm with OpenBLAS, else a blocked i-p-j loop; the epilogue in
//                       float64 too.
//   batches             small products (< 96^3 multiply-adds, where one GEMM would not use the
//                       pool; up to 256^3 when there are at least as many products as threads)
//                       run one per pool task, each single-threaded (BlasOneThread keeps
//                       OpenBLAS from fanning out under our tasks); larger ones run one after
//                       another with the GEMM's own threading.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backends/cpu/blas_threads.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

#if defined(LC_HAVE_BLAS)
#include "backends/cpu/blas.h"
#endif

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

// Below this many multiply-adds per product, a batch is spread over the pool one product per
// task (matches matmul.cpp's kParallelWork: above it one GEMM already uses every thread).
constexpr i64 kBatchParallelWork = 96 * 96 * 96;
// A batch of at least num_threads() products is spread up to this size too: independent
// single-threaded products need no synchronisation, while one threaded GEMM per product pays
// its fork/join (and OpenBLAS's packing of a shared B) per product; above it (256^3) a product
// keeps every thread busy on its own.
constexpr i64 kBatchSpreadMaxWork = i64{1} << 24;

bool spread_batch(i64 batch, i64 work) {
  if (batch <= 1 || num_threads() <= 1) return false;
  return work < kBatchParallelWork || (batch >= num_threads() && work <= kBatchSpreadMaxWork);
}
// Elements per task of a conversion or epilogue loop: below that a wake-up costs more.
constexpr i64 kElemGrain = i64{1} << 16;

inline float load(float v) { return v; }
inline float load(float16 v) { return to_float(v); }
inline float load(bfloat16 v) { return to_float(v); }
template <class T>
inline T store(float v);
template <>
inline float16 store<float16>(float v) { return to_f16(v); }
template <>
inline bfloat16 store<bfloat16>(float v) { return to_bf16(v); }

double activate_f64(double x, Activation act) {
  if (act == Activation::relu) return x < 0.0 ? 0.0 : x;
  if (act == Activation::gelu) {
    if (x == -INFINITY) return NAN;  // torch: -inf * 0
    const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + std::tanh(u));
  }
  if (act == Activation::gelu_erf) return 0.5 * x * std::erfc(-x * 0.70710678118654752);
  return x;
}

// Grow-only thread-local float32 buffer (a batch task converts into its own).
float* f32_scratch(std::vector<float>& v, i64 n) {
  if (static_cast<i64>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
  return v.data();
}

template <class T>
void to_f32(const T* src, float* dst, i64 n, bool threaded) {
  auto body = [&](i64 lo, i64 hi) {
    for (i64 i = lo; i < hi; ++i) dst[i] = load(src[i]);
  };
  if (threaded) parallel_for(0, n, kElemGrain, body);
  else body(0, n);
}

// The epilogue of a float32 product c[m,n] (already in `out` for float32 storage):
// out = act(c + bias + residual), rows in parallel when `threaded`.
template <class T>
void epilogue(const float* c, T* out, i64 m, i64 n, const T* bias, const T* residual,
              Activation act, bool threaded) {
  auto body = [&](i64 lo, i64 hi) {
    for (i64 r = lo; r < hi; ++r) {
      const float* cr = c + r * n;
      T* o = out + r * n;
      const T* res = residual ? residual + r * n : nullptr;
      for (i64 j = 0; j < n; ++j) {
        float v = cr[j];
        if (bias) v += load(bias[j]);
        if (res) v += load(res[j]);
        v = activate(v, act);
        if constexpr (std::is_same_v<T, float>) o[j] = v;
        else o[j] = store<T>(v);
      }
    }
  };
  const i64 grain = std::max<i64>(1, kElemGrain / std::max<i64>(n, 1));
  if (threaded) parallel_for(0, m, grain, body);
  else body(0, m);
}

// One product of the batch (index i) in storage type T through the float32 GEMM.
// `threaded`: the product may use the pool (it is not itself inside a batch task).
template <class T>
void product_lowp(GemmPath path, const MatmulArgs& p, i64 i, bool threaded, const float* b_f32) {
  const T* a = static_cast<const T*>(p.a) + i * p.stride_a;
  T* out = static_cast<T*>(p.out) + i * p.stride_out;
  const T* res = p.residual ? static_cast<const T*>(p.residual) + i * p.stride_out : nullptr;
  const T* bias = static_cast<const T*>(p.bias);
  const i64 ldb = p.trans_b ? p.k : p.n;
  thread_local std::vector<float> a_store, b_store, c_store;
  if constexpr (std::is_same_v<T, float>) {
    const float* b = static_cast<const float*>(p.b) + i * p.stride_b;
    // float32 storage: the GEMM writes out directly with its fused epilogue (per tile on the
    // pooled path; inside a batch task everything runs on this thread).
    GemmEpilogue ep;
    ep.bias = bias;
    ep.residual = res;
    ep.ldr = p.n;
    ep.act = p.act;
    gemm_fused(threaded ? path : GemmPath::automatic, p.m, p.n, p.k, a, p.k, b, ldb, p.trans_b,
               out, p.n, ep);
    return;
  } else {
    float* af = f32_scratch(a_store, p.m * p.k);
    to_f32(a, af, p.m * p.k, threaded);
    const float* bf = b_f32;
    if (!bf) {
      float* conv = f32_scratch(b_store, p.k * p.n);
      to_f32(static_cast<const T*>(p.b) + i * p.stride_b, conv, p.k * p.n, threaded);
      bf = conv;
    }
    float* cf = f32_scratch(c_store, p.m * p.n);
    gemm_with(threaded ? path : GemmPath::automatic, p.m, p.n, p.k, af, p.k, bf, ldb, p.trans_b,
              cf, p.n);
    epilogue<T>(cf, out, p.m, p.n, bias, res, p.act, threaded);
  }
}

void product_f64(const MatmulArgs& p, i64 i) {
  const auto* a = static_cast<const double*>(p.a) + i * p.stride_a;
  const auto* b = static_cast<const double*>(p.b) + i * p.stride_b;
  auto* out = static_cast<double*>(p.out) + i * p.stride_out;
  const auto* res = p.residual ? static_cast<const double*>(p.residual) + i * p.stride_out : nullptr;
  const auto* bias = static_cast<const double*>(p.bias);
  gemm_f64(p.m, p.n, p.k, a, b, p.trans_b, out);
  if (!bias && !res && p.act == Activation::none) return;
  for (i64 r = 0; r < p.m; ++r) {
    double* o = out + r * p.n;
    for (i64 j = 0; j < p.n; ++j) {
      double v = o[j];
      if (bias) v += bias[j];
      if (res) v += res[r * p.n + j];
      o[j] = activate_f64(v, p.act);
    }
  }
}

template <class T>
void run_typed(GemmPath path, const MatmulArgs& p) {
  const i64 batch = std::max<i64>(p.batch, 1);
  const i64 work = p.m * p.n * std::max<i64>(p.k, 1);
  // A broadcast 16-bit B (stride 0, the weight shared by every product) is converted once.
  std::vector<float> shared_b;
  const float* b_f32 = nullptr;
  if constexpr (!std::is_same_v<T, float>) {
    if (batch > 1 && p.stride_b == 0) {
      shared_b.resize(static_cast<std::size_t>(p.k * p.n));
      to_f32(static_cast<const T*>(p.b), shared_b.data(), p.k * p.n, true);
      b_f32 = shared_b.data();
    }
  }
  if (!spread_batch(batch, work)) {
    for (i64 i = 0; i < batch; ++i) product_lowp<T>(path, p, i, true, b_f32);
    return;
  }
  auto task = [&](i64 lo, i64 hi) {
    for (i64 i = lo; i < hi; ++i) product_lowp<T>(path, p, i, false, b_f32);
  };
#if defined(LC_HAVE_BLAS)
  BlasOneThread one;  // each task's sgemm runs on its own thread only
#endif
  parallel_for(0, batch, 1, task);
}

}  // namespace

void gemm_f64(i64 m, i64 n, i64 k, const double* a, const double* b, bool trans_b, double* c) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    std::fill(c, c + m * n, 0.0);
    return;
  }
#if defined(LC_HAVE_BLAS)
  // CBLAS takes int sizes: larger ones run the loop below.
  if (blas_fits_int(m, n, k)) {
    blas_configure_once();
    cblas_dgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1.0, a,
                static_cast<int>(k), b, static_cast<int>(trans_b ? k : n), 0.0, c,
                static_cast<int>(n));
    return;
  }
#endif
  // Blocked over k and rows (a KB x n panel of B stays in cache across KB rows of A), rows in
  // parallel. trans_b reads rows of [n,k] B as dot products.
  constexpr i64 KB = 128, RB = 32;
  const bool parallel = m * n * k >= kBatchParallelWork;
  auto rows = [&](i64 lo, i64 hi) {
    for (i64 i0 = lo * RB; i0 < std::min(m, hi * RB); i0 += RB) {
      const i64 i1 = std::min(m, i0 + RB);
      if (trans_b) {
        for (i64 i = i0; i < i1; ++i)
          for (i64 j = 0; j < n; ++j) {
            const double* ai = a + i * k;
            const double* bj = b + j * k;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            i64 p = 0;
            for (; p + 4 <= k; p += 4) {
              s0 += ai[p] * bj[p];
              s1 += ai[p + 1] * bj[p + 1];
              s2 += ai[p + 2] * bj[p + 2];
              s3 += ai[p + 3] * bj[p + 3];
            }
            for (; p < k; ++p) s0 += ai[p] * bj[p];
            c[i * n + j] = (s0 + s1) + (s2 + s3);
          }
        continue;
      }
      for (i64 i = i0; i < i1; ++i) std::fill(c + i * n, c + (i + 1) * n, 0.0);
      for (i64 p0 = 0; p0 < k; p0 += KB) {
        const i64 p1 = std::min(k, p0 + KB);
        for (i64 i = i0; i < i1; ++i) {
          double* ci = c + i * n;
          for (i64 p = p0; p < p1; ++p) {
            const double av = a[i * k + p];
            const double* bp = b + p * n;
            for (i64 j = 0; j < n; ++j) ci[j] += av * bp[j];
          }
        }
      }
    }
  };
  const i64 blocks = (m + RB - 1) / RB;
  parallel_for(0, blocks, parallel ? 1 : blocks, rows);
}

void matmul_general(GemmPath path, const MatmulArgs& p) {
  if (p.m <= 0 || p.n <= 0 || p.batch <= 0) return;
  switch (p.dtype) {
    case DType::f32: return run_typed<float>(path, p);
    case DType::f16: return run_typed<float16>(path, p);
    case DType::bf16: return run_typed<bfloat16>(path, p);
    case DType::f64: {
      const i64 batch = std::max<i64>(p.batch, 1);
      if (!spread_batch(batch, p.m * p.n * std::max<i64>(p.k, 1))) {
        for (i64 i = 0; i < batch; ++i) product_f64(p, i);
        return;
      }
#if defined(LC_HAVE_BLAS)
      BlasOneThread one;
#endif
      parallel_for(0, batch, 1, [&](i64 lo, i64 hi) {
        for (i64 i = lo; i < hi; ++i) product_f64(p, i);
      });
      return;
    }
    case DType::i32:
    case DType::i64: break;  // the core admits floating dtypes only
  }
}

}  // namespace lc::cpu
