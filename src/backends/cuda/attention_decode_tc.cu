// Flash decoding's partial pass on tensor cores, for float16 / bfloat16 storage: phase 1 of
// attention_decode.cu's split-K scheme (the keys split across blocks; each block reduces its
// chunk of keys to a partial softmax state (m, l, unnormalised o) per row, which
// attention_decode.cu's combine kernel merges). Same scratch layout and exp2 domain as that
// file's CUDA-core partial kernel, which stays the path for float32, per-row masks and d > 128.
//
// Why: decoding is bandwidth-bound (B8 Hk8 Sk4096 D128 bf16 streams 134 MB of K/V per call),
// and the CUDA-core kernel holds its loads in registers (at most ~2 x U x 16 bytes in flight per
// thread) and spends FFMA plus four shuffles per (key, row) on dot products; on the H200 it
// peaked at 2.6 TB/s. Here K / V tiles stream through a cp.async pipeline in shared memory
// (STAGES - 1 tiles in flight per block, ~70 KB per block at D = 128), and the dot products
// run on mma.sync. Measured on the H200 (docs/attention.md, "CUDA decode on tensor cores"):
// 2.9-3.2 TB/s of K/V against the CUDA-core kernel's 2.6 and cuDNN's 3.4-3.7.
//
// Layout: grid (split, kv head x row chunk, batch), 32 x WARPS threads. A block owns one chunk
// of keys [split * chunk, min(sk, (split + 1) * chunk)) of one (batch, kv head) and up to 16
// rows: (query head of the kv head's group, query row) pairs, so a kv head's K / V are read
// once for its whole group (grouped-query and multi-query decode stay bandwidth-bound); groups
// with more rows take several row chunks. The 16 rows are the M = 16 of an m16n8k16 MMA (with
// group 4 and one query, 12 of them are zero padding: the tensor cores have room to spare).
//   * Key tiles of BK = KW x WARPS keys (K and V, 16-bit, pitch DP + 8 elements: ldmatrix rows
//     hit distinct banks) stream through STAGES shared-memory stages by cp.async; keys past the
//     chunk and V rows of hidden keys are zero-filled, never read.
//   * Warp w takes keys [KW w, KW w + KW) of each tile: S (16 x KW) = Q K^T with Q's A fragments
//     in registers (read once from global memory) and K's B fragments by ldmatrix; the online
//     softmax runs in float32 registers in the exp2 domain (scores * scale * log2 e + the key's
//     mask bias); P (rounded to 16 bits) times V (B fragments by ldmatrix.trans) accumulates
//     into the warp's float32 o (16 x DP).
//   * At the end the warps' states are merged through shared memory and the block writes
//     m, l (float2) and o (float32, unnormalised) per row to the scratch
//     [split][row][dv], row = (batch * heads + head) * sq + query row; with one split (many
//     batch x kv head pairs) it normalises and writes out / lse itself (no scratch, no combine).
// Masks: none, or one that is the same for every row of a block (mask_strides[2] == 0 or
// sq == 1, and mask_strides[1] == 0 or group == 1; a key-padding mask [B, Sk] qualifies): a
// per-key bias per tile, as attention_mha_tc.cu does; a hidden key's score is -inf whatever K
// holds and its V row is zero-filled, so NaN / inf there never reach the output. Causal only
// with sq == 1 (the one query row sees every key). Other masks run the CUDA-core kernel.
// Limits (attention_decode_tc_supported): float16 / bfloat16, d == dv, d % 8 == 0, d <= 128,
// q / k / v 16-byte aligned with (batch, head, row) strides multiples of 8 elements, sm_80+.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>

#include "backends/cuda/check.h"
#include "backends/cuda/context.h"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/mma_tiles.cuh"

namespace lc::cuda {

namespace {

using i64 = std::int64_t;
using u32 = std::uint32_t;
using mma::cp_async16_pf;
using mma::cp_async_commit;
using mma::cp_async_wait;
using mma::key_bias;
using mma::ldmatrix_x4;
using mma::ldmatrix_x4_trans;
using mma::load_tile;
using mma::mma16816;
using mma::online_softmax_step;

constexpr int kMaxGridYZ = 65535;

// One compiled tiling (the decode variants, run_decode_tc below): WARPS warps of KW keys each
// per tile (BK = KW x WARPS keys), STAGES shared-memory stages (STAGES - 1 tiles in flight);
// the no-mask loader's request order (KFIRST: a tile's K rows, then its V rows; else K and V
// alternating row by row) and L2 prefetch hint (PF bytes, 0: none).
template <int WARPS, int KW, int STAGES, bool KFIRST = false, int PF = 0>
struct DtcTiling {
  static_assert(WARPS >= 1 && WARPS <= 8 && (KW == 16 || KW == 32) && STAGES >= 2 && STAGES <= 6,
                "decode tc tiling");
  static constexpr int kWarps = WARPS;
  static constexpr int kThreads = 32 * WARPS;
  static constexpr int kKW = KW;
  static constexpr int kBK = KW * WARPS;
  static constexpr int kStages = STAGES;
  static constexpr bool kKFirst = KFIRST;
  static constexpr int kPrefetch = PF;
};

template <int DP, class TL>
struct DtcCfg {
  static_assert(DP % 16 == 0 && DP >= 16 && DP <= 128, "DP: 16..128, multiple of 16");
  static constexpr int LD = DP + 8;                    // row pitch (elements)
  static constexpr int kTile = TL::kBK * LD;           // elements of one K or V tile
  static constexpr std::size_t kKV = sizeof(std::uint16_t) * 2 * TL::kStages * kTile;
  static constexpr std::size_t kPipe = kKV + sizeof(float) * TL::kStages * TL::kBK;  // + bias
  // the merge after the loop reuses the same memory: o [warps][16][DP], m, l and the weights
  // [warps][16], 1 / L [16]
  static constexpr std::size_t kMerge = sizeof(float) * (TL::kWarps * 16 * (DP + 3) + 16);
  static constexpr std::size_t kSmemBytes = kPipe > kMerge ? kPipe : kMerge;
  static_assert(kKV % 16 == 0, "bias alignment");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
};

struct DtcParams {
  const void* q;
  const void* k;
  const void* v;
  const void* mask;
  float* opart;  // [splits][rows][dv]
  float2* ml;    // [splits][rows]: (m, l), exp2 domain
  void* out;     // direct (one split): the result, through os
  float* lse;    // direct: the log-sum-exp (optional)
  i64 qs[3], ks[3], vs[3];  // batch, head, row strides (elements)
  i64 os[3];                // out's (batch, head, row) strides, resolved
  i64 ms[4];                // mask: batch, head, row, key strides (elements)
  i64 batch, sq, sk, off, chunk, rows;  // rows = batch * heads * sq
  int heads, kv_heads, group, grows, nrc, d;  // grows = group * sq; nrc = row chunks of 16
  float scale_log2;
  int mask_kind;  // 0 none, 1 additive (T), 2 keep int32, 3 keep int64
  bool causal;    // only with sq == 1 here: hides nothing
  bool row_mask;  // always false here (key_bias reads it)
  bool direct;    // one split: normalise and write out / lse here (no scratch, no combine)
};

template <class T, int DP, class TL>
// __launch_bounds__ with a minimum of one block: left to its own heuristic, ptxas capped the
// DP = 32 and 64 instantiations at 128 registers and spilled 20-72 bytes.
__global__ void __launch_bounds__(TL::kThreads, 1) decode_tc_kernel(const DtcParams p) {
  using C = DtcCfg<DP, TL>;
  constexpr int kThreads = TL::kThreads, kBK = TL::kBK, kStages = TL::kStages, kWarps = TL::kWarps;
  constexpr int KW = TL::kKW, NS = KW / 8;  // keys per warp per tile, n8 tiles of S
  constexpr int LD = C::LD, KT = DP / 16, DT = DP / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  std::uint16_t* Ks0 = reinterpret_cast<std::uint16_t*>(smem_raw);
  std::uint16_t* Vs0 = Ks0 + kStages * C::kTile;
  float* bias_s = reinterpret_cast<float*>(smem_raw + C::kKV);  // [kStages][kBK]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const i64 k_begin = static_cast<i64>(blockIdx.x) * p.chunk;
  const i64 k_end = min(p.sk, k_begin + p.chunk);
  const int ntiles = k_end > k_begin ? static_cast<int>((k_end - k_begin + kBK - 1) / kBK) : 0;
  const i64 ycount = static_cast<i64>(p.kv_heads) * p.nrc;
  const i64 split_rows = static_cast<i64>(blockIdx.x) * p.rows;
  // The no-mask loader's fixed chunk per thread: column chunk lc of rows lr + i * kRStep (for
  // the tilings where the threads divide the tile evenly; DP = 96 with 128 threads does not).
  constexpr int kChunks = DP / 8;
  constexpr bool kFast = kThreads % kChunks == 0 && kBK % (kThreads / kChunks) == 0;
  constexpr int kRStep = kFast ? kThreads / kChunks : 1, kIter = kFast ? kBK / kRStep : 1;
  // a mask (or a tiling without the fast loader): the general loader and a bias per key
  const bool masked = p.mask_kind != 0 || !kFast;
  const int lr = threadIdx.x / kChunks, lc = threadIdx.x % kChunks;
  const bool col_ok = lc * 8 < p.d;

  for (i64 b = blockIdx.z; b < p.batch; b += gridDim.z) {
    for (i64 y = blockIdx.y; y < ycount; y += gridDim.y) {
      const int gk = static_cast<int>(y / p.nrc);
      const int r0 = static_cast<int>(y - static_cast<i64>(gk) * p.nrc) * 16;  // first group row
      const int nr = min(16, p.grows - r0);
      const i64 row0 = (b * p.heads + static_cast<i64>(gk) * p.group) * p.sq + r0;
      const T* kg = static_cast<const T*>(p.k) + b * p.ks[0] + gk * p.ks[1];
      const T* vg = static_cast<const T*>(p.v) + b * p.vs[0] + gk * p.vs[1];
      // the block's rows share the mask's row (see the header comment): the first row's offset
      const i64 mbase = b * p.ms[0] + static_cast<i64>(gk) * p.group * p.ms[1];

      __syncthreads();  // the previous (b, y)'s readers of shared memory are done

      // Without a mask (the common case) a thread copies the same 16-byte column chunk of
      // rows lr, lr + RSTEP, ... of every tile: one pointer per tile, no per-chunk index math,
      // and no bias array (the key tail is checked in the score loop). With a mask, the
      // general tile loader (zero-fills V rows of hidden keys) and the per-key bias array.
      const T* kt0 = kg + (k_begin + lr) * p.ks[2] + lc * 8;
      const T* vt0 = vg + (k_begin + lr) * p.vs[2] + lc * 8;
      auto issue = [&](int tile) {
        const int st = tile % kStages;
        const i64 k0 = k_begin + static_cast<i64>(tile) * kBK;
        if (!masked) {
          const T* kp = kt0 + static_cast<i64>(tile) * kBK * p.ks[2];
          const T* vp = vt0 + static_cast<i64>(tile) * kBK * p.vs[2];
          std::uint16_t* kd = Ks0 + st * C::kTile + lr * LD + lc * 8;
          std::uint16_t* vd = Vs0 + st * C::kTile + lr * LD + lc * 8;
          const bool full = k0 + kBK <= k_end;
          constexpr int PF = TL::kPrefetch;
          if constexpr (TL::kKFirst) {
#pragma unroll
            for (int i = 0; i < kIter; ++i) {
              const bool ok = col_ok && (full || k0 + lr + i * kRStep < k_end);
              cp_async16_pf<PF>(kd + i * kRStep * LD, ok ? kp + i * kRStep * p.ks[2] : kg, ok ? 16 : 0);
            }
#pragma unroll
            for (int i = 0; i < kIter; ++i) {
              const bool ok = col_ok && (full || k0 + lr + i * kRStep < k_end);
              cp_async16_pf<PF>(vd + i * kRStep * LD, ok ? vp + i * kRStep * p.vs[2] : vg, ok ? 16 : 0);
            }
          } else {
#pragma unroll
            for (int i = 0; i < kIter; ++i) {
              const bool ok = col_ok && (full || k0 + lr + i * kRStep < k_end);
              cp_async16_pf<PF>(kd + i * kRStep * LD, ok ? kp + i * kRStep * p.ks[2] : kg, ok ? 16 : 0);
              cp_async16_pf<PF>(vd + i * kRStep * LD, ok ? vp + i * kRStep * p.vs[2] : vg, ok ? 16 : 0);
            }
          }
          return;
        }
        load_tile<T, DP, kBK, kThreads>(Ks0 + st * C::kTile, kg, p.ks[2], k0, k_end, p.d, p, mbase,
                                        false);
        load_tile<T, DP, kBK, kThreads>(Vs0 + st * C::kTile, vg, p.vs[2], k0, k_end, p.d, p, mbase,
                                        true);
        for (int j = threadIdx.x; j < kBK; j += kThreads) {
          const i64 kj = k0 + j;
          bias_s[st * kBK + j] = kj < k_end ? key_bias<T>(p, mbase, kj) : -INFINITY;
        }
      };
#pragma unroll
      for (int t = 0; t < kStages - 1; ++t) {
        if (t < ntiles) issue(t);
        cp_async_commit();
      }

      // Q's A fragments (rows g and g + 8 of the chunk), straight from global memory; rows past
      // the group and columns past d are zeros.
      u32 qf[KT][4];
      {
        const T* qrow[2] = {nullptr, nullptr};
#pragma unroll
        for (int hlf = 0; hlf < 2; ++hlf) {
          const int gr = r0 + g + 8 * hlf;
          if (gr < p.grows) {
            const i64 h = static_cast<i64>(gk) * p.group + gr / p.sq;
            const i64 qi = gr % p.sq;
            qrow[hlf] = static_cast<const T*>(p.q) + b * p.qs[0] + h * p.qs[1] + qi * p.qs[2];
          }
        }
#pragma unroll
        for (int kt = 0; kt < KT; ++kt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int c = kt * 16 + 2 * t4 + (e >> 1) * 8;  // a0 a1: columns 2t; a2 a3: 2t + 8
            const T* r = qrow[e & 1];
            qf[kt][e] = r && c < p.d ? __ldg(reinterpret_cast<const unsigned int*>(r + c)) : 0u;
          }
        }
      }

      float o[DT][4];
#pragma unroll
      for (int j = 0; j < DT; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
      float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // rows g and g + 8

      for (int tile = 0; tile < ntiles; ++tile) {
        // Groups committed so far: kStages - 1 + tile; all but kStages - 2 done means tile
        // `tile` has landed. The barrier also ends every warp's reads of the stage the next
        // issue writes (read in iteration tile - 1).
        cp_async_wait<kStages - 2>();
        __syncthreads();
        if (tile + kStages - 1 < ntiles) issue(tile + kStages - 1);
        cp_async_commit();

        const int st = tile % kStages;
        const std::uint16_t* Kw = Ks0 + st * C::kTile + warp * KW * LD;
        const std::uint16_t* Vw = Vs0 + st * C::kTile + warp * KW * LD;
        const float* bias = bias_s + st * kBK + warp * KW;
        const i64 k0 = k_begin + static_cast<i64>(tile) * kBK;

        // S = Q K^T: NS n8 tiles (the warp's KW keys, 8 per tile)
        float s[NS][4];
#pragma unroll
        for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
        {
          // per 16 keys, matrices: (keys 0-7, d lo), (keys 0-7, d hi), (keys 8-15, d lo),
          // (keys 8-15, d hi)
          const std::uint16_t* ka = Kw + ((lane >> 4) * 8 + (lane & 7)) * LD + ((lane >> 3) & 1) * 8;
#pragma unroll
          for (int kt = 0; kt < KT; ++kt) {
#pragma unroll
            for (int kb = 0; kb < NS / 2; ++kb) {
              u32 r[4];
              ldmatrix_x4(r, ka + kb * 16 * LD + kt * 16);
              mma16816<T>(s[2 * kb], qf[kt], r[0], r[1]);
              mma16816<T>(s[2 * kb + 1], qf[kt], r[2], r[3]);
            }
          }
        }

        // exp2-domain scores (a -inf bias hides the key outright), online softmax
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int n = 0; n < NS; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int kk = n * 8 + 2 * t4 + (e & 1);  // the key within the warp's KW
            const float bv = masked ? bias[kk] : k0 + warp * KW + kk < k_end ? 0.0f : -INFINITY;
            const float x = bv == -INFINITY ? -INFINITY : fmaf(s[n][e], p.scale_log2, bv);
            s[n][e] = x;
            if (e < 2) mx0 = fmaxf(mx0, x);
            else mx1 = fmaxf(mx1, x);
          }
        }
        online_softmax_step(s, mx0, mx1, m0, m1, l0, l1, o);

        // O += P V per 16 keys: P's A fragment is two S tiles; V's B fragments by
        // ldmatrix.trans, matrices (keys 0-7, cols lo), (keys 8-15, cols lo), (keys 0-7, cols
        // hi), (keys 8-15, cols hi)
        const std::uint16_t* va = Vw + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
        for (int kb = 0; kb < NS / 2; ++kb) {
          u32 pa[4];
          pa[0] = pack2<T>(s[2 * kb][0], s[2 * kb][1]);
          pa[1] = pack2<T>(s[2 * kb][2], s[2 * kb][3]);
          pa[2] = pack2<T>(s[2 * kb + 1][0], s[2 * kb + 1][1]);
          pa[3] = pack2<T>(s[2 * kb + 1][2], s[2 * kb + 1][3]);
#pragma unroll
          for (int jp = 0; jp < DT / 2; ++jp) {
            u32 r[4];
            ldmatrix_x4_trans(r, va + kb * 16 * LD + jp * 16);
            mma16816<T>(o[2 * jp], pa, r[0], r[1]);
            mma16816<T>(o[2 * jp + 1], pa, r[2], r[3]);
          }
        }
      }
      cp_async_wait<0>();  // nothing in flight (also when ntiles == 0)
      __syncthreads();     // every warp is done with the stages: the merge reuses them

#pragma unroll
      for (int sh = 1; sh <= 2; sh <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, sh);
        l1 += __shfl_xor_sync(0xffffffffu, l1, sh);
      }
      float* sO = reinterpret_cast<float*>(smem_raw);  // [kWarps][16][DP]
      float* sM = sO + kWarps * 16 * DP;               // [kWarps][16]
      float* sL = sM + kWarps * 16;
#pragma unroll
      for (int j = 0; j < DT; ++j) {
        float* lo = sO + (warp * 16 + g) * DP + j * 8 + 2 * t4;
        lo[0] = o[j][0];
        lo[1] = o[j][1];
        lo[8 * DP] = o[j][2];
        lo[8 * DP + 1] = o[j][3];
      }
      if (t4 == 0) {
        sM[warp * 16 + g] = m0;
        sM[warp * 16 + g + 8] = m1;
        sL[warp * 16 + g] = l0;
        sL[warp * 16 + g + 8] = l1;
      }
      __syncthreads();

      // Merge the warps: per row M = max m_w, L = sum_w 2^(m_w - M) l_w, o likewise. The rows'
      // (M, L) first (into sM / sL's first warp slots, read by everyone after the barrier).
      float rowM = 0.0f, rowL = 0.0f;
      if (threadIdx.x < 16) {
        const int r = threadIdx.x;
        float mx = sM[r];
#pragma unroll
        for (int w = 1; w < kWarps; ++w) mx = fmaxf(mx, sM[w * 16 + r]);
        const float mref = mx == -INFINITY ? 0.0f : mx;
        float L = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) L = fmaf(sL[w * 16 + r], exp2f(sM[w * 16 + r] - mref), L);
        rowM = mx;
        rowL = L;
      }
      float* sW = sL + kWarps * 16;  // [kWarps][16]: the warps' weights 2^(m_w - M) per row
      float* sInv = sW + kWarps * 16;  // [16]: what o is multiplied by (1 / L, or 1 for scratch)
      if (threadIdx.x < 16) {
        const int r = threadIdx.x;
        const float mref = rowM == -INFINITY ? 0.0f : rowM;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sW[w * 16 + r] = exp2f(sM[w * 16 + r] - mref);
        // direct: rows that saw no key (L == 0) get zeros and lse = -inf (NaN inputs: NaN)
        sInv[r] = !p.direct ? 1.0f : rowL == 0.0f ? 0.0f : 1.0f / rowL;
        if (r < nr) {
          if (!p.direct) {
            p.ml[split_rows + row0 + r] = make_float2(rowM, rowL);
          } else if (p.lse) {
            p.lse[row0 + r] = rowL == 0.0f ? -INFINITY : (rowM + log2f(rowL)) * 0.6931471805599453f;
          }
        }
      }
      __syncthreads();
      for (int idx = threadIdx.x; idx < nr * p.d; idx += kThreads) {
        const int r = idx / p.d, c = idx - r * p.d;
        float acc = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) acc = fmaf(sO[(w * 16 + r) * DP + c], sW[w * 16 + r], acc);
        if (!p.direct) {
          p.opart[(split_rows + row0 + r) * p.d + c] = acc;
        } else {
          // row (b * heads + h) * sq + qi through out's strides
          const int gr = r0 + r;
          const i64 h = static_cast<i64>(gk) * p.group + gr / p.sq, qi = gr % p.sq;
          static_cast<T*>(p.out)[b * p.os[0] + h * p.os[1] + qi * p.os[2] + c] = from_f<T>(acc * sInv[r]);
        }
      }
    }
  }
}


// One function per instantiation, so each kernel gets its own once-flags (opt-in shared memory
// and the occupancy are per kernel; the opt-in also per device).
template <class T, int DP, class TL>
void run_decode_tc(const MhaArgs& a, int waves, int max_blocks_per_sm, cudaStream_t s) {
  using C = DtcCfg<DP, TL>;
  auto kernel = decode_tc_kernel<T, DP, TL>;
  const int dev = ctx().info.device;
  const int di = dev >= 0 && dev < kMaxDevices ? dev : 0;
  static std::once_flag once[kMaxDevices];
  static int occupancy[kMaxDevices] = {};
  std::call_once(once[di], [&] {
    if constexpr (C::kSmemBytes > 48 * 1024)
      LC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(C::kSmemBytes)));
    int occ = 1;
    LC_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kernel, TL::kThreads,
                                                                C::kSmemBytes));
    occupancy[di] = std::max(occ, 1);
  });

  DtcParams p{};
  fill_mha_params(a, p);
  p.batch = a.batch;
  p.rows = a.batch * a.heads * a.sq;
  p.kv_heads = static_cast<int>(a.kv_heads);
  p.grows = p.group * static_cast<int>(a.sq);
  p.nrc = (p.grows + 15) / 16;
  p.row_mask = false;

  // Splits: fill the GPU's resident block slots `waves` times; chunks of whole tiles, at
  // least two per split (the pipeline's fill is paid per block), at most kDecodeMaxSplits.
  const i64 pairs = a.batch * a.kv_heads * p.nrc;
  const i64 slots = static_cast<i64>(std::max(1, ctx().info.sm_count)) *
                    std::min(occupancy[di], max_blocks_per_sm) * waves;
  const i64 tiles = (a.sk + TL::kBK - 1) / TL::kBK;
  i64 splits = std::clamp<i64>(slots / pairs, 1, kDecodeMaxSplits);
  splits = std::min<i64>(splits, std::max<i64>(1, tiles / 2));
  const i64 chunk_tiles = (tiles + splits - 1) / splits;
  p.chunk = chunk_tiles * TL::kBK;
  splits = (tiles + chunk_tiles - 1) / chunk_tiles;

  const dim3 grid(static_cast<unsigned>(splits),
                  static_cast<unsigned>(std::min<i64>(a.kv_heads * p.nrc, kMaxGridYZ)),
                  static_cast<unsigned>(std::min<i64>(a.batch, kMaxGridYZ)));
  if (splits == 1) {  // the whole key range in one block per row chunk: no combine pass
    p.direct = true;
    launch(kernel, grid, TL::kThreads, C::kSmemBytes, s, "attention_decode tensor-core kernel", p);
    return;
  }
  run_decode_splits(a, splits, [&](float* opart, float2* ml) {
    p.opart = opart;
    p.ml = ml;
    launch(kernel, grid, TL::kThreads, C::kSmemBytes, s, "attention_decode tensor-core partial", p);
  }, s);
}

template <class T, int DP>
void run_decode_tc_variant(const MhaArgs& a, int tiling, cudaStream_t s) {
  switch (tiling) {
    case 1: return run_decode_tc<T, DP, DtcTiling<4, 16, 3>>(a, 1, 1, s);
    case 2: return run_decode_tc<T, DP, DtcTiling<4, 16, 3, true, 0>>(a, 1, 8, s);
    case 3: return run_decode_tc<T, DP, DtcTiling<8, 16, 2>>(a, 1, 8, s);
    case 4: return run_decode_tc<T, DP, DtcTiling<4, 16, 3, false, 256>>(a, 1, 8, s);
    case 5: return run_decode_tc<T, DP, DtcTiling<4, 16, 3, true, 256>>(a, 1, 8, s);
    default: return run_decode_tc<T, DP, DtcTiling<4, 16, 3>>(a, 1, 8, s);
  }
}

}  // namespace

bool attention_decode_tc_supported(const MhaArgs& a) {
  if (a.dtype != DType::f16 && a.dtype != DType::bf16) return false;
  if (a.d != a.dv || a.d < 8 || a.d > 128 || a.d % 8 != 0) return false;
  if (a.sq < 1 || a.sq > kDecodeMaxQueries || a.sk < 1 || a.batch < 1 || a.kv_heads < 1 ||
      a.heads < a.kv_heads || a.heads % a.kv_heads != 0)
    return false;
  if (a.heads / a.kv_heads * a.sq > (i64{1} << 24) || a.heads > (i64{1} << 24)) return false;
  if (a.causal && a.sq > 1) return false;  // hides keys per row: the CUDA-core kernel
  if (a.mask_kind != MaskKind::none) {
    const i64 group = a.heads / a.kv_heads;
    if (a.mask_strides[2] != 0 && a.sq > 1) return false;    // varies by query row
    if (a.mask_strides[1] != 0 && group > 1) return false;   // varies by head within a block
    if (a.mask_kind == MaskKind::additive && a.mask_dtype != a.dtype) return false;
    if (a.mask_kind == MaskKind::keep && a.mask_dtype != DType::i32 && a.mask_dtype != DType::i64)
      return false;
  }
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !a.out) return false;
  const i64 nq[3] = {a.batch, a.heads, a.sq}, nk[3] = {a.batch, a.kv_heads, a.sk};
  if (!strides_in_vectors(a.q_strides, nq, 8) || !strides_in_vectors(a.k_strides, nk, 8) ||
      !strides_in_vectors(a.v_strides, nk, 8))
    return false;
  return ctx().info.cc_major >= 8;  // mma.sync bf16 / f16 m16n8k16, ldmatrix, cp.async
}

bool launch_attention_decode_tc(const MhaArgs& a, int tiling, cudaStream_t s) {
  if (!attention_decode_tc_supported(a)) return false;
  auto by_dp = [&](auto tag) {
    using T = decltype(tag);
    const i64 dp = (a.d + 15) / 16 * 16;
    if (dp <= 32) run_decode_tc_variant<T, 32>(a, tiling, s);
    else if (dp <= 64) run_decode_tc_variant<T, 64>(a, tiling, s);
    else if (dp <= 96) run_decode_tc_variant<T, 96>(a, tiling, s);
    else run_decode_tc_variant<T, 128>(a, tiling, s);
  };
  if (a.dtype == DType::bf16) by_dp(__nv_bfloat16{});
  else by_dp(__half{});
  return true;
}

}  // namespace lc::cuda
