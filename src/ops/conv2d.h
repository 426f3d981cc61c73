// Shared by the conv front-end (conv2d.cpp) and the pipelines that contain a convolution
// (src/pipelines/conv_attention.cpp): the geometry part of Conv2dArgs (pointers are filled by the caller's OpRunner).
#pragma once

#include "backends/backend.h"
#include "lightning_core/tensor.h"
#include "ops/registry.h"

namespace lc {

// The registry's view of a conv call (OpDef conv2d_nchw / conv_attention_nchw).
OpArgs conv_args(const Tensor& x, const Tensor& w, const Tensor* bias, int stride_h, int stride_w,
                 int pad_h, int pad_w);

Conv2dArgs conv2d_geometry(const Tensor& x, const Tensor& w, int stride_h, int stride_w, int pad_h,
                           int pad_w, std::int64_t oh, std::int64_t ow, Activation act);

}  // namespace lc
