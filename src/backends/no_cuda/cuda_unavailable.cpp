// Linked when the build has no CUDA compiler: "cuda" is a known device that says why it is absent.
#include "backends/unavailable_backend.h"

namespace lc {

Backend& cuda_backend_instance() {
  static UnavailableBackend b(DeviceKind::cuda, "cuda",
                              "this build of lightning_core has no CUDA backend (nvcc was not found "
                              "at build time); rebuild with the CUDA toolkit on PATH, or use "
                              "device=\"cpu\" / \"auto\"",
                              "cuda:unavailable (not compiled)");
  return b;
}

}  // namespace lc
