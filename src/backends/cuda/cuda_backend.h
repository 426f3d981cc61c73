// The CUDA backend's internal interface between its own files (and its own tests,
// tests/cpp/test_cuda_*.cpp): the rest of lightning_core goes through lc::Backend (backend.h),
// whose capture seam (capture.h) is built on the stream-capture brackets below. Every function here initialises CUDA
// lazily on first use and throws lc::Unavailable when there is no usable device, so callers
// should check lc::get_backend(DeviceKind::cuda).available() first.
//
// This header includes no CUDA header: cudaStream_t is an opaque pointer type here too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct CUstream_st;

namespace lc {
class Backend;
Backend& cuda_backend_instance();
}  // namespace lc

namespace lc::cuda {

// The one non-blocking stream every op of the backend is queued on.
CUstream_st* stream();

// cudaMemGetInfo of the current device.
void mem_info(std::size_t* free_bytes, std::size_t* total_bytes);

// ---- caching allocator -------------------------------------------------------------------
struct AllocatorStats {
  std::size_t in_use_bytes = 0;     // handed out to callers (rounded sizes)
  std::size_t cached_bytes = 0;     // free blocks kept for reuse
  std::size_t reserved_bytes = 0;   // in_use + cached + held by captured graphs = from cudaMalloc
  std::size_t peak_in_use_bytes = 0;
  std::uint64_t alloc_calls = 0;    // alloc() calls
  std::uint64_t cache_hits = 0;     // alloc() calls served without cudaMalloc
  std::uint64_t cuda_mallocs = 0;   // cudaMalloc calls (the slow path)
  std::uint64_t cuda_frees = 0;     // cudaFree calls (empty_cache / OOM retry)
};
AllocatorStats allocator_stats();
// Returns every cached (free) block to the driver. Synchronizes the stream first.
void empty_cache();

// The CUDA device fingerprint for auto-tune cache keys (fingerprint.cpp; Backend::fingerprint).
std::string fingerprint();

// ---- CUDA graphs (low level) ---------------------------------------------------------------
// The brackets the capture seam (capture.cpp: CapturedGraph, the graph cache) is built on; the
// tests use them directly. Nothing outside src/backends/cuda/ calls them.
// capture_begin() starts capturing the backend's stream (relaxed mode, so the allocator may
// still grow); every op queued until capture_end() is recorded, not run. capture_end()
// instantiates the graph and returns an opaque handle; graph_launch() replays it on the stream;
// graph_destroy() frees it. Device memory freed while capturing (op temporaries) stays
// reserved for the graph until graph_destroy(), so replays never touch reused memory.
// Not allowed while capturing: synchronize(), copy_to_host(), mark()/elapsed_ns(), and the
// first call of an op shape that needs host-side set-up which itself synchronizes (cuDNN's
// algorithm search): run each op once before capturing.
using GraphHandle = void*;
void capture_begin();
GraphHandle capture_end();
void graph_launch(GraphHandle g);
void graph_destroy(GraphHandle g) noexcept;

}  // namespace lc::cuda
