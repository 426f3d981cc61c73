// float16 / bfloat16 <-> float32 for the CPU kernels that compute 16-bit storage in float32
// (norm.cpp, attention.cpp): contiguous runs, round to nearest even on the way down (as
// lc::to_f16 / lc::to_bf16; NaN stays NaN). float16 uses F16C where the CPU has it.
#pragma once

#include <cstdint>

#include "lightning_core/dtype.h"

namespace lc::cpu {

// dst[i] = float(src[i]) for i < n; t is DType::f16 or DType::bf16.
void widen_to_f32(DType t, const void* src, float* dst, std::int64_t n);
// dst[i] = t(src[i]) for i < n, one rounding; t is DType::f16 or DType::bf16.
void narrow_from_f32(DType t, const float* src, void* dst, std::int64_t n);

}  // namespace lc::cpu
