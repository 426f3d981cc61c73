// The matmul k == 0 case on the GPU (matmul.h launch_matmul_fill): an empty sum, so every
// product is act(bias + residual) (or act(0)), in the storage dtype. cuBLASLt does not take
// k = 0, and its result would not be this anyway.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backends/cuda/device_math.cuh"
#include "backends/cuda/launch.h"
#include "backends/cuda/matmul.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage types");

__device__ __forceinline__ float load_f(float v) { return v; }
__device__ __forceinline__ float load_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float load_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T store_f(float v);
template <>
__device__ __forceinline__ float store_f<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half store_f<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 store_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// out[b][i][j] = act(bias[j] + residual[b][i][j]) over batch x m x n, int64 indices, grid-stride.
template <class T, Activation A>
__global__ void matmul_fill_kernel(T* out, const T* bias, const T* residual, std::int64_t m,
                                   std::int64_t n, std::int64_t batch, std::int64_t stride_out) {
  const std::int64_t per = m * n;
  const std::int64_t total = per * batch;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += step) {
    const std::int64_t b = i / per, r = i - b * per;
    const std::int64_t at = b * stride_out + r;
    float v = bias ? load_f(bias[r % n]) : 0.0f;
    if (residual) v += load_f(residual[at]);
    out[at] = store_f<T>(activate<A>(v));
  }
}

template <class T>
void fill_typed(const MatmulArgs& a, int blocks, cudaStream_t s) {
  T* out = static_cast<T*>(a.out);
  const T* bias = static_cast<const T*>(a.bias);
  const T* res = static_cast<const T*>(a.residual);
  const std::int64_t batch = a.batch > 1 ? a.batch : 1;
  const std::int64_t stride = a.batch > 1 ? a.stride_out : a.m * a.n;
  switch (a.act) {
    case Activation::gelu_erf:  // never here: src/ops/matmul.cpp runs it as a second step
    case Activation::none:
      launch(matmul_fill_kernel<T, Activation::none>, blocks, 256, 0, s, "matmul_fill_kernel",
             out, bias, res, a.m, a.n, batch, stride);
      break;
    case Activation::relu:
      launch(matmul_fill_kernel<T, Activation::relu>, blocks, 256, 0, s, "matmul_fill_kernel",
             out, bias, res, a.m, a.n, batch, stride);
      break;
    case Activation::gelu:
      launch(matmul_fill_kernel<T, Activation::gelu>, blocks, 256, 0, s, "matmul_fill_kernel",
             out, bias, res, a.m, a.n, batch, stride);
      break;
  }
}

}  // namespace

void launch_matmul_fill(const MatmulArgs& a, cudaStream_t s) {
  if (a.m <= 0 || a.n <= 0 || a.batch <= 0) return;
  const std::int64_t total = a.m * a.n * (a.batch > 1 ? a.batch : 1);
  // 1-D grid (x may reach 2^31 - 1; 4096 blocks of 256 threads stride over the rest).
  const int blocks = static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>((total + 255) / 256, 4096)));
  switch (a.dtype) {
    case DType::f32: return fill_typed<float>(a, blocks, s);
    case DType::f16: return fill_typed<__half>(a, blocks, s);
    case DType::bf16: return fill_typed<__nv_bfloat16>(a, blocks, s);
    default: break;
  }
  throw BackendError("[matmul] the CUDA backend computes float32, float16 and bfloat16 only, got " +
                     std::string(to_string(a.dtype)));
}

}  // namespace lc::cuda
