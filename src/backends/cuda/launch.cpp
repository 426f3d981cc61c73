// cuda::launch's cache of one-node graphs, and run_captured's captured graphs of vendor-library
// calls, in one bounded map (see launch.h for why and when).
#include "backends/cuda/launch.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <vector_types.h>

#include "backends/cuda/check.h"

namespace lc::cuda {
namespace {

// Key: function, launch configuration, stream and the argument bytes.
struct Key {
  unsigned char bytes[detail::kMaxKeyArgBytes + 64];
  std::size_t len = 0;
  std::size_t hash = 0;
  bool operator==(const Key& o) const noexcept {
    return len == o.len && hash == o.hash && std::memcmp(bytes, o.bytes, len) == 0;
  }
};
struct KeyHash {
  std::size_t operator()(const Key& k) const noexcept { return k.hash; }
};

struct Entry {
  int seen = 0;
  bool no_graph = false;  // building one failed: always launch plainly
  bool building = false;  // run_captured: a thread is capturing this key's graph right now
  bool captured = false;  // built by stream capture (run_captured), not as one kernel node
  cudaGraphExec_t exec = nullptr;
};

// Bounded: past this many distinct launches the cache starts over (graphs of launches that never
// repeat would otherwise pile up). A workload cycling through more distinct resident launches
// than this simply launches plainly.
constexpr std::size_t kMaxEntries = 1024;

struct Cache {
  std::mutex mu;
  std::unordered_map<Key, Entry, KeyHash> map;
  std::atomic<std::size_t> replays{0}, plain{0};
  // run_captured's private capture stream per device (created on first use: a stream belongs
  // to one device) and the lock that serializes captures on them.
  std::mutex capture_mu;
  cudaStream_t capture_stream[64] = {};
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: graphs outlive static destruction order
  return *c;
}

std::atomic<bool> g_capturing{false};

int threshold() {
  static const int t = [] {
    const char* v = std::getenv("LC_CUDA_GRAPH_LAUNCH");
    if (!v || !*v) return 3;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    if (end == v || n < 0) return 3;
    return static_cast<int>(n > 1000000 ? 1000000 : n);
  }();
  return t;
}

std::size_t fnv1a(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return static_cast<std::size_t>(h);
}

template <typename T>
void put(Key& k, const T& v) {
  std::memcpy(k.bytes + k.len, &v, sizeof v);
  k.len += sizeof v;
}

void destroy_all(Cache& c) {
  for (auto& [k, e] : c.map)
    if (e.exec) (void)cudaGraphExecDestroy(e.exec);  // in-flight replays complete first
  c.map.clear();
}

// A one-node graph running `func` with `params`; nullptr when CUDA refuses.
cudaGraphExec_t build_graph(const void* func, dim3 grid, dim3 block, std::size_t smem,
                            void** params) {
  cudaGraph_t g = nullptr;
  if (cudaGraphCreate(&g, 0) != cudaSuccess) return nullptr;
  cudaKernelNodeParams kp{};
  kp.func = const_cast<void*>(func);
  kp.gridDim = grid;
  kp.blockDim = block;
  kp.sharedMemBytes = static_cast<unsigned>(smem);
  kp.kernelParams = params;
  kp.extra = nullptr;
  cudaGraphNode_t node = nullptr;
  cudaGraphExec_t exec = nullptr;
  if (cudaGraphAddKernelNode(&node, g, nullptr, 0, &kp) != cudaSuccess ||
      cudaGraphInstantiate(&exec, g, 0) != cudaSuccess) {
    exec = nullptr;
  }
  (void)cudaGraphDestroy(g);
  (void)cudaGetLastError();  // a refused graph must not poison the next check
  return exec;
}

}  // namespace

namespace detail {

void launch_raw(const void* func, dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
                void** params, const unsigned char* key, std::size_t key_len, const char* name) {
  const int thr = threshold();
  if (thr > 0 && key_len > 0 && !g_capturing.load(std::memory_order_acquire)) {
    Key k;
    put(k, func);
    put(k, grid.x); put(k, grid.y); put(k, grid.z);
    put(k, block.x); put(k, block.y); put(k, block.z);
    put(k, smem);
    put(k, s);
    std::memcpy(k.bytes + k.len, key, key_len);
    k.len += key_len;
    k.hash = fnv1a(k.bytes, k.len);
    Cache& c = cache();
    cudaGraphExec_t exec = nullptr;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      auto it = c.map.find(k);
      if (it == c.map.end()) {
        if (c.map.size() >= kMaxEntries) destroy_all(c);
        it = c.map.emplace(k, Entry{}).first;
      }
      Entry& e = it->second;
      if (!e.exec && !e.no_graph && ++e.seen >= thr) {
        e.exec = build_graph(func, grid, block, smem, params);
        if (!e.exec) e.no_graph = true;
      }
      exec = e.exec;
      if (exec) {
        // Launched under the lock: a concurrent destroy_all() cannot free it in between.
        const cudaError_t r = cudaGraphLaunch(exec, s);
        if (r == cudaSuccess) {
          c.replays.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        // A failing replay: drop the graph and report through the plain launch below (which
        // fails the same way for a sticky error, or succeeds for a graph-only problem).
        (void)cudaGetLastError();
        (void)cudaGraphExecDestroy(e.exec);
        e.exec = nullptr;
        e.no_graph = true;
      }
    }
  }
  cache().plain.fetch_add(1, std::memory_order_relaxed);
  const cudaError_t r = cudaLaunchKernel(func, grid, block, params, smem, s);
  if (r != cudaSuccess) detail::check_cuda(r, name, __FILE__, __LINE__);
}

namespace {

// Captures one enqueue(ctx, stream) call into an executable graph on the private stream;
// nullptr when CUDA or the library refuses (the capture is ended and its error cleared).
// Caller holds c.capture_mu.
cudaGraphExec_t capture_graph(Cache& c, EnqueueFn fn, void* ctx) {
  int dev = 0;  // the current device: the one the work's stream belongs to
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    (void)cudaGetLastError();
    return nullptr;
  }
  cudaStream_t& slot = c.capture_stream[dev];
  if (!slot && cudaStreamCreateWithFlags(&slot, cudaStreamNonBlocking) != cudaSuccess) {
    slot = nullptr;
    (void)cudaGetLastError();
    return nullptr;
  }
  cudaStream_t cs = slot;
  if (cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  bool ok = true;
  try {
    fn(ctx, cs);
  } catch (...) {
    ok = false;  // the plain call that follows reports the library's error, if it persists
  }
  cudaGraph_t g = nullptr;
  const cudaError_t end = cudaStreamEndCapture(cs, &g);
  cudaGraphExec_t exec = nullptr;
  if (ok && end == cudaSuccess && g && cudaGraphInstantiate(&exec, g, 0) != cudaSuccess)
    exec = nullptr;
  if (g) (void)cudaGraphDestroy(g);
  (void)cudaGetLastError();
  return exec;
}

}  // namespace

void run_captured_raw(const void* tag, const void* key, std::size_t key_len, cudaStream_t s,
                      const char* name, EnqueueFn fn, void* ctx) {
  (void)name;  // the enqueued work reports its own errors (it throws lc::BackendError)
  const int thr = threshold();
  Cache& c = cache();
  if (thr > 0 && key_len <= detail::kMaxKeyArgBytes && !g_capturing.load(std::memory_order_acquire)) {
    Key k;
    put(k, tag);
    put(k, s);
    std::memcpy(k.bytes + k.len, key, key_len);
    k.len += key_len;
    k.hash = fnv1a(k.bytes, k.len);
    bool build = false;
    {
      std::lock_guard<std::mutex> lock(c.mu);
      auto it = c.map.find(k);
      if (it == c.map.end()) {
        if (c.map.size() >= kMaxEntries) destroy_all(c);
        it = c.map.emplace(k, Entry{}).first;
      }
      Entry& e = it->second;
      if (e.exec) {
        if (cudaGraphLaunch(e.exec, s) == cudaSuccess) {
          c.replays.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        (void)cudaGetLastError();  // drop the graph; the plain call below reports any real error
        (void)cudaGraphExecDestroy(e.exec);
        e.exec = nullptr;
        e.no_graph = true;
      } else if (!e.no_graph && !e.building && ++e.seen >= thr) {
        e.building = build = true;
      }
    }
    if (build) {
      cudaGraphExec_t exec = nullptr;
      {
        std::lock_guard<std::mutex> cap(c.capture_mu);
        exec = capture_graph(c, fn, ctx);
      }
      std::lock_guard<std::mutex> lock(c.mu);
      auto it = c.map.find(k);  // destroy_all() may have dropped the entry meanwhile
      if (it == c.map.end()) it = c.map.emplace(k, Entry{}).first;
      Entry& e = it->second;
      e.building = false;
      if (exec && !e.exec) {
        e.exec = exec;
        e.captured = true;
      } else if (exec) {
        (void)cudaGraphExecDestroy(exec);
      } else {
        e.no_graph = true;
      }
      // The captured call did not run: this call's work is the graph's first replay.
      if (e.exec) {
        if (cudaGraphLaunch(e.exec, s) == cudaSuccess) {
          c.replays.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        (void)cudaGetLastError();
        (void)cudaGraphExecDestroy(e.exec);
        e.exec = nullptr;
        e.no_graph = true;
      }
    }
  }
  c.plain.fetch_add(1, std::memory_order_relaxed);
  fn(ctx, s);
}

}  // namespace detail

void launch_set_capturing(bool capturing) noexcept {
  g_capturing.store(capturing, std::memory_order_release);
}

void launch_cache_clear() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  destroy_all(c);
  c.replays = 0;
  c.plain = 0;
}

LaunchCacheStats launch_cache_stats() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  LaunchCacheStats st;
  st.entries = c.map.size();
  for (auto& [k, e] : c.map) {
    if (e.exec) ++st.graphs;
    if (e.exec && e.captured) ++st.captured;
  }
  st.replays = c.replays.load(std::memory_order_relaxed);
  st.plain = c.plain.load(std::memory_order_relaxed);
  return st;
}

}  // namespace lc::cuda
