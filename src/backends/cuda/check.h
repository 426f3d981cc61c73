// Error checking for every CUDA / cuBLAS(Lt) / cuDNN call of the CUDA backend.
//
// A failing call becomes lc::BackendError whose message names the call, the file:line, the
// library's error name and its description. Allocation failures (cudaErrorMemoryAllocation,
// CUBLAS_STATUS_ALLOC_FAILED, CUDNN_STATUS_ALLOC_FAILED) become lc::OutOfMemory instead. Before
// throwing, the per-thread "last error" is cleared with cudaGetLastError() so that a recoverable
// failure (an OOM) does not poison the next, unrelated check: the runtime stays usable.
#pragma once

#include <cublas_api.h>
#include <cuda_runtime_api.h>

namespace lc::cuda::detail {

[[noreturn]] void throw_cuda(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line);
// cuDNN is optional, so its check goes through plain ints/strings (see conv2d.cu).
[[noreturn]] void throw_lib(const char* lib, bool oom, int code, const char* name,
                            const char* call, const char* file, int line);

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda(e, call, file, line);
}
inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_cublas(s, call, file, line);
}

}  // namespace lc::cuda::detail

#define LC_CUDA_CHECK(expr) ::lc::cuda::detail::check_cuda((expr), #expr, __FILE__, __LINE__)
#define LC_CUBLAS_CHECK(expr) ::lc::cuda::detail::check_cublas((expr), #expr, __FILE__, __LINE__)
// After every kernel launch: launch-configuration errors surface here, not at the next sync.
#define LC_CUDA_CHECK_LAUNCH(kernel_name) \
  ::lc::cuda::detail::check_cuda(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)
