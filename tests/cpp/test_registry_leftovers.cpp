// The facts issue #12 wanted written once, checked from C++: the chain rule (one device for a chain
// of ops, the step policies of its inner and last steps: runtime/placement.h), the calibration
// probes' flops (the registry's estimates), the one conv dispatch (ops/conv2d.h).
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

// ---- the chain rule ------------------------------------------------------------------------

// A model where a tiny op stays on the CPU and a large GEMM goes to the GPU.
lc::CostModel chain_model() {
  lc::CostModel m;
  for (int i = 0; i < lc::CostModel::kFamilies; ++i) {
    m.cpu_gflops[i] = 100;
    m.gpu_gflops[i] = 10000;
  }
  m.cpu_overhead_us = 1;
  m.gpu_launch_us = 12;
  m.h2d_gbps = m.d2h_gbps = 10;
  m.h2d_latency_us = m.d2h_latency_us = 0;
  m.calibrated = m.gpu_calibrated = true;
  return m;
}

lc::ChainBlock block(const char* op, const std::vector<std::vector<std::int64_t>>& shapes) {
  const lc::OpDef& def = lc::get_op(op);
  const lc::OpArgs args = lc::OpArgs::of_shapes(shapes);
  return {def.name, def.estimate(args), def.supports(lc::DeviceKind::cuda, args)};
}

class ChainRule : public ::testing::Test {
 protected:
  void SetUp() override { lc::set_cost_model(chain_model()); }
  void TearDown() override { lc::reset_cost_model(); }
  // The chain's device with a GPU assumed present (or absent): nothing is probed.
  lc::DeviceKind decide(std::vector<lc::ChainBlock> blocks, const lc::ExecutionPolicy& p,
                        bool on_gpu, bool host, bool gpu = true) {
    return lc::choose_chain_device(blocks, p, on_gpu, host, &gpu).device;
  }
};

TEST_F(ChainRule, TheFirstBlockSentOffTheCpuDecides) {
  const auto ln = block("layernorm", {{512, 512}});
  const auto big = block("linear", {{512, 512}, {4096, 512}});
  const auto tiny = block("linear", {{4, 8}, {8, 8}});
  lc::ExecutionPolicy p;
  bool yes = true;
  // Alone, the layernorm of host data stays on the CPU; the projection goes to the GPU.
  EXPECT_EQ(lc::choose_chain_device({&ln, 1}, p, false, true, &yes).device, lc::DeviceKind::cpu);
  EXPECT_EQ(decide({big}, p, false, true), lc::DeviceKind::cuda);
  // LN -> projection: the whole chain goes where the projection goes.
  EXPECT_EQ(decide({ln, big}, p, false, true), lc::DeviceKind::cuda);
  EXPECT_EQ(decide({ln, tiny}, p, false, true), lc::DeviceKind::cpu);
  // Data already on the GPU keeps even a tiny chain there.
  EXPECT_EQ(decide({ln, tiny}, p, true, false), lc::DeviceKind::cuda);
  // No GPU: the CPU, whatever the sizes.
  EXPECT_EQ(decide({ln, big}, p, false, true, false), lc::DeviceKind::cpu);
  // upload="never" with host data: the CPU, also when other inputs live on the GPU.
  p.upload = lc::UploadMode::never;
  EXPECT_EQ(decide({ln, big}, p, false, true), lc::DeviceKind::cpu);
  EXPECT_EQ(decide({ln, big}, p, true, true), lc::DeviceKind::cpu);
  EXPECT_EQ(decide({ln, big}, p, true, false), lc::DeviceKind::cuda);
}

TEST_F(ChainRule, ExplicitRequestsAreTheFirstBlocksOpDecision) {
  const auto big = block("linear", {{512, 512}, {4096, 512}});
  // attention with a 520-wide head: the CUDA kernels (up to 512) do not run it.
  const auto wide = block("attention2d", {{8, 520}, {8, 520}, {8, 520}});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  EXPECT_EQ(decide({big}, p, true, false), lc::DeviceKind::cpu);
  p.device = lc::DeviceRequest::cuda;
  EXPECT_EQ(decide({big, wide}, p, false, true), lc::DeviceKind::cuda);
  const bool yes = true;
  const lc::Placement fb = lc::choose_chain_device(std::vector{wide, big}, p, false, true, &yes);
  EXPECT_EQ(fb.device, lc::DeviceKind::cpu);
  EXPECT_TRUE(fb.fallback);
  EXPECT_THROW(decide({big}, p, false, true, false), lc::Unavailable);
  EXPECT_THROW(lc::choose_chain_device({}, p, false, true), lc::ValueError);
}

TEST(ChainPolicies, CpuStepsMoveNothingAndComputeFp32) {
  lc::ExecutionPolicy base;
  base.sync = lc::SyncMode::batch;
  base.precision = lc::Precision::bf16;
  base.upload = lc::UploadMode::never;
  base.download = false;
  base.autotune = false;
  const lc::ChainPolicies c = lc::chain_policies(base, lc::DeviceRequest::cpu);
  EXPECT_EQ(c.inner, c.last);
  EXPECT_EQ(c.last.device, lc::DeviceRequest::cpu);
  EXPECT_EQ(c.last.upload, lc::UploadMode::always);
  EXPECT_TRUE(c.last.download);
  EXPECT_EQ(c.last.sync, lc::SyncMode::per_call);
  EXPECT_EQ(c.last.precision, lc::Precision::fp32);
  EXPECT_FALSE(c.last.autotune);  // the rest is the caller's
  EXPECT_NO_THROW(c.last.validate("t"));
}

TEST(ChainPolicies, GpuInnerStepsKeepResultsOnTheDevice) {
  for (lc::SyncMode sync : {lc::SyncMode::per_call, lc::SyncMode::batch}) {
    for (bool download : {true, false}) {
      lc::ExecutionPolicy base;
      base.sync = sync;
      base.download = download;
      base.precision = lc::Precision::tf32;
      const lc::ChainPolicies c = lc::chain_policies(base, lc::DeviceRequest::cuda);
      lc::ExecutionPolicy want = base;
      want.device = lc::DeviceRequest::cuda;
      EXPECT_EQ(c.last, want);  // the last step is the caller's policy, device explicit
      want.download = false;
      want.sync = lc::SyncMode::none;
      EXPECT_EQ(c.inner, want);
      EXPECT_NO_THROW(c.inner.validate("t"));
    }
  }
  // No decision ("auto": unreadable shapes): the same split, the ops place themselves.
  const lc::ChainPolicies a =
      lc::chain_policies(lc::ExecutionPolicy{}, lc::DeviceRequest::automatic);
  EXPECT_EQ(a.last.device, lc::DeviceRequest::automatic);
  EXPECT_FALSE(a.inner.download);
}

}  // namespace
