// Device math shared by the kernels: the activations (gelu is the tanh approximation, lc's one
// definition of gelu, the same function cuBLASLt's GELU epilogue computes).
#pragma once

#include <cuda_runtime.h>

#include "lightning_core/types.h"

namespace lc::cuda {

// 0.5 x (1 + tanh(u)) == x / (1 + exp(-2u)): the same function, written without the
// cancellation of 1 + tanh(u) for negative u (that form lost ~20 ulp near gelu's small negative
// outputs; this one stays within a few ulp of float64). Saturates correctly: exp overflow -> -0;
// gelu(-inf) = -inf / inf = NaN and gelu(nan) = nan, as in torch and the CPU backend.
__device__ __forceinline__ float gelu_tanh(float x) {
  constexpr float kTwoAlpha = 1.5957691216057308f;  // 2 sqrt(2/pi)
  const float two_u = kTwoAlpha * fmaf(0.044715f * x, x * x, x);
  return x / (1.0f + expf(-two_u));
}

// Exact GELU 0.5 x (1 + erf(x / sqrt 2)) (approximate="none"); gelu_erf(-inf) = NaN as the
// CPU backend.
__device__ __forceinline__ float gelu_erf(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

// NaN propagates (relu(nan) = nan), as in torch.relu and the CPU backend.
__device__ __forceinline__ float relu_f(float x) { return x < 0.0f ? 0.0f : x; }

template <Activation A>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == Activation::relu) return relu_f(x);
  else if constexpr (A == Activation::gelu) return gelu_tanh(x);
  else return x;
}

}  // namespace lc::cuda
