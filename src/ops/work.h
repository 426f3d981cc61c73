// What each op costs: the one place for the work formulas (flops and bytes) that placement,
// sessions, pipelines, calibration and explain_placement use, and for the CUDA backend's size
// predicates. Every formula is written once here; the op registry (registry.h: one OpDef per
// op) says which formula applies to which op's arguments, and estimate_work() goes through it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/placement.h"
#include "ops/registry.h"

namespace lc {

// The CUDA attention kernels' head-dimension limits (d and dv; kCudaMaxHeadDim and
// kCudaMaxHeadDimBackward in registry.h); larger heads run on the CPU. The size limits of OpDef
// attention2d / attention / conv_attention_nchw, and of attention_backward.
inline bool cuda_supports_attention(std::int64_t d, std::int64_t dv) {
  return d <= kCudaMaxHeadDim && dv <= kCudaMaxHeadDim;
}
inline bool cuda_supports_attention_backward(std::int64_t d, std::int64_t dv) {
  return d <= kCudaMaxHeadDimBackward && dv <= kCudaMaxHeadDimBackward;
}

// The CUDA convolution paths (cuDNN descriptors and our direct kernel) index with 32-bit ints:
// every size, padding and tensor element count must fit, else the op runs on the CPU. OpDef
// conv2d_nchw's size limits.
inline bool cuda_supports_conv(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w,
                               std::int64_t oc, std::int64_t kh, std::int64_t kw, std::int64_t oh,
                               std::int64_t ow, std::int64_t pad_h, std::int64_t pad_w) {
  constexpr double kMax = 2147483647.0;
  const double in = double(n) * c * h * w, wt = double(oc) * c * kh * kw, out = double(n) * oc * oh * ow;
  return in <= kMax && wt <= kMax && out <= kMax && 2.0 * pad_h + h <= kMax &&
         2.0 * pad_w + w <= kMax;
}

// `batch` products [m, k] @ [k, n] (matmul2d; linear with m = rows of x, n = out_features;
// matmul with its broadcast batch count) in storage dtype `dtype` (result bytes).
inline WorkEstimate matmul_work(std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t batch = 1,
                         DType dtype = DType::f32);
// softmax(q k^T) v with q [sq, d], k [sk, d], v [sk, dv]; elem_bytes: the storage dtype's size
// (the result is written in that dtype).
inline WorkEstimate attention_work(std::int64_t sq, std::int64_t sk, std::int64_t d, std::int64_t dv,
                            double elem_bytes = 4.0);
// Batched multi-head attention (lc.attention): attention_work per (batch, head) pair, times
// batch * heads; the output is [batch, heads, sq, dv] plus, with lse, [batch, heads, sq] float32.
inline WorkEstimate attention_mha_work(std::int64_t batch, std::int64_t heads, std::int64_t sq,
                                       std::int64_t sk, std::int64_t d, std::int64_t dv,
                                       double elem_bytes = 4.0);
// conv2d_nchw: n images, c -> oc channels, kh x kw kernel, oh x ow output.
inline WorkEstimate conv_work(std::int64_t n, std::int64_t c, std::int64_t oc, std::int64_t kh,
                       std::int64_t kw, std::int64_t oh, std::int64_t ow);
// conv2d_nchw's output size along one axis (64-bit: paddings near 2^30 do not overflow).
inline std::int64_t conv_out_size(std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad);
// conv -> [seq_len, head_dim] self-attention: the conv's work plus the attention stage.
inline WorkEstimate conv_attention_work(const WorkEstimate& conv, std::int64_t seq_len,
                                 std::int64_t head_dim);
// layernorm / softmax over n elements (8 flops each) of elem_bytes each (the storage dtype's
// size: the result is written in x's dtype).
inline WorkEstimate norm_work(double n, double elem_bytes = 4.0);
// elementwise ops over n result elements (1 flop each) of elem_size bytes.
inline WorkEstimate elementwise_work(double n, std::size_t elem_size = 4);
// embedding: n ids gathering rows of dim elements of elem_size bytes (elementwise family: a
// memory-bound copy; 1 "flop" per element moved).
inline WorkEstimate embedding_work(double n, double dim, std::size_t elem_size);

// By op name and shapes (explain_placement, lc.placement, the pipelines' chain decision): the
// registered op's OpDef::estimate, with the shapes of its inputs in OpDef::inputs order
// (optional trailing inputs may be left out; stride / padding apply to the conv ops). float32
// storage: host_bytes_in counts every input at 4 bytes. Throws lc::ValueError for unknown ops
// (listing the registered ones), missing shapes or wrong ranks. Declared in
// runtime/placement.h (the calibration's probes, one floor down, use it too):
//   WorkEstimate estimate_work(op, shapes, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0);

// ---- the formulas (inline: the op front-ends call them on every call) ---------------------

inline WorkEstimate matmul_work(std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t batch,
                         DType dtype) {
  WorkEstimate w;
  w.family = OpFamily::matmul;
  const double b = static_cast<double>(batch);
  w.flops = 2.0 * b * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n);
  w.host_bytes_out = static_cast<double>(dtype_size(dtype)) * b * static_cast<double>(m) *
                     static_cast<double>(n);
  return w;
}

inline WorkEstimate attention_work(std::int64_t sq, std::int64_t sk, std::int64_t d, std::int64_t dv,
                            double elem_bytes) {
  WorkEstimate w;
  w.family = OpFamily::attention;
  w.flops = 2.0 * static_cast<double>(sq) * static_cast<double>(sk) * static_cast<double>(d + dv);
  w.host_bytes_out = elem_bytes * static_cast<double>(sq) * static_cast<double>(dv);
  return w;
}

inline WorkEstimate attention_mha_work(std::int64_t batch, std::int64_t heads, std::int64_t sq,
                                       std::int64_t sk, std::int64_t d, std::int64_t dv,
                                       double elem_bytes) {
  WorkEstimate w = attention_work(sq, sk, d, dv, elem_bytes);
  const double pairs = static_cast<double>(batch) * static_cast<double>(heads);
  w.flops *= pairs;
  w.host_bytes_out *= pairs;
  return w;
}

inline std::int64_t conv_out_size(std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad) {
  return (in + 2 * pad - k) / std::max<std::int64_t>(stride, 1) + 1;
}

inline WorkEstimate conv_work(std::int64_t n, std::int64_t c, std::int64_t oc, std::int64_t kh,
                       std::int64_t kw, std::int64_t oh, std::int64_t ow) {
  WorkEstimate w;
  w.family = OpFamily::conv2d;
  const double outputs = static_cast<double>(n) * static_cast<double>(oc) *
                         static_cast<double>(oh) * static_cast<double>(ow);
  w.conv_macs = outputs * static_cast<double>(c) * static_cast<double>(kh) * static_cast<double>(kw);
  w.flops = 2.0 * w.conv_macs;
  w.host_bytes_out = 4.0 * outputs;
  return w;
}

inline WorkEstimate conv_attention_work(const WorkEstimate& conv, std::int64_t seq_len,
                                 std::int64_t head_dim) {
  WorkEstimate w = conv;
  const WorkEstimate att = attention_work(seq_len, seq_len, head_dim, head_dim);
  w.family2 = OpFamily::attention;
  w.flops2 = att.flops;
  w.host_bytes_out = att.host_bytes_out;
  return w;
}

inline WorkEstimate norm_work(double n, double elem_bytes) {
  WorkEstimate w;
  w.family = OpFamily::norm;
  w.flops = 8.0 * n;
  w.host_bytes_out = elem_bytes * n;
  return w;
}

inline WorkEstimate elementwise_work(double n, std::size_t elem_size) {
  WorkEstimate w;
  w.family = OpFamily::elementwise;
  w.flops = n;
  w.host_bytes_out = static_cast<double>(elem_size) * n;
  return w;
}

inline WorkEstimate embedding_work(double n, double dim, std::size_t elem_size) {
  return elementwise_work(n * dim, elem_size);
}

}  // namespace lc
