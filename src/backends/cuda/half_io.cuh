// Loads and stores of the storage dtypes the CUDA kernels compute in float32: float, __half
// (float16) and __nv_bfloat16 (bfloat16). Loads widen exactly; stores round once to nearest
// even (__float2half_rn / __float2bfloat16_rn; NaN stays NaN, overflow gives inf as numpy).
// The 16-byte forms move kVec<T> elements (4 floats or 8 16-bit values) with one LDG.128/STG.128;
// the caller guarantees 16-byte alignment.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "lightning_core/dtype.h"

namespace lc::cuda {

static_assert(sizeof(__half) == sizeof(lc::float16), "__half must match lc::float16");
static_assert(sizeof(__nv_bfloat16) == sizeof(lc::bfloat16), "__nv_bfloat16 must match lc::bfloat16");

// Elements per 16-byte vector.
template <class T>
inline constexpr int kVec = static_cast<int>(16 / sizeof(T));

// The 16 bits at p through the read-only (non-coherent) cache. Not cuda_fp16.h's __ldg(__half*)
// nor its bfloat16 twin: those are non-volatile inline asm, which the compiler treats as free of
// side effects and may execute speculatively above the branch that guards them. On the H200,
// compute-sanitizer caught the float16 layernorm kernel reading beta[895] of a 768-column row
// (the read sat behind `if (c >= cols) continue;`), and before that, reading address 0 + c for
// an absent gamma. Past the end of a mapping such a read faults. The float and vector __ldg
// overloads are asm volatile and stay in place.
__device__ __forceinline__ unsigned short ldg_u16(const void* p) {
  unsigned short v;
  asm volatile("ld.global.nc.b16 %0, [%1];" : "=h"(v) : "l"(p));
  return v;
}

template <class T>
__device__ __forceinline__ float load_f(const T* p) {
  if constexpr (std::is_same_v<T, float>) return __ldg(p);
  else if constexpr (std::is_same_v<T, __half>) return __half2float(__ushort_as_half(ldg_u16(p)));
  else return __bfloat162float(__ushort_as_bfloat16(ldg_u16(p)));
}

template <class T>
__device__ __forceinline__ T from_f(float v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else return __float2bfloat16_rn(v);
}

template <class T>
__device__ __forceinline__ void store_f(T* p, float v) { *p = from_f<T>(v); }

// Two 16-bit values packed in one 32-bit word (element 0 in the low half).
template <class T>
__device__ __forceinline__ void unpack2(std::uint32_t w, float& lo, float& hi) {
  if constexpr (std::is_same_v<T, __half>) {
    lo = __half2float(__ushort_as_half(static_cast<unsigned short>(w & 0xffffu)));
    hi = __half2float(__ushort_as_half(static_cast<unsigned short>(w >> 16)));
  } else {  // bfloat16: the upper half of a float32
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
  }
}

template <class T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi) {
  std::uint32_t a, b;
  if constexpr (std::is_same_v<T, __half>) {
    a = __half_as_ushort(__float2half_rn(lo));
    b = __half_as_ushort(__float2half_rn(hi));
  } else {
    a = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
    b = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  }
  return a | (b << 16);
}

// f[0..kVec<T>) = the kVec<T> elements packed in u (one 16-byte vector), widened exactly.
template <class T>
__device__ __forceinline__ void widen16(const uint4& u, float* f) {
  if constexpr (std::is_same_v<T, float>) {
    f[0] = __uint_as_float(u.x);
    f[1] = __uint_as_float(u.y);
    f[2] = __uint_as_float(u.z);
    f[3] = __uint_as_float(u.w);
  } else {
    unpack2<T>(u.x, f[0], f[1]);
    unpack2<T>(u.y, f[2], f[3]);
    unpack2<T>(u.z, f[4], f[5]);
    unpack2<T>(u.w, f[6], f[7]);
  }
}

// 16 bytes at p (16-byte aligned) through the read-only cache (the vector __ldg is asm
// volatile: it stays behind its branch, see ldg_u16).
__device__ __forceinline__ uint4 ldg16(const void* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// f[0..kVec<T>) = p[0..kVec<T>) widened; p 16-byte aligned.
template <class T>
__device__ __forceinline__ void load16(const T* p, float* f) {
  widen16<T>(ldg16(p), f);
}

// p[0..kVec<T>) = f[0..kVec<T>) rounded once; p 16-byte aligned.
template <class T>
__device__ __forceinline__ void store16(T* p, const float* f) {
  uint4 u;
  if constexpr (std::is_same_v<T, float>) {
    u = make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                   __float_as_uint(f[3]));
  } else {
    u = make_uint4(pack2<T>(f[0], f[1]), pack2<T>(f[2], f[3]), pack2<T>(f[4], f[5]),
                   pack2<T>(f[6], f[7]));
  }
  *reinterpret_cast<uint4*>(p) = u;
}

// Calls f(T{}) with the CUDA storage type of a float32 / float16 / bfloat16 dtype.
template <class F>
void dispatch_float(DType t, F&& f) {
  if (t == DType::f16) f(__half{});
  else if (t == DType::bf16) f(__nv_bfloat16{});
  else f(float{});
}

}  // namespace lc::cuda
