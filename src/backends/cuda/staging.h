// Host <-> device copies through pinned staging buffers.
//
// Small copies (<= kDirectBytes) go straight through cudaMemcpyAsync from pageable memory (the
// driver copies the source out before returning): the cheapest path, no thread hand-off.
// Larger copies are cut into chunks (256 KiB .. kSlotBytes, about bytes/8 each) that cycle
// through kSlots pinned buffers. Each chunk is split into slices; the caller and up to
// copy_threads()-1 helper threads (a small lazily created pool) take slices in order and memcpy
// them between the caller's buffer and the pinned buffer. Whoever copies the last slice of a
// chunk enqueues that chunk's DMA, so the memcpy of later chunks overlaps the DMA of earlier ones
// and no thread waits on a per-chunk barrier.
//   to_device: returns once the last chunk's DMA is queued; the source may be reused at once (it
//              was copied into pinned memory), the device has the data in stream order.
//   to_host:   returns only when the destination holds the data.
// Threads: LC_COPY_THREADS (caller included; default min(8, hardware_concurrency/2); 1 = every
// memcpy on the caller's thread). A copy uses at most one thread per kMinThreadBytes.
#pragma once

#include <cstddef>

namespace lc::cuda {

constexpr std::size_t kDirectBytes = 256 * 1024;       // <= this: direct pageable cudaMemcpyAsync
constexpr std::size_t kSlotBytes = 4 * 1024 * 1024;    // one pinned staging buffer (max chunk)
constexpr int kSlots = 4;                              // pinned buffers (16 MiB pinned in all)
constexpr std::size_t kMinChunkBytes = 256 * 1024;     // smallest chunk of a staged copy
constexpr std::size_t kMinThreadBytes = 256 * 1024;    // at most one copy thread per this many bytes
constexpr int kMaxCopyThreads = 64;

void staged_copy_to_device(void* dst, const void* src, std::size_t bytes);
void staged_copy_to_host(void* dst, const void* src, std::size_t bytes);

// Copy threads in use (caller included), resolved from LC_COPY_THREADS on first use.
int copy_threads();
// Test/benchmark hook: use n threads from now on (clamped to 1..kMaxCopyThreads); n <= 0 goes
// back to the LC_COPY_THREADS / hardware default.
void set_copy_threads(int n);

}  // namespace lc::cuda
