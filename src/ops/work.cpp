// Work estimates of every op (work.h): one formula per op.
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

WorkEstimate attention_mha_work(std::int64_t batch, std::int64_t heads, std::int64_t sq,
                                std::int64_t sk, std::int64_t d, std::int64_t dv,
                                double elem_bytes) {
  WorkEstimate w = attention_work(sq, sk, d, dv, elem_bytes);
  const double pairs = static_cast<double>(batch) * static_cast<double>(heads);
  w.flops *= pairs;
  w.host_bytes_out *= pairs;
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

namespace {

const std::vector<std::int64_t>& shape_at(const std::string& op,
                                          const std::vector<std::vector<std::int64_t>>& s,
                                          std::size_t i, std::size_t rank) {
  if (s.size() <= i || s[i].size() != rank)
    throw_value(op.c_str(), "explain_placement: argument " + std::to_string(i) + " must be a " +
                                std::to_string(rank) + "-D shape");
  return s[i];
}

double numel(const std::vector<std::int64_t>& s) {
  double n = 1;
  for (auto d : s) n *= static_cast<double>(d);
  return n;
}

bool is_elementwise(const std::string& op) {
  return op == "vector_add" || op == "vector_sub" || op == "vector_mul" || op == "matrix_sub" ||
         op == "vector_scale" || op == "relu" || op == "gelu";
}

}  // namespace

WorkEstimate estimate_work(const std::string& op, const std::vector<std::vector<std::int64_t>>& s,
                           int sh, int sw, int ph, int pw) {
  WorkEstimate w;
  if (op == "matmul2d") {
    const auto& a = shape_at(op, s, 0, 2);
    const auto& b = shape_at(op, s, 1, 2);
    w = matmul_work(a[0], a[1], b[1]);
  } else if (op == "matmul") {
    if (s.size() < 2 || s[0].empty() || s[1].empty())
      throw_value(op.c_str(), "explain_placement: matmul takes two shapes of at least 1-D");
    const auto& a = s[0];
    const auto& b = s[1];
    const std::int64_t m = a.size() >= 2 ? a[a.size() - 2] : 1;
    const std::int64_t k = a.back();
    const std::int64_t n = b.size() >= 2 ? b.back() : 1;
    // Broadcast batch count: per batch dimension the larger size (a mismatch the op would
    // reject counts as the larger too; this is an estimate).
    const std::size_t ab = a.size() > 2 ? a.size() - 2 : 0, bb = b.size() > 2 ? b.size() - 2 : 0;
    std::int64_t batch = 1;
    for (std::size_t i = 0; i < std::max(ab, bb); ++i) {
      const std::int64_t da = i + ab >= std::max(ab, bb) ? a[i + ab - std::max(ab, bb)] : 1;
      const std::int64_t db = i + bb >= std::max(ab, bb) ? b[i + bb - std::max(ab, bb)] : 1;
      batch *= std::max(da, db);
    }
    w = matmul_work(m, k, n, batch);
  } else if (op == "linear") {
    if (s.empty() || s[0].empty())
      throw_value(op.c_str(), "explain_placement: argument 0 must be a shape [..., in]");
    const auto& b = shape_at(op, s, 1, 2);
    const std::int64_t k = s[0].back();
    w = matmul_work(static_cast<std::int64_t>(numel(s[0])) / std::max<std::int64_t>(k, 1), k, b[0]);
  } else if (op == "attention2d") {
    const auto& q = shape_at(op, s, 0, 2);
    const auto& k = s.size() > 1 ? shape_at(op, s, 1, 2) : q;
    const auto& v = s.size() > 2 ? shape_at(op, s, 2, 2) : k;
    w = attention_work(q[0], k[0], q[1], v[1]);
  } else if (op == "conv2d_nchw" || op == "conv_attention_nchw") {
    const auto& x = shape_at(op, s, 0, 4);
    const auto& k = shape_at(op, s, 1, 4);
    w = conv_work(x[0], k[1], k[0], k[2], k[3], conv_out_size(x[2], k[2], sh, ph),
                  conv_out_size(x[3], k[3], sw, pw));
    if (op == "conv_attention_nchw") {
      // Without seq_len/head_dim here, assume a square arrangement of the conv output
      // (seq = d = sqrt(n)): attention_work's 4 seq^2 d = 4 n^1.5. The op itself knows them
      // and uses conv_attention_work.
      const double conv_out = w.host_bytes_out / 4.0;
      w.family2 = OpFamily::attention;
      w.flops2 = 4.0 * conv_out * std::sqrt(conv_out);
    }
  } else if (op == "layernorm" || op == "softmax") {
    w = norm_work(numel(shape_at(op, s, 0, s.empty() ? 0 : s[0].size())));
  } else if (is_elementwise(op)) {
    w = elementwise_work(numel(shape_at(op, s, 0, s.empty() ? 0 : s[0].size())));
  } else if (op == "add" || op == "sub" || op == "mul" || op == "div") {
    if (s.size() != 2)
      throw_value(op.c_str(), "explain_placement: needs the shapes of a and b");
    // The broadcast result's element count: per right-aligned dimension the larger size.
    const std::size_t nd = std::max(s[0].size(), s[1].size());
    double n = 1;
    for (std::size_t i = 0; i < nd; ++i) {
      const std::int64_t da = i < nd - s[0].size() ? 1 : s[0][i - (nd - s[0].size())];
      const std::int64_t db = i < nd - s[1].size() ? 1 : s[1][i - (nd - s[1].size())];
      n *= static_cast<double>(da == 1 ? db : da);
    }
    w = elementwise_work(n);
  } else if (op == "embedding") {
    if (s.size() != 2) throw_value(op.c_str(), "explain_placement: needs the shapes of ids and weight");
    const auto& wt = shape_at(op, s, 1, 2);
    w = embedding_work(numel(s[0]), static_cast<double>(wt[1]), 4);
  } else {
    throw_value("explain_placement", "unknown op '" + op + "'; use matmul2d, matmul, linear, "
                "attention2d, conv2d_nchw, conv_attention_nchw, layernorm, softmax, embedding or an "
                "elementwise op name (vector_add, add, div, relu, ...)");
  }
  double in_elems = 0;
  for (const auto& x : s) in_elems += numel(x);
  w.host_bytes_in = 4.0 * in_elems;
  return w;
}

}  // namespace lc
