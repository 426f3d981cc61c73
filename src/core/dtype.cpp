// The dtype table's functions (dtype.h): parsing, float16 conversion, element conversion.
#include "lightning_core/dtype.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "lightning_core/errors.h"

namespace lc {

DType parse_dtype(const std::string& s, const char* op) {
  for (const DTypeInfo& d : kDTypes)
    if (s == d.name || s == d.short_name) return d.dtype;
  if (s == "half") return DType::f16;
  if (s == "double") return DType::f64;
  std::string names;
  for (const DTypeInfo& d : kDTypes) names += std::string(names.empty() ? "" : ", ") + "\"" + d.name + "\"";
  throw_type(op, "dtype must be one of " + names + ", got \"" + s + "\"");
}

float16 to_f16(float f) {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return {static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};  // NaN
  if (a >= 0x477ff000u) return {static_cast<std::uint16_t>(sign | 0x7c00u)};  // rounds to >= 65536: inf
  if (a < 0x38800000u) {
    // Subnormal half (or zero): value = a_float * 2^24 in units of the smallest subnormal.
    // Adding 0.5 (as a float) rounds to nearest even through the FPU.
    const float v = bits_float(a) + 0.5f;  // 0.5 = 2^-1: aligns bit 0 of the result at 2^-24
    return {static_cast<std::uint16_t>(sign | (float_bits(v) - 0x3f000000u))};
  }
  // Normal: re-bias the exponent (127 -> 15) and round the 13 dropped mantissa bits to even.
  const std::uint32_t odd = (a >> 13) & 1u;
  const std::uint32_t r = a + 0xc8000fffu + odd;  // (15 - 127) << 23 plus the rounding bias
  return {static_cast<std::uint16_t>(sign | (r >> 13))};
}

float to_float(float16 h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t e = (h.bits >> 10) & 0x1fu;
  const std::uint32_t m = h.bits & 0x3ffu;
  if (e == 0x1f) return bits_float(sign | 0x7f800000u | (m << 13));  // inf / NaN
  if (e == 0) {
    // Zero or subnormal: m * 2^-24 exactly.
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((e + 112) << 23) | (m << 13));
}

namespace {

// v rounded to a float toward zero with the lowest bit set when inexact ("round to odd"). A
// float keeps 13 or more bits beyond a half's or a bfloat16's, so rounding this float to nearest
// even gives exactly v rounded once: no double rounding (numpy's float64 -> float16 and
// ml_dtypes' float64 -> bfloat16 round once; float64 -> float32 -> 16-bit can be off by an ulp).
float round_to_odd_float(double v) {
  const float f = static_cast<float>(v);
  if (std::isnan(v) || static_cast<double>(f) == v) return f;
  if (std::isinf(f)) return std::copysign(std::numeric_limits<float>::max(), static_cast<float>(v));
  std::uint32_t u = float_bits(f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(v)) --u;  // one step toward zero: the truncation
  return bits_float(u | 1u);
}

}  // namespace

float16 to_f16(double v) { return to_f16(round_to_odd_float(v)); }
bfloat16 to_bf16(double v) { return to_bf16(round_to_odd_float(v)); }

namespace {

template <class T>
double load(const T& v) {
  if constexpr (std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>) return to_float(v);
  else return static_cast<double>(v);
}

template <class T>
T store(double v) {
  if constexpr (std::is_same_v<T, float16>) return to_f16(v);
  else if constexpr (std::is_same_v<T, bfloat16>) return to_bf16(v);
  else if constexpr (std::is_integral_v<T>) {
    // numpy's astype: truncation toward zero; NaN / out of range give the minimum (x86's
    // cvttsd2si result), never undefined behaviour.
    constexpr double lo = static_cast<double>(std::numeric_limits<T>::min());
    constexpr double hi = -lo;  // 2^31 or 2^63: the first value out of range
    if (!(v >= lo && v < hi)) return std::numeric_limits<T>::min();
    return static_cast<T>(v);
  } else {
    return static_cast<T>(v);
  }
}

}  // namespace

void convert_elements(DType from, const void* src, DType to, void* dst, std::int64_t n) {
  if (n <= 0) return;  // zero-size tensors may hold null pointers (memcpy(null, null, 0) is UB)
  if (from == to) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * dtype_size(from));
    return;
  }
  dispatch_dtype(from, [&](auto s_tag) {
    using S = decltype(s_tag);
    const S* s = static_cast<const S*>(src);
    dispatch_dtype(to, [&](auto d_tag) {
      using D = decltype(d_tag);
      D* d = static_cast<D*>(dst);
      if constexpr (std::is_integral_v<S> && std::is_integral_v<D>) {
        for (std::int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);  // int32 <-> int64 exact / wrap like numpy
      } else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, float16>) {
        for (std::int64_t i = 0; i < n; ++i) d[i] = to_f16(s[i]);
      } else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, bfloat16>) {
        for (std::int64_t i = 0; i < n; ++i) d[i] = to_bf16(s[i]);
      } else {
        for (std::int64_t i = 0; i < n; ++i) d[i] = store<D>(load(s[i]));
      }
    });
  });
}

}  // namespace lc
