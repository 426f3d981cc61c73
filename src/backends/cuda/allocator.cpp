// Caching device allocator (see allocator.h).
#include "backends/cuda/allocator.h"

#include <cuda_runtime_api.h>

#include <string>

#include "backends/cuda/check.h"
#include "backends/cuda/context.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

CachingAllocator& CachingAllocator::instance() {
  static CachingAllocator* a = new CachingAllocator();  // leaked: outlives static destructors
  return *a;
}

std::size_t CachingAllocator::round_size(std::size_t bytes) {
  constexpr std::size_t kMin = 512;
  if (bytes <= kMin) return kMin;
  // Largest power of two <= bytes, then round up to a quarter of it.
  std::size_t p = 1;
  while ((p << 1) <= bytes) p <<= 1;
  const std::size_t q = p / 4;
  return (bytes + q - 1) / q * q;
}

static std::string mib(std::size_t b) {
  return std::to_string(b / (1024 * 1024)) + " MiB";
}

void* CachingAllocator::alloc(std::size_t bytes) {
  (void)ctx();  // lazy init; makes sure the device is set
  const std::size_t sz = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++st_.alloc_calls;
  auto it = free_.find(sz);
  if (it != free_.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    st_.cached_bytes -= sz;
    live_.emplace(p, sz);
    st_.in_use_bytes += sz;
    if (st_.in_use_bytes > st_.peak_in_use_bytes) st_.peak_in_use_bytes = st_.in_use_bytes;
    ++st_.cache_hits;
    return p;
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, sz);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky, but clear it so nothing later trips over it
    release_cached_locked();
    e = cudaMalloc(&p, sz);
  }
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    std::size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) != cudaSuccess) (void)cudaGetLastError();
    throw OutOfMemory("[cuda] out of device memory: could not allocate " + std::to_string(bytes) +
                      " bytes (" + mib(sz) + " rounded) on " + ctx().info.name + "; the device has " +
                      mib(fr) + " free of " + mib(tot) + " total, this process holds " +
                      mib(st_.in_use_bytes) + " in live tensors. Free tensors you no longer need, "
                      "use smaller batches/sequences, or run on device=\"cpu\"");
  }
  LC_CUDA_CHECK(e);
  ++st_.cuda_mallocs;
  st_.reserved_bytes += sz;
  live_.emplace(p, sz);
  st_.in_use_bytes += sz;
  if (st_.in_use_bytes > st_.peak_in_use_bytes) st_.peak_in_use_bytes = st_.in_use_bytes;
  return p;
}

void CachingAllocator::free(void* p) noexcept {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours (or double free): ignore rather than corrupt
  const std::size_t sz = it->second;
  live_.erase(it);
  st_.in_use_bytes -= sz;
  if (holding_) {
    held_now_.push_back(p);
    held_sizes_.emplace(p, sz);
    return;
  }
  free_[sz].push_back(p);
  st_.cached_bytes += sz;
}

void CachingAllocator::release_cached_locked() {
  // cudaFree synchronizes the device, so no queued work still uses these blocks.
  for (auto& [sz, list] : free_) {
    for (void* p : list) {
      if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
      ++st_.cuda_frees;
      st_.reserved_bytes -= sz;
      st_.cached_bytes -= sz;
    }
    list.clear();
  }
  free_.clear();
}

void CachingAllocator::empty_cache() {
  Context& c = ctx();
  LC_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  std::lock_guard<std::mutex> lock(mu_);
  release_cached_locked();
}

AllocatorStats CachingAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

void CachingAllocator::begin_hold() {
  std::lock_guard<std::mutex> lock(mu_);
  holding_ = true;
  held_now_.clear();
}

std::vector<void*> CachingAllocator::end_hold() {
  std::lock_guard<std::mutex> lock(mu_);
  holding_ = false;
  std::vector<void*> out;
  out.swap(held_now_);
  return out;
}

void CachingAllocator::release_held(const std::vector<void*>& blocks) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  for (void* p : blocks) {
    auto it = held_sizes_.find(p);
    if (it == held_sizes_.end()) continue;
    free_[it->second].push_back(p);
    st_.cached_bytes += it->second;
    held_sizes_.erase(it);
  }
}

AllocatorStats allocator_stats() { return CachingAllocator::instance().stats(); }
void empty_cache() { CachingAllocator::instance().empty_cache(); }

}  // namespace lc::cuda
