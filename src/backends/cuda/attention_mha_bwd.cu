// The backward of batched multi-head / grouped-query attention (Backend::attention_mha_backward,
// MhaBackwardArgs), flash-attention-2 style: exact float32 arithmetic (FFMA) for float32,
// float16 and bfloat16 storage, head dims up to kCudaMaxHeadDim (256). No sq x sk matrix is
// stored: P = exp(S - lse) is recomputed tile by tile from q, k and the forward's lse.
//
// Three kernels, queued back to back on the stream:
//   1. mha_bwd_dot: D_i = sum_c dout[i,c] out[i,c] per query row (one warp per row) into float32
//      scratch [batch, heads, sq] from the caching allocator.
//   2. mha_bwd_dkdv: one block per (batch, key/value head g, tile of BK keys). It holds its K / V
//      tile in shared memory and dK / dV in registers, and walks the query tiles of every query
//      head of g's group (causal: only the tiles that can see its keys):
//        S = (scale q) K^T, P = exp(S - lse) (0 where invisible), dP = dO V^T,
//        dS = P (dP - D), dV += P^T dO, dK += dS^T (scale q).
//      Each block owns its rows of dk / dv, so the GQA sum is a plain register accumulation:
//      deterministic, no atomics.
//   3. mha_bwd_dq: one block per (batch, head, tile of BQ query rows), walking the key tiles it
//      can see: the same S / P / dP / dS, then dQ += dS K; dq = scale dQ.
// Masks are attention_mha.cu's: causal bottom-right (query i sees keys j <= i + sk - sq), keep
// (int32 / int64, 0 hides) or additive (storage dtype; -inf hides) read through four int64
// strides. An invisible key, or a row whose lse is -inf (it saw no key) or NaN, gets P = 0 by a
// select, and dS = 0 where P = 0; in tiles where masking can occur the products skip zero
// weights, so an inf / NaN in a masked key's k or v never reaches a gradient (0 * inf).
//
// Thread layout (256 threads = 16 x 16, tx = threadIdx.x & 15, ty = threadIdx.x >> 4), as the
// forward: an S-shaped tile [rows][keys] gives each thread rows ty*TM.. and keys tx + 16 j, with
// float4 reads along the head dimension (row stride DS = DMAX + 4: 4 mod 32 floats, so LDS.128
// is conflict-free); an accumulator [rows][cols] gives each thread rows ty*TR.. and the float4
// column groups tx*4 + 64 c. 16-bit tiles are widened on their way into shared memory
// (half_io.cuh: ldg_u16, never the non-volatile __ldg(__half*)); stores round once.
// Grids are 1-D with a grid-stride loop over a 64-bit block index (no 65535 limit applies);
// every element offset is int64.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
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

constexpr int kThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

// BQ query rows x BK keys per tile; DMAX bounds both d and dv.
template <int BQ, int BK, int DMAX>
struct BwdCfg {
  static constexpr int TM = BQ / 16;    // S-tile rows per thread
  static constexpr int TN = BK / 16;    // S-tile keys per thread
  static constexpr int TC = DMAX / 64;  // float4 column groups per accumulator row
  static constexpr int DS = DMAX + 4;   // row stride of the Q / dO / K / V tiles
  static constexpr int PS = BK + 4;     // row stride of the P / dS tiles
  static constexpr int kQ = 0;
  static constexpr int kDO = kQ + BQ * DS;
  static constexpr int kK = kDO + BQ * DS;
  static constexpr int kV = kK + BK * DS;
  static constexpr int kP = kV + BK * DS;
  static constexpr int kDS = kP + BQ * PS;
  static constexpr int kL = kDS + BQ * PS;  // lse * log2(e) per tile row (-inf: no key)
  static constexpr int kD = kL + BQ;        // D per tile row
  static constexpr int kFloats = kD + BQ;
  static constexpr std::size_t kSmemBytes = sizeof(float) * kFloats;
  static_assert(BQ % 16 == 0 && BK % 16 == 0 && DMAX % 64 == 0, "tile shape");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
};

// Kernel parameters (one struct, passed by value).
struct BwdParams {
  const void* q;
  const void* k;
  const void* v;
  const void* dout;
  const float* lse;
  const float* drow;  // D [batch * heads * sq]
  const void* mask;
  void* dq;
  void* dk;
  void* dvo;
  i64 qs[3], ks[3], vs[3], gs[3];  // batch, head, row strides (elements); gs: dout
  i64 ms[4];                       // mask: batch, head, row, key
  i64 blocks;                      // work items of the kernel (grid-stride loop)
  i64 sq, sk, off;                 // off = sk - sq
  int heads, kv_heads, group, ntiles, d, dv;
  float scale;
  int mask_kind;  // 0 none, 1 additive (dtype T), 2 keep int32, 3 keep int64
  bool causal, vec_qk, vec_v, vec_g;
};

template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return __ldg(reinterpret_cast<const float4*>(p));
  } else {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));  // asm volatile vector form
    float4 f;
    unpack2<T>(u.x, f.x, f.y);
    unpack2<T>(u.y, f.z, f.w);
    return f;
  }
}

// Rows [r0, r0 + R) x cols [0, DMAX) of a matrix whose row i starts at src + i * rstride, into
// shared memory (row stride DMAX + 4), times mul; rows >= nrows and cols >= ncols are zeros.
// vec: ncols % 4 == 0 and every row start 4-element aligned (16 / 8 bytes).
template <int R, int DMAX, class T>
__device__ __forceinline__ void load_tile(float* __restrict__ dst, const T* __restrict__ src,
                                          i64 rstride, i64 r0, i64 nrows, int ncols, bool vec,
                                          float mul) {
  constexpr int DS = DMAX + 4;
  if (vec) {
    constexpr int C4 = DMAX / 4;
    for (int idx = threadIdx.x; idx < R * C4; idx += kThreads) {
      const int r = idx / C4, c4 = idx - r * C4;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r0 + r < nrows && c4 * 4 < ncols) {
        v = load4(src + (r0 + r) * rstride + c4 * 4);
        v.x *= mul; v.y *= mul; v.z *= mul; v.w *= mul;
      }
      *reinterpret_cast<float4*>(dst + r * DS + c4 * 4) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < R * DMAX; idx += kThreads) {
      const int r = idx / DMAX, c = idx - r * DMAX;
      float v = 0.0f;
      if (r0 + r < nrows && c < ncols) v = load_f(src + (r0 + r) * rstride + c) * mul;
      dst[r * DS + c] = v;
    }
  }
}

// s[i][j] = sum_{c < n4} A[(ty*TM + i) * DS + c] * B[(tx + 16 j) * DS + c]  (n4 % 4 == 0; A and
// B zero beyond their real columns).
template <int TM, int TN, int DS>
__device__ __forceinline__ void tile_dot(const float* __restrict__ A, const float* __restrict__ B,
                                         int n4, float (&s)[TM][TN]) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) s[i][j] = 0.0f;
  for (int c = 0; c < n4; c += 4) {
    float4 af[TM], bf[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
      af[i] = *reinterpret_cast<const float4*>(A + (ty * TM + i) * DS + c);
#pragma unroll
    for (int j = 0; j < TN; ++j)
      bf[j] = *reinterpret_cast<const float4*>(B + (tx + 16 * j) * DS + c);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        s[i][j] = fmaf(af[i].x, bf[j].x, s[i][j]);
        s[i][j] = fmaf(af[i].y, bf[j].y, s[i][j]);
        s[i][j] = fmaf(af[i].z, bf[j].z, s[i][j]);
        s[i][j] = fmaf(af[i].w, bf[j].w, s[i][j]);
      }
  }
}

// Loads the per-row lse (times log2 e; -inf for rows >= sq) and D of query rows q0.. of pair bh.
template <int BQ>
__device__ __forceinline__ void load_rows_ld(float* Ls, float* Ds, const BwdParams& p, i64 bh,
                                             i64 q0) {
  for (int r = threadIdx.x; r < BQ; r += kThreads) {
    const i64 qi = q0 + r;
    const bool in = qi < p.sq;
    Ls[r] = in ? p.lse[bh * p.sq + qi] * kLog2e : -INFINITY;
    Ds[r] = in ? p.drow[bh * p.sq + qi] : 0.0f;
  }
}

// For one (query tile q0 of head h, key tile k0) pair with S and dP in registers: P and dS of
// this thread's entries into Ps (when kWriteP: the dK / dV kernel's dV needs P) and dSs (row
// stride PS). s enters as Q K^T (scale folded into Q). The caller synchronises before reading.
template <class T, bool kWriteP, int TM, int TN, int PS>
__device__ __forceinline__ void p_and_ds(const BwdParams& p, i64 mbase, i64 q0, i64 k0,
                                         bool need_mask, const float* Ls, const float* Ds,
                                         float (&s)[TM][TN], const float (&dp)[TM][TN],
                                         float* Ps, float* dSs) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = ty * TM + i;
    const i64 qi = q0 + r;
    const float L = Ls[r];
    const float Dr = Ds[r];
    const bool row_ok = L > -INFINITY;  // false for -inf (no visible key) and NaN
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int c = tx + 16 * j;
      const i64 kj = k0 + c;
      bool vis = row_ok;
      float x = s[i][j];
      if (need_mask && vis) {
        if (kj >= p.sk || (p.causal && kj > qi + p.off)) {
          vis = false;
        } else if (p.mask_kind != 0) {
          // qi < sq here (row_ok) and kj < sk; the clamp is a second guard only
          const i64 mi = mbase + min(qi, p.sq - 1) * p.ms[2] + min(kj, p.sk - 1) * p.ms[3];
          if (p.mask_kind == 1) {
            const float add = load_f(static_cast<const T*>(p.mask) + mi);
            if (add == -INFINITY) vis = false;
            else x += add;
          } else if (p.mask_kind == 2) {
            vis = __ldg(static_cast<const std::int32_t*>(p.mask) + mi) != 0;
          } else {
            vis = __ldg(static_cast<const long long*>(p.mask) + mi) != 0;
          }
        }
      }
      const float pij = vis ? exp2f(fmaf(x, kLog2e, -L)) : 0.0f;
      const float dsij = pij == 0.0f ? 0.0f : pij * (dp[i][j] - Dr);
      if constexpr (kWriteP) Ps[r * PS + c] = pij;
      dSs[r * PS + c] = dsij;
    }
  }
}

// True when some entry of the (q0.., k0..) tile may be invisible (then products skip zeros).
__device__ __forceinline__ bool tile_needs_mask(const BwdParams& p, i64 q0, int bq, i64 k0,
                                                int bk) {
  return p.mask_kind != 0 || k0 + bk > p.sk || q0 + bq > p.sq ||
         (p.causal && k0 + bk - 1 > q0 + p.off);
}

// ---- 1. D = rowsum(dout * out) ------------------------------------------------------------------

struct DotParams {
  const void* out;
  const void* dout;
  float* drow;
  i64 os[3], gs[3];
  i64 rows;  // batch * heads * sq
  i64 sq;
  int heads, dv;
};

template <class T>
__global__ void __launch_bounds__(256) mha_bwd_dot(const DotParams p) {
  const int lane = threadIdx.x & 31;
  const i64 warps = static_cast<i64>(gridDim.x) * (blockDim.x >> 5);
  const i64 first = static_cast<i64>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  for (i64 row = first; row < p.rows; row += warps) {
    const i64 bh = row / p.sq;
    const i64 i = row - bh * p.sq;
    const i64 b = bh / p.heads;
    const i64 h = bh - b * p.heads;
    const T* o = static_cast<const T*>(p.out) + b * p.os[0] + h * p.os[1] + i * p.os[2];
    const T* g = static_cast<const T*>(p.dout) + b * p.gs[0] + h * p.gs[1] + i * p.gs[2];
    float acc = 0.0f;
    for (int c = lane; c < p.dv; c += 32) acc = fmaf(load_f(o + c), load_f(g + c), acc);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) p.drow[row] = acc;
  }
}

// ---- 2. dK / dV per key tile --------------------------------------------------------------------

template <class T, int BQ, int BK, int DMAX>
__global__ void __launch_bounds__(kThreads) mha_bwd_dkdv(const BwdParams p) {
  using C = BwdCfg<BQ, BK, DMAX>;
  constexpr int TM = C::TM, TN = C::TN, TC = C::TC, DS = C::DS, PS = C::PS;
  constexpr int TK = BK / 16;  // accumulator rows (keys) per thread
  extern __shared__ __align__(16) float smem[];
  float* Qs = smem + C::kQ;
  float* dOs = smem + C::kDO;
  float* Ks = smem + C::kK;
  float* Vs = smem + C::kV;
  float* Ps = smem + C::kP;
  float* dSs = smem + C::kDS;
  float* Ls = smem + C::kL;
  float* Drs = smem + C::kD;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int d4 = (p.d + 3) & ~3, dv4 = (p.dv + 3) & ~3;
  const i64 bg_count = p.blocks / p.ntiles;  // batch * kv_heads

  for (i64 blk = blockIdx.x; blk < p.blocks; blk += gridDim.x) {
    // blk = key tile * (batch * kv_heads) + bg: the first (causally heaviest) key tiles first.
    const i64 kt = blk / bg_count;
    const i64 bg = blk - kt * bg_count;
    const i64 b = bg / p.kv_heads;
    const i64 g = bg - b * p.kv_heads;
    const i64 k0 = kt * BK;
    const T* kb = static_cast<const T*>(p.k) + b * p.ks[0] + g * p.ks[1];
    const T* vb = static_cast<const T*>(p.v) + b * p.vs[0] + g * p.vs[1];

    __syncthreads();  // the previous item's readers of Ks / Vs are done
    load_tile<BK, DMAX>(Ks, kb, p.ks[2], k0, p.sk, p.d, p.vec_qk, 1.0f);
    load_tile<BK, DMAX>(Vs, vb, p.vs[2], k0, p.sk, p.dv, p.vec_v, 1.0f);

    float dk[TK][TC * 4], dv[TK][TC * 4];
#pragma unroll
    for (int i = 0; i < TK; ++i)
#pragma unroll
      for (int c = 0; c < TC * 4; ++c) {
        dk[i][c] = 0.0f;
        dv[i][c] = 0.0f;
      }

    // Causal: query i sees key j iff i >= j - off; the tile's first key k0 is seen from row
    // k0 - off on.
    const i64 qstart = p.causal ? max(i64{0}, k0 - p.off) : i64{0};
    const i64 qfirst = (qstart / BQ) * BQ;
    for (int hl = 0; hl < p.group; ++hl) {
      const i64 h = g * p.group + hl;
      const i64 bh = b * p.heads + h;
      const T* qb = static_cast<const T*>(p.q) + b * p.qs[0] + h * p.qs[1];
      const T* gb = static_cast<const T*>(p.dout) + b * p.gs[0] + h * p.gs[1];
      const i64 mbase = b * p.ms[0] + h * p.ms[1];
      for (i64 q0 = qfirst; q0 < p.sq; q0 += BQ) {
        __syncthreads();  // previous tile's readers of Qs / dOs / Ps / dSs / Ls are done
        load_tile<BQ, DMAX>(Qs, qb, p.qs[2], q0, p.sq, p.d, p.vec_qk, p.scale);
        load_tile<BQ, DMAX>(dOs, gb, p.gs[2], q0, p.sq, p.dv, p.vec_g, 1.0f);
        load_rows_ld<BQ>(Ls, Drs, p, bh, q0);
        __syncthreads();

        float s[TM][TN], dp[TM][TN];
        tile_dot<TM, TN, DS>(Qs, Ks, d4, s);
        tile_dot<TM, TN, DS>(dOs, Vs, dv4, dp);
        const bool need_mask = tile_needs_mask(p, q0, BQ, k0, BK);
        p_and_ds<T, true, TM, TN, PS>(p, mbase, q0, k0, need_mask, Ls, Drs, s, dp, Ps, dSs);
        __syncthreads();

        // dV += P^T dO, dK += dS^T Qs; zero weights skipped where masking occurs.
        auto accumulate = [&](auto masked) {
#pragma unroll 2
          for (int r = 0; r < BQ; ++r) {
            float4 gf[TC], qf[TC];
#pragma unroll
            for (int cc = 0; cc < TC; ++cc) {
              gf[cc] = *reinterpret_cast<const float4*>(dOs + r * DS + tx * 4 + 64 * cc);
              qf[cc] = *reinterpret_cast<const float4*>(Qs + r * DS + tx * 4 + 64 * cc);
            }
#pragma unroll
            for (int i = 0; i < TK; ++i) {
              const float pw = Ps[r * PS + ty * TK + i];
              const float sw = dSs[r * PS + ty * TK + i];
              if (!decltype(masked)::value || pw != 0.0f) {
#pragma unroll
                for (int cc = 0; cc < TC; ++cc) {
                  dv[i][cc * 4 + 0] = fmaf(pw, gf[cc].x, dv[i][cc * 4 + 0]);
                  dv[i][cc * 4 + 1] = fmaf(pw, gf[cc].y, dv[i][cc * 4 + 1]);
                  dv[i][cc * 4 + 2] = fmaf(pw, gf[cc].z, dv[i][cc * 4 + 2]);
                  dv[i][cc * 4 + 3] = fmaf(pw, gf[cc].w, dv[i][cc * 4 + 3]);
                }
              }
              if (!decltype(masked)::value || sw != 0.0f) {
#pragma unroll
                for (int cc = 0; cc < TC; ++cc) {
                  dk[i][cc * 4 + 0] = fmaf(sw, qf[cc].x, dk[i][cc * 4 + 0]);
                  dk[i][cc * 4 + 1] = fmaf(sw, qf[cc].y, dk[i][cc * 4 + 1]);
                  dk[i][cc * 4 + 2] = fmaf(sw, qf[cc].z, dk[i][cc * 4 + 2]);
                  dk[i][cc * 4 + 3] = fmaf(sw, qf[cc].w, dk[i][cc * 4 + 3]);
                }
              }
            }
          }
        };
        if (need_mask) accumulate(std::true_type{});
        else accumulate(std::false_type{});
      }
    }

    // Store this thread's rows of dk / dv (contiguous [batch, kv_heads, sk, d / dv]).
    T* dkb = static_cast<T*>(p.dk) + bg * p.sk * p.d;
    T* dvb = static_cast<T*>(p.dvo) + bg * p.sk * p.dv;
#pragma unroll
    for (int i = 0; i < TK; ++i) {
      const i64 kj = k0 + ty * TK + i;
      if (kj >= p.sk) continue;
#pragma unroll
      for (int cc = 0; cc < TC; ++cc)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = tx * 4 + 64 * cc + e;
          if (c < p.d) dkb[kj * p.d + c] = from_f<T>(dk[i][cc * 4 + e]);
          if (c < p.dv) dvb[kj * p.dv + c] = from_f<T>(dv[i][cc * 4 + e]);
        }
    }
  }
}

// ---- 3. dQ per query tile -----------------------------------------------------------------------

template <class T, int BQ, int BK, int DMAX>
__global__ void __launch_bounds__(kThreads) mha_bwd_dq(const BwdParams p) {
  using C = BwdCfg<BQ, BK, DMAX>;
  constexpr int TM = C::TM, TN = C::TN, TC = C::TC, DS = C::DS, PS = C::PS;
  extern __shared__ __align__(16) float smem[];
  float* Qs = smem + C::kQ;
  float* dOs = smem + C::kDO;
  float* Ks = smem + C::kK;
  float* Vs = smem + C::kV;
  float* Ps = smem + C::kP;
  float* dSs = smem + C::kDS;
  float* Ls = smem + C::kL;
  float* Drs = smem + C::kD;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int d4 = (p.d + 3) & ~3, dv4 = (p.dv + 3) & ~3;
  const i64 bh_count = p.blocks / p.ntiles;  // batch * heads

  for (i64 blk = blockIdx.x; blk < p.blocks; blk += gridDim.x) {
    // blk = tile index * (batch * heads) + bh; causal: the last (heaviest) query tiles first.
    const i64 ti = blk / bh_count;
    const i64 bh = blk - ti * bh_count;
    const i64 qt = p.causal ? p.ntiles - 1 - ti : ti;
    const i64 b = bh / p.heads;
    const i64 h = bh - b * p.heads;
    const i64 g = h / p.group;
    const i64 q0 = qt * BQ;
    const T* qb = static_cast<const T*>(p.q) + b * p.qs[0] + h * p.qs[1];
    const T* gb = static_cast<const T*>(p.dout) + b * p.gs[0] + h * p.gs[1];
    const T* kb = static_cast<const T*>(p.k) + b * p.ks[0] + g * p.ks[1];
    const T* vb = static_cast<const T*>(p.v) + b * p.vs[0] + g * p.vs[1];
    const i64 mbase = b * p.ms[0] + h * p.ms[1];

    __syncthreads();  // the previous item's readers of Qs / dOs / Ls are done
    load_tile<BQ, DMAX>(Qs, qb, p.qs[2], q0, p.sq, p.d, p.vec_qk, p.scale);
    load_tile<BQ, DMAX>(dOs, gb, p.gs[2], q0, p.sq, p.dv, p.vec_g, 1.0f);
    load_rows_ld<BQ>(Ls, Drs, p, bh, q0);

    float acc[TM][TC * 4];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int c = 0; c < TC * 4; ++c) acc[i][c] = 0.0f;

    const i64 kend = p.causal ? min(p.sk, q0 + BQ + p.off) : p.sk;  // may be <= 0
    for (i64 k0 = 0; k0 < kend; k0 += BK) {
      __syncthreads();  // previous tile's readers of Ks / Vs / dSs are done
      load_tile<BK, DMAX>(Ks, kb, p.ks[2], k0, p.sk, p.d, p.vec_qk, 1.0f);
      load_tile<BK, DMAX>(Vs, vb, p.vs[2], k0, p.sk, p.dv, p.vec_v, 1.0f);
      __syncthreads();

      float s[TM][TN], dp[TM][TN];
      tile_dot<TM, TN, DS>(Qs, Ks, d4, s);
      tile_dot<TM, TN, DS>(dOs, Vs, dv4, dp);
      const bool need_mask = tile_needs_mask(p, q0, BQ, k0, BK);
      p_and_ds<T, false, TM, TN, PS>(p, mbase, q0, k0, need_mask, Ls, Drs, s, dp, Ps, dSs);
      __syncthreads();

      // dQ += dS K; zero weights skipped where masking occurs.
      auto accumulate = [&](auto masked) {
#pragma unroll 2
        for (int j = 0; j < BK; ++j) {
          float4 kf[TC];
#pragma unroll
          for (int cc = 0; cc < TC; ++cc)
            kf[cc] = *reinterpret_cast<const float4*>(Ks + j * DS + tx * 4 + 64 * cc);
#pragma unroll
          for (int i = 0; i < TM; ++i) {
            const float w = dSs[(ty * TM + i) * PS + j];
            if (decltype(masked)::value && w == 0.0f) continue;
#pragma unroll
            for (int cc = 0; cc < TC; ++cc) {
              acc[i][cc * 4 + 0] = fmaf(w, kf[cc].x, acc[i][cc * 4 + 0]);
              acc[i][cc * 4 + 1] = fmaf(w, kf[cc].y, acc[i][cc * 4 + 1]);
              acc[i][cc * 4 + 2] = fmaf(w, kf[cc].z, acc[i][cc * 4 + 2]);
              acc[i][cc * 4 + 3] = fmaf(w, kf[cc].w, acc[i][cc * 4 + 3]);
            }
          }
        }
      };
      if (need_mask) accumulate(std::true_type{});
      else accumulate(std::false_type{});
    }

    T* dqb = static_cast<T*>(p.dq) + bh * p.sq * p.d;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const i64 qi = q0 + ty * TM + i;
      if (qi >= p.sq) continue;
#pragma unroll
      for (int cc = 0; cc < TC; ++cc)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = tx * 4 + 64 * cc + e;
          if (c < p.d) dqb[qi * p.d + c] = from_f<T>(acc[i][cc * 4 + e] * p.scale);
        }
    }
  }
}

template <class T>
bool aligned4(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & (4 * sizeof(T) - 1)) == 0;
}

bool strides4(const i64* st) { return st[0] % 4 == 0 && st[1] % 4 == 0 && st[2] % 4 == 0; }

// The dynamic shared memory opt-in is a per-device attribute of the kernel: set once per device
// (`done`: one bit per device index; devices past 63 set it on every call, which is harmless).
template <class K>
void set_smem_once(K kernel, std::size_t bytes, std::atomic<std::uint64_t>& done) {
  const int dev = ctx().info.device;
  const std::uint64_t bit = dev >= 0 && dev < 64 ? std::uint64_t{1} << dev : 0;
  if (bit && (done.load(std::memory_order_acquire) & bit)) return;
  LC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(bytes)));
  done.fetch_or(bit, std::memory_order_acq_rel);
}

// The dK / dV kernel with its tile shape.
// pairs = batch * kv_heads.
template <class T, int BQ, int BK, int DMAX>
void run_dkdv(BwdParams p, i64 pairs, cudaStream_t s) {
  using C = BwdCfg<BQ, BK, DMAX>;
  auto kernel = mha_bwd_dkdv<T, BQ, BK, DMAX>;
  static std::atomic<std::uint64_t> done{0};
  set_smem_once(kernel, C::kSmemBytes, done);
  p.ntiles = static_cast<int>((p.sk + BK - 1) / BK);
  p.blocks = static_cast<i64>(p.ntiles) * pairs;
  const i64 grid = std::min<i64>(p.blocks, 2147483647);
  launch(kernel, dim3(static_cast<unsigned>(grid)), kThreads, C::kSmemBytes, s,
         "attention_backward dk/dv kernel", p);
}

// pairs = batch * heads.
template <class T, int BQ, int BK, int DMAX>
void run_dq(BwdParams p, i64 pairs, cudaStream_t s) {
  using C = BwdCfg<BQ, BK, DMAX>;
  auto kernel = mha_bwd_dq<T, BQ, BK, DMAX>;
  static std::atomic<std::uint64_t> done{0};
  set_smem_once(kernel, C::kSmemBytes, done);
  p.ntiles = static_cast<int>((p.sq + BQ - 1) / BQ);
  p.blocks = static_cast<i64>(p.ntiles) * pairs;
  const i64 grid = std::min<i64>(p.blocks, 2147483647);
  launch(kernel, dim3(static_cast<unsigned>(grid)), kThreads, C::kSmemBytes, s,
         "attention_backward dq kernel", p);
}

// Tile shapes per head-dim bucket (shared memory: ~102 KB, ~116 / ~134 KB, ~139 KB):
//   DMAX  64: dK/dV BQ 64 x BK 64, dQ BQ 64 x BK 64
//   DMAX 128: dK/dV BQ 32 x BK 64, dQ BQ 64 x BK 32
//   DMAX 256: dK/dV BQ 32 x BK 32, dQ BQ 32 x BK 32
template <class T, int DMAX>
void run_bucket(const BwdParams& p, i64 bg, i64 bh, cudaStream_t s) {
  if (p.sk > 0) {  // dk / dv (sq == 0: zeros)
    if constexpr (DMAX == 64) run_dkdv<T, 64, 64, 64>(p, bg, s);
    else if constexpr (DMAX == 128) run_dkdv<T, 32, 64, 128>(p, bg, s);
    else run_dkdv<T, 32, 32, 256>(p, bg, s);
  }
  if (p.sq > 0) {  // dq (sk == 0: zeros)
    if constexpr (DMAX == 64) run_dq<T, 64, 64, 64>(p, bh, s);
    else if constexpr (DMAX == 128) run_dq<T, 64, 32, 128>(p, bh, s);
    else run_dq<T, 32, 32, 256>(p, bh, s);
  }
}

}  // namespace

void launch_attention_mha_backward(const MhaBackwardArgs& a, cudaStream_t s) {
  if (a.batch <= 0 || a.heads <= 0 || a.kv_heads <= 0) return;
  if (a.sq <= 0 && a.sk <= 0) return;
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const i64 rows = a.batch * a.heads * a.sq;
    // D scratch: stream order makes it safe to hand the block back as soon as the kernels are
    // queued (later users queue after them); a failing launch throws and it goes back as well.
    auto& alloc = CachingAllocator::instance();
    struct ScratchBack {
      CachingAllocator& alloc;
      void* p;
      ~ScratchBack() {
        if (p) alloc.free(p);
      }
    } back{alloc, rows > 0 ? alloc.alloc(sizeof(float) * static_cast<std::size_t>(rows)) : nullptr};
    float* drow = static_cast<float*>(back.p);
    if (rows > 0) {
      DotParams dp{};
      dp.out = a.out;
      dp.dout = a.dout;
      dp.drow = drow;
      for (int i = 0; i < 3; ++i) {
        dp.os[i] = a.out_strides[i];
        dp.gs[i] = a.dout_strides[i];
      }
      dp.rows = rows;
      dp.sq = a.sq;
      dp.heads = static_cast<int>(a.heads);
      dp.dv = static_cast<int>(a.dv);
      const i64 blocks = std::min<i64>((rows + 7) / 8, 65536);  // 8 warps (rows) per block
      launch(mha_bwd_dot<T>, dim3(static_cast<unsigned>(blocks)), 256, 0, s,
             "attention_backward rowsum kernel", dp);
    }
    BwdParams p{};
    p.q = a.q;
    p.k = a.k;
    p.v = a.v;
    p.dout = a.dout;
    p.lse = a.lse;
    p.drow = drow;
    p.mask = a.mask;
    p.dq = a.dq;
    p.dk = a.dk;
    p.dvo = a.dv_out;
    for (int i = 0; i < 3; ++i) {
      p.qs[i] = a.q_strides[i];
      p.ks[i] = a.k_strides[i];
      p.vs[i] = a.v_strides[i];
      p.gs[i] = a.dout_strides[i];
    }
    for (int i = 0; i < 4; ++i) p.ms[i] = a.mask_strides[i];
    p.sq = a.sq;
    p.sk = a.sk;
    p.off = a.sk - a.sq;
    p.heads = static_cast<int>(a.heads);
    p.kv_heads = static_cast<int>(a.kv_heads);
    p.group = static_cast<int>(a.heads / a.kv_heads);
    p.d = static_cast<int>(a.d);
    p.dv = static_cast<int>(a.dv);
    p.scale = static_cast<float>(a.scale);
    p.mask_kind = a.mask_kind == MaskKind::none       ? 0
                  : a.mask_kind == MaskKind::additive ? 1
                  : a.mask_dtype == DType::i32        ? 2
                                                      : 3;
    p.causal = a.causal;
    p.vec_qk = a.d % 4 == 0 && aligned4<T>(a.q) && aligned4<T>(a.k) && strides4(a.q_strides) &&
               strides4(a.k_strides);
    p.vec_v = a.dv % 4 == 0 && aligned4<T>(a.v) && strides4(a.v_strides);
    p.vec_g = a.dv % 4 == 0 && aligned4<T>(a.dout) && strides4(a.dout_strides);
    const i64 bg = a.batch * a.kv_heads, bh = a.batch * a.heads;
    const i64 dmax = std::max(a.d, a.dv);
    if (dmax <= 64) run_bucket<T, 64>(p, bg, bh, s);
    else if (dmax <= 128) run_bucket<T, 128>(p, bg, bh, s);
    else run_bucket<T, 256>(p, bg, bh, s);
  });
}

}  // namespace lc::cuda
