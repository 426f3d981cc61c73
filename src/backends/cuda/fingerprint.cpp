// Device fingerprint of the CUDA device for auto-tune cache keys (autotune.h): device name,
// compute capability, SM count, driver and runtime versions, cuBLASLt and cuDNN versions.
// Any of these changing invalidates every cached choice measured on the old combination.
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#ifdef LC_HAVE_CUDNN
#include <cudnn.h>
#endif

#include <string>

#include "backends/backend.h"
#include "lightning_core/autotune.h"

namespace lc {

std::string cuda_fingerprint() {
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
                  ";driver=" + to_string(driver) + ";runtime=" + to_string(runtime) +
                  ";cublasLt=" + to_string(cublasLtGetVersion());
#ifdef LC_HAVE_CUDNN
  s += ";cudnn=" + to_string(cudnnGetVersion());
#endif
  return s;
}

}  // namespace lc
