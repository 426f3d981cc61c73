// "[op] message" exception helpers (see include/lightning_core/errors.h).
#include "lightning_core/errors.h"

namespace lc {

static std::string tagged(const char* op, const std::string& msg) {
  return std::string("[") + (op ? op : "lightning_core") + "] " + msg;
}

void throw_type(const char* op, const std::string& msg) { throw TypeError(tagged(op, msg)); }
void throw_value(const char* op, const std::string& msg) { throw ValueError(tagged(op, msg)); }
void throw_oom(const char* op, const std::string& msg) { throw OutOfMemory(tagged(op, msg)); }
void throw_backend(const char* op, const std::string& msg) { throw BackendError(tagged(op, msg)); }

}  // namespace lc
