// Fused / composed ops built from the op API (src/pipelines/conv_attention.cpp).
#pragma once

#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"

namespace lc {

// The integrated conv -> attention path of the original (conv_attention_torchstrong_nchw):
//   y = act(conv2d_nchw(x[1,c,h,w], w[oc,c,kh,kw]) + bias)     -> [1, oc, oh, ow]
//   s = y flattened in NCHW order and read cyclically into [seq_len, head_dim] (repeated when
//       the attention block is larger than the feature map, truncated when smaller; when
//       oc*oh*ow == seq_len*head_dim it is a plain view, no copy) -- api.qkv_arrange
//   out = attention2d(q=s, k=s, v=s)                            -> [seq_len, head_dim]
// Both steps run on one device (the chain rule of src/runtime/placement.h decides once for the
// whole composition and gives the steps their policies); the intermediate never leaves that
// device. The conv step is conv2d_nchw's dispatch (launch_conv2d): on the CPU the auto-tuned
// path (direct vs im2col) when policy.autotune is on.
struct ConvAttentionParams {
  std::int64_t seq_len = 0, head_dim = 0;
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  Activation act = Activation::relu;
  bool causal = false;
  float scale = 0.0f;  // <= 0: 1/sqrt(head_dim)
  // Run the chain as a GraphIR (lightning_core/graph.h: conv2d_nchw -> view nodes ->
  // attention2d), planned once per (shapes, params, device, precision) and cached per thread,
  // replayed by the graph executor through the backend's capture seam (one CUDA graph on a
  // GPU; DirectGraph on the CPU). Same results as eager.
  bool graph = false;
};

std::vector<std::int64_t> conv_attention_nchw_out_shape(const Tensor& x, const Tensor& w,
                                                        const Tensor* bias,
                                                        const ConvAttentionParams& prm);
Tensor conv_attention_nchw(const Tensor& x, const Tensor& w, const Tensor* bias,
                           const ConvAttentionParams& prm,
                           const ExecutionPolicy& p = current_policy());
// `conv_scratch` / `qkv_scratch` (optional): contiguous [1, oc, oh, ow] / [seq_len, head_dim]
// tensors on the chosen device reused for the intermediates (sessions pass them so repeated
// calls allocate nothing).
void conv_attention_nchw_into(const Tensor& x, const Tensor& w, const Tensor* bias,
                              const ConvAttentionParams& prm, Tensor& out,
                              const ExecutionPolicy& p = current_policy(),
                              Tensor* conv_scratch = nullptr, Tensor* qkv_scratch = nullptr);

}  // namespace lc
