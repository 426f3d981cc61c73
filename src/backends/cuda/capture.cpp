// The one capture/replay mechanism of the CUDA backend (capture.h, backend.h).
//
// A CudaGraph is checked out of the cache by one owner (a resident session, an entry of
// conv -> attention's graph cache). Its first replay records the owner's work by stream capture
// on the backend's stream (relaxed mode: the caching allocator may still call cudaMalloc) and
// instantiates it. A later replay with other buffers (a rebound resident input) records the work
// again and applies the new graph to the instantiated one with cudaGraphExecUpdate: same
// topology, new kernel parameters, no new instantiation. An update CUDA refuses (the topology
// did change, say cuBLASLt picked another kernel for the new alignment) falls back to a fresh
// instantiation. When the owner lets go, the instantiated graph goes back to the cache under its
// key; the next owner with the same key records into it and updates it in place.
//
// Memory: blocks op temporaries free while capturing are held for the graph (allocator.h) until
// the graph records again or is destroyed; both wait for the stream first, so no replay in
// flight ever reads a block handed out again.
#include "backends/cuda/capture.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <utility>

#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/context.h"

namespace lc::cuda {
namespace {

// An instantiated graph of one device and the allocator blocks (of that device) it holds.
struct Instance {
  int device = 0;
  cudaGraphExec_t exec = nullptr;
  std::vector<void*> held;
};

// Waits for every stream of the backend on `device` (replays may run on any of them).
void sync_device_streams(int device) {
  for (StreamState* s : streams_of(device)) LC_CUDA_CHECK(cudaStreamSynchronize(s->stream));
}

// Idle graphs wait here for an owner with the same key. Bounded: the oldest idle graph is
// freed past kMaxIdle (a process cycling through many shapes does not pile graphs up).
constexpr std::size_t kMaxIdle = 8;

struct Pool {
  std::mutex mu;
  std::deque<std::pair<CaptureKey, Instance>> idle;  // oldest first
  std::atomic<std::size_t> checked_out{0};
  std::atomic<std::uint64_t> reused{0}, instantiations{0}, updates{0};
};
Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: graphs may be given back during exit
  return *p;
}

// Waits for the stream (replays in flight), then frees the graph and its held blocks.
void destroy(Instance& in) {
  if (!in.exec && in.held.empty()) return;
  DeviceGuard guard(in.device);
  sync_device_streams(in.device);
  if (in.exec) (void)cudaGraphExecDestroy(in.exec);
  CachingAllocator::for_device(in.device).release_held(in.held);
  in.exec = nullptr;
  in.held.clear();
}

class CudaGraph final : public CapturedGraph {
 public:
  CudaGraph(CaptureKey key, Instance in) : CapturedGraph(std::move(key)), in_(std::move(in)) {
    pool().checked_out.fetch_add(1, std::memory_order_relaxed);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  ~CudaGraph() override {
    Pool& p = pool();
    p.checked_out.fetch_sub(1, std::memory_order_relaxed);
    if (!in_.exec) {
      try {
        destroy(in_);
      } catch (...) {
      }
      return;
    }
    // Back to the cache; in-flight replays may go on (the next owner records only after
    // waiting for the stream).
    Instance evicted;
    {
      std::lock_guard<std::mutex> lock(p.mu);
      p.idle.emplace_back(key_, std::move(in_));
      if (p.idle.size() > kMaxIdle) {
        evicted = std::move(p.idle.front().second);
        p.idle.pop_front();
      }
    }
    try {
      destroy(evicted);
    } catch (...) {
    }
  }

  bool is_graph() const override { return true; }

  void replay(WorkRef work, const GraphBinding& binding) override {
    ++stats_.replays;
    // The fast path: the recorded buffers are still the ones in use (a pointer comparison).
    DeviceGuard guard(in_.device);  // the graph's device (a no-op on one GPU)
    if (!recorded_ || binding != bound_) record(work, binding);
    Context& c = ctx();
    EnqueueScope enq;
    LC_CUDA_CHECK(cudaGraphLaunch(in_.exec, c.stream));
  }

 private:
  void record(WorkRef work, const GraphBinding& binding) {
    Context& c = ctx();
    recorded_ = false;
    if (in_.exec || !in_.held.empty()) {
      // The previous recording may still be running: its held blocks go back to the allocator
      // (where this capture may pick them up again) only once the stream is idle.
      (void)c;
      sync_device_streams(in_.device);
      CachingAllocator::instance().release_held(in_.held);
      in_.held.clear();
    }
    capture_begin();  // throws with the stream and the allocator left as they were
    try {
      work();
    } catch (...) {
      std::vector<void*> held;
      try {
        cudaGraph_t g = capture_end_graph(held);
        if (g) (void)cudaGraphDestroy(g);
        CachingAllocator::instance().release_held(held);
      } catch (...) {
        // capture_end_graph released the held blocks itself
      }
      throw;
    }
    std::vector<void*> held;
    cudaGraph_t g = capture_end_graph(held);  // throws with `held` released
    ++stats_.records;
    bool updated = false;
    if (in_.exec) {
      cudaGraphExecUpdateResultInfo info{};
      if (cudaGraphExecUpdate(in_.exec, g, &info) == cudaSuccess) {
        updated = true;
      } else {
        // Refused (another topology, a node type that cannot change): instantiate afresh.
        (void)cudaGetLastError();
        (void)cudaGraphExecDestroy(in_.exec);
        in_.exec = nullptr;
      }
    }
    if (updated) {
      ++stats_.updates;
      pool().updates.fetch_add(1, std::memory_order_relaxed);
    } else {
      cudaGraphExec_t exec = nullptr;
      const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
      if (e != cudaSuccess) {
        (void)cudaGraphDestroy(g);
        CachingAllocator::instance().release_held(held);
        LC_CUDA_CHECK(e);
      }
      in_.exec = exec;
      ++stats_.instantiations;
      pool().instantiations.fetch_add(1, std::memory_order_relaxed);
    }
    (void)cudaGraphDestroy(g);  // the executable graph keeps what it needs
    in_.held = std::move(held);
    bound_ = binding;
    recorded_ = true;
  }

  Instance in_;
  GraphBinding bound_;
  bool recorded_ = false;  // in_.exec runs the owner's work on bound_
};

}  // namespace

std::unique_ptr<CapturedGraph> capture_graph(const CaptureKey& key) {
  (void)ctx();  // throws lc::Unavailable without a device
  Pool& p = pool();
  Instance in;
  in.device = current_device();  // graphs belong to the device current at check-out
  {
    std::lock_guard<std::mutex> lock(p.mu);
    // Newest first: the most recently used graph of this key is the likeliest to be warm.
    for (auto it = p.idle.rbegin(); it != p.idle.rend(); ++it) {
      if (it->first == key && it->second.device == in.device) {
        in = std::move(it->second);
        p.idle.erase(std::next(it).base());
        p.reused.fetch_add(1, std::memory_order_relaxed);
        break;
      }
    }
  }
  return std::make_unique<CudaGraph>(key, std::move(in));
}

GraphCacheStats graph_cache_stats() {
  Pool& p = pool();
  GraphCacheStats s;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    s.idle = p.idle.size();
  }
  s.checked_out = p.checked_out.load(std::memory_order_relaxed);
  s.reused = p.reused.load(std::memory_order_relaxed);
  s.instantiations = p.instantiations.load(std::memory_order_relaxed);
  s.updates = p.updates.load(std::memory_order_relaxed);
  return s;
}

void graph_cache_clear() {
  Pool& p = pool();
  std::deque<std::pair<CaptureKey, Instance>> idle;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    idle.swap(p.idle);
  }
  for (auto& entry : idle) {
    try {
      destroy(entry.second);
    } catch (...) {
    }
  }
}

}  // namespace lc::cuda
