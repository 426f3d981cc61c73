// Shared by the attention front-end (attention.cpp) and the pipelines that end in attention
// (fused.cpp).
#pragma once

#include <cstdint>

namespace lc {

// The CUDA attention kernel's head-dimension limit (d and dv); larger heads fall back to the CPU.
constexpr std::int64_t kCudaMaxHeadDim = 256;

}  // namespace lc
