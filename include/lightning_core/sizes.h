// Size arithmetic. Every product of sizes that becomes an element count, a byte count or an
// offset goes through these helpers, so a shape like [2**31, 2**31] or a padding near 2**31
// is a ValueError naming the op instead of a count that wrapped around (and a later crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace lc {

// The largest byte count a tensor may have (2^62): far above any memory, far below overflow,
// so sums and products of a few such counts stay inside int64 too.
constexpr std::int64_t kMaxTensorBytes = std::int64_t{1} << 62;

// a * b, or false when the product leaves int64.
inline bool mul_ok(std::int64_t a, std::int64_t b, std::int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool add_ok(std::int64_t a, std::int64_t b, std::int64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

// a * b; throws lc::ValueError "[op] <what> ... is too large" when it exceeds kMaxTensorBytes.
std::int64_t checked_mul(const char* op, std::int64_t a, std::int64_t b, const char* what);
// a + b with the same rule.
std::int64_t checked_add(const char* op, std::int64_t a, std::int64_t b, const char* what);

// The element count of `dims` (each must be >= 0) such that count * elem_size <=
// kMaxTensorBytes; throws lc::ValueError naming `op` and the shape otherwise. A zero dimension
// makes the count 0 (the other dimensions must still be representable).
std::int64_t checked_numel_slow(const char* op, const std::int64_t* dims, int ndim,
                                std::size_t elem_size);
// Inline fast path (every op call wraps its arguments: a few ns here show up in a ~0.4 us
// tiny op); anything unusual (a zero or negative dimension, overflow) takes the slow path.
inline std::int64_t checked_numel(const char* op, const std::int64_t* dims, int ndim,
                                  std::size_t elem_size) {
  std::int64_t n = 1;
  bool ok = true;
  for (int i = 0; i < ndim; ++i) ok &= dims[i] > 0 && mul_ok(n, dims[i], &n);
  if (ok && n <= kMaxTensorBytes / static_cast<std::int64_t>(elem_size == 0 ? 1 : elem_size))
    return n;
  return checked_numel_slow(op, dims, ndim, elem_size);
}

// Host allocations that cannot be backed. Linux overcommits memory: a malloc (or numpy's
// result array) far larger than what is free succeeds, and the process is killed later, when
// the kernel touches the pages. Allocations of kHostCheckBytes or more are checked first
// against what the machine can back now: MemAvailable + SwapFree (/proc/meminfo), and the
// cgroup's memory.max - memory.current where a cgroup v2 limit is set, less one eighth kept in
// reserve (the op's scratch, ASan's shadow memory). More than that throws
// lc::OutOfMemory (a Python MemoryError) naming `op`, the size and what is available; smaller
// requests return at once (no file reads on the hot path).
constexpr std::size_t kHostCheckBytes = std::size_t{256} << 20;
void check_host_alloc_slow(const char* op, std::size_t bytes);
inline void check_host_alloc(const char* op, std::size_t bytes) {
  if (bytes >= kHostCheckBytes) check_host_alloc_slow(op, bytes);
}
// Bytes the host can back right now by the rule above (SIZE_MAX when it cannot tell).
std::size_t host_bytes_available();

}  // namespace lc
