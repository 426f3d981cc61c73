// attention2d: validation, placement and dispatch to Backend::attention.
// q, k, v: float32, float16 or bfloat16 (one dtype for all three); the result has that dtype.
// The kernels compute in float32 (CPU: 16-bit inputs are widened into float32 scratch; CUDA:
// the kernel loads 16-bit elements and widens them on the way into shared memory).
#include <cmath>

#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/registry.h"

namespace lc {

namespace {

// scale: 0 means 1/sqrt(head_dim); otherwise it must be finite and > 0 (one rule for the ops,
// the sessions and conv -> attention).
void check_scale(const char* op, float scale) {
  if (!(scale >= 0.0f) || std::isinf(scale))
    throw_value(op, "scale must be a finite number > 0 (or 0 / None for 1/sqrt(head_dim)), got " +
                        std::to_string(scale));
}

void check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  // float32, float16 or bfloat16, the same for q, k and v; the result has that dtype.
  check_float(op, "q", q);
  check_same_dtype(op, "q", q, "k", k);
  check_same_dtype(op, "q", q, "v", v);
  check_ndim(op, "q", q, 2);
  check_ndim(op, "k", k, 2);
  check_ndim(op, "v", v, 2);
  check_nonempty(op, "q", q);
  check_nonempty(op, "k", k);
  check_nonempty(op, "v", v);
  if (q.size(1) != k.size(1))
    throw_value(op, "q is " + q.shape_str() + " and k is " + k.shape_str() +
                        "; q and k must share the head dimension (columns)");
  if (k.size(0) != v.size(0))
    throw_value(op, "k is " + k.shape_str() + " and v is " + v.shape_str() +
                        "; k and v must have the same sequence length (rows)");
}

void run_attention(OpRunner& r, const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                   float scale, Tensor& out) {
  AttentionArgs a;
  a.q = r.in_raw(q);
  a.k = r.in_raw(k);
  a.v = r.in_raw(v);
  a.sq = q.size(0);
  a.sk = k.size(0);
  a.d = q.size(1);
  a.dv = v.size(1);
  a.causal = causal;
  a.scale = scale > 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(a.d));
  a.dtype = q.dtype();
  a.out = r.out_raw(out);
  r.launch([&](Backend& be) { be.attention(a); });
  r.finish();
}

// The op's facts (work estimate, what CUDA supports) come from its OpDef (registry.h).
void place(OpRunner& r, const Tensor& q, const Tensor& k, const Tensor& v) {
  const OpDef& def = opdefs::attention2d;
  const OpArgs args{&q, &k, &v};
  r.place(def.work(args), {&q, &k, &v}, def.supports(DeviceKind::cuda, args));
}

}  // namespace

std::vector<std::int64_t> attention2d_out_shape(const Tensor& q, const Tensor& k, const Tensor& v) {
  check_attention("attention2d", q, k, v);
  return {q.size(0), v.size(1)};
}

void attention2d_into(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, bool causal,
                      const ExecutionPolicy& p, float scale) {
  static constexpr const char* op = "attention2d";
  check_attention(op, q, k, v);
  check_scale(op, scale);
  check_out(op, out, {q.size(0), v.size(1)}, q.dtype());
  OpRunner r(op, p);
  place(r, q, k, v);
  run_attention(r, q, k, v, causal, scale, out);
}

Tensor attention2d(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                   const ExecutionPolicy& p, float scale) {
  static constexpr const char* op = "attention2d";
  check_attention(op, q, k, v);
  check_scale(op, scale);
  OpRunner r(op, p);
  place(r, q, k, v);
  Tensor out = r.result({q.size(0), v.size(1)}, q.dtype());
  run_attention(r, q, k, v, causal, scale, out);
  return out;
}

}  // namespace lc
