// layernorm and softmax over the last dimension: validation, placement, dispatch.
//
// x is [..., C] with any number of leading dimensions (rows = their product). Storage dtypes:
// float32, float16, bfloat16 on every backend (computed in float32, rounded once on store) and
// float64 on the CPU (computed in float64; device="cuda" runs it on the CPU as a fallback).
// gamma / beta are [C] in x's dtype (as torch's layer_norm with bf16 weights); ops never mix
// storage dtypes. Zero-size x (a zero leading dimension, or C == 0) gives an empty result of
// x's shape, as numpy and torch do, and launches nothing.
// layernorm's optional `residual` (x's shape and dtype, any strides) is the fused residual add:
// y = layernorm(x + residual), the sum formed in the compute type as the kernel reads the row
// (one kernel, no temporary; the graph's residual_layernorm rule folds add -> layernorm here).
// softmax's optional `scale` (finite, > 0) and additive `mask` (x's dtype, shape equal to x's
// trailing dimensions, e.g. [S, S] or [S] for x [B, H, S, S]; repeated over the leading ones)
// fuse the attention-score prologue: softmax(x * scale + mask), applied as the row is read
// (the graph's softmax_scale rule folds vector_scale / add -> softmax here).
#include <cmath>

#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/registry.h"

namespace lc {

namespace {

void check_rows(const char* op, const Tensor& x) {
  check_float(op, "x", x, /*allow_f64=*/true);
  if (x.ndim() < 1)
    throw_value(op, "'x' must have at least 1 dimension (the normalised one is the last), got a "
                    "0-d tensor; reshape it to [1]");
}

std::int64_t last_dim(const Tensor& x) { return x.size(x.ndim() - 1); }

// The op's facts come from its OpDef (registry.h): the work estimate, and the CUDA kernels'
// dtypes (float32 / float16 / bfloat16; float64 runs on the CPU).
void place(OpRunner& r, const OpDef& def, const Tensor& x, const Tensor* gamma = nullptr,
           const Tensor* beta = nullptr, const Tensor* residual = nullptr) {
  const OpArgs args{&x, gamma, beta, residual};
  r.place(def.work(args), {&x, gamma, beta, residual}, def.supports(DeviceKind::cuda, args));
}

void place_softmax(OpRunner& r, const Tensor& x, const Tensor* mask) {
  const OpArgs args{&x, mask};
  r.place(opdefs::softmax.work(args), {&x, mask}, opdefs::softmax.supports(DeviceKind::cuda, args));
}

void check_affine(const char* op, const char* name, const Tensor* t, const Tensor& x) {
  if (!t) return;
  check_same_dtype(op, "x", x, name, *t);
  const std::int64_t cols = last_dim(x);
  if (t->ndim() != 1 || t->size(0) != cols)
    throw_value(op, std::string("'") + name + "' must be 1-D of length " + std::to_string(cols) +
                        " (the last dimension of x, whose shape is " + x.shape_str() +
                        "), got shape " + t->shape_str());
}

void run_layernorm(OpRunner& r, const Tensor& x, const Tensor* gamma, const Tensor* beta,
                   const Tensor* residual, float eps, Tensor& out) {
  if (x.numel() == 0) {  // an empty result: nothing to stage or launch
    r.finish();
    return;
  }
  LayerNormArgs a;
  a.x = r.in_raw(x);
  a.gamma = r.in_raw_opt(gamma);
  a.beta = r.in_raw_opt(beta);
  a.residual = r.in_raw_opt(residual);  // staged contiguous like x when strided
  a.cols = last_dim(x);
  a.rows = x.numel() / a.cols;
  a.eps = eps;
  a.dtype = x.dtype();
  a.out = r.out_raw(out);
  r.launch([&](Backend& be) { be.layernorm(a); });
  r.finish();
}

SoftmaxMaskLayout mask_layout(const Tensor& x, const Tensor& mask) {
  return softmax_mask_layout({x.shape_data(), x.ndim()}, {mask.shape_data(), mask.ndim()});
}

void run_softmax(OpRunner& r, const Tensor& x, float scale, const Tensor* mask, Tensor& out) {
  if (x.numel() == 0) {
    r.finish();
    return;
  }
  SoftmaxArgs a;
  a.x = r.in_raw(x);
  a.cols = last_dim(x);
  a.rows = x.numel() / a.cols;
  a.dtype = x.dtype();
  a.scale = scale;
  a.mask = r.in_raw_opt(mask);  // staged contiguous when strided
  if (mask) {
    const SoftmaxMaskLayout l = mask_layout(x, *mask);  // checked: ok
    a.mask_rows = l.rows;
    a.mask_repeat = l.repeat;
    a.mask_outer = l.outer;
  }
  a.out = r.out_raw(out);
  r.launch([&](Backend& be) { be.softmax(a); });
  r.finish();
}

void check_eps(const char* op, float eps) {
  if (!(eps > 0.0f)) throw_value(op, "eps must be > 0, got " + std::to_string(eps));
}

void check_residual(const char* op, const Tensor* res, const Tensor& x) {
  if (!res) return;
  check_same_dtype(op, "x", x, "residual", *res);
  if (res->ndim() != x.ndim() || res->shape() != x.shape())
    throw_value(op, "'residual' must have x's shape " + x.shape_str() +
                        " (it is added to x elementwise, without broadcasting), got " +
                        res->shape_str() + "; pass a residual of x's shape or add it first");
}

void check_layernorm(const char* op, const Tensor& x, const Tensor* gamma, const Tensor* beta,
                     float eps, const Tensor* residual) {
  check_rows(op, x);
  check_affine(op, "gamma", gamma, x);
  check_affine(op, "beta", beta, x);
  check_residual(op, residual, x);
  check_eps(op, eps);
}

void check_softmax(const char* op, const Tensor& x, float scale, const Tensor* mask) {
  check_rows(op, x);
  if (!(scale > 0.0f) || !std::isfinite(scale))
    throw_value(op, "scale must be a finite number > 0 (1: x unscaled), got " + std::to_string(scale));
  if (!mask) return;
  check_same_dtype(op, "x", x, "mask", *mask);
  if (!mask_layout(x, *mask).ok) throw_value(op, softmax_mask_error(x.shape(), mask->shape()));
}

}  // namespace

std::vector<std::int64_t> layernorm_out_shape(const Tensor& x, const Tensor* gamma,
                                              const Tensor* beta, float eps,
                                              const Tensor* residual) {
  check_layernorm("layernorm", x, gamma, beta, eps, residual);
  return x.shape();
}

std::vector<std::int64_t> softmax_out_shape(const Tensor& x, float scale, const Tensor* mask) {
  check_softmax("softmax", x, scale, mask);
  return x.shape();
}

void layernorm_into(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps, Tensor& out,
                    const ExecutionPolicy& p, const Tensor* residual) {
  static constexpr const char* op = "layernorm";
  check_layernorm(op, x, gamma, beta, eps, residual);
  check_out_like(op, out, x);
  OpRunner r(op, p);
  place(r, opdefs::layernorm, x, gamma, beta, residual);
  run_layernorm(r, x, gamma, beta, residual, eps, out);
}

Tensor layernorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                 const ExecutionPolicy& p, const Tensor* residual) {
  static constexpr const char* op = "layernorm";
  check_layernorm(op, x, gamma, beta, eps, residual);
  OpRunner r(op, p);
  place(r, opdefs::layernorm, x, gamma, beta, residual);
  Tensor out = r.result(x.shape(), x.dtype());
  run_layernorm(r, x, gamma, beta, residual, eps, out);
  return out;
}

void softmax_into(const Tensor& x, Tensor& out, const ExecutionPolicy& p, float scale,
                  const Tensor* mask) {
  static constexpr const char* op = "softmax";
  check_softmax(op, x, scale, mask);
  check_out_like(op, out, x);
  OpRunner r(op, p);
  place_softmax(r, x, mask);
  run_softmax(r, x, scale, mask, out);
}

Tensor softmax(const Tensor& x, const ExecutionPolicy& p, float scale, const Tensor* mask) {
  static constexpr const char* op = "softmax";
  check_softmax(op, x, scale, mask);
  OpRunner r(op, p);
  place_softmax(r, x, mask);
  Tensor out = r.result(x.shape(), x.dtype());
  run_softmax(r, x, scale, mask, out);
  return out;
}

}  // namespace lc
