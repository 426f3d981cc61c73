// CPU matmul beyond float32 2-D (cpu_ops.h matmul_general): float64 GEMM, float16 / bfloat16
// through the float32 GEMM with one rounding, strided batches with broadcast operands (small
// products spread over the pool) and the residual, against a float64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "lightning_core/dtype.h"
#include "reference.h"

namespace {

using lc::DType;
using i64 = std::int64_t;

TEST(CpuMatmulDtypes, Float64GemmOddShapes) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const i64 shapes[][3] = {{1, 1, 1}, {1, 9, 1}, {3, 5, 7}, {33, 1, 17}, {67, 131, 29}, {130, 257, 97}};
  for (const auto& s : shapes)
    for (bool tb : {false, true}) {
      const i64 m = s[0], k = s[1], n = s[2];
      std::vector<double> a(static_cast<std::size_t>(m * k)), b(static_cast<std::size_t>(k * n));
      for (auto& v : a) v = rng.vec(1)[0];
      for (auto& v : b) v = rng.vec(1)[0];
      std::vector<double> c(static_cast<std::size_t>(m * n), NAN);
      lc::cpu::gemm_f64(m, n, k, a.data(), b.data(), tb, c.data());
      double worst = 0;
      for (i64 i = 0; i < m; ++i)
        for (i64 j = 0; j < n; ++j) {
          long double want = 0, scale = 0;
          for (i64 p = 0; p < k; ++p) {
            const long double t = static_cast<long double>(a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
            want += t;
            scale += std::fabs(t);
          }
          const double got = c[static_cast<std::size_t>(i * n + j)];
          ASSERT_TRUE(std::isfinite(got)) << "not written at " << i << "," << j;
          worst = std::max(worst, static_cast<double>(std::fabs(got - want) / (scale + 1e-300L)));
        }
      EXPECT_LE(worst, 1e-13) << m << "x" << k << "x" << n << " tb=" << tb;
    }
}

// bits <-> float for a 16-bit dtype
std::uint16_t bits16(DType dt, float v) {
  return dt == DType::f16 ? lc::to_f16(v).bits : lc::to_bf16(v).bits;
}
float from16(DType dt, std::uint16_t b) {
  return dt == DType::f16 ? lc::to_float(lc::float16{b}) : lc::to_float(lc::bfloat16{b});
}

TEST(CpuMatmulDtypes, HalfBatchedBroadcastResidual) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType dt : {DType::f16, DType::bf16})
    for (int which = 0; which < 3; ++which)  // 0 both present, 1 a broadcast, 2 b broadcast
      for (bool tb : {false, true}) {
        const i64 batch = 7, m = 13, k = 29, n = 11;
        const i64 na = which == 1 ? 1 : batch, nb = which == 2 ? 1 : batch;
        auto fa = rng.vec(static_cast<std::size_t>(na * m * k));
        auto fb = rng.vec(static_cast<std::size_t>(nb * k * n));
        auto fbias = rng.vec(static_cast<std::size_t>(n));
        auto fres = rng.vec(static_cast<std::size_t>(batch * m * n));
        std::vector<std::uint16_t> a, b, bias, res, out(static_cast<std::size_t>(batch * m * n), 0xFFFF);
        for (float& v : fa) { a.push_back(bits16(dt, v)); v = from16(dt, a.back()); }
        for (float& v : fb) { b.push_back(bits16(dt, v)); v = from16(dt, b.back()); }
        for (float& v : fbias) { bias.push_back(bits16(dt, v)); v = from16(dt, bias.back()); }
        for (float& v : fres) { res.push_back(bits16(dt, v)); v = from16(dt, res.back()); }
        lc::MatmulArgs p;
        p.a = a.data(); p.b = b.data(); p.bias = bias.data(); p.residual = res.data();
        p.out = out.data(); p.m = m; p.k = k; p.n = n; p.trans_b = tb;
        p.act = lc::Activation::relu; p.dtype = dt; p.batch = batch;
        p.stride_a = which == 1 ? 0 : m * k;
        p.stride_b = which == 2 ? 0 : k * n;
        p.stride_out = m * n;
        lc::cpu::matmul(p);
        double worst = 0;
        for (i64 bi = 0; bi < batch; ++bi)
          for (i64 i = 0; i < m; ++i)
            for (i64 j = 0; j < n; ++j) {
              const float* A = fa.data() + (which == 1 ? 0 : bi * m * k);
              const float* B = fb.data() + (which == 2 ? 0 : bi * k * n);
              const std::size_t at = static_cast<std::size_t>((bi * m + i) * n + j);
              double s = fbias[static_cast<std::size_t>(j)] + fres[at];
              double scale = std::fabs(fbias[static_cast<std::size_t>(j)]) + std::fabs(fres[at]);
              for (i64 q = 0; q < k; ++q) {
                const double t = static_cast<double>(A[i * k + q]) * (tb ? B[j * k + q] : B[q * n + j]);
                s += t;
                scale += std::fabs(t);
              }
              const float got = from16(dt, out[at]);
              ASSERT_TRUE(std::isfinite(got)) << "not written at " << at;
              // float16 below 2^-14 is subnormal (fixed spacing 2^-24): an absolute floor
              const double floor = dt == DType::f16 ? 6.103515625e-05 : 1e-30;
              worst = std::max(worst, std::fabs(got - (s < 0 ? 0.0 : s)) / (scale + floor));
            }
        EXPECT_LE(worst, 1e-2) << lc::dtype_info(dt).name << " which=" << which << " tb=" << tb;
      }
}

TEST(CpuMatmulDtypes, Float32BatchMatchesSingleProducts) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const i64 batch = 64, m = 16, k = 8, n = 16;  // small: one product per pool task
  auto a = rng.vec(static_cast<std::size_t>(batch * m * k)), b = rng.vec(static_cast<std::size_t>(batch * k * n));
  std::vector<float> out(static_cast<std::size_t>(batch * m * n));
  lc::ref::poison(out);
  lc::MatmulArgs p;
  p.a = a.data(); p.b = b.data(); p.out = out.data(); p.m = m; p.k = k; p.n = n;
  p.batch = batch; p.stride_a = m * k; p.stride_b = k * n; p.stride_out = m * n;
  lc::cpu::matmul(p);
  EXPECT_EQ(lc::ref::count_nan(out), 0u);
  for (i64 bi = 0; bi < batch; ++bi) {
    lc::MatmulArgs one;
    one.a = a.data() + bi * m * k; one.b = b.data() + bi * k * n; one.m = m; one.k = k; one.n = n;
    std::vector<float> got(out.begin() + bi * m * n, out.begin() + (bi + 1) * m * n);
    EXPECT_LE(lc::ref::matmul_error(got, one), 1e-6) << "product " << bi;
  }
}

}  // namespace
