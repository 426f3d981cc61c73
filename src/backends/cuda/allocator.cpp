// Caching device allocator (see allocator.h).
#include "backends/cuda/allocator.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <string>

#include "backends/cuda/check.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {
std::mutex g_alloc_mu;
std::atomic<CachingAllocator*> g_alloc[kMaxDevices];
}  // namespace

CachingAllocator& CachingAllocator::for_device(int device) {
  CachingAllocator* a = g_alloc[device].load(std::memory_order_acquire);
  if (a) return *a;
  std::lock_guard<std::mutex> lock(g_alloc_mu);
  a = g_alloc[device].load(std::memory_order_relaxed);
  if (!a) {
    a = new CachingAllocator(device);  // leaked: outlives static destructors
    g_alloc[device].store(a, std::memory_order_release);
  }
  return *a;
}

void CachingAllocator::free_any(void* p) noexcept {
  if (!p) return;
  const int cur = current_device();
  if (CachingAllocator* a = g_alloc[cur].load(std::memory_order_acquire); a && a->free(p)) return;
  for (int d = 0; d < kMaxDevices; ++d) {
    if (d == cur) continue;
    if (CachingAllocator* a = g_alloc[d].load(std::memory_order_acquire); a && a->free(p)) return;
  }
}

void CachingAllocator::record_stream_any(void* p, StreamState* s) {
  for (int d = 0; d < kMaxDevices; ++d)
    if (CachingAllocator* a = g_alloc[d].load(std::memory_order_acquire); a && a->record_stream(p, s))
      return;
  throw_value("Tensor.record_stream", "the tensor's memory is not a block of lightning_core's "
                                      "CUDA allocator (a borrowed buffer: its owner manages it)");
}

void CachingAllocator::forget_stream(StreamState* s) noexcept {
  CachingAllocator* a = g_alloc[s->device].load(std::memory_order_acquire);
  if (!a) return;
  std::lock_guard<std::mutex> lock(a->mu_);
  StreamState* def = nullptr;
  try {
    def = default_stream(s->device);
  } catch (...) {
  }
  for (auto& [p, b] : a->live_) {
    auto& u = b.uses;
    for (std::size_t i = u.size(); i-- > 0;)
      if (u[i] == s) u.erase(u.begin() + static_cast<std::ptrdiff_t>(i));
    if (b.stream == s) b.stream = def;  // freed later: reusable on the default stream
  }
  for (auto& [sz, list] : a->free_)
    for (Free& f : list)
      if (f.stream == s) f.stream = def;
  for (auto& [p, b] : a->held_)
    if (b.stream == s) b.stream = def;
  for (Pending& pd : a->pending_)
    if (pd.block.stream == s) pd.block.stream = def;
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
  Context& c = ctx();  // lazy init; the current device is this allocator's (callers see to it)
  StreamState* s = c.ss;
  const std::size_t sz = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++st_.alloc_calls;
  if (!pending_.empty()) process_pending_locked(false);
  auto it = free_.find(sz);
  if (it != free_.end()) {
    auto& list = it->second;
    // Newest first; with one stream the last entry always matches.
    for (std::size_t i = list.size(); i-- > 0;) {
      if (list[i].stream != s) continue;
      void* p = list[i].p;
      list[i] = list.back();
      list.pop_back();
      st_.cached_bytes -= sz;
      live_.emplace(p, Block{sz, s, {}});
      st_.in_use_bytes += sz;
      if (st_.in_use_bytes > st_.peak_in_use_bytes) st_.peak_in_use_bytes = st_.in_use_bytes;
      ++st_.cache_hits;
      return p;
    }
  }
  DeviceGuard guard(device_);
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
                      " bytes (" + mib(sz) + " rounded) on cuda:" + std::to_string(device_) +
                      " (" + c.info.name + "); the device has " + mib(fr) + " free of " +
                      mib(tot) + " total, this process holds " + mib(st_.in_use_bytes) +
                      " in live tensors. Free tensors you no longer need, use smaller "
                      "batches/sequences, or run on device=\"cpu\"");
  }
  LC_CUDA_CHECK(e);
  ++st_.cuda_mallocs;
  st_.reserved_bytes += sz;
  live_.emplace(p, Block{sz, s, {}});
  st_.in_use_bytes += sz;
  if (st_.in_use_bytes > st_.peak_in_use_bytes) st_.peak_in_use_bytes = st_.in_use_bytes;
  return p;
}

void CachingAllocator::to_free_list_locked(void* p, const Block& b) {
  free_[b.size].push_back(Free{p, b.stream});
  st_.cached_bytes += b.size;
}

bool CachingAllocator::free(void* p) noexcept {
  if (!p) return false;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return false;  // not ours (or double free): ignore rather than corrupt
  Block b = std::move(it->second);
  live_.erase(it);
  st_.in_use_bytes -= b.size;
  if (holding_) {
    held_now_.push_back(p);
    held_.emplace(p, std::move(b));
    return true;
  }
  if (!b.uses.empty()) {
    // Used on other streams: reusable once the work queued there so far has completed.
    Pending pd{p, std::move(b), {}};
    bool ok = true;
    try {
      DeviceGuard guard(device_);
      for (StreamState* s : pd.block.uses) {
        cudaEvent_t ev = nullptr;
        if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess ||
            cudaEventRecord(ev, s->stream) != cudaSuccess) {
          if (ev) (void)cudaEventDestroy(ev);
          ok = false;
          break;
        }
        pd.events.push_back(ev);
      }
    } catch (...) {
      ok = false;
    }
    if (!ok) {
      // Could not record: wait for the device instead, then the block is free to reuse.
      (void)cudaGetLastError();
      for (cudaEvent_t ev : pd.events) (void)cudaEventDestroy(ev);
      if (cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
      pd.block.uses.clear();
      to_free_list_locked(p, pd.block);
      return true;
    }
    st_.cached_bytes += pd.block.size;  // counted as cached while pending
    pending_.push_back(std::move(pd));
    return true;
  }
  to_free_list_locked(p, b);
  return true;
}

void CachingAllocator::process_pending_locked(bool wait) {
  for (std::size_t i = 0; i < pending_.size();) {
    Pending& pd = pending_[i];
    bool done = true;
    for (cudaEvent_t ev : pd.events) {
      const cudaError_t e = wait ? cudaEventSynchronize(ev) : cudaEventQuery(ev);
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (e == cudaErrorNotReady) {
          done = false;
          break;
        }
      }
    }
    if (!done) {
      ++i;
      continue;
    }
    for (cudaEvent_t ev : pd.events) (void)cudaEventDestroy(ev);
    st_.cached_bytes -= pd.block.size;  // to_free_list_locked counts it again
    pd.block.uses.clear();
    to_free_list_locked(pd.p, pd.block);
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }
}

bool CachingAllocator::record_stream(void* p, StreamState* s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return false;
  Block& b = it->second;
  if (s->device != device_)
    throw_value("Tensor.record_stream", "the tensor lives on cuda:" + std::to_string(device_) +
                                            " but the stream belongs to cuda:" +
                                            std::to_string(s->device));
  if (s == b.stream) return true;
  for (StreamState* u : b.uses)
    if (u == s) return true;
  b.uses.push_back(s);
  return true;
}

void CachingAllocator::release_cached_locked() {
  // cudaFree synchronizes the device, so no queued work still uses these blocks.
  DeviceGuard guard(device_);
  process_pending_locked(true);
  for (auto& [sz, list] : free_) {
    for (const Free& f : list) {
      if (cudaFree(f.p) != cudaSuccess) (void)cudaGetLastError();
      ++st_.cuda_frees;
      st_.reserved_bytes -= sz;
      st_.cached_bytes -= sz;
    }
    list.clear();
  }
  free_.clear();
}

void CachingAllocator::empty_cache() {
  {
    DeviceGuard guard(device_);
    for (StreamState* s : streams_of(device_)) LC_CUDA_CHECK(cudaStreamSynchronize(s->stream));
  }
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
    auto it = held_.find(p);
    if (it == held_.end()) continue;
    it->second.uses.clear();
    to_free_list_locked(p, it->second);
    held_.erase(it);
  }
}

AllocatorStats allocator_stats() { return CachingAllocator::instance().stats(); }
void empty_cache() { CachingAllocator::instance().empty_cache(); }

}  // namespace lc::cuda
