// Batched multi-head / grouped-query flash attention (Backend::attention_mha, MhaArgs): exact
// float32 arithmetic (FFMA) for float32, float16 and bfloat16 storage, head dims up to 512.
//
// The tile machinery is attention.cu's single-head kernel (read its header first): one
// 256-thread block owns BQ query rows of one (batch, head) and walks key tiles of BK rows
// through shared memory; S = Q K^T lives in registers (TM x TN per thread), the online softmax
// runs in the exp2 domain with scale * log2(e) folded into Q, P goes through shared memory once
// for P V, and O (TM x DVMAX/16 per thread) stays in registers. What differs:
//   * grid: one block per (query tile, batch x head) pair, query tile major (heaviest causal
//     tiles first across every head); a grid-stride loop over the 64-bit pair index, so no
//     grid dimension limit applies. Batch x heads gives the parallelism, so there is no split-K
//     pass (single-head long-sequence calls keep using attention2d's kernel; decode shapes,
//     sq <= 8 against sk >= 256 keys, go to attention_decode.cu's split-K kernels).
//   * q, k, v are read through int64 element strides (batch, head, row; unit-stride columns);
//     head h reads key/value head h / (heads / kv_heads) (grouped-query: K/V never copied).
//   * masks: causal bottom-right (query i sees keys j <= i + sk - sq), a keep mask (int32 /
//     int64, 0 hides the key) or an additive mask (storage dtype, added to the scaled score),
//     both read through four int64 strides (0 on broadcast dimensions).
//   * a row that sees no key (l == 0) stores zeros and lse = -inf instead of 0/0.
//   * out is written through its (batch, head, row) strides (MhaArgs::out_strides).
//   * lse (optional) = natural log-sum-exp of the row's scaled, masked scores, float32.
// 16-bit tiles are widened on their way into shared memory (half_io.cuh), stores round once.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <type_traits>

#include "backends/cuda/check.h"
#include "backends/cuda/context.h"
#include "backends/cuda/half_io.cuh"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"

namespace lc::cuda {

namespace {

using i64 = std::int64_t;

constexpr int kThreads = 256;  // 16 x 16: tx = column group, ty = row group
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int BQ, int BK, int DMAX, int DVMAX>
struct MhaCfg {
  static constexpr int TM = BQ / 16;
  static constexpr int TN = BK / 16;
  static constexpr int TNV = DVMAX / 16;
  static constexpr int DS = DMAX + 4;  // Q/K row stride: 4 mod 32 -> conflict-free LDS.128
  static constexpr int PS = BK + 4;
  static constexpr int kQ = 0;
  static constexpr int kK = kQ + BQ * DS;
  static constexpr int kV = kK + BK * DS;
  static constexpr int kP = kV + BK * DVMAX;
  static constexpr int kFloats = kP + BQ * PS;
  static constexpr std::size_t kSmemBytes = sizeof(float) * kFloats;
  static constexpr int kMinBlocks = kSmemBytes <= 75 * 1024 ? 3 : kSmemBytes <= 113 * 1024 ? 2 : 1;
  static_assert(TNV % 4 == 0 && TM % 4 == 0 && BK % 16 == 0, "tile shape");
};

// Kernel parameters (one struct: the launch passes it by value).
struct MhaParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  float* lse;
  const void* mask;
  i64 qs[3], ks[3], vs[3];  // batch, head, row strides (elements)
  i64 os[3];                // out: batch, head, row strides (resolved, never all zero)
  i64 ms[4];                // mask: batch, head, row, key strides (elements)
  i64 pairs;                // batch * heads * query tiles
  i64 sq, sk, off;          // off = sk - sq (causal: query i sees keys j <= i + off)
  int heads, group, nqt, d, dv;
  float scale_log2;         // scale * log2(e), folded into Q
  int mask_kind;            // 0 none, 1 additive (dtype T), 2 keep int32, 3 keep int64
  bool causal, vec_qk, vec_v;
};

template <class T>
__device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return __ldg(reinterpret_cast<const float4*>(p));
  } else {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    float4 f;
    unpack2<T>(u.x, f.x, f.y);
    unpack2<T>(u.y, f.z, f.w);
    return f;
  }
}

// Rows [r0, r0+R) x cols [0, d) of a matrix whose row i starts at src + i * rstride, into smem
// (row stride `stride`), zero-filling rows >= nrows and cols in [d, d4); times mul. nrows >= 1.
// Every read sits behind its bounds check. The addresses are also clamped in bounds, as a
// second guard only: the out-of-bounds read compute-sanitizer caught in norm.cu came from
// cuda_fp16.h's non-volatile __ldg(__half*) running speculatively above its branch, fixed at
// the source in half_io.cuh (load_f); under its branch a clamp may be folded away anyway.
template <int R, class T>
__device__ __forceinline__ void load_rows(float* __restrict__ dst, int stride,
                                          const T* __restrict__ src, i64 rstride, i64 r0,
                                          i64 nrows, int d, int d4, bool vec, float mul) {
  if (vec) {  // d % 4 == 0, src and rstride aligned to 4 elements
    const int c4n = d4 >> 2;
    for (int idx = threadIdx.x; idx < R * c4n; idx += kThreads) {
      const int r = idx / c4n, c4 = idx - r * c4n;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (r0 + r < nrows) {
        v = load4(src + min(r0 + r, nrows - 1) * rstride + c4 * 4);
        v.x *= mul; v.y *= mul; v.z *= mul; v.w *= mul;
      }
      *reinterpret_cast<float4*>(dst + r * stride + c4 * 4) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < R * d4; idx += kThreads) {
      const int r = idx / d4, c = idx - r * d4;
      float v = 0.0f;
      if (r0 + r < nrows && c < d) v = load_f(src + min(r0 + r, nrows - 1) * rstride + min(c, d - 1)) * mul;
      dst[r * stride + c] = v;
    }
  }
}

template <class T, int BQ, int BK, int DMAX, int DVMAX>
__global__ void __launch_bounds__(kThreads, MhaCfg<BQ, BK, DMAX, DVMAX>::kMinBlocks)
    mha_fwd_kernel(const MhaParams p) {
  using C = MhaCfg<BQ, BK, DMAX, DVMAX>;
  constexpr int TM = C::TM, TN = C::TN, TNV = C::TNV, DS = C::DS, PS = C::PS;
  extern __shared__ __align__(16) float smem[];
  float* Qs = smem + C::kQ;
  float* Ks = smem + C::kK;
  float* Vs = smem + C::kV;
  float* Ps = smem + C::kP;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int d4 = (p.d + 3) & ~3;
  const int dv4 = (p.dv + 3) & ~3;
  const i64 bh_count = p.pairs / p.nqt;

  for (i64 pair = blockIdx.x; pair < p.pairs; pair += gridDim.x) {
    // pair = tile index * (batch * heads) + bh: query tile major.
    const i64 ti = pair / bh_count;
    const i64 bh = pair - ti * bh_count;
    const int qt = p.causal ? p.nqt - 1 - static_cast<int>(ti) : static_cast<int>(ti);
    const i64 b = bh / p.heads;
    const int h = static_cast<int>(bh - b * p.heads);
    const int g = h / p.group;
    const i64 q0 = static_cast<i64>(qt) * BQ;
    const T* qb = static_cast<const T*>(p.q) + b * p.qs[0] + h * p.qs[1];
    const T* kb = static_cast<const T*>(p.k) + b * p.ks[0] + g * p.ks[1];
    const T* vb = static_cast<const T*>(p.v) + b * p.vs[0] + g * p.vs[1];
    const i64 mbase = b * p.ms[0] + h * p.ms[1];

    __syncthreads();  // the previous pair's readers of Qs are done
    load_rows<BQ>(Qs, DS, qb, p.qs[2], q0, p.sq, p.d, d4, p.vec_qk, p.scale_log2);

    float o[TM][TNV];
    float m[TM], l[TM];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      m[i] = -INFINITY;
      l[i] = 0.0f;
#pragma unroll
      for (int c = 0; c < TNV; ++c) o[i][c] = 0.0f;
    }

    const i64 kend = p.causal ? min(p.sk, q0 + BQ + p.off) : p.sk;  // may be <= 0
    for (i64 k0 = 0; k0 < kend; k0 += BK) {
      __syncthreads();  // previous tile's readers of Ks / Vs / Ps are done
      load_rows<BK>(Ks, DS, kb, p.ks[2], k0, p.sk, p.d, d4, p.vec_qk, 1.0f);
      load_rows<BK>(Vs, DVMAX, vb, p.vs[2], k0, p.sk, p.dv, dv4, p.vec_v, 1.0f);
      __syncthreads();

      float s[TM][TN];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) s[i][j] = 0.0f;
      for (int kk = 0; kk < d4; kk += 4) {
        float4 qf[TM], kf[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
          qf[i] = *reinterpret_cast<const float4*>(Qs + (ty * TM + i) * DS + kk);
#pragma unroll
        for (int j = 0; j < TN; ++j)
          kf[j] = *reinterpret_cast<const float4*>(Ks + (tx + 16 * j) * DS + kk);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) {
            s[i][j] = fmaf(qf[i].x, kf[j].x, s[i][j]);
            s[i][j] = fmaf(qf[i].y, kf[j].y, s[i][j]);
            s[i][j] = fmaf(qf[i].z, kf[j].z, s[i][j]);
            s[i][j] = fmaf(qf[i].w, kf[j].w, s[i][j]);
          }
      }

      const bool need_mask = (k0 + BK > p.sk) || (p.causal && k0 + BK - 1 > q0 + p.off) ||
                             p.mask_kind != 0;
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const i64 qi = q0 + ty * TM + i;
        if (need_mask) {
#pragma unroll
          for (int j = 0; j < TN; ++j) {
            const i64 kj = k0 + tx + 16 * j;
            if (kj >= p.sk || (p.causal && kj > qi + p.off)) {
              s[i][j] = -INFINITY;
            } else if (p.mask_kind != 0 && qi < p.sq) {
              // clamped like load_rows' addresses (equal to qi, kj here)
              const i64 mi = mbase + min(qi, p.sq - 1) * p.ms[2] + min(kj, p.sk - 1) * p.ms[3];
              if (p.mask_kind == 1) {
                s[i][j] = fmaf(load_f(static_cast<const T*>(p.mask) + mi), kLog2e, s[i][j]);
              } else if (p.mask_kind == 2) {
                if (__ldg(static_cast<const std::int32_t*>(p.mask) + mi) == 0) s[i][j] = -INFINITY;
              } else {
                if (__ldg(static_cast<const long long*>(p.mask) + mi) == 0) s[i][j] = -INFINITY;
              }
            }
          }
        }
        float tmax = s[i][0];
#pragma unroll
        for (int j = 1; j < TN; ++j) tmax = fmaxf(tmax, s[i][j]);
#pragma unroll
        for (int off = 8; off > 0; off >>= 1)
          tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
        const float mnew = fmaxf(m[i], tmax);
        const float mref = mnew == -INFINITY ? 0.0f : mnew;  // all masked so far: keep 0s
        const float alpha = exp2f(m[i] - mref);
        m[i] = mnew;
        float rs = 0.0f;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const float pj = exp2f(s[i][j] - mref);  // -inf -> exactly 0
          rs += pj;
          Ps[(ty * TM + i) * PS + tx + 16 * j] = pj;
        }
        l[i] = l[i] * alpha + rs;
#pragma unroll
        for (int c = 0; c < TNV; ++c) o[i][c] *= alpha;
      }
      __syncthreads();

      // O += P V; in masked tiles a zero weight skips its value (0 * inf would be NaN).
      auto pv_pass = [&](auto masked) {
#pragma unroll 2
        for (int j = 0; j < BK; j += 4) {
          float4 pf[TM];
#pragma unroll
          for (int i = 0; i < TM; ++i)
            pf[i] = *reinterpret_cast<const float4*>(Ps + (ty * TM + i) * PS + j);
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) {
            float4 vf[TNV / 4];
#pragma unroll
            for (int qq = 0; qq < TNV / 4; ++qq)
              vf[qq] = *reinterpret_cast<const float4*>(Vs + (j + jj) * DVMAX + tx * 4 + 64 * qq);
#pragma unroll
            for (int i = 0; i < TM; ++i) {
              const float pv = jj == 0 ? pf[i].x : jj == 1 ? pf[i].y : jj == 2 ? pf[i].z : pf[i].w;
              if constexpr (decltype(masked)::value) {
                if (pv == 0.0f) continue;
              }
#pragma unroll
              for (int qq = 0; qq < TNV / 4; ++qq) {
                o[i][qq * 4 + 0] = fmaf(pv, vf[qq].x, o[i][qq * 4 + 0]);
                o[i][qq * 4 + 1] = fmaf(pv, vf[qq].y, o[i][qq * 4 + 1]);
                o[i][qq * 4 + 2] = fmaf(pv, vf[qq].z, o[i][qq * 4 + 2]);
                o[i][qq * 4 + 3] = fmaf(pv, vf[qq].w, o[i][qq * 4 + 3]);
              }
            }
          }
        }
      };
      if (need_mask) pv_pass(std::true_type{});
      else pv_pass(std::false_type{});
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], off);
    }

    T* ob = static_cast<T*>(p.out) + b * p.os[0] + h * p.os[1];
    constexpr unsigned kAlign = 4 * sizeof(T) - 1;
    const bool vec_out = (p.dv % 4 == 0) && p.os[0] % 4 == 0 && p.os[1] % 4 == 0 &&
                         p.os[2] % 4 == 0 &&
                         ((reinterpret_cast<std::uintptr_t>(p.out) & kAlign) == 0);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const i64 qi = q0 + ty * TM + i;
      if (qi >= p.sq) continue;
      // l == 0: the row saw no key (masked out entirely): zeros, lse = -inf. (A NaN l from NaN
      // inputs stays NaN.)
      const float inv = l[i] == 0.0f ? 0.0f : 1.0f / l[i];
      T* row = ob + qi * p.os[2];
#pragma unroll
      for (int qq = 0; qq < TNV / 4; ++qq) {
        const int c = tx * 4 + 64 * qq;
        if (c >= p.dv) continue;
        if (vec_out && c + 3 < p.dv) {
          if constexpr (std::is_same_v<T, float>) {
            *reinterpret_cast<float4*>(row + c) =
                make_float4(o[i][qq * 4] * inv, o[i][qq * 4 + 1] * inv, o[i][qq * 4 + 2] * inv,
                            o[i][qq * 4 + 3] * inv);
          } else {
            *reinterpret_cast<uint2*>(row + c) =
                make_uint2(pack2<T>(o[i][qq * 4] * inv, o[i][qq * 4 + 1] * inv),
                           pack2<T>(o[i][qq * 4 + 2] * inv, o[i][qq * 4 + 3] * inv));
          }
        } else {
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (c + e < p.dv) row[c + e] = from_f<T>(o[i][qq * 4 + e] * inv);
        }
      }
      if (p.lse && tx == 0)
        p.lse[bh * p.sq + qi] = l[i] == 0.0f ? -INFINITY : (m[i] + log2f(l[i])) * kLn2;
    }
  }
}

// sk == 0 (no keys): out = 0 (n = rows * dv elements, written through out's batch / head /
// row strides os), lse = -inf.
template <class T>
__global__ void mha_empty_kernel(T* out, i64 n, i64 dv, i64 sq, i64 heads, i64 os0, i64 os1,
                                 i64 os2, float* lse, i64 rows) {
  for (i64 i = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n || i < rows;
       i += static_cast<i64>(gridDim.x) * blockDim.x) {
    if (i < n) {
      const i64 row = i / dv, c = i - row * dv;
      const i64 bh = row / sq, qi = row - bh * sq;
      const i64 b = bh / heads, h = bh - b * heads;
      out[b * os0 + h * os1 + qi * os2 + c] = from_f<T>(0.0f);
    }
    if (lse && i < rows) lse[i] = -INFINITY;
  }
}

template <class T>
bool aligned4(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & (4 * sizeof(T) - 1)) == 0;
}

template <class T, int BQ, int BK, int DMAX, int DVMAX>
void run_mha_cfg(const MhaArgs& a, cudaStream_t s) {
  using C = MhaCfg<BQ, BK, DMAX, DVMAX>;
  auto kernel = mha_fwd_kernel<T, BQ, BK, DMAX, DVMAX>;
  // The opt-in shared memory size is a per-device attribute of the kernel: once per device.
  static std::once_flag once[kMaxDevices];
  const int dev = ctx().info.device;
  std::call_once(once[dev >= 0 && dev < kMaxDevices ? dev : 0], [&] {
    LC_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(C::kSmemBytes)));
  });
  MhaParams p{};
  fill_mha_params(a, p);
  p.nqt = static_cast<int>((a.sq + BQ - 1) / BQ);
  p.pairs = a.batch * a.heads * p.nqt;
  auto strides4 = [](const i64* st) {
    return st[0] % 4 == 0 && st[1] % 4 == 0 && st[2] % 4 == 0;
  };
  p.vec_qk = a.d % 4 == 0 && aligned4<T>(a.q) && aligned4<T>(a.k) && strides4(a.q_strides) &&
             strides4(a.k_strides);
  p.vec_v = a.dv % 4 == 0 && aligned4<T>(a.v) && strides4(a.v_strides);
  // A grid-stride loop covers any pair count; 2^31 - 1 blocks is grid.x's limit.
  const i64 grid = std::min<i64>(p.pairs, 2147483647);
  launch(kernel, dim3(static_cast<unsigned>(grid)), kThreads, C::kSmemBytes, s, "attention_mha kernel", p);
}

}  // namespace

void launch_attention_mha(const MhaArgs& a, cudaStream_t s) {
  if (a.batch <= 0 || a.heads <= 0 || a.sq <= 0) return;
  // A few query rows against a long K/V: flash decoding splits the keys (attention_decode.cu).
  if (attention_decode_applies(a) && launch_attention_decode(a, s)) return;
  dispatch_float(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const i64 rows = a.batch * a.heads * a.sq;
    if (a.sk <= 0 || a.dv <= 0) {
      // No keys: zeros and lse = -inf. (dv == 0 with keys: only lse is meaningful; the empty
      // kernel is not enough there, so fall through to the main kernel when lse is wanted.)
      if (a.sk <= 0 || !a.lse) {
        const i64 n = a.sk <= 0 ? rows * a.dv : 0;
        const i64 work = std::max(n, a.lse ? rows : i64{0});
        if (work == 0) return;
        const int blocks = static_cast<int>(std::min<i64>((work + 255) / 256, 8192));
        i64 os[3];
        mha_out_strides(a, os);
        launch(mha_empty_kernel<T>, blocks, 256, 0, s, "attention_mha empty", static_cast<T*>(a.out),
               n, std::max<i64>(a.dv, 1), a.sq, a.heads, os[0], os[1], os[2],
               a.sk <= 0 ? a.lse : nullptr, rows);
        return;
      }
    }
    // float16 / bfloat16 on tensor cores where attention_mha_tc.cu takes the call
    if (attention_mha_tc_enabled() && launch_attention_mha_tc(a, s)) return;
    const i64 dmax = std::max(a.d, a.dv);
    if (dmax <= 64) run_mha_cfg<T, 64, 64, 64, 64>(a, s);
    else if (dmax <= 128) run_mha_cfg<T, 64, 32, 128, 128>(a, s);
    else if (dmax <= 256) run_mha_cfg<T, 64, 32, 256, 256>(a, s);
    else run_mha_cfg<T, 64, 16, 512, 512>(a, s);  // 198 KB of shared memory, one block per SM
  });
}

}  // namespace lc::cuda
