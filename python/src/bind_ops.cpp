// Op bindings: the original's names and argument order, plus keyword-only extras.
//   matmul2d(a, b, device=None, *, policy=None)        matmul2d_into(a, b, out, device=None, ...)
//   attention2d(q, k, v, causal=False, device=None, *, scale=None, policy=None)   (+ _into)
//   conv2d_nchw(x, w, b, stride_h=1, stride_w=1, pad_h=0, pad_w=0, device=None, *, activation="none")
//   matmul(a, b, device=None, *, policy=None)          torch.matmul semantics (+ matmul_into)
//   linear(x, weight, bias=None, activation="none", device=None, *, residual=None, policy=None)
//   layernorm(x, gamma=None, beta=None, eps=1e-5, device=None, *, residual=None, policy=None)
//   softmax(x, device=None, *, scale=None, mask=None, policy=None)
//   vector_add/sub/mul/scale, matrix_sub, relu (+ _into)
//   add/sub/mul/div(a, b, device=None, *, policy=None): numpy broadcasting (+ _into)
//   gelu(a, device=None, *, approximate="tanh", policy=None) (+ _into)
//   embedding(ids, weight, device=None, *, policy=None) (+ _into)
//   elementwise_program(program, x0, x1=None, ..., x5=None, device=None, *, policy=None)
//     (+ elementwise_program_into(program, x0, out, x1=None, ...))
// `device=None` means "the policy's device" (default "auto").
//
// Each op is one implementation `X_impl(def, handles, out)` and one def_op<...>(...) line with its
// argument list (op_binding.h): def_op registers both `X` and `X_into` from them. The name and
// docstring are the op's OpDef (src/ops/registry.h); lc.ops() / lc.op_info() list the registry.
#include <algorithm>

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "convert.h"
#include "op_binding.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "numpy_api.h"
#include "ops/checks.h"

namespace lcpy {

namespace {

using Shape = std::vector<std::int64_t>;

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
nb::object matmul2d_impl(const lc::OpDef& d, const Handles<4>& h, nb::handle out) {
  const char* op = d.name;
  Arg a, b;
  to_arg(h[0], op, "a", a);
  to_arg(h[1], op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(h[2], h[3], op);
  const double flops = d.flops_hint(lc::OpArgs{&a.t, &b.t});
  return run_op(
      out, op, {&a, &b}, p, flops, [&] { return lc::matmul2d_out_shape(a.t, b.t); },
      [&](lc::Tensor& o) { lc::matmul2d_into(a.t, b.t, o, p); },
      [&] { return lc::matmul2d(a.t, b.t, p); });
}

// linear(x, weight, bias, activation, device, *, residual, policy)
nb::object linear_impl(const lc::OpDef& d, const Handles<7>& h, nb::handle out) {
  const char* op = d.name;
  Arg x, w, b, r;
  to_arg(h[0], op, "x", x);
  to_arg(h[1], op, "weight", w);
  const bool has_b = to_opt_arg(h[2], op, "bias", b);
  const bool has_r = to_opt_arg(h[5], op, "residual", r);
  const lc::Activation act =
      lc::parse_linear_activation(str_param(h[3], op, "activation"), op);  // + "gelu_erf"
  const lc::ExecutionPolicy p = resolve_policy(h[4], h[6], op);
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  const lc::Tensor* res = has_r ? &r.t : nullptr;
  const double flops = d.flops_hint(lc::OpArgs{&x.t, &w.t, bias, res});
  return run_op(
      out, op, {&x, &w, has_b ? &b : nullptr, has_r ? &r : nullptr}, p, flops,
      [&] { return lc::linear_out_shape(x.t, w.t, bias, res); },
      [&](lc::Tensor& o) { lc::linear_into(x.t, w.t, bias, act, o, p, res); },
      [&] { return lc::linear(x.t, w.t, bias, act, p, res); });
}

// torch.matmul semantics (1-D operands, broadcast batch dimensions).
nb::object matmul_impl(const lc::OpDef& d, const Handles<4>& h, nb::handle out) {
  const char* op = d.name;
  Arg a, b;
  to_arg(h[0], op, "a", a);
  to_arg(h[1], op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(h[2], h[3], op);
  return run_op(
      out, op, {&a, &b}, p, d.flops_hint(lc::OpArgs{&a.t, &b.t}),
      [&] { return lc::matmul_out_shape(a.t, b.t); },
      [&](lc::Tensor& o) { lc::matmul_into(a.t, b.t, o, p); },
      [&] { return lc::matmul(a.t, b.t, p); });
}

// ---- attention -------------------------------------------------------------------------------
// attention2d(q, k, v, causal, device, *, scale, policy)
nb::object attention2d_impl(const lc::OpDef& d, const Handles<7>& h, nb::handle out) {
  const char* op = d.name;
  Arg q, k, v;
  to_arg(h[0], op, "q", q);
  to_arg(h[1], op, "k", k);
  to_arg(h[2], op, "v", v);
  const lc::ExecutionPolicy p = resolve_policy(h[4], h[6], op);
  const float sc = scale_param(h[5], op);
  const bool causal = bool_param(h[3], op, "causal");
  return run_op(
      out, op, {&q, &k, &v}, p, d.flops_hint(lc::OpArgs{&q.t, &k.t, &v.t}),
      [&] { return lc::attention2d_out_shape(q.t, k.t, v.t); },
      [&](lc::Tensor& o) { lc::attention2d_into(q.t, k.t, v.t, o, causal, p, sc); },
      [&] { return lc::attention2d(q.t, k.t, v.t, causal, p, sc); });
}

// ---- conv2d ----------------------------------------------------------------------------------
// conv2d_nchw(x, weight, bias, stride_h, stride_w, pad_h, pad_w, device, *, activation, policy)
nb::object conv2d_impl(const lc::OpDef& d, const Handles<10>& h, nb::handle out) {
  const char* op = d.name;
  Arg x, w, b;
  to_arg(h[0], op, "x", x);
  to_arg(h[1], op, "weight", w);
  const bool has_b = to_opt_arg(h[2], op, "bias", b);
  const lc::Activation act = act_arg(h[8], op);
  const auto [sh, sw, ph, pw] = conv_ints(h[3], h[4], h[5], h[6], op);
  const lc::ExecutionPolicy p = resolve_policy(h[7], h[9], op);
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  lc::OpArgs args{&x.t, &w.t, bias};
  args.stride_h = sh;
  args.stride_w = sw;
  args.pad_h = ph;
  args.pad_w = pw;
  return run_op(
      out, op, {&x, &w, has_b ? &b : nullptr}, p, d.flops_hint(args),
      [&] { return lc::conv2d_nchw_out_shape(x.t, w.t, bias, sh, sw, ph, pw); },
      [&](lc::Tensor& o) { lc::conv2d_nchw_into(x.t, w.t, bias, sh, sw, ph, pw, act, o, p); },
      [&] { return lc::conv2d_nchw(x.t, w.t, bias, sh, sw, ph, pw, act, p); });
}

// ---- layernorm / softmax ---------------------------------------------------------------------
// layernorm(x, gamma, beta, eps, device, *, residual, policy)
nb::object layernorm_impl(const lc::OpDef& d, const Handles<7>& h, nb::handle out) {
  const char* op = d.name;
  Arg x, g, b, r;
  to_arg(h[0], op, "x", x);
  const bool has_g = to_opt_arg(h[1], op, "gamma", g);
  const bool has_b = to_opt_arg(h[2], op, "beta", b);
  const bool has_r = to_opt_arg(h[5], op, "residual", r);
  const float eps = static_cast<float>(float_param(h[3], op, "eps"));
  const lc::ExecutionPolicy p = resolve_policy(h[4], h[6], op);
  const lc::Tensor* gp = has_g ? &g.t : nullptr;
  const lc::Tensor* bp = has_b ? &b.t : nullptr;
  const lc::Tensor* rp = has_r ? &r.t : nullptr;
  return run_op(
      out, op, {&x, has_g ? &g : nullptr, has_b ? &b : nullptr, has_r ? &r : nullptr}, p,
      d.flops_hint(lc::OpArgs{&x.t, gp, bp, rp}),
      [&] { return lc::layernorm_out_shape(x.t, gp, bp, eps, rp); },
      [&](lc::Tensor& o) { lc::layernorm_into(x.t, gp, bp, eps, o, p, rp); },
      [&] { return lc::layernorm(x.t, gp, bp, eps, p, rp); });
}

// softmax(x, device, *, scale, mask, policy)
nb::object softmax_impl(const lc::OpDef& d, const Handles<5>& h, nb::handle out) {
  const char* op = d.name;
  Arg x, m;
  to_arg(h[0], op, "x", x);
  const bool has_m = to_opt_arg(h[3], op, "mask", m);
  const float scale = h[2].is_none() ? 1.0f : static_cast<float>(float_param(h[2], op, "scale"));
  const lc::ExecutionPolicy p = resolve_policy(h[1], h[4], op);
  const lc::Tensor* mp = has_m ? &m.t : nullptr;
  return run_op(
      out, op, {&x, has_m ? &m : nullptr}, p, d.flops_hint(lc::OpArgs{&x.t, mp}),
      [&] { return lc::softmax_out_shape(x.t, scale, mp); },
      [&](lc::Tensor& o) { lc::softmax_into(x.t, o, p, scale, mp); },
      [&] { return lc::softmax(x.t, p, scale, mp); });
}

// ---- elementwise -----------------------------------------------------------------------------
// b_: a valid handle for binary ops (None included: a TypeError like any other input), an
// invalid one for unary ops.
nb::object ew(const lc::OpDef& d, nb::handle a_, nb::handle b_, float alpha, nb::handle device,
              nb::handle policy, nb::handle out) {
  const char* op = d.name;
  Arg a, b;
  to_arg(a_, op, "a", a);
  const bool has_b = b_.is_valid();
  if (has_b) to_arg(b_, op, "b", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  const lc::Tensor* bp = has_b ? &b.t : nullptr;
  return run_op(
      out, op, {&a, has_b ? &b : nullptr}, p, d.flops_hint(lc::OpArgs{&a.t, bp}),
      [&] { return lc::elementwise_out_shape(op, a.t, bp); },
      [&](lc::Tensor& o) { lc::elementwise_into(op, a.t, bp, alpha, o, p); },
      [&] { return lc::elementwise(op, a.t, bp, alpha, p); });
}

// (a, b, device, *, policy)
nb::object binary_impl(const lc::OpDef& d, const Handles<4>& h, nb::handle out) {
  return ew(d, h[0], h[1], 1.0f, h[2], h[3], out);
}

// (a, device, *, policy)
nb::object unary_impl(const lc::OpDef& d, const Handles<3>& h, nb::handle out) {
  return ew(d, h[0], nb::handle(), 1.0f, h[1], h[2], out);
}

// vector_scale(a, alpha, device, *, policy)
nb::object vector_scale_impl(const lc::OpDef& d, const Handles<4>& h, nb::handle out) {
  const float al = static_cast<float>(float_param(h[1], d.name, "alpha"));
  return ew(d, h[0], nb::handle(), al, h[2], h[3], out);
}

// gelu(a, device, *, approximate, policy): "tanh" (default) or "none" (erf).
nb::object gelu_impl(const lc::OpDef& d, const Handles<4>& h, nb::handle out) {
  const char* op = d.name;
  Arg x;
  to_arg(h[0], op, "a", x);
  const std::string approx = h[2].is_none() ? std::string("tanh") : str_param(h[2], op, "approximate");
  const lc::ExecutionPolicy p = resolve_policy(h[1], h[3], op);
  return run_op(
      out, op, {&x}, p, d.flops_hint(lc::OpArgs{&x.t}),
      [&] { return lc::elementwise_out_shape(op, x.t, nullptr); },
      [&](lc::Tensor& o) { lc::gelu_into(x.t, o, approx.c_str(), p); },
      [&] { return lc::gelu(x.t, approx.c_str(), p); });
}

// ---- elementwise_program -----------------------------------------------------------------------
// elementwise_program(program, x0, x1=None, ..., x5=None, device, *, policy): the inputs without
// gaps (x2 given with x1 None is a ValueError).
nb::object ew_program_impl(const lc::OpDef& d, const Handles<9>& h, nb::handle out) {
  const char* op = d.name;
  const lc::EwProgram prog = lc::parse_ew_program(str_param(h[0], op, "program"), op);
  static const char* const names[lc::kEwProgMaxInputs] = {"x0", "x1", "x2", "x3", "x4", "x5"};
  Arg a[lc::kEwProgMaxInputs];
  const lc::Tensor* ts[lc::kEwProgMaxInputs] = {};
  const Arg* as[lc::kEwProgMaxInputs] = {};
  std::size_t n = 0;
  to_arg(h[1], op, "x0", a[0]);
  ts[n] = &a[0].t;
  as[n++] = &a[0];
  for (int k = 1; k < lc::kEwProgMaxInputs; ++k) {
    if (!to_opt_arg(h[static_cast<std::size_t>(k + 1)], op, names[k], a[k])) continue;
    if (n != static_cast<std::size_t>(k))
      lc::throw_value(op, std::string("input ") + names[k] + " is given but " + names[n] +
                              " is None; give the inputs x0, x1, ... without gaps");
    ts[n] = &a[k].t;
    as[n++] = &a[k];
  }
  const std::span<const lc::Tensor* const> ins(ts, n);
  const lc::ExecutionPolicy p = resolve_policy(h[7], h[8], op);
  double n_out = 1;
  for (auto v : lc::elementwise_program_out_shape(ins)) n_out *= static_cast<double>(v);
  return run_op(
      out, op, {as[0], as[1], as[2], as[3], as[4], as[5]}, p, n_out * prog.n_instrs,
      [&] { return lc::elementwise_program_out_shape(ins); },
      [&](lc::Tensor& o) { lc::elementwise_program_into(prog, ins, o, p); },
      [&] { return lc::elementwise_program(prog, ins, p); });
}

// ---- embedding -------------------------------------------------------------------------------
nb::object embedding_impl(const lc::OpDef& d, const Handles<4>& h, nb::handle out) {
  const char* op = d.name;
  Arg ids, w;
  to_arg(h[0], op, "ids", ids);
  to_arg(h[1], op, "weight", w);
  const lc::ExecutionPolicy p = resolve_policy(h[2], h[3], op);
  const double moved = d.flops_hint(lc::OpArgs({&ids.t, &w.t}, w.t.dtype()));
  // The weight is listed first: the numpy result takes its dtype (not the ids').
  return run_op(
      out, op, {&w, &ids}, p, moved, [&] { return lc::embedding_out_shape(ids.t, w.t); },
      [&](lc::Tensor& o) { lc::embedding_into(ids.t, w.t, o, p); },
      [&] { return lc::embedding(ids.t, w.t, p); });
}

// ---- the registry: lc.ops(), lc.op_info(name) --------------------------------------------------
nb::object py_default(const lc::OpAttr& a) {
  if (!a.default_value) return nb::none();
  const std::string v = a.default_value;
  if (v == "None") return nb::none();
  switch (a.type) {
    case lc::AttrType::boolean: return nb::bool_(v == "True");
    case lc::AttrType::integer: return nb::int_(std::stoll(v));
    case lc::AttrType::real: return nb::float_(std::stod(v));
    case lc::AttrType::string: return nb::str(v.substr(1, v.size() - 2).c_str());  // 'tanh'
    case lc::AttrType::ints: return nb::none();  // no registered op has one (graph view nodes)
  }
  return nb::none();
}

nb::list dtype_names(lc::DTypeSet s) {
  nb::list l;
  for (const lc::DTypeInfo& i : lc::kDTypes)
    if (s.has(i.dtype)) l.append(nb::str(i.name));
  return l;
}

nb::dict op_info(const std::string& name) {
  const lc::OpDef& d = lc::get_op(name, "op_info");
  nb::dict r;
  r["name"] = d.name;
  r["family"] = lc::to_string(d.family);
  r["doc"] = d.summary ? d.summary : "";
  nb::list inputs;
  for (int i = 0; i < d.num_inputs(); ++i) {
    const lc::OpInput& in = d.inputs[static_cast<std::size_t>(i)];
    nb::dict e;
    e["name"] = in.name;
    e["optional"] = in.optional;
    e["kind"] = in.index ? "index" : "float";
    e["rank"] = in.rank >= 0 ? nb::object(nb::int_(in.rank)) : nb::object(nb::none());
    e["min_rank"] = static_cast<int>(in.min_rank);
    inputs.append(e);
  }
  r["inputs"] = inputs;
  nb::list outputs;
  for (const char* o : d.outputs)
    if (o) outputs.append(nb::str(o));
  r["outputs"] = outputs;
  nb::dict attrs;  // in call order (dicts keep insertion order)
  for (int i = 0; i < d.num_attrs(); ++i) {
    const lc::OpAttr& a = d.attrs[static_cast<std::size_t>(i)];
    nb::dict e;
    e["type"] = lc::to_string(a.type);
    e["required"] = a.default_value == nullptr;
    e["default"] = py_default(a);
    e["doc"] = a.doc ? a.doc : "";
    attrs[a.name] = e;
  }
  r["attributes"] = attrs;
  nb::dict dt;
  dt["cpu"] = dtype_names(d.cpu_dtypes);
  dt["cuda"] = dtype_names(d.cuda_dtypes);
  r["dtypes"] = dt;
  nb::list index;
  for (int i = 0; i < d.num_inputs(); ++i)
    if (d.inputs[static_cast<std::size_t>(i)].index) index = dtype_names(lc::kIndexDTypes);
  r["index_dtypes"] = index;
  return r;
}

// lc.op_infer(name, shapes, dtype="float32", *, size attributes) -> (shape, dtype name): the
// registry's shape and dtype inference, without running anything (the Graph IR's question).
nb::tuple op_infer(const std::string& name, const std::vector<std::vector<std::int64_t>>& shapes,
                   const std::string& dtype, int sh, int sw, int ph, int pw, std::int64_t seq_len,
                   std::int64_t head_dim, bool batch_first) {
  const lc::OpDef& d = lc::get_op(name, "op_infer");
  lc::OpArgs a = lc::OpArgs::of_shapes(shapes, lc::parse_dtype(dtype, "op_infer"));
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_h = ph;
  a.pad_w = pw;
  a.seq_len = seq_len;
  a.head_dim = head_dim;
  a.batch_first = batch_first;
  const lc::OpResult res = d.infer_result(a);
  nb::list shape;
  for (auto v : res.shape) shape.append(v);
  return nb::make_tuple(nb::tuple(shape), lc::to_string(res.dtype));
}

}  // namespace

std::vector<std::string>& op_function_names() {
  static std::vector<std::string> names;
  return names;
}

void register_ops(nb::module_& m) {
  using lc::opdefs::matmul2d, lc::opdefs::matmul, lc::opdefs::linear, lc::opdefs::attention2d,
      lc::opdefs::conv2d_nchw, lc::opdefs::layernorm, lc::opdefs::softmax, lc::opdefs::gelu,
      lc::opdefs::embedding, lc::opdefs::vector_scale;
  namespace od = lc::opdefs;
  const auto none = nb::none();
  // def_op<OpDef, position of `out` in the _into form, implementation>(m, the returning form's
  // arguments). Names, argument names, order and defaults are the original's.
  def_op<&matmul2d, 2, &matmul2d_impl>(m, nb::arg("a").none(), nb::arg("b").none(),
                                       nb::arg("device") = none, nb::kw_only(),
                                       nb::arg("policy") = none);
  def_op<&matmul, 2, &matmul_impl>(m, nb::arg("a").none(), nb::arg("b").none(),
                                   nb::arg("device") = none, nb::kw_only(),
                                   nb::arg("policy") = none);
  def_op<&linear, 3, &linear_impl>(m, nb::arg("x").none(), nb::arg("weight").none(),
                                   nb::arg("bias").none() = none,
                                   nb::arg("activation").none() = "none",
                                   nb::arg("device") = none, nb::kw_only(),
                                   nb::arg("residual").none() = none, nb::arg("policy") = none);
  def_op<&attention2d, 3, &attention2d_impl>(m, nb::arg("q").none(), nb::arg("k").none(),
                                             nb::arg("v").none(), nb::arg("causal").none() = false,
                                             nb::arg("device") = none, nb::kw_only(),
                                             nb::arg("scale") = none, nb::arg("policy") = none);
  def_op<&conv2d_nchw, 3, &conv2d_impl>(m, nb::arg("x").none(), nb::arg("weight").none(),
                                        nb::arg("bias").none() = none,
                                        nb::arg("stride_h").none() = 1,
                                        nb::arg("stride_w").none() = 1,
                                        nb::arg("pad_h").none() = 0, nb::arg("pad_w").none() = 0,
                                        nb::arg("device") = none, nb::kw_only(),
                                        nb::arg("activation").none() = "none",
                                        nb::arg("policy") = none);
  def_op<&layernorm, 3, &layernorm_impl>(m, nb::arg("x").none(), nb::arg("gamma").none() = none,
                                         nb::arg("beta").none() = none,
                                         nb::arg("eps").none() = 1e-5f, nb::arg("device") = none,
                                         nb::kw_only(), nb::arg("residual").none() = none,
                                         nb::arg("policy") = none);
  def_op<&softmax, 1, &softmax_impl>(m, nb::arg("x").none(), nb::arg("device") = none,
                                     nb::kw_only(), nb::arg("scale").none() = none,
                                     nb::arg("mask").none() = none, nb::arg("policy") = none);
#define LC_BINARY(NAME)                                                                         \
  def_op<&od::NAME, 2, &binary_impl>(m, nb::arg("a").none(), nb::arg("b").none(),               \
                                     nb::arg("device") = none, nb::kw_only(),                   \
                                     nb::arg("policy") = none);
  LC_BINARY(vector_add)
  LC_BINARY(vector_sub)
  LC_BINARY(vector_mul)
  LC_BINARY(matrix_sub)
  LC_BINARY(add)
  LC_BINARY(sub)
  LC_BINARY(mul)
  LC_BINARY(div)
#undef LC_BINARY
  def_op<&od::relu, 1, &unary_impl>(m, nb::arg("a").none(), nb::arg("device") = none,
                                    nb::kw_only(), nb::arg("policy") = none);
  def_op<&gelu, 1, &gelu_impl>(m, nb::arg("a").none(), nb::arg("device") = none, nb::kw_only(),
                               nb::arg("approximate").none() = "tanh", nb::arg("policy") = none);
  def_op<&embedding, 2, &embedding_impl>(m, nb::arg("ids").none(), nb::arg("weight").none(),
                                         nb::arg("device") = none, nb::kw_only(),
                                         nb::arg("policy") = none);
  def_op<&vector_scale, 2, &vector_scale_impl>(m, nb::arg("a").none(), nb::arg("alpha").none(),
                                               nb::arg("device") = none, nb::kw_only(),
                                               nb::arg("policy") = none);

  def_op<&od::elementwise_program, 2, &ew_program_impl>(
      m, nb::arg("program").none(), nb::arg("x0").none(), nb::arg("x1").none() = none,
      nb::arg("x2").none() = none, nb::arg("x3").none() = none, nb::arg("x4").none() = none,
      nb::arg("x5").none() = none, nb::arg("device") = none, nb::kw_only(),
      nb::arg("policy") = none);

  m.def("ops", [] {
    std::vector<std::string> names;
    for (const lc::OpDef* d : lc::all_ops()) names.push_back(d->name);
    return names;
  }, "The names of every registered op (the op registry, src/ops/registry.h).");
  m.def("op_info", &op_info, nb::arg("name"),
        "What the registry knows about an op: family, inputs, outputs, attributes with defaults, "
        "storage dtypes per backend.");
  m.def("op_infer", &op_infer, nb::arg("name"), nb::arg("shapes"), nb::arg("dtype") = "float32",
        nb::kw_only(), nb::arg("stride_h") = 1, nb::arg("stride_w") = 1, nb::arg("pad_h") = 0,
        nb::arg("pad_w") = 0, nb::arg("seq_len") = 0, nb::arg("head_dim") = 0,
        nb::arg("batch_first") = false,
        "The registry's shape and dtype inference for op `name` on inputs of these shapes (in "
        "op_info(name)['inputs'] order; optional trailing inputs may be left out) and storage "
        "dtype: (result shape, dtype name). Raises ValueError for shapes the op rejects.");
}

}  // namespace lcpy
