// The CUDA backend's one kernel-launch function. Every own kernel (elementwise, norms, softmax,
// attention, direct convolution) is launched through cuda::launch(); cuBLASLt matmuls go through
// its sibling run_captured() (below); cuDNN launches its own.
//
// What it adds over `kernel<<<grid, block, smem, stream>>>(args...)`: a launch with exactly the
// same kernel, launch configuration and argument bytes as earlier ones (a resident op called in
// a loop: same device pointers, same sizes) replays a cached one-node CUDA graph instead of
// launching the kernel. On the H100 VM that saves ~2.7 us of host time per call (graph launch +
// sync 7.5 us vs kernel launch + sync 10.2 us, benchmarks/cpp/sync_latency.cu), a quarter of a
// tiny op's round trip. A graph replays the same pointers and scalars the kernel would get, so
// results are identical; the graph is built on the third identical launch (LC_CUDA_GRAPH_LAUNCH
// sets that threshold; 0 turns replay off), never while the stream is being captured, and a
// failure to build one falls back to the plain launch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

namespace lc::cuda {

namespace detail {
// Launches (or replays) `func`; `params[i]` points at the i-th kernel argument, `key` holds the
// argument bytes back to back (key_len == 0: too large to cache, plain launch).
void launch_raw(const void* func, dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
                void** params, const unsigned char* key, std::size_t key_len, const char* name);

constexpr std::size_t kMaxKeyArgBytes = 192;

template <typename Tuple, std::size_t... I>
void launch_tuple(const void* func, dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
                  const char* name, Tuple& t, std::index_sequence<I...>) {
  void* params[sizeof...(I) + 1] = {static_cast<void*>(&std::get<I>(t))..., nullptr};
  constexpr std::size_t total = (std::size_t{0} + ... + sizeof(std::tuple_element_t<I, Tuple>));
  if constexpr (total <= kMaxKeyArgBytes) {
    unsigned char key[total + 1];
    std::size_t off = 0;
    ((std::memcpy(key + off, &std::get<I>(t), sizeof(std::tuple_element_t<I, Tuple>)),
      off += sizeof(std::tuple_element_t<I, Tuple>)),
     ...);
    launch_raw(func, grid, block, smem, s, params, key, total, name);
  } else {
    launch_raw(func, grid, block, smem, s, params, nullptr, 0, name);
  }
}
}  // namespace detail

// kernel<<<grid, block, smem, s>>>(args...), checked (lc::BackendError naming `name` on failure),
// replayed from a cached graph when the same launch repeats. Arguments are converted to the
// kernel's parameter types first, so the key sees exactly the bytes the kernel receives.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
            const char* name, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "cuda::launch: argument count mismatch");
  static_assert((std::is_trivially_copyable_v<std::decay_t<Params>> && ...),
                "cuda::launch: kernel parameters must be trivially copyable");
  std::tuple<std::decay_t<Params>...> t(static_cast<std::decay_t<Params>>(std::forward<Args>(args))...);
  detail::launch_tuple(reinterpret_cast<const void*>(kernel), grid, block, smem, s, name, t,
                       std::index_sequence_for<Params...>{});
}

// Work a vendor library enqueues (a cuBLASLt matmul) cannot go through launch(), but it can be
// captured: run_captured(tag, key, s, name, enqueue) calls enqueue(s) plainly until the same
// (tag, key bytes, stream) has been seen LC_CUDA_GRAPH_LAUNCH times (3), then captures one call
// into a CUDA graph on a private stream (so another thread's work on `s` can never leak into
// it) and from then on replays that graph on `s`. The key must hold everything the enqueued
// work depends on (pointers, sizes, the algorithm); the work must read only device memory and
// values fixed at capture. A capture the library refuses (enqueue throws or records an illegal
// call) falls back to plain calls for that key; under a user's stream capture it always calls
// enqueue(s) plainly.
namespace detail {
using EnqueueFn = void (*)(void* ctx, cudaStream_t s);
void run_captured_raw(const void* tag, const void* key, std::size_t key_len, cudaStream_t s,
                      const char* name, EnqueueFn fn, void* ctx);
}  // namespace detail

template <typename F>
void run_captured(const void* tag, const void* key, std::size_t key_len, cudaStream_t s,
                  const char* name, F&& enqueue) {
  using Fn = std::remove_reference_t<F>;
  detail::run_captured_raw(
      tag, key, key_len, s, name,
      [](void* ctx, cudaStream_t st) { (*static_cast<Fn*>(ctx))(st); },
      const_cast<void*>(static_cast<const void*>(&enqueue)));
}

// Stream capture brackets (cuda_backend.cpp's capture_begin/capture_end): no graph replay while
// the stream is being captured, the launch must land in the captured graph as a kernel node.
void launch_set_capturing(bool capturing) noexcept;
// Drops every cached graph (tests; LC_CUDA_GRAPH_LAUNCH changes). Replays in flight finish.
void launch_cache_clear() noexcept;
struct LaunchCacheStats {
  std::size_t entries = 0;       // distinct launches seen
  std::size_t graphs = 0;        // of which replay from a graph
  std::size_t replays = 0;       // graph launches so far (run_captured's included)
  std::size_t plain = 0;         // plain kernel launches / enqueue calls so far
  std::size_t captured = 0;      // run_captured graphs built by stream capture
};
LaunchCacheStats launch_cache_stats() noexcept;

}  // namespace lc::cuda
