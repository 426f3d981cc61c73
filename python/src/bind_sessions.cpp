// Resident sessions (matmul2d_resident_session, attention2d_resident_session, ...).
#include "bindings.h"

namespace lcpy {

void register_sessions(nb::module_&) {}

}  // namespace lcpy
