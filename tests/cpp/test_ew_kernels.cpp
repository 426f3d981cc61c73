// CPU elementwise kernels in every dtype with broadcasting / strided operands, the strided copy
// with dtype conversion and the embedding gather (the checks are in ew_cases.h, shared with the
// CUDA tests in test_cuda_ew_kernels.cpp).
#include <algorithm>

#include "backends/cpu/half.h"
#include "ew_cases.h"
#include "lightning_core/ops.h"
#include "lightning_core/tensor.h"

namespace lc {
Backend& cpu_backend_instance();
}

namespace {

lc::Backend& cpu() { return lc::cpu_backend_instance(); }

TEST(CpuHalf, InlineConversionsMatchDtypeH) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float a = lc::cpu::half_to_float(static_cast<std::uint16_t>(h));
    const float b = lc::to_float(lc::float16{static_cast<std::uint16_t>(h)});
    ASSERT_EQ(lc::float_bits(a), lc::float_bits(b)) << "half bits " << h;
  }
  // Every float near the interesting boundaries, then a sweep of all bit patterns.
  auto same = [](std::uint32_t u) {
    const float f = lc::bits_float(u);
    return lc::cpu::float_to_half(f) == lc::to_f16(f).bits;
  };
  for (std::uint32_t base : {0x00000000u, 0x33000000u, 0x38800000u, 0x477ff000u, 0x47800000u,
                             0x7f800000u, 0x7fc00000u})
    for (std::uint32_t d = 0; d < (1u << 16); ++d) {
      ASSERT_TRUE(same(base + d)) << std::hex << base + d;
      ASSERT_TRUE(same((base - d) & 0x7fffffffu)) << std::hex << base - d;
      ASSERT_TRUE(same((base + d) | 0x80000000u)) << std::hex << base + d;
    }
  for (std::uint64_t u = 0; u < (1ull << 32); u += 4099) ASSERT_TRUE(same(static_cast<std::uint32_t>(u))) << u;
}

TEST(CpuEwDtypes, ContiguousEveryKindAndDtype) {
  lc::ewtest::check_contiguous_kinds(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16,
                                             lc::DType::f64});
}

TEST(CpuEwDtypes, BroadcastAndStridedOperands) {
  lc::ewtest::check_strided(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16,
                                    lc::DType::f64});
}

TEST(CpuCopyStrided, EveryDtypePairPermutedAndScattered) { lc::ewtest::check_copy_strided(cpu()); }

TEST(CpuEmbedding, RowsAndBadIds) { lc::ewtest::check_embedding(cpu()); }

}  // namespace

// ---- the public C++ API (ops.h / Tensor) on the CPU --------------------------------------------

namespace {

lc::ExecutionPolicy cpu_policy() {
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  return p;
}

TEST(EwOpsApi, BroadcastAddIntoBfloat16AndErrors) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  // a [3, 1, 5] float32 + b [4, 5] as bfloat16 views: result [3, 4, 5].
  lc::Tensor af = lc::Tensor::empty({3, 1, 5});
  lc::Tensor bf = lc::Tensor::empty({5, 4});  // stored transposed, read through a view
  rng.fill(af.data_as<float>(), 15, -2.0f, 2.0f);
  rng.fill(bf.data_as<float>(), 20, -2.0f, 2.0f);
  const lc::Tensor a = af.astype(lc::DType::bf16);
  const lc::Tensor b = bf.astype(lc::DType::bf16).t();  // [4, 5], strides (1, 4)
  ASSERT_FALSE(b.is_contiguous());
  lc::Tensor out = lc::Tensor::empty({3, 4, 5}, lc::DType::bf16);
  lc::add_into(a, b, out, cpu_policy());
  const lc::Tensor got = out.astype(lc::DType::f64);
  const lc::Tensor a64 = a.astype(lc::DType::f64), b64 = b.astype(lc::DType::f64);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) {
        const double want = a64.data_as<double>()[i * 5 + k] + b64.data_as<double>()[j * 5 + k];
        EXPECT_NEAR(got.data_as<double>()[(i * 4 + j) * 5 + k], want, 1e-2 * std::max(1.0, std::fabs(want)));
      }
  EXPECT_EQ(lc::broadcast_shapes("add", a, b), (std::vector<std::int64_t>{3, 4, 5}));
  // Mixed dtypes: TypeError; shapes that do not broadcast: ValueError naming both; a wrong out
  // dtype: the out-dtype error; nothing written in any case.
  lc::Tensor keep = lc::Tensor::empty({3, 4, 5}, lc::DType::bf16);
  std::memset(keep.data(), 0x11, keep.nbytes());
  EXPECT_THROW(lc::add_into(af, b, keep, cpu_policy()), lc::TypeError);
  try {
    lc::div(a, lc::Tensor::empty({3}, lc::DType::bf16), cpu_policy());
    ADD_FAILURE() << "no error";
  } catch (const lc::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("[div] shapes [3, 1, 5] and [3]"), std::string::npos) << e.what();
  }
  lc::Tensor wrong = lc::Tensor::empty({3, 4, 5});
  EXPECT_THROW(lc::add_into(a, b, wrong, cpu_policy()), lc::ValueError);
  for (std::size_t i = 0; i < keep.nbytes(); ++i)
    ASSERT_EQ(static_cast<unsigned char*>(keep.data())[i], 0x11);
}

TEST(EwOpsApi, GeluApproximateAndEmbedding) {
  lc::Tensor x = lc::Tensor::empty({4});
  const float xs[4] = {-2.0f, -0.5f, 1.0f, 3.0f};
  std::memcpy(x.data(), xs, sizeof(xs));
  const lc::Tensor t = lc::gelu(x, "tanh", cpu_policy());
  const lc::Tensor e = lc::gelu(x, "none", cpu_policy());
  for (int i = 0; i < 4; ++i) {
    const double v = xs[i];
    EXPECT_NEAR(t.data_as<float>()[i], lc::ref::gelu(v), 1e-6);
    EXPECT_NEAR(e.data_as<float>()[i], 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))), 1e-6);
  }
  EXPECT_THROW(lc::gelu(x, "exact", cpu_policy()), lc::ValueError);

  lc::Tensor w = lc::Tensor::empty({6, 3}, lc::DType::f16);
  for (int i = 0; i < 18; ++i) w.data_as<lc::float16>()[i] = lc::to_f16(static_cast<float>(i));
  lc::Tensor ids = lc::Tensor::empty({2, 2}, lc::DType::i32);
  const std::int32_t iv[4] = {5, 0, 2, 5};
  std::memcpy(ids.data(), iv, sizeof(iv));
  const lc::Tensor r = lc::embedding(ids, w, cpu_policy());
  EXPECT_EQ(r.shape(), (std::vector<std::int64_t>{2, 2, 3}));
  EXPECT_EQ(r.dtype(), lc::DType::f16);
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(lc::to_float(r.data_as<lc::float16>()[i * 3 + c]), static_cast<float>(iv[i] * 3 + c));
  static_cast<std::int32_t*>(ids.data())[3] = 6;
  try {
    lc::embedding(ids, w, cpu_policy());
    ADD_FAILURE() << "no error";
  } catch (const lc::ValueError& err) {
    EXPECT_NE(std::string(err.what()).find("id 6 (flat position 3"), std::string::npos) << err.what();
    EXPECT_NE(std::string(err.what()).find("V = 6"), std::string::npos) << err.what();
  }
}

}  // namespace
