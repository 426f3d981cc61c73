// Backend::sum_squares (the training step's loss reduction: reduce.cpp on the CPU, reduce.cu on
// CUDA) against a float64 loop over the values as stored, for each float dtype and sizes that
// take the one-block and the many-block paths (0, 1, odd, > 65536 and > 1024 GPU blocks), and
// its determinism (the same bits on every call).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "cuda_test.h"
#include "lightning_core/tensor.h"
#include "reference.h"

namespace {

using i64 = std::int64_t;

const lc::DType kDtypes[] = {lc::DType::f32, lc::DType::f64, lc::DType::f16, lc::DType::bf16};
const i64 kSizes[] = {0, 1, 7, 257, 65536 * 3 + 5, 1 << 20, 3 * (1 << 20) + 11};

lc::Tensor random_t(lc::ref::Rng& rng, i64 n, lc::DType dt) {
  lc::Tensor t = lc::Tensor::empty({n}, lc::DType::f32, lc::DeviceKind::cpu);
  rng.fill(t.data_as<float>(), static_cast<std::size_t>(n));
  return t.astype(dt);
}

double reference(const lc::Tensor& host) {
  const lc::Tensor d = host.astype(lc::DType::f64);
  double acc = 0.0;
  for (i64 i = 0; i < d.numel(); ++i) acc += d.data_as<const double>()[i] * d.data_as<const double>()[i];
  return acc;
}

void check_backend(lc::Backend& be, lc::DeviceKind kind) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType dt : kDtypes) {
    for (i64 n : kSizes) {
      SCOPED_TRACE(std::string(lc::dtype_info(dt).name) + " n=" + std::to_string(n));
      const lc::Tensor host = random_t(rng, n, dt);
      const lc::Tensor x = host.to(kind);
      const double want = reference(host);
      const double got = be.sum_squares(x.data(), dt, n);
      EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, want));
      const double again = be.sum_squares(x.data(), dt, n);
      EXPECT_EQ(std::memcmp(&got, &again, sizeof got), 0) << "not deterministic";
    }
  }
}

TEST(SumSquares, CpuMatchesFloat64Loop) {
  check_backend(lc::get_backend(lc::DeviceKind::cpu), lc::DeviceKind::cpu);
}

TEST(CudaSumSquares, MatchesFloat64Loop) {
  LC_REQUIRE_CUDA();
  check_backend(lc::test::gpu(), lc::DeviceKind::cuda);
}

}  // namespace
