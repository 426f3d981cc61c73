// conv2d_nchw (+ fused activation): validation, placement and the one conv dispatch
// (launch_conv2d: the backend's tuned path or its built-in rule), shared with conv -> attention.
#include "runtime/op_runner.h"
#include "lightning_core/sizes.h"
#include "ops/checks.h"
#include "ops/conv2d.h"
#include "ops/work.h"

namespace lc {

namespace {

struct ConvGeom {
  std::int64_t oh = 0, ow = 0;
};

ConvGeom check_conv(const char* op, const Tensor& x, const Tensor& w, const Tensor* bias, int sh,
                    int sw, int ph, int pw) {
  check_f32(op, "x", x);
  check_f32(op, "weight", w);
  check_ndim(op, "x", x, 4);
  check_ndim(op, "weight", w, 4);
  check_nonempty(op, "x", x);
  check_nonempty(op, "weight", w);
  if (x.size(1) != w.size(1))
    throw_value(op, "x is " + x.shape_str() + " (N, C, H, W) but weight is " + w.shape_str() +
                        " (OC, C, KH, KW); their channel counts (dim 1) must match");
  if (sh < 1 || sw < 1)
    throw_value(op, "stride must be >= 1, got stride_h=" + std::to_string(sh) +
                        " stride_w=" + std::to_string(sw));
  if (ph < 0 || pw < 0)
    throw_value(op, "padding must be >= 0, got pad_h=" + std::to_string(ph) +
                        " pad_w=" + std::to_string(pw));
  if (bias) {
    check_f32(op, "bias", *bias);
    if (bias->ndim() != 1 || bias->size(0) != w.size(0))
      throw_value(op, "bias must be 1-D of length out_channels=" + std::to_string(w.size(0)) +
                          ", got shape " + bias->shape_str());
  }
  ConvGeom g;
  // In 64 bits: 2 * pad overflows an int for paddings near 2^30.
  const std::int64_t hp = x.size(2) + 2 * std::int64_t{ph}, wp = x.size(3) + 2 * std::int64_t{pw};
  if (hp < w.size(2) || wp < w.size(3))
    throw_value(op, "kernel " + std::to_string(w.size(2)) + "x" + std::to_string(w.size(3)) +
                        " is larger than the padded input " + std::to_string(hp) + "x" +
                        std::to_string(wp) + "; add padding or use a smaller kernel");
  g.oh = conv_out_size(x.size(2), w.size(2), sh, ph);
  g.ow = conv_out_size(x.size(3), w.size(3), sw, pw);
  const std::int64_t out_dims[4] = {x.size(0), w.size(0), g.oh, g.ow};
  checked_numel(op, out_dims, 4, sizeof(float));  // the result must be representable
  return g;
}

// The op's facts (work estimate, the CUDA paths' 32-bit limits) come from its OpDef.
void place(OpRunner& r, const Tensor& x, const Tensor& w, const Tensor* bias, int sh, int sw,
           int ph, int pw) {
  const OpDef& def = opdefs::conv2d_nchw;
  const OpArgs args = conv_args(x, w, bias, sh, sw, ph, pw);
  r.place(def.work(args), {&x, &w, bias}, def.supports(DeviceKind::cuda, args));
}

void run_conv(OpRunner& r, const Tensor& x, const Tensor& w, const Tensor* bias, int sh, int sw,
              int ph, int pw, Activation act, const ConvGeom& g, Tensor& out) {
  Conv2dArgs a = conv2d_geometry(x, w, sh, sw, ph, pw, g.oh, g.ow, act);
  a.x = r.in(x);
  a.w = r.in(w);
  a.bias = r.in_opt(bias);
  a.out = r.out(out);
  launch_conv2d(r, a);
  r.finish();
}

}  // namespace

OpArgs conv_args(const Tensor& x, const Tensor& w, const Tensor* bias, int sh, int sw, int ph,
                 int pw) {
  OpArgs a{&x, &w, bias};
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_h = ph;
  a.pad_w = pw;
  return a;
}

int conv2d_choice(DeviceKind device, const Conv2dArgs& a, bool autotune) {
  return get_backend(device).tune_conv2d(a, autotune);
}

void launch_conv2d(OpRunner& r, const Conv2dArgs& a) {
  const int choice = conv2d_choice(r.device(), a, r.policy().autotune);
  r.launch([&](Backend& be) {
    if (choice != 0) be.conv2d_tuned(a, choice);
    else be.conv2d(a);
  });
}

Conv2dArgs conv2d_geometry(const Tensor& x, const Tensor& w, int sh, int sw, int ph, int pw,
                           std::int64_t oh, std::int64_t ow, Activation act) {
  Conv2dArgs a;
  a.n = x.size(0);
  a.c = x.size(1);
  a.h = x.size(2);
  a.w_in = x.size(3);
  a.oc = w.size(0);
  a.kh = w.size(2);
  a.kw = w.size(3);
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_h = ph;
  a.pad_w = pw;
  a.oh = oh;
  a.ow = ow;
  a.act = act;
  return a;
}

std::vector<std::int64_t> conv2d_nchw_out_shape(const Tensor& x, const Tensor& w, const Tensor* bias,
                                                int sh, int sw, int ph, int pw) {
  const ConvGeom g = check_conv("conv2d_nchw", x, w, bias, sh, sw, ph, pw);
  return {x.size(0), w.size(0), g.oh, g.ow};
}

void conv2d_nchw_into(const Tensor& x, const Tensor& w, const Tensor* bias, int sh, int sw, int ph,
                      int pw, Activation act, Tensor& out, const ExecutionPolicy& p) {
  static constexpr const char* op = "conv2d_nchw";
  const ConvGeom g = check_conv(op, x, w, bias, sh, sw, ph, pw);
  check_out(op, out, {x.size(0), w.size(0), g.oh, g.ow});
  OpRunner r(op, p);
  place(r, x, w, bias, sh, sw, ph, pw);
  run_conv(r, x, w, bias, sh, sw, ph, pw, act, g, out);
}

Tensor conv2d_nchw(const Tensor& x, const Tensor& w, const Tensor* bias, int sh, int sw, int ph,
                   int pw, Activation act, const ExecutionPolicy& p) {
  static constexpr const char* op = "conv2d_nchw";
  const ConvGeom g = check_conv(op, x, w, bias, sh, sw, ph, pw);
  OpRunner r(op, p);
  place(r, x, w, bias, sh, sw, ph, pw);
  Tensor out = r.result({x.size(0), w.size(0), g.oh, g.ow});
  run_conv(r, x, w, bias, sh, sw, ph, pw, act, g, out);
  return out;
}

}  // namespace lc
