// attention_train_step (train.h): forward, MSE loss, backward and SGD through the op API, so
// every backend that runs attention / attention_backward runs it. The attention sessions'
// train_step (session.h) call attention_train_step_with with their resident buffers: one
// implementation for the functional step and the sessions.
#include "lightning_core/train.h"

#include <cmath>
#include <string>

#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "backends/backend.h"
#include "ops/checks.h"

namespace lc {

namespace {

// A one-element host tensor holding v in `dtype` (rounded once).
Tensor host_scalar(DType dtype, double v) {
  Tensor t = Tensor::empty({1}, dtype, DeviceKind::cpu);
  switch (dtype) {
    case DType::f64: *t.data_as<double>() = v; break;
    case DType::f16: *t.data_as<float16>() = to_f16(v); break;
    case DType::bf16: *t.data_as<bfloat16>() = to_bf16(v); break;
    default: *t.data_as<float>() = static_cast<float>(v); break;
  }
  return t;
}

// x *= alpha in place. float64 multiplies by a float64 scalar (an alpha rounded to float32
// would cost float64 steps their precision); the other dtypes use vector_scale with a float32
// alpha (more exact than rounding it to a 16-bit scalar first).
void scale_in_place(Tensor& x, double alpha, const ExecutionPolicy& p) {
  if (x.numel() == 0) return;
  if (x.dtype() == DType::f64) {
    mul_into(x, host_scalar(DType::f64, alpha), x, p);
  } else {
    elementwise_into("vector_scale", x, nullptr, static_cast<float>(alpha), x, p);
  }
}

void ensure(Tensor& buf, const std::vector<std::int64_t>& shape, DType dtype, DeviceKind dev) {
  if (!buf.defined() || buf.shape() != shape || buf.dtype() != dtype || !buf.is_contiguous())
    buf = Tensor::empty(shape, dtype, dev);
}

}  // namespace

AttentionTrainResult attention_train_step_with(Tensor& q, Tensor& k, Tensor& v,
                                               const Tensor& target, double lr, bool causal,
                                               const Tensor* mask, float scale,
                                               const ExecutionPolicy& p,
                                               AttentionTrainBuffers& bufs, const char* op) {
  // ---- checks: nothing is written before all pass ----
  Tensor* xs[3] = {&q, &k, &v};
  const char* names[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    check_float(op, names[i], *xs[i], /*allow_f64=*/true);
    if (!xs[i]->is_contiguous())
      throw_value(op, std::string(names[i]) + " is updated in place: it must be a writable, "
                      "C-contiguous array (np.ascontiguousarray(...) makes one), got a "
                      "non-contiguous " + xs[i]->shape_str());
    if (!xs[i]->writable())
      throw_value(op, std::string(names[i]) + " is updated in place: it must be writable, got a "
                      "read-only array");
  }
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j)
      if (xs[i]->may_overlap(*xs[j]))
        throw_value(op, std::string(names[i]) + " and " + names[j] +
                            " share memory; the update needs separate arrays (copy one)");
  const std::vector<std::int64_t> os = attention_out_shape(q, k, v, mask);  // shapes, mask
  if (target.shape() != os)
    throw_value(op, "target is " + target.shape_str() + "; it must be out's shape " +
                        shape_str(os) + " (q's shape with v's last dimension)");
  check_same_dtype(op, "q", q, "target", target);
  if (!std::isfinite(lr))
    throw_value(op, "lr must be a finite number, got " + std::to_string(lr));

  // ---- work tensors on q's device (sessions pass theirs) ----
  const DeviceKind dev = q.device();
  const DType dt = q.dtype();
  std::vector<std::int64_t> ls = q.shape();
  ls.pop_back();
  ensure(bufs.out, os, dt, dev);
  ensure(bufs.lse, ls, DType::f32, dev);
  ensure(bufs.diff, os, dt, dev);
  ensure(bufs.dq, q.shape(), dt, dev);
  ensure(bufs.dk, k.shape(), dt, dev);
  ensure(bufs.dv, v.shape(), dt, dev);

  // ---- forward, loss, backward, SGD ----
  attention_into(q, k, v, bufs.out, causal, mask, scale, p, &bufs.lse);
  sub_into(bufs.out, target, bufs.diff, p);
  AttentionTrainResult r;
  r.out = bufs.out;
  const std::int64_t n = bufs.diff.numel();
  if (n > 0) {
    // The loss: sum (out - target)^2 in float64 where diff lives (on a GPU a device reduction
    // and an 8-byte download: the step's only sync).
    DeviceScope scope(dev, bufs.diff.device_index());
    r.loss = get_backend(dev).sum_squares(bufs.diff.data(), dt, n) / static_cast<double>(n);
  }
  scale_in_place(bufs.diff, 2.0 / static_cast<double>(n > 0 ? n : 1), p);  // dout
  attention_backward_into(bufs.diff, q, k, v, bufs.out, bufs.lse, bufs.dq, bufs.dk, bufs.dv,
                          causal, mask, scale, p);
  Tensor* gs[3] = {&bufs.dq, &bufs.dk, &bufs.dv};
  for (int i = 0; i < 3; ++i) {
    if (xs[i]->numel() == 0) continue;
    scale_in_place(*gs[i], lr, p);
    sub_into(*xs[i], *gs[i], *xs[i], p);
  }
  return r;
}

AttentionTrainResult attention_train_step(Tensor& q, Tensor& k, Tensor& v, const Tensor& target,
                                          double lr, bool causal, const Tensor* mask,
                                          float scale, const ExecutionPolicy& p) {
  AttentionTrainBuffers bufs;
  return attention_train_step_with(q, k, v, target, lr, causal, mask, scale, p, bufs);
}

}  // namespace lc
