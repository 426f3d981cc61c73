// OpRunner: the single path every op takes from validated arguments to a backend kernel.
//
//   OpRunner r("matmul2d", policy);
//   r.place(work_estimate);                 // placement.h decides the device
//   const float* a = r.in(a_tensor, "a");   // contiguous, on that device (upload if needed)
//   float* o = r.out(out_tensor);           // where the kernel writes (scratch if needed)
//   r.launch([&](Backend& be) { be.matmul(args); });   // trace + NVTX + error context
//   r.finish();                              // download scratch into `out`, sync per policy
//
// Launches happen only in launch(): trace events, NVTX ranges, device timing and error
// context all hang there, so no op can bypass them.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "runtime/placement.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"
#include "lightning_core/trace.h"

namespace lc {

// Thread-local switch: fill OpReport::reason with the placement explanation (costly strings).
void set_explain(bool on);
bool explain_enabled();

class OpRunner {
 public:
  OpRunner(const char* op, const ExecutionPolicy& p);
  ~OpRunner();
  OpRunner(const OpRunner&) = delete;
  OpRunner& operator=(const OpRunner&) = delete;

  // Decides the device. `inputs` are used to see where data lives; the estimate's
  // host_bytes_in / inputs_on_gpu are filled from them.
  void place(WorkEstimate w, std::initializer_list<const Tensor*> inputs, bool gpu_can_run = true);
  DeviceKind device() const { return device_; }
  // The GPU number the op runs on (0 on the CPU); place() made it the thread's current device.
  int device_index() const { return index_; }
  Backend& backend() const { return *backend_; }
  const ExecutionPolicy& policy() const { return policy_; }

  // A contiguous pointer to `t`'s elements (its own dtype) on the chosen device (uploads or
  // copies as needed). in() is the float32 form: the caller checked the dtype.
  const void* in_raw(const Tensor& t);
  const float* in(const Tensor& t) { return static_cast<const float*>(in_raw(t)); }
  const float* in_opt(const Tensor* t) { return t ? in(*t) : nullptr; }
  const void* in_raw_opt(const Tensor* t) { return t ? in_raw(*t) : nullptr; }
  // Where the kernel writes the result destined for `out` (contiguous, validated by caller;
  // any dtype). out() is the float32 form.
  void* out_raw(Tensor& out);
  float* out(Tensor& o) { return static_cast<float*>(out_raw(o)); }
  // The tensor a returning-form op should write: on the device when results stay there.
  Tensor result(const std::vector<std::int64_t>& shape, DType dtype = DType::f32);

  template <class F>
  void launch(F&& fn) {
    const bool tracing = trace_enabled();
    std::int64_t t0 = 0, m0 = -1;
    TraceMarks marks;  // device marks (CUDA events) of this launch; inert when not tracing
    if (tracing) {
      t0 = trace_now_ns();
      m0 = marks.begin(*backend_);
    }
    backend_->range_push(op_);
    try {
      fn(*backend_);
    } catch (const Error& e) {
      backend_->range_pop();
      rethrow_with_context(e);
    }
    backend_->range_pop();
    if (tracing) record_op(t0, m0, marks.end(*backend_));
  }

  // Moves scratch results into the caller's tensor and synchronises per policy.
  void finish();

 private:
  [[noreturn]] void rethrow_with_context(const Error& e) const;
  [[noreturn]] void mismatch(const Tensor& t, int want, const char* why) const;
  // `t` is in the op's memory: the chosen device and, for a GPU, the chosen index.
  bool here(const Tensor& t) const {
    return t.device() == device_ && (device_ == DeviceKind::cpu || t.device_index() == index_);
  }
  void record_op(std::int64_t t0, std::int64_t m0, std::int64_t m1);
  void record_transfer(TraceKind kind, std::int64_t t0, std::uint64_t bytes);
  std::string shapes_string() const;

  const char* op_;
  ExecutionPolicy policy_;
  DeviceKind device_ = DeviceKind::cpu;
  int index_ = 0;
  Backend* backend_ = nullptr;
  Backend* scoped_backend_ = nullptr;  // set when place() changed the current device
  int prev_device_ = 0;                // ... and what to restore
  bool fallback_ = false;
  std::vector<Tensor> scratch_;          // staged inputs and scratch outputs
  // Inputs, for messages and the trace (fixed capacity: no allocation on the hot path).
  std::array<const Tensor*, 6> inputs_{};
  int n_inputs_ = 0;
  Tensor* pending_out_ = nullptr;        // caller's out when results go through scratch
  Tensor pending_scratch_;
};

}  // namespace lc
