// matmul2d and linear: validation, placement and dispatch to Backend::matmul.
#include "core/op_runner.h"
#include "core/tuners.h"
#include "ops/checks.h"
#include "ops/work.h"

namespace lc {

namespace {

void check_matmul(const char* op, const Tensor& a, const Tensor& b) {
  check_f32(op, "a", a);
  check_f32(op, "b", b);
  check_ndim(op, "a", a, 2);
  check_ndim(op, "b", b, 2);
  check_nonempty(op, "a", a);
  check_nonempty(op, "b", b);
  if (a.size(1) != b.size(0))
    throw_value(op, "inner dimensions differ: a is " + a.shape_str() + " and b is " + b.shape_str() +
                        "; a's columns must equal b's rows (a[m,k] @ b[k,n])");
}

// linear takes x of shape [..., in] (any leading dimensions, as torch's nn.Linear): the rows
// are the product of the leading dimensions and the result is [..., out].
void check_linear(const char* op, const Tensor& x, const Tensor& w, const Tensor* bias) {
  check_f32(op, "x", x);
  check_f32(op, "weight", w);
  if (x.ndim() < 1)
    throw_value(op, "'x' must have at least 1 dimension ([..., in_features]), got a 0-D tensor");
  check_ndim(op, "weight", w, 2);
  check_nonempty(op, "x", x);
  check_nonempty(op, "weight", w);
  if (x.size(x.ndim() - 1) != w.size(1))
    throw_value(op, "x is " + x.shape_str() + " but weight is " + w.shape_str() +
                        "; weight must be [out_features, in_features] with in_features = x's "
                        "last dimension (torch nn.Linear layout)");
  if (bias) {
    check_f32(op, "bias", *bias);
    if (bias->ndim() != 1 || bias->size(0) != w.size(0))
      throw_value(op, "bias must be 1-D of length out_features=" + std::to_string(w.size(0)) +
                          ", got shape " + bias->shape_str());
  }
}

// a is read as the row-major [m, k] matrix of its elements (a 2-D matrix, or linear's
// [..., in] input with its leading dimensions as rows).
void run_matmul(OpRunner& r, const Tensor& a, const Tensor& b, const Tensor* bias, bool trans_b,
                Activation act, Tensor& out) {
  MatmulArgs args;
  args.a = r.in(a);
  args.b = r.in(b);
  args.bias = r.in_opt(bias);
  args.k = a.size(a.ndim() - 1);
  args.m = a.numel() / args.k;
  args.n = trans_b ? b.size(0) : b.size(1);
  args.trans_b = trans_b;
  args.act = act;
  args.precision = r.policy().precision;
  args.out = r.out(out);
  // On the CPU, mid-size GEMMs choose between OpenBLAS's threading and pooled sgemm tiles per
  // shape (measured once, cached; tiny shapes skip this after one compare).
  cpu::GemmPath path = cpu::GemmPath::automatic;
  if (r.device() == DeviceKind::cpu) path = autotune::cpu_gemm_choice(args, r.policy().autotune);
  r.launch([&](Backend& be) {
    if (be.kind() == DeviceKind::cpu && path != cpu::GemmPath::automatic)
      autotune::run_cpu_matmul(args, path);
    else
      be.matmul(args);
  });
  r.finish();
}

}  // namespace

std::vector<std::int64_t> matmul2d_out_shape(const Tensor& a, const Tensor& b) {
  check_matmul("matmul2d", a, b);
  return {a.size(0), b.size(1)};
}

std::vector<std::int64_t> linear_out_shape(const Tensor& x, const Tensor& w, const Tensor* bias) {
  check_linear("linear", x, w, bias);
  std::vector<std::int64_t> shape = x.shape();
  shape.back() = w.size(0);
  return shape;
}

void matmul2d_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) {
  static constexpr const char* op = "matmul2d";
  check_matmul(op, a, b);
  check_out(op, out, {a.size(0), b.size(1)});
  OpRunner r(op, p);
  r.place(matmul_work(a.size(0), a.size(1), b.size(1)), {&a, &b});
  run_matmul(r, a, b, nullptr, false, Activation::none, out);
}

Tensor matmul2d(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) {
  static constexpr const char* op = "matmul2d";
  check_matmul(op, a, b);
  OpRunner r(op, p);
  r.place(matmul_work(a.size(0), a.size(1), b.size(1)), {&a, &b});
  Tensor out = r.result({a.size(0), b.size(1)});
  run_matmul(r, a, b, nullptr, false, Activation::none, out);
  return out;
}

void linear_into(const Tensor& x, const Tensor& w, const Tensor* bias, Activation act, Tensor& out,
                 const ExecutionPolicy& p) {
  static constexpr const char* op = "linear";
  check_linear(op, x, w, bias);
  check_out(op, out, linear_out_shape(x, w, bias));
  const std::int64_t k = x.size(x.ndim() - 1);
  OpRunner r(op, p);
  r.place(matmul_work(x.numel() / k, k, w.size(0)), {&x, &w, bias});
  run_matmul(r, x, w, bias, true, act, out);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias, Activation act,
              const ExecutionPolicy& p) {
  static constexpr const char* op = "linear";
  check_linear(op, x, w, bias);
  const std::int64_t k = x.size(x.ndim() - 1);
  OpRunner r(op, p);
  r.place(matmul_work(x.numel() / k, k, w.size(0)), {&x, &w, bias});
  Tensor out = r.result(linear_out_shape(x, w, bias));
  run_matmul(r, x, w, bias, true, act, out);
  return out;
}

}  // namespace lc
