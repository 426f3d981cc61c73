// The facts issue #12 wanted written once, checked from C++: the calibration probes' flops (the
// registry's estimates), the one conv dispatch (ops/conv2d.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <random>
#include <vector>

#include "ops/conv2d.h"
#include "ops/registry.h"
#include "ops/work.h"
#include "runtime/placement.h"
#include "lightning_core/autotune.h"
#include "lightning_core/errors.h"
#include "lightning_core/fused.h"
#include "lightning_core/ops.h"

namespace {

// ---- the one conv dispatch --------------------------------------------------------------------

std::vector<float> randv(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& e : v) e = dist(g);
  return v;
}

lc::Tensor host(std::vector<float>& v, std::vector<std::int64_t> shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t st = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[static_cast<std::size_t>(i)] = st;
    st *= shape[static_cast<std::size_t>(i)];
  }
  return lc::Tensor::wrap(v.data(), static_cast<int>(shape.size()), shape.data(), strides.data(),
                          lc::DType::f32, lc::DeviceKind::cpu);
}

// conv2d_nchw and conv -> attention's conv step take the same path, so the chain equals the ops
// run one by one, bit for bit (autotune off: the built-in rule; on: the tuned choice both ask).
class ConvDispatch : public ::testing::Test {
 protected:
  // The tuned runs store their choices in a private auto-tune cache.
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lc-conv-dispatch-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    ::setenv("LIGHTNING_CORE_CACHE_DIR", dir_.c_str(), 1);
    lc::autotune::reload();
  }
  void TearDown() override {
    ::unsetenv("LIGHTNING_CORE_CACHE_DIR");
    lc::autotune::reload();
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_F(ConvDispatch, ConvAttentionEqualsConvThenAttentionExactly) {
  for (bool autotune : {false, true}) {
    for (const auto& [c, oc, hw, pad] : std::vector<std::array<std::int64_t, 4>>{
             {3, 5, 11, 1}, {1, 1, 1, 1}, {8, 16, 13, 2}}) {
      auto xv = randv(static_cast<std::size_t>(c * hw * hw), 1);
      auto wv = randv(static_cast<std::size_t>(oc * c * 9), 2);
      auto bv = randv(static_cast<std::size_t>(oc), 3);
      const lc::Tensor x = host(xv, {1, c, hw, hw});
      const lc::Tensor w = host(wv, {oc, c, 3, 3});
      const lc::Tensor b = host(bv, {oc});
      lc::ExecutionPolicy p;
      p.device = lc::DeviceRequest::cpu;
      p.autotune = autotune;
      const int pd = static_cast<int>(pad);
      const lc::Tensor conv = lc::conv2d_nchw(x, w, &b, 1, 1, pd, pd, lc::Activation::relu, p);
      lc::ConvAttentionParams prm;
      prm.seq_len = conv.size(1);  // [oc, oh*ow]: a view of the conv output, no tiling
      prm.head_dim = conv.size(2) * conv.size(3);
      prm.pad_h = prm.pad_w = pd;
      const lc::Tensor fused = lc::conv_attention_nchw(x, w, &b, prm, p);
      const lc::Tensor s = conv.view({prm.seq_len, prm.head_dim}, {prm.head_dim, 1}, 0);
      const lc::Tensor ref = lc::attention2d(s, s, s, false, p);
      ASSERT_EQ(fused.shape(), ref.shape());
      const float* a = fused.data_as<const float>();
      const float* r = ref.data_as<const float>();
      for (std::int64_t i = 0; i < ref.numel(); ++i) ASSERT_EQ(a[i], r[i]) << i;
      // The choice itself: the one function both front-ends call.
      lc::Conv2dArgs g = lc::conv2d_geometry(x, w, 1, 1, pd, pd, conv.size(2), conv.size(3),
                                             lc::Activation::relu);
      std::vector<float> scratch(static_cast<std::size_t>(conv.numel()));
      g.x = x.data_as<const float>();
      g.w = w.data_as<const float>();
      g.out = scratch.data();
      const int first = lc::conv2d_choice(lc::DeviceKind::cpu, g, autotune);
      EXPECT_EQ(lc::conv2d_choice(lc::DeviceKind::cpu, g, autotune), first);  // memoised
      if (!autotune) EXPECT_EQ(first, 0);  // the built-in rule
    }
  }
}

// ---- calibration probes: the registry's estimates --------------------------------------------

TEST(CalibrationProbes, FlopsAreTheOpDefsEstimates) {
  for (bool gpu : {false, true}) {
    for (int f = 0; f < lc::CostModel::kFamilies; ++f) {
      const auto fam = static_cast<lc::OpFamily>(f);
      double prev = 0;
      for (int which : {0, 1}) {
        const lc::CalibrationProbe p = lc::calibration_probe(fam, gpu, which);
        ASSERT_NE(p.op, nullptr);
        const lc::OpDef& def = lc::get_op(p.op);
        EXPECT_EQ(def.family, fam) << p.op;  // the probe measures its own family's op
        lc::OpArgs args = lc::OpArgs::of_shapes(p.shapes);
        args.pad_h = args.pad_w = p.pad;
        EXPECT_DOUBLE_EQ(p.flops, def.work(args).flops) << p.op;
        EXPECT_GT(p.flops, prev) << p.op;  // medium > small: a two-point fit needs two sizes
        prev = p.flops;
      }
    }
  }
  // The formulas themselves (what the probes counted by hand before).
  const auto mm = lc::calibration_probe(lc::OpFamily::matmul, false, 1);
  const double n = static_cast<double>(mm.shapes[0][0]);
  EXPECT_DOUBLE_EQ(mm.flops, 2 * n * n * n);
  const auto conv = lc::calibration_probe(lc::OpFamily::conv2d, true, 1);
  const auto& x = conv.shapes[0];
  const auto& w = conv.shapes[1];
  EXPECT_EQ(conv.pad, 1);
  EXPECT_DOUBLE_EQ(conv.flops, 2.0 * w[0] * x[1] * 9 * x[2] * x[3]);  // 3x3, pad 1: oh = h
  const auto att = lc::calibration_probe(lc::OpFamily::attention, false, 0);
  const double s = static_cast<double>(att.shapes[0][0]), d = static_cast<double>(att.shapes[0][1]);
  EXPECT_DOUBLE_EQ(att.flops, 2 * s * s * (d + d));
}

}  // namespace
