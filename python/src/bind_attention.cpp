// Bindings of the batched multi-head / grouped-query attention (src/ops/attention_mha.cpp):
//   attention(q, k, v, *, causal=False, mask=None, scale=None, return_lse=False, device=None,
//             policy=None)
//   attention_into(q, k, v, out, *, causal=False, mask=None, scale=None, return_lse=False,
//                  device=None, policy=None)
//   attention_backward(dout, q, k, v, out, lse, *, causal, mask, scale, device, policy)
//   attention_backward_into(dout, q, k, v, out, lse, dq, dk, dv, *, ...)
// return_lse=True returns (out, lse): lse is float32 with q's leading shape ([B, H, Sq]), a
// numpy array when out is one, else an lc.Tensor where out lives. A numpy boolean mask is
// passed to the core as int32 (nonzero = attend); it is at most [B, H, Sq, Sk] and usually a
// [B, Sk] key-padding mask, so the conversion is small. attention and attention_into come from
// one definition (def_op, op_binding.h; name and docstring from the OpDef); the backward, with
// three outputs, is bound by hand.
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "convert.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/train.h"
#include "numpy_api.h"
#include "op_binding.h"
#include "ops/registry.h"

namespace lcpy {

// The mask argument (bindings.h): None, an lc.Tensor / array of int32 / int64 / float, or a
// numpy boolean array (converted to int32 here; `hold` keeps the converted array alive).
bool mask_arg(nb::handle obj, const char* op, Arg& out, nb::object& hold) {
  if (obj.is_none()) return false;
  if (PyList_Check(obj.ptr()) || PyTuple_Check(obj.ptr())) {  // nested lists of bools / numbers
    PyObject* arr = PyArray_FROM_O(obj.ptr());
    if (!arr) throw nb::python_error();
    nb::object a = nb::steal(arr);
    return mask_arg(a, op, out, hold = a);
  }
  if (PyArray_Check(obj.ptr()) &&
      PyArray_TYPE(reinterpret_cast<PyArrayObject*>(obj.ptr())) == NPY_BOOL) {
    PyObject* conv = PyArray_Cast(reinterpret_cast<PyArrayObject*>(obj.ptr()), NPY_INT32);
    if (!conv) throw nb::python_error();
    hold = nb::steal(conv);
    to_arg(hold, op, "mask", out);
    return true;
  }
  to_arg(obj, op, "mask", out);
  return true;
}

namespace {

template <class F>
void maybe_nogil(double flops, F&& f) {
  if (worth_releasing_gil(flops)) {
    nb::gil_scoped_release nogil;
    f();
  } else {
    f();
  }
}

double attention_mha_flops(const Arg& q, const Arg& k) {
  const int n = k.t.ndim();
  return 4.0 * static_cast<double>(q.t.numel()) * (n >= 2 ? static_cast<double>(k.t.size(n - 2)) : 1.0);
}

std::vector<std::int64_t> lse_shape(const lc::Tensor& q) {
  std::vector<std::int64_t> s = q.shape();
  if (!s.empty()) s.pop_back();
  return s;
}

struct Common {
  Arg q, k, v, mask;
  nb::object mask_hold;
  bool has_mask = false;
  bool causal = false;
  bool return_lse = false;
  float scale = 0.0f;
  lc::ExecutionPolicy p;
};

void parse_common(const char* op, nb::handle q_, nb::handle k_, nb::handle v_, nb::handle causal,
                  nb::handle mask, nb::handle scale, nb::handle return_lse, nb::handle device,
                  nb::handle policy, Common& c) {
  to_arg(q_, op, "q", c.q);
  to_arg(k_, op, "k", c.k);
  to_arg(v_, op, "v", c.v);
  c.has_mask = mask_arg(mask, op, c.mask, c.mask_hold);
  c.causal = bool_param(causal, op, "causal");
  c.return_lse = bool_param(return_lse, op, "return_lse");
  c.scale = scale_param(scale, op);
  c.p = resolve_policy(device, policy, op);
}

// The GIL decision takes the forward's OpDef flops (backward_flops below: the backward's), not
// a copy of the formula.
double attention_flops(const lc::OpDef& d, const Common& c) {
  return d.flops_hint(lc::OpArgs{&c.q.t, &c.k.t, &c.v.t, c.has_mask ? &c.mask.t : nullptr});
}

// attention(q, k, v, *, causal, mask, scale, return_lse, device, policy): the returning form.
nb::object attention_returning(const lc::OpDef& d, const Handles<9>& h) {
  const char* op = d.name;
  Common c;
  parse_common(op, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], c);
  const lc::Tensor* m = c.has_mask ? &c.mask.t : nullptr;
  const double flops = attention_flops(d, c);
  const bool any_lc = c.q.from_lc || c.k.from_lc || c.v.from_lc || (c.has_mask && c.mask.from_lc);
  if (!any_lc && c.p.download) {
    // Host result: fresh numpy arrays written through the _into path (no extra copy).
    const std::vector<std::int64_t> shape = lc::attention_out_shape(c.q.t, c.k.t, c.v.t);
    lc::Tensor view, lview;
    nb::object arr = new_numpy(shape, view, op, c.q.t.dtype());
    nb::object larr;
    if (c.return_lse) larr = new_numpy(lse_shape(c.q.t), lview, op, lc::DType::f32);
    call_maybe_nogil(flops, [&] {
      lc::attention_into(c.q.t, c.k.t, c.v.t, view, c.causal, m, c.scale, c.p,
                         c.return_lse ? &lview : nullptr);
    });
    if (c.return_lse) return nb::make_tuple(arr, larr);
    return arr;
  }
  lc::Tensor result, lse;
  call_maybe_nogil(flops, [&] {
    result = lc::attention(c.q.t, c.k.t, c.v.t, c.causal, m, c.scale, c.p,
                           c.return_lse ? &lse : nullptr);
  });
  nb::object out = wrap_tensor(std::move(result));
  if (c.return_lse) return nb::make_tuple(out, wrap_tensor(std::move(lse)));
  return out;
}

// attention_into(q, k, v, out, *, ...): the `_into` form; return_lse=True returns (out, lse).
nb::object attention_into_form(const lc::OpDef& d, const Handles<9>& h, nb::handle out_obj) {
  const char* op = d.name;
  Common c;
  parse_common(op, h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], c);
  Arg out;
  to_out_arg(out_obj, op, out);
  const lc::Tensor* m = c.has_mask ? &c.mask.t : nullptr;
  const double flops = attention_flops(d, c);
  if (!c.return_lse) {
    call_maybe_nogil(flops, [&] { lc::attention_into(c.q.t, c.k.t, c.v.t, out.t, c.causal, m, c.scale, c.p); });
    return nb::borrow(out_obj);
  }
  // lse lands where out lives: numpy for a numpy out, an lc.Tensor on out's device otherwise.
  lc::attention_out_shape(c.q.t, c.k.t, c.v.t);  // validates q's rank before lse_shape
  lc::Tensor lview;
  nb::object larr;
  if (!out.from_lc) {
    larr = new_numpy(lse_shape(c.q.t), lview, op, lc::DType::f32);
  } else {
    lview = lc::Tensor::empty(lse_shape(c.q.t), lc::DType::f32, out.t.device());
  }
  call_maybe_nogil(flops, [&] {
    lc::attention_into(c.q.t, c.k.t, c.v.t, out.t, c.causal, m, c.scale, c.p, &lview);
  });
  if (out.from_lc) larr = wrap_tensor(std::move(lview));
  return nb::make_tuple(nb::borrow(out_obj), larr);
}

// Both forms of attention from one definition (def_op below).
nb::object attention_impl(const lc::OpDef& d, const Handles<9>& h, nb::handle out) {
  return out.is_valid() ? attention_into_form(d, h, out) : attention_returning(d, h);
}

// attention_backward(dout, q, k, v, out, lse, *, causal=False, mask=None, scale=None,
// device=None, policy=None) -> (dq, dk, dv): numpy arrays when every input is one (and the
// policy downloads), else lc.Tensors where the op ran. _into takes dq, dk, dv after lse.
struct BwdArgs {
  Common c;
  Arg dout, out, lse;
};

void parse_backward(const char* op, nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
                    nb::handle out, nb::handle lse, nb::handle causal, nb::handle mask,
                    nb::handle scale, nb::handle device, nb::handle policy, BwdArgs& a) {
  to_arg(dout, op, "dout", a.dout);
  parse_common(op, q, k, v, causal, mask, scale, nb::bool_(false), device, policy, a.c);
  to_arg(out, op, "out", a.out);
  to_arg(lse, op, "lse", a.lse);
}

// The backward's OpDef flops, its inputs in OpDef order (dout, q, k, v, out, lse, mask).
double backward_flops(const BwdArgs& a) {
  const Common& c = a.c;
  return lc::opdefs::attention_backward.flops_hint(
      lc::OpArgs{&a.dout.t, &c.q.t, &c.k.t, &c.v.t, &a.out.t, &a.lse.t,
                 c.has_mask ? &c.mask.t : nullptr});
}

nb::object py_attention_backward(nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
                                 nb::handle out, nb::handle lse, nb::handle causal,
                                 nb::handle mask, nb::handle scale, nb::handle device,
                                 nb::handle policy) {
  static constexpr const char* op = "attention_backward";
  BwdArgs a;
  parse_backward(op, dout, q, k, v, out, lse, causal, mask, scale, device, policy, a);
  Common& c = a.c;
  const lc::Tensor* m = c.has_mask ? &c.mask.t : nullptr;
  const double flops = backward_flops(a);
  const bool any_lc = c.q.from_lc || c.k.from_lc || c.v.from_lc || a.dout.from_lc ||
                      a.out.from_lc || a.lse.from_lc || (c.has_mask && c.mask.from_lc);
  if (!any_lc && c.p.download) {
    lc::Tensor vq, vk, vv;
    nb::object gq = new_numpy(c.q.t.shape(), vq, op, c.q.t.dtype());
    nb::object gk = new_numpy(c.k.t.shape(), vk, op, c.q.t.dtype());
    nb::object gv = new_numpy(c.v.t.shape(), vv, op, c.q.t.dtype());
    call_maybe_nogil(flops, [&] {
      lc::attention_backward_into(a.dout.t, c.q.t, c.k.t, c.v.t, a.out.t, a.lse.t, vq, vk, vv,
                                  c.causal, m, c.scale, c.p);
    });
    return nb::make_tuple(gq, gk, gv);
  }
  std::array<lc::Tensor, 3> g;
  call_maybe_nogil(flops, [&] {
    g = lc::attention_backward(a.dout.t, c.q.t, c.k.t, c.v.t, a.out.t, a.lse.t, c.causal, m,
                               c.scale, c.p);
  });
  return nb::make_tuple(wrap_tensor(std::move(g[0])), wrap_tensor(std::move(g[1])),
                        wrap_tensor(std::move(g[2])));
}

nb::object py_attention_backward_into(nb::handle dout, nb::handle q, nb::handle k, nb::handle v,
                                      nb::handle out, nb::handle lse, nb::handle dq,
                                      nb::handle dk, nb::handle dv, nb::handle causal,
                                      nb::handle mask, nb::handle scale, nb::handle device,
                                      nb::handle policy) {
  static constexpr const char* op = "attention_backward";
  BwdArgs a;
  parse_backward(op, dout, q, k, v, out, lse, causal, mask, scale, device, policy, a);
  Arg gq, gk, gv;
  to_out_arg(dq, op, gq);
  to_out_arg(dk, op, gk);
  to_out_arg(dv, op, gv);
  Common& c = a.c;
  const lc::Tensor* m = c.has_mask ? &c.mask.t : nullptr;
  call_maybe_nogil(backward_flops(a), [&] {
    lc::attention_backward_into(a.dout.t, c.q.t, c.k.t, c.v.t, a.out.t, a.lse.t, gq.t, gk.t,
                                gv.t, c.causal, m, c.scale, c.p);
  });
  return nb::make_tuple(nb::borrow(dq), nb::borrow(dk), nb::borrow(dv));
}

// attention_train_step(q, k, v, target, lr, *, causal, mask, scale, device, policy) ->
// (out, loss): train.h's step (the one the attention sessions run). q, k, v are updated in
// place, so each must be a numpy array or an lc.Tensor (not a list numpy would copy). out is a
// numpy array when q, k, v and target are numpy (and the policy downloads), else an lc.Tensor
// on q's device.
nb::object py_attention_train_step(nb::handle q, nb::handle k, nb::handle v, nb::handle target,
                                   nb::handle lr_, nb::handle causal, nb::handle mask,
                                   nb::handle scale, nb::handle device, nb::handle policy) {
  static constexpr const char* op = "attention_train_step";
  const std::pair<nb::handle, const char*> xs[3] = {{q, "q"}, {k, "k"}, {v, "v"}};
  for (const auto& [h, name] : xs) {
    if (!PyArray_Check(h.ptr()) && !nb::isinstance<lc::Tensor>(h))
      lc::throw_type(op, std::string(name) + " is updated in place: it must be a numpy array or "
                         "an lc.Tensor, got " + py_type_name(h.ptr()));
  }
  Common c;
  parse_common(op, q, k, v, causal, mask, scale, nb::bool_(false), device, policy, c);
  Arg t;
  to_arg(target, op, "target", t);
  const double lr = float_param(lr_, op, "lr");
  const lc::Tensor* m = c.has_mask ? &c.mask.t : nullptr;
  const bool any_lc = c.q.from_lc || c.k.from_lc || c.v.from_lc || t.from_lc ||
                      (c.has_mask && c.mask.from_lc);
  lc::AttentionTrainBuffers bufs;
  nb::object arr;
  if (!any_lc && c.p.download && lc::is_floating(c.q.t.dtype())) {
    // out lands in a fresh numpy array (the step's forward writes it there).
    arr = new_numpy(lc::attention_out_shape(c.q.t, c.k.t, c.v.t), bufs.out, op, c.q.t.dtype());
  }
  lc::AttentionTrainResult r;
  maybe_nogil(3.5 * attention_mha_flops(c.q, c.k), [&] {
    r = lc::attention_train_step_with(c.q.t, c.k.t, c.v.t, t.t, lr, c.causal, m, c.scale, c.p,
                                      bufs);
  });
  nb::object out = arr.is_valid() ? arr : wrap_tensor(std::move(r.out));
  return nb::make_tuple(out, r.loss);
}

}  // namespace

void register_attention(nb::module_& m) {
  const nb::none none;
  // Both forms from one definition (op_binding.h): attention_into takes `out` after v.
  def_op<&lc::opdefs::attention, 3, &attention_impl>(
      m, nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::kw_only(),
      nb::arg("causal").none() = false, nb::arg("mask").none() = none,
      nb::arg("scale").none() = none, nb::arg("return_lse").none() = false,
      nb::arg("device").none() = none, nb::arg("policy").none() = none);
  m.def("attention_backward", &py_attention_backward, nb::arg("dout").none(),
        nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("out").none(),
        nb::arg("lse").none(), nb::kw_only(), nb::arg("causal").none() = false,
        nb::arg("mask").none() = none, nb::arg("scale").none() = none,
        nb::arg("device").none() = none, nb::arg("policy").none() = none,
        lc::opdefs::attention_backward.summary);
  m.def("attention_backward_into", &py_attention_backward_into, nb::arg("dout").none(),
        nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("out").none(),
        nb::arg("lse").none(), nb::arg("dq").none(), nb::arg("dk").none(), nb::arg("dv").none(),
        nb::kw_only(), nb::arg("causal").none() = false, nb::arg("mask").none() = none,
        nb::arg("scale").none() = none, nb::arg("device").none() = none,
        nb::arg("policy").none() = none,
        "attention_backward() written into dq, dk, dv (q's, k's and v's shapes, q's dtype, "
        "C-contiguous, writable); returns (dq, dk, dv).");
  // Private: lc.attention_train_step is python/lightning_core/api.py's documented wrapper.
  m.def("_attention_train_step", &py_attention_train_step, nb::arg("q").none(), nb::arg("k").none(),
        nb::arg("v").none(), nb::arg("target").none(), nb::arg("lr").none(), nb::kw_only(),
        nb::arg("causal").none() = false, nb::arg("mask").none() = none,
        nb::arg("scale").none() = none, nb::arg("device").none() = none,
        nb::arg("policy").none() = none,
        "One SGD step of attention on an MSE loss, q, k, v updated in place: returns (out, "
        "loss) (lc.api.attention_train_step documents it).");
}

}  // namespace lcpy
