// The one include of the CBLAS header (LC_HAVE_BLAS builds only). CMake's LC_BLAS picks the
// library: scipy-openblas32 (the OpenBLAS that numpy and SciPy ship on PyPI) prefixes every
// symbol with `scipy_`, so under LC_BLAS_SCIPY_PREFIX the names the CPU kernels call are mapped
// here; a system OpenBLAS uses the plain names. LC_BLAS_NAME says which one was built in.
#pragma once

#if defined(LC_HAVE_BLAS)
#include <cblas.h>

#if defined(LC_BLAS_SCIPY_PREFIX)
#define cblas_sgemm scipy_cblas_sgemm
#define cblas_dgemm scipy_cblas_dgemm
#define openblas_set_num_threads scipy_openblas_set_num_threads
#define openblas_get_num_threads scipy_openblas_get_num_threads
#endif

#include <climits>
#include <cstdint>

namespace lc::cpu {
// CBLAS (LP64) takes int sizes and leading dimensions: a call is made only when every one fits.
template <class... T>
inline bool blas_fits_int(T... v) {
  return ((static_cast<std::int64_t>(v) <= INT_MAX) && ...);
}
}  // namespace lc::cpu

#ifndef LC_BLAS_NAME
#define LC_BLAS_NAME "openblas"
#endif
#endif  // LC_HAVE_BLAS
