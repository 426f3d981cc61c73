// The CUDA backend: lc::Backend on top of the context (devices, streams: context.h), the
// caching allocators, the staging copies and the kernels of this folder.
//
// Nothing here touches CUDA at static-init or import time: available() is context.h's cached
// probe, a device's state is created on its first use, cuBLASLt / cuDNN on the first op that
// needs them (vendor_libs.h).
#include "backends/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <nvtx3/nvToolsExt.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/attention_cudnn.h"
#include "backends/cuda/capture.h"
#include "backends/cuda/check.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/context.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/matmul.h"
#include "backends/cuda/staging.h"
#include "backends/cuda/nccl.h"
#include "backends/cuda/vendor_libs.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

// cudaEvents for the trace clock: a growable pool per device (an event records on streams of
// the device it was made on), reused after release_marks(). A mark id is (device << 32) | slot.
struct EventPool {
  std::mutex mu;
  std::vector<cudaEvent_t> events;
  std::size_t used = 0;
};
EventPool& events(int device) {
  static EventPool* p = new EventPool[kMaxDevices];  // leaked: events outlive static dtors
  return p[device];
}

struct Graph {
  int device = 0;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::vector<void*> held;  // allocator blocks freed during capture, owned by the graph
};

// A user event (lc.Event): made on the current device, recorded on its streams.
struct UserEvent {
  cudaEvent_t ev = nullptr;
  int device = 0;
  bool timing = false;
  bool recorded = false;
};

}  // namespace

CUstream_st* stream() { return ctx().stream; }

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
  g->device = current_device();
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
  try {
    // Replays may still be in flight on any stream of the graph's device: wait before the held
    // blocks go back to the free lists.
    DeviceGuard guard(g->device);
    if (cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
  } catch (...) {
  }
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  CachingAllocator::for_device(g->device).release_held(g->held);
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
  void free(void* p) noexcept override { cuda::CachingAllocator::free_any(p); }
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
  void synchronize_all() override {
    if (cuda::probe_available(nullptr)) cuda::synchronize_all_streams();
  }

  // Devices and streams (context.h). Stream handles are cuda::StreamState*, events UserEvent*.
  int device_count() override { return cuda::device_count(); }
  int current_device() const override { return cuda::current_device(); }
  void set_current_device(int index) override { cuda::set_current_device(index); }
  void* stream_create(int index) override { return cuda::stream_create(index); }
  void stream_destroy(void* s) noexcept override {
    cuda::stream_destroy(static_cast<cuda::StreamState*>(s));
  }
  void* current_stream() override { return cuda::ctx().ss; }
  void* default_stream(int index) override { return cuda::default_stream(index); }
  std::uintptr_t native_stream(void* s) override {
    cuda::StreamState* st = s ? static_cast<cuda::StreamState*>(s) : cuda::ctx().ss;
    return reinterpret_cast<std::uintptr_t>(st->stream);
  }
  int stream_device(void* s) override {
    return s ? static_cast<cuda::StreamState*>(s)->device : cuda::current_device();
  }
  void set_current_stream(void* s) override {
    cuda::set_current_stream(static_cast<cuda::StreamState*>(s));
  }
  void stream_synchronize(void* s) override {
    cuda::synchronize_stream(s ? static_cast<cuda::StreamState*>(s) : cuda::ctx().ss);
  }
  bool stream_query(void* s) override {
    cuda::StreamState* st = s ? static_cast<cuda::StreamState*>(s) : cuda::ctx().ss;
    const cudaError_t e = cudaStreamQuery(st->stream);
    if (e == cudaErrorNotReady) {
      (void)cudaGetLastError();
      return false;
    }
    LC_CUDA_CHECK(e);
    return true;
  }
  void stream_wait_event(void* s, void* event) override {
    auto* ev = static_cast<cuda::UserEvent*>(event);
    if (!ev->recorded) return;  // as CUDA: waiting for a never-recorded event waits for nothing
    cuda::StreamState* st = s ? static_cast<cuda::StreamState*>(s) : cuda::ctx().ss;
    cuda::DeviceGuard guard(st->device);
    LC_CUDA_CHECK(cudaStreamWaitEvent(st->stream, ev->ev, 0));
  }
  void* event_create(bool timing) override {
    (void)cuda::ctx();
    auto ev = std::make_unique<cuda::UserEvent>();
    ev->device = cuda::current_device();
    ev->timing = timing;
    LC_CUDA_CHECK(cudaEventCreateWithFlags(&ev->ev, timing ? cudaEventDefault : cudaEventDisableTiming));
    return ev.release();
  }
  void event_destroy(void* event) noexcept override {
    auto* ev = static_cast<cuda::UserEvent*>(event);
    if (!ev) return;
    if (ev->ev && cudaEventDestroy(ev->ev) != cudaSuccess) (void)cudaGetLastError();
    delete ev;
  }
  void event_record(void* event, void* s) override {
    auto* ev = static_cast<cuda::UserEvent*>(event);
    cuda::StreamState* st = s ? static_cast<cuda::StreamState*>(s) : cuda::ctx().ss;
    if (st->device != ev->device)
      throw_value("Event.record", "the event was made on cuda:" + std::to_string(ev->device) +
                                      " and cannot record a stream of cuda:" +
                                      std::to_string(st->device) + "; make one event per device");
    cuda::DeviceGuard guard(st->device);
    LC_CUDA_CHECK(cudaEventRecord(ev->ev, st->stream));
    ev->recorded = true;
  }
  void event_synchronize(void* event) override {
    auto* ev = static_cast<cuda::UserEvent*>(event);
    if (ev->recorded) LC_CUDA_CHECK(cudaEventSynchronize(ev->ev));
  }
  bool event_query(void* event) override {
    auto* ev = static_cast<cuda::UserEvent*>(event);
    if (!ev->recorded) return true;
    const cudaError_t e = cudaEventQuery(ev->ev);
    if (e == cudaErrorNotReady) {
      (void)cudaGetLastError();
      return false;
    }
    LC_CUDA_CHECK(e);
    return true;
  }
  double event_elapsed_ms(void* begin, void* end) override {
    auto* b = static_cast<cuda::UserEvent*>(begin);
    auto* e = static_cast<cuda::UserEvent*>(end);
    if (!b->timing || !e->timing)
      throw_value("Event.elapsed_time", "both events must be created with enable_timing=True");
    if (!b->recorded || !e->recorded)
      throw_value("Event.elapsed_time", "both events must be recorded first (event.record())");
    LC_CUDA_CHECK(cudaEventSynchronize(e->ev));
    float ms = 0.0f;
    LC_CUDA_CHECK(cudaEventElapsedTime(&ms, b->ev, e->ev));
    return static_cast<double>(ms);
  }
  void record_stream(void* ptr, void* s) override {
    cuda::StreamState* st = s ? static_cast<cuda::StreamState*>(s) : cuda::ctx().ss;
    cuda::CachingAllocator::record_stream_any(ptr, st);
  }
  bool copy_peer(void* dst, int dst_index, const void* src, int src_index,
                 std::size_t bytes) override {
    // Ordered after the source device's current stream (its producer) and on the destination
    // device's current stream (its consumers); the host waits for the source side only.
    {
      cuda::DeviceGuard guard(src_index);
      cuda::synchronize_stream();
    }
    cuda::DeviceGuard guard(dst_index);
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    LC_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_index, src, src_index, bytes, c.stream));
    return true;
  }
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
    for (int d : cuda::initialised_devices()) {
      cuda::DeviceGuard guard(d);
      cuda::empty_cache();
    }
  }

  void range_push(const char* name) override { nvtxRangePushA(name ? name : "lc"); }
  void range_pop() override { nvtxRangePop(); }

  std::int64_t mark() override {
    cuda::Context& c = cuda::ctx();
    const int dev = cuda::current_device();
    auto& pool = cuda::events(dev);
    std::lock_guard<std::mutex> lock(pool.mu);
    if (pool.used == pool.events.size()) {
      cudaEvent_t e = nullptr;
      LC_CUDA_CHECK(cudaEventCreate(&e));
      pool.events.push_back(e);
    }
    const std::size_t id = pool.used++;
    cuda::EnqueueScope enq;
    LC_CUDA_CHECK(cudaEventRecord(pool.events[id], c.stream));
    return (static_cast<std::int64_t>(dev) << 32) | static_cast<std::int64_t>(id);
  }
  double elapsed_ns(std::int64_t begin, std::int64_t end) override {
    if (begin < 0 || end < 0 || (begin >> 32) != (end >> 32) || (begin >> 32) >= cuda::kMaxDevices)
      return -1.0;
    auto& pool = cuda::events(static_cast<int>(begin >> 32));
    const auto bi = static_cast<std::size_t>(begin & 0xffffffff);
    const auto ei = static_cast<std::size_t>(end & 0xffffffff);
    cudaEvent_t b = nullptr, e = nullptr;
    {
      std::lock_guard<std::mutex> lock(pool.mu);
      if (bi >= pool.used || ei >= pool.used) return -1.0;
      b = pool.events[bi];
      e = pool.events[ei];
    }
    LC_CUDA_CHECK(cudaEventSynchronize(e));
    float ms = 0.0f;
    LC_CUDA_CHECK(cudaEventElapsedTime(&ms, b, e));
    return static_cast<double>(ms) * 1.0e6;
  }
  void release_marks() override {
    for (int d = 0; d < cuda::kMaxDevices; ++d) {
      auto& pool = cuda::events(d);
      std::lock_guard<std::mutex> lock(pool.mu);
      pool.used = 0;  // events are kept for reuse
    }
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
    if (cuda::try_cudnn_attention(a)) return;  // cuDNN's flash attention (attention_cudnn.h)
    note_op_impl("own");
    cuda::launch_attention_mha(a, cuda::ctx().stream);
  }
  void attention_mha_backward(const MhaBackwardArgs& a) override {
    cuda::EnqueueScope enq;
    if (cuda::try_cudnn_attention_backward(a)) return;  // cuDNN first for 16-bit (attention_cudnn.h)
    note_op_impl("own");
    cuda::launch_attention_mha_backward(a, cuda::ctx().stream);  // attention_mha_bwd.cu
  }
  std::vector<std::pair<std::string, std::string>> build_facts() override {
    const char* fe = cuda::cudnn_frontend_version();
    return {{"cuda_cudnn_frontend", *fe ? fe : "no"}};
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
  void elementwise_program(const EwProgramArgs& a) override {
    cuda::Context& c = cuda::ctx();
    cuda::EnqueueScope enq;
    cuda::launch_elementwise_program(a, c.info.sm_count, c.stream);
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
  void lstm(const LstmArgs& a) override {
    cuda::EnqueueScope enq;
    cuda::lstm(a);  // lstm.cpp (GEMMs + lstm.cu's cell kernel, the step loop as one graph)
  }
  // The seam (backend.h): capture (capture.cpp), tuning (matmul.cpp), fingerprint.
  bool graphs_supported() const override { return true; }
  std::unique_ptr<CapturedGraph> capture_graph(const CaptureKey& key) override {
    return cuda::capture_graph(key);
  }
  GraphCacheStats graph_cache_stats() override { return cuda::graph_cache_stats(); }
  void graph_cache_clear() override { cuda::graph_cache_clear(); }
  std::string fingerprint() override { return cuda::fingerprint(); }
  void set_library_dirs(const std::vector<std::string>& dirs) override {
    cuda::vendor::set_search_dirs(dirs);
  }
  // Collectives: NCCL, loaded on first use (nccl.h).
  std::string collective_unique_id() override { return cuda::nccl::unique_id(); }
  std::unique_ptr<Communicator> collective_init(const std::string& id, int nranks, int rank,
                                                int device) override {
    return cuda::nccl::init_rank(id, nranks, rank, device);
  }
  std::vector<std::unique_ptr<Communicator>> collective_init_all(
      const std::vector<int>& devices) override {
    return cuda::nccl::init_all(devices);
  }
  void collective_group_start() override { cuda::nccl::group_start(); }
  void collective_group_end() override { cuda::nccl::group_end(); }
  CollectiveLibraryInfo collective_library_info(bool load) override {
    return cuda::nccl::library_info(load);
  }
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
  double sum_squares(const void* x, DType t, std::int64_t n) override {
    if (n <= 0) return 0.0;
    cuda::Context& c = cuda::ctx();
    constexpr std::size_t bytes = (cuda::kSumSquaresMaxBlocks + 1) * sizeof(double);
    void* scratch = cuda::CachingAllocator::instance().alloc(bytes);
    double host = 0.0;
    try {
      cuda::EnqueueScope enq;
      cuda::launch_sum_squares(x, t, n, static_cast<double*>(scratch), c.info.sm_count, c.stream);
      LC_CUDA_CHECK(cudaMemcpyAsync(&host, static_cast<double*>(scratch) + cuda::kSumSquaresMaxBlocks,
                                    sizeof(host), cudaMemcpyDeviceToHost, c.stream));
      cuda::synchronize_stream();
    } catch (...) {
      cuda::CachingAllocator::instance().free(scratch);
      throw;
    }
    cuda::CachingAllocator::instance().free(scratch);
    return host;
  }
};

}  // namespace

Backend& cuda_backend_instance() {
  static CudaBackend b;  // trivial constructor: no CUDA call at static-init time
  return b;
}

}  // namespace lc
