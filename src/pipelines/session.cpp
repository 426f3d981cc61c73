// Resident sessions (session.h): resident buffers + launches through the op API. A composition
// above the ops (src/pipelines/), like conv -> attention.
#include "lightning_core/session.h"

#include <atomic>
#include <cmath>
#include <iostream>

#include "backends/backend.h"
#include "runtime/placement.h"
#include "lightning_core/autotune.h"
#include "lightning_core/errors.h"
#include "lightning_core/log.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"
#include "ops/checks.h"
#include "ops/conv2d.h"
#include "ops/registry.h"

namespace lc {

namespace {

std::atomic<std::size_t> g_live_bytes{0};

std::string method(const char* op, const char* what) { return std::string(op) + "." + what; }

OpFamily family_of(const std::string& op) {
  if (op.rfind("matmul", 0) == 0) return OpFamily::matmul;
  if (op.rfind("attention", 0) == 0) return OpFamily::attention;
  return OpFamily::conv2d;
}

}  // namespace

std::size_t session_live_bytes() { return g_live_bytes.load(); }

ResidentSession::ResidentSession(const char* op, const ExecutionPolicy& p,
                                 std::vector<std::string> names,
                                 const std::vector<const Tensor*>& inputs,
                                 std::vector<std::int64_t> out_shape, double flops,
                                 bool gpu_can_run, bool use_graph, DType dtype)
    : op_(op), policy_(p), names_(std::move(names)), out_shape_(std::move(out_shape)),
      dtype_(dtype) {
  policy_.validate(op_);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i]->dtype() != dtype_)
      throw_type(op_, "'" + names_[i] + "' is " + dtype_info(inputs[i]->dtype()).name +
                          "; this session's inputs must all be " + dtype_info(dtype_).name +
                          " (convert with astype)");
    shapes_.push_back(inputs[i]->shape());
  }

  // Placement: the transfers are paid once per session, so they are left out of the estimate
  // unless uploads are impossible (upload="never" with host inputs keeps the session on the CPU).
  WorkEstimate w;
  w.family = family_of(op_);
  w.flops = flops;
  int gpu = policy_.device_index;  // the GPU: the policy's, else the resident inputs'
  for (const Tensor* t : inputs) {
    if (t->device() != DeviceKind::cpu) {
      w.inputs_on_gpu = true;
      if (gpu < 0) gpu = t->device_index();
      if (t->device_index() != gpu)
        throw_value(op_, "input of shape " + t->shape_str() + " is on cuda:" +
                             std::to_string(t->device_index()) + " but the session runs on cuda:" +
                             std::to_string(gpu) + "; put every input on one GPU (.to(\"cuda:" +
                             std::to_string(gpu) + "\"))");
    } else if (policy_.upload == UploadMode::never) {
      w.host_bytes_in += static_cast<double>(t->nbytes());
    }
  }
  if (w.family == OpFamily::conv2d) w.conv_macs = flops / 2;
  Placement pl = choose_device(op_, w, policy_, gpu_can_run, /*explain=*/true);
  device_ = pl.device;
  reason_ = std::move(pl.reason);
  if (device_ != DeviceKind::cpu) {
    if (gpu < 0) gpu = get_backend(device_).current_device();
    require_device_index(device_, gpu, op_);
    device_index_ = gpu;
  }
  DeviceScope scope(device_, device_index_);

  launch_policy_ = policy_;
  if (device_ == DeviceKind::cpu) {
    launch_policy_.device = DeviceRequest::cpu;
    launch_policy_.upload = UploadMode::always;
    launch_policy_.download = true;
    launch_policy_.sync = SyncMode::per_call;
    if (launch_policy_.precision == Precision::bf16) launch_policy_.precision = Precision::fp32;
  } else {
    launch_policy_.device = DeviceRequest::cuda;
    launch_policy_.device_index = static_cast<std::int8_t>(device_index_);
    launch_policy_.upload = UploadMode::never;
    launch_policy_.download = false;
    launch_policy_.sync = SyncMode::none;
  }
  use_graph_ = use_graph && device_ != DeviceKind::cpu && get_backend(device_).graphs_supported();

  if (inputs.size() > 32) throw_value(op_, "a session takes at most 32 inputs");
  inputs_.resize(inputs.size());
  bound_data_.resize(inputs.size(), nullptr);
  bound_strides_.resize(inputs.size());
  upload(inputs);
  out_ = make_scratch(out_shape_, dtype_);
}

ResidentSession::~ResidentSession() { close(); }

Tensor ResidentSession::make_scratch(const std::vector<std::int64_t>& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, device_);
  accounted_bytes_ += t.nbytes();
  g_live_bytes.fetch_add(t.nbytes());
  return t;
}

Tensor ResidentSession::make_owned_copy(const Tensor& src) {
  Tensor t = make_scratch(src.shape(), src.dtype());
  src.copy_to(t);
  ++stats_.uploads;
  return t;
}

void ResidentSession::check_open(const char* what) const {
  if (closed_)
    throw_value(method(op_, what).c_str(), "the session is closed; create a new one");
}

void ResidentSession::check_inputs(const char* what, const std::vector<const Tensor*>& in) const {
  const std::string m = method(op_, what);
  if (in.size() != shapes_.size())
    throw_value(m.c_str(), "expected " + std::to_string(shapes_.size()) + " inputs, got " +
                               std::to_string(in.size()));
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (!in[i]) throw_value(m.c_str(), "input '" + names_[i] + "' is missing");
    if (in[i]->shape() != shapes_[i])
      throw_value(m.c_str(), "'" + names_[i] + "' has shape " + in[i]->shape_str() +
                                 " but the session was created for " + shape_str(shapes_[i]) +
                                 "; create a new session for new shapes");
    if (in[i]->dtype() != dtype_)
      throw_type(m.c_str(), "'" + names_[i] + "' must be " + dtype_info(dtype_).name +
                                " (the session's dtype), got " + dtype_info(in[i]->dtype()).name);
  }
}

void ResidentSession::check_out(const char* what, const Tensor& out) const {
  lc::check_out(method(op_, what).c_str(), out, out_shape_, dtype_);
}

void ResidentSession::upload(const std::vector<const Tensor*>& in, std::uint32_t mask) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (!(mask >> i & 1u)) continue;
    const Tensor& src = *in[i];
    if (policy_.upload == UploadMode::never) {
      // Bind without copying: the data must already be where the session runs.
      if (src.device() != device_ || !src.is_contiguous())
        throw_value(op_, "policy upload=\"never\" binds the inputs without copying, but '" +
                             names_[i] + "' is " + (src.is_contiguous() ? "" : "non-contiguous ") +
                             "in " + to_string(src.device()) + " memory and the session runs on " +
                             to_string(device_) + "; make it resident first (lc.Tensor(x, device="
                             "\"" + to_string(device_) + "\")) or allow uploads");
      if (src.device() == DeviceKind::cpu && !src.owner())
        throw_value(op_, "policy upload=\"never\" binds '" + names_[i] + "' without copying, "
                         "which needs an lc.Tensor (a borrowed numpy buffer may go away); pass "
                         "lc.Tensor(x) or allow uploads");
      inputs_[i] = src;
    } else {
      if (!inputs_[i].defined()) inputs_[i] = make_scratch(src.shape(), dtype_);
      src.copy_to(inputs_[i]);
      ++stats_.uploads;
    }
    bound_data_[i] = src.data();
    bound_strides_[i] = src.strides();
  }
}

std::uint32_t ResidentSession::inputs_to_upload(const std::vector<const Tensor*>& in,
                                                std::uint32_t stale) const {
  if (policy_.upload == UploadMode::always) return ~0u;
  std::uint32_t mask = stale;
  for (std::size_t i = 0; i < in.size(); ++i) {
    // (No vector copies here: this runs on every call.)
    const Tensor& t = *in[i];
    const std::vector<std::int64_t>& bs = bound_strides_[i];
    bool same = t.data() == bound_data_[i] && static_cast<std::size_t>(t.ndim()) == bs.size();
    for (int d = 0; same && d < t.ndim(); ++d) same = t.stride(d) == bs[static_cast<std::size_t>(d)];
    if (!same) mask |= 1u << i;
  }
  return mask;
}

void ResidentSession::launch_counted() {
  launch();
  ++stats_.launches;
  have_result_ = true;
}

void ResidentSession::start_into(const std::vector<const Tensor*>& in, Tensor& out) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  DeviceScope scope(device_, device_index_);
  check_open("start_into");
  check_inputs("start_into", in);
  check_out("start_into", out);
  upload(in);
  launch_counted();
  download_locked(out);
}

void ResidentSession::run_into(const std::vector<const Tensor*>& in, Tensor& out,
                               std::uint32_t stale_mask) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  DeviceScope scope(device_, device_index_);
  check_open("run_into");
  check_inputs("run_into", in);
  check_out("run_into", out);
  upload(in, inputs_to_upload(in, stale_mask));
  launch_counted();
  download_locked(out);
}

void ResidentSession::run_batch_sync_no_download_into(const std::vector<const Tensor*>& in,
                                                      Tensor& out, std::int64_t n,
                                                      std::uint32_t stale_mask) {
  static constexpr const char* what = "run_batch_sync_no_download_into";
  std::lock_guard<std::recursive_mutex> lock(mu_);
  DeviceScope scope(device_, device_index_);
  check_open(what);
  check_inputs(what, in);
  check_out(what, out);
  if (n < 1) throw_value(method(op_, what).c_str(), "n must be >= 1, got " + std::to_string(n));
  // Copies land in the same resident buffers; a rebind (upload="never") changes the binding,
  // which the captured graph notices by a pointer comparison and re-records in place.
  upload(in, inputs_to_upload(in, stale_mask));
  GraphBinding binding;  // the buffers the launch uses: what a replay compares
  bool bound = use_graph_;
  for (std::size_t i = 0; bound && i < inputs_.size(); ++i) bound = binding.add(inputs_[i].data());
  if (bound) bound = binding.add(out_.data());
  if (bound) {
    if (!graph_) {
      // Run once outside the capture (first-use set-up such as algorithm searches may sync).
      if (!have_result_) launch_counted();
      sync_locked();
      CaptureKey key;
      key.topology = op_;
      for (const auto& s : shapes_) {
        key.dims.push_back(static_cast<std::int64_t>(s.size()));
        key.dims.insert(key.dims.end(), s.begin(), s.end());
      }
      key.dims.push_back(static_cast<std::int64_t>(launch_policy_.precision));
      key.dims.push_back(launch_policy_.autotune ? 1 : 0);
      graph_ = get_backend(device_).capture_graph(key);
    }
    auto work = [this] { launch(); };
    const std::uint64_t records = graph_->stats().records;
    for (std::int64_t i = 0; i < n; ++i) {
      graph_->replay(work, binding);
      ++stats_.launches;
      ++stats_.graph_replays;
    }
    stats_.graph_records += graph_->stats().records - records;
    have_result_ = true;
    sync_locked();
    return;
  }
  for (std::int64_t i = 0; i < n; ++i) launch_counted();
  sync_locked();
}

std::unique_lock<std::recursive_mutex> ResidentSession::lock_open(const char* what) const {
  std::unique_lock<std::recursive_mutex> lock(mu_);
  check_open(what);
  return lock;
}

void ResidentSession::run_resident_locked(const char* what, Tensor& out) {
  check_out(what, out);
  launch_counted();
  download_locked(out);
}

void ResidentSession::note_result_written() {
  ++stats_.launches;
  have_result_ = true;
}

void ResidentSession::sync() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  DeviceScope scope(device_, device_index_);
  check_open("sync");
  sync_locked();
}

void ResidentSession::sync_locked() {
  if (device_ != DeviceKind::cpu) get_backend(device_).synchronize();
  ++stats_.syncs;
}

void ResidentSession::download_into(Tensor& out) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  DeviceScope scope(device_, device_index_);
  check_open("download_into");
  check_out("download_into", out);
  download_locked(out);
}

void ResidentSession::download_locked(Tensor& out) {
  if (!have_result_)
    throw_value(method(op_, "download_into").c_str(),
                "there is no result yet; call start_into, run_into or "
                "run_batch_sync_no_download_into first");
  sync_locked();
  out_.copy_to(out);
  ++stats_.downloads;
}

SessionStats ResidentSession::stats() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return stats_;
}

void ResidentSession::release_graph() noexcept {
  graph_.reset();  // back to the backend's graph cache (after its replays in flight)
}

void ResidentSession::close() noexcept {
  std::lock_guard<std::recursive_mutex> lock(mu_);  // waits for a call in flight
  if (closed_) return;
  closed_ = true;
  if (device_ != DeviceKind::cpu) {
    try {
      DeviceScope scope(device_, device_index_);
      get_backend(device_).synchronize();  // queued launches may still read the buffers
    } catch (const std::exception& e) {
      log::message_noexcept(log::Level::warning, std::string(op_) + ".close: " + e.what());
    }
  }
  release_graph();
  release_extra();
  inputs_.clear();
  out_ = Tensor();
  g_live_bytes.fetch_sub(accounted_bytes_);
  accounted_bytes_ = 0;
}

std::size_t ResidentSession::resident_bytes() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return closed_ ? 0 : accounted_bytes_;
}

// ---- matmul ------------------------------------------------------------------------------------

Matmul2dSession::Matmul2dSession(const Tensor& a, const Tensor& b, const ExecutionPolicy& p,
                                 bool use_graph)
    : ResidentSession("matmul2d_resident_session", p, {"a", "b"}, {&a, &b},
                      matmul2d_out_shape(a, b), opdefs::matmul2d.work(OpArgs{&a, &b}).flops,
                      opdefs::matmul2d.supports(DeviceKind::cuda, OpArgs{&a, &b}), use_graph) {
  const std::int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  if (device() != DeviceKind::cuda || !policy().autotune || !autotune::enabled()) return;
  if (2.0 * m * k * n < 2.0 * 256 * 256 * 256) return;  // tuning tiny GEMMs is not worth it
  // The mode large_gemm_auto_sweep recorded for this shape, else "autotuned" (fp32) /
  // "tf32_fast" (tf32). A recorded tf32 winner is never used under an fp32 policy.
  const Precision prec = policy().precision;
  if (prec == Precision::bf16) return;
  std::string mode = prec == Precision::tf32 ? "tf32_fast" : "autotuned";
  if (auto rec = autotune::recorded_gemm_mode(m, k, n, prec)) {
    if (*rec == "heuristic" || *rec == "autotuned" || (*rec == "tf32_fast" && prec == Precision::tf32))
      mode = *rec;
  }
  try {
    autotune::prepare_gemm(m, k, n, autotune::parse_gemm_mode(mode, op()));
    gemm_mode_ = mode;
  } catch (const Error& e) {
    gemm_mode_ = "heuristic";
    log::warn("GEMM tuning failed for " + std::to_string(m) + "x" + std::to_string(k) + "x" +
              std::to_string(n) + " (" + e.what() + "); using cuBLASLt's heuristic choice");
  }
}

void Matmul2dSession::launch() {
  Tensor& out = result_buffer();
  matmul2d_into(resident(0), resident(1), out, launch_policy());
}

// ---- attention ---------------------------------------------------------------------------------

AttentionTrainableSession::AttentionTrainableSession(
    const char* op, const ExecutionPolicy& p, const Tensor& q, const Tensor& k, const Tensor& v,
    std::vector<std::int64_t> out_shape, double flops, bool gpu_can_run, bool use_graph,
    bool causal, float scale)
    : ResidentSession(op, p, {"q", "k", "v"}, {&q, &k, &v}, std::move(out_shape), flops,
                      gpu_can_run, use_graph, q.dtype()),
      causal_(causal),
      step_causal_(causal),
      scale_(scale) {
  if (!(scale >= 0.0f) || std::isinf(scale))
    throw_value(op, "scale must be > 0 (or 0 for 1/sqrt(head_dim))");
}

void AttentionTrainableSession::forward_into(Tensor& out) {
  auto lock = lock_open("forward_into");
  DeviceScope scope(device(), device_index());  // the session's GPU
  run_resident_locked("forward_into", out);
}

Tensor AttentionTrainableSession::forward() {
  auto lock = lock_open("forward");
  DeviceScope scope(device(), device_index());  // the session's GPU
  Tensor out = Tensor::empty(out_shape(), dtype(), DeviceKind::cpu);
  run_resident_locked("forward", out);
  return out;
}

Tensor AttentionTrainableSession::parameter(int i) {
  auto lock = lock_open("parameter");
  DeviceScope scope(device(), device_index());  // the session's GPU
  if (i < 0 || i > 2)
    throw_value(method(op(), "parameter").c_str(), "index must be 0 (q), 1 (k) or 2 (v)");
  const Tensor& x = resident(static_cast<std::size_t>(i));
  Tensor host = Tensor::empty(x.shape(), x.dtype(), DeviceKind::cpu);
  sync_if_device();
  x.copy_to(host);
  return host;
}

AttentionTrainResult AttentionTrainableSession::train_step(const Tensor& target, double lr) {
  // The caller gets a host copy: the result buffer is overwritten by the next call.
  Tensor host = Tensor::empty(out_shape(), dtype(), DeviceKind::cpu);
  return train_step_into(target, lr, host);
}

AttentionTrainResult AttentionTrainableSession::train_step_into(const Tensor& target, double lr,
                                                                Tensor& out) {
  const std::string m = method(op(), "train_step");
  auto lock = lock_open("train_step");
  lc::check_out(m.c_str(), out, out_shape(), dtype());
  DeviceScope scope(device(), device_index());  // the session's GPU
  if (!bufs_.out.defined()) {  // first step: resident work tensors (counted, freed by close())
    const std::vector<std::int64_t> qs = input_shapes()[0];
    std::vector<std::int64_t> ls = qs;
    ls.pop_back();
    bufs_.lse = make_scratch(ls, DType::f32);
    bufs_.diff = make_scratch(out_shape(), dtype());
    bufs_.dq = make_scratch(qs, dtype());
    bufs_.dk = make_scratch(input_shapes()[1], dtype());
    bufs_.dv = make_scratch(input_shapes()[2], dtype());
  }
  // target: checked here (the step would check it too, but it is copied to the session's
  // device first: the launches never upload), then staged when it lives elsewhere.
  if (target.shape() != out_shape())
    throw_value(m.c_str(), "target is " + target.shape_str() + "; it must be out's shape " +
                               shape_str(out_shape()) + " (q's shape with v's last dimension)");
  if (target.dtype() != dtype())
    throw_type(m.c_str(), std::string("target is ") + dtype_info(target.dtype()).name +
                              "; it must have the session's dtype " + dtype_info(dtype()).name);
  const Tensor* tgt = &target;
  if (target.device() != device() || !target.is_contiguous()) {
    if (!target_.defined()) target_ = make_scratch(out_shape(), dtype());
    target.copy_to(target_);
    tgt = &target_;
  }
  bufs_.out = result_buffer();  // the step's forward is the session's latest result
  AttentionTrainResult r =
      attention_train_step_with(resident_mut(0), resident_mut(1), resident_mut(2), *tgt, lr,
                                step_causal_, mask_ptr(), scale_, launch_policy(), bufs_,
                                m.c_str());
  note_result_written();
  if (out.device() == DeviceKind::cpu) sync_if_device();
  r.out.copy_to(out);
  r.out = out;
  return r;
}

void AttentionTrainableSession::sync_if_device() {
  if (device() != DeviceKind::cpu) get_backend(device()).synchronize();
}

void AttentionTrainableSession::release_extra() noexcept {
  mask_ = Tensor();
  target_ = Tensor();
  bufs_ = AttentionTrainBuffers{};
}

Attention2dSession::Attention2dSession(const Tensor& q, const Tensor& k, const Tensor& v,
                                       bool causal, float scale, const ExecutionPolicy& p,
                                       bool use_graph)
    : AttentionTrainableSession("attention2d_resident_session", p, q, k, v,
                                attention2d_out_shape(q, k, v),
                                opdefs::attention2d.work(OpArgs{&q, &k, &v}).flops,
                                opdefs::attention2d.supports(DeviceKind::cuda, OpArgs{&q, &k, &v}),
                                use_graph, causal, scale) {
  const std::int64_t sq = q.size(0), sk = k.size(0);
  if (causal && sq != sk) {
    DeviceScope scope(device(), device_index());
    // attention2d's causal is top-left aligned (key j visible to query i when j <= i); the
    // batched op's is bottom-right, so train_step gets the top-left rule as a keep mask.
    Tensor keep = Tensor::empty({1, 1, sq, sk}, DType::i32, DeviceKind::cpu);  // 2-D: key padding
    std::int32_t* kp = keep.data_as<std::int32_t>();
    for (std::int64_t i = 0; i < sq; ++i)
      for (std::int64_t j = 0; j < sk; ++j) kp[i * sk + j] = j <= i ? 1 : 0;
    mask_ = make_owned_copy(keep);
    has_mask_ = true;
    step_causal_ = false;
  }
}

void Attention2dSession::launch() {
  Tensor& out = result_buffer();
  attention2d_into(resident(0), resident(1), resident(2), out, causal_, launch_policy(), scale_);
}

// ---- batched attention --------------------------------------------------------------------------

namespace {
// CUDA when both directions run there (the session may train).
bool attention_gpu_ok(const Tensor& q, const Tensor& k, const Tensor& v) {
  const OpArgs a{&q, &k, &v};
  OpArgs b{&q, &q, &k, &v};
  return opdefs::attention.supports(DeviceKind::cuda, a) &&
         opdefs::attention_backward.supports(DeviceKind::cuda, b);
}
}  // namespace

AttentionSession::AttentionSession(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                                   const Tensor* mask, float scale, const ExecutionPolicy& p,
                                   bool use_graph)
    : AttentionTrainableSession("attention_resident_session", p, q, k, v,
                                attention_out_shape(q, k, v, mask),
                                opdefs::attention.work(OpArgs{&q, &k, &v}).flops,
                                attention_gpu_ok(q, k, v), use_graph, causal, scale) {
  if (mask) {
    DeviceScope scope(device(), device_index());
    mask_ = make_owned_copy(*mask);
    has_mask_ = true;
  }
}

void AttentionSession::launch() {
  Tensor& out = result_buffer();
  attention_into(resident(0), resident(1), resident(2), out, causal_, mask_ptr(), scale_,
                 launch_policy());
}

// ---- conv -> attention -------------------------------------------------------------------------

namespace {
// The session's op as the registry sees it (OpDef conv_attention_nchw).
OpArgs conv_attention_args(const Tensor& x, const Tensor& w, const ConvAttentionParams& prm) {
  conv2d_nchw_out_shape(x, w, nullptr, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w);  // checks
  OpArgs a = conv_args(x, w, nullptr, prm.stride_h, prm.stride_w, prm.pad_h, prm.pad_w);
  a.seq_len = prm.seq_len;
  a.head_dim = prm.head_dim;
  return a;
}
double conv_attention_flops(const Tensor& x, const Tensor& w, const ConvAttentionParams& prm) {
  const WorkEstimate e = opdefs::conv_attention_nchw.work(conv_attention_args(x, w, prm));
  return e.flops + e.flops2;
}
}  // namespace

ConvAttentionSession::ConvAttentionSession(const Tensor& x, const Tensor& w, const Tensor* bias,
                                           const ConvAttentionParams& prm,
                                           const ExecutionPolicy& p, bool use_graph)
    : ResidentSession("conv_attention_resident_session", p, {"x"}, {&x},
                      conv_attention_nchw_out_shape(x, w, bias, prm),
                      conv_attention_flops(x, w, prm),
                      opdefs::conv_attention_nchw.supports(DeviceKind::cuda,
                                                           conv_attention_args(x, w, prm)),
                      use_graph),
      has_bias_(bias != nullptr),
      prm_(prm) {
  w_ = make_owned_copy(w);
  if (bias) b_ = make_owned_copy(*bias);
  prm_.graph = false;  // sessions capture with use_graph instead
  conv_ = make_scratch(conv2d_nchw_out_shape(x, w, bias, prm.stride_h, prm.stride_w, prm.pad_h,
                                             prm.pad_w));
  if (conv_.numel() != prm.seq_len * prm.head_dim) qkv_ = make_scratch({prm.seq_len, prm.head_dim});
}

void ConvAttentionSession::launch() {
  Tensor& out = result_buffer();
  conv_attention_nchw_into(resident(0), w_, has_bias_ ? &b_ : nullptr, prm_, out, launch_policy(),
                           &conv_, &qkv_);
}

void ConvAttentionSession::release_extra() noexcept {
  w_ = Tensor();
  b_ = Tensor();
  conv_ = Tensor();
  qkv_ = Tensor();
}

}  // namespace lc
