// Op bindings: the original's names and argument order, plus keyword-only extras.
//   matmul2d(a, b, device=None, *, policy=None)        matmul2d_into(a, b, out, device=None, ...)
//   attention2d(q, k, v, causal=False, device=None, *, scale=None, policy=None)   (+ _into)
//   conv2d_nchw(x, w, b, stride_h=1, stride_w=1, pad_h=0, pad_w=0, device=None, *, activation="none")
//   matmul(a, b, device=None, *, policy=None)          torch.matmul semantics (+ matmul_into)
//   linear(x, weight, bias=None, activation="none", device=None, *, residual=None, policy=None)
//   layernorm, softmax, vector_add/sub/mul/scale, matrix_sub, relu (+ _into)
//   add/sub/mul/div(a, b, device=None, *, policy=None): numpy broadcasting (+ _into)
//   gelu(a, device=None, *, approximate="tanh", policy=None) (+ _into)
//   embedding(ids, weight, device=None, *, policy=None) (+ _into)
// `device=None` means "the policy's device" (default "auto").
#include <algorithm>

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "convert.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "numpy_api.h"
#include "ops/checks.h"

namespace lcpy {

namespace {

using Shape = std::vector<std::int64_t>;

template <class F>
void call_maybe_nogil(double flops, F&& f) {
  if (worth_releasing_gil(flops)) {
    nb::gil_scoped_release nogil;
    f();
  } else {
    f();
  }
}

// The returning form: a fresh numpy array when every input is numpy and the result lands on the
// host (computed by the `_into` path, no extra copy); an lc.Tensor otherwise. The numpy result
// has the dtype of the first argument in `args` (list the argument whose dtype the result takes
// first: the weight of an embedding, not its int ids).
template <class ShapeFn, class IntoFn, class RetFn>
nb::object run_returning(const char* op, std::initializer_list<const Arg*> args, const lc::ExecutionPolicy& p,
                         double flops, ShapeFn&& shape_fn, IntoFn&& into_fn, RetFn&& ret_fn) {
  bool any_lc = false;
  for (const Arg* a : args)
    if (a && a->from_lc) any_lc = true;
  if (!any_lc && p.download) {
    lc::Tensor view;
    const Arg* first = *args.begin();
    nb::object arr = new_numpy(shape_fn(), view, op, first ? first->t.dtype() : lc::DType::f32);
    call_maybe_nogil(flops, [&] { into_fn(view); });
    return arr;
  }
  lc::Tensor result;
  call_maybe_nogil(flops, [&] { result = ret_fn(); });
  return wrap_tensor(std::move(result));
}

template <class IntoFn>
nb::object run_into(nb::handle out_obj, const char* op, double flops, IntoFn&& into_fn) {
  Arg out;
  to_out_arg(out_obj, op, out);
  call_maybe_nogil(flops, [&] { into_fn(out.t); });
  return nb::borrow(out_obj);
}

lc::Activation act_arg(nb::handle s, const char* op) {
  return lc::parse_activation(str_param(s, op, "activation"), op);
}

// Conv strides and paddings: ints the core takes as `int` (checked here, so 2**40 is a
// ValueError naming the argument rather than an overflow).
struct ConvInts {
  int sh, sw, ph, pw;
};
ConvInts conv_ints(nb::handle sh, nb::handle sw, nb::handle ph, nb::handle pw, const char* op) {
  constexpr std::int64_t kMax = 2147483647;
  return {static_cast<int>(int_param(sh, op, "stride_h", 1, kMax)),
          static_cast<int>(int_param(sw, op, "stride_w", 1, kMax)),
          static_cast<int>(int_param(ph, op, "pad_h", 0, kMax)),
          static_cast<int>(int_param(pw, op, "pad_w", 0, kMax))};
}

// ---- matmul / linear -------------------------------------------------------------------------
nb::object py_matmul2d(nb::handle a_, nb::handle b_, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "matmul2d";
  Arg a, b;
  to_arg(a_, op, "a", a);
  to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const double flops = 2.0 * a.t.numel() * (b.t.ndim() == 2 ? b.t.size(1) : 1);
  return run_returning(
      op, {&a, &b}, p, flops, [&] { return lc::matmul2d_out_shape(a.t, b.t); },
      [&](lc::Tensor& out) { lc::matmul2d_into(a.t, b.t, out, p); },
      [&] { return lc::matmul2d(a.t, b.t, p); });
}

nb::object py_matmul2d_into(nb::handle a_, nb::handle b_, nb::handle out, nb::handle device,
                            nb::handle policy) {
  static constexpr const char* op = "matmul2d";
  Arg a, b;
  to_arg(a_, op, "a", a);
  to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const double flops = 2.0 * a.t.numel() * (b.t.ndim() == 2 ? b.t.size(1) : 1);
  return run_into(out, op, flops, [&](lc::Tensor& o) { lc::matmul2d_into(a.t, b.t, o, p); });
}

nb::object py_linear(nb::handle x_, nb::handle w_, nb::handle b_, nb::handle activation,
                     nb::handle device, nb::handle residual_, nb::handle policy) {
  static constexpr const char* op = "linear";
  Arg x, w, b, r;
  to_arg(x_, op, "x", x);
  to_arg(w_, op, "weight", w);
  const bool has_b = to_opt_arg(b_, op, "bias", b);
  const bool has_r = to_opt_arg(residual_, op, "residual", r);
  const lc::Activation act = act_arg(activation, op);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  const lc::Tensor* res = has_r ? &r.t : nullptr;
  const double flops = 2.0 * x.t.numel() * (w.t.ndim() == 2 ? w.t.size(0) : 1);
  return run_returning(
      op, {&x, &w, has_b ? &b : nullptr, has_r ? &r : nullptr}, p, flops,
      [&] { return lc::linear_out_shape(x.t, w.t, bias, res); },
      [&](lc::Tensor& out) { lc::linear_into(x.t, w.t, bias, act, out, p, res); },
      [&] { return lc::linear(x.t, w.t, bias, act, p, res); });
}

nb::object py_linear_into(nb::handle x_, nb::handle w_, nb::handle b_, nb::handle out,
                          nb::handle activation, nb::handle device, nb::handle residual_,
                          nb::handle policy) {
  static constexpr const char* op = "linear";
  Arg x, w, b, r;
  to_arg(x_, op, "x", x);
  to_arg(w_, op, "weight", w);
  const bool has_b = to_opt_arg(b_, op, "bias", b);
  const bool has_r = to_opt_arg(residual_, op, "residual", r);
  const lc::Activation act = act_arg(activation, op);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  const lc::Tensor* res = has_r ? &r.t : nullptr;
  const double flops = 2.0 * x.t.numel() * (w.t.ndim() == 2 ? w.t.size(0) : 1);
  return run_into(out, op, flops,
                  [&](lc::Tensor& o) { lc::linear_into(x.t, w.t, bias, act, o, p, res); });
}

// torch.matmul semantics (1-D operands, broadcast batch dimensions).
double matmul_flops(const Arg& a, const Arg& b) {
  const double n = b.t.ndim() >= 2 ? static_cast<double>(b.t.size(b.t.ndim() - 1)) : 1.0;
  const double m = a.t.ndim() >= 2 ? static_cast<double>(a.t.size(a.t.ndim() - 2)) : 1.0;
  return 2.0 * std::max(static_cast<double>(a.t.numel()) * n, static_cast<double>(b.t.numel()) * m);
}

nb::object py_matmul(nb::handle a_, nb::handle b_, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "matmul";
  Arg a, b;
  to_arg(a_, op, "a", a);
  to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  return run_returning(
      op, {&a, &b}, p, matmul_flops(a, b), [&] { return lc::matmul_out_shape(a.t, b.t); },
      [&](lc::Tensor& out) { lc::matmul_into(a.t, b.t, out, p); },
      [&] { return lc::matmul(a.t, b.t, p); });
}

nb::object py_matmul_into(nb::handle a_, nb::handle b_, nb::handle out, nb::handle device,
                          nb::handle policy) {
  static constexpr const char* op = "matmul";
  Arg a, b;
  to_arg(a_, op, "a", a);
  to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  return run_into(out, op, matmul_flops(a, b),
                  [&](lc::Tensor& o) { lc::matmul_into(a.t, b.t, o, p); });
}

// ---- attention -------------------------------------------------------------------------------
double attention_flops(const Arg& q, const Arg& k) {
  return 4.0 * q.t.numel() * (k.t.ndim() >= 1 ? k.t.size(0) : 1);
}

nb::object py_attention2d(nb::handle q_, nb::handle k_, nb::handle v_, nb::handle causal_,
                          nb::handle device, nb::handle scale, nb::handle policy) {
  static constexpr const char* op = "attention2d";
  Arg q, k, v;
  to_arg(q_, op, "q", q);
  to_arg(k_, op, "k", k);
  to_arg(v_, op, "v", v);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const float sc = scale_param(scale, op);
  const bool causal = bool_param(causal_, op, "causal");
  return run_returning(
      op, {&q, &k, &v}, p, attention_flops(q, k), [&] { return lc::attention2d_out_shape(q.t, k.t, v.t); },
      [&](lc::Tensor& out) { lc::attention2d_into(q.t, k.t, v.t, out, causal, p, sc); },
      [&] { return lc::attention2d(q.t, k.t, v.t, causal, p, sc); });
}

nb::object py_attention2d_into(nb::handle q_, nb::handle k_, nb::handle v_, nb::handle out,
                               nb::handle causal_, nb::handle device, nb::handle scale,
                               nb::handle policy) {
  static constexpr const char* op = "attention2d";
  Arg q, k, v;
  to_arg(q_, op, "q", q);
  to_arg(k_, op, "k", k);
  to_arg(v_, op, "v", v);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const float sc = scale_param(scale, op);
  const bool causal = bool_param(causal_, op, "causal");
  return run_into(out, op, attention_flops(q, k),
                  [&](lc::Tensor& o) { lc::attention2d_into(q.t, k.t, v.t, o, causal, p, sc); });
}

// ---- conv2d ----------------------------------------------------------------------------------
double conv_flops(const Arg& x, const Arg& w) {
  return 2.0 * x.t.numel() * (w.t.ndim() == 4 ? w.t.size(0) * w.t.size(2) * w.t.size(3) : 1);
}

nb::object py_conv2d(nb::handle x_, nb::handle w_, nb::handle b_, nb::handle sh_, nb::handle sw_,
                     nb::handle ph_, nb::handle pw_, nb::handle device, nb::handle activation,
                     nb::handle policy) {
  static constexpr const char* op = "conv2d_nchw";
  Arg x, w, b;
  to_arg(x_, op, "x", x);
  to_arg(w_, op, "weight", w);
  const bool has_b = to_opt_arg(b_, op, "bias", b);
  const lc::Activation act = act_arg(activation, op);
  const auto [sh, sw, ph, pw] = conv_ints(sh_, sw_, ph_, pw_, op);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  return run_returning(
      op, {&x, &w, has_b ? &b : nullptr}, p, conv_flops(x, w),
      [&] { return lc::conv2d_nchw_out_shape(x.t, w.t, bias, sh, sw, ph, pw); },
      [&](lc::Tensor& out) { lc::conv2d_nchw_into(x.t, w.t, bias, sh, sw, ph, pw, act, out, p); },
      [&] { return lc::conv2d_nchw(x.t, w.t, bias, sh, sw, ph, pw, act, p); });
}

nb::object py_conv2d_into(nb::handle x_, nb::handle w_, nb::handle b_, nb::handle out,
                          nb::handle sh_, nb::handle sw_, nb::handle ph_, nb::handle pw_,
                          nb::handle device, nb::handle activation, nb::handle policy) {
  static constexpr const char* op = "conv2d_nchw";
  Arg x, w, b;
  to_arg(x_, op, "x", x);
  to_arg(w_, op, "weight", w);
  const bool has_b = to_opt_arg(b_, op, "bias", b);
  const lc::Activation act = act_arg(activation, op);
  const auto [sh, sw, ph, pw] = conv_ints(sh_, sw_, ph_, pw_, op);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  return run_into(out, op, conv_flops(x, w), [&](lc::Tensor& o) {
    lc::conv2d_nchw_into(x.t, w.t, bias, sh, sw, ph, pw, act, o, p);
  });
}

// ---- layernorm / softmax ---------------------------------------------------------------------
nb::object py_layernorm(nb::handle x_, nb::handle g_, nb::handle b_, nb::handle eps_,
                        nb::handle device, nb::handle policy) {
  static constexpr const char* op = "layernorm";
  Arg x, g, b;
  to_arg(x_, op, "x", x);
  const bool has_g = to_opt_arg(g_, op, "gamma", g);
  const bool has_b = to_opt_arg(b_, op, "beta", b);
  const float eps = static_cast<float>(float_param(eps_, op, "eps"));
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* gp = has_g ? &g.t : nullptr;
  const lc::Tensor* bp = has_b ? &b.t : nullptr;
  return run_returning(
      op, {&x, has_g ? &g : nullptr, has_b ? &b : nullptr}, p, 8.0 * x.t.numel(),
      [&] { return lc::layernorm_out_shape(x.t, gp, bp, eps); },
      [&](lc::Tensor& out) { lc::layernorm_into(x.t, gp, bp, eps, out, p); },
      [&] { return lc::layernorm(x.t, gp, bp, eps, p); });
}

nb::object py_layernorm_into(nb::handle x_, nb::handle g_, nb::handle b_, nb::handle out,
                             nb::handle eps_, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "layernorm";
  Arg x, g, b;
  to_arg(x_, op, "x", x);
  const bool has_g = to_opt_arg(g_, op, "gamma", g);
  const bool has_b = to_opt_arg(b_, op, "beta", b);
  const float eps = static_cast<float>(float_param(eps_, op, "eps"));
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* gp = has_g ? &g.t : nullptr;
  const lc::Tensor* bp = has_b ? &b.t : nullptr;
  return run_into(out, op, 8.0 * x.t.numel(),
                  [&](lc::Tensor& o) { lc::layernorm_into(x.t, gp, bp, eps, o, p); });
}

nb::object py_softmax(nb::handle x_, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "softmax";
  Arg x;
  to_arg(x_, op, "x", x);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  return run_returning(
      op, {&x}, p, 8.0 * x.t.numel(), [&] { return lc::softmax_out_shape(x.t); },
      [&](lc::Tensor& out) { lc::softmax_into(x.t, out, p); }, [&] { return lc::softmax(x.t, p); });
}

nb::object py_softmax_into(nb::handle x_, nb::handle out, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "softmax";
  Arg x;
  to_arg(x_, op, "x", x);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  return run_into(out, op, 8.0 * x.t.numel(), [&](lc::Tensor& o) { lc::softmax_into(x.t, o, p); });
}

// ---- elementwise -----------------------------------------------------------------------------
nb::object ew(const char* op, nb::handle a_, nb::handle b_, float alpha, nb::handle device,
              nb::handle policy) {
  Arg a, b;
  to_arg(a_, op, "a", a);
  // Binary ops get a valid handle for b (None included: a TypeError like any other input);
  // unary ops pass an invalid one.
  const bool has_b = b_.is_valid();
  if (has_b) to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bp = has_b ? &b.t : nullptr;
  return run_returning(
      op, {&a, has_b ? &b : nullptr}, p, 1.0 * a.t.numel(),
      [&] { return lc::elementwise_out_shape(op, a.t, bp); },
      [&](lc::Tensor& out) { lc::elementwise_into(op, a.t, bp, alpha, out, p); },
      [&] { return lc::elementwise(op, a.t, bp, alpha, p); });
}

nb::object ew_into(const char* op, nb::handle a_, nb::handle b_, float alpha, nb::handle out,
                   nb::handle device, nb::handle policy) {
  Arg a, b;
  to_arg(a_, op, "a", a);
  // Binary ops get a valid handle for b (None included: a TypeError like any other input);
  // unary ops pass an invalid one.
  const bool has_b = b_.is_valid();
  if (has_b) to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bp = has_b ? &b.t : nullptr;
  return run_into(out, op, 1.0 * a.t.numel(),
                  [&](lc::Tensor& o) { lc::elementwise_into(op, a.t, bp, alpha, o, p); });
}

// gelu(x, device=None, *, approximate="tanh", policy=None): "tanh" (default) or "none" (erf).
nb::object py_gelu(nb::handle x_, nb::handle device, nb::handle approx_, nb::handle policy) {
  static constexpr const char* op = "gelu";
  Arg x;
  to_arg(x_, op, "a", x);
  const std::string approx = approx_.is_none() ? std::string("tanh") : str_param(approx_, op, "approximate");
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  return run_returning(
      op, {&x}, p, 1.0 * x.t.numel(), [&] { return lc::elementwise_out_shape(op, x.t, nullptr); },
      [&](lc::Tensor& out) { lc::gelu_into(x.t, out, approx.c_str(), p); },
      [&] { return lc::gelu(x.t, approx.c_str(), p); });
}

nb::object py_gelu_into(nb::handle x_, nb::handle out, nb::handle device, nb::handle approx_,
                        nb::handle policy) {
  static constexpr const char* op = "gelu";
  Arg x;
  to_arg(x_, op, "a", x);
  const std::string approx = approx_.is_none() ? std::string("tanh") : str_param(approx_, op, "approximate");
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  return run_into(out, op, 1.0 * x.t.numel(),
                  [&](lc::Tensor& o) { lc::gelu_into(x.t, o, approx.c_str(), p); });
}

// ---- embedding -------------------------------------------------------------------------------
nb::object py_embedding(nb::handle ids_, nb::handle w_, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "embedding";
  Arg ids, w;
  to_arg(ids_, op, "ids", ids);
  to_arg(w_, op, "weight", w);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const double moved = static_cast<double>(ids.t.numel()) * (w.t.ndim() == 2 ? w.t.size(1) : 1);
  // The weight is listed first: the numpy result takes its dtype (not the ids').
  return run_returning(
      op, {&w, &ids}, p, moved, [&] { return lc::embedding_out_shape(ids.t, w.t); },
      [&](lc::Tensor& out) { lc::embedding_into(ids.t, w.t, out, p); },
      [&] { return lc::embedding(ids.t, w.t, p); });
}

nb::object py_embedding_into(nb::handle ids_, nb::handle w_, nb::handle out, nb::handle device,
                             nb::handle policy) {
  static constexpr const char* op = "embedding";
  Arg ids, w;
  to_arg(ids_, op, "ids", ids);
  to_arg(w_, op, "weight", w);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const double moved = static_cast<double>(ids.t.numel()) * (w.t.ndim() == 2 ? w.t.size(1) : 1);
  return run_into(out, op, moved, [&](lc::Tensor& o) { lc::embedding_into(ids.t, w.t, o, p); });
}

#define LC_BINARY(NAME)                                                                         \
  m.def(#NAME, [](nb::handle a, nb::handle b, nb::handle device, nb::handle policy) {           \
    return ew(#NAME, a, b, 1.0f, device, policy);                                               \
  }, nb::arg("a").none(), nb::arg("b").none(), nb::arg("device") = nb::none(), nb::kw_only(),                 \
     nb::arg("policy") = nb::none());                                                           \
  m.def(#NAME "_into", [](nb::handle a, nb::handle b, nb::handle out, nb::handle device,        \
                          nb::handle policy) {                                                  \
    return ew_into(#NAME, a, b, 1.0f, out, device, policy);                                     \
  }, nb::arg("a").none(), nb::arg("b").none(), nb::arg("out").none(), nb::arg("device") = nb::none(), nb::kw_only(), \
     nb::arg("policy") = nb::none());

#define LC_UNARY(NAME)                                                                          \
  m.def(#NAME, [](nb::handle a, nb::handle device, nb::handle policy) {                         \
    return ew(#NAME, a, nb::handle(), 1.0f, device, policy);                                    \
  }, nb::arg("a").none(), nb::arg("device") = nb::none(), nb::kw_only(), nb::arg("policy") = nb::none()); \
  m.def(#NAME "_into", [](nb::handle a, nb::handle out, nb::handle device, nb::handle policy) {  \
    return ew_into(#NAME, a, nb::handle(), 1.0f, out, device, policy);                          \
  }, nb::arg("a").none(), nb::arg("out").none(), nb::arg("device") = nb::none(), nb::kw_only(),               \
     nb::arg("policy") = nb::none());

}  // namespace

void register_ops(nb::module_& m) {
  const auto none = nb::none();
  m.def("matmul2d", &py_matmul2d, nb::arg("a").none(), nb::arg("b").none(), nb::arg("device") = none,
        nb::kw_only(), nb::arg("policy") = none,
        "a[m,k] @ b[k,n] (float32, float16, bfloat16; float64 on the CPU).");
  m.def("matmul", &py_matmul, nb::arg("a").none(), nb::arg("b").none(), nb::arg("device") = none,
        nb::kw_only(), nb::arg("policy") = none,
        "torch.matmul semantics: 1-D operands promoted (and the dimension removed), leading batch "
        "dimensions broadcast numpy-style.");
  m.def("matmul_into", &py_matmul_into, nb::arg("a").none(), nb::arg("b").none(), nb::arg("out").none(),
        nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none);
  m.def("matmul2d_into", &py_matmul2d_into, nb::arg("a").none(), nb::arg("b").none(), nb::arg("out").none(),
        nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none);
  m.def("linear", &py_linear, nb::arg("x").none(), nb::arg("weight").none(), nb::arg("bias").none() = none,
        nb::arg("activation").none() = "none", nb::arg("device") = none, nb::kw_only(),
        nb::arg("residual").none() = none, nb::arg("policy") = none,
        "activation(x[..., in] @ weight[out,in]^T + bias + residual); activation \"none\", "
        "\"relu\" or \"gelu\"; the residual (the result's shape) is added before it.");
  m.def("linear_into", &py_linear_into, nb::arg("x").none(), nb::arg("weight").none(), nb::arg("bias").none(),
        nb::arg("out").none(), nb::arg("activation").none() = "none", nb::arg("device") = none, nb::kw_only(),
        nb::arg("residual").none() = none, nb::arg("policy") = none);
  m.def("attention2d", &py_attention2d, nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(),
        nb::arg("causal").none() = false, nb::arg("device") = none, nb::kw_only(),
        nb::arg("scale") = none, nb::arg("policy") = none,
        "softmax(q k^T * scale [causal]) v for one head; scale defaults to 1/sqrt(head_dim).");
  m.def("attention2d_into", &py_attention2d_into, nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(),
        nb::arg("out").none(), nb::arg("causal").none() = false, nb::arg("device") = none, nb::kw_only(),
        nb::arg("scale") = none, nb::arg("policy") = none);
  m.def("conv2d_nchw", &py_conv2d, nb::arg("x").none(), nb::arg("weight").none(), nb::arg("bias").none() = none,
        nb::arg("stride_h").none() = 1, nb::arg("stride_w").none() = 1, nb::arg("pad_h").none() = 0,
        nb::arg("pad_w").none() = 0, nb::arg("device") = none, nb::kw_only(),
        nb::arg("activation").none() = "none", nb::arg("policy") = none,
        "NCHW 2-D convolution x[n,c,h,w] * weight[oc,c,kh,kw] + bias[oc], optional fused activation.");
  m.def("conv2d_nchw_into", &py_conv2d_into, nb::arg("x").none(), nb::arg("weight").none(), nb::arg("bias").none(),
        nb::arg("out").none(), nb::arg("stride_h").none() = 1, nb::arg("stride_w").none() = 1, nb::arg("pad_h").none() = 0,
        nb::arg("pad_w").none() = 0, nb::arg("device") = none, nb::kw_only(),
        nb::arg("activation").none() = "none", nb::arg("policy") = none);
  m.def("layernorm", &py_layernorm, nb::arg("x").none(), nb::arg("gamma").none() = none, nb::arg("beta").none() = none,
        nb::arg("eps").none() = 1e-5f, nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none,
        "Layer normalisation over the last dimension.");
  m.def("layernorm_into", &py_layernorm_into, nb::arg("x").none(), nb::arg("gamma").none(), nb::arg("beta").none(),
        nb::arg("out").none(), nb::arg("eps").none() = 1e-5f, nb::arg("device") = none, nb::kw_only(),
        nb::arg("policy") = none);
  m.def("softmax", &py_softmax, nb::arg("x").none(), nb::arg("device") = none, nb::kw_only(),
        nb::arg("policy") = none, "Softmax over the last dimension.");
  m.def("softmax_into", &py_softmax_into, nb::arg("x").none(), nb::arg("out").none(), nb::arg("device") = none,
        nb::kw_only(), nb::arg("policy") = none);
  LC_BINARY(vector_add)
  LC_BINARY(vector_sub)
  LC_BINARY(vector_mul)
  LC_BINARY(matrix_sub)
  LC_BINARY(add)
  LC_BINARY(sub)
  LC_BINARY(mul)
  LC_BINARY(div)
  LC_UNARY(relu)
  m.def("gelu", &py_gelu, nb::arg("a").none(), nb::arg("device") = none, nb::kw_only(),
        nb::arg("approximate").none() = "tanh", nb::arg("policy") = none,
        "GELU: approximate=\"tanh\" (default) or \"none\" (exact erf form).");
  m.def("gelu_into", &py_gelu_into, nb::arg("a").none(), nb::arg("out").none(), nb::arg("device") = none,
        nb::kw_only(), nb::arg("approximate").none() = "tanh", nb::arg("policy") = none);
  m.def("embedding", &py_embedding, nb::arg("ids").none(), nb::arg("weight").none(),
        nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none,
        "weight[ids]: ids int32/int64 of any shape, weight [V, D] float; result ids.shape + [D].");
  m.def("embedding_into", &py_embedding_into, nb::arg("ids").none(), nb::arg("weight").none(),
        nb::arg("out").none(), nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none);
  m.def("vector_scale", [](nb::handle a, nb::handle alpha, nb::handle device, nb::handle policy) {
    const float al = static_cast<float>(float_param(alpha, "vector_scale", "alpha"));
    return ew("vector_scale", a, nb::handle(), al, device, policy);
  }, nb::arg("a").none(), nb::arg("alpha").none(), nb::arg("device") = none, nb::kw_only(), nb::arg("policy") = none);
  m.def("vector_scale_into", [](nb::handle a, nb::handle alpha, nb::handle out, nb::handle device,
                                nb::handle policy) {
    const float al = static_cast<float>(float_param(alpha, "vector_scale", "alpha"));
    return ew_into("vector_scale", a, nb::handle(), al, out, device, policy);
  }, nb::arg("a").none(), nb::arg("alpha").none(), nb::arg("out").none(), nb::arg("device") = none, nb::kw_only(),
     nb::arg("policy") = none);
}

}  // namespace lcpy
