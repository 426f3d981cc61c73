// float16 <-> float32 conversions for the CPU kernels' inner loops: branch-free and inline (the
// compiler can vectorise loops over them), bit-for-bit the conversions of dtype.h's to_float /
// to_f16 (round to nearest even, subnormals, overflow to inf, NaN kept quiet with its payload's
// top bits). tests/cpp/test_ew_kernels.cpp checks every half and a sweep of floats against them.
#pragma once

#include <cstdint>

#include "lightning_core/dtype.h"

namespace lc::cpu {

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t em = h & 0x7fffu;
  // Normal and subnormal halves alike: the bits shifted into a float's place, scaled by 2^112
  // (exact: a subnormal half becomes a float denormal times a power of two).
  const float mag = bits_float(em << 13) * 0x1p112f;
  const std::uint32_t infnan = 0x7f800000u | ((em & 0x3ffu) << 13);
  return bits_float(sign | (em >= 0x7c00u ? infnan : float_bits(mag)));
}

inline std::uint16_t float_to_half(float f) {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  const std::uint32_t nan = sign | 0x7e00u | ((a >> 13) & 0x3ffu);
  const std::uint32_t inf = sign | 0x7c00u;
  // Subnormal result: adding 0.5 rounds to a multiple of 2^-24 (nearest even) in the FPU.
  const std::uint32_t sub = sign | (float_bits(bits_float(a) + 0.5f) - 0x3f000000u);
  // Normal result: re-bias the exponent (127 -> 15), round the 13 dropped bits to even.
  const std::uint32_t nrm = sign | ((a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13);
  std::uint32_t r = a < 0x38800000u ? sub : nrm;
  r = a >= 0x477ff000u ? inf : r;
  r = a > 0x7f800000u ? nan : r;
  return static_cast<std::uint16_t>(r);
}

}  // namespace lc::cpu
