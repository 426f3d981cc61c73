// Shared by the conv front-end (conv2d.cpp) and the pipelines that contain a convolution
// (src/pipelines/conv_attention.cpp): the geometry part of Conv2dArgs (pointers are filled by the caller's OpRunner).
#pragma once

#include "backends/backend.h"
#include "lightning_core/tensor.h"

namespace lc {

Conv2dArgs conv2d_geometry(const Tensor& x, const Tensor& w, int stride_h, int stride_w, int pad_h,
                           int pad_w, std::int64_t oh, std::int64_t ow, Activation act);

}  // namespace lc
