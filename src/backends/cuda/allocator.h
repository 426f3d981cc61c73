// Caching device allocator: sizes are rounded up to size classes (4 classes per power of two,
// at most 25% waste, 512-byte minimum), freed blocks go to a per-class free list, and alloc()
// serves from that list without touching the driver. cudaMalloc runs only on a miss; cudaFree
// only in empty_cache() and on the OOM retry path. Thread-safe (one mutex).
//
// Stream safety: every op of the backend runs on ONE stream, so a block freed by the host and
// handed out again is only touched by work queued after the work that used it.
#pragma once

#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/cuda/cuda_backend.h"

namespace lc::cuda {

class CachingAllocator {
 public:
  static CachingAllocator& instance();

  // Throws lc::OutOfMemory (after releasing the cache and retrying once) when the device is full.
  void* alloc(std::size_t bytes);
  void free(void* p) noexcept;
  void empty_cache();
  AllocatorStats stats();

  // While a graph capture is open, frees are held back; end_hold() hands the held blocks to
  // the graph, which gives them back with release_held() when it is destroyed.
  void begin_hold();
  std::vector<void*> end_hold();
  void release_held(const std::vector<void*>& blocks) noexcept;

  static std::size_t round_size(std::size_t bytes);

 private:
  void release_cached_locked();  // cudaFree every cached block; caller holds mu_

  std::mutex mu_;
  std::unordered_map<void*, std::size_t> live_;                 // ptr -> class size (in use)
  std::unordered_map<std::size_t, std::vector<void*>> free_;    // class size -> free blocks
  std::unordered_map<void*, std::size_t> held_sizes_;           // blocks held by graphs
  bool holding_ = false;
  std::vector<void*> held_now_;
  AllocatorStats st_;
};

}  // namespace lc::cuda
