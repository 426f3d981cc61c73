// Device fingerprint of the CUDA device for auto-tune cache keys (Backend::fingerprint, behind
// autotune.h's cuda_fingerprint / device_fingerprint): device name,
// compute capability, SM count, driver and runtime versions, cuBLASLt and cuDNN versions.
// Any of these changing invalidates every cached choice measured on the old combination.
// Asking for the library versions loads cuBLASLt and cuDNN (vendor_libs.h); that happens only
// when a cache key is computed with a usable GPU, never at import. A library that cannot be
// loaded reads "unavailable".
#include <cuda_runtime_api.h>

#include <string>

#include "backends/backend.h"
#include "backends/cuda/vendor_libs.h"
#include "backends/cuda/cuda_backend.h"

namespace lc::cuda {

std::string fingerprint() {
  Backend& be = get_backend(DeviceKind::cuda);
  if (!be.available()) return "cuda:unavailable (" + be.unavailable_reason() + ")";
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return "cuda:unavailable (cudaGetDevice failed)";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess)
    return "cuda:unavailable (cudaGetDeviceProperties failed)";
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  using std::to_string;
  std::string s = std::string("cuda:") + prop.name + ";cc=" + to_string(prop.major) + "." +
                  to_string(prop.minor) + ";sms=" + to_string(prop.multiProcessorCount) +
                  ";driver=" + to_string(driver) + ";runtime=" + to_string(runtime);
  const vendor::CublasLtApi* lt = vendor::try_cublaslt();
  s += ";cublasLt=" + (lt ? to_string(lt->cublasLtGetVersion()) : std::string("unavailable"));
#ifdef LC_HAVE_CUDNN
  const vendor::CudnnApi* dnn = vendor::try_cudnn();
  s += ";cudnn=" + (dnn ? to_string(dnn->cudnnGetVersion()) : std::string("unavailable"));
#endif
  return s;
}

}  // namespace lc::cuda
