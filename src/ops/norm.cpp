// layernorm and softmax over the last dimension: validation, placement, dispatch.
#include "core/op_runner.h"
#include "ops/checks.h"
#include "ops/work.h"

namespace lc {

namespace {

void check_rows(const char* op, const Tensor& x) {
  check_f32(op, "x", x);
  if (x.ndim() < 1)
    throw_value(op, "'x' must have at least 1 dimension (the normalised one is the last)");
  check_nonempty(op, "x", x);
}

std::int64_t last_dim(const Tensor& x) { return x.size(x.ndim() - 1); }

WorkEstimate norm_work(const Tensor& x) { return ::lc::norm_work(static_cast<double>(x.numel())); }

void check_affine(const char* op, const char* name, const Tensor* t, std::int64_t cols) {
  if (!t) return;
  check_f32(op, name, *t);
  if (t->ndim() != 1 || t->size(0) != cols)
    throw_value(op, std::string("'") + name + "' must be 1-D of length " + std::to_string(cols) +
                        " (x's last dimension), got shape " + t->shape_str());
}

void run_layernorm(OpRunner& r, const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                   Tensor& out) {
  LayerNormArgs a;
  a.x = r.in(x);
  a.gamma = r.in_opt(gamma);
  a.beta = r.in_opt(beta);
  a.cols = last_dim(x);
  a.rows = x.numel() / a.cols;
  a.eps = eps;
  a.out = r.out(out);
  r.launch([&](Backend& be) { be.layernorm(a); });
  r.finish();
}

void run_softmax(OpRunner& r, const Tensor& x, Tensor& out) {
  SoftmaxArgs a;
  a.x = r.in(x);
  a.cols = last_dim(x);
  a.rows = x.numel() / a.cols;
  a.out = r.out(out);
  r.launch([&](Backend& be) { be.softmax(a); });
  r.finish();
}

void check_eps(const char* op, float eps) {
  if (!(eps > 0.0f)) throw_value(op, "eps must be > 0, got " + std::to_string(eps));
}

}  // namespace

std::vector<std::int64_t> layernorm_out_shape(const Tensor& x, const Tensor* gamma,
                                              const Tensor* beta, float eps) {
  static constexpr const char* op = "layernorm";
  check_rows(op, x);
  check_affine(op, "gamma", gamma, last_dim(x));
  check_affine(op, "beta", beta, last_dim(x));
  check_eps(op, eps);
  return x.shape();
}

std::vector<std::int64_t> softmax_out_shape(const Tensor& x) {
  check_rows("softmax", x);
  return x.shape();
}

void layernorm_into(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps, Tensor& out,
                    const ExecutionPolicy& p) {
  static constexpr const char* op = "layernorm";
  check_rows(op, x);
  check_affine(op, "gamma", gamma, last_dim(x));
  check_affine(op, "beta", beta, last_dim(x));
  check_eps(op, eps);
  check_out_like(op, out, x);
  OpRunner r(op, p);
  r.place(norm_work(x), {&x, gamma, beta});
  run_layernorm(r, x, gamma, beta, eps, out);
}

Tensor layernorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                 const ExecutionPolicy& p) {
  static constexpr const char* op = "layernorm";
  check_rows(op, x);
  check_affine(op, "gamma", gamma, last_dim(x));
  check_affine(op, "beta", beta, last_dim(x));
  check_eps(op, eps);
  OpRunner r(op, p);
  r.place(norm_work(x), {&x, gamma, beta});
  Tensor out = r.result(x.shape());
  run_layernorm(r, x, gamma, beta, eps, out);
  return out;
}

void softmax_into(const Tensor& x, Tensor& out, const ExecutionPolicy& p) {
  static constexpr const char* op = "softmax";
  check_rows(op, x);
  check_out_like(op, out, x);
  OpRunner r(op, p);
  r.place(norm_work(x), {&x});
  run_softmax(r, x, out);
}

Tensor softmax(const Tensor& x, const ExecutionPolicy& p) {
  static constexpr const char* op = "softmax";
  check_rows(op, x);
  OpRunner r(op, p);
  r.place(norm_work(x), {&x});
  Tensor out = r.result(x.shape());
  run_softmax(r, x, out);
  return out;
}

}  // namespace lc
