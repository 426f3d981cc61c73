// Storage dtypes: the one table of their facts (name, size, kind, numpy typestr), the 16-bit
// float storage types with their float32 conversions, and the one dispatch helper. Every other
// file asks here instead of writing `f32 ? 4 : 8`. Compute precision (fp32 / tf32 / bf16 matrix
// arithmetic) is a policy field (policy.h), separate from what a tensor stores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace lc {

// Values are stable (f32 = 0 and f64 = 1 predate the others).
enum class DType : std::uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, i32 = 4, i64 = 5 };
constexpr int kNumDTypes = 6;

enum class DTypeKind : std::uint8_t { floating, integer };

struct DTypeInfo {
  DType dtype;
  const char* name;        // "float32": what Tensor.dtype reports and error messages print
  const char* short_name;  // "f32": accepted by parse_dtype too
  std::size_t size;        // bytes per element
  DTypeKind kind;
  const char* typestr;     // numpy's __array_interface__ typestr; "" when numpy has none
};

inline constexpr DTypeInfo kDTypes[kNumDTypes] = {
    {DType::f32, "float32", "f32", 4, DTypeKind::floating, "<f4"},
    {DType::f64, "float64", "f64", 8, DTypeKind::floating, "<f8"},
    {DType::f16, "float16", "f16", 2, DTypeKind::floating, "<f2"},
    {DType::bf16, "bfloat16", "bf16", 2, DTypeKind::floating, ""},  // numpy: ml_dtypes.bfloat16
    {DType::i32, "int32", "i32", 4, DTypeKind::integer, "<i4"},
    {DType::i64, "int64", "i64", 8, DTypeKind::integer, "<i8"},
};

inline const DTypeInfo& dtype_info(DType t) { return kDTypes[static_cast<int>(t)]; }
inline std::size_t dtype_size(DType t) { return dtype_info(t).size; }
inline bool is_floating(DType t) { return dtype_info(t).kind == DTypeKind::floating; }

// "float32" | "f32" | "float16" | "f16" | "half" | "bfloat16" | "bf16" | "float64" | "f64" |
// "double" | "int32" | "i32" | "int64" | "i64"; anything else raises lc::TypeError naming `op`.
DType parse_dtype(const std::string& s, const char* op);

// ---- 16-bit float storage ---------------------------------------------------------------------
// Plain bit containers: arithmetic happens in float32 (kernels accumulate in float32).
struct float16 {
  std::uint16_t bits;
};
struct bfloat16 {
  std::uint16_t bits;
};

inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bfloat16 is float32's upper half: round to nearest even; NaN stays a (quiet) NaN.
inline bfloat16 to_bf16(float f) {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x40u)};
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<std::uint16_t>(rounded >> 16)};
}
inline float to_float(bfloat16 h) { return bits_float(static_cast<std::uint32_t>(h.bits) << 16); }

// IEEE binary16, round to nearest even, with subnormals, overflow to inf and NaN kept.
float16 to_f16(float f);
float to_float(float16 h);

// float64 -> 16-bit rounded once to nearest even (as numpy's float16 and ml_dtypes' bfloat16
// casts; rounding through float32 first can be an ulp off).
float16 to_f16(double v);
bfloat16 to_bf16(double v);

// ---- dispatch ---------------------------------------------------------------------------------
// Calls f(T{}) with the C++ storage type of `t` (float, double, float16, bfloat16, int32_t,
// int64_t) and returns its result: the one switch over dtypes (MLX's dtype_utils is the model).
template <class F>
decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(float16{});
    case DType::bf16: return f(bfloat16{});
    case DType::i32: return f(std::int32_t{});
    case DType::i64: break;
  }
  return f(std::int64_t{});
}

// dst[i] = src[i] converted from `from` to `to`, for n contiguous elements (CPU memory). Floats
// go through float64 (exact for every pair) and are rounded once to the destination, so float64
// -> float16 / bfloat16 is correctly rounded as numpy and ml_dtypes do it; float -> int
// truncates toward zero as numpy's astype does, NaN and out-of-range values give the integer
// type's minimum.
void convert_elements(DType from, const void* src, DType to, void* dst, std::int64_t n);

}  // namespace lc
