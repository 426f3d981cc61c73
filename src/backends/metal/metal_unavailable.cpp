// Metal is a real device string of the original (macOS) design. This port targets Linux +
// NVIDIA, so the Metal slot is a stub; a Metal backend would replace this file with an
// implementation of lc::Backend (src/backends/backend.h) built only on Apple platforms.
#include "backends/unavailable_backend.h"

namespace lc {

Backend& metal_backend_instance() {
  static UnavailableBackend b(DeviceKind::metal, "metal",
                              "Metal is only available on macOS with Apple GPUs, and this build "
                              "has no Metal backend; use device=\"cuda\" (NVIDIA), \"cpu\" or "
                              "\"auto\"");
  return b;
}

}  // namespace lc
