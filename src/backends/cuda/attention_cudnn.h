// cuDNN's fused flash attention for the CUDA backend's attention_mha / attention_mha_backward in
// float16 and bfloat16, built with the cuDNN frontend's SDPA graph API (attention_cudnn.cpp;
// docs/attention.md). Our own kernel (attention_mha.cu) runs everything these decline.
//
// Each try_* call returns true when cuDNN ran the call (all outputs enqueued on ctx().stream and
// lc::note_op_impl("cudnn") recorded), false when it did not, with nothing written: the build
// has no frontend, the choice (lc::attention_impl_choice) is "own", the call is outside the
// supported set (dtype, a mask, causal with sq > sk, head dims, 16-byte alignment of pointers
// and strides, "auto"'s size rule), cuDNN cannot be loaded, or any cuDNN step failed (logged
// once through lc::log). Never throws for a cuDNN failure.
#pragma once

#include "backends/backend.h"

namespace lc::cuda {

bool try_cudnn_attention(const MhaArgs& a);
bool try_cudnn_attention_backward(const MhaBackwardArgs& a);

// The frontend version this build compiled in ("1.32.0"), or "" when it has none.
const char* cudnn_frontend_version();

}  // namespace lc::cuda
