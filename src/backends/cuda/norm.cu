// Row-wise layernorm and softmax over x[rows, cols].
//
//  cols <= 1024     : a warp per row (8 rows per 256-thread block); each lane keeps its
//                     ceil(cols/32) values in registers, so x is read once and out written once.
//  cols <= 16384    : a 512-thread block per row, values again in registers (one pass over x).
//  larger           : a 1024-thread block per row that re-reads the row (it stays in L2).
// Numerics: layernorm takes the mean first and then the variance of (x - mean) (two-pass, no
// E[x^2]-E[x]^2 cancellation); softmax subtracts the row max before exp. expf / sqrtf are the
// accurate versions (no fast-math), so results are within a few ulp of float64.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "backends/cuda/check.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/kernels.h"

namespace lc::cuda {

namespace {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reduction; every thread gets the result. scratch: >= 32 floats of shared memory.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < nwarps ? scratch[lane] : (kMax ? -INFINITY : 0.0f);
  return kMax ? warp_max(r) : warp_sum(r);
}

// ---- layernorm ---------------------------------------------------------------------------

template <int VPT>
__global__ void __launch_bounds__(256) ln_warp_kernel(const float* __restrict__ x,
                                                     const float* __restrict__ gamma,
                                                     const float* __restrict__ beta,
                                                     float* __restrict__ out, std::int64_t rows,
                                                     int cols, float eps) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const float* xr = x + row * cols;
  float v[VPT];
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    v[i] = c < cols ? xr[c] : 0.0f;
    s += v[i];
  }
  const float mean = warp_sum(s) / static_cast<float>(cols);
  float q = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    const float d = v[i] - mean;
    q += c < cols ? d * d : 0.0f;
  }
  const float rstd = 1.0f / sqrtf(warp_sum(q) / static_cast<float>(cols) + eps);
  float* orow = out + row * cols;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    if (c < cols) {
      float y = (v[i] - mean) * rstd;
      if (gamma) y *= gamma[c];
      if (beta) y += beta[c];
      orow[c] = y;
    }
  }
}

template <int VPT>
__global__ void __launch_bounds__(512) ln_block_kernel(const float* __restrict__ x,
                                                      const float* __restrict__ gamma,
                                                      const float* __restrict__ beta,
                                                      float* __restrict__ out, int cols, float eps) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float v[VPT];
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + 512 * i;
    v[i] = c < cols ? xr[c] : 0.0f;
    s += v[i];
  }
  const float mean = block_reduce<false>(s, scratch) / static_cast<float>(cols);
  float q = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + 512 * i;
    const float d = v[i] - mean;
    q += c < cols ? d * d : 0.0f;
  }
  const float rstd = 1.0f / sqrtf(block_reduce<false>(q, scratch) / static_cast<float>(cols) + eps);
  float* orow = out + row * cols;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + 512 * i;
    if (c < cols) {
      float y = (v[i] - mean) * rstd;
      if (gamma) y *= gamma[c];
      if (beta) y += beta[c];
      orow[c] = y;
    }
  }
}

__global__ void __launch_bounds__(1024) ln_big_kernel(const float* __restrict__ x,
                                                     const float* __restrict__ gamma,
                                                     const float* __restrict__ beta,
                                                     float* __restrict__ out, std::int64_t cols,
                                                     float eps) {
  __shared__ float scratch[32];
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  float s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
  const float mean = block_reduce<false>(s, scratch) / static_cast<float>(cols);
  float q = 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float d = xr[c] - mean;
    q += d * d;
  }
  const float rstd = 1.0f / sqrtf(block_reduce<false>(q, scratch) / static_cast<float>(cols) + eps);
  float* orow = out + static_cast<std::int64_t>(blockIdx.x) * cols;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float y = (xr[c] - mean) * rstd;
    if (gamma) y *= gamma[c];
    if (beta) y += beta[c];
    orow[c] = y;
  }
}

// ---- softmax -----------------------------------------------------------------------------

template <int VPT>
__global__ void __launch_bounds__(256) sm_warp_kernel(const float* __restrict__ x,
                                                     float* __restrict__ out, std::int64_t rows,
                                                     int cols) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * 8 + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const float* xr = x + row * cols;
  float v[VPT];
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    v[i] = c < cols ? xr[c] : -INFINITY;
    m = fmaxf(m, v[i]);
  }
  m = warp_max(m);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    v[i] = c < cols ? expf(v[i] - m) : 0.0f;
    s += v[i];
  }
  const float inv = 1.0f / warp_sum(s);
  float* orow = out + row * cols;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = lane + 32 * i;
    if (c < cols) orow[c] = v[i] * inv;
  }
}

template <int VPT>
__global__ void __launch_bounds__(512) sm_block_kernel(const float* __restrict__ x,
                                                      float* __restrict__ out, int cols) {
  __shared__ float scratch[32];
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  float v[VPT];
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + 512 * i;
    v[i] = c < cols ? xr[c] : -INFINITY;
    m = fmaxf(m, v[i]);
  }
  m = block_reduce<true>(m, scratch);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + 512 * i;
    v[i] = c < cols ? expf(v[i] - m) : 0.0f;
    s += v[i];
  }
  const float inv = 1.0f / block_reduce<false>(s, scratch);
  float* orow = out + static_cast<std::int64_t>(blockIdx.x) * cols;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int c = threadIdx.x + 512 * i;
    if (c < cols) orow[c] = v[i] * inv;
  }
}

__global__ void __launch_bounds__(1024) sm_big_kernel(const float* __restrict__ x,
                                                     float* __restrict__ out, std::int64_t cols) {
  __shared__ float scratch[32];
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  // Online max/sum per thread, then one block-wide merge.
  float m = -INFINITY, s = 0.0f;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float xv = xr[c];
    if (xv > m) {
      s = s * expf(m - xv) + 1.0f;
      m = xv;
    } else {
      s += expf(xv - m);
    }
  }
  const float gm = block_reduce<true>(m, scratch);
  s = (m == -INFINITY) ? 0.0f : s * expf(m - gm);
  const float inv = 1.0f / block_reduce<false>(s, scratch);
  float* orow = out + static_cast<std::int64_t>(blockIdx.x) * cols;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) orow[c] = expf(xr[c] - gm) * inv;
}

unsigned warp_grid(std::int64_t rows) { return static_cast<unsigned>((rows + 7) / 8); }

}  // namespace

void launch_layernorm(const LayerNormArgs& p, cudaStream_t s) {
  if (p.rows <= 0 || p.cols <= 0) return;
  const int cols = static_cast<int>(p.cols);
  const std::int64_t C = p.cols;
#define LC_LN_WARP(V) \
  launch(ln_warp_kernel<V>, warp_grid(p.rows), 256, 0, s, "layernorm kernel", p.x, p.gamma, p.beta, p.out, p.rows, cols, p.eps)
#define LC_LN_BLOCK(V) \
  launch(ln_block_kernel<V>, static_cast<unsigned>(p.rows), 512, 0, s, "layernorm kernel", p.x, p.gamma, p.beta, p.out, cols, p.eps)
  if (C <= 32) LC_LN_WARP(1);
  else if (C <= 64) LC_LN_WARP(2);
  else if (C <= 128) LC_LN_WARP(4);
  else if (C <= 256) LC_LN_WARP(8);
  else if (C <= 512) LC_LN_WARP(16);
  else if (C <= 1024) LC_LN_WARP(32);
  else if (C <= 2048) LC_LN_BLOCK(4);
  else if (C <= 4096) LC_LN_BLOCK(8);
  else if (C <= 8192) LC_LN_BLOCK(16);
  else if (C <= 16384) LC_LN_BLOCK(32);
  else launch(ln_big_kernel, static_cast<unsigned>(p.rows), 1024, 0, s, "layernorm kernel", p.x, p.gamma, p.beta, p.out, C, p.eps);
#undef LC_LN_WARP
#undef LC_LN_BLOCK
}

void launch_softmax(const SoftmaxArgs& p, cudaStream_t s) {
  if (p.rows <= 0 || p.cols <= 0) return;
  const int cols = static_cast<int>(p.cols);
  const std::int64_t C = p.cols;
#define LC_SM_WARP(V) launch(sm_warp_kernel<V>, warp_grid(p.rows), 256, 0, s, "softmax kernel", p.x, p.out, p.rows, cols)
#define LC_SM_BLOCK(V) launch(sm_block_kernel<V>, static_cast<unsigned>(p.rows), 512, 0, s, "softmax kernel", p.x, p.out, cols)
  if (C <= 32) LC_SM_WARP(1);
  else if (C <= 64) LC_SM_WARP(2);
  else if (C <= 128) LC_SM_WARP(4);
  else if (C <= 256) LC_SM_WARP(8);
  else if (C <= 512) LC_SM_WARP(16);
  else if (C <= 1024) LC_SM_WARP(32);
  else if (C <= 2048) LC_SM_BLOCK(4);
  else if (C <= 4096) LC_SM_BLOCK(8);
  else if (C <= 8192) LC_SM_BLOCK(16);
  else if (C <= 16384) LC_SM_BLOCK(32);
  else launch(sm_big_kernel, static_cast<unsigned>(p.rows), 1024, 0, s, "softmax kernel", p.x, p.out, C);
#undef LC_SM_WARP
#undef LC_SM_BLOCK
}

}  // namespace lc::cuda
