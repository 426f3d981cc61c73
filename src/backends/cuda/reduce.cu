// Whole-tensor reductions on the device: sum_squares (Backend::sum_squares), the training
// step's MSE loss without downloading the tensor. Two launches: kSumBlocks-bounded blocks each
// write a float64 partial sum (grid-strided, int64 indices), then one block adds the partials
// in a fixed order. The split depends only on n and the SM count, so a given device returns
// the same bits every call (no atomics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage types");
constexpr int kThreads = 256;

template <class T>
__device__ __forceinline__ double widen(T v) {
  if constexpr (std::is_same_v<T, __half>) return static_cast<double>(__half2float(v));
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return static_cast<double>(__bfloat162float(v));
  else return static_cast<double>(v);
}

// The block's sum of v (every thread passes its value); thread 0 gets the result.
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = 0.0;
  if (warp == 0) {
    v = lane < kThreads / 32 ? warp_sums[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

template <class T>
__global__ void __launch_bounds__(kThreads) sum_squares_partial_kernel(const T* x, std::int64_t n,
                                                                      double* partial) {
  double acc = 0.0;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kThreads;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += stride) {
    const double v = widen(x[i]);
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kThreads) sum_partials_kernel(const double* partial, int count,
                                                               double* out) {
  double acc = 0.0;
  for (int i = threadIdx.x; i < count; i += kThreads) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

}  // namespace

void launch_sum_squares(const void* x, DType t, std::int64_t n, double* scratch, int sm_count,
                        cudaStream_t s) {
  // Enough blocks to fill the device (4 per SM), few enough for one block to add them.
  const std::int64_t want = (n + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(want, std::min(4 * std::max(sm_count, 1),
                                                                      kSumSquaresMaxBlocks))));
  switch (t) {
    case DType::f32:
      launch(sum_squares_partial_kernel<float>, blocks, kThreads, 0, s, "sum_squares_partial_kernel",
             static_cast<const float*>(x), n, scratch);
      break;
    case DType::f64:
      launch(sum_squares_partial_kernel<double>, blocks, kThreads, 0, s,
             "sum_squares_partial_kernel", static_cast<const double*>(x), n, scratch);
      break;
    case DType::f16:
      launch(sum_squares_partial_kernel<__half>, blocks, kThreads, 0, s,
             "sum_squares_partial_kernel", static_cast<const __half*>(x), n, scratch);
      break;
    case DType::bf16:
      launch(sum_squares_partial_kernel<__nv_bfloat16>, blocks, kThreads, 0, s,
             "sum_squares_partial_kernel", static_cast<const __nv_bfloat16*>(x), n, scratch);
      break;
    default:
      throw_type("sum_squares", std::string("needs a float dtype, got ") + dtype_info(t).name);
  }
  launch(sum_partials_kernel, 1, kThreads, 0, s, "sum_partials_kernel",
         static_cast<const double*>(scratch), blocks, scratch + kSumSquaresMaxBlocks);
}

}  // namespace lc::cuda
