// Throw helpers behind check.h's macros.
#include "backends/cuda/check.h"

#include <cstdio>
#include <string>

#include "lightning_core/errors.h"

namespace lc::cuda::detail {

static std::string where(const char* call, const char* file, int line) {
  const char* base = file;
  for (const char* p = file; *p; ++p)
    if (*p == '/') base = p + 1;
  return std::string(call) + " (" + base + ":" + std::to_string(line) + ")";
}

void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  // Clear the (non-sticky) error state so that the next call starts clean. Sticky errors
  // (an illegal address inside a kernel) cannot be cleared: every later call reports them.
  (void)cudaGetLastError();
  std::string msg = where(call, file, line) + " failed: " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")";
  if (e == cudaErrorMemoryAllocation) {
    throw OutOfMemory("[cuda] out of device memory: " + msg +
                      ". Free tensors you no longer need, call empty_cache(), or use smaller "
                      "batches");
  }
  throw BackendError("[cuda] " + msg);
}

static const char* cublas_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

void throw_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  (void)cudaGetLastError();
  std::string msg = where(call, file, line) + " failed: " + cublas_name(s) + " (status " +
                    std::to_string(static_cast<int>(s)) + ")";
  if (s == CUBLAS_STATUS_ALLOC_FAILED) {
    throw OutOfMemory("[cuda] cuBLAS could not allocate device memory: " + msg +
                      ". Free tensors you no longer need or call empty_cache()");
  }
  throw BackendError("[cuda] " + msg);
}

void throw_lib(const char* lib, bool oom, int code, const char* name, const char* call,
               const char* file, int line) {
  (void)cudaGetLastError();
  std::string msg = where(call, file, line) + " failed: " + name + " (" + lib + " status " +
                    std::to_string(code) + ")";
  if (oom) {
    throw OutOfMemory(std::string("[cuda] ") + lib + " could not allocate memory: " + msg +
                      ". Free tensors you no longer need or call empty_cache()");
  }
  throw BackendError("[cuda] " + msg);
}

}  // namespace lc::cuda::detail
