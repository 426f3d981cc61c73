// Flash decoding (Backend::attention_mha for a few query rows against a long K/V cache): the
// keys are split across blocks, each block reduces its chunk to a partial softmax state, and a
// second kernel merges the states (log-sum-exp rescaling). Float32 arithmetic (FFMA) for
// float32, float16 and bfloat16 storage; float32 partial results in scratch.
//
// Why: attention_mha.cu gives a block 64 query rows of one (batch, head) and no key split, so
// with sq = 1 only batch x heads blocks run (256 for the issue's B8 H32 decode shape, each
// walking 4096 keys alone) and 63 of 64 query rows of each tile are padding. Decoding is
// bandwidth-bound: K and V (134 MB for B8 Hk8 Sk4096 D128 in bf16) must stream from HBM once.
//
// Phase 1 (decode_partial_kernel), grid (split, kv head x row chunk, batch), 128 threads (the
// default; the compiled variants, run_decode_variant, change warps, keys in flight, launch
// bounds and the split rule):
//   * a block owns one chunk of keys [split * chunk, min(sk, (split + 1) * chunk)) of one
//     (batch, kv head) and up to R "rows" = (query head of the kv head's group, query row)
//     pairs. All the group's query heads share the block, so a kv head's K/V are read from HBM
//     once for its group (grouped-query decode stays bandwidth-bound instead of H / Hk times
//     slower). Groups with more than 8 rows (MQA with many heads, or sq x group > 8) take
//     several row chunks; those blocks read the same K/V chunk, mostly from L2.
//   * LPK lanes ("a key group") hold one key row in 16-byte vectors (8 bf16 / fp16 or 4 fp32
//     per vector, NV vectors per lane): a warp covers 32 / LPK keys at a time; each lane keeps
//     the rows' q slices (scaled by scale * log2 e: the softmax runs in the exp2 domain) in
//     registers, dots them with its K slice and finishes the dot products with xor shuffles
//     inside the key group. Each key group runs its own online softmax (m, l, unnormalised o)
//     over U keys per step, with the next step's K/V vectors loaded before this step's math
//     (register double buffering keeps ~2 x U x NV x 32 bytes per thread in flight).
//   * the key groups' states are merged (shuffles within a warp, shared memory across warps)
//     and the block writes m, l (float2, exp2 domain) and o (float32, unnormalised) per row to
//     scratch [split][row][dv] (row = (batch * heads + head) * sq + query row).
// Phase 2 (decode_combine_kernel), one warp per row: M = max m_s, w_s = 2^(m_s - M),
//   out = sum_s w_s o_s / sum_s w_s l_s, rounded once; lse = (M + log2 L) ln 2.
//
// Masks as MhaArgs (backend.h) and attention_mha.cu: causal bottom-right (query i sees keys
// j <= i + sk - sq; with sq <= 8 only the last keys are hidden), keep masks (int32 / int64, 0
// hides the key) and additive masks (storage dtype, added to the scaled score) through four
// int64 strides. A masked key (an additive -inf included) contributes exactly nothing: its
// score is set to -inf whatever K holds, and its V is skipped (never 0 * inf or 0 * NaN); a row
// that sees no key gets zeros and lse = -inf.
//
// Which calls (attention_decode_supported): float32 / float16 / bfloat16; 1 <= sq <= 8; d and
// dv multiples of 8 in [8, 256] (they may differ); q, k, v 16-byte aligned with (batch, head,
// row) strides that are multiples of a 16-byte vector (strides of length-1 dimensions are not
// used); unit-stride columns (MhaArgs' contract). launch_attention_mha sends it those calls
// with sk >= kDecodeMinKeys (attention_decode_applies).
//
// Why sq <= 8: a block keeps R <= 8 rows x 8 floats of q and of o per lane in registers; the
// work per key grows with the rows while the bytes per key do not, and from ~16 rows a block
// is compute-bound on FFMA where attention_mha.cu's 64-row tiles (shared-memory reuse of K/V
// across 64 rows) do better. sq <= 8 covers single-token decode and short speculative-decoding
// drafts. Why sk >= 256: below that the whole call is a few microseconds either way and
// attention_mha.cu's single launch has the smaller fixed cost (no second kernel, no scratch).
//
// Split count (SplitRule; the default): enough blocks to fill the GPU once (SMs x resident
// blocks per SM from the occupancy calculator, at most 4), never a chunk shorter than 64 keys,
// at most 1024 splits;
// chunks are whole steps (SLOTS x U keys), so only the last chunk has a ragged end.
//
// Scratch (splits x rows x (dv + 2) floats) comes from the caching allocator and goes back
// right after the launches are queued (stream order: the next user runs after our kernels;
// under graph capture the allocator holds frees back until the graph is destroyed).
// Indexing is int64; blocks loop over batch and kv head x row chunk when those exceed a grid
// dimension's 65535.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/context.h"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"

namespace lc::cuda {

namespace {

using i64 = std::int64_t;

constexpr int kMaxSplits = static_cast<int>(kDecodeMaxSplits);
constexpr i64 kMinChunk = 64;  // keys per split at least
constexpr int kMaxGridYZ = 65535;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// One compiled variant of the partial kernel (LC_ATTENTION_DECODE_VARIANT /
// set_attention_kernel_variant; the table is run_decode_variant's): WARPS warps per block, the
// keys per key group per step divided by UDIV (fewer K / V registers in flight, more blocks per
// SM), MINB the minimum resident blocks per SM given to __launch_bounds__ (caps registers at
// 65536 / (MINB * threads); 0: none given, ptxas's own heuristic, what the kernel had before
// the variants: 168 registers and an 8-byte spill for R = 4).
template <int WARPS, int UDIV, int MINB>
struct DecTiling {
  static_assert(WARPS >= 1 && WARPS <= 8 && UDIV >= 1 && MINB >= 0, "decode tiling");
  static constexpr int kWarps = WARPS;
  static constexpr int kThreads = 32 * WARPS;
  static constexpr int kUDiv = UDIV;
  static constexpr int kMinBlocks = MINB;
};
using DecDefault = DecTiling<4, 1, 1>;

// The layout of one block for storage type T, head dims up to DMAX, R rows and tiling TL.
template <class T, int DMAX, int R, class TL>
struct DecCfg {
  static constexpr int kWarps = TL::kWarps;
  static constexpr int kV = kVec<T>;            // elements per 16-byte vector
  static constexpr int NVEC = DMAX / kV;         // vectors per row (at most)
  static constexpr int LPK = NVEC < 32 ? NVEC : 32;  // lanes per key
  static constexpr int NV = NVEC / LPK;          // vectors per lane
  static constexpr int KPW = 32 / LPK;           // keys per warp at a time
  static constexpr int SLOTS = kWarps * KPW;     // key groups per block
  static constexpr int F = NV * kV;              // floats of a row per lane
  // keys per key group per step: ~4 vectors of K and of V in flight per lane, halved for 8 rows
  // (q and o then take 128 registers)
  static constexpr int U0 = 4 / NV;
  static constexpr int U1 = R >= 8 && U0 > 1 ? U0 / 2 : U0;
  static constexpr int U = U1 / TL::kUDiv > 0 ? U1 / TL::kUDiv : 1;
  static constexpr int STEP = SLOTS * U;         // keys per block per step
  static_assert(NVEC % LPK == 0 && 32 % LPK == 0 && U >= 1, "decode layout");
};

struct DecodeParams {
  const void* q;
  const void* k;
  const void* v;
  const void* mask;
  float* opart;  // [splits][rows][dv]
  float2* ml;    // [splits][rows]: (m, l), exp2 domain
  i64 qs[3], ks[3], vs[3];  // batch, head, row strides (elements)
  i64 ms[4];                // mask: batch, head, row, key strides (elements)
  i64 batch, sq, sk, off, chunk, rows;  // off = sk - sq; rows = batch * heads * sq
  int heads, kv_heads, group, grows, nrc, d, dv;  // grows = group * sq; nrc = row chunks
  float scale_log2;  // scale * log2(e), folded into q
  int mask_kind;     // 0 none, 1 additive (dtype T), 2 keep int32, 3 keep int64
  bool causal;
};

// The partial kernel's body; decode_partial_kernel / decode_partial_kernel_minb below are its
// two launch-bounds forms.
template <class T, int DMAX, int R, class TL>
__device__ __forceinline__ void decode_partial_body(const DecodeParams& p) {
  using C = DecCfg<T, DMAX, R, TL>;
  constexpr int kWarps = TL::kWarps, kThreads = TL::kThreads;
  constexpr int kV = C::kV, LPK = C::LPK, NV = C::NV, F = C::F, U = C::U, SLOTS = C::SLOTS;
  __shared__ __align__(16) float s_o[kWarps][R][DMAX];
  __shared__ float s_m[kWarps][R], s_l[kWarps][R];
  __shared__ i64 s_mbase[R], s_lim[R];  // per row: mask offset without the key, last visible key

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int li = lane % LPK;                        // lane within the key group
  const int slot = warp * C::KPW + lane / LPK;      // key group within the block
  const int nvk = p.d / kV, nvv = p.dv / kV;        // vectors per K / V row
  const i64 k_begin = static_cast<i64>(blockIdx.x) * p.chunk;
  const i64 k_end = min(p.sk, k_begin + p.chunk);
  const i64 ycount = static_cast<i64>(p.kv_heads) * p.nrc;
  const i64 split_rows = static_cast<i64>(blockIdx.x) * p.rows;

  for (i64 b = blockIdx.z; b < p.batch; b += gridDim.z) {
    for (i64 y = blockIdx.y; y < ycount; y += gridDim.y) {
      const int g = static_cast<int>(y / p.nrc);
      const int r0 = static_cast<int>(y - static_cast<i64>(g) * p.nrc) * R;  // first group row
      const int nr = min(R, p.grows - r0);
      // This block's rows are global rows row0 .. row0 + nr - 1 (a group's heads are adjacent).
      const i64 row0 = (b * p.heads + static_cast<i64>(g) * p.group) * p.sq + r0;

      __syncthreads();  // the previous (b, y)'s readers of the shared arrays are done
      if (threadIdx.x < R) {
        const int r = threadIdx.x;
        i64 base = 0, lim = -1;
        if (r < nr) {
          const int gr = r0 + r;
          const i64 h = static_cast<i64>(g) * p.group + gr / p.sq;
          const i64 qi = gr % p.sq;
          base = b * p.ms[0] + h * p.ms[1] + qi * p.ms[2];
          lim = qi + p.off;
        }
        s_mbase[r] = base;
        s_lim[r] = lim;
      }

      // q slices, scaled into the exp2 domain; rows >= nr and columns >= d are zeros.
      float q[R][F];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int e = 0; e < F; ++e) q[r][e] = 0.0f;
        if (r < nr) {
          const int gr = r0 + r;
          const i64 h = static_cast<i64>(g) * p.group + gr / p.sq;
          const i64 qi = gr % p.sq;
          const T* qrow = static_cast<const T*>(p.q) + b * p.qs[0] + h * p.qs[1] + qi * p.qs[2];
#pragma unroll
          for (int j = 0; j < NV; ++j) {
            const int c = li + j * LPK;
            if (c < nvk) {
              widen16<T>(ldg16(qrow + c * kV), &q[r][j * kV]);
#pragma unroll
              for (int e = 0; e < kV; ++e) q[r][j * kV + e] *= p.scale_log2;
            }
          }
        }
      }

      const T* kb = static_cast<const T*>(p.k) + b * p.ks[0] + g * p.ks[1];
      const T* vb = static_cast<const T*>(p.v) + b * p.vs[0] + g * p.vs[1];
      auto load_step = [&](i64 base, uint4 (&kr)[U][NV], uint4 (&vr)[U][NV]) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const i64 key = base + u * SLOTS + slot;
#pragma unroll
          for (int j = 0; j < NV; ++j) {
            const int c = li + j * LPK;
            kr[u][j] = make_uint4(0u, 0u, 0u, 0u);
            vr[u][j] = make_uint4(0u, 0u, 0u, 0u);
            if (key < k_end) {
              if (c < nvk) kr[u][j] = ldg16(kb + key * p.ks[2] + c * kV);
              if (c < nvv) vr[u][j] = ldg16(vb + key * p.vs[2] + c * kV);
            }
          }
        }
      };

      float o[R][F], m[R], l[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < F; ++e) o[r][e] = 0.0f;
      }
      __syncthreads();  // s_mbase / s_lim written

      uint4 kc[U][NV], vc[U][NV];
      load_step(k_begin, kc, vc);
      for (i64 base = k_begin; base < k_end; base += C::STEP) {
        uint4 kn[U][NV], vn[U][NV];
        load_step(base + C::STEP, kn, vn);  // zeros past the chunk (no loads)

        // scores s[u][r] = q_r . k_key (the key group's lanes each add their slice)
        float s[U][R];
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
          for (int r = 0; r < R; ++r) s[u][r] = 0.0f;
#pragma unroll
          for (int j = 0; j < NV; ++j) {
            float kf[kV];
            widen16<T>(kc[u][j], kf);
#pragma unroll
            for (int r = 0; r < R; ++r)
#pragma unroll
              for (int e = 0; e < kV; ++e) s[u][r] = fmaf(q[r][j * kV + e], kf[e], s[u][r]);
          }
        }
#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int r = 0; r < R; ++r)
#pragma unroll
            for (int sh = LPK / 2; sh > 0; sh >>= 1)
              s[u][r] += __shfl_xor_sync(0xffffffffu, s[u][r], sh);

        // Masks: only steps that reach past the chunk, may meet a causal limit (the smallest
        // limit of any row is off), or have a mask tensor.
        const bool masked = base + C::STEP > k_end || p.mask_kind != 0 ||
                            (p.causal && base + C::STEP - 1 > p.off);
        if (masked) {
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const i64 key = base + u * SLOTS + slot;
#pragma unroll
            for (int r = 0; r < R; ++r) {
              bool vis = key < k_end && r < nr;
              if (vis && p.causal && key > s_lim[r]) vis = false;
              if (vis && p.mask_kind != 0) {
                const i64 mi = s_mbase[r] + key * p.ms[3];
                if (p.mask_kind == 1) {
                  // -inf hides the key outright (a NaN or inf score there must not leak in)
                  const float mv = load_f(static_cast<const T*>(p.mask) + mi);
                  if (mv == -INFINITY) vis = false;
                  else s[u][r] = fmaf(mv, kLog2e, s[u][r]);
                } else if (p.mask_kind == 2) {
                  vis = __ldg(static_cast<const std::int32_t*>(p.mask) + mi) != 0;
                } else {
                  vis = __ldg(static_cast<const long long*>(p.mask) + mi) != 0;
                }
              }
              if (!vis) s[u][r] = -INFINITY;
            }
          }
        }

        // online softmax of this key group, then o += p v
        float w[U][R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float mx = s[0][r];
#pragma unroll
          for (int u = 1; u < U; ++u) mx = fmaxf(mx, s[u][r]);
          const float mnew = fmaxf(m[r], mx);
          const float mref = mnew == -INFINITY ? 0.0f : mnew;  // nothing seen yet: keep zeros
          const float alpha = exp2f(m[r] - mref);
          m[r] = mnew;
          float rs = 0.0f;
#pragma unroll
          for (int u = 0; u < U; ++u) {
            w[u][r] = exp2f(s[u][r] - mref);  // -inf -> exactly 0
            rs += w[u][r];
          }
          l[r] = fmaf(l[r], alpha, rs);
#pragma unroll
          for (int e = 0; e < F; ++e) o[r][e] *= alpha;
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
          for (int j = 0; j < NV; ++j) {
            float vf[kV];
            widen16<T>(vc[u][j], vf);
#pragma unroll
            for (int r = 0; r < R; ++r) {
              // a masked key's weight is 0: skip its V (0 * inf or 0 * NaN would be NaN)
              if (masked && w[u][r] == 0.0f) continue;
#pragma unroll
              for (int e = 0; e < kV; ++e) o[r][j * kV + e] = fmaf(w[u][r], vf[e], o[r][j * kV + e]);
            }
          }
        }

#pragma unroll
        for (int u = 0; u < U; ++u)
#pragma unroll
          for (int j = 0; j < NV; ++j) {
            kc[u][j] = kn[u][j];
            vc[u][j] = vn[u][j];
          }
      }

      // Merge the key groups of a warp (lanes li, li + LPK, ... hold the same columns).
#pragma unroll
      for (int sh = LPK; sh < 32; sh <<= 1) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float mo = __shfl_xor_sync(0xffffffffu, m[r], sh);
          const float lo = __shfl_xor_sync(0xffffffffu, l[r], sh);
          const float mn = fmaxf(m[r], mo);
          const float mref = mn == -INFINITY ? 0.0f : mn;
          const float a = exp2f(m[r] - mref), c = exp2f(mo - mref);
          m[r] = mn;
          l[r] = l[r] * a + lo * c;
#pragma unroll
          for (int e = 0; e < F; ++e) {
            const float oo = __shfl_xor_sync(0xffffffffu, o[r][e], sh);
            o[r][e] = o[r][e] * a + oo * c;
          }
        }
      }
      if (lane < LPK) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int j = 0; j < NV; ++j) {
            const int c = li + j * LPK;
#pragma unroll
            for (int e = 0; e < kV; ++e) s_o[warp][r][c * kV + e] = o[r][j * kV + e];
          }
          if (lane == 0) {
            s_m[warp][r] = m[r];
            s_l[warp][r] = l[r];
          }
        }
      }
      __syncthreads();

      // Merge the warps and write this split's partial state of rows row0 .. row0 + nr - 1.
      for (int idx = threadIdx.x; idx < nr * p.dv; idx += kThreads) {
        const int r = idx / p.dv, c = idx - r * p.dv;
        float mx = s_m[0][r];
#pragma unroll
        for (int ww = 1; ww < kWarps; ++ww) mx = fmaxf(mx, s_m[ww][r]);
        const float mref = mx == -INFINITY ? 0.0f : mx;
        float acc = 0.0f;
#pragma unroll
        for (int ww = 0; ww < kWarps; ++ww) acc = fmaf(s_o[ww][r][c], exp2f(s_m[ww][r] - mref), acc);
        p.opart[(split_rows + row0 + r) * p.dv + c] = acc;
      }
      if (threadIdx.x < nr) {
        const int r = threadIdx.x;
        float mx = s_m[0][r];
#pragma unroll
        for (int ww = 1; ww < kWarps; ++ww) mx = fmaxf(mx, s_m[ww][r]);
        const float mref = mx == -INFINITY ? 0.0f : mx;
        float L = 0.0f;
#pragma unroll
        for (int ww = 0; ww < kWarps; ++ww) L = fmaf(s_l[ww][r], exp2f(s_m[ww][r] - mref), L);
        p.ml[split_rows + row0 + r] = make_float2(mx, L);
      }
    }
  }
}

template <class T, int DMAX, int R, class TL>
__global__ void __launch_bounds__(TL::kThreads) decode_partial_kernel(const DecodeParams p) {
  decode_partial_body<T, DMAX, R, TL>(p);
}
template <class T, int DMAX, int R, class TL>
__global__ void __launch_bounds__(TL::kThreads, TL::kMinBlocks > 0 ? TL::kMinBlocks : 1)
    decode_partial_kernel_minb(const DecodeParams p) {
  decode_partial_body<T, DMAX, R, TL>(p);
}

// Phase 2: one warp per row, kCombineWarps rows per block (H200, B1 H32 Hk8 Sk8192: 32 rows of
// 32 splits; a block per row with block-wide reductions took 6.8 us, as long as half the
// partial pass). Lane i merges splits i, i + 32, ... online, xor shuffles merge the lanes; the
// weights go to shared memory; each lane then sums 4 columns over all splits with 16-byte
// loads, unrolled so several are in flight.
constexpr int kCombineWarps = 4;

// out[row, c] = sum_s w_s o_s[row, c] / sum_s w_s l_s, w_s = 2^(m_s - max m); lse (optional).
// Row (b * heads + h) * sq + qi of out is written through out's (batch, head, row) strides
// (MhaArgs::out_strides, resolved by mha_out_strides). dv % 4 == 0 (attention_decode_supported:
// a multiple of 8) and a 16-byte aligned opart keep the float4 loads aligned.
template <class T>
__global__ void __launch_bounds__(32 * kCombineWarps)
    decode_combine_kernel(const float* __restrict__ opart, const float2* __restrict__ ml,
                          T* __restrict__ out, float* __restrict__ lse, i64 rows, int dv,
                          int splits, i64 sq, i64 heads, i64 os0, i64 os1, i64 os2) {
  __shared__ float s_w[kCombineWarps][kMaxSplits];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* w = s_w[warp];
  for (i64 row = static_cast<i64>(blockIdx.x) * kCombineWarps + warp; row < rows;
       row += static_cast<i64>(gridDim.x) * kCombineWarps) {
    float m = -INFINITY, l = 0.0f;
    for (int s = lane; s < splits; s += 32) {
      const float2 e = ml[s * rows + row];
      const float mn = fmaxf(m, e.x);
      const float mref = mn == -INFINITY ? 0.0f : mn;  // a split that saw no key: m = -inf
      l = l * exp2f(m - mref) + e.y * exp2f(e.x - mref);
      m = mn;
    }
#pragma unroll
    for (int sh = 16; sh > 0; sh >>= 1) {
      const float mo = __shfl_xor_sync(0xffffffffu, m, sh), lo = __shfl_xor_sync(0xffffffffu, l, sh);
      const float mn = fmaxf(m, mo);
      const float mref = mn == -INFINITY ? 0.0f : mn;
      l = l * exp2f(m - mref) + lo * exp2f(mo - mref);
      m = mn;
    }
    const float mref = m == -INFINITY ? 0.0f : m;
    for (int s = lane; s < splits; s += 32) w[s] = exp2f(ml[s * rows + row].x - mref);
    __syncwarp();
    // l == 0: the row saw no key: zeros and lse = -inf. (NaN inputs give a NaN l: NaN out.)
    const float inv = l == 0.0f ? 0.0f : 1.0f / l;
    const i64 bh = row / sq, qi = row - bh * sq, bb = bh / heads, hh = bh - bb * heads;
    T* orow = out + bb * os0 + hh * os1 + qi * os2;
    for (int c = lane * 4; c < dv; c += 128) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      const float* src = opart + row * dv + c;
#pragma unroll 4
      for (int s = 0; s < splits; ++s) {
        const float4 x = *reinterpret_cast<const float4*>(src + s * rows * dv);
        const float ws = w[s];
        acc.x = fmaf(ws, x.x, acc.x);
        acc.y = fmaf(ws, x.y, acc.y);
        acc.z = fmaf(ws, x.z, acc.z);
        acc.w = fmaf(ws, x.w, acc.w);
      }
      orow[c] = from_f<T>(acc.x * inv);
      orow[c + 1] = from_f<T>(acc.y * inv);
      orow[c + 2] = from_f<T>(acc.z * inv);
      orow[c + 3] = from_f<T>(acc.w * inv);
    }
    if (lse && lane == 0) lse[row] = l == 0.0f ? -INFINITY : (m + log2f(l)) * kLn2;
    __syncwarp();  // w is rewritten by the warp's next row
  }
}


// How many splits (see the header comment): enough blocks for `waves` fills of the GPU's
// resident block slots (SMs x the occupancy calculator's blocks per SM, at most
// max_blocks_per_sm), no chunk shorter than min_chunk keys, at most kMaxSplits.
struct SplitRule {
  int waves = 1;
  int max_blocks_per_sm = 4;
  i64 min_chunk = kMinChunk;
};

template <class T, int DMAX, int R, class TL>
void run_decode(const MhaArgs& a, const SplitRule& rule, cudaStream_t s) {
  using C = DecCfg<T, DMAX, R, TL>;
  constexpr int kThreads = TL::kThreads;
  auto kernel = [] {
    if constexpr (TL::kMinBlocks > 0) return decode_partial_kernel_minb<T, DMAX, R, TL>;
    else return decode_partial_kernel<T, DMAX, R, TL>;
  }();
  static std::once_flag once;
  static int occupancy = 1;
  std::call_once(once, [&] {
    LC_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occupancy, kernel, kThreads, 0));
    occupancy = std::max(occupancy, 1);
  });
  const int blocks_per_sm = std::clamp(occupancy, 1, std::max(1, rule.max_blocks_per_sm));

  DecodeParams p{};
  fill_mha_params(a, p);
  p.batch = a.batch;
  p.rows = a.batch * a.heads * a.sq;
  p.kv_heads = static_cast<int>(a.kv_heads);
  p.grows = p.group * static_cast<int>(a.sq);
  p.nrc = (p.grows + R - 1) / R;

  // Splits: fill the GPU's resident block slots once (see the header comment).
  const i64 pairs = a.batch * a.kv_heads * p.nrc;
  const i64 slots = static_cast<i64>(std::max(1, ctx().info.sm_count)) * blocks_per_sm *
                    std::max(1, rule.waves);
  const i64 min_chunk = std::max<i64>(1, rule.min_chunk);
  i64 splits = std::max<i64>(1, slots / pairs);
  splits = std::min<i64>({splits, (a.sk + min_chunk - 1) / min_chunk, kMaxSplits});
  splits = std::max<i64>(splits, 1);
  i64 chunk = (a.sk + splits - 1) / splits;
  chunk = (chunk + C::STEP - 1) / C::STEP * C::STEP;
  splits = (a.sk + chunk - 1) / chunk;  // <= the splits above
  p.chunk = chunk;

  const dim3 grid(static_cast<unsigned>(splits),
                  static_cast<unsigned>(std::min<i64>(a.kv_heads * p.nrc, kMaxGridYZ)),
                  static_cast<unsigned>(std::min<i64>(a.batch, kMaxGridYZ)));
  run_decode_splits(a, splits, [&](float* opart, float2* ml) {
    p.opart = opart;
    p.ml = ml;
    launch(kernel, grid, kThreads, 0, s, "attention_decode partial", p);
  }, s);
}

// The compiled variants of the CUDA-core partial kernel (backend.h: kAttentionDecodeVariants;
// their names, in this order, are in src/runtime/attention_impl.cpp; launch_attention_decode
// below sends variants 0 and 8-12 to the tensor-core kernel where it applies).
// Registers (ptxas, sm_90a) are in docs/attention.md.
//   0 / 7 (the CUDA-core default): 4 warps, U keys per key group per step,
//     __launch_bounds__(128, 1) (no spills: 199 registers for R = 4 at D <= 128), splits fill
//     the GPU once (<= 4 blocks per SM)
//   1 the kernel as it was before the variants: __launch_bounds__(128) alone (ptxas then aims at
//     3 blocks per SM: 168 registers, R = 4 spills 8 bytes), splits as 0
//   2 the default kernel, two waves of splits
//   3 U / 4 (one key per key group in flight) and __launch_bounds__(128, 4) (R <= 4; R = 8
//     takes U / 2 and keeps its registers: q and o alone take 128), up to 8 blocks per SM
//   4 8 warps, U / 4, __launch_bounds__(256, 2) (R = 8: U / 2, no cap, and D > 128 runs the
//     default: its merge buffer would pass 48 KB of static shared memory)
//   5 the default kernel, chunks of at least 256 keys (fewer splits, less combine work)
//   6 the default kernel, four waves of splits
template <class T, int DMAX, int R>
void run_decode_variant(const MhaArgs& a, int variant, cudaStream_t s) {
  switch (variant) {
    case 1: return run_decode<T, DMAX, R, DecTiling<4, 1, 0>>(a, SplitRule{}, s);
    case 2: return run_decode<T, DMAX, R, DecDefault>(a, SplitRule{2, 4, kMinChunk}, s);
    case 3:
      if constexpr (R <= 4)
        return run_decode<T, DMAX, R, DecTiling<4, 4, 4>>(a, SplitRule{1, 8, kMinChunk}, s);
      else
        return run_decode<T, DMAX, R, DecTiling<4, 2, 1>>(a, SplitRule{1, 8, kMinChunk}, s);
    case 4:
      if constexpr (R <= 4)
        return run_decode<T, DMAX, R, DecTiling<8, 4, 2>>(a, SplitRule{1, 4, kMinChunk}, s);
      else if constexpr (DMAX <= 128)
        return run_decode<T, DMAX, R, DecTiling<8, 2, 1>>(a, SplitRule{1, 4, kMinChunk}, s);
      break;
    case 5: return run_decode<T, DMAX, R, DecDefault>(a, SplitRule{1, 4, 256}, s);
    case 6: return run_decode<T, DMAX, R, DecDefault>(a, SplitRule{4, 4, kMinChunk}, s);
    default: break;
  }
  run_decode<T, DMAX, R, DecDefault>(a, SplitRule{}, s);
}
static_assert(kAttentionDecodeVariants == 13, "run_decode_variant, launch_attention_decode and attention_impl.cpp's table");

template <class T, int DMAX>
void run_decode_rows(const MhaArgs& a, int variant, cudaStream_t s) {
  const i64 grows = (a.heads / a.kv_heads) * a.sq;
  if (grows <= 1) run_decode_variant<T, DMAX, 1>(a, variant, s);
  else if (grows <= 4) run_decode_variant<T, DMAX, 4>(a, variant, s);
  else run_decode_variant<T, DMAX, 8>(a, variant, s);
}

}  // namespace

bool attention_decode_supported(const MhaArgs& a) {
  if (a.dtype != DType::f32 && a.dtype != DType::f16 && a.dtype != DType::bf16) return false;
  if (a.sq < 1 || a.sq > kDecodeMaxQueries || a.sk < 1 || a.batch < 1 || a.kv_heads < 1 ||
      a.heads < a.kv_heads || a.heads % a.kv_heads != 0)
    return false;
  if (a.heads / a.kv_heads * a.sq > (i64{1} << 24) || a.heads > (i64{1} << 24)) return false;
  for (i64 x : {a.d, a.dv})
    if (x < 8 || x > 256 || x % 8 != 0) return false;
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !a.out) return false;
  const int vec = a.dtype == DType::f32 ? 4 : 8;  // elements per 16 bytes
  const i64 nq[3] = {a.batch, a.heads, a.sq}, nk[3] = {a.batch, a.kv_heads, a.sk};
  return strides_in_vectors(a.q_strides, nq, vec) && strides_in_vectors(a.k_strides, nk, vec) &&
         strides_in_vectors(a.v_strides, nk, vec);
}

bool attention_decode_applies(const MhaArgs& a) {
  return a.sk >= kDecodeMinKeys && attention_decode_supported(a);
}

void run_decode_splits(const MhaArgs& a, i64 splits, const DecodePartial& partial, cudaStream_t s) {
  const i64 rows = a.batch * a.heads * a.sq;
  const std::size_t obytes = sizeof(float) * static_cast<std::size_t>(splits * rows * a.dv);
  const std::size_t mlbytes = sizeof(float2) * static_cast<std::size_t>(splits * rows);
  auto& alloc = CachingAllocator::instance();
  void* scratch = alloc.alloc(((obytes + 15) & ~std::size_t{15}) + mlbytes);
  // Stream order makes it safe to recycle the scratch as soon as the launches are queued; a
  // failing launch throws, and the scratch goes back all the same.
  struct ScratchBack {
    CachingAllocator& alloc;
    void* p;
    ~ScratchBack() { alloc.free(p); }
  } back{alloc, scratch};
  float* opart = static_cast<float*>(scratch);
  float2* ml = reinterpret_cast<float2*>(static_cast<char*>(scratch) + ((obytes + 15) & ~std::size_t{15}));
  partial(opart, ml);
  const unsigned cgrid =
      static_cast<unsigned>(std::min<i64>((rows + kCombineWarps - 1) / kCombineWarps, i64{1} << 20));
  i64 os[3];
  mha_out_strides(a, os);
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch(decode_combine_kernel<T>, cgrid, 32 * kCombineWarps, 0, s, "attention_decode combine",
           static_cast<const float*>(opart), static_cast<const float2*>(ml), static_cast<T*>(a.out),
           a.lse, rows, static_cast<int>(a.dv), static_cast<int>(splits), a.sq, a.heads, os[0], os[1],
           os[2]);
  });
}

bool launch_attention_decode(const MhaArgs& a, cudaStream_t s) {
  if (!attention_decode_supported(a)) return false;
  const int variant = attention_kernel_variant_choice(AttentionKernel::decode);
  // 0 (the default), 8-12: the tensor-core partial kernel (attention_decode_tc.cu: its tilings
  // 0, 1-5) for the calls it takes; the rest, and variants 1-7, the CUDA-core one.
  // H200 sweep: see docs/attention.md, "Kernel variants".
  const int tc_tiling = variant == 0 ? 0 : variant >= 8 ? variant - 7 : -1;
  if (tc_tiling >= 0 && launch_attention_decode_tc(a, tc_tiling, s)) return true;
  const int ffma = variant == 7 || variant >= 8 ? 0 : variant;
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const i64 dmax = std::max(a.d, a.dv);
    if (dmax <= 64) run_decode_rows<T, 64>(a, ffma, s);
    else if (dmax <= 128) run_decode_rows<T, 128>(a, ffma, s);
    else run_decode_rows<T, 256>(a, ffma, s);
  });
  return true;
}

}  // namespace lc::cuda
