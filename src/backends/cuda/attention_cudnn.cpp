// cuDNN's fused flash attention (attention_cudnn.h): the cuDNN frontend's SDPA graphs for the
// forward (out and the float32 natural-log lse, cuDNN's "Stats") and the backward (dq, dk, dv).
//
// Which calls come here (everything else returns false and runs our kernel, attention_mha.cu):
//   * float16 / bfloat16, no mask (MaskKind::none); causal only with sq <= sk (bottom-right, as
//     ours; with sq > sk the first rows see no key, and cuDNN does not promise our out = 0 /
//     lse = -inf there). Without a mask and with sq <= sk every row sees at least one key, so
//     rows without a visible key never reach cuDNN.
//   * d and dv multiples of 8 up to 256; batch, heads, sq, sk >= 1; every pointer 16-byte aligned
//     and every (batch, head, row) stride a non-negative multiple of 8 elements (16 bytes),
//     nonzero on dimensions longer than 1 (strides of length-1 dimensions are ignored); out's
//     strides (MhaArgs::out_strides) under the same rule;
//     compute capability 8.0 or newer.
//   * the choice (lc::attention_impl_choice): "own" never; "cudnn" always; "auto" when
//     batch * heads * sq * sk * (d + dv) >= 2^22 multiply-adds (below that both are a few
//     microseconds, launch-bound, and our one kernel launch has the smaller fixed cost), and,
//     for the forward, when the auto-tuner did not find our kernel faster for the shape (below).
//   * cuDNN loads and its heuristics / support check / plan build accept the graph.
//
// Auto-tuning ("auto", forward, LC_AUTOTUNE on): the first call of a shape above the size rule
// times a burst of 5 calls of each (cuDNN and our kernel, after one warm-up call each; CUDA
// events around the burst, so a host-bound call counts with its gaps) and keeps cuDNN unless
// ours took under 0.9x its time. The choice is persisted in the auto-tune cache (op
// "attention_mha.cuda_impl", keyed by the graph key and the device fingerprint) and remembered
// with the graph; a persisted choice is used without measuring. Not while the stream is being
// captured (a graph recording): the untimed answer is used then, and nothing is stored. The
// untimed answer (also with LC_AUTOTUNE off) is cuDNN, except for decode shapes (sq <= 8
// against sk >= 256 keys, attention_decode_applies): "our kernel" is then attention_decode.cu's
// flash decoding, which splits the keys over the whole GPU and reads each kv head's K/V once
// for its query heads, so it is the untimed answer there.
//
// Graphs are built once per key (dtype, sizes, strides, causal, mask kind, scale, with-lse,
// direction, device) and cached for the life of the process, negative results included (an
// unsupported key is not retried). The workspace comes from the caching allocator and goes back
// right after the enqueue (one stream: the next user is ordered after this call's kernels).
//
// Dynamic loading: the frontend is compiled with NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING, so its
// cudnn* calls resolve with dlsym on cudnn_frontend::cudnn_dlhandle, which is set here to the
// libcudnn vendor_libs.cpp opened (the module links no libcudnn; `import lightning_core` maps
// none). Its few CUDA runtime calls (workspace memsets) go through a shared libcudart the
// frontend opens itself; CUDNN_FRONTEND_CUDART_LIB_NAME is pointed at one of this toolkit's major
// version before the first graph (an existing setting is kept), so it never picks another major.
#include "backends/cuda/attention_cudnn.h"

#if defined(LC_HAVE_CUDNN_FRONTEND) && defined(LC_HAVE_CUDNN)

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <cudnn_frontend.h>

#include "backends/cuda/allocator.h"
#include "backends/cuda/context.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/vendor_libs.h"
#include "lightning_core/autotune.h"
#include "lightning_core/log.h"

#ifndef LC_CUDART_HINT_FILE
#define LC_CUDART_HINT_FILE ""
#endif

// The frontend's dynamic-loading mode reads the libcudnn handle from this variable (declared
// extern in cudnn_frontend_shim.h; the application defines it).
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend

namespace lc::cuda {

namespace fe = cudnn_frontend;

namespace {

using i64 = std::int64_t;

// Tensor uids of the graphs (the variant pack's keys).
enum : i64 { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

constexpr i64 kAutoMinMacs = i64{1} << 22;  // "auto": cuDNN from this much work up

// ---- one-time setup: libcudnn for the frontend, libcudart for its runtime calls, a handle ----

struct Setup {
  std::once_flag once;
  bool ok = false;
  std::string why;  // when !ok
};
Setup& setup() {
  static auto* s = new Setup();  // leaked: used until the process ends
  return *s;
}

void run_setup(Setup& s) {
  std::string reason;
  if (!vendor::try_cudnn(&reason)) {
    s.why = "cuDNN could not be loaded: " + reason;
    return;
  }
  fe::cudnn_dlhandle = vendor::cudnn_dl_handle();
  if (!fe::cudnn_dlhandle) {
    s.why = "no libcudnn handle";
    return;
  }
  const char* have = std::getenv("CUDNN_FRONTEND_CUDART_LIB_NAME");
  if (!have || !*have) {
    const std::string soname = "libcudart.so." + std::to_string(CUDART_VERSION / 1000);
    std::vector<std::string> cands = vendor::soname_candidates(soname);  // + pip wheel dirs
    cands.push_back(LC_CUDART_HINT_FILE);
    bool found = false;
    for (const std::string& cand : cands) {
      if (cand.empty()) continue;
      // Kept open: the frontend's own dlopen of the same name then finds this copy.
      if (dlopen(cand.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", cand.c_str(), 0);
        found = true;
        break;
      }
    }
    if (!found) {
      s.why = "no shared CUDA runtime " + soname + " for the cuDNN frontend (put its directory on "
              "LD_LIBRARY_PATH or set CUDNN_FRONTEND_CUDART_LIB_NAME)";
      return;
    }
  }
  s.ok = true;
}

// One cuDNN handle per device (created on that device's first graph; leaked at exit).
cudnnHandle_t handle_for(int device, std::string* why) {
  static auto* handles = new std::map<int, cudnnHandle_t>();
  auto it = handles->find(device);
  if (it != handles->end()) return it->second;
  const vendor::CudnnApi* api = vendor::try_cudnn(why);
  cudnnHandle_t h = nullptr;
  if (!api) return nullptr;
  const cudnnStatus_t st = api->cudnnCreate(&h);
  if (st != CUDNN_STATUS_SUCCESS) {
    *why = std::string("cudnnCreate failed: ") + api->cudnnGetErrorString(st);
    return nullptr;
  }
  (*handles)[device] = h;
  return h;
}

// ---- the graph cache ---------------------------------------------------------------------------

using Key = std::array<i64, 32>;

struct Entry {
  bool ok = false;  // false: cuDNN declined this key (not retried)
  std::shared_ptr<fe::graph::Graph> graph;
  i64 workspace = 0;
  std::vector<i64> uids;           // the user tensors' uids, ascending
  bool sorted_ok = false;          // the graph's user slots are exactly `uids` (fast execute)
  std::unordered_map<i64, void*> pack;  // reused by the map-form execute (under the mutex)
  int tuned = -1;                  // "auto" forward: -1 not decided, 0 our kernel, 1 cuDNN
};

struct Cache {
  std::mutex mu;
  std::map<Key, Entry> entries;
  bool logged_decline = false, logged_failure = false;
};
Cache& cache() {
  static auto* c = new Cache();  // leaked: graphs must not be destroyed after the driver unloads
  return *c;
}

// Caller holds the cache mutex. Logs the first decline (info) and the first failure of a graph
// that was built (warning); later ones at debug level (LC_LOG_LEVEL=DEBUG). Never throws.
void log_once(bool failure, const std::string& what) {
  Cache& c = cache();
  bool& flag = failure ? c.logged_failure : c.logged_decline;
  log::Level level = failure ? log::Level::warning : log::Level::info;
  if (flag) {
    if (!log::enabled(log::Level::debug)) return;
    level = log::Level::debug;
  }
  flag = true;
  log::message_noexcept(level,
                        std::string("attention: cuDNN flash attention ") +
                            (failure ? "failed" : "declined a call") + " (" + what +
                            "); that call and its shape run lightning_core's own CUDA kernel" +
                            (failure ? " from now on" : ""));
}

// (batch, head, row) element strides of a [n0, n1, n2, inner] view, with the strides of
// length-1 dimensions replaced by packed values (they address nothing). False when a stride
// cuDNN needs 16-byte aligned is not a multiple of 8 elements, or is 0 / negative on a
// dimension longer than 1.
bool norm_strides(const i64 in[3], i64 n0, i64 n1, i64 n2, i64 inner, i64 out[3]) {
  out[2] = n2 == 1 ? inner : in[2];
  out[1] = n1 == 1 ? n2 * out[2] : in[1];
  out[0] = n0 == 1 ? n1 * out[1] : in[0];
  for (int i = 0; i < 3; ++i)
    if (out[i] <= 0 || out[i] % 8 != 0) return false;
  return true;
}

// The common shape gate of both directions (sizes, dtype, mask, causal, choice, device).
bool eligible(DType dtype, MaskKind mask, bool causal, i64 b, i64 h, i64 hk, i64 sq, i64 sk,
              i64 d, i64 dv) {
  if (dtype != DType::f16 && dtype != DType::bf16) return false;
  if (mask != MaskKind::none) return false;
  if (b < 1 || h < 1 || hk < 1 || sq < 1 || sk < 1 || h % hk != 0) return false;
  if (d < 8 || dv < 8 || d > 256 || dv > 256 || d % 8 != 0 || dv % 8 != 0) return false;
  if (causal && sq > sk) return false;
  const AttentionImpl choice = attention_impl_choice();
  if (choice == AttentionImpl::own) return false;
  if (choice == AttentionImpl::automatic) {
    const double macs = static_cast<double>(b) * static_cast<double>(h) * static_cast<double>(sq) *
                        static_cast<double>(sk) * static_cast<double>(d + dv);
    if (macs < static_cast<double>(kAutoMinMacs)) return false;
  }
  return true;
}

fe::DataType_t io_type(DType t) {
  return t == DType::bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
}

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

std::shared_ptr<fe::graph::Tensor_attributes> bhsd(fe::graph::Graph& g, const char* name, i64 uid,
                                                   i64 b, i64 h, i64 s, i64 d, const i64 st[3]) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({b, h, s, d})
                      .set_stride({st[0], st[1], st[2], 1}));
}

// Throws std::runtime_error with the frontend's message when a step fails (build() catches).
void check(fe::error_t e, const char* step) {
  if (e.is_bad()) throw std::runtime_error(std::string(step) + ": " + e.get_message());
}

void finish_build(Entry& en, cudnnHandle_t h, std::vector<i64> uids) {
  fe::graph::Graph& g = *en.graph;
  check(g.validate(), "validate");
  check(g.build_operation_graph(h), "build_operation_graph");
  check(g.create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
  check(g.check_support(h), "check_support");
  check(g.build_plans(h), "build_plans");
  check(g.get_workspace_size(en.workspace), "get_workspace_size");
  en.uids = std::move(uids);
  en.sorted_ok = g.get_variant_pack_uids_sorted() == en.uids;
  for (i64 u : en.uids) en.pack[u] = nullptr;
  en.ok = true;
}

// Runs a built entry with the pointers of `ptrs` (in en.uids order). Caller holds the mutex.
void execute(Entry& en, cudnnHandle_t h, void** ptrs) {
  const vendor::CudnnApi* api = vendor::try_cudnn();
  const cudnnStatus_t st = api->cudnnSetStream(h, ctx().stream);
  if (st != CUDNN_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cudnnSetStream: ") + api->cudnnGetErrorString(st));
  void* ws = nullptr;
  if (en.workspace > 0) ws = CachingAllocator::instance().alloc(static_cast<std::size_t>(en.workspace));
  struct Release {  // back to the allocator after the enqueue, whatever happens
    void* p;
    ~Release() {
      if (p) CachingAllocator::instance().free(p);
    }
  } release{ws};
  fe::error_t e;
  if (en.sorted_ok) {
    e = en.graph->execute(h, ptrs, static_cast<int>(en.uids.size()), ws);
  } else {
    for (std::size_t i = 0; i < en.uids.size(); ++i) en.pack[en.uids[i]] = ptrs[i];
    e = en.graph->execute(h, en.pack, ws);
  }
  check(e, "execute");
}

// "auto"'s measured choice for a forward graph (see the header comment): 1 cuDNN, 0 our kernel.
// Caller holds the mutex; `en` is built. Throws what execute() throws.
int decide(Entry& en, cudnnHandle_t h, void** ptrs, const MhaArgs& a, const Key& key) {
  const int untimed = attention_decode_applies(a) ? 0 : 1;  // see the header comment
  if (!autotune::enabled()) return untimed;
  std::string shapes;
  for (i64 x : key) shapes += std::to_string(x) + ",";
  const char* dt = a.dtype == DType::bf16 ? "bfloat16" : "float16";
  const char* op = "attention_mha.cuda_impl";
  if (auto f = autotune::lookup(op, shapes, dt, DeviceKind::cuda)) return (*f)["choice"] == "own" ? 0 : 1;
  cudaStream_t s = ctx().stream;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    (void)cudaGetLastError();
    return untimed;
  }
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) {
    (void)cudaGetLastError();
    if (e0) (void)cudaEventDestroy(e0);
    return untimed;
  }
  struct Events {
    cudaEvent_t a, b;
    ~Events() {
      (void)cudaEventDestroy(a);
      (void)cudaEventDestroy(b);
    }
  } events{e0, e1};
  constexpr int kReps = 5;
  auto burst_ms = [&](auto&& call) -> float {
    call();  // warm-up (module loading, caches)
    if (cudaEventRecord(e0, s) != cudaSuccess) return -1.0f;
    for (int i = 0; i < kReps; ++i) call();
    float ms = -1.0f;
    if (cudaEventRecord(e1, s) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
        cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
      return -1.0f;
    return ms;
  };
  autotune::note_measurement();
  const float t_cudnn = burst_ms([&] { execute(en, h, ptrs); });
  const float t_own = burst_ms([&] { launch_attention_mha(a, s); });
  if (t_cudnn < 0 || t_own < 0) {
    (void)cudaGetLastError();
    return untimed;  // not measurable: the rule's answer, not stored
  }
  const int choice = t_own < 0.9f * t_cudnn ? 0 : 1;
  autotune::store(op, shapes, dt, DeviceKind::cuda,
                  {{"choice", choice ? "cudnn" : "own"},
                   {"cudnn_us", std::to_string(1000.0 * t_cudnn / kReps)},
                   {"own_us", std::to_string(1000.0 * t_own / kReps)}});
  return choice;
}

// Looks `key` up, building it with `make` (which fills the graph and returns its user uids) the
// first time, then executes it. False (logged once) when cuDNN declines or fails, or when
// `tune` (the forward's arguments under "auto") and the measured choice is our kernel.
template <class Make>
bool run(const Key& key, void** ptrs, const MhaArgs* tune, Make&& make) {
  Setup& s = setup();
  std::call_once(s.once, [&s] {
    try {
      run_setup(s);
    } catch (const std::exception& e) {
      s.why = e.what();
    }
  });
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!s.ok) {
    log_once(false, s.why);
    return false;
  }
  Context& cx = ctx();
  if (cx.info.cc_major < 8) return false;  // SDPA in 16-bit needs sm_80+
  std::string why;
  cudnnHandle_t h = handle_for(cx.info.device, &why);
  if (!h) {
    log_once(false, why);
    return false;
  }
  auto [it, fresh] = c.entries.try_emplace(key);
  Entry& en = it->second;
  if (fresh) {
    try {
      en.graph = std::make_shared<fe::graph::Graph>();
      en.graph->set_io_data_type(io_type(static_cast<DType>(key[1])))
          .set_intermediate_data_type(fe::DataType_t::FLOAT)
          .set_compute_data_type(fe::DataType_t::FLOAT)
          .set_sm_version(cx.info.cc_major * 10 + cx.info.cc_minor)
          .set_sm_count(cx.info.sm_count);
      finish_build(en, h, make(*en.graph));
    } catch (const std::exception& e) {
      en.ok = false;
      en.graph.reset();
      log_once(false, e.what());
    } catch (...) {
      en.ok = false;
      en.graph.reset();
      log_once(false, "unknown exception while building the graph");
    }
  }
  if (!en.ok) return false;
  try {
    if (tune && en.tuned < 0) en.tuned = decide(en, h, ptrs, *tune, key);
    if (tune && en.tuned == 0) return false;
    execute(en, h, ptrs);
  } catch (const std::exception& e) {
    en.ok = false;  // this key runs our kernel from now on
    en.graph.reset();
    log_once(true, e.what());
    return false;
  } catch (...) {
    en.ok = false;
    en.graph.reset();
    log_once(true, "unknown exception");
    return false;
  }
  return true;
}

}  // namespace

const char* cudnn_frontend_version() {
#define LC_STR2(x) #x
#define LC_STR(x) LC_STR2(x)
  return LC_STR(CUDNN_FRONTEND_MAJOR_VERSION) "." LC_STR(CUDNN_FRONTEND_MINOR_VERSION) "." LC_STR(
      CUDNN_FRONTEND_PATCH_VERSION);
#undef LC_STR
#undef LC_STR2
}

bool try_cudnn_attention(const MhaArgs& a) {
  if (!eligible(a.dtype, a.mask_kind, a.causal, a.batch, a.heads, a.kv_heads, a.sq, a.sk, a.d, a.dv))
    return false;
  i64 qs[3], ks[3], vs[3], os_raw[3], os[3];
  mha_out_strides(a, os_raw);  // out's strides (MhaArgs::out_strides; default contiguous)
  if (!norm_strides(a.q_strides, a.batch, a.heads, a.sq, a.d, qs) ||
      !norm_strides(a.k_strides, a.batch, a.kv_heads, a.sk, a.d, ks) ||
      !norm_strides(a.v_strides, a.batch, a.kv_heads, a.sk, a.dv, vs) ||
      !norm_strides(os_raw, a.batch, a.heads, a.sq, a.dv, os))
    return false;
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.out) ||
      (a.lse && !aligned16(a.lse)))
    return false;
  const bool with_lse = a.lse != nullptr;
  const float scale = static_cast<float>(a.scale);
  Key key{};
  i64 n = 0;
  for (i64 x : {i64{0}, static_cast<i64>(a.dtype), a.batch, a.heads, a.kv_heads, a.sq, a.sk, a.d,
                a.dv, qs[0], qs[1], qs[2], ks[0], ks[1], ks[2], vs[0], vs[1], vs[2],
                i64{a.causal}, static_cast<i64>(a.mask_kind), static_cast<i64>(float_bits(scale)),
                i64{with_lse}, static_cast<i64>(ctx().info.device), os[0], os[1], os[2]})
    key[static_cast<std::size_t>(n++)] = x;
  void* ptrs[5] = {const_cast<void*>(a.q), const_cast<void*>(a.k), const_cast<void*>(a.v), a.out,
                   a.lse};
  const MhaArgs* tune = attention_impl_choice() == AttentionImpl::automatic ? &a : nullptr;
  const bool ran = run(key, ptrs, tune, [&](fe::graph::Graph& g) {
    auto Q = bhsd(g, "Q", kQ, a.batch, a.heads, a.sq, a.d, qs);
    auto K = bhsd(g, "K", kK, a.batch, a.kv_heads, a.sk, a.d, ks);
    auto V = bhsd(g, "V", kV, a.batch, a.kv_heads, a.sk, a.dv, vs);
    auto opt = fe::graph::SDPA_attributes().set_name("lc_sdpa").set_generate_stats(with_lse)
                   .set_attn_scale(scale);
    if (a.causal) {
      // sq == sk: both alignments agree; top-left is the long-supported one.
      if (a.sq == a.sk) opt.set_causal_mask(true);
      else opt.set_causal_mask_bottom_right(true);
    }
    auto [O, Stats] = g.sdpa(Q, K, V, std::move(opt));
    O->set_output(true).set_uid(kO).set_dim({a.batch, a.heads, a.sq, a.dv})
        .set_stride({os[0], os[1], os[2], 1});
    std::vector<i64> uids{kQ, kK, kV, kO};
    if (with_lse) {
      if (!Stats) throw std::runtime_error("the sdpa node gave no Stats output");
      Stats->set_output(true).set_uid(kStats).set_data_type(fe::DataType_t::FLOAT)
          .set_dim({a.batch, a.heads, a.sq, 1}).set_stride({a.heads * a.sq, a.sq, 1, 1});
      uids.push_back(kStats);
    }
    return uids;
  });
  if (ran) note_op_impl("cudnn");
  return ran;
}

bool try_cudnn_attention_backward(const MhaBackwardArgs& a) {
  if (!eligible(a.dtype, a.mask_kind, a.causal, a.batch, a.heads, a.kv_heads, a.sq, a.sk, a.d, a.dv))
    return false;
  i64 qs[3], ks[3], vs[3], os[3], ds[3];
  if (!norm_strides(a.q_strides, a.batch, a.heads, a.sq, a.d, qs) ||
      !norm_strides(a.k_strides, a.batch, a.kv_heads, a.sk, a.d, ks) ||
      !norm_strides(a.v_strides, a.batch, a.kv_heads, a.sk, a.dv, vs) ||
      !norm_strides(a.out_strides, a.batch, a.heads, a.sq, a.dv, os) ||
      !norm_strides(a.dout_strides, a.batch, a.heads, a.sq, a.dv, ds))
    return false;
  for (const void* p : {a.q, a.k, a.v, a.out, a.dout, static_cast<const void*>(a.lse),
                        static_cast<const void*>(a.dq), static_cast<const void*>(a.dk),
                        static_cast<const void*>(a.dv_out)})
    if (!p || !aligned16(p)) return false;
  const float scale = static_cast<float>(a.scale);
  Key key{};
  i64 n = 0;
  for (i64 x : {i64{1}, static_cast<i64>(a.dtype), a.batch, a.heads, a.kv_heads, a.sq, a.sk, a.d,
                a.dv, qs[0], qs[1], qs[2], ks[0], ks[1], ks[2], vs[0], vs[1], vs[2], os[0], os[1],
                os[2], ds[0], ds[1], ds[2], i64{a.causal}, static_cast<i64>(a.mask_kind),
                static_cast<i64>(float_bits(scale)), static_cast<i64>(ctx().info.device)})
    key[static_cast<std::size_t>(n++)] = x;
  // uid order: Q K V O Stats dO dQ dK dV
  void* ptrs[9] = {const_cast<void*>(a.q),    const_cast<void*>(a.k),
                   const_cast<void*>(a.v),    const_cast<void*>(a.out),
                   const_cast<float*>(a.lse), const_cast<void*>(a.dout),
                   a.dq,                      a.dk,
                   a.dv_out};
  const bool ran = run(key, ptrs, nullptr, [&](fe::graph::Graph& g) {
    auto Q = bhsd(g, "Q", kQ, a.batch, a.heads, a.sq, a.d, qs);
    auto K = bhsd(g, "K", kK, a.batch, a.kv_heads, a.sk, a.d, ks);
    auto V = bhsd(g, "V", kV, a.batch, a.kv_heads, a.sk, a.dv, vs);
    auto O = bhsd(g, "O", kO, a.batch, a.heads, a.sq, a.dv, os);
    auto dO = bhsd(g, "dO", kDO, a.batch, a.heads, a.sq, a.dv, ds);
    auto Stats = g.tensor(fe::graph::Tensor_attributes()
                              .set_name("Stats")
                              .set_uid(kStats)
                              .set_dim({a.batch, a.heads, a.sq, 1})
                              .set_stride({a.heads * a.sq, a.sq, 1, 1})
                              .set_data_type(fe::DataType_t::FLOAT));
    auto opt = fe::graph::SDPA_backward_attributes().set_name("lc_sdpa_backward")
                   .set_attn_scale(scale);
    if (a.causal) {
      if (a.sq == a.sk) opt.set_causal_mask(true);
      else opt.set_causal_mask_bottom_right(true);
    }
    auto [dQ, dK, dV] = g.sdpa_backward(Q, K, V, O, dO, Stats, std::move(opt));
    dQ->set_output(true).set_uid(kDQ).set_dim({a.batch, a.heads, a.sq, a.d})
        .set_stride({a.heads * a.sq * a.d, a.sq * a.d, a.d, 1});
    dK->set_output(true).set_uid(kDK).set_dim({a.batch, a.kv_heads, a.sk, a.d})
        .set_stride({a.kv_heads * a.sk * a.d, a.sk * a.d, a.d, 1});
    dV->set_output(true).set_uid(kDV).set_dim({a.batch, a.kv_heads, a.sk, a.dv})
        .set_stride({a.kv_heads * a.sk * a.dv, a.sk * a.dv, a.dv, 1});
    return std::vector<i64>{kQ, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV};
  });
  if (ran) note_op_impl("cudnn");
  return ran;
}

}  // namespace lc::cuda

#else  // no cuDNN frontend (or no cuDNN) in this build: our kernel runs every call

namespace lc::cuda {

bool try_cudnn_attention(const MhaArgs&) { return false; }
bool try_cudnn_attention_backward(const MhaBackwardArgs&) { return false; }
const char* cudnn_frontend_version() { return ""; }

}  // namespace lc::cuda

#endif
