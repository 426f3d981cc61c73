// lstm / lstm_into: one LSTM layer over a sequence, torch.nn.LSTM's layout (ops.h has the
// contract; Backend::lstm with LstmArgs, backend.h, runs it). Validation, its OpDef, placement
// and dispatch.
//
// Three results (y, h_n, c_n): each is written directly when the caller's tensor lives on the
// op's device, is contiguous and shares no memory with an input, else into device scratch
// copied out after the launch (OpRunner's out_raw handles one result; this op has three).
// batch_first=True reads x as a [T, B, I] view of the [B, T, I] input (staged contiguous by
// OpRunner::in_raw) and writes y through a time-major scratch copied into the [B, T, H] result.
#include <string>

#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/out_target.h"
#include "ops/registry.h"
#include "ops/work.h"

namespace lc {

namespace {

constexpr const char* kOp = "lstm";

struct LstmDims {
  std::int64_t T, B, I, H;
};

// The shapes for a message, x as the caller passed it (xt is the time-major view).
std::string shapes_of(const Tensor& xt, bool batch_first, const Tensor& h0, const Tensor& c0,
                      const Tensor& w_ih, const Tensor& w_hh) {
  const std::string xs = batch_first ? xt.transpose(0, 1).shape_str() + " (batch_first)"
                                     : xt.shape_str();
  return "x " + xs + ", h0 " + h0.shape_str() + ", c0 " + c0.shape_str() + ", w_ih " +
         w_ih.shape_str() + ", w_hh " + w_hh.shape_str();
}

// x is time-major here ([T, B, I]; the batch_first transpose is a view made by the caller).
LstmDims check_lstm(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                    const Tensor& w_hh, const Tensor* b_ih, const Tensor* b_hh, bool batch_first) {
  check_float(kOp, "x", x);
  check_same_dtype(kOp, "x", x, "h0", h0);
  check_same_dtype(kOp, "x", x, "c0", c0);
  check_same_dtype(kOp, "x", x, "w_ih", w_ih);
  check_same_dtype(kOp, "x", x, "w_hh", w_hh);
  if (b_ih) check_same_dtype(kOp, "x", x, "b_ih", *b_ih);
  if (b_hh) check_same_dtype(kOp, "x", x, "b_hh", *b_hh);
  const std::string layout = batch_first ? "[B, T, I] (batch_first=True)" : "[T, B, I]";
  if (x.ndim() != 3)
    throw_value(kOp, "x is " + x.shape_str() + "; it must be 3-D " + layout +
                         " (one sequence: add a batch dimension of 1)");
  if (w_hh.ndim() != 2 || w_hh.size(0) != 4 * w_hh.size(1))
    throw_value(kOp, "w_hh is " + w_hh.shape_str() +
                         "; it must be [4*H, H] (torch.nn.LSTM's weight_hh_l0, gates i, f, g, o)");
  const LstmDims d{x.size(0), x.size(1), x.size(2), w_hh.size(1)};
  if (w_ih.ndim() != 2 || w_ih.size(0) != 4 * d.H || w_ih.size(1) != d.I)
    throw_value(kOp, shapes_of(x, batch_first, h0, c0, w_ih, w_hh) + ": w_ih must be [4*H, I] = [" +
                         std::to_string(4 * d.H) + ", " + std::to_string(d.I) +
                         "] (torch.nn.LSTM's weight_ih_l0; I is x's last dimension)");
  const bool h_ok = (h0.ndim() == 2 || (h0.ndim() == 3 && h0.size(0) == 1)) &&
                    h0.size(h0.ndim() - 2) == d.B && h0.size(h0.ndim() - 1) == d.H;
  if (!h_ok)
    throw_value(kOp, shapes_of(x, batch_first, h0, c0, w_ih, w_hh) + ": h0 must be [B, H] = [" +
                         std::to_string(d.B) + ", " + std::to_string(d.H) + "] or [1, B, H]");
  if (c0.shape() != h0.shape())
    throw_value(kOp, shapes_of(x, batch_first, h0, c0, w_ih, w_hh) + ": c0 must have h0's shape " +
                         h0.shape_str());
  for (const auto& [b, name] : {std::pair{b_ih, "b_ih"}, std::pair{b_hh, "b_hh"}}) {
    if (b && (b->ndim() != 1 || b->size(0) != 4 * d.H))
      throw_value(kOp, std::string(name) + " is " + b->shape_str() + "; it must be [4*H] = [" +
                           std::to_string(4 * d.H) + "] (or None for no bias)");
  }
  return d;
}

std::vector<std::int64_t> y_shape(const LstmDims& d, bool batch_first) {
  return batch_first ? std::vector<std::int64_t>{d.B, d.T, d.H}
                     : std::vector<std::int64_t>{d.T, d.B, d.H};
}

void place(OpRunner& r, const Tensor& xt, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
           const Tensor& w_hh, const Tensor* b_ih, const Tensor* b_hh) {
  const OpDef& def = opdefs::lstm;
  const OpArgs args({&xt, &h0, &c0, &w_ih, &w_hh, b_ih, b_hh});
  r.place(def.work(args), {&xt, &h0, &c0, &w_ih, &w_hh, b_ih, b_hh},
          def.supports(DeviceKind::cuda, args));
}

// y is the [T, B, H] or (batch_first) [B, T, H] result; xt the time-major view of x.
void run(OpRunner& r, const LstmDims& d, const Tensor& xt, const Tensor& h0, const Tensor& c0,
         const Tensor& w_ih, const Tensor& w_hh, const Tensor* b_ih, const Tensor* b_hh,
         bool batch_first, Tensor& y, Tensor& h_n, Tensor& c_n) {
  LstmArgs a;
  a.steps = d.T;
  a.batch = d.B;
  a.input = d.I;
  a.hidden = d.H;
  a.dtype = xt.dtype();
  a.precision = r.policy().precision;
  a.x = r.in_raw(xt);
  a.h0 = r.in_raw(h0);
  a.c0 = r.in_raw(c0);
  a.w_ih = r.in_raw(w_ih);
  a.w_hh = r.in_raw(w_hh);
  a.b_ih = r.in_raw_opt(b_ih);
  a.b_hh = r.in_raw_opt(b_hh);
  const std::initializer_list<const Tensor*> ins{&xt, &h0, &c0, &w_ih, &w_hh, b_ih, b_hh};
  // batch_first: the kernel writes time-major scratch, transposed into y after the launch.
  Tensor y_tm = batch_first ? Tensor::empty({d.T, d.B, d.H}, xt.dtype(), r.device()) : Tensor();
  OutTarget ty(r, batch_first ? y_tm : y, ins), th(r, h_n, ins), tc(r, c_n, ins);
  a.y = ty.ptr;
  a.h_n = th.ptr;
  a.c_n = tc.ptr;
  if (d.B > 0 && d.H > 0) r.launch([&](Backend& be) { be.lstm(a); });
  r.finish();
  ty.finish();
  th.finish();
  tc.finish();
  if (batch_first && y.numel() > 0) y_tm.transpose(0, 1).copy_to(y);
}

// ---- the OpDef -----------------------------------------------------------------------------
// Inputs x [T, B, I] ([B, T, I] with OpArgs::batch_first), h0 / c0 [B, H] or [1, B, H], w_ih
// [4H, I], w_hh [4H, H], b_ih / b_hh [4H]; the result is y [T, B, H] ([B, T, H]); h_n and c_n
// have h0's shape (the graph's second and third outputs).

std::vector<std::int64_t> vec(const ShapeRef& s) { return {s.dims, s.dims + s.ndim}; }

OpResult infer_lstm(const OpDef& def, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& h0 = a[1];
  const ShapeRef& c0 = a[2];
  const ShapeRef& wi = a[3];
  const ShapeRef& wh = a[4];
  const std::string all = "x " + shape_str(vec(x)) + ", h0 " + shape_str(vec(h0)) + ", c0 " +
                          shape_str(vec(c0)) + ", w_ih " + shape_str(vec(wi)) + ", w_hh " +
                          shape_str(vec(wh));
  const std::int64_t H = wh[1];
  const std::int64_t T = a.batch_first ? x[1] : x[0], B = a.batch_first ? x[0] : x[1];
  if (wh[0] != 4 * H) throw_value(def.name, all + ": w_hh must be [4*H, H]");
  if (wi[0] != 4 * H || wi[1] != x[2]) throw_value(def.name, all + ": w_ih must be [4*H, I]");
  const bool h_ok = (h0.ndim == 2 || (h0.ndim == 3 && h0[0] == 1)) &&
                    h0[h0.ndim - 2] == B && h0.back() == H;
  if (!h_ok) throw_value(def.name, all + ": h0 must be [B, H] or [1, B, H]");
  if (vec(c0) != vec(h0)) throw_value(def.name, all + ": c0 must have h0's shape");
  for (int i = 5; i <= 6; ++i)
    if (a.has(i) && (a[i].ndim != 1 || a[i][0] != 4 * H))
      throw_value(def.name, std::string(def.inputs[static_cast<std::size_t>(i)].name) +
                                " must be [4*H] = [" + std::to_string(4 * H) + "]");
  if (a.batch_first) return {{B, T, H}, a.dtype};
  return {{T, B, H}, a.dtype};
}

// Two GEMMs' worth of multiply-adds per step (x w_ih^T and h w_hh^T: 2 * B * 4H * (I + H)
// flops) plus the pointwise pass (~10 flops per hidden unit). The matmul family's rates: the
// per-step launch latency a GPU pays T times is not modelled (docs/lstm.md).
WorkEstimate work_lstm(const OpArgs& a) {
  const ShapeRef& x = a[0];
  const double T = static_cast<double>(x[0]), B = static_cast<double>(x[1]),
               I = static_cast<double>(x[2]);
  const double H = a.has(4) ? static_cast<double>(a[4].back()) : I;
  WorkEstimate w;
  w.family = OpFamily::matmul;
  w.flops = 2.0 * T * B * 4.0 * H * (I + H) + 10.0 * T * B * H;
  w.host_bytes_out = static_cast<double>(dtype_size(a.dtype)) * (T * B * H + 2.0 * B * H);
  return w;
}

}  // namespace

const OpDef opdefs::lstm{
    "lstm", OpFamily::matmul,
    "One LSTM layer over a sequence (torch.nn.LSTM's layout and gate order i, f, g, o): returns "
    "(y, h_n, c_n). One GEMM x w_ih^T for every step, then per step one GEMM h w_hh^T and one "
    "fused pointwise pass; float32, float16, bfloat16 with float32 accumulation and a float32 "
    "cell state; on CUDA the step loop replays as one captured CUDA graph (a persistent "
    "kernel for every step is opt-in: LC_LSTM_PERSISTENT=1); on the CPU the sequence is one "
    "pool job.",
    {{in("x", 3), in("h0", -1, 2), in("c0", -1, 2), in("w_ih", 2), in("w_hh", 2),
      opt("b_ih", 1), opt("b_hh", 1)}},
    {"y", "h_n", "c_n"},
    {{{"batch_first", AttrType::boolean, "False", "x is [B, T, I] and y [B, T, H]"}}},
    kFloat16x, kFloat16x, &infer_lstm, &work_lstm, nullptr};

std::vector<std::int64_t> lstm_out_shape(const Tensor& x, const Tensor& h0, const Tensor& c0,
                                         const Tensor& w_ih, const Tensor& w_hh,
                                         const Tensor* b_ih, const Tensor* b_hh,
                                         bool batch_first) {
  const Tensor xt = batch_first && x.ndim() == 3 ? x.transpose(0, 1) : x;
  return y_shape(check_lstm(xt, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first), batch_first);
}

std::array<Tensor, 3> lstm(const Tensor& x, const Tensor& h0, const Tensor& c0,
                           const Tensor& w_ih, const Tensor& w_hh, const Tensor* b_ih,
                           const Tensor* b_hh, bool batch_first, const ExecutionPolicy& p) {
  const Tensor xt = batch_first && x.ndim() == 3 ? x.transpose(0, 1) : x;
  const LstmDims d = check_lstm(xt, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first);
  OpRunner r(kOp, p);
  place(r, xt, h0, c0, w_ih, w_hh, b_ih, b_hh);
  std::array<Tensor, 3> res{r.result(y_shape(d, batch_first), xt.dtype()),
                            r.result(h0.shape(), xt.dtype()), r.result(h0.shape(), xt.dtype())};
  run(r, d, xt, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first, res[0], res[1], res[2]);
  return res;
}

void lstm_into(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
               const Tensor& w_hh, const Tensor* b_ih, const Tensor* b_hh, Tensor& y,
               Tensor& h_n, Tensor& c_n, bool batch_first, const ExecutionPolicy& p) {
  const Tensor xt = batch_first && x.ndim() == 3 ? x.transpose(0, 1) : x;
  const LstmDims d = check_lstm(xt, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first);
  check_out(kOp, y, y_shape(d, batch_first), xt.dtype());
  check_out(kOp, h_n, h0.shape(), xt.dtype());
  check_out(kOp, c_n, h0.shape(), xt.dtype());
  if (y.may_overlap(h_n) || y.may_overlap(c_n) || h_n.may_overlap(c_n))
    throw_value(kOp, "y, h_n and c_n share memory; pass three separate arrays");
  OpRunner r(kOp, p);
  place(r, xt, h0, c0, w_ih, w_hh, b_ih, b_hh);
  run(r, d, xt, h0, c0, w_ih, w_hh, b_ih, b_hh, batch_first, y, h_n, c_n);
}

}  // namespace lc
