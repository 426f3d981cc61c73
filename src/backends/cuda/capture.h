// The CUDA side of the capture seam (backend.h "Graph capture and replay"): CUDA graphs recorded
// by stream capture, kept in one cache keyed by CaptureKey (topology, shapes, dtypes), updated in
// place with cudaGraphExecUpdate when the buffers change. CudaBackend::capture_graph() and
// friends forward here; nothing outside src/backends/cuda/ includes this header.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "backends/backend.h"

namespace lc::cuda {

std::unique_ptr<CapturedGraph> capture_graph(const CaptureKey& key);
GraphCacheStats graph_cache_stats();
void graph_cache_clear();

// The stream-capture brackets underneath (cuda_backend.cpp). capture_begin() (cuda_backend.h)
// starts capturing the backend's stream; capture_end_graph() ends it and returns the recorded,
// not yet instantiated graph plus the allocator blocks freed while capturing, which the caller
// owns until it hands them back with CachingAllocator::release_held(). On failure it throws
// lc::BackendError with the held blocks already released.
cudaGraph_t capture_end_graph(std::vector<void*>& held);

}  // namespace lc::cuda
