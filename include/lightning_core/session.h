// Resident sessions: upload the inputs once, then launch only; synchronise and download when
// asked. The original's API (matmul2d_resident_session & co.) on top of lc::Tensor and the op
// API. A session on the CPU (no GPU, or device="cpu") has the same API and semantics, with
// "upload" meaning a copy into session-owned buffers.
//
//   start_into(inputs, out)                 upload all inputs, run once, sync, download to out
//   run_into(inputs, out)                   run once on the resident inputs (re-uploaded first
//                                           when policy.upload == always), sync, download
//   run_batch_sync_no_download_into(inputs, out, n)
//                                           n launches, one sync at the end, no download
//                                           (out is shape-checked; download_into fills it)
//   sync()                                  waits for queued launches
//   download_into(out)                      syncs and copies the last result into out
//   close()                                 frees the device memory (also on destruction)
//
// Inputs passed to later calls must have the shapes the session was created with (ValueError
// otherwise; create a new session for new shapes). policy.upload: "once" (the default for
// sessions) uploads at creation and start_into only; "always" also before each run_into /
// batch; "never" binds the given device tensors without copying (they must already live on the
// session's device). Under "once" and "never" an input that is not the bound one (other memory,
// or flagged in `stale_mask`, bit i for input i: the Python bindings flag every argument that
// is not the very object last bound) is uploaded or rebound first, so a result is never
// computed from data the caller did not pass; the bound object's own contents are trusted
// (change them in place and call start_into, or use upload="always").
//
// Thread safety: every method takes the session's lock, so threads may share a session; their
// calls run one after another (close() waits for a call in flight and later calls raise). Large host<->device copies go through the CUDA backend's pinned,
// double-buffered staging, so the host-side copy of one chunk overlaps the DMA of the previous
// one and the launches queue behind the uploads on the same stream.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lightning_core/fused.h"
#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"
#include "lightning_core/train.h"

namespace lc {

class CapturedGraph;  // the backend's capture seam (src/backends/backend.h)

struct SessionStats {
  std::uint64_t uploads = 0;        // input copies into resident buffers
  std::uint64_t launches = 0;       // op launches (graph replays included)
  std::uint64_t syncs = 0;          // explicit or implicit synchronisations
  std::uint64_t downloads = 0;      // result copies into a caller's out
  std::uint64_t graph_replays = 0;  // launches served by a captured CUDA graph
  std::uint64_t graph_records = 0;  // captures of the launch: the first, and one per rebind
                                    // (upload="never" with other buffers), each applied to the
                                    // instantiated graph in place where the backend can
};

class ResidentSession {
 public:
  virtual ~ResidentSession();
  ResidentSession(const ResidentSession&) = delete;
  ResidentSession& operator=(const ResidentSession&) = delete;

  const char* op() const { return op_; }
  DeviceKind device() const { return device_; }
  // The GPU the session lives on (0 on the CPU): every call runs there, whatever device is
  // current in the calling thread.
  int device_index() const { return device_index_; }
  const std::string& placement_reason() const { return reason_; }
  const ExecutionPolicy& policy() const { return policy_; }
  const std::vector<std::int64_t>& out_shape() const { return out_shape_; }
  // Names and creation shapes of the per-call inputs.
  const std::vector<std::string>& input_names() const { return names_; }
  const std::vector<std::vector<std::int64_t>>& input_shapes() const { return shapes_; }

  void start_into(const std::vector<const Tensor*>& inputs, Tensor& out);
  void run_into(const std::vector<const Tensor*>& inputs, Tensor& out,
                std::uint32_t stale_mask = 0);
  void run_batch_sync_no_download_into(const std::vector<const Tensor*>& inputs, Tensor& out,
                                       std::int64_t n, std::uint32_t stale_mask = 0);
  void sync();
  void download_into(Tensor& out);
  void close() noexcept;
  bool closed() const { return closed_.load(); }

  // Device (or session-owned host) bytes held now; 0 after close().
  std::size_t resident_bytes() const;
  SessionStats stats() const;
  bool uses_graph() const { return use_graph_; }
  // The storage dtype of every per-call input and of the result (float32 unless the session
  // type takes others: the attention sessions take q's dtype).
  DType dtype() const { return dtype_; }

 protected:
  ResidentSession(const char* op, const ExecutionPolicy& p, std::vector<std::string> names,
                  const std::vector<const Tensor*>& inputs, std::vector<std::int64_t> out_shape,
                  double flops, bool gpu_can_run, bool use_graph, DType dtype = DType::f32);
  // Runs the op once on the resident buffers into out_ (no sync, no download).
  virtual void launch() = 0;
  // Frees buffers a subclass holds besides the inputs and the result (called by close()).
  virtual void release_extra() noexcept {}

  const Tensor& resident(std::size_t i) const { return inputs_[i]; }
  Tensor& result_buffer() { return out_; }
  // The policy launch() passes to the ops: explicit device, nothing implicit.
  const ExecutionPolicy& launch_policy() const { return launch_policy_; }
  // Session-owned buffers that are not per-call inputs (weights, scratch): counted in
  // resident_bytes() and released by close().
  Tensor make_owned_copy(const Tensor& src);  // src's dtype
  Tensor make_scratch(const std::vector<std::int64_t>& shape, DType dtype = DType::f32);

  // For methods of subclasses that go beyond start/run (the attention sessions' forward and
  // train_step): takes the session's lock and checks that the session is open.
  std::unique_lock<std::recursive_mutex> lock_open(const char* what) const;
  // Runs launch() on the resident inputs, synchronises and copies the result into out
  // (checked against the result's shape and dtype). The caller holds lock_open().
  void run_resident_locked(const char* what, Tensor& out);
  // The result buffer now holds a result computed outside launch() (counted as a launch).
  void note_result_written();
  // Mutable access to resident input i for in-place updates (training); the caller holds
  // lock_open(). Under upload="never" these are the caller's own bound tensors.
  Tensor& resident_mut(std::size_t i) { return inputs_[i]; }

 private:
  void check_open(const char* what) const;
  void check_inputs(const char* what, const std::vector<const Tensor*>& in) const;
  void check_out(const char* what, const Tensor& out) const;
  // Uploads (or, under upload="never", rebinds) the inputs whose bit is set in `mask`.
  void upload(const std::vector<const Tensor*>& in, std::uint32_t mask = ~0u);
  // The inputs a run must upload first: all under "always"; under "once"/"never" those flagged
  // stale or living in other memory than the one bound last.
  std::uint32_t inputs_to_upload(const std::vector<const Tensor*>& in, std::uint32_t stale) const;
  void launch_counted();
  void sync_locked();
  void download_locked(Tensor& out);
  void release_graph() noexcept;

  const char* op_;
  ExecutionPolicy policy_;
  ExecutionPolicy launch_policy_;
  DeviceKind device_ = DeviceKind::cpu;
  int device_index_ = 0;
  std::string reason_;
  std::vector<std::string> names_;
  std::vector<std::vector<std::int64_t>> shapes_;
  std::vector<Tensor> inputs_;
  // Identity of the source each input was last uploaded from (data pointer and strides).
  std::vector<const void*> bound_data_;
  std::vector<std::vector<std::int64_t>> bound_strides_;
  std::vector<std::int64_t> out_shape_;
  DType dtype_ = DType::f32;
  mutable std::recursive_mutex mu_;
  Tensor out_;
  std::size_t accounted_bytes_ = 0;
  std::atomic<bool> closed_{false};
  bool have_result_ = false;
  bool use_graph_ = false;
  // Checked out of the backend's graph cache on the first batch; replays compare the bound
  // buffers (a pointer check) and re-record + update in place only when they changed.
  std::unique_ptr<CapturedGraph> graph_;
  SessionStats stats_;
};

// C = A @ B with A [m,k] and B [k,n] resident.
class Matmul2dSession final : public ResidentSession {
 public:
  Matmul2dSession(const Tensor& a, const Tensor& b, const ExecutionPolicy& p = current_policy(),
                  bool use_graph = false);
  ~Matmul2dSession() override { close(); }
  // The GEMM mode prepared for this shape on CUDA ("" on the CPU or without autotune).
  const std::string& gemm_mode() const { return gemm_mode_; }

 private:
  void launch() override;
  std::string gemm_mode_;
};

// What the attention sessions share: q, k, v resident (inputs 0, 1, 2) and the original's
// training surface on them.
//   forward()                 runs on the resident q, k, v, syncs, returns the result (host)
//   forward_into(out)         the same into out (out_shape(), dtype())
//   train_step(target, lr)    one SGD step on MSE (train.h's attention_train_step, the same
//                             implementation): returns {out before the update (host), loss}
//                             and updates the resident q, k, v in place. target: out's shape
//                             and dtype, any device. Later runs use the updated q, k, v (under
//                             upload="once"/"never" as long as the bound objects are passed;
//                             passing other arrays uploads those instead).
//   train_step_into(target, lr, out)  the same step, out before the update written into out
//                             (out_shape(), dtype(), any device: a device out costs no
//                             download, only the loss's 8 bytes)
//   parameter(i)              a host copy of resident q (0), k (1) or v (2)
// The step runs where the session runs (CPU or CUDA: both have the attention backward) and
// keeps its work tensors resident, so repeated steps allocate nothing on the device.
class AttentionTrainableSession : public ResidentSession {
 public:
  Tensor forward();
  void forward_into(Tensor& out);
  AttentionTrainResult train_step(const Tensor& target, double lr);
  AttentionTrainResult train_step_into(const Tensor& target, double lr, Tensor& out);
  Tensor parameter(int i);
  bool causal() const { return causal_; }
  float scale() const { return scale_; }

 protected:
  AttentionTrainableSession(const char* op, const ExecutionPolicy& p, const Tensor& q,
                            const Tensor& k, const Tensor& v, std::vector<std::int64_t> out_shape,
                            double flops, bool gpu_can_run, bool use_graph, bool causal,
                            float scale);
  void release_extra() noexcept override;
  const Tensor* mask_ptr() const { return has_mask_ ? &mask_ : nullptr; }
  Tensor mask_;
  bool has_mask_ = false;
  bool causal_;
  // What train_step passes to the batched ops for causal: causal_, except where the session's
  // forward means something else (attention2d's top-left causal with sq != sk becomes a keep
  // mask in mask_ and step_causal_ = false).
  bool step_causal_;
  float scale_;

 private:
  void sync_if_device();
  AttentionTrainBuffers bufs_;  // created on the first train_step, resident after
  Tensor target_;               // a host / strided target staged on the session's device
};

// out = attention(q, k, v) with q [sq,d], k [sk,d], v [sk,dv] resident (float32; the forward
// runs attention2d's kernel, train_step the batched op's forward and backward). causal keeps
// attention2d's meaning (top-left: query i sees keys j <= i); with sq != sk, where lc.attention's
// causal is bottom-right, train_step uses an equivalent resident keep mask instead.
class Attention2dSession final : public AttentionTrainableSession {
 public:
  Attention2dSession(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                     float scale = 0.0f, const ExecutionPolicy& p = current_policy(),
                     bool use_graph = false);
  ~Attention2dSession() override { close(); }

 private:
  void launch() override;
};

// Batched multi-head / grouped-query attention (lc.attention) with q [B, H, Sq, D],
// k [B, Hk, Sk, D], v [B, Hk, Sk, Dv] (or the 2-D / 3-D forms) resident, in q's dtype (float32,
// float16, bfloat16; float64 on the CPU), with an optional mask (resident from creation),
// causal and scale as lc.attention.
class AttentionSession final : public AttentionTrainableSession {
 public:
  AttentionSession(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = false,
                   const Tensor* mask = nullptr, float scale = 0.0f,
                   const ExecutionPolicy& p = current_policy(), bool use_graph = false);
  ~AttentionSession() override { close(); }
  bool has_mask() const { return has_mask_; }

 private:
  void launch() override;
};

// The integrated conv -> attention path (fused.h) with x as the per-call input and the weight
// and bias resident from creation.
class ConvAttentionSession final : public ResidentSession {
 public:
  ConvAttentionSession(const Tensor& x, const Tensor& w, const Tensor* bias,
                       const ConvAttentionParams& prm, const ExecutionPolicy& p = current_policy(),
                       bool use_graph = false);
  // Derived destructors close first, so the device is synchronised before any buffer goes.
  ~ConvAttentionSession() override { close(); }

 private:
  void launch() override;
  void release_extra() noexcept override;
  Tensor w_, b_, conv_, qkv_;
  bool has_bias_;
  ConvAttentionParams prm_;
};

// Bytes held by all open sessions of the process (tests check sessions free their memory).
std::size_t session_live_bytes();

}  // namespace lc
