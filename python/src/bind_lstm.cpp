// Bindings of the LSTM layer (src/ops/lstm.cpp):
//   lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, batch_first=False, device=None,
//        policy=None) -> (y, h_n, c_n)
//   lstm_into(x, h0, c0, w_ih, w_hh, b_ih, b_hh, y, h_n, c_n, *, batch_first=False, device=None,
//             policy=None) -> (y, h_n, c_n)
// Three results, so bound by hand (as attention_backward): numpy arrays when every input is one
// and the policy downloads, else lc.Tensors where the op ran. Both names get the argument-error
// overload (op_function_names()).
#include "bindings.h"
#include "convert.h"
#include "lightning_core/ops.h"
#include "op_binding.h"
#include "ops/registry.h"

namespace lcpy {

namespace {

constexpr const char* kOp = "lstm";

struct LstmCall {
  Arg x, h0, c0, w_ih, w_hh, b_ih, b_hh;
  bool has_b_ih = false, has_b_hh = false;
  bool batch_first = false;
  lc::ExecutionPolicy p;
  const lc::Tensor* bi() const { return has_b_ih ? &b_ih.t : nullptr; }
  const lc::Tensor* bh() const { return has_b_hh ? &b_hh.t : nullptr; }
  bool any_lc() const {
    return x.from_lc || h0.from_lc || c0.from_lc || w_ih.from_lc || w_hh.from_lc ||
           (has_b_ih && b_ih.from_lc) || (has_b_hh && b_hh.from_lc);
  }
  // The OpDef's flops (0 for shapes of the wrong rank, which the op then rejects): the GIL rule.
  double flops() const {
    return lc::opdefs::lstm.flops_hint(
        lc::OpArgs{&x.t, &h0.t, &c0.t, &w_ih.t, &w_hh.t, bi(), bh()});
  }
};

void parse(nb::handle x, nb::handle h0, nb::handle c0, nb::handle w_ih, nb::handle w_hh,
           nb::handle b_ih, nb::handle b_hh, nb::handle batch_first, nb::handle device,
           nb::handle policy, LstmCall& c) {
  to_arg(x, kOp, "x", c.x);
  to_arg(h0, kOp, "h0", c.h0);
  to_arg(c0, kOp, "c0", c.c0);
  to_arg(w_ih, kOp, "w_ih", c.w_ih);
  to_arg(w_hh, kOp, "w_hh", c.w_hh);
  c.has_b_ih = to_opt_arg(b_ih, kOp, "b_ih", c.b_ih);
  c.has_b_hh = to_opt_arg(b_hh, kOp, "b_hh", c.b_hh);
  c.batch_first = bool_param(batch_first, kOp, "batch_first");
  c.p = resolve_policy(device, policy, kOp);
}

nb::object py_lstm(nb::handle x, nb::handle h0, nb::handle c0, nb::handle w_ih, nb::handle w_hh,
                   nb::handle b_ih, nb::handle b_hh, nb::handle batch_first, nb::handle device,
                   nb::handle policy) {
  LstmCall c;
  parse(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first, device, policy, c);
  const double flops = c.flops();
  if (!c.any_lc() && c.p.download) {
    // Host results: fresh numpy arrays written through the _into path (no extra copy).
    const std::vector<std::int64_t> ys = lc::lstm_out_shape(
        c.x.t, c.h0.t, c.c0.t, c.w_ih.t, c.w_hh.t, c.bi(), c.bh(), c.batch_first);
    const lc::DType dt = c.x.t.dtype();
    lc::Tensor vy, vh, vc;
    nb::object y = new_numpy(ys, vy, kOp, dt);
    nb::object hn = new_numpy(c.h0.t.shape(), vh, kOp, dt);
    nb::object cn = new_numpy(c.h0.t.shape(), vc, kOp, dt);
    call_maybe_nogil(flops, [&] {
      lc::lstm_into(c.x.t, c.h0.t, c.c0.t, c.w_ih.t, c.w_hh.t, c.bi(), c.bh(), vy, vh, vc,
                    c.batch_first, c.p);
    });
    return nb::make_tuple(y, hn, cn);
  }
  std::array<lc::Tensor, 3> r;
  call_maybe_nogil(flops, [&] {
    r = lc::lstm(c.x.t, c.h0.t, c.c0.t, c.w_ih.t, c.w_hh.t, c.bi(), c.bh(), c.batch_first, c.p);
  });
  return nb::make_tuple(wrap_tensor(std::move(r[0])), wrap_tensor(std::move(r[1])),
                        wrap_tensor(std::move(r[2])));
}

nb::object py_lstm_into(nb::handle x, nb::handle h0, nb::handle c0, nb::handle w_ih,
                        nb::handle w_hh, nb::handle b_ih, nb::handle b_hh, nb::handle y,
                        nb::handle h_n, nb::handle c_n, nb::handle batch_first,
                        nb::handle device, nb::handle policy) {
  LstmCall c;
  parse(x, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first, device, policy, c);
  Arg oy, oh, oc;
  to_out_arg(y, kOp, oy);
  to_out_arg(h_n, kOp, oh);
  to_out_arg(c_n, kOp, oc);
  call_maybe_nogil(c.flops(), [&] {
    lc::lstm_into(c.x.t, c.h0.t, c.c0.t, c.w_ih.t, c.w_hh.t, c.bi(), c.bh(), oy.t, oh.t, oc.t,
                  c.batch_first, c.p);
  });
  return nb::make_tuple(nb::borrow(y), nb::borrow(h_n), nb::borrow(c_n));
}

}  // namespace

void register_lstm(nb::module_& m) {
  const nb::none none;
  m.def("lstm", &py_lstm, nb::arg("x").none(), nb::arg("h0").none(), nb::arg("c0").none(),
        nb::arg("w_ih").none(), nb::arg("w_hh").none(), nb::arg("b_ih").none() = none,
        nb::arg("b_hh").none() = none, nb::kw_only(), nb::arg("batch_first").none() = false,
        nb::arg("device").none() = none, nb::arg("policy").none() = none,
        lc::opdefs::lstm.summary);
  m.def("lstm_into", &py_lstm_into, nb::arg("x").none(), nb::arg("h0").none(),
        nb::arg("c0").none(), nb::arg("w_ih").none(), nb::arg("w_hh").none(),
        nb::arg("b_ih").none(), nb::arg("b_hh").none(), nb::arg("y").none(),
        nb::arg("h_n").none(), nb::arg("c_n").none(), nb::kw_only(),
        nb::arg("batch_first").none() = false, nb::arg("device").none() = none,
        nb::arg("policy").none() = none,
        "lstm() written into y, h_n, c_n (exactly the results' shapes, x's dtype, C-contiguous, "
        "writable); returns (y, h_n, c_n).");
  op_function_names().push_back("lstm");
  op_function_names().push_back("lstm_into");
}

}  // namespace lcpy
