// Work formulas (work.h): one per op family; estimate_work finds the op in the registry.
#include "ops/work.h"

#include <algorithm>
#include <cmath>

#include "lightning_core/errors.h"

namespace lc {

WorkEstimate matmul_work(std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t batch,
                         DType dtype) {
  WorkEstimate w;
  w.family = OpFamily::matmul;
  const double b = static_cast<double>(batch);
  w.flops = 2.0 * b * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n);
  w.host_bytes_out = static_cast<double>(dtype_size(dtype)) * b * static_cast<double>(m) *
                     static_cast<double>(n);
  return w;
}

WorkEstimate attention_work(std::int64_t sq, std::int64_t sk, std::int64_t d, std::int64_t dv,
                            double elem_bytes) {
  WorkEstimate w;
  w.family = OpFamily::attention;
  w.flops = 2.0 * static_cast<double>(sq) * static_cast<double>(sk) * static_cast<double>(d + dv);
  w.host_bytes_out = elem_bytes * static_cast<double>(sq) * static_cast<double>(dv);
  return w;
}

std::int64_t conv_out_size(std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad) {
  return (in + 2 * pad - k) / std::max<std::int64_t>(stride, 1) + 1;
}

WorkEstimate conv_work(std::int64_t n, std::int64_t c, std::int64_t oc, std::int64_t kh,
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

WorkEstimate conv_attention_work(const WorkEstimate& conv, std::int64_t seq_len,
                                 std::int64_t head_dim) {
  WorkEstimate w = conv;
  const WorkEstimate att = attention_work(seq_len, seq_len, head_dim, head_dim);
  w.family2 = OpFamily::attention;
  w.flops2 = att.flops;
  w.host_bytes_out = att.host_bytes_out;
  return w;
}

WorkEstimate norm_work(double n, double elem_bytes) {
  WorkEstimate w;
  w.family = OpFamily::norm;
  w.flops = 8.0 * n;
  w.host_bytes_out = elem_bytes * n;
  return w;
}

WorkEstimate elementwise_work(double n, std::size_t elem_size) {
  WorkEstimate w;
  w.family = OpFamily::elementwise;
  w.flops = n;
  w.host_bytes_out = static_cast<double>(elem_size) * n;
  return w;
}

WorkEstimate embedding_work(double n, double dim, std::size_t elem_size) {
  return elementwise_work(n * dim, elem_size);
}

WorkEstimate estimate_work(const std::string& op, const std::vector<std::vector<std::int64_t>>& s,
                           int sh, int sw, int ph, int pw) {
  const OpDef& d = get_op(op, "explain_placement");
  OpArgs a = OpArgs::of_shapes(s);
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_h = ph;
  a.pad_w = pw;
  return d.estimate(a);
}

}  // namespace lc
