// Checked size arithmetic (sizes.h).
#include "lightning_core/sizes.h"

#include "lightning_core/errors.h"

namespace lc {

namespace {

std::string dims_str(const std::int64_t* dims, int ndim) {
  std::string s = "[";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

[[noreturn]] void too_large(const char* op, const std::string& what) {
  throw_value(op, what + " is too large (more than 2^62 bytes); use smaller sizes");
}

}  // namespace

std::int64_t checked_mul(const char* op, std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  if (!mul_ok(a, b, &r) || r > kMaxTensorBytes || r < -kMaxTensorBytes)
    too_large(op, std::string(what) + " (" + std::to_string(a) + " x " + std::to_string(b) + ")");
  return r;
}

std::int64_t checked_add(const char* op, std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  if (!add_ok(a, b, &r) || r > kMaxTensorBytes || r < -kMaxTensorBytes)
    too_large(op, std::string(what) + " (" + std::to_string(a) + " + " + std::to_string(b) + ")");
  return r;
}

std::int64_t checked_numel_slow(const char* op, const std::int64_t* dims, int ndim,
                                std::size_t elem_size) {
  const std::int64_t esz = static_cast<std::int64_t>(elem_size == 0 ? 1 : elem_size);
  const std::int64_t limit = kMaxTensorBytes / esz;
  std::int64_t n = 1;
  bool zero = false;
  for (int i = 0; i < ndim; ++i) {
    if (dims[i] < 0)
      throw_value(op, "shape " + dims_str(dims, ndim) + " has a negative dimension");
    if (dims[i] > limit) too_large(op, "shape " + dims_str(dims, ndim));
    if (dims[i] == 0) zero = true;
  }
  if (zero) return 0;
  for (int i = 0; i < ndim; ++i)
    if (!mul_ok(n, dims[i], &n) || n > limit) too_large(op, "shape " + dims_str(dims, ndim));
  return n;
}

}  // namespace lc
