// The backward of batched multi-head / grouped-query attention on the CPU
// (Backend::attention_mha_backward, MhaBackwardArgs), flash-attention-2 style.
//
// One task = one (batch, key/value head g): it owns dk[b, g] and dv[b, g], so tasks never write
// the same memory (no atomics), and it walks every query head of g's group (h = g * group ...),
// so the GQA sum over query heads is a plain accumulation. With fewer pairs than threads
// (multi-query attention with a small batch) each pair's (query head, row block) items are split
// over several tasks with private dK / dV partials, summed by a second pass.
// Per task, K and V of (b, g) are widened once into compute-type scratch [sk][d] / [sk][dv],
// with dK / dV accumulators of the same size (O(sk * (d + dv)) per thread; no sq x sk matrix).
// Per block of BQ query rows of head h:
//   Qs = scale * q rows, dO rows, D_i = sum_c dO_ic O_ic, L_i = lse_i
//   for each key tile of BK keys (causal: only up to the block's last visible key):
//     S  = Qs K^T            (gemm NT)   then masks: invisible keys -> P = 0 exactly
//     P  = exp(S - L)
//     dV += P^T dO           (gemm TN)
//     dP = dO V^T            (gemm NT)
//     dS = P == 0 ? 0 : P * (dP - D)     (a select: a masked key's inf value never gives NaN)
//     dQ += dS K             (gemm NN)   dq rows = scale * dQ at the block's end
//     dK += dS^T Qs          (gemm TN)   (= scale * dS^T q)
// The products are sgemm tiles when BLAS is built in and the compute type is float; loops
// otherwise (float64, d = 0, no BLAS) and for a (b, g) whose K or V holds inf / NaN while keys
// are masked: the loops skip zero weights, so 0 * inf never reaches a gradient.
// A is the compute type: float for float32 / float16 / bfloat16 storage, double for float64.
// float64 recomputes each row's log-sum-exp in float64 (one extra pass of S over the row's
// keys): the saved lse is float32, and exp(S - lse) would carry its ~1e-7 relative error into
// every float64 gradient. Rows with lse = -inf (no visible key) have P = 0: zero gradients.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "backends/cpu/blas_threads.h"
#include "backends/cpu/attention_mha_util.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"
#include "lightning_core/dtype.h"

#if defined(LC_HAVE_BLAS)
#include "backends/cpu/blas.h"
#endif

namespace lc::cpu {
namespace {

using i64 = std::int64_t;
using mha::exp_a;
using mha::load_as;
using mha::narrow;
using mha::Scratch;

constexpr i64 BQ = 64;   // query rows per block
constexpr i64 BK = 128;  // keys per tile

template <class A>
inline bool all_finite(const A* x, i64 n) {
  A acc = 0;
  for (i64 i = 0; i < n; ++i) acc += x[i] - x[i];  // NaN unless every x[i] is finite
  return acc == A(0);
}

// C[M][N] (row stride ldc) = (accumulate ? C : 0) + op(A) op(B), op(A) [M][K], op(B) [K][N].
// ta: A is stored [K][lda] (op(A) = A^T), else [M][lda]; tb: B is stored [N][ldb], else [K][ldb].
// The loops skip zero entries of A when tb is false (the P / dS operands), so masked weights
// never multiply a non-finite value; the tb forms (S and dP) are dot products whose masked
// entries the caller overwrites.
template <class A>
void gemm(bool ta, bool tb, i64 M, i64 N, i64 K, const A* a, i64 lda, const A* b, i64 ldb,
          bool accumulate, A* c, i64 ldc, bool blas) {
  if (M <= 0 || N <= 0) return;
#if defined(LC_HAVE_BLAS)
  if constexpr (std::is_same_v<A, float>) {
    if (blas && K > 0) {
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                  static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, a,
                  static_cast<int>(lda), b, static_cast<int>(ldb), accumulate ? 1.0f : 0.0f, c,
                  static_cast<int>(ldc));
      return;
    }
  }
#endif
  (void)blas;
  if (!accumulate)
    for (i64 i = 0; i < M; ++i)
      for (i64 j = 0; j < N; ++j) c[i * ldc + j] = A(0);
  if (tb) {
    for (i64 i = 0; i < M; ++i)
      for (i64 j = 0; j < N; ++j) {
        const A* br = b + j * ldb;
        A acc = 0;
        if (ta)
          for (i64 p = 0; p < K; ++p) acc += a[p * lda + i] * br[p];
        else
          for (i64 p = 0; p < K; ++p) acc += a[i * lda + p] * br[p];
        c[i * ldc + j] += acc;
      }
    return;
  }
  if (ta) {
    for (i64 p = 0; p < K; ++p) {
      const A* br = b + p * ldb;
      for (i64 i = 0; i < M; ++i) {
        const A x = a[p * lda + i];
        if (x == A(0)) continue;
        A* cr = c + i * ldc;
        for (i64 j = 0; j < N; ++j) cr[j] += x * br[j];
      }
    }
    return;
  }
  for (i64 i = 0; i < M; ++i) {
    A* cr = c + i * ldc;
    for (i64 p = 0; p < K; ++p) {
      const A x = a[i * lda + p];
      if (x == A(0)) continue;
      const A* br = b + p * ldb;
      for (i64 j = 0; j < N; ++j) cr[j] += x * br[j];
    }
  }
}

template <class T, class A>
struct Task {
  const MhaBackwardArgs& a;
  bool use_blas;
  i64 off;  // causal: query i sees keys j <= i + off
  const char* mbase_b = nullptr;
  i64 melem = 0;

  // Masks applied to scores s[0..bq) x [0..bk) of query rows q0.. and keys k0.. of head h:
  // an invisible key's score becomes -inf (assigned, so a NaN / inf score of a masked key is
  // gone), an additive mask is added.
  void mask_tile(A* s, i64 bh_h, i64 q0, i64 bq, i64 k0, i64 bk) const {
    const A ninf = -std::numeric_limits<A>::infinity();
    const char* mb = nullptr;
    i64 ms2 = 0, ms3 = 0;
    if (a.mask_kind != MaskKind::none) {
      mb = mbase_b + bh_h * a.mask_strides[1] * melem;
      ms2 = a.mask_strides[2] * melem;
      ms3 = a.mask_strides[3] * melem;
    }
    for (i64 r = 0; r < bq; ++r) {
      const i64 i = q0 + r;
      A* sr = s + r * BK;
      const i64 nv = a.causal ? std::clamp<i64>(i + off + 1 - k0, 0, bk) : bk;
      for (i64 j = nv; j < bk; ++j) sr[j] = ninf;
      if (a.mask_kind == MaskKind::additive) {
        const char* mr = mb + i * ms2 + k0 * ms3;
        for (i64 j = 0; j < nv; ++j)
          sr[j] += load_as<T, A>(reinterpret_cast<const T*>(mr + j * ms3));
      } else if (a.mask_kind == MaskKind::keep) {
        const char* mr = mb + i * ms2 + k0 * ms3;
        if (a.mask_dtype == DType::i32) {
          for (i64 j = 0; j < nv; ++j)
            if (*reinterpret_cast<const std::int32_t*>(mr + j * ms3) == 0) sr[j] = ninf;
        } else {
          for (i64 j = 0; j < nv; ++j)
            if (*reinterpret_cast<const std::int64_t*>(mr + j * ms3) == 0) sr[j] = ninf;
        }
      }
    }
  }

  // Items [lo, hi) of pair (b, g)'s (query head of the group, block of BQ rows) list, item =
  // h_local * nqb + block. part: when given, dK / dV accumulate there ([sk][d] then [sk][dv],
  // zeroed here) for a later reduction instead of being stored into dk / dv.
  void run(i64 b, i64 g, i64 lo, i64 hi, A* buf, A* part) const {
    const i64 d = a.d, dv = a.dv, sk = a.sk, sq = a.sq;
    const i64 group = a.heads / a.kv_heads;
    const A scale = static_cast<A>(a.scale);
    const A ninf = -std::numeric_limits<A>::infinity();
    A* kf = buf;               // [sk][d]
    A* vf = kf + sk * d;       // [sk][dv]
    A* dka = part ? part : vf + sk * dv;  // [sk][d]
    A* dva = dka + sk * d;                // [sk][dv]
    A* qs = vf + sk * dv + sk * (d + dv);  // [BQ][d]
    A* dob = qs + BQ * d;      // [BQ][dv]
    A* dqa = dob + BQ * dv;    // [BQ][d]
    A* s = dqa + BQ * d;       // [BQ][BK]  scores, then P
    A* dp = s + BQ * BK;       // [BQ][BK]  dP, then dS
    A* drow = dp + BQ * BK;    // [BQ]      D_i
    A* lrow = drow + BQ;       // [BQ]      L_i
    const T* kb = static_cast<const T*>(a.k) + b * a.k_strides[0] + g * a.k_strides[1];
    const T* vb = static_cast<const T*>(a.v) + b * a.v_strides[0] + g * a.v_strides[1];
    for (i64 j = 0; j < sk; ++j) {
      const T* kr = kb + j * a.k_strides[2];
      const T* vr = vb + j * a.v_strides[2];
      for (i64 t = 0; t < d; ++t) kf[j * d + t] = load_as<T, A>(kr + t);
      for (i64 c = 0; c < dv; ++c) vf[j * dv + c] = load_as<T, A>(vr + c);
    }
    std::fill(dka, dka + sk * d, A(0));
    std::fill(dva, dva + sk * dv, A(0));
    const bool masked_keys = a.causal || a.mask_kind != MaskKind::none;
    const bool blas = use_blas && (!masked_keys || (all_finite(kf, sk * d) && all_finite(vf, sk * dv)));
    const i64 nqb = (sq + BQ - 1) / BQ;
    for (i64 it = lo; it < hi; ++it) {
      const i64 h = g * group + it / nqb;
      const i64 q0 = (it % nqb) * BQ;
      const T* qb = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
      const T* ob = static_cast<const T*>(a.out) + b * a.out_strides[0] + h * a.out_strides[1];
      const T* gb = static_cast<const T*>(a.dout) + b * a.dout_strides[0] + h * a.dout_strides[1];
      const float* lb = a.lse + (b * a.heads + h) * sq;
      T* dqb = static_cast<T*>(a.dq) + ((b * a.heads + h) * sq) * d;
      {
        const i64 bq = std::min(BQ, sq - q0);
        for (i64 r = 0; r < bq; ++r) {
          const i64 i = q0 + r;
          const T* qr = qb + i * a.q_strides[2];
          const T* orow = ob + i * a.out_strides[2];
          const T* gr = gb + i * a.dout_strides[2];
          for (i64 t = 0; t < d; ++t) qs[r * d + t] = load_as<T, A>(qr + t) * scale;
          A di = 0;
          for (i64 c = 0; c < dv; ++c) {
            const A go = load_as<T, A>(gr + c);
            dob[r * dv + c] = go;
            di += go * load_as<T, A>(orow + c);
          }
          drow[r] = di;
          lrow[r] = static_cast<A>(lb[i]);
          for (i64 t = 0; t < d; ++t) dqa[r * d + t] = A(0);
        }
        const i64 kend = a.causal ? std::min(sk, q0 + bq + off) : sk;
        if constexpr (std::is_same_v<A, double>) {
          // float64: the row's log-sum-exp in float64 (see the file comment).
          recompute_lse(h, q0, bq, kend, qs, kf, s, lrow, blas);
        }
        for (i64 k0 = 0; k0 < kend; k0 += BK) {
          const i64 bk = std::min(BK, kend - k0);
          gemm<A>(false, true, bq, bk, d, qs, d, kf + k0 * d, d, false, s, BK, blas);
          mask_tile(s, h, q0, bq, k0, bk);
          bool any = false;
          for (i64 r = 0; r < bq; ++r) {
            A* sr = s + r * BK;
            const A L = lrow[r];
            if (L == ninf || std::isnan(L)) {
              for (i64 j = 0; j < bk; ++j) sr[j] = A(0);
              continue;
            }
            for (i64 j = 0; j < bk; ++j) {
              const A x = sr[j];
              sr[j] = x == ninf ? A(0) : exp_a<A>(x - L);
              any = any || sr[j] != A(0);
            }
          }
          if (!any) continue;  // the whole tile is masked: no contribution
          gemm<A>(true, false, bk, dv, bq, s, BK, dob, dv, true, dva + k0 * dv, dv, blas);
          gemm<A>(false, true, bq, bk, dv, dob, dv, vf + k0 * dv, dv, false, dp, BK, blas);
          for (i64 r = 0; r < bq; ++r) {
            const A* pr = s + r * BK;
            A* dr = dp + r * BK;
            const A di = drow[r];
            for (i64 j = 0; j < bk; ++j) dr[j] = pr[j] == A(0) ? A(0) : pr[j] * (dr[j] - di);
          }
          gemm<A>(false, false, bq, d, bk, dp, BK, kf + k0 * d, d, true, dqa, d, blas);
          gemm<A>(true, false, bk, d, bq, dp, BK, qs, d, true, dka + k0 * d, d, blas);
        }
        for (i64 r = 0; r < bq; ++r) {
          T* dst = dqb + (q0 + r) * d;
          for (i64 t = 0; t < d; ++t) dst[t] = narrow<T>(static_cast<double>(dqa[r * d + t] * scale));
        }
      }
    }
    if (part) return;
    T* dkb = static_cast<T*>(a.dk) + ((b * a.kv_heads + g) * sk) * d;
    T* dvb = static_cast<T*>(a.dv_out) + ((b * a.kv_heads + g) * sk) * dv;
    for (i64 i = 0; i < sk * d; ++i) dkb[i] = narrow<T>(static_cast<double>(dka[i]));
    for (i64 i = 0; i < sk * dv; ++i) dvb[i] = narrow<T>(static_cast<double>(dva[i]));
  }

  // lrow[r] = log sum_j exp(S_rj) over the visible keys of rows q0.. (-inf when none).
  void recompute_lse(i64 h, i64 q0, i64 bq, i64 kend, const A* qs, const A* kf, A* s, A* lrow,
                     bool blas) const {
    const A ninf = -std::numeric_limits<A>::infinity();
    const i64 d = a.d;
    std::vector<A> m(static_cast<std::size_t>(bq), ninf), l(static_cast<std::size_t>(bq), A(0));
    for (i64 k0 = 0; k0 < kend; k0 += BK) {
      const i64 bk = std::min(BK, kend - k0);
      gemm<A>(false, true, bq, bk, d, qs, d, kf + k0 * d, d, false, s, BK, blas);
      mask_tile(s, h, q0, bq, k0, bk);
      for (i64 r = 0; r < bq; ++r) {
        const A* sr = s + r * BK;
        A& mr = m[static_cast<std::size_t>(r)];
        A& lr = l[static_cast<std::size_t>(r)];
        for (i64 j = 0; j < bk; ++j) {
          const A x = sr[j];
          if (x == ninf) continue;
          if (x > mr) {
            lr = (mr == ninf ? A(0) : lr * std::exp(mr - x)) + A(1);
            mr = x;
          } else {
            lr += std::exp(x - mr);
          }
        }
      }
    }
    for (i64 r = 0; r < bq; ++r) {
      const A lr = l[static_cast<std::size_t>(r)];
      lrow[r] = lr > A(0) ? m[static_cast<std::size_t>(r)] + std::log(lr) : ninf;
    }
  }
};

template <class T, class A>
void bwd_run(const MhaBackwardArgs& a) {
  const i64 pairs = a.batch * a.kv_heads;
  const i64 group = a.heads / a.kv_heads;
  const i64 items = group * ((a.sq + BQ - 1) / BQ);  // (query head, row block) per pair
  const i64 need = 2 * a.sk * (a.d + a.dv) + BQ * (2 * a.d + a.dv) + 2 * BQ * BK + 2 * BQ;
  bool use_blas = false;
#if defined(LC_HAVE_BLAS)
  use_blas = std::is_same_v<A, float> && have_blas() && a.d >= 1 && a.dv >= 1 &&
             blas_fits_int(a.d, a.dv);
#endif
  Task<T, A> tk{a, use_blas, a.sk - a.sq};
  if (a.mask_kind != MaskKind::none) tk.melem = static_cast<i64>(dtype_size(a.mask_dtype));
  const double work = static_cast<double>(a.batch) * a.heads * a.sq * a.sk * (a.d + a.dv);
  const bool big = work >= double(i64{1} << 18);
  // Fewer (batch, kv head) pairs than threads (multi-query attention, B = 1): each pair's items
  // are split into `split` chunks with private dK / dV partials, summed afterwards.
  const i64 threads = num_threads();
  i64 split = 1;
  if (big && pairs < threads && items > 1)
    split = std::min(items, (threads + pairs - 1) / pairs);
  std::vector<A> partials;
  const i64 psize = a.sk * (a.d + a.dv);
  if (split > 1) partials.assign(static_cast<std::size_t>(pairs * split * psize), A(0));
  const i64 tasks = pairs * split;
  auto task = [&](i64 lo, i64 hi) {
    thread_local Scratch<A> scratch;  // grow-only
    A* buf = scratch.get(need);
    for (i64 t = lo; t < hi; ++t) {
      const i64 pair = t / split, c = t - pair * split;
      const i64 b = pair / a.kv_heads, g = pair - b * a.kv_heads;
      Task<T, A> local = tk;
      if (a.mask_kind != MaskKind::none)
        local.mbase_b = static_cast<const char*>(a.mask) + b * a.mask_strides[0] * tk.melem;
      const i64 ilo = items * c / split, ihi = items * (c + 1) / split;
      local.run(b, g, ilo, ihi, buf, split > 1 ? partials.data() + t * psize : nullptr);
    }
  };
  // The reduction of the partials: dk / dv of pair p = the sum of its `split` partials.
  auto reduce = [&](i64 lo, i64 hi) {
    const i64 d = a.d, dv = a.dv, sk = a.sk;
    for (i64 pair = lo; pair < hi; ++pair) {
      const A* p0 = partials.data() + pair * split * psize;
      T* dkb = static_cast<T*>(a.dk) + pair * sk * d;
      T* dvb = static_cast<T*>(a.dv_out) + pair * sk * dv;
      for (i64 i = 0; i < psize; ++i) {
        A acc = 0;
        for (i64 c = 0; c < split; ++c) acc += p0[c * psize + i];
        if (i < sk * d) dkb[i] = narrow<T>(static_cast<double>(acc));
        else dvb[i - sk * d] = narrow<T>(static_cast<double>(acc));
      }
    }
  };
  const i64 grain = big ? 1 : tasks;
#if defined(LC_HAVE_BLAS)
  if (use_blas) {
    BlasOneThread one;  // sgemm inside pool tasks runs single-threaded
    parallel_for(0, tasks, grain, task);
    if (split > 1) parallel_for(0, pairs, 1, reduce);
    return;
  }
#endif
  parallel_for(0, tasks, grain, task);
  if (split > 1) parallel_for(0, pairs, 1, reduce);
}

}  // namespace

void attention_mha_backward(const MhaBackwardArgs& a) {
  if (a.batch <= 0 || a.kv_heads <= 0) return;
  switch (a.dtype) {
    case DType::f64: return bwd_run<double, double>(a);
    case DType::f16: return bwd_run<float16, float>(a);
    case DType::bf16: return bwd_run<bfloat16, float>(a);
    default: return bwd_run<float, float>(a);
  }
}

}  // namespace lc::cpu
