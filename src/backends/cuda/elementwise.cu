// The elementwise family (add, sub, mul, scale, relu, gelu): one templated grid-stride kernel.
//
// When a, b and out share the same offset modulo 16 bytes, a few scalar head elements bring the
// pointers to a 16-byte boundary and the body runs on float4 (LDG.128/STG.128), unrolled 4 deep
// so each thread has 8 independent 16-byte loads in flight; the tail is scalar. Pointers with
// different offsets fall back to the scalar loop. The grid is sized to fill the GPU (8 blocks of
// 256 threads per SM) and loops over any n. out may alias a or b: every element is read and
// written by the same thread, reads first.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "backends/cuda/check.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/device_math.cuh"
#include "backends/cuda/kernels.h"

namespace lc::cuda {

namespace {

template <EwKind K>
__device__ __forceinline__ float ew_op(float x, float y, float alpha) {
  if constexpr (K == EwKind::add) return x + y;
  else if constexpr (K == EwKind::sub) return x - y;
  else if constexpr (K == EwKind::mul) return x * y;
  else if constexpr (K == EwKind::scale) return x * alpha;
  else if constexpr (K == EwKind::relu) return relu_f(x);
  else return gelu_tanh(x);
}

template <EwKind K>
constexpr bool kBinary = (K == EwKind::add || K == EwKind::sub || K == EwKind::mul);

template <EwKind K>
__device__ __forceinline__ float4 ew_op4(float4 x, float4 y, float alpha) {
  return make_float4(ew_op<K>(x.x, y.x, alpha), ew_op<K>(x.y, y.y, alpha),
                     ew_op<K>(x.z, y.z, alpha), ew_op<K>(x.w, y.w, alpha));
}

// Elements [0, head) and [head + 4*n4, n) are scalar; [head, head + 4*n4) is float4.
template <EwKind K>
__global__ void __launch_bounds__(256) ew_kernel(const float* a,
                                                 const float* b, float* out,
                                                 std::int64_t n, std::int64_t head,
                                                 std::int64_t n4, float alpha) {
  const std::int64_t gid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;

  // scalar head and tail
  const std::int64_t tail0 = head + 4 * n4;
  const std::int64_t nscalar = head + (n - tail0);
  for (std::int64_t j = gid; j < nscalar; j += stride) {
    const std::int64_t i = j < head ? j : tail0 + (j - head);
    out[i] = ew_op<K>(a[i], kBinary<K> ? b[i] : 0.0f, alpha);
  }

  const float4* a4 = reinterpret_cast<const float4*>(a + head);
  const float4* b4 = reinterpret_cast<const float4*>(kBinary<K> ? b + head : a + head);
  float4* o4 = reinterpret_cast<float4*>(out + head);
  std::int64_t i = gid;
  constexpr int U = 4;
  for (; i + (U - 1) * stride < n4; i += U * stride) {
    float4 x[U], y[U];
#pragma unroll
    for (int u = 0; u < U; ++u) x[u] = a4[i + u * stride];
    if constexpr (kBinary<K>) {
#pragma unroll
      for (int u = 0; u < U; ++u) y[u] = b4[i + u * stride];
    }
#pragma unroll
    for (int u = 0; u < U; ++u) o4[i + u * stride] = ew_op4<K>(x[u], kBinary<K> ? y[u] : x[u], alpha);
  }
  for (; i < n4; i += stride) {
    const float4 x = a4[i];
    const float4 y = kBinary<K> ? b4[i] : x;
    o4[i] = ew_op4<K>(x, y, alpha);
  }
}

template <Activation A>
__global__ void fill_bias_act_kernel(float* out, const float* bias, std::int64_t m, std::int64_t n) {
  const std::int64_t total = m * n;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = activate<A>(bias ? bias[i % n] : 0.0f);
  }
}

__global__ void tile_cyclic_kernel(float* dst, const float* src, std::int64_t have,
                                   std::int64_t need) {
  // Each thread walks its grid-stride positions; the source index follows with one modulo.
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  std::int64_t j = i % have;
  const std::int64_t step = stride % have;
  for (; i < need; i += stride) {
    dst[i] = __ldg(src + j);
    j += step;
    if (j >= have) j -= have;
  }
}

template <EwKind K>
void launch_kind(const ElementwiseArgs& p, int sm_count, cudaStream_t s) {
  const auto pa = reinterpret_cast<std::uintptr_t>(p.a);
  const auto po = reinterpret_cast<std::uintptr_t>(p.out);
  const auto pb = kBinary<K> ? reinterpret_cast<std::uintptr_t>(p.b) : pa;
  std::int64_t head = 0, n4 = 0;
  const bool same_phase = (pa % 16 == po % 16) && (pb % 16 == po % 16) && (pa % 4 == 0);
  if (same_phase) {
    head = static_cast<std::int64_t>(((16 - po % 16) % 16) / 4);
    head = std::min(head, p.n);
    n4 = (p.n - head) / 4;
  } else {
    head = p.n;  // all scalar
  }
  const std::int64_t work = std::max<std::int64_t>(n4, p.n - 4 * n4);
  constexpr int kThreads = 256;
  const std::int64_t want = (work + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>(want, static_cast<std::int64_t>(sm_count) * 8)));
  launch(ew_kernel<K>, blocks, kThreads, 0, s, "elementwise kernel", p.a, kBinary<K> ? p.b : nullptr, p.out, p.n, head, n4,
                                          p.alpha);
}

}  // namespace

void launch_elementwise(const ElementwiseArgs& p, int sm_count, cudaStream_t s) {
  if (p.n <= 0) return;
  switch (p.kind) {
    case EwKind::add: return launch_kind<EwKind::add>(p, sm_count, s);
    case EwKind::sub: return launch_kind<EwKind::sub>(p, sm_count, s);
    case EwKind::mul: return launch_kind<EwKind::mul>(p, sm_count, s);
    case EwKind::scale: return launch_kind<EwKind::scale>(p, sm_count, s);
    case EwKind::relu: return launch_kind<EwKind::relu>(p, sm_count, s);
    case EwKind::gelu: return launch_kind<EwKind::gelu>(p, sm_count, s);
  }
}

void launch_tile_cyclic(float* dst, const float* src, std::int64_t have, std::int64_t need,
                        int sm_count, cudaStream_t s) {
  if (have <= 0 || need <= 0) return;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>((need + kThreads - 1) / kThreads,
                                static_cast<std::int64_t>(sm_count) * 8)));
  launch(tile_cyclic_kernel, blocks, kThreads, 0, s, "tile_cyclic_kernel", dst, src, have, need);
}

void launch_fill_bias_act(float* out, const float* bias, std::int64_t m, std::int64_t n,
                          Activation act, cudaStream_t s) {
  if (m <= 0 || n <= 0) return;
  const int blocks = static_cast<int>(std::min<std::int64_t>((m * n + 255) / 256, 4096));
  switch (act) {
    case Activation::none: launch(fill_bias_act_kernel<Activation::none>, blocks, 256, 0, s, "fill_bias_act_kernel", out, bias, m, n); break;
    case Activation::relu: launch(fill_bias_act_kernel<Activation::relu>, blocks, 256, 0, s, "fill_bias_act_kernel", out, bias, m, n); break;
    case Activation::gelu: launch(fill_bias_act_kernel<Activation::gelu>, blocks, 256, 0, s, "fill_bias_act_kernel", out, bias, m, n); break;
  }
}

namespace {
__global__ void probe_noop_kernel(int*) {}
}  // namespace

cudaError_t probe_kernel_image() {
  cudaFuncAttributes attr{};
  return cudaFuncGetAttributes(&attr, probe_noop_kernel);
}

}  // namespace lc::cuda
