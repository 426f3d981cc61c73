// Lane-generic vector helpers and run-time instruction-set selection for the CPU kernels.
//
// The library is compiled without -march, so a plain loop only gets SSE2. Kernels that matter
// are written once as templates over a GCC vector type V (vf4 = SSE, vf8 = AVX2, vf16 =
// AVX-512) in a .inc file that isa_variants.inc includes three times, each time inside its own
// namespace wrapped in `#pragma GCC push_options` + `#pragma GCC target(...)` (the helpers of
// simd_ops.inc are included inside that namespace too). The caller picks one with
// simd_level() (CPUID, read once), as matmul.cpp does for the GEMM tile.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define LC_CPU_MULTI_ISA 1
#endif

// The entry point `name` of the kernel compiled for instruction set `isa` (0 = isa_sse,
// 1 = isa_avx2, 2 = isa_avx512: the namespaces isa_variants.inc makes); a build without
// LC_CPU_MULTI_ISA has the SSE one only.
#if defined(LC_CPU_MULTI_ISA)
#define LC_ISA_PICK(isa, name) \
  ((isa) >= 2 ? &isa_avx512::name : (isa) == 1 ? &isa_avx2::name : &isa_sse::name)
#else
#define LC_ISA_PICK(isa, name) ((void)(isa), &isa_sse::name)
#endif

namespace lc::cpu {

typedef float vf4 __attribute__((vector_size(16)));
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf16 __attribute__((vector_size(64)));

// 0 = baseline (SSE2), 1 = AVX2+FMA, 2 = AVX-512F. Same detection as the GEMM dispatch.
inline int simd_level() {
#if defined(LC_CPU_MULTI_ISA)
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return level;
#else
  return 0;
#endif
}

}  // namespace lc::cpu
