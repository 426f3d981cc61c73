// Host <-> device copies through pinned staging buffers.
//
// Small copies (<= kDirectBytes) go straight through cudaMemcpyAsync from pageable memory (the
// driver copies the source out before returning). Large copies are cut into chunks and
// double-buffered through two pinned buffers, so the host memcpy of chunk i+1 overlaps the DMA
// of chunk i.
//   to_device: returns once the last chunk is queued; the source may be reused at once (it was
//              copied into pinned memory), the device has the data in stream order.
//   to_host:   returns only when the destination holds the data.
#pragma once

#include <cstddef>

namespace lc::cuda {

constexpr std::size_t kDirectBytes = 256 * 1024;
constexpr std::size_t kChunkBytes = 8 * 1024 * 1024;

void staged_copy_to_device(void* dst, const void* src, std::size_t bytes);
void staged_copy_to_host(void* dst, const void* src, std::size_t bytes);

}  // namespace lc::cuda
