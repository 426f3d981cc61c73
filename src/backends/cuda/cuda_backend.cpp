// The CUDA backend: lc::Backend on top of the context (device, stream, cuBLASLt), the caching
// allocator, the staging copies and the kernels of this folder.
//
// Nothing here touches CUDA at static-init or import time. available() asks the driver once
// (cudaGetDeviceCount, then whether this build's GPU code (LC_CUDA_TARGETS) loads on device 0) and
// caches the answer; the context (stream) is created on the first op, cuBLASLt / cuDNN on the
// first op that needs them (vendor_libs.h). cudart is linked statically, so a machine without a
// driver just reports "unavailable".
#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#ifndef LC_CUDA_TARGETS  // set by CMake from the -gencode list (LC_CUDA_ARCHS)
#define LC_CUDA_TARGETS "sm_90a"
#endif
#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/capture.h"
#include "backends/cuda/check.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/context.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/matmul.h"
#include "backends/cuda/staging.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

struct Probe {
  std::once_flag once;
  bool ok = false;
  std::string reason;
};
Probe& probe() {
  static Probe p;
  return p;
}

void run_probe(Probe& p) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = std::string("no usable CUDA driver/device: cudaGetDeviceCount failed with ") +
               cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
               "). Install the NVIDIA driver / run on a machine with an NVIDIA GPU, or use "
               "device=\"cpu\" / \"auto\"";
    return;
  }
  if (n == 0) {
    p.reason = "no CUDA device found (the driver reports 0 devices); use device=\"cpu\" / \"auto\"";
    return;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = "cudaGetDeviceProperties(0) failed; the CUDA device is not usable";
    return;
  }
  const cudaError_t k = probe_kernel_image();
  if (k != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = std::string("this build's GPU code does not run on ") + prop.name + " (sm_" +
               std::to_string(prop.major) + std::to_string(prop.minor) + "): " +
               cudaGetErrorName(k) + ". lightning_core was compiled for " LC_CUDA_TARGETS "; "
               "rebuild with -DLC_CUDA_ARCHS=all, or -DLC_CUDA_GENCODE=\"-gencode=arch=compute_XY,"
               "code=sm_XY\" for this GPU";
    return;
  }
  p.ok = true;
}

struct CtxHolder {
  std::once_flag once;
  Context c;
};
CtxHolder& holder() {
  static CtxHolder* h = new CtxHolder();  // leaked: streams/handles must outlive static dtors
  return *h;
}

void init_context(Context& c) {
  LC_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop{};
  LC_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  c.info.device = 0;
  c.info.name = prop.name;
  c.info.sm_count = prop.multiProcessorCount;
  c.info.cc_major = prop.major;
  c.info.cc_minor = prop.minor;
  c.info.total_mem = prop.totalGlobalMem;
  c.info.smem_optin = prop.sharedMemPerBlockOptin;
  LC_CUDA_CHECK(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking));
}

// cudaEvents for the trace clock: a growable pool, reused after release_marks().
struct EventPool {
  std::mutex mu;
  std::vector<cudaEvent_t> events;
  std::size_t used = 0;
};
EventPool& events() {
  static EventPool* p = new EventPool();
  return *p;
}

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::vector<void*> held;  // allocator blocks freed during capture, owned by the graph
};

}  // namespace

bool probe_available(std::string* reason) {
  Probe& p = probe();
  std::call_once(p.once, [&] { run_probe(p); });
  if (reason) *reason = p.reason;
  return p.ok;
}

Context& ctx() {
  std::string reason;
  if (!probe_available(&reason)) throw Unavailable("[cuda] " + reason);
  CtxHolder& h = holder();
  // If init throws, call_once lets the next call try again.
  std::call_once(h.once, [&] { init_context(h.c); });
  return h.c;
}

CUstream_st* stream() { return ctx().stream; }

namespace {
std::atomic<std::uint64_t> g_enqueued{1};  // starts ahead of g_synced: the first sync is real
std::atomic<std::uint64_t> g_synced{0};
}  // namespace

void note_enqueued() { g_enqueued.fetch_add(1, std::memory_order_release); }

void synchronize_stream() {
  const std::uint64_t target = g_enqueued.load(std::memory_order_acquire);
  if (g_synced.load(std::memory_order_acquire) >= target) return;
  LC_CUDA_CHECK(cudaStreamSynchronize(ctx().stream));
  std::uint64_t cur = g_synced.load(std::memory_order_relaxed);
  while (cur < target && !g_synced.compare_exchange_weak(cur, target, std::memory_order_release)) {
  }
}

void mem_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  (void)ctx();
  std::size_t f = 0, t = 0;
  LC_CUDA_CHECK(cudaMemGetInfo(&f, &t));
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
}

void capture_begin() {
  Context& c = ctx();
  CachingAllocator::instance().begin_hold();
  launch_set_capturing(true);  // captured launches must become kernel nodes, not graph replays
  const cudaError_t e = cudaStreamBeginCapture(c.stream, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    launch_set_capturing(false);
    (void)CachingAllocator::instance().end_hold();
    LC_CUDA_CHECK(e);
  }
}

cudaGraph_t capture_end_graph(std::vector<void*>& held) {
  Context& c = ctx();
  cudaGraph_t g = nullptr;
  const cudaError_t e = cudaStreamEndCapture(c.stream, &g);
  launch_set_capturing(false);
  held = CachingAllocator::instance().end_hold();
  if (e != cudaSuccess) {
    if (g) (void)cudaGraphDestroy(g);
    CachingAllocator::instance().release_held(held);
    held.clear();
    LC_CUDA_CHECK(e);
  }
  return g;
}

GraphHandle capture_end() {
  auto* g = new Graph();
  try {
    g->graph = capture_end_graph(g->held);
  } catch (...) {
    delete g;
    throw;
  }
  const cudaError_t ie = cudaGraphInstantiate(&g->exec, g->graph, 0);
  if (ie != cudaSuccess) {
    graph_destroy(g);
    LC_CUDA_CHECK(ie);
  }
  return g;
}

void graph_launch(GraphHandle h) {
  if (!h) throw_value("graph_launch", "null graph handle");
  Context& c = ctx();
  EnqueueScope enq;
  LC_CUDA_CHECK(cudaGraphLaunch(static_cast<Graph*>(h)->exec, c.stream));
}

void graph_destroy(GraphHandle h) noexcept {
  auto* g = static_cast<Graph*>(h);
  if (!g) return;
  // Replays may still be in flight: wait before the held blocks go back to the free lists.
  if (cudaStreamSynchronize(holder().c.stream) != cudaSuccess) (void)cudaGetLastError();
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  CachingAllocator::instance().release_held(g->held);
  delete g;
}

}  // namespace lc::cuda

namespace lc {

namespace {

class CudaBackend final : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::cuda; }
  const char* name() const override { return "cuda"; }
  bool available() const override { return cuda::probe_available(nullptr); }
  std::string unavailable_reason() const override {
    std::string r;
    return cuda::probe_available(&r) ? std::string() : r;
  }
  std::string device_description() const override {
    std::string r;
    if (!cuda::probe_available(&r)) return "cuda (unavailable: " + r + ")";
    const auto& i = cuda::ctx().info;
    return i.name + ", sm_" + std::to_string(i.cc_major) + std::to_string(i.cc_minor) + ", " +
           std::to_string(i.sm_count) + " SMs, " +
           std::to_string(i.total_mem / (1024 * 1024 * 1024.0)).substr(0, 5) + " GiB";
  }

  void* alloc(std::size_t bytes) override { return cuda::CachingAllocator::instance().alloc(bytes); }
  void free(void* p) noexcept override { cuda::CachingAllocator::instance().free(p); }
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override {
    cuda::EnqueueScope enq;
    cuda::staged_copy_to_device(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    cuda::EnqueueScope enq;
    cuda::staged_copy_to_host(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, std::size_t bytes) override {
    if (bytes == 0 || dst == src) return;
    cuda::EnqueueScope enq;
    LC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::ctx().stream));
  }
  void tile_cyclic(float* dst, const float* src, std::int64_t have, std::int64_t need) override {
    if (have <= 0 || need <= 0) return;
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    cuda::launch_tile_cyclic(dst, src, have, need, c.info.sm_count, c.stream);
  }
  void synchronize() override { cuda::synchronize_stream(); }
  MemoryInfo memory_info() override {
    MemoryInfo m;
    if (!cuda::probe_available(nullptr)) return m;
    cuda::mem_info(&m.free, &m.total);
    const cuda::AllocatorStats st = cuda::allocator_stats();
    m.in_use = st.in_use_bytes;
    m.cached = st.cached_bytes;
    m.known = true;
    return m;
  }
  void empty_cache() override {
    if (!cuda::probe_available(nullptr)) return;
    cuda::graph_cache_clear();  // idle graphs hand their held blocks back first
    cuda::empty_cache();
  }

  void range_push(const char* name) override { nvtxRangePushA(name ? name : "lc"); }
  void range_pop() override { nvtxRangePop(); }

  std::int64_t mark() override {
    cuda::Context& c = cuda::ctx();
    auto& pool = cuda::events();
    std::lock_guard<std::mutex> lock(pool.mu);
    if (pool.used == pool.events.size()) {
      cudaEvent_t e = nullptr;
      LC_CUDA_CHECK(cudaEventCreate(&e));
      pool.events.push_back(e);
    }
    const std::size_t id = pool.used++;
    cuda::EnqueueScope enq;
    LC_CUDA_CHECK(cudaEventRecord(pool.events[id], c.stream));
    return static_cast<std::int64_t>(id);
  }
  double elapsed_ns(std::int64_t begin, std::int64_t end) override {
    auto& pool = cuda::events();
    cudaEvent_t b = nullptr, e = nullptr;
    {
      std::lock_guard<std::mutex> lock(pool.mu);
      if (begin < 0 || end < 0 || static_cast<std::size_t>(begin) >= pool.used ||
          static_cast<std::size_t>(end) >= pool.used)
        return -1.0;
      b = pool.events[static_cast<std::size_t>(begin)];
      e = pool.events[static_cast<std::size_t>(end)];
    }
    LC_CUDA_CHECK(cudaEventSynchronize(e));
    float ms = 0.0f;
    LC_CUDA_CHECK(cudaEventElapsedTime(&ms, b, e));
    return static_cast<double>(ms) * 1.0e6;
  }
  void release_marks() override {
    auto& pool = cuda::events();
    std::lock_guard<std::mutex> lock(pool.mu);
    pool.used = 0;  // events are kept for reuse
  }

  void matmul(const MatmulArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::matmul(a);
  }
  void attention(const AttentionArgs& a) override {
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    cuda::launch_attention(a, c.info.sm_count, c.stream);
  }
  void attention_mha(const MhaArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::launch_attention_mha(a, cuda::ctx().stream);
  }
  void attention_mha_backward(const MhaBackwardArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::launch_attention_mha_backward(a, cuda::ctx().stream);
  }
  void conv2d(const Conv2dArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::launch_conv2d(a, cuda::ctx().stream);
  }
  void layernorm(const LayerNormArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::launch_layernorm(a, cuda::ctx().stream);
  }
  void softmax(const SoftmaxArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::launch_softmax(a, cuda::ctx().stream);
  }
  void elementwise(const ElementwiseArgs& a) override {
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    cuda::launch_elementwise(a, c.info.sm_count, c.stream);
  }
  void copy_strided(const StridedCopyArgs& a) override {
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    cuda::launch_copy_strided(a, c.info.sm_count, c.stream);
  }
  void embedding(const EmbeddingArgs& a) override {
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    cuda::launch_embedding(a, c.info.sm_count, c.stream);
  }
  // The seam (backend.h): capture (capture.cpp), tuning (matmul.cpp), fingerprint.
  bool graphs_supported() const override { return true; }
  std::unique_ptr<CapturedGraph> capture_graph(const CaptureKey& key) override {
    return cuda::capture_graph(key);
  }
  GraphCacheStats graph_cache_stats() override { return cuda::graph_cache_stats(); }
  void graph_cache_clear() override { cuda::graph_cache_clear(); }
  std::string fingerprint() override { return cuda::fingerprint(); }
  std::vector<GemmAlgorithm> gemm_algorithms(const MatmulArgs& a, int max) override {
    std::vector<GemmAlgorithm> out;
    for (const cuda::MatmulAlgoInfo& i : cuda::matmul_list_algos(a, max)) {
      GemmAlgorithm g;
      g.index = i.index;
      g.detail = "algo=" + std::to_string(i.algo_id) + " tile=" + std::to_string(i.tile) +
                 " stages=" + std::to_string(i.stages) + " splitk=" + std::to_string(i.splitk) +
                 " workspace=" + std::to_string(i.workspace_bytes);
      out.push_back(std::move(g));
    }
    return out;
  }
  void matmul_with_algorithm(const MatmulArgs& a, int index) override {
    cuda::EnqueueScope enq;
    cuda::matmul_with_algo(a, index);
  }
  void set_gemm_algorithm(const MatmulArgs& a, int index) override {
    cuda::matmul_set_algo(a, index);
  }

  std::int64_t first_bad_index(const void* ids, DType t, std::int64_t n, std::int64_t vocab) override {
    if (n <= 0) return -1;
    cuda::Context& c = cuda::ctx();
    void* flag = cuda::CachingAllocator::instance().alloc(sizeof(unsigned long long));
    unsigned long long host = ~0ull;
    try {
      cuda::EnqueueScope enq;
      LC_CUDA_CHECK(cudaMemsetAsync(flag, 0xff, sizeof(unsigned long long), c.stream));
      cuda::launch_bad_id_check(ids, t, n, vocab, static_cast<unsigned long long*>(flag),
                                c.info.sm_count, c.stream);
      LC_CUDA_CHECK(cudaMemcpyAsync(&host, flag, sizeof(host), cudaMemcpyDeviceToHost, c.stream));
      cuda::synchronize_stream();
    } catch (...) {
      cuda::CachingAllocator::instance().free(flag);
      throw;
    }
    cuda::CachingAllocator::instance().free(flag);
    return host == ~0ull ? -1 : static_cast<std::int64_t>(host);
  }
};

}  // namespace

Backend& cuda_backend_instance() {
  static CudaBackend b;  // trivial constructor: no CUDA call at static-init time
  return b;
}

}  // namespace lc
