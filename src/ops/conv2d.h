// Shared by the conv front-end (conv2d.cpp) and the pipelines that contain a convolution
// (src/pipelines/conv_attention.cpp): the registry's view of a conv call, the geometry part of
// Conv2dArgs (pointers are filled by the caller's OpRunner) and the one dispatch to the backend.
#pragma once

#include "backends/backend.h"
#include "lightning_core/tensor.h"
#include "ops/registry.h"

namespace lc {

class OpRunner;

// The registry's view of a conv call (OpDef conv2d_nchw / conv_attention_nchw).
OpArgs conv_args(const Tensor& x, const Tensor& w, const Tensor* bias, int stride_h, int stride_w,
                 int pad_h, int pad_w);

// The one conv2d dispatch, used by conv2d_nchw and the pipelines' conv step
// (conv_attention_nchw, its sessions): the backend's tuned path when the policy allows
// (Backend::tune_conv2d: on the CPU direct loops vs im2col + GEMM, measured once per shape and
// cached; a repeated shape is a memo lookup), else its built-in rule (choice 0), launched
// through the runner `r` (placed, with a.x / a.w / a.bias / a.out staged on r.device()).
void launch_conv2d(OpRunner& r, const Conv2dArgs& a);
// The path launch_conv2d takes on `device` (0 = the backend's built-in rule; the CPU's
// cpu::ConvPath values otherwise). For tests: conv2d_nchw and conv -> attention ask this one.
int conv2d_choice(DeviceKind device, const Conv2dArgs& a, bool autotune);

Conv2dArgs conv2d_geometry(const Tensor& x, const Tensor& w, int stride_h, int stride_w, int pad_h,
                           int pad_w, std::int64_t oh, std::int64_t ow, Activation act);

}  // namespace lc
