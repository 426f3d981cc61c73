// Checked size arithmetic (sizes.h).
#include "lightning_core/sizes.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

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

namespace {

// A "Key:   123 kB" line of /proc/meminfo, in bytes (-1 when absent).
long long meminfo_bytes(const std::string& text, const char* key) {
  const std::size_t at = text.find(key);
  if (at == std::string::npos) return -1;
  long long kb = -1;
  if (std::sscanf(text.c_str() + at + std::strlen(key), ": %lld kB", &kb) != 1) return -1;
  return kb * 1024;
}

long long read_ll(const char* path) {
  std::ifstream f(path);
  std::string v;
  if (!(f >> v) || v == "max") return -1;
  try {
    return std::stoll(v);
  } catch (...) {
    return -1;
  }
}

}  // namespace

std::size_t host_bytes_available() {
  constexpr std::size_t kUnknown = std::numeric_limits<std::size_t>::max();
  std::size_t avail = kUnknown;
  std::ifstream f("/proc/meminfo");
  if (f) {
    const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const long long a = meminfo_bytes(text, "MemAvailable"), sw = meminfo_bytes(text, "SwapFree");
    if (a >= 0) avail = static_cast<std::size_t>(a) + static_cast<std::size_t>(sw > 0 ? sw : 0);
  }
  const long long max = read_ll("/sys/fs/cgroup/memory.max");
  const long long cur = read_ll("/sys/fs/cgroup/memory.current");
  if (max >= 0 && cur >= 0) {
    const std::size_t room = max > cur ? static_cast<std::size_t>(max - cur) : 0;
    if (room < avail) avail = room;
  }
  return avail;
}

void check_host_alloc_slow(const char* op, std::size_t bytes) {
  const std::size_t avail = host_bytes_available();
  // One eighth stays in reserve: the op's own scratch, the caller's other buffers, and under
  // AddressSanitizer the shadow memory of the new pages (1/8 of their size).
  if (bytes > avail - avail / 8)
    throw_oom(op, "cannot allocate " + std::to_string(bytes) + " bytes of host memory: only " +
                      std::to_string(avail) + " bytes are available (MemAvailable + free swap, "
                      "within the cgroup limit; 1/8 of it is kept in reserve); the allocation would succeed and the process be "
                      "killed when the memory is used. Use smaller shapes or free memory");
}

}  // namespace lc
