// Device building blocks of the tensor-core attention kernels (attention_mha_tc.cu: the
// prefill forward; attention_decode_tc.cu: flash decoding's partial pass): cp.async tile loads
// into shared memory, ldmatrix fragment loads, the m16n8k16 MMA for float16 / bfloat16, and the
// per-key mask bias both kernels apply to a key tile, the online-softmax step of a score tile. sm_80+ instructions; every kernel that
// includes this header is only launched where ctx().info.cc_major >= 8.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/half_io.cuh"

namespace lc::cuda::mma {

using u32 = std::uint32_t;
using i64 = std::int64_t;

inline constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ u32 smem_u32(const void* p) {
  return static_cast<u32>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; src_bytes 0 zero-fills without reading (the address stays a valid
// one anyway).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}
// The same with an L2 prefetch-size hint (PF 128 or 256 bytes: on a miss, L2 fetches that much
// around the address; 0: no hint, cp_async16 itself).
template <int PF>
__device__ __forceinline__ void cp_async16_pf(void* dst, const void* src, int src_bytes) {
  static_assert(PF == 0 || PF == 128 || PF == 256, "L2 prefetch size");
  if constexpr (PF == 128) {
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(src_bytes)
                 : "memory");
  } else if constexpr (PF == 256) {
    asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)),
                 "l"(src), "r"(src_bytes)
                 : "memory");
  } else {
    cp_async16(dst, src, src_bytes);
  }
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// D (16 x 8, float32) += A (16 x 16, row) * B (16 x 8, col). Fragments (lane = 4 g + t):
// A: a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); B: b0 (k 2t..2t+1, n g),
// b1 (k 2t+8.., n g); C: c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1). Lower index in the low half.
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Four 8 x 8 matrices of 16-bit values from shared memory: lanes 8i .. 8i + 7 give the row
// addresses (16 bytes each) of matrix i, and r[i] receives, in lane 4 g + t, elements
// (g, 2t .. 2t + 1) of matrix i; the _trans form receives (2t .. 2t + 1, g), i.e. row g of
// the transposed matrix. A row-major [n][k] tile read plainly gives MMA B fragments (b0 from
// columns k0 .. k0 + 7, b1 from k0 + 8 ..); a row-major [k][n] tile read transposed does too.
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row_addr)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(row_addr)));
}

__device__ __forceinline__ u32 lds32(const std::uint16_t* p) {
  return *reinterpret_cast<const u32*>(p);
}

// One online-softmax step of a warp's m16n8k16 score tile, rows g and g + 8 of the C layout:
// s[N][4] holds the tile's exp2-domain scores (-inf: hidden), mx0 / mx1 this lane's maxima of
// rows g / g + 8. Finishes the maxima over the row's 4 lanes, updates the running max m and
// this lane's partial sum l (a row's 4 lanes add theirs up at the end), replaces s by
// P = 2^(s - m) and rescales o. A row with nothing visible yet keeps m = -inf and gets P = 0
// exactly (its reference max is 0, not -inf: no -inf - -inf).
template <int N, int DT>
__device__ __forceinline__ void online_softmax_step(float (&s)[N][4], float mx0, float mx1,
                                                    float& m0, float& m1, float& l0, float& l1,
                                                    float (&o)[DT][4]) {
#pragma unroll
  for (int sh = 1; sh <= 2; sh <<= 1) {
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, sh));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, sh));
  }
  const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
  const float mr0 = mn0 == -INFINITY ? 0.0f : mn0;
  const float mr1 = mn1 == -INFINITY ? 0.0f : mn1;
  const float al0 = exp2f(m0 - mr0), al1 = exp2f(m1 - mr1);
  m0 = mn0;
  m1 = mn1;
  float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    s[n][0] = exp2f(s[n][0] - mr0);
    s[n][1] = exp2f(s[n][1] - mr0);
    s[n][2] = exp2f(s[n][2] - mr1);
    s[n][3] = exp2f(s[n][3] - mr1);
    rs0 += s[n][0] + s[n][1];
    rs1 += s[n][2] + s[n][3];
  }
  l0 = l0 * al0 + rs0;
  l1 = l1 * al1 + rs1;
#pragma unroll
  for (int j = 0; j < DT; ++j) {
    o[j][0] *= al0;
    o[j][1] *= al0;
    o[j][2] *= al1;
    o[j][3] *= al1;
  }
}

// The per-key bias of key kj (< sk) for a mask that is the same for every query row of the
// tile (p.row_mask false): 0, -inf for a hidden key, or the additive value times log2(e).
// P carries mask, mask_kind (0 none, 1 additive in T, 2 keep int32, 3 keep int64), row_mask
// and the mask's key stride ms[3]; mbase is the mask offset of the tile's rows.
template <class T, class P>
__device__ __forceinline__ float key_bias(const P& p, i64 mbase, i64 kj) {
  if (p.mask_kind == 0 || p.row_mask) return 0.0f;
  const i64 mi = mbase + kj * p.ms[3];
  if (p.mask_kind == 1) return load_f(static_cast<const T*>(p.mask) + mi) * kLog2e;
  if (p.mask_kind == 2) return __ldg(static_cast<const std::int32_t*>(p.mask) + mi) == 0 ? -INFINITY : 0.0f;
  return __ldg(static_cast<const long long*>(p.mask) + mi) == 0 ? -INFINITY : 0.0f;
}

// Rows [r0, r0 + ROWS) x DP columns of a 16-bit matrix (row i at src + i * rstride, unit
// columns, 16-byte aligned rows) into shared memory of pitch DP + 8, by cp.async from THREADS
// threads. Rows >= nrows, columns >= d and (hide_hidden) rows whose key bias is -inf are
// zero-filled.
template <class T, int DP, int ROWS, int THREADS, class P>
__device__ __forceinline__ void load_tile(std::uint16_t* dst, const T* src, i64 rstride, i64 r0,
                                          i64 nrows, int d, const P& p, i64 mbase,
                                          bool hide_hidden) {
  constexpr int kChunks = DP / 8;  // 16-byte chunks per row
  constexpr int LD = DP + 8;
  for (int idx = threadIdx.x; idx < ROWS * kChunks; idx += THREADS) {
    const int r = idx / kChunks, c = idx - r * kChunks;
    const i64 row = r0 + r;
    bool ok = row < nrows && c * 8 < d;
    if (ok && hide_hidden) ok = key_bias<T>(p, mbase, row) != -INFINITY;
    const T* g = ok ? src + row * rstride + c * 8 : src;  // src: row 0 of a non-empty matrix
    cp_async16(dst + r * LD + c * 8, g, ok ? 16 : 0);
  }
}

}  // namespace lc::cuda::mma
