// Device tensors against float64 host references, for the CUDA test files that go through the
// op API (attention backward, LSTM): random host inputs, NaN-poisoned device outputs, a float64
// host copy and the relative L2 error.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "lightning_core/tensor.h"
#include "reference.h"

namespace lc::test {

inline lc::Tensor random_host(lc::ref::Rng& rng, const std::vector<std::int64_t>& shape) {
  lc::Tensor t = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
  rng.fill(t.data_as<float>(), static_cast<std::size_t>(t.numel()));
  return t;
}

inline std::vector<double> host_f64(const lc::Tensor& t) {
  const lc::Tensor h = t.to(lc::DeviceKind::cpu).astype(lc::DType::f64);
  const double* p = h.data_as<const double>();
  return std::vector<double>(p, p + h.numel());
}

// Relative L2 error; infinity when y holds a NaN / inf (an unwritten poisoned element).
inline double rel_l2(const std::vector<double>& y, const std::vector<double>& ref) {
  if (y.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) return INFINITY;
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline lc::Tensor nan_on_gpu(const std::vector<std::int64_t>& shape, lc::DType dt) {
  lc::Tensor h = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
  lc::ref::poison(h.data_as<float>(), static_cast<std::size_t>(h.numel()));
  return h.astype(dt).to(lc::DeviceKind::cuda);
}

}  // namespace lc::test
