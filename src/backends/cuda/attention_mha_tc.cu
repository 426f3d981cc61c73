// Tensor-core forward of batched multi-head / grouped-query attention (MhaArgs) for float16 and
// bfloat16 storage: FlashAttention-2 style, sized for short sequences and small heads (MiniLM:
// S <= 512, D = 32), where cuDNN's flash attention pays fixed costs and takes no mask.
//
// Layout: one 128-thread block (4 warps) per (64-row query block, batch x head) pair, query
// block major (heaviest causal blocks first), walked by a grid-stride loop over the 64-bit pair
// index on grid.x (no grid dimension limit applies). Warp w owns query rows [16w, 16w + 16).
//   * Q (64 x DP) and K / V tiles (64 x DP) of 16-bit values go to shared memory with cp.async
//     (16 bytes each; rows past the end, columns past D and V rows of keys every query of the
//     block has hidden are zero-filled), K / V double-buffered: tile t + 1 loads while tile t
//     computes. DP is D rounded up to 16 (the MMA's k); row pitch DP + 8 elements, so the
//     32-bit fragment reads below hit 32 distinct banks.
//   * S = Q K^T and O += P V run on mma.sync.aligned.m16n8k16 (row.col, 16-bit in, float32
//     accumulate). Q's A fragments are read once into registers; K's B fragments are 32-bit
//     shared loads (two consecutive d of one key row); V's B fragments pair two keys of one
//     column (two 16-bit loads); P's A fragments are S's accumulators rounded to 16 bits (the
//     C layout of two n8 tiles is the A layout of one k16 step).
//   * Online softmax in float32 registers in the exp2 domain: x = s * scale * log2(e) + bias,
//     where bias (per key, in shared memory per tile) carries the key tail, a key-padding /
//     row-broadcast mask (mask_strides[2] == 0: keep -> 0 / -inf, additive -> value * log2(e));
//     masks that vary by row are read per element. A hidden score is set to -inf (selected, so
//     a NaN in a hidden key's K never reaches the row); causal is bottom-right (key j visible
//     to query i when j <= i + sk - sq).
//   * A row that sees no key (l == 0) stores zeros and lse = -inf, never NaN. lse (optional) is
//     the natural log-sum-exp, float32 contiguous [batch, heads, sq].
//   * out goes through shared memory (the warp's own Q rows) and leaves as 16-byte row
//     segments through out's (batch, head, row) strides (MhaArgs::out_strides), element by
//     element when those are not 16-byte aligned.
// Limits (try_attention_mha_tc returns false and the caller runs attention_mha.cu's kernel):
// d == dv, d % 8 == 0, d <= 128, q / k / v base pointers 16-byte aligned with (batch, head,
// row) strides multiples of 8 elements, compute capability 8.0+, sk >= 1.
// Non-finite values in V: V rows of keys hidden from every query of the block (tails, key
// padding, row-broadcast masks) are never read, so inf / NaN there cannot reach the output; a
// non-finite V row that is visible to some rows of the block and hidden from others (causal,
// per-row masks) multiplies a zero weight on the tensor cores and gives NaN in those other rows
// (as cuDNN / FlashAttention do).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>

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
using mma::cp_async_commit;
using mma::cp_async_wait;
using mma::key_bias;
using mma::lds32;
using mma::load_tile;
using mma::mma16816;
using mma::online_softmax_step;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// The tiling of one compiled variant (LC_ATTENTION_TC_VARIANT / set_attention_kernel_variant;
// kTcVariants below): WARPS warps of 16 query rows each (BQ = 16 WARPS query rows per block),
// BK keys per K / V tile, STAGES K / V tiles in flight through cp.async (1: load then compute;
// 2: double buffering; 3: two tiles ahead), MINB the minimum resident blocks per SM given to
// __launch_bounds__ (caps registers at 65536 / (MINB * threads); 0: no minimum given, ptxas's
// own heuristic, which is what the kernel had before the variants).
template <int WARPS, int BK, int STAGES, int MINB>
struct TcTiling {
  static_assert(WARPS >= 1 && WARPS <= 8 && BK % 16 == 0 && BK >= 16 && BK <= 128, "tiling");
  static_assert(STAGES >= 1 && STAGES <= 3 && MINB >= 0, "tiling");
  static constexpr int kWarps = WARPS;
  static constexpr int kThreads = 32 * WARPS;
  static constexpr int kBQ = 16 * WARPS;  // query rows per block
  static constexpr int kBK = BK;          // keys per tile
  static constexpr int kStages = STAGES;
  static constexpr int kMinBlocks = MINB;
};
using TcDefault = TcTiling<4, 64, 2, 0>;

template <int DP, class TL>
struct TcCfg {
  static_assert(DP % 16 == 0 && DP >= 16 && DP <= 128, "DP: 16..128, multiple of 16");
  static constexpr int LD = DP + 8;  // row pitch (elements); (LD / 2) % 32 in {4, 12, 20, 28}
  static constexpr int kKVTile = TL::kBK * LD;  // elements of one K or V tile
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + TL::kBQ * LD;          // STAGES K tiles
  static constexpr int kV = kK + TL::kStages * kKVTile;  // STAGES V tiles
  static constexpr int kElems = kV + TL::kStages * kKVTile;
  // 16-byte multiple: a row is 2 (DP + 8) bytes, DP a multiple of 16
  static constexpr std::size_t kBiasOffset = sizeof(std::uint16_t) * kElems;
  static constexpr std::size_t kSmemBytes = kBiasOffset + sizeof(float) * TL::kStages * TL::kBK;
  static_assert(kBiasOffset % 16 == 0, "bias alignment");
  static_assert(kSmemBytes <= 227 * 1024, "shared memory per block");
};

struct TcParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;
  const void* mask;
  i64 qs[3], ks[3], vs[3], os[3];  // (batch, head, row) element strides; os resolved
  i64 ms[4];                       // mask: batch, head, row, key
  i64 pairs;                       // batch * heads * query blocks
  i64 bh;                          // batch * heads
  i64 sq, sk, off;                 // off = sk - sq
  int heads, group, nqb, d;
  float scale_log2;
  int mask_kind;  // 0 none, 1 additive (T), 2 keep int32, 3 keep int64
  bool row_mask;  // the mask varies by query row (mask_strides[2] != 0): read per element
  bool causal, vec_out;
};

// The kernel body; mha_tc_kernel / mha_tc_kernel_minb below are its two launch-bounds forms.
template <class T, int DP, bool ROWMASK, class TL>
__device__ __forceinline__ void mha_tc_body(const TcParams& p) {
  using C = TcCfg<DP, TL>;
  constexpr int kThreads = TL::kThreads, kBQ = TL::kBQ, kBK = TL::kBK, kStages = TL::kStages;
  constexpr int LD = C::LD;
  constexpr int KT = DP / 16;   // k steps of Q K^T
  constexpr int NT = kBK / 8;   // n8 tiles of S
  constexpr int DT = DP / 8;    // n8 tiles of O
  extern __shared__ __align__(16) unsigned char smem_raw[];
  std::uint16_t* smem = reinterpret_cast<std::uint16_t*>(smem_raw);
  std::uint16_t* Qs = smem + C::kQ;
  float* bias_s = reinterpret_cast<float*>(smem_raw + C::kBiasOffset);  // [kStages][kBK]

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t4 = lane & 3;

  for (i64 pair = blockIdx.x; pair < p.pairs; pair += gridDim.x) {
    const i64 ti = pair / p.bh;
    const i64 bh = pair - ti * p.bh;
    const int qb = p.causal ? p.nqb - 1 - static_cast<int>(ti) : static_cast<int>(ti);
    const i64 b = bh / p.heads;
    const int h = static_cast<int>(bh - b * p.heads);
    const int kvh = h / p.group;
    const i64 q0 = static_cast<i64>(qb) * kBQ;
    const T* qg = static_cast<const T*>(p.q) + b * p.qs[0] + h * p.qs[1];
    const T* kg = static_cast<const T*>(p.k) + b * p.ks[0] + kvh * p.ks[1];
    const T* vg = static_cast<const T*>(p.v) + b * p.vs[0] + kvh * p.vs[1];
    const i64 mbase = b * p.ms[0] + h * p.ms[1];
    const i64 kend = p.causal ? min(p.sk, q0 + kBQ + p.off) : p.sk;  // may be <= 0
    const int ntiles = kend > 0 ? static_cast<int>((kend + kBK - 1) / kBK) : 0;
    // V rows of keys every row of the block has hidden are never read (zero-filled).
    const bool hide_v = p.mask_kind != 0 && !p.row_mask;

    __syncthreads();  // the previous pair's readers of Qs / Ks / Vs / bias are done

    // Tile `tile` goes to stage tile % kStages. Every loop iteration commits one cp.async group
    // (empty ones past the last tile), so waiting for all but the newest kStages - 1 groups
    // means the current tile (and Q, in the first group) has landed.
    auto issue = [&](int tile) {
      const int st = tile % kStages;
      const i64 k0 = static_cast<i64>(tile) * kBK;
      load_tile<T, DP, kBK, kThreads>(smem + C::kK + st * C::kKVTile, kg, p.ks[2], k0, p.sk, p.d,
                                      p, mbase, false);
      load_tile<T, DP, kBK, kThreads>(smem + C::kV + st * C::kKVTile, vg, p.vs[2], k0, p.sk, p.d,
                                      p, mbase, hide_v);
      for (int j = threadIdx.x; j < kBK; j += kThreads) {
        const i64 kj = k0 + j;
        bias_s[st * kBK + j] = kj < p.sk ? key_bias<T>(p, mbase, kj) : -INFINITY;
      }
    };
    if (ntiles > 0) {
      load_tile<T, DP, kBQ, kThreads>(Qs, qg, p.qs[2], q0, p.sq, p.d, p, mbase, false);
#pragma unroll
      for (int t = 0; t < kStages - 1; ++t) {
        if (t < ntiles) issue(t);
        cp_async_commit();
      }
    }

    u32 qf[KT][4];
    float o[DT][4];
#pragma unroll
    for (int j = 0; j < DT; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;  // rows g and g + 8
    const i64 qi0 = q0 + warp * 16 + g, qi1 = qi0 + 8;

    for (int tile = 0; tile < ntiles; ++tile) {
      const int st = tile % kStages;
      // The stage tile + kStages - 1 loads into was last read in iteration tile - 1, which
      // ended with a barrier.
      if (tile + kStages - 1 < ntiles) issue(tile + kStages - 1);
      cp_async_commit();
      cp_async_wait<kStages - 1>();
      __syncthreads();
      if (tile == 0) {
        const std::uint16_t* qr = Qs + (warp * 16 + g) * LD + 2 * t4;
#pragma unroll
        for (int kt = 0; kt < KT; ++kt) {
          qf[kt][0] = lds32(qr + kt * 16);
          qf[kt][1] = lds32(qr + 8 * LD + kt * 16);
          qf[kt][2] = lds32(qr + kt * 16 + 8);
          qf[kt][3] = lds32(qr + 8 * LD + kt * 16 + 8);
        }
      }
      const std::uint16_t* Ks = smem + C::kK + st * C::kKVTile;
      const std::uint16_t* Vs = smem + C::kV + st * C::kKVTile;
      const float* bias = bias_s + st * kBK;
      const i64 k0 = static_cast<i64>(tile) * kBK;

      // S = Q K^T (16 x kBK per warp)
      float s[NT][4];
#pragma unroll
      for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int kt = 0; kt < KT; ++kt) {
#pragma unroll
        for (int n = 0; n < NT; ++n) {
          const std::uint16_t* kr = Ks + (n * 8 + g) * LD + kt * 16 + 2 * t4;
          mma16816<T>(s[n], qf[kt], lds32(kr), lds32(kr + 8));
        }
      }

      // scale, bias, masks -> exp2-domain scores; row maxima
      const bool causal_tile = p.causal && k0 + kBK - 1 > q0 + warp * 16 + p.off;
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = n * 8 + 2 * t4 + (e & 1);
          const i64 kj = k0 + c;
          const i64 qi = e < 2 ? qi0 : qi1;
          const float bv = bias[c];
          float x = bv == -INFINITY ? -INFINITY : fmaf(s[n][e], p.scale_log2, bv);
          if constexpr (ROWMASK) {
            if (bv != -INFINITY) {  // kj < sk here
              const i64 mi = mbase + min(qi, p.sq - 1) * p.ms[2] + kj * p.ms[3];
              if (p.mask_kind == 1) {
                const float av = load_f(static_cast<const T*>(p.mask) + mi);
                x = av == -INFINITY ? -INFINITY : fmaf(av, kLog2e, x);
              } else if (p.mask_kind == 2) {
                if (__ldg(static_cast<const std::int32_t*>(p.mask) + mi) == 0) x = -INFINITY;
              } else {
                if (__ldg(static_cast<const long long*>(p.mask) + mi) == 0) x = -INFINITY;
              }
            }
          }
          if (causal_tile && kj > qi + p.off) x = -INFINITY;
          s[n][e] = x;
          if (e < 2) mx0 = fmaxf(mx0, x);
          else mx1 = fmaxf(mx1, x);
        }
      }
      online_softmax_step(s, mx0, mx1, m0, m1, l0, l1, o);

      // O += P V: k steps of 16 keys; P's A fragment = two S accumulator tiles
#pragma unroll
      for (int ks = 0; ks < kBK / 16; ++ks) {
        u32 a[4];
        a[0] = pack2<T>(s[2 * ks][0], s[2 * ks][1]);
        a[1] = pack2<T>(s[2 * ks][2], s[2 * ks][3]);
        a[2] = pack2<T>(s[2 * ks + 1][0], s[2 * ks + 1][1]);
        a[3] = pack2<T>(s[2 * ks + 1][2], s[2 * ks + 1][3]);
        const std::uint16_t* vr = Vs + (ks * 16 + 2 * t4) * LD + g;
#pragma unroll
        for (int j = 0; j < DT; ++j) {
          const std::uint16_t* vc = vr + j * 8;
          const u32 b0 = static_cast<u32>(vc[0]) | (static_cast<u32>(vc[LD]) << 16);
          const u32 b1 = static_cast<u32>(vc[8 * LD]) | (static_cast<u32>(vc[9 * LD]) << 16);
          mma16816<T>(o[j], a, b0, b1);
        }
      }
      __syncthreads();  // this stage's readers are done before a later tile loads into it
    }
    cp_async_wait<0>();  // nothing in flight (also when ntiles == 0)

#pragma unroll
    for (int sh = 1; sh <= 2; sh <<= 1) {
      l0 += __shfl_xor_sync(0xffffffffu, l0, sh);
      l1 += __shfl_xor_sync(0xffffffffu, l1, sh);
    }
    // l == 0: no visible key: zeros and lse = -inf (a NaN l from NaN inputs stays NaN).
    const float inv0 = l0 == 0.0f ? 0.0f : 1.0f / l0;
    const float inv1 = l1 == 0.0f ? 0.0f : 1.0f / l1;
    if (p.lse && t4 == 0) {
      const i64 lrow = bh * p.sq;
      if (qi0 < p.sq) p.lse[lrow + qi0] = l0 == 0.0f ? -INFINITY : (m0 + log2f(l0)) * kLn2;
      if (qi1 < p.sq) p.lse[lrow + qi1] = l1 == 0.0f ? -INFINITY : (m1 + log2f(l1)) * kLn2;
    }

    // Stage the warp's 16 x DP output block in its own Q rows (only this warp read them), then
    // write rows of d elements through out's strides.
    std::uint16_t* ow = Qs + warp * 16 * LD;
    __syncwarp();
#pragma unroll
    for (int j = 0; j < DT; ++j) {
      *reinterpret_cast<u32*>(ow + g * LD + j * 8 + 2 * t4) = pack2<T>(o[j][0] * inv0, o[j][1] * inv0);
      *reinterpret_cast<u32*>(ow + (g + 8) * LD + j * 8 + 2 * t4) =
          pack2<T>(o[j][2] * inv1, o[j][3] * inv1);
    }
    __syncwarp();
    T* ob = static_cast<T*>(p.out) + b * p.os[0] + h * p.os[1];
    constexpr int kChunks = DP / 8;
    for (int idx = lane; idx < 16 * kChunks; idx += 32) {
      const int r = idx / kChunks, c = idx - r * kChunks;
      const i64 qi = q0 + warp * 16 + r;
      if (qi >= p.sq || c * 8 >= p.d) continue;
      const std::uint16_t* src = ow + r * LD + c * 8;
      T* dst = ob + qi * p.os[2] + c * 8;
      if (p.vec_out) {  // d % 8 == 0: whole chunks
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e)
          reinterpret_cast<std::uint16_t*>(dst)[e] = src[e];
      }
    }
  }
}

template <class T, int DP, bool ROWMASK, class TL>
__global__ void __launch_bounds__(TL::kThreads) mha_tc_kernel(const TcParams p) {
  mha_tc_body<T, DP, ROWMASK, TL>(p);
}
template <class T, int DP, bool ROWMASK, class TL>
__global__ void __launch_bounds__(TL::kThreads, TL::kMinBlocks > 0 ? TL::kMinBlocks : 1)
    mha_tc_kernel_minb(const TcParams p) {
  mha_tc_body<T, DP, ROWMASK, TL>(p);
}

bool strides8(const i64 st[3]) { return st[0] % 8 == 0 && st[1] % 8 == 0 && st[2] % 8 == 0; }

// LC_ATTENTION_TC=0 turns the tensor-core kernel off (attention_mha.cu's kernel runs instead);
// read once.
bool tc_enabled_by_env() {
  static const bool on = [] {
    const char* e = std::getenv("LC_ATTENTION_TC");
    return !(e && (std::strcmp(e, "0") == 0 || std::strcmp(e, "off") == 0 ||
                   std::strcmp(e, "false") == 0));
  }();
  return on;
}

// One function per kernel instantiation, so each gets its own once-flags: the two mask variants
// of a (T, DP) have the same function-pointer type, so a generic lambda taking the kernel would
// share one flag between them and leave the second without its opt-in (an invalid-argument
// launch above 48 KB, seen on the H200).
template <class T, int DP, bool kRowMask, class TL>
void launch_tc(const TcParams& p, cudaStream_t s) {
  using C = TcCfg<DP, TL>;
  auto kernel = [] {
    if constexpr (TL::kMinBlocks > 0) return mha_tc_kernel_minb<T, DP, kRowMask, TL>;
    else return mha_tc_kernel<T, DP, kRowMask, TL>;
  }();
  if constexpr (C::kSmemBytes > 48 * 1024) {
    // Opt-in shared memory is a per-device function attribute: once per kernel and device.
    static std::once_flag once[kMaxDevices];
    const int dev = ctx().info.device;
    std::call_once(once[dev >= 0 && dev < kMaxDevices ? dev : 0], [&] {
      LC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(C::kSmemBytes)));
    });
  }
  const i64 grid = std::min<i64>(p.pairs, 2147483647);  // grid.x's limit; grid-stride loop
  launch(kernel, dim3(static_cast<unsigned>(grid)), TL::kThreads, C::kSmemBytes, s,
         "attention_mha tensor-core kernel", p);
}

// A mask that varies by query row (read per element); sq == 1: one row, so a row stride never
// matters.
bool tc_row_mask(const MhaArgs& a) {
  return a.mask_kind != MaskKind::none && a.mask_strides[2] != 0 && a.sq > 1;
}

template <class T, int DP, class TL, bool kRowMask>
void run_tc(const MhaArgs& a, cudaStream_t s) {
  TcParams p{};
  fill_mha_params(a, p);
  p.nqb = static_cast<int>((a.sq + TL::kBQ - 1) / TL::kBQ);
  p.bh = a.batch * a.heads;
  p.pairs = p.bh * p.nqb;
  p.row_mask = kRowMask;
  p.vec_out = aligned16(a.out) && strides8(p.os);
  launch_tc<T, DP, kRowMask, TL>(p, s);
}

// The compiled variants (backend.h: kAttentionTcVariants; their names, in this order, are in
// src/runtime/attention_impl.cpp). To bound the build, the non-default tilings exist for the
// head-dim configs of the common heads (DP = 32, 64, 128) and calls without a per-row mask;
// other calls run the default whatever the variant. Tiles of 128 keys (variants 5, 6) keep
// S (64 floats per thread) next to O and Q's fragments: only for DP <= 64, where that fits;
// variant 1's 128-register cap is also DP <= 64 only (at DP = 32 it spills 92 bytes, kept to
// measure). Variants 2, 4 and 5 give __launch_bounds__ a minimum of 1 block: left to its own
// heuristic, ptxas capped them at 128 registers and spilled (DP = 32: 44 to 76 bytes).
template <class T, int DP>
void run_tc_variant(const MhaArgs& a, int variant, cudaStream_t s) {
  if (tc_row_mask(a)) return run_tc<T, DP, TcDefault, true>(a, s);
  if constexpr (DP == 32 || DP == 64 || DP == 128) {
    switch (variant) {
      case 1:  // DP = 128 at 128 registers spills ~340 bytes: not compiled
        if constexpr (DP <= 64) return run_tc<T, DP, TcTiling<4, 64, 2, 4>, false>(a, s);
        break;
      case 2: return run_tc<T, DP, TcTiling<8, 64, 2, 1>, false>(a, s);
      case 3: return run_tc<T, DP, TcTiling<4, 64, 3, 0>, false>(a, s);
      case 4: return run_tc<T, DP, TcTiling<4, 32, 2, 1>, false>(a, s);
      case 5:
        if constexpr (DP <= 64) return run_tc<T, DP, TcTiling<8, 128, 1, 1>, false>(a, s);
        break;
      case 6:
        if constexpr (DP <= 64) return run_tc<T, DP, TcTiling<4, 128, 1, 0>, false>(a, s);
        break;
      case 0:  // the default: short key ranges take variant 6's one 128-key tile
        // H200 sweep (9257a8a, bf16, eager per call): B32 H12 S128 D32 0.0256 ms against 0.0306
        // with 64-key tiles, B1 0.0166 against 0.0201; at S 512 D 64 the 64-key tiles stay
        // ahead (0.088 against 0.093), hence the sk bound.
        if constexpr (DP <= 64)
          if (a.sk <= 128) return run_tc<T, DP, TcTiling<4, 128, 1, 0>, false>(a, s);
        break;
      default: break;
    }
  }
  run_tc<T, DP, TcDefault, false>(a, s);
}
static_assert(kAttentionTcVariants == 7, "run_tc_variant and attention_impl.cpp's table");

}  // namespace

bool attention_mha_tc_eligible(const MhaArgs& a) {
  if (a.dtype != DType::f16 && a.dtype != DType::bf16) return false;
  if (a.d != a.dv || a.d < 8 || a.d > 128 || a.d % 8 != 0) return false;
  if (a.batch < 1 || a.heads < 1 || a.kv_heads < 1 || a.heads % a.kv_heads != 0) return false;
  if (a.sq < 1 || a.sk < 1) return false;
  if (a.heads > 2147483647 || a.sq > 2147483647) return false;
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v)) return false;
  if (!strides8(a.q_strides) || !strides8(a.k_strides) || !strides8(a.v_strides)) return false;
  if (a.mask_kind == MaskKind::additive && a.mask_dtype != a.dtype) return false;
  if (a.mask_kind == MaskKind::keep && a.mask_dtype != DType::i32 && a.mask_dtype != DType::i64)
    return false;
  if (ctx().info.cc_major < 8) return false;  // mma.sync bf16 / f16 m16n8k16: sm_80+
  return true;
}

bool attention_mha_tc_enabled() { return tc_enabled_by_env(); }

bool launch_attention_mha_tc(const MhaArgs& a, cudaStream_t s) {
  if (!attention_mha_tc_eligible(a)) return false;
  const int v = attention_kernel_variant_choice(AttentionKernel::tc);
  auto by_dp = [&](auto tag) {
    using T = decltype(tag);
    const i64 dp = (a.d + 15) / 16 * 16;
    switch (dp) {
      case 16: return run_tc_variant<T, 16>(a, v, s);
      case 32: return run_tc_variant<T, 32>(a, v, s);
      case 48: return run_tc_variant<T, 48>(a, v, s);
      case 64: return run_tc_variant<T, 64>(a, v, s);
      case 80: return run_tc_variant<T, 80>(a, v, s);
      case 96: return run_tc_variant<T, 96>(a, v, s);
      default: return run_tc_variant<T, 128>(a, v, s);  // 112 and 128
    }
  };
  if (a.dtype == DType::bf16) by_dp(__nv_bfloat16{});
  else by_dp(__half{});
  return true;
}

}  // namespace lc::cuda
