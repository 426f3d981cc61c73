// Device fingerprint of the CUDA side for builds without the CUDA backend (autotune.h).
#include "lightning_core/autotune.h"

namespace lc {

std::string cuda_fingerprint() { return "cuda:unavailable (not compiled)"; }

}  // namespace lc
