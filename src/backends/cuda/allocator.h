// Caching device allocator, one per device, stream-aware.
//
// Sizes are rounded up to size classes (4 classes per power of two, at most 25% waste, 512-byte
// minimum); freed blocks go to a free list and alloc() serves from it without touching the
// driver. cudaMalloc runs only on a miss; cudaFree only in empty_cache() and on the OOM retry
// path. Thread-safe (one mutex per device).
//
// Streams: a block belongs to the stream that was current when it was allocated (its
// allocation stream). A freed block is handed out again only to an allocation on that same
// stream, so the new owner's work is queued after the old owner's: stream order makes the
// reuse safe without any synchronisation. A block also used on other streams (a tensor read by
// work on a side stream) must be declared with record_stream(); when such a block is freed, an
// event is recorded on each of those streams and the block waits in a pending list until the
// events complete (torch's record_stream rule).
#pragma once

#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "backends/cuda/context.h"
#include "backends/cuda/cuda_backend.h"

namespace lc::cuda {

class CachingAllocator {
 public:
  // The allocator of device `device` (created on first use), and that of the current device.
  static CachingAllocator& for_device(int device);
  static CachingAllocator& instance() { return for_device(current_device()); }
  // Frees `p` wherever it was allocated (the current device is tried first).
  static void free_any(void* p) noexcept;
  // Declares that the block at `p` (any device) is used by work on `s` too.
  static void record_stream_any(void* p, StreamState* s);
  // Drops every reference to `s` (stream_destroy calls this after waiting for its work): live
  // blocks stop waiting for it, and its cached blocks become anybody's (its work is done).
  static void forget_stream(StreamState* s) noexcept;

  // On the calling thread's current stream; the device must be current (Backend ops make it
  // so). Throws lc::OutOfMemory (after releasing the cache and retrying once) when it is full.
  void* alloc(std::size_t bytes);
  // Returns false when `p` is not a live block of this allocator (ignored: never corrupt).
  bool free(void* p) noexcept;
  void empty_cache();
  AllocatorStats stats();

  // While a graph capture is open, frees are held back; end_hold() hands the held blocks to
  // the graph, which gives them back with release_held() when it is destroyed.
  void begin_hold();
  std::vector<void*> end_hold();
  void release_held(const std::vector<void*>& blocks) noexcept;

  static std::size_t round_size(std::size_t bytes);

 private:
  explicit CachingAllocator(int device) : device_(device) {}
  struct Block {
    std::size_t size = 0;
    StreamState* stream = nullptr;      // allocation stream
    std::vector<StreamState*> uses;     // other streams (record_stream)
  };
  struct Free {
    void* p;
    StreamState* stream;
  };
  struct Pending {
    void* p;
    Block block;
    std::vector<cudaEvent_t> events;  // one per stream in block.uses
  };
  void release_cached_locked();     // cudaFree every cached block; caller holds mu_
  void process_pending_locked(bool wait);  // pending blocks whose events completed -> free lists
  void to_free_list_locked(void* p, const Block& b);
  bool record_stream(void* p, StreamState* s);

  int device_;
  std::mutex mu_;
  std::unordered_map<void*, Block> live_;                      // in use
  std::unordered_map<std::size_t, std::vector<Free>> free_;    // class size -> free blocks
  std::vector<Pending> pending_;                               // freed, still used elsewhere
  std::unordered_map<void*, Block> held_;                      // blocks held by graphs
  bool holding_ = false;
  std::vector<void*> held_now_;
  AllocatorStats st_;
};

}  // namespace lc::cuda
