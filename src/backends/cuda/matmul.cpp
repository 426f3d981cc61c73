// cuBLASLt matmul / linear (see matmul.h). cuBLASLt is loaded on the first GEMM
// (vendor_libs.h): the handle and its 32 MiB workspace are created then, not with the context.
// matmul() goes through cuda::run_captured (launch.h): a product repeated with the same plan and
// pointers replays a captured graph of the cuBLASLt call.
#include "backends/cuda/matmul.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "backends/cuda/check.h"
#include "backends/cuda/context.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/vendor_libs.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

// The cuBLASLt side of the context: the library's table, the handle, the workspace.
struct Lt {
  const vendor::CublasLtApi* api = nullptr;
  cublasLtHandle_t h = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
};

struct LtHolder {
  std::once_flag once;
  Lt lt;
};

// Loads cuBLASLt and creates the current device's handle + workspace on its first GEMM (call
// after ctx(), which made the device current). Throws lc::BackendError when the library cannot
// be loaded; a failed attempt is retried by the next call (the library's own load is attempted
// once).
Lt& lt() {
  static auto* all = new LtHolder[kMaxDevices];  // leaked: handles must outlive static dtors
  LtHolder* h = &all[current_device()];
  std::call_once(h->once, [&] {
    const vendor::CublasLtApi& api = vendor::cublaslt("matmul");
    cublasLtHandle_t handle = nullptr;
    LC_CUBLAS_CHECK(api.cublasLtCreate(&handle));
    const std::size_t bytes = std::size_t{32} << 20;
    void* ws = nullptr;
    const cudaError_t e = cudaMalloc(&ws, bytes);
    if (e != cudaSuccess) {
      api.cublasLtDestroy(handle);
      LC_CUDA_CHECK(e);
    }
    h->lt = Lt{&api, handle, ws, bytes};
  });
  return h->lt;
}

// Everything a plan's descriptors depend on: (m, k, n, trans_b, epilogue, compute type,
// dtype, residual (beta = 1), pointer alignment class) and the batch layout (count, strides of
// a, b, out; all 0 for one product).
using Key = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool, int, int, int, bool,
                       std::uint32_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>;

struct Plan {
  const vendor::CublasLtApi* api = nullptr;  // set before any descriptor is created
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc_ = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> algos;  // grows on demand (tuner asks for more)
  int requested = 0;                                   // how many we asked cuBLASLt for
  int chosen = 0;
  std::uint32_t align = 256;  // bytes every operand pointer is aligned to (cuBLASLt preference)
  ~Plan() {
    if (la) api->cublasLtMatrixLayoutDestroy(la);
    if (lb) api->cublasLtMatrixLayoutDestroy(lb);
    if (lc_) api->cublasLtMatrixLayoutDestroy(lc_);
    if (op) api->cublasLtMatmulDescDestroy(op);
  }
};

cublasLtEpilogue_t epilogue_of(const MatmulArgs& a) {
  const bool bias = a.bias != nullptr;
  switch (a.act) {
    case Activation::relu: return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    case Activation::gelu: return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    case Activation::none: break;
    case Activation::gelu_erf: break;  // never here: src/ops/matmul.cpp runs it as a 2nd step
  }
  return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
}

// The precision modes are compute modes of float32 storage; 16-bit storage always runs
// COMPUTE_32F (its own tensor-core inputs, float32 accumulation).
cublasComputeType_t compute_of(Precision p, DType dt) {
  if (dt != DType::f32) return CUBLAS_COMPUTE_32F;
  switch (p) {
    case Precision::tf32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case Precision::bf16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case Precision::fp32: break;
  }
  return CUBLAS_COMPUTE_32F;
}

cudaDataType_t data_type_of(DType dt) {
  switch (dt) {
    case DType::f32: return CUDA_R_32F;
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: break;
  }
  throw BackendError(std::string("[matmul] the CUDA backend computes float32, float16 and "
                                 "bfloat16 only, got ") + to_string(dt));
}

bool batched(const MatmulArgs& a) { return a.batch > 1; }

// cuBLASLt assumes 256-byte aligned operands unless told otherwise; views with offsets are
// legal here, so the real alignment is part of the key and of the heuristic query. In a batch
// every product's matrices must be aligned too, so the strides (in bytes) count as well.
std::uint32_t alignment_of(const MatmulArgs& a) {
  std::uintptr_t bits = 256;
  for (const void* p : {a.a, a.b, static_cast<const void*>(a.out), a.bias, a.residual}) {
    if (p) bits |= reinterpret_cast<std::uintptr_t>(p);
  }
  if (batched(a)) {
    const auto esz = static_cast<std::uintptr_t>(dtype_size(a.dtype));
    for (std::int64_t st : {a.stride_a, a.stride_b, a.stride_out})
      bits |= static_cast<std::uintptr_t>(st) * esz;
  }
  return static_cast<std::uint32_t>(bits & (~bits + 1));  // lowest set bit, <= 256
}

Key key_of(const MatmulArgs& a) {
  const bool b = batched(a);
  return {a.m, a.k, a.n, a.trans_b, static_cast<int>(epilogue_of(a)),
          static_cast<int>(compute_of(a.precision, a.dtype)), static_cast<int>(a.dtype),
          a.residual != nullptr, alignment_of(a), b ? a.batch : 0, b ? a.stride_a : 0,
          b ? a.stride_b : 0, b ? a.stride_out : 0};
}

// Batch count and stride (elements) of one layout; a no-op for a single product.
void set_batch(const vendor::CublasLtApi& api, cublasLtMatrixLayout_t l, std::int64_t count,
               std::int64_t stride) {
  const std::int32_t c = static_cast<std::int32_t>(count);
  LC_CUBLAS_CHECK(api.cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &c,
                                                       sizeof(c)));
  LC_CUBLAS_CHECK(api.cublasLtMatrixLayoutSetAttribute(
      l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

struct Cache {
  std::mutex mu;
  std::map<Key, std::unique_ptr<Plan>> plans;
};
// One plan cache per device (algorithm heuristics are the device's).
Cache& cache() {
  static Cache* c = new Cache[kMaxDevices];  // leaked: handles must not be destroyed after the driver
  return c[current_device()];
}

// Makes sure plan has at least `want` heuristic results (if cuBLASLt has that many).
void fetch_algos(Lt& l, Plan& p, int want) {
  if (p.requested >= want) return;
  const vendor::CublasLtApi& api = *l.api;
  cublasLtMatmulPreference_t pref = nullptr;
  LC_CUBLAS_CHECK(api.cublasLtMatmulPreferenceCreate(&pref));
  std::size_t ws = l.workspace_bytes;
  cublasStatus_t st = api.cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
    if (st == CUBLAS_STATUS_SUCCESS)
      st = api.cublasLtMatmulPreferenceSetAttribute(pref, attr, &p.align, sizeof(p.align));
  }
  std::vector<cublasLtMatmulHeuristicResult_t> res(static_cast<std::size_t>(want));
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = api.cublasLtMatmulAlgoGetHeuristic(l.h, p.op, p.la, p.lb, p.lc_, p.lc_, pref, want,
                                            res.data(), &found);
  }
  api.cublasLtMatmulPreferenceDestroy(pref);
  LC_CUBLAS_CHECK(st);
  res.resize(static_cast<std::size_t>(found));
  p.algos = std::move(res);
  p.requested = want;
  if (p.algos.empty()) {
    throw BackendError("[matmul] cuBLASLt found no algorithm for this product and epilogue; "
                       "try another precision or pass 16-byte aligned tensors");
  }
}

// Creates (or finds) the plan for a's key; caller holds cache().mu.
Plan& plan_for(Lt& l, const MatmulArgs& a) {
  auto& slot = cache().plans[key_of(a)];
  if (slot) return *slot;
  const vendor::CublasLtApi& api = *l.api;
  auto p = std::make_unique<Plan>();
  p->api = &api;
  p->align = alignment_of(a);
  const cudaDataType_t dt = data_type_of(a.dtype);
  LC_CUBLAS_CHECK(api.cublasLtMatmulDescCreate(&p->op, compute_of(a.precision, a.dtype), CUDA_R_32F));
  // Column-major view: D^T[n,m] = opA(Bbuf) [n,k] * Abuf^T [k,m]
  const cublasOperation_t ta = a.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = CUBLAS_OP_N;
  LC_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LC_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  const cublasLtEpilogue_t epi = epilogue_of(a);
  LC_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (a.bias) {
    const cudaDataType_t bt = dt;  // the bias is stored like the output
    LC_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)));
    const void* bias = a.bias;  // any non-null value for the heuristic; set per call
    LC_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  const auto u = [](std::int64_t v) { return static_cast<std::uint64_t>(v); };
  // Bbuf: [k,n] row-major = col-major n x k (ld n); trans_b: [n,k] row-major = col-major k x n (ld k)
  if (a.trans_b) {
    LC_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p->la, dt, u(a.k), u(a.n), a.k));
  } else {
    LC_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p->la, dt, u(a.n), u(a.k), a.n));
  }
  // Abuf: [m,k] row-major = col-major k x m (ld k)
  LC_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p->lb, dt, u(a.k), u(a.m), a.k));
  // out (and the residual, read as C): [m,n] row-major = col-major n x m (ld n)
  LC_CUBLAS_CHECK(api.cublasLtMatrixLayoutCreate(&p->lc_, dt, u(a.n), u(a.m), a.n));
  if (batched(a)) {
    // Swapped operands: la is b's buffer, lb is a's. A broadcast operand has stride 0.
    set_batch(api, p->la, a.batch, a.stride_b);
    set_batch(api, p->lb, a.batch, a.stride_a);
    set_batch(api, p->lc_, a.batch, a.stride_out);
  }
  fetch_algos(l, *p, 1);
  slot = std::move(p);
  return *slot;
}

void run_plan(cudaStream_t stream, Lt& l, Plan& p, const MatmulArgs& a, int index) {
  const vendor::CublasLtApi& api = *l.api;
  if (a.bias) {
    const void* bias = a.bias;
    LC_CUBLAS_CHECK(api.cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  // The residual is C with beta = 1: D = epilogue(A B + C), so it is added before the
  // activation (cuBLASLt applies bias and activation to alpha A B + beta C).
  const float one = 1.0f, zero = 0.0f;
  const void* c = a.residual ? a.residual : a.out;
  const auto& h = p.algos[static_cast<std::size_t>(index)];
  LC_CUBLAS_CHECK(api.cublasLtMatmul(l.h, p.op, &one, a.b, p.la, a.a, p.lb,
                                     a.residual ? &one : &zero, c, p.lc_, a.out, p.lc_, &h.algo,
                                     l.workspace, l.workspace_bytes, stream));
}

bool degenerate(const MatmulArgs& a, Context& c) {
  if (a.m <= 0 || a.n <= 0 || a.batch <= 0) return true;
  if (a.k <= 0) {  // empty sum: out = act(bias + residual, or 0)
    launch_matmul_fill(a, c.stream);
    return true;
  }
  return false;
}

int config_attr(const Lt& l, const cublasLtMatmulAlgo_t& algo,
                cublasLtMatmulAlgoConfigAttributes_t attr) {
  std::uint32_t v = 0;
  std::size_t written = 0;
  if (l.api->cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof(v), &written) !=
      CUBLAS_STATUS_SUCCESS)
    return -1;
  return static_cast<int>(v);
}

}  // namespace

void matmul(const MatmulArgs& a) {
  Context& c = ctx();
  if (degenerate(a, c)) return;
  Lt& l = lt();
  std::lock_guard<std::mutex> lock(cache().mu);
  Plan& p = plan_for(l, a);
  // Repeated identical products (a resident GEMM in a loop) replay a captured graph of the
  // cuBLASLt call (launch.h run_captured): the key is everything the call reads. Plans are
  // never freed, so a plan's address identifies its descriptors.
  const std::uintptr_t key[] = {
      reinterpret_cast<std::uintptr_t>(&p),      static_cast<std::uintptr_t>(p.chosen),
      reinterpret_cast<std::uintptr_t>(a.a),     reinterpret_cast<std::uintptr_t>(a.b),
      reinterpret_cast<std::uintptr_t>(a.out),   reinterpret_cast<std::uintptr_t>(a.bias),
      reinterpret_cast<std::uintptr_t>(a.residual), reinterpret_cast<std::uintptr_t>(l.workspace)};
  static const char tag = 0;
  run_captured(&tag, key, sizeof key, c.stream, "matmul",
               [&](cudaStream_t s) { run_plan(s, l, p, a, p.chosen); });
}

std::vector<MatmulAlgoInfo> matmul_list_algos(const MatmulArgs& a, int max_algos) {
  (void)ctx();  // device check + current device before cuBLASLt
  std::vector<MatmulAlgoInfo> out;
  if (a.m <= 0 || a.n <= 0 || a.k <= 0 || a.batch <= 0 || max_algos <= 0) return out;
  Lt& l = lt();
  std::lock_guard<std::mutex> lock(cache().mu);
  Plan& p = plan_for(l, a);
  fetch_algos(l, p, max_algos);
  for (std::size_t i = 0; i < p.algos.size() && static_cast<int>(i) < max_algos; ++i) {
    const auto& h = p.algos[i];
    MatmulAlgoInfo info;
    info.index = static_cast<int>(i);
    info.algo_id = config_attr(l, h.algo, CUBLASLT_ALGO_CONFIG_ID);
    info.tile = config_attr(l, h.algo, CUBLASLT_ALGO_CONFIG_TILE_ID);
    info.stages = config_attr(l, h.algo, CUBLASLT_ALGO_CONFIG_STAGES_ID);
    info.splitk = config_attr(l, h.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM);
    info.workspace_bytes = h.workspaceSize;
    info.waves = h.wavesCount;
    out.push_back(info);
  }
  return out;
}

void matmul_with_algo(const MatmulArgs& a, int index) {
  Context& c = ctx();
  if (degenerate(a, c)) return;
  Lt& l = lt();
  std::lock_guard<std::mutex> lock(cache().mu);
  EnqueueScope enq;
  Plan& p = plan_for(l, a);
  fetch_algos(l, p, index + 1);
  if (index < 0 || index >= static_cast<int>(p.algos.size())) {
    throw_value("matmul", "algorithm index " + std::to_string(index) + " out of range: cuBLASLt "
                "offers " + std::to_string(p.algos.size()) + " for this shape "
                "(see matmul_list_algos)");
  }
  run_plan(c.stream, l, p, a, index);  // the tuner times each candidate's real launch
}

void matmul_set_algo(const MatmulArgs& a, int index) {
  (void)ctx();
  if (a.m <= 0 || a.n <= 0 || a.k <= 0 || a.batch <= 0) return;
  Lt& l = lt();
  std::lock_guard<std::mutex> lock(cache().mu);
  EnqueueScope enq;
  Plan& p = plan_for(l, a);
  fetch_algos(l, p, index + 1);
  if (index < 0 || index >= static_cast<int>(p.algos.size())) {
    throw_value("matmul", "algorithm index " + std::to_string(index) + " out of range (" +
                std::to_string(p.algos.size()) + " candidates)");
  }
  p.chosen = index;
}

}  // namespace lc::cuda
