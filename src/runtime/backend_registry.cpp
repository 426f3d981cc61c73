// The one table of compute backends. Each backend folder defines its *_backend_instance();
// a backend that is not compiled in links a stub whose available() is false.
#include "backends/backend.h"

namespace lc {

Backend& cpu_backend_instance();
Backend& cuda_backend_instance();   // src/backends/cuda/ or src/backends/no_cuda/
Backend& metal_backend_instance();  // src/backends/metal/ (a stub on Linux)

Backend& get_backend(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::cuda: return cuda_backend_instance();
    case DeviceKind::metal: return metal_backend_instance();
    case DeviceKind::cpu: break;
  }
  return cpu_backend_instance();
}

}  // namespace lc
