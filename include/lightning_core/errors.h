// The exception types of the C++ API. The Python bindings map them one to one:
//   TypeError    -> TypeError        (wrong dtype)
//   ValueError   -> ValueError       (wrong shape / ndim / device / policy combination)
//   OutOfMemory  -> MemoryError      (host or device allocation failed)
//   BackendError -> lightning_core.BackendError (a RuntimeError subclass; CUDA/cuBLAS/cuDNN)
//   Unavailable  -> ValueError       (a device that is not compiled in or not present)
// Every message starts with "[op]" and says how to fix the call.
#pragma once

#include <stdexcept>
#include <string>

namespace lc {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct TypeError : Error {
  using Error::Error;
};
struct ValueError : Error {
  using Error::Error;
};
struct OutOfMemory : Error {
  using Error::Error;
};
struct BackendError : Error {
  using Error::Error;
};
struct Unavailable : ValueError {
  using ValueError::ValueError;
};

// "[op] message" helpers, so every throw site reads the same.
[[noreturn]] void throw_type(const char* op, const std::string& msg);
[[noreturn]] void throw_value(const char* op, const std::string& msg);
[[noreturn]] void throw_oom(const char* op, const std::string& msg);
[[noreturn]] void throw_backend(const char* op, const std::string& msg);

}  // namespace lc
