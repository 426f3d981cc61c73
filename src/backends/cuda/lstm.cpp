// One LSTM layer on the GPU (Backend::lstm, LstmArgs in backend.h): one cuBLASLt GEMM
// x w_ih^T for all T steps (matmul.cpp), then the per-step path described next (the default).
// LC_LSTM_PERSISTENT=1 opts in to ONE persistent cooperative kernel for all T steps
// (lstm_persistent.cu; run_persistent below), slower on the H200 so far (see
// persistent_enabled); shapes it does not fit and calls under someone else's stream capture
// take the per-step path even then. The per-step path: per step one GEMM h_{t-1} w_hh^T whose residual
// epilogue adds that step's slice of the input projection (D = h w_hh^T + xg_t, one call), and
// one fused pointwise kernel (lstm.cu: biases, gates, float32 cell state, h_t).
//
// The step loop (2T launches) is recorded once as a CUDA graph through the capture seam
// (capture.h: CapturedGraph, the one capture mechanism) and replayed as one graph launch per
// call, so the host does not pay T GEMM + kernel launches. The graph works on buffers owned by
// a per-thread cache entry (key: device, stream, T, B, I, H, dtype, precision, which biases):
// the input projection, h0 / c0 copies, y, the cell state and the final h / c. Per call:
// the input GEMM into the entry's buffer and two small copies in (queued normally), the graph
// launch, then copies of y, h_n, c_n into the caller's buffers (y: T*B*H elements, a
// device-to-device copy). The binding is the entry's own buffers plus w_hh and the biases, so a
// recording is redone only when the recurrent weights move. The first call of an entry runs the
// same steps eagerly (cuBLASLt's first use of a shape may synchronise, which a capture forbids);
// the second records and replays. Eager instead (directly into the caller's buffers): T == 1,
// LC_LSTM_GRAPH=0, or the stream is already being captured by someone else. The op's report
// (lc.last_op_report()["impl"], the trace) says which ran: "graph" or "eager".
//
// Numerics: 16-bit storage multiplies in its own type with float32 accumulation (matmul.h);
// the step's pre-activations and h_t are stored in the storage dtype (h_t feeds the next GEMM
// as cuDNN's does), the cell state stays float32 throughout.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "backends/cuda/allocator.h"
#include "backends/cuda/capture.h"
#include "backends/cuda/check.h"
#include "backends/cuda/context.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/lstm_persistent.h"
#include "backends/cuda/matmul.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

using i64 = std::int64_t;

// The buffers one pass over the steps reads and writes (device pointers).
struct StepBuffers {
  const void* xg = nullptr;      // [T, B, 4H] input projection
  const void* h0 = nullptr;      // [B, H]
  const void* c0 = nullptr;      // [B, H] storage dtype
  const void* w_hh = nullptr;    // [4H, H]
  const void* b_ih = nullptr;
  const void* b_hh = nullptr;
  void* gates = nullptr;         // [B, 4H] one step's pre-activations
  float* c = nullptr;            // [B, H] float32 cell state
  void* y = nullptr;             // [T, B, H]
  void* h_n = nullptr;           // [B, H]
  void* c_n = nullptr;           // [B, H]
};

// Enqueues the T steps on the current stream: per step one GEMM and one pointwise kernel.
// Reads only device memory and values fixed per key, so it can be recorded.
void enqueue_steps(const LstmArgs& a, const StepBuffers& s) {
  Context& c = ctx();
  const i64 T = a.steps, B = a.batch, H = a.hidden, G = 4 * H;
  const std::size_t es = dtype_size(a.dtype);
  const char* xg = static_cast<const char*>(s.xg);
  char* y = static_cast<char*>(s.y);
  for (i64 t = 0; t < T; ++t) {
    MatmulArgs m;
    m.a = t == 0 ? s.h0 : y + static_cast<std::size_t>((t - 1) * B * H) * es;
    m.b = s.w_hh;
    m.trans_b = true;
    m.residual = xg + static_cast<std::size_t>(t * B * G) * es;
    m.out = s.gates;
    m.m = B;
    m.k = H;
    m.n = G;
    m.dtype = a.dtype;
    m.precision = a.precision;
    matmul(m);
    LstmCellArgs cell;
    cell.gates = s.gates;
    cell.b_ih = s.b_ih;
    cell.b_hh = s.b_hh;
    cell.c_init = t == 0 ? s.c0 : nullptr;
    cell.c = s.c;
    cell.h_out = y + static_cast<std::size_t>(t * B * H) * es;
    cell.h_last = t == T - 1 ? s.h_n : nullptr;
    cell.c_last = t == T - 1 ? s.c_n : nullptr;
    cell.rows = B;
    cell.hidden = H;
    cell.dtype = a.dtype;
    launch_lstm_cell(cell, c.info.sm_count, c.stream);
  }
}

// xg = x w_ih^T over all T * B rows (I == 0: zeros, matmul's empty-sum fill).
void input_projection(const LstmArgs& a, void* xg) {
  MatmulArgs m;
  m.a = a.x;
  m.b = a.w_ih;
  m.trans_b = true;
  m.out = xg;
  m.m = a.steps * a.batch;
  m.k = a.input;
  m.n = 4 * a.hidden;
  m.dtype = a.dtype;
  m.precision = a.precision;
  matmul(m);
}

// A device block from the caching allocator of the current device, on the current stream.
struct DeviceBlock {
  void* p = nullptr;
  DeviceBlock() = default;
  explicit DeviceBlock(std::size_t bytes) : p(CachingAllocator::instance().alloc(bytes)) {}
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;
  ~DeviceBlock() {
    if (p) CachingAllocator::free_any(p);  // stream-ordered: reused only after queued work
  }
};

// LC_LSTM_GRAPH=0 turns the step-loop graph off (read once).
bool graph_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LC_LSTM_GRAPH");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

bool stream_capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) != cudaSuccess) {
    (void)cudaGetLastError();
    return true;  // unknown: take the path that never captures
  }
  return st != cudaStreamCaptureStatusNone;
}

// One cached recording and the fixed buffers it runs on.
struct GraphEntry {
  CaptureKey key;
  cudaStream_t stream = nullptr;
  int device = 0;
  std::unique_ptr<DeviceBlock> xg, gates, c, h0, c0, y, h_n, c_n;
  std::unique_ptr<CapturedGraph> graph;
  bool warm = false;       // one eager pass ran on these buffers
  bool graph_off = false;  // recording failed once: this entry runs eagerly from then on
};
constexpr std::size_t kMaxEntries = 4;

CaptureKey make_key(const LstmArgs& a, const Context& c) {
  CaptureKey k;
  k.topology = "lstm";
  k.dims = {static_cast<i64>(c.info.device),
            static_cast<i64>(reinterpret_cast<std::uintptr_t>(c.stream)),
            a.steps, a.batch, a.input, a.hidden,
            static_cast<i64>(a.dtype), static_cast<i64>(a.precision),
            a.b_ih ? 1 : 0, a.b_hh ? 1 : 0};
  return k;
}

GraphEntry& entry_for(const LstmArgs& a, Context& c) {
  // Per thread (a stream is used by its threads in order; the key holds the stream too).
  thread_local std::deque<std::unique_ptr<GraphEntry>> cache;
  CaptureKey key = make_key(a, c);
  for (auto& e : cache)
    if (e->key == key) return *e;
  if (cache.size() >= kMaxEntries) cache.pop_front();  // its graph goes back to the seam's cache
  auto e = std::make_unique<GraphEntry>();
  e->key = std::move(key);
  e->stream = c.stream;
  e->device = c.info.device;
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t bh = static_cast<std::size_t>(a.batch * a.hidden);
  e->xg = std::make_unique<DeviceBlock>(static_cast<std::size_t>(a.steps) * bh * 4 * es);
  e->gates = std::make_unique<DeviceBlock>(bh * 4 * es);
  e->c = std::make_unique<DeviceBlock>(bh * sizeof(float));
  e->h0 = std::make_unique<DeviceBlock>(bh * es);
  e->c0 = std::make_unique<DeviceBlock>(bh * es);
  e->y = std::make_unique<DeviceBlock>(static_cast<std::size_t>(a.steps) * bh * es);
  e->h_n = std::make_unique<DeviceBlock>(bh * es);
  e->c_n = std::make_unique<DeviceBlock>(bh * es);
  cache.push_back(std::move(e));
  return *cache.back();
}

void copy_async(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
  if (bytes > 0) LC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

void run_eager(const LstmArgs& a) {
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t bh = static_cast<std::size_t>(a.batch * a.hidden);
  DeviceBlock xg(static_cast<std::size_t>(a.steps) * bh * 4 * es), gates(bh * 4 * es),
      c(bh * sizeof(float));
  input_projection(a, xg.p);
  StepBuffers s{xg.p, a.h0, a.c0, a.w_hh, a.b_ih, a.b_hh, gates.p,
                static_cast<float*>(c.p), a.y, a.h_n, a.c_n};
  enqueue_steps(a, s);
}

void run_graph(const LstmArgs& a, Context& c) {
  GraphEntry& e = entry_for(a, c);
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t bh = static_cast<std::size_t>(a.batch * a.hidden);
  input_projection(a, e.xg->p);
  copy_async(e.h0->p, a.h0, bh * es, c.stream);
  copy_async(e.c0->p, a.c0, bh * es, c.stream);
  const StepBuffers s{e.xg->p, e.h0->p, e.c0->p, a.w_hh, a.b_ih, a.b_hh, e.gates->p,
                      static_cast<float*>(e.c->p), e.y->p, e.h_n->p, e.c_n->p};
  auto work = [&] { enqueue_steps(a, s); };
  if (!e.warm || e.graph_off) {
    work();  // first use outside any capture: one-time set-up may synchronise
    e.warm = true;
    note_op_impl("eager");
  } else {
    GraphBinding binding;
    const void* const bound[] = {s.xg, s.h0, s.c0, s.w_hh, s.b_ih, s.b_hh, s.gates, s.c, s.y,
                                 s.h_n, s.c_n};
    for (const void* p : bound) binding.add(p);
    try {
      if (!e.graph) e.graph = capture_graph(e.key);
      e.graph->replay(work, binding);
      note_op_impl("graph");
    } catch (const BackendError&) {
      // The recording was refused (the capture seam cleaned up the stream and the allocator):
      // this entry stays eager; the steps run now, in order after the copies above.
      e.graph.reset();
      e.graph_off = true;
      work();
      note_op_impl("eager");
    }
  }
  copy_async(a.y, e.y->p, static_cast<std::size_t>(a.steps) * bh * es, c.stream);
  copy_async(a.h_n, e.h_n->p, bh * es, c.stream);
  copy_async(a.c_n, e.c_n->p, bh * es, c.stream);
}

// LC_LSTM_PERSISTENT=1 turns the persistent kernel on (read once); it is off by default: on the
// H200 (4394350, seq 128, batch 32, 512/512) it took 3.15 ms in float32 and 2.87 ms in bfloat16
// against the per-step path's replayed graph, 1.95 and 0.755 ms (benchmark_results/h200/session10).
bool persistent_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("LC_LSTM_PERSISTENT");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

// The persistent path (lstm_persistent.cu): the input GEMM into scratch, then one cooperative
// launch for all T steps, writing the caller's y, h_n, c_n directly. A launch refused as too
// large right now (another context holds SMs) runs the per-step kernels on the same projection.
void run_persistent(const LstmArgs& a, Context& c, const LstmPersistentPlan& plan) {
  const std::size_t es = dtype_size(a.dtype);
  const std::size_t bh = static_cast<std::size_t>(a.batch * a.hidden);
  DeviceBlock xg(static_cast<std::size_t>(a.steps) * bh * 4 * es);
  DeviceBlock counter(sizeof(unsigned long long));
  input_projection(a, xg.p);
  LC_CUDA_CHECK(cudaMemsetAsync(counter.p, 0, sizeof(unsigned long long), c.stream));
  LstmPersistentArgs pa;
  pa.xg = xg.p;
  pa.w_hh = a.w_hh;
  pa.b_ih = a.b_ih;
  pa.b_hh = a.b_hh;
  pa.h0 = a.h0;
  pa.c0 = a.c0;
  pa.y = a.y;
  pa.h_n = a.h_n;
  pa.c_n = a.c_n;
  pa.counter = static_cast<unsigned long long*>(counter.p);
  pa.steps = a.steps;
  pa.rows = a.batch;
  pa.hidden = a.hidden;
  pa.dtype = a.dtype;
  if (launch_lstm_persistent(pa, plan, c.stream)) {
    note_op_impl("persistent");
    return;
  }
  DeviceBlock gates(bh * 4 * es), cell(bh * sizeof(float));
  const StepBuffers s{xg.p, a.h0, a.c0, a.w_hh, a.b_ih, a.b_hh, gates.p,
                      static_cast<float*>(cell.p), a.y, a.h_n, a.c_n};
  enqueue_steps(a, s);
  note_op_impl("eager");
}

}  // namespace

void lstm(const LstmArgs& a) {
  Context& c = ctx();
  if (a.batch <= 0 || a.hidden <= 0) return;  // every result is empty
  const std::size_t state = static_cast<std::size_t>(a.batch * a.hidden) * dtype_size(a.dtype);
  if (a.steps <= 0) {  // no step: the final state is the initial one
    copy_async(a.h_n, a.h0, state, c.stream);
    copy_async(a.c_n, a.c0, state, c.stream);
    return;
  }
  // Persistent kernel first (any T >= 1, never under someone else's stream capture: a
  // cooperative launch is not recorded), then the step-loop graph, then eager steps.
  LstmPersistentPlan plan;
  const bool capturing = stream_capturing(c.stream);
  if (persistent_enabled() && !capturing &&
      plan_lstm_persistent(a.batch, a.hidden, a.dtype, c.info.device, c.info.sm_count,
                           c.info.smem_optin, plan))
    run_persistent(a, c, plan);
  else if (a.steps >= 2 && graph_enabled() && !capturing)
    run_graph(a, c);
  else {
    run_eager(a);
    note_op_impl("eager");
  }
}

}  // namespace lc::cuda
