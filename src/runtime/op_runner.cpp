// OpRunner (see op_runner.h): staging, result placement, finishing and the trace records.
#include "runtime/op_runner.h"

#include <sstream>

#include "lightning_core/log.h"
#include "lightning_core/runtime.h"

namespace lc {

namespace {
thread_local bool t_explain = false;
thread_local OpReport t_report;
thread_local const char* t_impl = "";  // note_op_impl() of the op running on this thread
}  // namespace

void set_explain(bool on) { t_explain = on; }
bool explain_enabled() { return t_explain; }
const OpReport& last_op_report() {
  t_report.impl = t_impl;
  return t_report;
}

void note_op_impl(const char* impl) noexcept { t_impl = impl ? impl : ""; }

OpRunner::OpRunner(const char* op, const ExecutionPolicy& p) : op_(op), policy_(p) {
  t_impl = "";
  policy_.validate(op);
}

OpRunner::~OpRunner() {
  if (scoped_backend_) {
    try {
      scoped_backend_->set_current_device(prev_device_);
    } catch (...) {  // the device was current a moment ago; nothing sensible to report
    }
  }
}

namespace {
std::string place_str(DeviceKind k, int index) {
  return std::string(to_string(k)) + (k == DeviceKind::cpu ? "" : ":" + std::to_string(index));
}
}  // namespace

void OpRunner::mismatch(const Tensor& t, int want, const char* why) const {
  throw_value(op_, "an input of shape " + t.shape_str() + " is on " +
                       place_str(t.device(), t.device_index()) + " but " + why + " " +
                       place_str(t.device(), want) + "; move it with .to(\"" +
                       place_str(t.device(), want) + "\") (every GPU input of an op must be on "
                       "one device)");
}

void OpRunner::place(WorkEstimate w, std::initializer_list<const Tensor*> inputs, bool gpu_can_run) {
  double host_in = 0;
  bool on_gpu = false;
  // The GPU the op runs on if it runs on one: the policy's index, else the resident inputs'.
  int want = policy_.device_index;
  const Tensor* first_gpu = nullptr;
  for (const Tensor* t : inputs) {
    if (!t) continue;
    if (n_inputs_ < static_cast<int>(inputs_.size())) inputs_[n_inputs_++] = t;
    if (t->device() == DeviceKind::cpu) {
      host_in += static_cast<double>(t->nbytes());
    } else {
      on_gpu = true;
      if (first_gpu && t->device_index() != first_gpu->device_index())
        mismatch(*t, first_gpu->device_index(), "another input is on");
      if (!first_gpu) first_gpu = t;
    }
  }
  if (first_gpu) {
    if (want >= 0 && first_gpu->device_index() != want)
      mismatch(*first_gpu, want, "the policy (device=) asks for");
    want = first_gpu->device_index();
  }
  w.host_bytes_in = host_in;
  w.inputs_on_gpu = on_gpu;
  // Only explain mode builds the placement reason: the trace does not record it, and building
  // it (an ostringstream for device="auto") would double the enabled cost of tracing.
  const bool explain = t_explain;
  Placement pl = choose_device(op_, w, policy_, gpu_can_run, explain);
  device_ = pl.device;
  fallback_ = pl.fallback;
  backend_ = &get_backend(device_);
  if (device_ != DeviceKind::cpu) {
    // Make the op's GPU current for the op (allocations, copies and kernels go there). The
    // single-GPU path: want is 0 or -1 and device 0 is current, one thread-local read.
    const int cur = backend_->current_device();
    if (want < 0) want = cur;
    if (want != cur) {
      require_device_index(device_, want, op_);
      backend_->set_current_device(want);
      scoped_backend_ = backend_;
      prev_device_ = cur;
    }
    index_ = want;
  }
  t_report.op = op_;
  t_report.device = device_;
  t_report.path = fallback_ ? "fallback" : "direct";
  if (explain) t_report.reason = std::move(pl.reason);
  if (fallback_ && log::enabled(log::Level::info))  // LC_LOG_LEVEL=INFO (one atomic load)
    log::info(std::string(op_) + ": the CUDA backend does not support this op at these sizes "
              "(or dtype); ran on the CPU");
}

const void* OpRunner::in_raw(const Tensor& t) {
  if (here(t) && t.is_contiguous()) return t.data();
  if (t.device() == DeviceKind::cpu && device_ != DeviceKind::cpu &&
      policy_.upload == UploadMode::never)
    throw_value(op_, "policy upload=\"never\" but an input of shape " + t.shape_str() +
                         " is in host memory; make it resident first (lc.Tensor(x, device=\"cuda\")) "
                         "or allow uploads");
  const bool tracing = trace_enabled() && t.device() != device_;
  const std::int64_t t0 = tracing ? trace_now_ns() : 0;
  Tensor staged = Tensor::empty(t.shape(), t.dtype(), device_);
  t.copy_to(staged);
  if (tracing)
    record_transfer(device_ == DeviceKind::cpu ? TraceKind::download : TraceKind::upload, t0,
                    t.nbytes());
  scratch_.push_back(std::move(staged));
  return scratch_.back().data();
}

void* OpRunner::out_raw(Tensor& out) {
  // An `out` that shares memory with an input (matmul2d_into(a, b, b), a partially overlapping
  // vector_add_into) is written through scratch and copied at finish(), so the kernel never
  // reads what it already overwrote: the result is as if out were a fresh array.
  bool aliased = false;
  for (int i = 0; i < n_inputs_ && !aliased; ++i) aliased = inputs_[i]->may_overlap(out);
  if (device_ != DeviceKind::cpu && out.device() == device_ && out.device_index() != index_)
    mismatch(out, index_, "the op runs on");
  if (!aliased && here(out) && out.is_contiguous()) return out.data();
  pending_out_ = &out;
  pending_scratch_ = Tensor::empty(out.shape(), out.dtype(), device_);
  return pending_scratch_.data();
}

Tensor OpRunner::result(const std::vector<std::int64_t>& shape, DType dtype) {
  bool stay = device_ != DeviceKind::cpu && !policy_.download;
  if (device_ != DeviceKind::cpu && policy_.download) {
    // Results follow the inputs: all inputs resident -> the result stays resident too.
    stay = n_inputs_ > 0;
    for (int i = 0; i < n_inputs_; ++i)
      if (inputs_[i]->device() == DeviceKind::cpu) stay = false;
  }
  return Tensor::empty(shape, dtype, stay ? device_ : DeviceKind::cpu);
}

void OpRunner::finish() {
  if (pending_out_) {
    // A copy between devices is a transfer event; a same-device strided copy is not.
    const bool tracing = trace_enabled() && pending_out_->device() != device_;
    const std::int64_t t0 = tracing ? trace_now_ns() : 0;
    pending_scratch_.copy_to(*pending_out_);
    if (tracing)
      record_transfer(pending_out_->device() == DeviceKind::cpu ? TraceKind::download
                                                                : TraceKind::upload,
                      t0, pending_out_->nbytes());
    pending_out_ = nullptr;
    return;  // a download to host memory completes the work
  }
  if (device_ != DeviceKind::cpu && policy_.sync == SyncMode::per_call) {
    const bool tracing = trace_enabled();
    const std::int64_t t0 = tracing ? trace_now_ns() : 0;
    backend_->synchronize();
    if (tracing) {
      TraceEvent e;
      e.kind = TraceKind::sync;
      e.op = "sync";
      e.for_op = op_;
      e.device = device_;
      e.path = fallback_ ? "fallback" : "direct";
      trace_set_policy(e, policy_);
      e.host_begin_ns = t0;
      e.host_end_ns = trace_now_ns();
      e.thread_id = trace_thread_index();
      e.stream = 0;
      trace_record(std::move(e));
    }
  }
}

std::string OpRunner::shapes_string() const {
  std::string s;
  for (int i = 0; i < n_inputs_; ++i) {
    if (!s.empty()) s += ' ';
    s += inputs_[i]->shape_str();
  }
  return s;
}

void OpRunner::rethrow_with_context(const Error& e) const {
  std::string msg = std::string("[") + op_ + "] on " + to_string(device_) + " with inputs " +
                    shapes_string() + ": " + e.what();
  if (dynamic_cast<const OutOfMemory*>(&e)) throw OutOfMemory(msg + " (free memory: call "
                                                                    "lc.empty_cache(), use smaller "
                                                                    "shapes or device=\"cpu\")");
  if (dynamic_cast<const TypeError*>(&e)) throw TypeError(msg);
  if (dynamic_cast<const Unavailable*>(&e)) throw Unavailable(msg);
  if (dynamic_cast<const ValueError*>(&e)) throw ValueError(msg);
  throw BackendError(msg);
}

void OpRunner::record_op(std::int64_t t0, std::int64_t m0, std::int64_t m1) {
  TraceEvent e;
  e.kind = TraceKind::op;
  e.op = op_;
  e.for_op = op_;
  e.device = device_;
  e.path = fallback_ ? "fallback" : "direct";
  e.impl = t_impl;
  trace_set_shapes(e, inputs_.data(), n_inputs_);
  trace_set_policy(e, policy_);
  e.host_begin_ns = t0;
  e.device_begin_mark = m0;
  e.device_end_mark = m1;
  e.host_end_ns = trace_now_ns();
  e.thread_id = trace_thread_index();
  e.stream = device_ == DeviceKind::cpu ? -1 : 0;
  trace_record(std::move(e));
}

void OpRunner::record_transfer(TraceKind kind, std::int64_t t0, std::uint64_t bytes) {
  TraceEvent e;
  e.kind = kind;
  e.op = kind == TraceKind::upload ? "upload" : "download";
  e.for_op = op_;
  e.device = device_ == DeviceKind::cpu ? DeviceKind::cuda : device_;
  e.path = fallback_ ? "fallback" : "direct";
  trace_set_policy(e, policy_);
  e.host_begin_ns = t0;
  e.host_end_ns = trace_now_ns();
  e.thread_id = trace_thread_index();
  e.stream = 0;
  e.bytes = bytes;
  trace_record(std::move(e));
}

}  // namespace lc
