// Scaled dot-product attention on the CPU: out = softmax(q k^T * scale [+ causal]) v.
//
// Three paths:
//   small   one thread, every buffer on the stack (K^T and one score row), two-pass softmax
//           per query row. This is the latency path: at sq=sk=8, d=16 a call is a few hundred
//           multiply-adds plus 64 exps, so any allocation or thread wake-up would dominate.
//   blocked query rows in blocks of BQ spread over the pool; keys in blocks of BK with an
//           online (running max / running sum) softmax, so memory is O(BQ*BK) per thread
//           and sequence length is unbounded (no sq*sk score matrix ever exists).
//   gemm    (LC_HAVE_BLAS only; replaces `blocked` there) the same online softmax, but with
//           query blocks of up to 256 rows x 256-key tiles whose Q K^T and P V products are
//           sgemm calls (single-threaded OpenBLAS inside our pool). It beat `blocked` at every size
//           measured (1 x 300 x d4: 2.5 vs 6.5 us; 4096^2 x d64: ~60 vs ~320 ms) and ties
//           `small` at small's upper limit (64^2 x d64: ~33 us each), so `small` keeps its
//           limits and everything above them goes here.
//
// Both compute scores in "axpy" form (scores[j] += q[t] * kT[t][j]) rather than as dot
// products: a float dot product is a serial reduction that g++ will not vectorise without
// -ffast-math, while the axpy form vectorises over keys.
//
// Causal masking is top-left aligned: query i sees keys j <= i. Masked keys are skipped (not
// set to -inf and exponentiated), so they contribute exactly zero.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backends/cpu/blas_threads.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half_convert.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

#if defined(LC_HAVE_BLAS)
#include "backends/cpu/blas.h"
#endif

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

// Small-path limits: K^T (d*sk floats) and one score row (sk) live on the stack (<= 33 KB).
constexpr i64 kSmallMaxKt = 8192;
constexpr i64 kSmallMaxSk = 256;
// Up to this many multiply-adds the one-thread small path wins: seq 64, d = dv = 64 (2^19)
// takes ~26 us small vs ~78 us blocked on one AVX-512 core (measured, 2-core VM).
constexpr i64 kSmallMaxWork = i64{1} << 19;

// The float32 view of AttentionArgs that every path below computes on. float16 / bfloat16
// calls are widened into float32 scratch first and the result rounded once into `out`
// (attention_with): the simple correct route; it costs one pass over q, k, v and out, small
// next to the sq*sk*(d+dv) multiply-adds except for tiny calls.
struct Att {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  i64 sq, sk, d, dv;
  bool causal;
  float scale;
};

constexpr i64 BQ = 32;   // query rows per task
constexpr i64 BK = 128;  // keys per block: scores BQ*BK = 16 KB, fits L1/L2 with K^T

inline i64 visible_keys(const Att& p, i64 i) {
  return p.causal ? std::min(i + 1, p.sk) : p.sk;
}

// sum of x[0..n) with 8 partial sums (vectorisable; a plain loop would be a serial chain).
inline float sum8(const float* x, i64 n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) s[u] += x[j + u];
  float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  for (; j < n; ++j) t += x[j];
  return t;
}

// True when no element of x[0..n) is inf or NaN (x - x is 0 for finite x, NaN otherwise).
inline bool all_finite(const float* x, i64 n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) acc[u] += x[j + u] - x[j + u];
  float t = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; j < n; ++j) t += x[j] - x[j];
  return t == 0.0f;
}

inline float max_of(const float* x, i64 n) {
  float m = x[0];
  for (i64 j = 1; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// Body of the small path, compiled once per instruction set (see the dispatch below).
// Query rows go four at a time so the FMA chains are independent (one row alone is bound by
// FMA latency, not throughput, at d=16). Scores live in 8-lane vectors over keys; K^T is zero
// padded to whole vectors so no loop has a tail; lanes past a row's visible keys are forced to
// exactly 0 after the exp, so the P@V loop can run all four rows to the longest row's length.
[[gnu::always_inline]] inline void attention_small_body(const Att& p) {
  constexpr int R = 4;
  const i64 sq = p.sq, sk = p.sk, d = p.d, dv = p.dv;
  const i64 nb = (sk + 7) / 8;
  alignas(32) float kt[kSmallMaxKt];  // d * nb * 8 <= kSmallMaxKt (small_fits)
  alignas(32) float sc[R][kSmallMaxSk];
  for (i64 t = 0; t < d; ++t) {
    float* row = kt + t * nb * 8;
    for (i64 j = 0; j < sk; ++j) row[j] = p.k[j * d + t];
    for (i64 j = sk; j < nb * 8; ++j) row[j] = 0.0f;
  }
  v8i lane;
  for (int l = 0; l < 8; ++l) lane[l] = l;

  for (i64 i0 = 0; i0 < sq; i0 += R) {
    const i64 rows = std::min<i64>(R, sq - i0);
    // Rows past sq reuse the last real row (computed, never stored): no branches in the FMAs.
    const float* q[R];
    i64 nv[R];
    for (int r = 0; r < R; ++r) {
      const i64 i = i0 + std::min<i64>(r, rows - 1);
      q[r] = p.q + i * d;
      nv[r] = visible_keys(p, i);
    }
    const i64 nvmax = nv[rows - 1];  // visibility grows with i
    const i64 nbmax = (nvmax + 7) / 8;
    for (i64 b = 0; b < nbmax; ++b) {
      v8f acc[R] = {};
      for (i64 t = 0; t < d; ++t) {
        const v8f kv = v8_load(kt + t * nb * 8 + 8 * b);
        for (int r = 0; r < R; ++r) acc[r] += (q[r][t] * p.scale) * kv;
      }
      for (int r = 0; r < R; ++r) v8_store(sc[r] + 8 * b, acc[r]);
    }
    float inv[R];
    for (int r = 0; r < R; ++r) {
      float* s = sc[r];
      const v8i lim = v8i{} + static_cast<std::int32_t>(nv[r]);
      v8f mv = v8f{} + s[0];
      for (i64 b = 0; b < nbmax; ++b) {
        const v8f x = v8_load(s + 8 * b);
        const v8i idx = lane + static_cast<std::int32_t>(8 * b);
        mv = (idx < lim && x > mv) ? x : mv;
      }
      const float mx = v8_hmax(mv);
      v8f sum = v8f{};
      for (i64 b = 0; b < nbmax; ++b) {
        const v8i idx = lane + static_cast<std::int32_t>(8 * b);
        const v8f e = idx < lim ? v8_exp(v8_load(s + 8 * b) - mx) : v8f{};
        sum += e;
        v8_store(s + 8 * b, e);
      }
      inv[r] = 1.0f / v8_hsum(sum);
    }
    // P @ V. A row never multiplies the values of keys it cannot see (a zero weight times an
    // inf or NaN value would leak into it): keys [nv[r0-1], nv[r0]) go to rows r0.. only, and
    // without causal masking there is a single run over every key for all rows.
    // (Each run has a compile-time first row, so the accumulators stay in registers.)
    i64 c = 0;
    for (; c + 8 <= dv; c += 8) {
      v8f acc[R] = {};
      i64 j = 0;
      auto run = [&](auto first_row) {
        constexpr int r0 = decltype(first_row)::value;
        for (; j < nv[r0]; ++j) {
          const v8f vj = v8_load(p.v + j * dv + c);
          for (int r = r0; r < R; ++r) acc[r] += sc[r][j] * vj;
        }
      };
      static_assert(R == 4, "one run per row below");
      if (nv[0] == nvmax) {  // every row sees every key (not causal): one plain run
        for (; j < nvmax; ++j) {
          const v8f vj = v8_load(p.v + j * dv + c);
          for (int r = 0; r < R; ++r) acc[r] += sc[r][j] * vj;
        }
      } else {
        run(std::integral_constant<int, 0>{});
        run(std::integral_constant<int, 1>{});
        run(std::integral_constant<int, 2>{});
        run(std::integral_constant<int, 3>{});
      }
      for (int r = 0; r < rows; ++r) v8_store(p.out + (i0 + r) * dv + c, acc[r] * inv[r]);
    }
    for (; c < dv; ++c) {
      for (int r = 0; r < rows; ++r) {
        float acc = 0.0f;
        for (i64 j = 0; j < nv[r]; ++j) acc += sc[r][j] * p.v[j * dv + c];
        p.out[(i0 + r) * dv + c] = acc * inv[r];
      }
    }
  }
}

void attention_small_generic(const Att& p) { attention_small_body(p); }
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void attention_small_avx2(const Att& p) {
  attention_small_body(p);
}
#endif

using SmallFn = void (*)(const Att&);
SmallFn pick_small() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return attention_small_avx2;
#endif
  return attention_small_generic;
}

void attention_small(const Att& p) {
  static const SmallFn fn = pick_small();
  fn(p);
}

struct Scratch {
  std::vector<float> buf;
  float* get(i64 n) {
    if (static_cast<i64>(buf.size()) < n) buf.resize(static_cast<std::size_t>(n));
    return buf.data();
  }
};

// Rows [q0, q0+bq) with online softmax over key blocks.
void attention_block(const Att& p, i64 q0, i64 bq, float* scratch) {
  const i64 d = p.d, dv = p.dv, sk = p.sk;
  float* kt = scratch;             // [d][BK]
  float* s = kt + d * BK;          // [BQ][BK]
  float* o = s + BQ * BK;          // [BQ][dv]
  float* mrow = o + BQ * dv;       // [BQ] running max
  float* lrow = mrow + BQ;         // [BQ] running sum
  float* qs = lrow + BQ;           // [BQ][d] scaled queries
  for (i64 r = 0; r < bq; ++r) {
    for (i64 t = 0; t < d; ++t) qs[r * d + t] = p.q[(q0 + r) * d + t] * p.scale;
    for (i64 c = 0; c < dv; ++c) o[r * dv + c] = 0.0f;
    mrow[r] = 0.0f;
    lrow[r] = 0.0f;
  }
  // Keys beyond the last row's horizon are masked for every row of the block.
  const i64 kend = p.causal ? std::min(sk, q0 + bq) : sk;
  for (i64 k0 = 0; k0 < kend; k0 += BK) {
    const i64 bk = std::min(BK, kend - k0);
    for (i64 j = 0; j < bk; ++j)
      for (i64 t = 0; t < d; ++t) kt[t * BK + j] = p.k[(k0 + j) * d + t];
    for (i64 r = 0; r < bq; ++r) {
      const i64 nv = std::min(visible_keys(p, q0 + r) - k0, bk);
      if (nv <= 0) continue;
      float* sr = s + r * BK;
      const float* qr = qs + r * d;
      for (i64 j = 0; j < nv; ++j) sr[j] = 0.0f;
      for (i64 t = 0; t < d; ++t) {
        const float qv = qr[t];
        const float* kr = kt + t * BK;
        for (i64 j = 0; j < nv; ++j) sr[j] += qv * kr[j];
      }
      const float bmax = max_of(sr, nv);
      // First block a row sees: no history to rescale (lrow == 0 marks it).
      const float mnew = lrow[r] == 0.0f ? bmax : std::max(mrow[r], bmax);
      const float corr = lrow[r] == 0.0f ? 0.0f : fast_exp(mrow[r] - mnew);
      for (i64 j = 0; j < nv; ++j) sr[j] = fast_exp(sr[j] - mnew);
      lrow[r] = lrow[r] * corr + sum8(sr, nv);
      mrow[r] = mnew;
      float* orow = o + r * dv;
      if (corr != 1.0f)
        for (i64 c = 0; c < dv; ++c) orow[c] *= corr;
      for (i64 j = 0; j < nv; ++j) {
        const float pj = sr[j];
        const float* vj = p.v + (k0 + j) * dv;
        for (i64 c = 0; c < dv; ++c) orow[c] += pj * vj[c];
      }
    }
  }
  for (i64 r = 0; r < bq; ++r) {
    const float inv = 1.0f / lrow[r];
    float* dst = p.out + (q0 + r) * dv;
    for (i64 c = 0; c < dv; ++c) dst[c] = o[r * dv + c] * inv;
  }
}

void attention_blocked(const Att& p) {
  const i64 blocks = (p.sq + BQ - 1) / BQ;
  const i64 need = p.d * BK + BQ * BK + BQ * p.dv + 2 * BQ + BQ * p.d;
  const i64 work = p.sq * p.sk * (p.d + p.dv);
  auto task = [&](i64 lo, i64 hi) {
    thread_local Scratch scratch;  // grow-only: no allocation after the first large call
    float* buf = scratch.get(need);
    for (i64 b = lo; b < hi; ++b) {
      const i64 q0 = b * BQ;
      attention_block(p, q0, std::min(BQ, p.sq - q0), buf);
    }
  };
  // One block per task once the call is big enough to pay for waking workers.
  parallel_for(0, blocks, work >= (i64{1} << 20) ? 1 : blocks, task);
}

#if defined(LC_HAVE_BLAS)
// ---- gemm path: the two products of each (query block, key tile) pair go through sgemm ----
//
// Per task: a block of query rows (gemm_query_block). Per key tile of GK keys:
//   S = scale * Q_blk K_tile^T          (sgemm into a per-thread block x GK scratch tile)
//   online softmax on S, row by row: running max m / sum l, P = exp(S - m) in place
//   O_blk = corr * O_blk + P V_tile     (rows rescaled, then sgemm with beta = 1)
// O_blk lives directly in `out` (first tile: beta = 0, so `out` is never read before being
// written). Causal: key tiles past the block's last row are skipped, rows of a tile that see
// none of its keys are left out of both sgemms, and keys a row cannot see get P = 0 exactly
// (finite V then contributes exactly 0; a NaN/inf in V at a masked position of the diagonal
// tile would leak through 0 * inf, unlike the other paths, which skip masked keys).
// Query rows per task: up to kGqMax, fewer when that would leave pool threads idle (a task per
// thread at least). Measured on two cores (attention2d, d = 64): 256-row blocks x 256-key tiles
// 0.71 ms at 512^2 and 24 ms at 4096^2 against 0.81 / 27 ms with 128-row blocks and
// 0.93 / 34 ms with 32-row blocks x 512-key tiles (bigger sgemm calls amortise OpenBLAS's
// packing; the score tile, 256 KB, stays in L2).
constexpr i64 kGqMax = 256;
constexpr i64 kGqMin = 32;
constexpr i64 GK = 256;  // keys per tile: V tile 64 KB at dv = 64

// ... and at least ~2M multiply-adds per task: below that, waking a second thread costs more
// than it saves (128^2 x d64 on two cores: 0.055 ms in one 128-row task, 0.066-0.096 ms as two).
i64 gemm_query_block(const Att& p) {
  const i64 threads = std::max(1, num_threads());
  const i64 per_thread = (p.sq + threads - 1) / threads;
  const i64 per_row = std::max<i64>(1, p.sk * (p.d + p.dv));
  const i64 min_rows = ((i64{1} << 21) + per_row - 1) / per_row;
  return std::clamp<i64>((std::max(per_thread, min_rows) + 15) / 16 * 16, kGqMin, kGqMax);
}

// Online-softmax update of one score row: s[0..nv) are the visible scores, s[nv..bk) is
// zeroed. Rescales orow by e^(m_old - m_new) when the row has history (l > 0).
// Written with explicit vectors of W lanes (8: AVX2, 16: AVX-512): the scalar form (fast_exp
// per element in an 8-way unrolled loop) was not vectorised by g++ (a compare-and-branch per
// element) and its exps took half of the whole call (attention2d 512^2 x d64 on two cores:
// 1.33 ms, ~51% of it in this function; perf, 2026-12-01).
template <int W>
[[gnu::always_inline]] inline void online_row_body(float* s, i64 nv, i64 bk, float& m, float& l,
                                                   float* orow, i64 dv) {
  using vf = typename VecOf<W>::F;
  using vi = typename VecOf<W>::I;
  auto load = [](const float* p) {
    vf v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  const i64 nvw = nv / W * W;
  vf mv = vf{} + s[0];
  for (i64 j = 0; j < nvw; j += W) {
    const vf x = load(s + j);
    mv = x > mv ? x : mv;  // NaN never wins, as in the scalar tail
  }
  float bmax = mv[0];
  for (int u = 1; u < W; ++u) bmax = mv[u] > bmax ? mv[u] : bmax;
  for (i64 j = nvw; j < nv; ++j) bmax = s[j] > bmax ? s[j] : bmax;
  const bool first = l == 0.0f;
  const float mnew = first ? bmax : std::max(m, bmax);
  vf sum = vf{};
  for (i64 j = 0; j < nvw; j += W) {
    const vf e = vec_exp<vf, vi>(load(s + j) - mnew);
    std::memcpy(s + j, &e, sizeof(e));
    sum += e;
  }
  float t = 0.0f;
  for (int u = 0; u < W; ++u) t += sum[u];
  for (i64 j = nvw; j < nv; ++j) {
    s[j] = fast_exp(s[j] - mnew);
    t += s[j];
  }
  for (i64 j = nv; j < bk; ++j) s[j] = 0.0f;
  if (!first) {
    const float corr = fast_exp(m - mnew);
    l = l * corr + t;
    if (corr != 1.0f)
      for (i64 c = 0; c < dv; ++c) orow[c] *= corr;
  } else {
    l = t;
  }
  m = mnew;
}

void online_row_generic(float* s, i64 nv, i64 bk, float& m, float& l, float* orow, i64 dv) {
  online_row_body<8>(s, nv, bk, m, l, orow, dv);
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void online_row_avx2(float* s, i64 nv, i64 bk, float& m,
                                                         float& l, float* orow, i64 dv) {
  online_row_body<8>(s, nv, bk, m, l, orow, dv);
}
__attribute__((target("avx512f,avx2,fma"))) void online_row_avx512(float* s, i64 nv, i64 bk,
                                                                   float& m, float& l,
                                                                   float* orow, i64 dv) {
  online_row_body<16>(s, nv, bk, m, l, orow, dv);
}
#endif

using RowFn = void (*)(float*, i64, i64, float&, float&, float*, i64);
RowFn pick_row() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return online_row_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return online_row_avx2;
#endif
  return online_row_generic;
}

// Rows [q0, q0+bq), bq <= kGqMax. scratch: kGqMax*GK scores + running max + running sum.
void attention_gemm_block(const Att& p, i64 q0, i64 bq, float* scratch, RowFn row) {
  const i64 d = p.d, dv = p.dv, sk = p.sk;
  float* s = scratch;
  float* mrow = s + kGqMax * GK;
  float* lrow = mrow + kGqMax;
  float* o = p.out + q0 * dv;
  for (i64 r = 0; r < bq; ++r) mrow[r] = lrow[r] = 0.0f;
  const i64 kend = p.causal ? std::min(sk, q0 + bq) : sk;
  for (i64 k0 = 0; k0 < kend; k0 += GK) {
    const i64 bk = std::min(GK, kend - k0);
    // Causal: rows before r0 see none of this tile's keys (r0 = 0 for the first tile).
    const i64 r0 = p.causal ? std::max<i64>(0, k0 - q0) : 0;
    const i64 nr = bq - r0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nr),
                static_cast<int>(bk), static_cast<int>(d), p.scale, p.q + (q0 + r0) * d,
                static_cast<int>(d), p.k + k0 * d, static_cast<int>(d), 0.0f, s + r0 * GK,
                static_cast<int>(GK));
    for (i64 r = r0; r < bq; ++r) {
      const i64 nv = std::min(visible_keys(p, q0 + r) - k0, bk);  // >= 1 for r >= r0
      row(s + r * GK, nv, bk, mrow[r], lrow[r], o + r * dv, dv);
    }
    // Rows [r0, rf) see only part of this tile (causal diagonal): their P @ V runs over their
    // visible keys alone, so an inf/NaN value of a key they cannot see never meets a zero
    // weight. Rows [rf, bq) see the whole tile and go through the GEMM.
    // With finite values a zero weight contributes exactly zero, so the check (bk * dv reads,
    // cheap next to the GEMM) keeps the common case on the GEMM for every row.
    i64 rf = r0;
    if (p.causal && !all_finite(p.v + k0 * dv, bk * dv))
      while (rf < bq && visible_keys(p, q0 + rf) - k0 < bk) ++rf;
    for (i64 r = r0; r < rf; ++r) {
      const i64 nv = visible_keys(p, q0 + r) - k0;
      float* orow = o + r * dv;
      if (k0 == 0) std::fill(orow, orow + dv, 0.0f);
      for (i64 j = 0; j < nv; ++j) {
        const float pj = s[r * GK + j];
        const float* vj = p.v + (k0 + j) * dv;
        for (i64 c = 0; c < dv; ++c) orow[c] += pj * vj[c];
      }
    }
    if (bq > rf)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(bq - rf),
                  static_cast<int>(dv), static_cast<int>(bk), 1.0f, s + rf * GK,
                  static_cast<int>(GK), p.v + k0 * dv, static_cast<int>(dv),
                  k0 == 0 ? 0.0f : 1.0f, o + rf * dv, static_cast<int>(dv));
  }
  for (i64 r = 0; r < bq; ++r) {
    const float inv = 1.0f / lrow[r];
    for (i64 c = 0; c < dv; ++c) o[r * dv + c] *= inv;
  }
}

// sgemm inside pool tasks must run single-threaded: BlasOneThread (blas_threads.h) sets
// OpenBLAS to 1 thread around the pool job and restores it afterwards.
void attention_gemm(const Att& p) {
  static const RowFn row = pick_row();
  const i64 gq = gemm_query_block(p);
  const i64 blocks = (p.sq + gq - 1) / gq;
  const i64 need = kGqMax * GK + 2 * kGqMax;
  auto task = [&](i64 lo, i64 hi) {
    thread_local Scratch scratch;  // grow-only: no allocation after the first large call
    float* buf = scratch.get(need);
    for (i64 t = lo; t < hi; ++t) {
      // Causal: heaviest blocks (last rows) first, so the pool's final chunks are the light ones.
      const i64 b = p.causal ? blocks - 1 - t : t;
      const i64 q0 = b * gq;
      attention_gemm_block(p, q0, std::min(gq, p.sq - q0), buf, row);
    }
  };
  BlasOneThread one;
  parallel_for(0, blocks, 1, task);
}
#endif  // LC_HAVE_BLAS

// K^T is stored with each row padded to whole 8-lane vectors: d * round_up(sk, 8) floats
// must fit the stack buffer. (Bounding d * sk alone let e.g. sk = 1, d = 8192 through, which
// needs 8x the buffer.)
bool small_fits(const Att& p) {
  return p.sk <= kSmallMaxSk && p.d * ((p.sk + 7) / 8 * 8) <= kSmallMaxKt;
}

// sq >= 1, dv >= 1.
void run_paths(AttentionPath path, const Att& p) {
  if (p.sk <= 0) {  // no keys: define the empty weighted sum as zero rather than 0/0
    std::fill(p.out, p.out + p.sq * p.dv, 0.0f);
    return;
  }
  if (path == AttentionPath::automatic) {
    const i64 work = p.sq * p.sk * (p.d + p.dv);
    path = small_fits(p) && work <= kSmallMaxWork ? AttentionPath::small : AttentionPath::blocked;
    if (path == AttentionPath::blocked && have_blas()) path = AttentionPath::gemm;
  }
  if (path == AttentionPath::small && small_fits(p)) {
    attention_small(p);
#if defined(LC_HAVE_BLAS)
  } else if (path == AttentionPath::gemm && p.d > 0 && blas_fits_int(p.d) && blas_fits_int(p.dv)) {
    attention_gemm(p);
#endif
  } else {
    attention_blocked(p);
  }
}

// float16 / bfloat16: q, k, v widened into one float32 block, the float32 paths, out rounded
// once. The block is the calling thread's (grow-only); pool workers only read it.
void run_16(AttentionPath path, const AttentionArgs& a) {
  thread_local Scratch wide;
  const i64 nq = a.sq * a.d, nk = a.sk * a.d, nv = a.sk * a.dv, no = a.sq * a.dv;
  float* buf = wide.get(nq + nk + nv + no);
  widen_to_f32(a.dtype, a.q, buf, nq);
  widen_to_f32(a.dtype, a.k, buf + nq, nk);
  widen_to_f32(a.dtype, a.v, buf + nq + nk, nv);
  float* out = buf + nq + nk + nv;
  run_paths(path, Att{buf, buf + nq, buf + nq + nk, out, a.sq, a.sk, a.d, a.dv, a.causal, a.scale});
  narrow_from_f32(a.dtype, out, a.out, no);
}

}  // namespace

void attention_with(AttentionPath path, const AttentionArgs& a) {
  if (a.sq <= 0 || a.dv <= 0) return;
  if (a.dtype != DType::f32) return run_16(path, a);
  run_paths(path, Att{static_cast<const float*>(a.q), static_cast<const float*>(a.k),
                      static_cast<const float*>(a.v), static_cast<float*>(a.out), a.sq, a.sk,
                      a.d, a.dv, a.causal, a.scale});
}

void attention(const AttentionArgs& p) { attention_with(AttentionPath::automatic, p); }

#if defined(LC_HAVE_BLAS)
// The gemm path's online-softmax row update, shared with attention_mha.cpp (cpu_ops.h).
void attention_online_row(float* s, std::int64_t nv, std::int64_t bk, float& m, float& l,
                          float* orow, std::int64_t dv) {
  static const RowFn row = pick_row();
  row(s, nv, bk, m, l, orow, dv);
}
#endif

}  // namespace lc::cpu
