// GraphIR residency and cuda:N (docs/graph.md, "Residency and cuda:N"): placement that sees
// where the inputs live and where the results go, plans cached per residency, the GPU index in
// the plan and in its capture key, inputs on the wrong GPU refused. The CPU-side logic runs
// everywhere through assume_gpu (a what-if plan); Cuda* tests skip without a GPU, CudaMulti*
// without two.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/backend.h"
#include "cuda_test.h"
#include "graph/graph_internal.h"
#include "lightning_core/errors.h"
#include "lightning_core/graph.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"
#include "runtime/placement.h"

namespace {

using lc::DType;
using lc::GraphIR;
using lc::Tensor;

// A fixed cost model in which transfers dominate: moving the 1M-float input (4 MB) at 1 GB/s
// costs 4000 us each way, the three elementwise steps cost far less on either device.
struct SlowLinkModel {
  SlowLinkModel() {
    lc::CostModel m;
    m.h2d_gbps = m.d2h_gbps = 1.0;
    m.h2d_small_gbps = m.d2h_small_gbps = 0;
    lc::set_cost_model(m);
  }
  ~SlowLinkModel() { lc::reset_cost_model(); }
};

// x [1024, 1024] -> relu -> vector_scale -> relu -> y
void chain(GraphIR& g, std::int64_t n = 1024) {
  g.add_tensor("x", {n, n}, DType::f32);
  g.add_node("relu", {"x"}, {"a"}, {}, "act1");
  g.add_node("vector_scale", {"a"}, {"b"}, {{"alpha", lc::GraphAttr::of(0.5)}}, "scale");
  g.add_node("relu", {"b"}, {"y"}, {}, "act2");
}

lc::GraphPlanOptions what_if(std::vector<std::pair<std::string, int>> resident, bool results_on_device) {
  lc::GraphPlanOptions o;
  o.assume_gpu = true;
  o.fusion.set_all(false);
  o.resident_inputs = std::move(resident);
  o.results_on_device = results_on_device;
  return o;
}

bool all_on(const lc::GraphPlanSummary& s, lc::DeviceKind d) {
  for (const lc::GraphStep& st : s.steps)
    if (st.device != d) return false;
  return !s.steps.empty();
}

TEST(GraphResidency, PlacementSeesWhereInputsLiveAndResultsGo) {
  SlowLinkModel model;
  GraphIR g;
  chain(g);
  // Host input, host results: the GPU would pay an upload and a download; the CPU wins.
  const lc::GraphPlanSummary host = g.plan(what_if({}, false));
  EXPECT_TRUE(all_on(host, lc::DeviceKind::cpu)) << host.to_string();
  EXPECT_NE(host.residency.find("input x in host memory"), std::string::npos) << host.residency;
  EXPECT_EQ(host.device_index, -1);
  // Resident input, results kept on the device: the CPU would pay two downloads; the GPU wins.
  const lc::GraphPlanSummary dev = g.plan(what_if({{"x", 0}}, true));
  EXPECT_TRUE(all_on(dev, lc::DeviceKind::cuda)) << dev.to_string();
  EXPECT_EQ(dev.device_index, 0);
  EXPECT_NE(dev.residency.find("input x resident on cuda:0: no upload charged"), std::string::npos)
      << dev.residency;
  EXPECT_NE(dev.residency.find("results stay on the device"), std::string::npos) << dev.residency;
  EXPECT_NE(dev.to_string().find("residency: input x resident on cuda:0"), std::string::npos);
  // The CPU estimate of the resident plan carries the input's download; the GPU estimate of the
  // host plan the upload and the results' download.
  EXPECT_GT(dev.est_cpu_us, host.est_cpu_us + 3000) << dev.to_string();
  EXPECT_GT(host.est_gpu_us, dev.est_gpu_us + 6000) << host.to_string();
  // Resident input, results to the host: reading x on the CPU costs the same download as the
  // GPU's result download; the GPU's steps are cheaper, so it stays there.
  const lc::GraphPlanSummary mixed = g.plan(what_if({{"x", 0}}, false));
  EXPECT_TRUE(all_on(mixed, lc::DeviceKind::cuda)) << mixed.to_string();
  EXPECT_NE(mixed.residency.find("results in host memory"), std::string::npos);
}

TEST(GraphResidency, InputsOnTheWrongGpuNameInputNodeDevicesAndFix) {
  GraphIR g;
  g.add_tensor("x", {4, 8}, DType::f32);
  g.add_tensor("r", {4, 8}, DType::f32);
  g.add_node("relu", {"x"}, {"a"}, {}, "act");
  g.add_node("add", {"a", "r"}, {"y"}, {}, "res");
  // Two GPUs among the inputs (also for a CPU plan: the eager ops' rule).
  for (auto dev : {lc::DeviceRequest::automatic, lc::DeviceRequest::cpu}) {
    lc::GraphPlanOptions o = what_if({{"x", 0}, {"r", 1}}, false);
    o.device = dev;
    try {
      g.plan(o);
      ADD_FAILURE() << "inputs on cuda:0 and cuda:1 were accepted";
    } catch (const lc::ValueError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("input 'r' (read by node 'res') is on cuda:1"), std::string::npos) << m;
      EXPECT_NE(m.find("input 'x' (read by node 'act') is on cuda:0"), std::string::npos) << m;
      EXPECT_NE(m.find(".to(\"cuda:0\")"), std::string::npos) << m;
    }
  }
  // A plan on cuda:1 with an input on cuda:0.
  lc::GraphPlanOptions o = what_if({{"x", 0}}, false);
  o.device = lc::DeviceRequest::cuda;
  o.device_index = 1;
  try {
    g.plan(o);
    ADD_FAILURE() << "an input on cuda:0 was accepted by a cuda:1 plan";
  } catch (const lc::ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("input 'x' (read by node 'act') is on cuda:0 but the plan runs on cuda:1"),
              std::string::npos) << m;
    EXPECT_NE(m.find(".to(\"cuda:1\") or plan with device='cuda:0'"), std::string::npos) << m;
  }
  // Not an input.
  EXPECT_THROW(g.plan(what_if({{"a", 0}}, false)), lc::ValueError);
  // Both inputs on cuda:1, plan on cuda:1: accepted; steps and capture on cuda:1.
  o = what_if({{"x", 1}, {"r", 1}}, true);
  o.device = lc::DeviceRequest::cuda;
  o.device_index = 1;
  const lc::GraphPlanSummary& s = g.plan(o);
  EXPECT_EQ(s.device_index, 1);
  EXPECT_NE(s.to_string().find("plan: 2 step(s) on cuda:1"), std::string::npos) << s.to_string();
  EXPECT_NE(s.capture_reason.find("on cuda:1"), std::string::npos) << s.capture_reason;
  EXPECT_NE(s.placement_reason.find("device='cuda:1' requested"), std::string::npos);
}

TEST(GraphResidency, ResidentInputsPickTheirGpuForAuto) {
  SlowLinkModel model;
  GraphIR g;
  chain(g);
  const lc::GraphPlanSummary& s = g.plan(what_if({{"x", 3}}, true));
  EXPECT_TRUE(all_on(s, lc::DeviceKind::cuda)) << s.to_string();
  EXPECT_EQ(s.device_index, 3);  // the inputs' GPU, not the current device
  EXPECT_EQ(g.impl().plan->gpu_index, 3);
  EXPECT_EQ(g.impl().plan->input_gpu, std::vector<int>{3});
}

TEST(GraphResidency, CaptureKeyHoldsTheDeviceIndex) {
  GraphIR g;
  chain(g, 16);
  lc::GraphPlanOptions o = what_if({}, false);
  o.device = lc::DeviceRequest::cuda;
  o.device_index = 0;
  g.plan(o);
  const lc::CaptureKey k0 = lc::graph::capture_key(*g.impl().plan);
  o.device_index = 1;
  g.plan(o);
  const lc::CaptureKey k1 = lc::graph::capture_key(*g.impl().plan);
  EXPECT_EQ(k0.topology, k1.topology);  // the same work...
  EXPECT_FALSE(k0 == k1);               // ...recorded per device
  ASSERT_GE(k1.dims.size(), 2u);
  EXPECT_EQ(k1.dims.back(), 1);
  EXPECT_EQ(k0.dims.back(), 0);
  o.device_index = 1;
  g.plan(o);
  EXPECT_TRUE(lc::graph::capture_key(*g.impl().plan) == k1);  // stable: no addresses in it
}

// On the CPU the residency key still works: results_on_device (a caller's policy download=False)
// is part of it, so a plan made for host results is not reused blindly, and plans are cached.
TEST(GraphResidency, PlansAreCachedPerResidency) {
  GraphIR g;
  chain(g, 8);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cpu;
  g.plan(o);
  std::mt19937 gen(5);
  std::normal_distribution<float> d(0.0f, 1.0f);
  Tensor x = Tensor::empty({8, 8}, DType::f32);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = d(gen);
  auto run = [&](bool rod) {
    std::vector<Tensor> outs;
    g.execute_into({{"x", x}}, outs, true, rod);
    for (std::int64_t i = 0; i < 64; ++i)
      EXPECT_FLOAT_EQ(outs[0].data_as<float>()[i], std::max(0.0f, 0.5f * std::max(0.0f, x.data_as<float>()[i])));
  };
  run(false);
  EXPECT_EQ(g.stats().residency_plans, 0u);
  run(true);  // a new residency: planned once
  EXPECT_EQ(g.stats().residency_plans, 1u);
  EXPECT_TRUE(g.impl().plan->results_on_device);
  EXPECT_NE(g.plan_summary().residency.find("results stay on the device"), std::string::npos);
  run(true);
  run(false);  // back to the first plan: cached, not planned again
  run(true);
  EXPECT_EQ(g.stats().residency_plans, 1u);
  EXPECT_FALSE(g.impl().others.empty());
  EXPECT_EQ(g.stats().executions, 5u);
  // Planning again drops the cached residency plans.
  g.plan(o);
  EXPECT_TRUE(g.impl().others.empty());
}

// ---- GPU -------------------------------------------------------------------------------------

float max_abs_diff(const Tensor& a, const Tensor& b) {
  Tensor ah = a.to(lc::DeviceKind::cpu), bh = b.to(lc::DeviceKind::cpu);
  float m = 0;
  for (std::int64_t i = 0; i < ah.numel(); ++i)
    m = std::max(m, std::fabs(ah.data_as<float>()[i] - bh.data_as<float>()[i]));
  return m;
}

Tensor random_tensor(const std::vector<std::int64_t>& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(gen);
  return t;
}

// linear(x, W, b) + gelu, with constants: device-resident x, results kept on the device.
struct Lin {
  Tensor w, b;
  GraphIR g;
  explicit Lin(std::mt19937& gen) {
    w = random_tensor({29, 13}, gen);
    b = random_tensor({29}, gen);
    g.add_tensor("x", {7, 13}, DType::f32);
    g.add_tensor("w", {29, 13}, DType::f32, true, &w);
    g.add_tensor("b", {29}, DType::f32, true, &b);
    g.add_node("linear", {"x", "w", "b"}, {"h"}, {}, "fc");
    g.add_node("gelu", {"h"}, {"y"}, {}, "act");
  }
  Tensor eager(const Tensor& x) const { return lc::gelu(lc::linear(x, w, &b, lc::Activation::none)); }
};

TEST(CudaGraphResidency, DeviceResidentInputsStayOnTheDevice) {
  LC_REQUIRE_CUDA();
  std::mt19937 gen(21);
  Lin l(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cuda;
  l.g.plan(o);  // made for host inputs
  for (int round = 0; round < 3; ++round) {
    const Tensor x = random_tensor({7, 13}, gen);
    std::vector<Tensor> outs;
    l.g.execute_into({{"x", x.to(lc::DeviceKind::cuda)}}, outs, true, /*results_on_device=*/true);
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0].device(), lc::DeviceKind::cuda);
    EXPECT_LT(max_abs_diff(outs[0], l.eager(x)), 2e-3f) << "round " << round;
  }
  EXPECT_EQ(l.g.stats().residency_plans, 1u);  // planned once for the device input
  EXPECT_NE(l.g.plan_summary().residency.find("input x resident on cuda:"), std::string::npos)
      << l.g.plan_summary().to_string();
  EXPECT_EQ(l.g.stats().replays, 2u);
  // Host inputs again: the first plan, cached.
  const Tensor x = random_tensor({7, 13}, gen);
  std::vector<Tensor> outs;
  l.g.execute_into({{"x", x}}, outs);
  EXPECT_EQ(outs[0].device(), lc::DeviceKind::cpu);
  EXPECT_LT(max_abs_diff(outs[0], l.eager(x)), 2e-3f);
  EXPECT_EQ(l.g.stats().residency_plans, 1u);
}

TEST(CudaMultiGraphResidency, PlanOnCuda1) {
  LC_REQUIRE_CUDA();
  if (lc::device_count(lc::DeviceKind::cuda) < 2) GTEST_SKIP() << "needs 2 GPUs";
  std::mt19937 gen(22);
  Lin l(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cuda;
  o.device_index = 1;
  o.strict = true;
  const lc::GraphPlanSummary& s = l.g.plan(o);
  EXPECT_EQ(s.device_index, 1);
  for (int round = 0; round < 3; ++round) {
    const Tensor x = random_tensor({7, 13}, gen);
    std::vector<Tensor> outs;
    l.g.execute_into({{"x", x.to(lc::DeviceKind::cuda, 1)}}, outs, true, true);
    EXPECT_EQ(outs[0].device(), lc::DeviceKind::cuda);
    EXPECT_EQ(outs[0].device_index(), 1);
    EXPECT_LT(max_abs_diff(outs[0], l.eager(x)), 2e-3f) << "round " << round;
    std::vector<Tensor> host;  // host input: uploaded to cuda:1, result downloaded
    l.g.execute_into({{"x", x}}, host);
    EXPECT_EQ(host[0].device(), lc::DeviceKind::cpu);
    EXPECT_LT(max_abs_diff(host[0], l.eager(x)), 2e-3f) << "round " << round;
  }
  EXPECT_EQ(lc::current_device(lc::DeviceKind::cuda), 0);  // restored after each call
  // The constants were uploaded to cuda:1 once, shared by both residency plans.
  for (const auto& [key, t] : l.g.impl().device_constants) {
    EXPECT_EQ(key.second, 1);
    EXPECT_EQ(t.device_index(), 1);
  }
  EXPECT_EQ(l.g.impl().device_constants.size(), 2u);
  // An input on cuda:0: refused, naming it, its node, both devices and the fix.
  std::vector<Tensor> outs;
  try {
    l.g.execute_into({{"x", random_tensor({7, 13}, gen).to(lc::DeviceKind::cuda, 0)}}, outs);
    ADD_FAILURE() << "an input on cuda:0 was accepted by a cuda:1 plan";
  } catch (const lc::ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("input 'x' (read by node 'fc') is on cuda:0 but the plan runs on cuda:1"),
              std::string::npos) << m;
  }
}

TEST(CudaMultiGraphResidency, AutoFollowsTheInputsGpu) {
  LC_REQUIRE_CUDA();
  if (lc::device_count(lc::DeviceKind::cuda) < 2) GTEST_SKIP() << "needs 2 GPUs";
  std::mt19937 gen(23);
  Lin l(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cuda;  // any GPU: the inputs' one
  l.g.plan(o);
  const Tensor x = random_tensor({7, 13}, gen);
  for (int dev : {1, 0, 1}) {
    std::vector<Tensor> outs;
    l.g.execute_into({{"x", x.to(lc::DeviceKind::cuda, dev)}}, outs, true, true);
    EXPECT_EQ(outs[0].device_index(), dev);
    EXPECT_EQ(l.g.plan_summary().device_index, dev);
    EXPECT_LT(max_abs_diff(outs[0], l.eager(x)), 2e-3f) << "cuda:" << dev;
  }
  EXPECT_EQ(l.g.stats().residency_plans, 2u);  // cuda:1 and cuda:0, each planned once
}

}  // namespace
