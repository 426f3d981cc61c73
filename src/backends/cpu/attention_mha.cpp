// Batched multi-head / grouped-query attention on the CPU (Backend::attention_mha, MhaArgs).
//
// One task = one (batch, head, block of BQ = 512 query rows (causal: 256), halved down to 64
// while that leaves fewer than two tasks per thread); tasks spread over the thread pool. Each task walks key
// tiles of BK = 512 keys with an
// online (flash-style) softmax: running max m and sum l per row, O rescaled when the max grows,
// so memory is O(BQ * (BK + dv)) per thread and no sq x sk matrix exists. The pieces follow
// attention.cpp's gemm path (and share its AVX2 online-softmax row update):
//   Q block (scaled) -> A scratch [BQ][d]        (widened from the storage dtype, any strides)
//   K, V tiles       -> A scratch, or read in place (float32 storage, BLAS: rows k_strides[2]
//                       apart are sgemm's leading dimension, so permuted views cost no copy)
//   S = Q K^T        sgemm when BLAS is built in and the compute type is float, loops otherwise
//   mask / causal, online softmax on S
//   O = corr * O + P V  sgemm / loops
// A (the compute type) is float for float32 / float16 / bfloat16 storage and double for float64.
// The grouped-query case just points head h at key/value head h / (heads / kv_heads): K and V
// are never copied per query head.
//
// Masked keys get P = 0 exactly. The P V product never multiplies a value whose weight is 0 by
// way of the GEMM when the V tile holds inf/NaN (checked per tile; the loop then skips zero
// weights), so NaN/inf in masked positions never reach the output. A row with no visible key
// (every key masked, or causal with sq > sk for its first sq - sk rows) ends with l = 0: out = 0
// and lse = -inf.
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
using mha::widen;

// Most query rows per task (halved while that leaves fewer than two tasks per thread) and keys
// per tile. Bigger sgemm calls amortise OpenBLAS's packing (it packs Q per key tile and K, V per
// query block) and its zeroing of S: 256 x 256 beat 128-row blocks by ~10% (session 11), and
// 512 x 512 (S tile 1 MB, within a 2 MB L2) beat 256 x 256 on two cores (session 12, same
// process, medians): B4 H12 S512 D64 19.8 -> 17.8 ms (1.04x torch's CPU SDPA over five
// alternating rounds, was 0.97-0.98x), B8 H12 S300 16.8 -> 14.7-15.4, B2 H4 S1000 D128
// 19.9 -> 19.5-20.0, B1 H8 S2048 48.4 -> 46.5; causal starts at 256 rows (512 made B1 H8
// S2048 causal 30.1 -> 31.3 ms, 256 gives 28.7-29.3).
constexpr i64 BQ = 512;
constexpr i64 BK = 512;  // keys per tile

// No inf / NaN in rows [0, rows) x [0, cols) of a matrix with leading dimension ld.
template <class A>
inline bool finite_rows(const A* x, i64 rows, i64 cols, i64 ld) {
  A acc = 0;
  for (i64 j = 0; j < rows; ++j)
    for (i64 c = 0; c < cols; ++c) acc += x[j * ld + c] - x[j * ld + c];  // NaN unless finite
  return acc == A(0);
}

// Generic online-softmax update of one score row (float64, and builds without BLAS): s[0..nv)
// holds scores with at least one finite, s[nv..bk) anything; P replaces s (0 past nv).
template <class A>
void online_row_plain(A* s, i64 nv, i64 bk, A& m, A& l, A* orow, i64 dv) {
  A bmax = s[0];
  for (i64 j = 1; j < nv; ++j) bmax = s[j] > bmax ? s[j] : bmax;
  const bool first = l == A(0);
  const A mnew = first ? bmax : std::max(m, bmax);
  A sum = 0;
  for (i64 j = 0; j < nv; ++j) {
    const A e = exp_a<A>(s[j] - mnew);  // -inf -> 0
    s[j] = e;
    sum += e;
  }
  for (i64 j = nv; j < bk; ++j) s[j] = A(0);
  if (!first) {
    const A corr = exp_a<A>(m - mnew);
    l = l * corr + sum;
    if (corr != A(1))
      for (i64 c = 0; c < dv; ++c) orow[c] *= corr;
  } else {
    l = sum;
  }
  m = mnew;
}

// One (batch, head, query block of bq <= BQ rows). T: storage type; A: compute type.
template <class T, class A>
void mha_block(const MhaArgs& a, i64 b, i64 h, i64 q0, i64 bq, A* scratch, bool use_blas) {
  const i64 d = a.d, dv = a.dv, sk = a.sk;
  const i64 g = h / (a.heads / a.kv_heads);
  const T* qb = static_cast<const T*>(a.q) + b * a.q_strides[0] + h * a.q_strides[1];
  const T* kb = static_cast<const T*>(a.k) + b * a.k_strides[0] + g * a.k_strides[1];
  const T* vb = static_cast<const T*>(a.v) + b * a.v_strides[0] + g * a.v_strides[1];
  i64 os[3];
  mha_out_strides(a, os);
  T* ob = static_cast<T*>(a.out) + b * os[0] + h * os[1];
  A* qs = scratch;          // [BQ][d]   scaled queries
  A* ks = qs + BQ * d;      // [BK][d]   K tile (when not read in place)
  A* vs = ks + BK * d;      // [BK][dv]  V tile (when not read in place)
  A* s = vs + BK * dv;      // [BQ][BK]  scores, then P
  A* o = s + BQ * BK;       // [BQ][dv]  unnormalised output
  A* m = o + BQ * dv;       // [BQ]      running max
  A* l = m + BQ;            // [BQ]      running sum (0: no visible key yet)
  const A scale = static_cast<A>(a.scale);
  const A ninf = -std::numeric_limits<A>::infinity();
  for (i64 r = 0; r < bq; ++r) {
    const T* qr = qb + (q0 + r) * a.q_strides[2];
    for (i64 t = 0; t < d; ++t) qs[r * d + t] = load_as<T, A>(qr + t) * scale;
    for (i64 c = 0; c < dv; ++c) o[r * dv + c] = A(0);
    m[r] = ninf;
    l[r] = A(0);
  }
  // float32 storage on the BLAS path reads K and V tiles in place (rows ks2 / vs2 apart, as
  // sgemm's leading dimension) instead of copying them.
  const i64 ks2 = a.k_strides[2], vs2 = a.v_strides[2];
  bool direct = false;
  if constexpr (std::is_same_v<T, float>) {
    direct = use_blas && ks2 >= std::max<i64>(d, 1) && vs2 >= std::max<i64>(dv, 1) &&
             ks2 <= 0x7fffffff && vs2 <= 0x7fffffff;
  }
  const bool masked_keys = a.causal || a.mask_kind != MaskKind::none;
  // Causal, bottom-right: query i sees keys j <= i + off.
  const i64 off = sk - a.sq;
  const i64 kend = a.causal ? std::min(sk, q0 + bq + off) : sk;
  const char* mbase = nullptr;
  i64 ms2 = 0, ms3 = 0;
  if (a.mask_kind != MaskKind::none) {
    const i64 melem = static_cast<i64>(dtype_size(a.mask_dtype));
    mbase = static_cast<const char*>(a.mask) + (b * a.mask_strides[0] + h * a.mask_strides[1]) * melem;
    ms2 = a.mask_strides[2] * melem;
    ms3 = a.mask_strides[3] * melem;
  }
  for (i64 k0 = 0; k0 < kend; k0 += BK) {
    const i64 bk = std::min(BK, kend - k0);
    const A* kp = ks;
    const A* vp = vs;
    i64 ldk = d, ldv = dv;
    if (direct) {
      kp = reinterpret_cast<const A*>(kb + k0 * ks2);
      vp = reinterpret_cast<const A*>(vb + k0 * vs2);
      ldk = ks2;
      ldv = vs2;
    } else {
      // K row-major [bk][d] for sgemm, transposed [d][BK] for the loops' axpy form
      for (i64 j = 0; j < bk; ++j) {
        const T* kr = kb + (k0 + j) * ks2;
        const T* vr = vb + (k0 + j) * vs2;
        if (use_blas)
          for (i64 t = 0; t < d; ++t) ks[j * d + t] = load_as<T, A>(kr + t);
        else
          for (i64 t = 0; t < d; ++t) ks[t * BK + j] = load_as<T, A>(kr + t);
        for (i64 c = 0; c < dv; ++c) vs[j * dv + c] = load_as<T, A>(vr + c);
      }
    }
    // S = Qs K^T
    bool done = false;
#if defined(LC_HAVE_BLAS)
    if constexpr (std::is_same_v<A, float>) {
      if (use_blas) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(bq),
                    static_cast<int>(bk), static_cast<int>(d), 1.0f, qs, static_cast<int>(d), kp,
                    static_cast<int>(ldk), 0.0f, s, static_cast<int>(BK));
        done = true;
      }
    }
#endif
    if (!done) {  // axpy form over keys (vectorises; a dot product is a serial reduction)
      for (i64 r = 0; r < bq; ++r) {
        const A* qr = qs + r * d;
        A* sr = s + r * BK;
        for (i64 j = 0; j < bk; ++j) sr[j] = A(0);
        for (i64 t = 0; t < d; ++t) {
          const A qv = qr[t];
          const A* kt = ks + t * BK;
          for (i64 j = 0; j < bk; ++j) sr[j] += qv * kt[j];
        }
      }
    }
    // Masks, then the online softmax: S -> P in place.
    for (i64 r = 0; r < bq; ++r) {
      const i64 i = q0 + r;
      A* sr = s + r * BK;
      A* orow = o + r * dv;
      const i64 nv = a.causal ? std::clamp<i64>(i + off + 1 - k0, 0, bk) : bk;
      if (a.mask_kind == MaskKind::additive) {
        const char* mr = mbase + i * ms2 + k0 * ms3;
        for (i64 j = 0; j < nv; ++j) sr[j] += load_as<T, A>(reinterpret_cast<const T*>(mr + j * ms3));
      } else if (a.mask_kind == MaskKind::keep) {
        const char* mr = mbase + i * ms2 + k0 * ms3;
        if (a.mask_dtype == DType::i32) {
          for (i64 j = 0; j < nv; ++j)
            if (*reinterpret_cast<const std::int32_t*>(mr + j * ms3) == 0) sr[j] = ninf;
        } else {
          for (i64 j = 0; j < nv; ++j)
            if (*reinterpret_cast<const std::int64_t*>(mr + j * ms3) == 0) sr[j] = ninf;
        }
      }
      bool any = nv > 0;
      if (any && a.mask_kind != MaskKind::none) {
        any = false;
        for (i64 j = 0; j < nv && !any; ++j) any = sr[j] != ninf;
      }
      if (!any) {  // nothing visible in this tile: P = 0, history unchanged
        for (i64 j = 0; j < bk; ++j) sr[j] = A(0);
        continue;
      }
#if defined(LC_HAVE_BLAS)
      if constexpr (std::is_same_v<A, float>) {
        attention_online_row(sr, nv, bk, m[r], l[r], orow, dv);
        continue;
      }
#endif
      online_row_plain<A>(sr, nv, bk, m[r], l[r], orow, dv);
    }
    // O += P V. Masked keys have P = 0 exactly; the GEMM would still multiply their values
    // (0 * inf = NaN), so a tile with masked keys and a non-finite value takes the loop, which
    // skips zero weights.
    done = false;
#if defined(LC_HAVE_BLAS)
    if constexpr (std::is_same_v<A, float>) {
      if (use_blas && (!masked_keys || finite_rows(vp, bk, dv, ldv))) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(bq),
                    static_cast<int>(dv), static_cast<int>(bk), 1.0f, s, static_cast<int>(BK), vp,
                    static_cast<int>(ldv), 1.0f, o, static_cast<int>(dv));
        done = true;
      }
    }
#endif
    if (!done) {
      for (i64 r = 0; r < bq; ++r) {
        const A* pr = s + r * BK;
        A* orow = o + r * dv;
        for (i64 j = 0; j < bk; ++j) {
          const A pj = pr[j];
          if (pj == A(0)) continue;  // masked (or underflowed): never 0 * inf
          const A* vj = vp + j * ldv;
          for (i64 c = 0; c < dv; ++c) orow[c] += pj * vj[c];
        }
      }
    }
  }
  for (i64 r = 0; r < bq; ++r) {
    const i64 i = q0 + r;
    T* dst = ob + i * os[2];
    float* lse = a.lse ? a.lse + (b * a.heads + h) * a.sq + i : nullptr;
    if (l[r] > A(0)) {
      const A inv = A(1) / l[r];
      for (i64 c = 0; c < dv; ++c) dst[c] = narrow<T>(static_cast<double>(o[r * dv + c] * inv));
      if (lse) *lse = static_cast<float>(m[r] + std::log(l[r]));
    } else {  // no visible key: zeros, lse -inf
      for (i64 c = 0; c < dv; ++c) dst[c] = narrow<T>(0.0);
      if (lse) *lse = -std::numeric_limits<float>::infinity();
    }
  }
}

template <class T, class A>
void mha_run(const MhaArgs& a) {
  const i64 bh = a.batch * a.heads;
  // BQ-row blocks (causal: BQ / 2, which halves the masked half of the diagonal tile's scores
  // that sgemm computes anyway), halved (down to 64 rows) while that leaves fewer than two tasks
  // per thread.
  i64 rows = a.causal ? BQ / 2 : BQ;
  while (rows > 64 && bh * ((a.sq + rows - 1) / rows) < 2 * num_threads()) rows /= 2;
  const i64 nqb = (a.sq + rows - 1) / rows;
  const i64 tasks = bh * nqb;
  const i64 need = BQ * a.d + BK * a.d + BK * a.dv + BQ * BK + BQ * a.dv + 2 * BQ;
  bool use_blas = false;
#if defined(LC_HAVE_BLAS)
  // sgemm tiles beat the loops at every float shape measured here, even d = 8 or 16 x 16 score
  // tiles (2-core VM: B2 H4 S100 d8 0.42 vs 0.92 ms; B1 H12 S16 d32 27 vs 66 us), so the loops
  // serve float64, d = 0 and builds without BLAS.
  use_blas = std::is_same_v<A, float> && have_blas() && a.d >= 1 && a.dv >= 1 &&
             blas_fits_int(a.d, a.dv);
#endif
  auto task = [&](i64 lo, i64 hi) {
    thread_local Scratch<A> scratch;  // grow-only: no allocation after the first large call
    A* buf = scratch.get(need);
    for (i64 t = lo; t < hi; ++t) {
      const i64 pair = t / nqb;
      i64 qb = t - pair * nqb;
      if (a.causal) qb = nqb - 1 - qb;  // heaviest blocks first
      const i64 b = pair / a.heads, h = pair - b * a.heads;
      const i64 q0 = qb * rows;
      mha_block<T, A>(a, b, h, q0, std::min(rows, a.sq - q0), buf, use_blas);
    }
  };
  const double work = static_cast<double>(a.batch) * a.heads * a.sq * a.sk * (a.d + a.dv);
  const i64 grain = work >= double(i64{1} << 20) ? 1 : tasks;
#if defined(LC_HAVE_BLAS)
  if (use_blas) {
    BlasOneThread one;  // sgemm inside pool tasks runs single-threaded
    parallel_for(0, tasks, grain, task);
    return;
  }
#endif
  parallel_for(0, tasks, grain, task);
}

template <class T>
void fill_empty(const MhaArgs& a) {
  // sk == 0: every row sees nothing.
  const i64 rows = a.batch * a.heads * a.sq;
  i64 os[3];
  mha_out_strides(a, os);
  for (i64 b = 0; b < a.batch; ++b)
    for (i64 h = 0; h < a.heads; ++h)
      for (i64 i = 0; i < a.sq; ++i) {
        T* out = static_cast<T*>(a.out) + b * os[0] + h * os[1] + i * os[2];
        for (i64 c = 0; c < a.dv; ++c) out[c] = narrow<T>(0.0);
      }
  if (a.lse)
    for (i64 i = 0; i < rows; ++i) a.lse[i] = -std::numeric_limits<float>::infinity();
}

template <class T, class A>
void mha_dispatch(const MhaArgs& a) {
  if (a.sk <= 0) return fill_empty<T>(a);
  mha_run<T, A>(a);
}

}  // namespace

void attention_mha(const MhaArgs& a) {
  if (a.batch <= 0 || a.heads <= 0 || a.sq <= 0) return;
  if (attention_mha_decode_applies(a)) return attention_mha_decode(a);
  if (a.sk <= kEncAutoKeys && attention_mha_encoder_fits(a)) return attention_mha_encoder(a);
  attention_mha_tiled(a);
}

void attention_mha_tiled(const MhaArgs& a) {
  if (a.batch <= 0 || a.heads <= 0 || a.sq <= 0) return;
  if (a.dv <= 0) {  // nothing to write into out; lse still has rows
    if (!a.lse) return;
  }
  switch (a.dtype) {
    case DType::f64: return mha_dispatch<double, double>(a);
    case DType::f16: return mha_dispatch<float16, float>(a);
    case DType::bf16: return mha_dispatch<bfloat16, float>(a);
    default: return mha_dispatch<float, float>(a);
  }
}

}  // namespace lc::cpu
