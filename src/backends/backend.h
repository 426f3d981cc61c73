// The backend seam: everything a compute backend (CPU, CUDA, a future Metal) implements.
//
// The core (src/core/) validates arguments, decides placement, makes inputs contiguous,
// moves data and records the trace; a backend only computes. So every argument struct here
// holds raw pointers that already live in the backend's own memory, plus plain sizes: contiguous
// and row-major, except where a struct says otherwise (ElementwiseArgs with ndim > 0 and
// StridedCopyArgs carry element strides). Backends never throw for bad shapes (the core checked them) and only
// throw lc::BackendError / lc::OutOfMemory for failures of their own.
//
// Adding a backend = implementing this class in src/backends/<name>/ and returning it from
// get_backend() (src/runtime/backend_registry.cpp). A backend that is not compiled in is a stub
// whose available() is false and whose unavailable_reason() says why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backends/collective.h"
#include "lightning_core/dtype.h"
#include "lightning_core/ew_program.h"
#include "lightning_core/errors.h"
#include "lightning_core/types.h"

namespace lc {

// C = act(A[m,k] @ B (+ bias[n]) (+ residual[m,n])).  B is [k,n] row-major, or [n,k] when
// trans_b (the torch nn.Linear weight layout). out is [m,n].
//
// Storage: a, b, bias, residual and out all hold `dtype` elements (float32, float16, bfloat16;
// float64 on the CPU only); products accumulate in float32 (float64 for float64) and round once
// into out. `precision` is the compute mode of float32 storage only (fp32 exact, tf32, bf16
// tensor-core inputs); 16-bit storage always multiplies in its own type with float32
// accumulation and float64 is always exact, whatever `precision` says.
//
// Residual: added before the activation (cuBLASLt's D = epilogue(A@B + 1 * C) with C =
// residual); out may not alias it (the core routes an aliased out through scratch).
//
// Batched: `batch` products; matrix i of a / b / out starts at element i * stride_a / stride_b
// / stride_out (stride 0 repeats one matrix for every product: a broadcast operand). bias is
// shared by every product, residual advances with stride_out.
struct MatmulArgs {
  const void* a = nullptr;
  const void* b = nullptr;
  const void* bias = nullptr;      // optional, length n
  void* out = nullptr;
  std::int64_t m = 0, k = 0, n = 0;
  bool trans_b = false;
  Activation act = Activation::none;
  Precision precision = Precision::fp32;
  DType dtype = DType::f32;
  const void* residual = nullptr;  // optional, [m, n] per product
  std::int64_t batch = 1;
  std::int64_t stride_a = 0, stride_b = 0, stride_out = 0;  // elements; used when batch > 1
};

// out[sq,dv] = softmax(q[sq,d] k[sk,d]^T * scale (+ causal mask)) v[sk,dv].
// causal masks key j > query i (top-left aligned, as torch SDPA is_causal).
// q, k, v and out hold `dtype` elements (float32, float16 or bfloat16, all the same); the
// arithmetic is float32 either way, rounded once when out is stored.
struct AttentionArgs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  std::int64_t sq = 0, sk = 0, d = 0, dv = 0;
  bool causal = false;
  float scale = 1.0f;  // the core passes 1/sqrt(d) unless the caller gave one
  DType dtype = DType::f32;
};

// Batched multi-head / grouped-query attention (lc.attention). For batch b, head h and its
// key/value head g = h / (heads / kv_heads):
//   out[b,h,i,:] = sum_j p_ij v[b,g,j,:],  p_ij = softmax_j(scale * q[b,h,i,:] . k[b,g,j,:] + add_ij)
// over the keys j that query i may see: j <= i + sk - sq when causal (bottom-right aligned, as
// torch / FlashAttention with sq != sk), and keep_ij != 0 for a `keep` mask. An additive mask
// adds add_ij (a -inf entry hides the key). A row that sees no key (or only -inf scores) gets
// out = 0 and lse = -inf, never NaN.
//
// q, k, v are read through element strides (batch, head, row; any value, 0 allowed) with
// unit-stride columns; out is [batch, heads, sq, dv] with unit-stride columns, written through
// out_strides (batch, head, row; all zero = contiguous, so the caller may give the merged-heads
// layout [B, Sq, H, Dv] as a permuted view); lse (optional, float32) is
// contiguous [batch, heads, sq]: the natural log of sum_j exp(score_ij) over visible keys.
// The mask (optional) is read through four element strides (batch, head, row, key; 0 on
// broadcast dimensions): `additive` holds `dtype` elements, `keep` int32 / int64 (nonzero =
// attend). q, k, v and out hold `dtype` elements (float32, float16, bfloat16; float64 on the CPU
// only); the arithmetic is float32 (float64 for float64), rounded once into out.
enum class MaskKind : std::uint8_t { none, additive, keep };

// Which attention implementation a backend with a choice uses (the CUDA backend in float16 /
// bfloat16: cuDNN's fused flash attention or its own kernel). Process-wide, set by
// lc::set_attention_impl() (runtime.h), initially from LC_ATTENTION_IMPL (src/runtime/
// attention_impl.cpp); one relaxed atomic load.
enum class AttentionImpl : std::uint8_t { automatic, cudnn, own };
AttentionImpl attention_impl_choice() noexcept;
// Compiled variants of the CUDA attention kernels (tile shapes, pipeline depth, launch bounds,
// split rules) for tuning on a device; variant 0 is the default. Process-wide, initially the
// environment's LC_ATTENTION_TC_VARIANT / LC_ATTENTION_DECODE_VARIANT (read once on first use),
// overridden by lc::set_attention_kernel_variant() (runtime.h); one relaxed atomic load. The
// tables of what each variant is are attention_kernel_variant_names() (src/runtime/
// attention_impl.cpp); the CUDA files map an index to their template configuration.
enum class AttentionKernel : std::uint8_t { tc, decode };
inline constexpr int kAttentionTcVariants = 7;
inline constexpr int kAttentionDecodeVariants = 13;
int attention_kernel_variant_choice(AttentionKernel k) noexcept;
// A backend names the implementation that ran inside the current op (a static string, e.g.
// "cudnn" / "own"): the op's trace event and lc::last_op_report() carry it.
void note_op_impl(const char* impl) noexcept;
// What the forward and the backward share: the inputs, their shapes and strides, the mask.
struct MhaProblem {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  std::int64_t batch = 0, heads = 0, kv_heads = 0, sq = 0, sk = 0, d = 0, dv = 0;
  std::int64_t q_strides[3] = {}, k_strides[3] = {}, v_strides[3] = {};  // batch, head, row
  const void* mask = nullptr;
  MaskKind mask_kind = MaskKind::none;
  DType mask_dtype = DType::f32;
  std::int64_t mask_strides[4] = {};  // batch, head, row, key
  bool causal = false;
  double scale = 1.0;  // double so float64 calls keep 1/sqrt(d) exact; float32 kernels round it
  DType dtype = DType::f32;
};

struct MhaArgs : MhaProblem {
  void* out = nullptr;
  float* lse = nullptr;  // optional
  // out's (batch, head, row) element strides; all zero: contiguous [batch, heads, sq, dv]
  // (mha_out_strides() resolves them). The rows a kernel writes never overlap.
  std::int64_t out_strides[3] = {};
  Precision precision = Precision::fp32;  // float32 storage: fp32 or tf32 (the kernels may stay exact)
};

// MhaArgs' out strides with the all-zero default resolved to contiguous [batch, heads, sq, dv].
inline void mha_out_strides(const MhaArgs& a, std::int64_t st[3]) {
  if (a.out_strides[0] == 0 && a.out_strides[1] == 0 && a.out_strides[2] == 0) {
    st[2] = a.dv;
    st[1] = a.sq * a.dv;
    st[0] = a.heads * a.sq * a.dv;
  } else {
    for (int i = 0; i < 3; ++i) st[i] = a.out_strides[i];
  }
}

// The backward of MhaArgs' attention (lc.attention_backward), flash-attention-2 style: with
// P = exp(S - lse) recomputed tile by tile from q, k and the forward's lse (no sq x sk matrix is
// stored) and D_i = sum_c dout[i,c] out[i,c]:
//   dv_j += sum_i P_ij dout_i,  dP = dout v^T,  dS = P * (dP - D),
//   dq_i = scale * sum_j dS_ij k_j,  dk_j += scale * sum_i dS_ij q_i
// summed over the query heads that share a key/value head. Masked keys and rows with lse = -inf
// (no visible key) contribute exactly 0 (never 0 * inf). q, k, v, out, dout are read through
// (batch, head, row) element strides with unit-stride columns (out / dout have q's heads and
// dv columns); lse is contiguous float32 [batch, heads, sq]; dq [batch, heads, sq, d],
// dk [batch, kv_heads, sk, d] and dv_out [batch, kv_heads, sk, dv] are contiguous and fully
// written. Mask, causal, scale and dtype as MhaArgs.
struct MhaBackwardArgs : MhaProblem {
  const void* out = nullptr;
  const void* dout = nullptr;
  const float* lse = nullptr;
  void* dq = nullptr;
  void* dk = nullptr;
  void* dv_out = nullptr;
  std::int64_t out_strides[3] = {}, dout_strides[3] = {};  // batch, head, row
};

// out[n,oc,oh,ow] = act(conv(x[n,c,h,w], w[oc,c,kh,kw]) + bias[oc]); oh = (h+2ph-kh)/sh+1.
struct Conv2dArgs {
  const float* x = nullptr;
  const float* w = nullptr;
  const float* bias = nullptr;  // optional
  float* out = nullptr;
  std::int64_t n = 0, c = 0, h = 0, w_in = 0;
  std::int64_t oc = 0, kh = 0, kw = 0;
  std::int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  std::int64_t oh = 0, ow = 0;
  Activation act = Activation::none;
};

// Row-wise over x[rows, cols]: out = (x - mean) / sqrt(var + eps) * gamma + beta.
// With a residual (rows x cols, contiguous like x) the row is x + residual, summed in the
// compute type as the row is read (the fused residual add + layernorm: no extra kernel, no
// temporary; 16-bit sums are not rounded to 16 bits before the statistics).
// x, gamma, beta, residual and out hold `dtype` elements (all the same): float32, float16,
// bfloat16, or float64 on the CPU only. 16-bit rows are computed in float32 and rounded once on
// store; float64 rows are computed in float64. rows or cols may be 0 (nothing to do).
struct LayerNormArgs {
  const void* x = nullptr;
  const void* gamma = nullptr;  // optional, length cols
  const void* beta = nullptr;   // optional, length cols
  void* out = nullptr;
  std::int64_t rows = 0, cols = 0;
  float eps = 1e-5f;
  DType dtype = DType::f32;
  // optional, rows x cols (nullptr: none); last, so brace-initialised args keep their meaning
  const void* residual = nullptr;
};

// Row-wise softmax over the last dimension of x[rows, cols] (dtypes as LayerNormArgs):
// out = softmax(x * scale + mask), the scale and the additive mask applied in the compute type
// as the row is read (the fused softmax + scale + mask: no extra kernel, no temporary).
struct SoftmaxArgs {
  const void* x = nullptr;
  void* out = nullptr;
  std::int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;
  // (last, so brace-initialised args keep their meaning)
  float scale = 1.0f;
  // optional additive mask of `dtype`, contiguous [mask_outer * mask_rows, cols]: row r of x
  // reads mask row softmax_mask_row(r) = ((r / (mask_repeat * mask_rows)) % mask_outer) *
  // mask_rows + r % mask_rows. The defaults (outer 1): r % mask_rows, a mask over x's trailing
  // dimensions repeated over the leading ones; outer > 1: a mask broadcast over middle
  // dimensions, such as [B, 1, 1, S] (outer B, repeat H * S, rows 1) or [B, 1, S, S] for scores
  // [B, H, S, S] (src/ops/registry.h softmax_mask_layout).
  const void* mask = nullptr;
  std::int64_t mask_rows = 1, mask_repeat = 1, mask_outer = 1;

  std::int64_t mask_row(std::int64_t r) const {
    return ((r / (mask_repeat * mask_rows)) % mask_outer) * mask_rows + r % mask_rows;
  }
};

// gelu is the tanh approximation (what gelu computed before approximate= existed); gelu_erf is
// the exact 0.5 x (1 + erf(x / sqrt 2)). div is a / b.
enum class EwKind : std::uint8_t { add, sub, mul, scale, relu, gelu, div, gelu_erf };

// The elementwise operand layout's dimension limit (Tensor's kMaxDims).
constexpr int kEwMaxDims = 8;

// out[i] = a[i] (op) b[i]  |  a[i] * alpha (scale)  |  act(a[i]).  b is null for unary kinds.
// Every pointer holds `dtype` elements (float32, float16, bfloat16; float64 on the CPU only);
// kernels compute in float32 (float64 in float64).
//   ndim == 0: a, b and out are contiguous with n elements (the fast path). Any alignment; out
//              may alias a or b.
//   ndim  > 0: out is contiguous with `shape` (n = its element count); a and b are read
//              through their own element strides over that shape (0 on broadcast dimensions,
//              any sign): numpy broadcasting and non-contiguous inputs without staging. out
//              must not overlap a or b here (the core routes such an out through scratch).
struct ElementwiseArgs {
  EwKind kind = EwKind::add;
  const void* a = nullptr;
  const void* b = nullptr;
  void* out = nullptr;
  std::int64_t n = 0;
  float alpha = 1.0f;
  DType dtype = DType::f32;
  int ndim = 0;
  // Read only for ndim > 0 (left uninitialised otherwise: the contiguous hot path does not pay
  // for zeroing them).
  std::int64_t shape[kEwMaxDims];
  std::int64_t a_strides[kEwMaxDims];
  std::int64_t b_strides[kEwMaxDims];
};

// out[idx] = prog(in[0][idx], ..., in[n_inputs-1][idx]) (ew_program.h) for every index of the
// output. Each input has its own storage dtype (float32, float16, bfloat16; float64 on the CPU
// only); out has out_dtype. Computed in float32, or float64 when out_dtype is float64 (CPU).
//   ndim == 0: every input and out are contiguous with n elements (the fast path; vector loads
//              where the pointers allow). out may alias an input.
//   ndim  > 0: out is contiguous with `shape` (n = its element count); input k is read through
//              strides[k] (element strides over that shape, 0 on broadcast dimensions, any
//              sign). out must not overlap an input here (the core routes it through scratch).
// Fits in a CUDA kernel's parameters by value (< 1 KB).
struct EwProgramArgs {
  EwProgram prog;
  int n_inputs = 0;
  const void* in[kEwProgMaxInputs] = {};
  DType in_dtype[kEwProgMaxInputs] = {};
  void* out = nullptr;
  DType out_dtype = DType::f32;
  std::int64_t n = 0;
  int ndim = 0;
  std::int64_t shape[kEwMaxDims] = {};
  std::int64_t strides[kEwProgMaxInputs][kEwMaxDims] = {};
};

// dst[idx] = convert(src[idx]) for every index of `shape`, each side through its own element
// strides (any sign, 0 allowed on the source): a gather/scatter with dtype conversion between
// any two storage dtypes (floats round to nearest even, float -> int truncates toward zero,
// NaN / out-of-range give the integer minimum, as convert_elements). Source and destination
// must not overlap unless they are the very same elements with the same dtype (the core
// copies through a temporary otherwise). ndim 0 copies one element.
struct StridedCopyArgs {
  const void* src = nullptr;
  void* dst = nullptr;
  DType src_dtype = DType::f32;
  DType dst_dtype = DType::f32;
  int ndim = 0;
  std::int64_t shape[kEwMaxDims] = {};
  std::int64_t src_strides[kEwMaxDims] = {};
  std::int64_t dst_strides[kEwMaxDims] = {};
};

// out[i, :] = weight[ids[i], :] for n ids (int32 or int64) into a [V, D] weight of `dtype`
// (float32 / float16 / bfloat16). All contiguous. An id outside [0, V) never reads out of
// bounds: its row of out is written with zeros (the core checks ids first with
// first_bad_index and raises, so callers never see those zeros).
struct EmbeddingArgs {
  const void* ids = nullptr;
  DType ids_dtype = DType::i64;
  const void* weight = nullptr;
  void* out = nullptr;
  DType dtype = DType::f32;
  std::int64_t n = 0, vocab = 0, dim = 0;
};

// One LSTM layer over a sequence (lc.lstm; torch.nn.LSTM's layout, gate order i, f, g, o):
//   gates_t = x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh            [B, 4H]
//   i, f, o = sigmoid(gates_t[:, 0:H], [H:2H], [3H:4H]);  g = tanh(gates_t[:, 2H:3H])
//   c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t);  y[t] = h_t
// x [T, B, I], h0 / c0 [B, H], w_ih [4H, I], w_hh [4H, H], b_ih / b_hh [4H] (each optional),
// y [T, B, H], h_n / c_n [B, H] = h_T / c_T (h0 / c0 when T == 0). All contiguous and of
// `dtype` (float32, float16, bfloat16); the cell state is kept in float32 between steps and
// every sum accumulates in float32. The structure is one GEMM x w_ih^T over all T steps, then
// per step one GEMM h_{t-1} w_hh^T and one fused pointwise pass (backends/cpu/lstm.cpp,
// backends/cuda/lstm.cu). `precision` is the compute mode of float32 GEMMs (as MatmulArgs).
// Any of T, B, I, H may be 0 (I == 0: x contributes nothing).
struct LstmArgs {
  const void* x = nullptr;
  const void* h0 = nullptr;
  const void* c0 = nullptr;
  const void* w_ih = nullptr;
  const void* w_hh = nullptr;
  const void* b_ih = nullptr;  // optional
  const void* b_hh = nullptr;  // optional
  void* y = nullptr;
  void* h_n = nullptr;
  void* c_n = nullptr;
  std::int64_t steps = 0, batch = 0, input = 0, hidden = 0;  // T, B, I, H
  DType dtype = DType::f32;
  Precision precision = Precision::fp32;
};

// Device memory as the backend sees it (known=false where the backend has no such notion).
struct MemoryInfo {
  bool known = false;
  std::size_t free = 0, total = 0;   // the device's free/total memory
  std::size_t in_use = 0;            // held by live tensors of this process
  std::size_t cached = 0;            // kept by the caching allocator for reuse
};

// ---- The seam: what only a backend knows: graph capture, tuning, fingerprints -----------------
// (These structs and the block at the end of class Backend. The core, the ops, the sessions and
// the bindings reach them through get_backend(kind) and never include a backend's own headers
// or test LC_HAVE_CUDA.)

// Graph capture and replay: the ONE mechanism for replaying a recorded op sequence (resident
// sessions' use_graph, conv_attention_nchw's graph mode). A caller records a fixed sequence of
// ops and replays it many times. The backend keeps instantiated graphs in a cache keyed by
// what does not change between replays: the topology (which ops in which order, with which
// attributes), the shapes and the dtypes, never the buffer addresses. The addresses are the
// graph's binding: a replay whose binding differs from the recorded one records the work again
// and updates the instantiated graph in place (CUDA: cudaGraphExecUpdate; a fresh instantiation
// only when the update is refused), so new buffers cost a re-record, not a new graph.
// (cuda::launch's replay of repeated single launches, src/backends/cuda/launch.h, is the CUDA
// backend's own launch-level optimisation underneath, invisible through this seam.)

// What identifies a recording apart from its buffers. `topology` names the op sequence and its
// attributes; `dims` holds the shapes, dtypes and any further numbers, flattened by the caller.
struct CaptureKey {
  std::string topology;
  std::vector<std::int64_t> dims;
  bool operator==(const CaptureKey& o) const { return topology == o.topology && dims == o.dims; }
};

// The buffers a recording reads and writes (device addresses), compared pointer by pointer on
// every replay: the fast path is this comparison, no lookup and no hashing.
constexpr int kMaxGraphBinding = 16;
struct GraphBinding {
  const void* ptrs[kMaxGraphBinding] = {};
  int n = 0;
  // Returns false (and adds nothing) when the binding is full.
  bool add(const void* p) {
    if (n >= kMaxGraphBinding) return false;
    ptrs[n++] = p;
    return true;
  }
  bool operator==(const GraphBinding& o) const {
    if (n != o.n) return false;
    for (int i = 0; i < n; ++i)
      if (ptrs[i] != o.ptrs[i]) return false;
    return true;
  }
  bool operator!=(const GraphBinding& o) const { return !(*this == o); }
};

// The work a graph records: a non-owning reference to a callable (no allocation), valid for the
// call it is passed to. It must only enqueue work on the backend (no synchronize(), no copy to
// the host) and must use exactly the buffers of the binding it comes with.
class WorkRef {
 public:
  template <typename F>
  WorkRef(F& f) : ctx_(&f), fn_([](void* c) { (*static_cast<F*>(c))(); }) {}  // NOLINT
  void operator()() const { fn_(ctx_); }

 private:
  void* ctx_;
  void (*fn_)(void*);
};

struct CapturedGraphStats {
  std::uint64_t replays = 0;         // replay() calls
  std::uint64_t records = 0;         // recordings (the first, and one per binding change)
  std::uint64_t updates = 0;         // recordings applied to the instantiated graph in place
  std::uint64_t instantiations = 0;  // graphs instantiated (first use, or an update refused)
};

// A recording checked out of the backend's cache by one owner (a session, one entry of
// conv -> attention's graph cache). Destroying it gives the instantiated graph back to the
// cache, where the next owner with the same key picks it up and records its own work into it
// (replays still in flight are safe: the cache waits for the queue before a graph records again
// or is freed). Not thread-safe: its owner serialises the calls.
class CapturedGraph {
 public:
  virtual ~CapturedGraph() = default;
  // Runs the recorded work on the backend's queue (asynchronously, like an op). When nothing is
  // recorded yet or `binding` differs from the recorded one, `work` is recorded first. The
  // first recording of a key must follow one eager run of the same work (the caller's job:
  // first-use set-up such as an algorithm search may synchronise, which a capture forbids).
  virtual void replay(WorkRef work, const GraphBinding& binding) = 0;
  // True when replays run a recorded graph; false for direct execution (work() per replay).
  virtual bool is_graph() const = 0;
  const CaptureKey& key() const { return key_; }
  const CapturedGraphStats& stats() const { return stats_; }

 protected:
  explicit CapturedGraph(CaptureKey key) : key_(std::move(key)) {}
  CaptureKey key_;
  CapturedGraphStats stats_;
};

// Direct execution: what a backend without graphs gives out (the CPU): replay() runs the work.
class DirectGraph final : public CapturedGraph {
 public:
  explicit DirectGraph(CaptureKey key) : CapturedGraph(std::move(key)) {}
  void replay(WorkRef work, const GraphBinding&) override {
    ++stats_.replays;
    work();
  }
  bool is_graph() const override { return false; }
};

// The graph cache as a whole (for tests and diagnostics).
struct GraphCacheStats {
  std::size_t checked_out = 0;       // graphs owned right now
  std::size_t idle = 0;              // instantiated graphs waiting for an owner
  std::uint64_t reused = 0;          // check-outs served by an idle graph of the same key
  std::uint64_t instantiations = 0;  // graphs instantiated, all owners together
  std::uint64_t updates = 0;         // in-place updates, all owners together
};

// Tuning: a choice among a backend's own algorithms for one GEMM (autotune::prepare_gemm).
struct GemmAlgorithm {
  int index = 0;       // pass to matmul_with_algorithm / set_gemm_algorithm
  std::string detail;  // "algo=.. tile=.. stages=.. splitk=.. workspace=.."
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual DeviceKind kind() const = 0;
  virtual const char* name() const = 0;
  // Compiled in AND usable now (a driver and a device present). Cheap after the first call.
  virtual bool available() const = 0;
  virtual std::string unavailable_reason() const = 0;
  // Human-readable device description ("NVIDIA H100 80GB HBM3, sm_90, 132 SMs", "x86-64, 16 threads").
  virtual std::string device_description() const = 0;

  // Memory in this backend's address space. alloc throws lc::OutOfMemory; bytes may be 0.
  virtual void* alloc(std::size_t bytes) = 0;
  virtual void free(void* p) noexcept = 0;
  // Copies between host memory and this backend's memory (same-space copy for the CPU).
  // Asynchronous on queue-based backends; synchronize() makes them complete.
  virtual void copy_from_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_within(void* dst, const void* src, std::size_t bytes) = 0;
  // dst[i] = src[i % have] for 0 <= i < need: a flat buffer repeated cyclically (conv ->
  // attention's QKV arrangement). Default: copy_within calls that double the filled prefix
  // (log2(need / have) + 1 copies); a backend with kernels does it in one launch.
  virtual void tile_cyclic(float* dst, const float* src, std::int64_t have, std::int64_t need) {
    if (have <= 0 || need <= 0) return;
    std::int64_t filled = have < need ? have : need;
    copy_within(dst, src, static_cast<std::size_t>(filled) * sizeof(float));
    while (filled < need) {
      const std::int64_t n = filled < need - filled ? filled : need - filled;
      copy_within(dst + filled, dst, static_cast<std::size_t>(n) * sizeof(float));
      filled += n;
    }
  }
  // Waits for the work of this thread's current stream on the current device (what an op
  // with sync="per_call" waits for).
  virtual void synchronize() = 0;
  // Waits for the work of every device and stream of this backend the process has used
  // (lc.synchronize()).
  virtual void synchronize_all() { synchronize(); }

  // ---- Devices and streams ------------------------------------------------------------------
  // A backend drives device_count() devices, numbered from 0. Each thread has a current device
  // (0 until changed) and, per device, a current stream (the device's default stream until
  // changed); allocations, copies and ops of the thread go to them. The core makes the op's
  // device current for the op's duration (DeviceScope below), so the kernels and the backend's
  // helpers just use "the current device". Backends with one device and in-order execution
  // (the CPU) keep these defaults: one device, streams that are plain tokens.
  virtual int device_count() { return available() ? 1 : 0; }
  // Cheap (a thread-local read); never initialises the device.
  virtual int current_device() const { return 0; }
  // Throws lc::ValueError naming the devices present when `index` is not one of them.
  virtual void set_current_device(int index) {
    if (index != 0)
      throw_value("set_device", std::string(name()) + ":" + std::to_string(index) +
                                    " does not exist: the " + name() + " backend has one device, " +
                                    name() + ":0");
  }
  // Streams and events are opaque handles owned by the backend; nullptr names the device's
  // default stream. stream_create makes a new stream on device `index`.
  virtual void* stream_create(int /*index*/) { return nullptr; }
  virtual void stream_destroy(void* /*stream*/) noexcept {}
  // The calling thread's current stream on the current device.
  virtual void* current_stream() { return nullptr; }
  // The default stream of device `index` (the handle current_stream() gives when no other
  // stream was made current).
  virtual void* default_stream(int /*index*/) { return nullptr; }
  // The stream's native handle for other libraries (a cudaStream_t as an integer; 0 where the
  // backend has none), e.g. torch.cuda.ExternalStream(stream.cuda_stream).
  virtual std::uintptr_t native_stream(void* /*stream*/) { return 0; }
  // The device a stream belongs to.
  virtual int stream_device(void* /*stream*/) { return 0; }
  // Makes `stream` (of the current device; nullptr = default) current for this thread.
  virtual void set_current_stream(void* /*stream*/) {}
  virtual void stream_synchronize(void* /*stream*/) {}
  // True when every piece of work queued on `stream` has finished.
  virtual bool stream_query(void* /*stream*/) { return true; }
  // Work queued on `stream` after this call waits until `event` has completed.
  virtual void stream_wait_event(void* /*stream*/, void* /*event*/) {}
  // Events mark a point in a stream. timing: elapsed_ms between two events can be asked.
  virtual void* event_create(bool timing);
  virtual void event_destroy(void* event) noexcept;
  virtual void event_record(void* event, void* stream);
  virtual void event_synchronize(void* /*event*/) {}
  virtual bool event_query(void* /*event*/) { return true; }
  // Milliseconds between two recorded timing events (ValueError when either was not recorded).
  virtual double event_elapsed_ms(void* begin, void* end);
  // Tells the caching allocator that the block at `ptr` (this backend's alloc()) is also used by
  // work on `stream`: when freed, it is reused only after that work completes.
  virtual void record_stream(void* /*ptr*/, void* /*stream*/) {}
  // Copies `bytes` from device src_index to device dst_index directly (peer to peer) and
  // returns true, or returns false when this backend cannot (the core then goes through host
  // memory). Ordered after the work queued on both devices' current streams.
  virtual bool copy_peer(void* /*dst*/, int /*dst_index*/, const void* /*src*/, int /*src_index*/,
                         std::size_t /*bytes*/) {
    return false;
  }

  // Memory statistics and returning cached blocks to the device (no-ops on the CPU).
  virtual MemoryInfo memory_info() { return {}; }
  virtual void empty_cache() {}

  // Hooks for the core's single launch path (src/core/launch.h); defaults do nothing.
  // range_push/pop: named ranges a profiler shows (NVTX on CUDA).
  virtual void range_push(const char* /*name*/) {}
  virtual void range_pop() {}
  // Device clock for the trace: mark() records a point on the backend's queue and returns an
  // id (-1 when the backend has no device clock); elapsed_ns(begin, end) waits for both points
  // and returns the device time between them (-1 if unknown). Ids are released by
  // release_marks() when the trace is cleared.
  virtual std::int64_t mark() { return -1; }
  virtual double elapsed_ns(std::int64_t /*begin*/, std::int64_t /*end*/) { return -1.0; }
  virtual void release_marks() {}

  // Ops. Pointers are contiguous and in this backend's memory.
  virtual void matmul(const MatmulArgs& a) = 0;
  virtual void attention(const AttentionArgs& a) = 0;
  // Batched multi-head / grouped-query attention (MhaArgs).
  virtual void attention_mha(const MhaArgs& a) = 0;
  // Its backward (MhaBackwardArgs). Default: not supported by this backend (the CPU and CUDA
  // have it; the op registry keeps other backends off it, so this is only reached by a direct
  // call).
  virtual void attention_mha_backward(const MhaBackwardArgs& /*a*/) {
    throw_value("attention_backward", std::string("the ") + name() +
                                          " backend does not implement the attention backward yet; "
                                          "run it on the CPU (device=\"cpu\" or \"auto\")");
  }
  virtual void conv2d(const Conv2dArgs& a) = 0;
  // One LSTM layer (LstmArgs). Default: not supported by this backend (the CPU and CUDA have
  // it; the op registry keeps other backends off it).
  virtual void lstm(const LstmArgs& /*a*/) {
    throw_value("lstm", std::string("the ") + name() +
                            " backend does not implement lstm; run it on the CPU (device=\"cpu\")");
  }
  // Extra key=value facts of this backend's build for lc.build_info() (CUDA: the cuDNN
  // frontend version compiled in, or "no").
  virtual std::vector<std::pair<std::string, std::string>> build_facts() { return {}; }
  virtual void layernorm(const LayerNormArgs& a) = 0;
  virtual void softmax(const SoftmaxArgs& a) = 0;
  virtual void elementwise(const ElementwiseArgs& a) = 0;
  // An elementwise program (EwProgramArgs). Default: not supported by this backend (the CPU and
  // CUDA have it; the op registry keeps other backends off it).
  virtual void elementwise_program(const EwProgramArgs& /*a*/) {
    throw_value("elementwise_program", std::string("the ") + name() +
                                           " backend does not implement elementwise programs; "
                                           "run it on the CPU (device=\"cpu\")");
  }
  // Strided copy with dtype conversion within this backend's memory (StridedCopyArgs).
  virtual void copy_strided(const StridedCopyArgs& a) = 0;
  virtual void embedding(const EmbeddingArgs& a) = 0;
  // The flat position of the first id outside [0, vocab) among n contiguous int32/int64 ids in
  // this backend's memory, or -1. Waits for the answer (on CUDA: one small kernel, an 8-byte
  // download and a stream synchronisation).
  virtual std::int64_t first_bad_index(const void* ids, DType ids_dtype, std::int64_t n,
                                       std::int64_t vocab) = 0;
  // sum_i x[i]^2 in float64 over n contiguous elements of a float dtype (f32 / f64 / f16 / bf16)
  // in this backend's memory: the training step's MSE loss without downloading the tensor.
  // Deterministic (a fixed split into partial sums for a given n and device). Waits for the
  // answer (on CUDA: two small kernels, an 8-byte download and a stream synchronisation).
  virtual double sum_squares(const void* x, DType dtype, std::int64_t n) = 0;

  // ---- The seam: what only a backend knows (structs above class Backend) ----
  // -- graph capture --
  // Whether capture_graph() gives out real graphs (false: DirectGraph, direct execution).
  virtual bool graphs_supported() const { return false; }
  // A graph for `key`, checked out of the cache (an idle one of the same key when there is one).
  virtual std::unique_ptr<CapturedGraph> capture_graph(const CaptureKey& key) {
    return std::make_unique<DirectGraph>(key);
  }
  virtual GraphCacheStats graph_cache_stats() { return {}; }
  // Frees every idle graph of the cache (checked-out graphs are untouched).
  virtual void graph_cache_clear() {}

  // -- libraries --
  // Directories to search for the backend's vendor libraries after the loader's own search
  // (the lib folders of NVIDIA's pip wheels: the Python layer finds them at import). Only
  // libraries not loaded yet are affected. Default: nothing to load.
  virtual void set_library_dirs(const std::vector<std::string>& /*dirs*/) {}

  // -- collectives (collective.h, lc.distributed) --
  // Defaults: this backend has no collectives (lc::BackendError naming it).
  // A fresh group id (opaque bytes; NCCL: the 128-byte ncclUniqueId) that rank 0 hands to the
  // other ranks (python/lightning_core/distributed.py's rendezvous).
  virtual std::string collective_unique_id() { no_collectives("distributed.init"); }
  // Joins group `id` as `rank` of `nranks`, driving device `device`; returns when every rank
  // joined (collective: every rank calls it).
  virtual std::unique_ptr<Communicator> collective_init(const std::string& /*id*/, int /*nranks*/,
                                                        int /*rank*/, int /*device*/) {
    no_collectives("distributed.init");
  }
  // One process driving every device of `devices`: one communicator per device, rank i on
  // devices[i] (NCCL: ncclCommInitAll).
  virtual std::vector<std::unique_ptr<Communicator>> collective_init_all(
      const std::vector<int>& /*devices*/) {
    no_collectives("distributed.init_all");
  }
  // Brackets the calls on several communicators of one process (one per device) so they launch
  // as one collective (NCCL: ncclGroupStart / ncclGroupEnd); also pairs a send with a recv.
  virtual void collective_group_start() {}
  virtual void collective_group_end() {}
  // The collective library (load = false: report without loading it).
  virtual CollectiveLibraryInfo collective_library_info(bool /*load*/) { return {}; }

  // -- tuning and fingerprints --
  // Whether this build compiled the backend in (false for the stubs of src/backends/no_*).
  virtual bool compiled() const { return true; }
  // What identifies the device and its libraries for auto-tune cache keys (autotune.h's
  // device_fingerprint): any change invalidates the choices measured on the old combination.
  virtual std::string fingerprint() = 0;
  // The backend's candidate GEMM algorithms for this product (sizes, flags, precision and dtype
  // read from `a`; pointers may be null), best guess first; empty when it has no choice to make.
  virtual std::vector<GemmAlgorithm> gemm_algorithms(const MatmulArgs& /*a*/, int /*max*/) {
    return {};
  }
  // Runs the product with candidate `index` (throws lc::ValueError when out of range).
  virtual void matmul_with_algorithm(const MatmulArgs& /*a*/, int index) {
    throw_value("matmul_with_algorithm", "this backend has no GEMM algorithm " +
                                             std::to_string(index) + " to choose");
  }
  // Makes candidate `index` the one matmul() uses for this product's key from now on.
  virtual void set_gemm_algorithm(const MatmulArgs& /*a*/, int index) {
    throw_value("set_gemm_algorithm", "this backend has no GEMM algorithm " +
                                          std::to_string(index) + " to choose");
  }

  // -- tuned execution --
  // Choices a backend measures for itself (the CPU: the GEMM path, OpenBLAS's threads vs pooled
  // tiles; the conv path, direct vs im2col), persisted in the auto-tune cache when `tune` (the
  // policy's autotune) and LC_AUTOTUNE allow. tune_*() returns the choice for these arguments,
  // measuring it the first time by running the op (it writes a.out; the caller runs the op
  // afterwards anyway); *_tuned() runs the op with a choice. Choice 0 is the backend's built-in
  // rule, what matmul() / conv2d() do; the defaults know no other.
  virtual int tune_matmul(const MatmulArgs& /*a*/, bool /*tune*/) { return 0; }
  virtual void matmul_tuned(const MatmulArgs& a, int /*choice*/) { matmul(a); }
  virtual int tune_conv2d(const Conv2dArgs& /*a*/, bool /*tune*/) { return 0; }
  virtual void conv2d_tuned(const Conv2dArgs& a, int /*choice*/) { conv2d(a); }

 private:
  [[noreturn]] void no_collectives(const char* op) const {
    throw_backend(op, std::string("the ") + name() +
                          " backend has no collectives (lc.distributed runs on \"cuda\" "
                          "devices through NCCL)");
  }
};

// The registry (src/runtime/backend_registry.cpp). Always returns an object; check available().
Backend& get_backend(DeviceKind kind);

// RAII: makes device `index` of `kind` the calling thread's current device for the scope and
// restores the previous one after (nothing to do for the CPU, index < 0 or the device that is
// current already: the single-GPU path pays one thread-local read).
class DeviceScope {
 public:
  DeviceScope(DeviceKind kind, int index) {
    if (kind == DeviceKind::cpu || index < 0) return;
    Backend& be = get_backend(kind);
    const int cur = be.current_device();
    if (cur == index) return;
    be.set_current_device(index);
    be_ = &be;
    prev_ = cur;
  }
  ~DeviceScope() {
    if (be_) {
      try {
        be_->set_current_device(prev_);
      } catch (...) {  // the previous device existed a moment ago; nothing sensible to report
      }
    }
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  Backend* be_ = nullptr;
  int prev_ = 0;
};

}  // namespace lc
