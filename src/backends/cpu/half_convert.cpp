// 16-bit float <-> float32 runs for the CPU kernels (half_convert.h).
//
// bfloat16 is float32's upper half, so both directions are plain integer loops that g++
// vectorises at -O3. float16 needs exponent rebiasing and subnormal handling: with F16C (every
// AVX2-era x86 CPU) one instruction converts 8 lanes; otherwise the scalar lc::to_float /
// lc::to_f16 of dtype.h.
#include "backends/cpu/half_convert.h"

#include "backends/cpu/simd.h"

#if defined(LC_CPU_MULTI_ISA)
#include <immintrin.h>
#endif

namespace lc::cpu {
namespace {

using i64 = std::int64_t;

#if defined(LC_CPU_MULTI_ISA)
__attribute__((target("avx,f16c"))) void widen_f16c(const float16* s, float* d, i64 n) {
  i64 i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = to_float(s[i]);
}
__attribute__((target("avx,f16c"))) void narrow_f16c(const float* s, float16* d, i64 n) {
  i64 i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) d[i] = to_f16(s[i]);
}
bool have_f16c() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  }();
  return yes;
}
#endif

}  // namespace

void widen_to_f32(DType t, const void* src, float* d, i64 n) {
  if (t == DType::bf16) {
    const auto* s = static_cast<const bfloat16*>(src);
    for (i64 i = 0; i < n; ++i) d[i] = to_float(s[i]);
    return;
  }
  const auto* s = static_cast<const float16*>(src);
#if defined(LC_CPU_MULTI_ISA)
  if (have_f16c()) return widen_f16c(s, d, n);
#endif
  for (i64 i = 0; i < n; ++i) d[i] = to_float(s[i]);
}

void narrow_from_f32(DType t, const float* s, void* dst, i64 n) {
  if (t == DType::bf16) {
    auto* d = static_cast<bfloat16*>(dst);
    for (i64 i = 0; i < n; ++i) d[i] = to_bf16(s[i]);
    return;
  }
  auto* d = static_cast<float16*>(dst);
#if defined(LC_CPU_MULTI_ISA)
  if (have_f16c()) return narrow_f16c(s, d, n);
#endif
  for (i64 i = 0; i < n; ++i) d[i] = to_f16(s[i]);
}

}  // namespace lc::cpu
