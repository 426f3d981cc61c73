// GraphIR (include/lightning_core/graph.h): validation passes, fusion, liveness packing, and
// execution on the CPU (DirectGraph) and, where a GPU is usable, as one captured CUDA graph
// replayed with new input addresses (CudaGraph* tests skip without a device).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cuda_test.h"
#include "lightning_core/errors.h"
#include "lightning_core/graph.h"
#include "lightning_core/ops.h"

namespace {

using lc::DType;
using lc::GraphAttr;
using lc::GraphIR;
using lc::Tensor;

Tensor random_tensor(const std::vector<std::int64_t>& shape, std::mt19937& gen) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(gen);
  return t;
}

// x[M,K] -> linear(W1, b1) -> add bias? no: linear + add(b) + gelu -> linear(W2) + x -> out.
struct Block {
  std::int64_t m = 7, k = 12, f = 29;
  Tensor w1, b1, w2;
  GraphIR g;
  explicit Block(std::mt19937& gen) {
    w1 = random_tensor({f, k}, gen);
    b1 = random_tensor({f}, gen);
    w2 = random_tensor({k, f}, gen);
    g.add_tensor("x", {m, k}, DType::f32);
    g.add_tensor("w1", {f, k}, DType::f32, true, &w1);
    g.add_tensor("b1", {f}, DType::f32, true, &b1);
    g.add_tensor("w2", {k, f}, DType::f32, true, &w2);
    g.add_node("linear", {"x", "w1"}, {"h"}, {}, "fc1");
    g.add_node("add", {"h", "b1"}, {"hb"}, {}, "bias1");
    g.add_node("gelu", {"hb"}, {"a"}, {}, "act");
    g.add_node("linear", {"a", "w2"}, {"p"}, {}, "fc2");
    g.add_node("add", {"p", "x"}, {"y"}, {}, "residual");
  }
  Tensor eager(const Tensor& x) const {
    Tensor a = lc::gelu(lc::linear(x, w1, &b1, lc::Activation::none));
    Tensor p = lc::linear(a, w2, nullptr, lc::Activation::none);
    return lc::add(p, x);
  }
};

float max_abs_diff(const Tensor& a, const Tensor& b) {
  Tensor ah = a.to(lc::DeviceKind::cpu), bh = b.to(lc::DeviceKind::cpu);
  float m = 0;
  for (std::int64_t i = 0; i < ah.numel(); ++i)
    m = std::max(m, std::fabs(ah.data_as<float>()[i] - bh.data_as<float>()[i]));
  return m;
}

TEST(Graph, FusedAndUnfusedAgreeWithEager) {
  std::mt19937 gen(1234);
  Block b(gen);
  const Tensor x = random_tensor({b.m, b.k}, gen);
  const Tensor ref = b.eager(x);
  for (bool fuse : {true, false}) {
    lc::GraphPlanOptions o;
    o.device = lc::DeviceRequest::cpu;
    o.fusion.set_all(fuse);
    const lc::GraphPlanSummary& s = b.g.plan(o);
    EXPECT_EQ(s.steps.size(), fuse ? 2u : 5u) << s.to_string();
    std::vector<Tensor> outs{Tensor::empty({b.m, b.k}, DType::f32)};
    for (std::int64_t i = 0; i < outs[0].numel(); ++i) outs[0].data_as<float>()[i] = NAN;  // poison
    b.g.execute_into({{"x", x}}, outs);
    EXPECT_LT(max_abs_diff(outs[0], ref), 1e-4f) << (fuse ? "fused" : "unfused");
  }
}

TEST(Graph, LivenessReusesBuffers) {
  GraphIR g;
  g.add_tensor("x", {64, 64}, DType::f32);
  std::string prev = "x";
  for (int i = 0; i < 6; ++i) {
    const std::string out = "t" + std::to_string(i);
    g.add_node(i % 2 ? "relu" : "gelu", {prev}, {out}, {}, "n" + std::to_string(i));
    prev = out;
  }
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cpu;
  const lc::GraphPlanSummary& s = g.plan(o);
  EXPECT_EQ(s.buffers, 5);
  EXPECT_EQ(s.naive_bytes, 5u * 64 * 64 * 4);
  EXPECT_EQ(s.peak_bytes, 2u * 64 * 64 * 4);  // ping-pong between two buffers
}

TEST(Graph, ValidationNamesTheNode) {
  GraphIR g;
  g.add_tensor("x", {4, 8}, DType::f32);
  g.add_tensor("w", {16, 7}, DType::f32);
  g.add_node("linear", {"x", "w"}, {"y"}, {}, "fc");
  try {
    g.validate();
    FAIL() << "expected a shape error";
  } catch (const lc::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("node 'fc' (linear)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(g.add_node("no_such_op", {"x"}, {"z"}, {}, "bad"), lc::ValueError);
  EXPECT_THROW(g.add_node("linear", {"x", "w"}, {"z"}, {{"act", GraphAttr::of("gelu")}}, "bad2"),
               lc::ValueError);
  EXPECT_THROW(g.add_node("linear", {"x", "w"}, {"z"}, {{"activation", GraphAttr::of(3)}}, "bad3"),
               lc::TypeError);
}

TEST(Graph, CycleIsReported) {
  GraphIR g;
  g.add_tensor("x", {4}, DType::f32);
  g.add_node("add", {"x", "b"}, {"a"}, {}, "n1");
  g.add_node("relu", {"a"}, {"b"}, {}, "n2");
  const auto issues = g.validate_report();
  bool cycle = false;
  for (const auto& i : issues) cycle = cycle || i.pass == "cycle";
  EXPECT_TRUE(cycle);
  EXPECT_THROW(g.validate(), lc::ValueError);
}

// GPU: one captured graph; a replay with another device input re-records and updates in place.
TEST(CudaGraphIR, CaptureAndRebind) {
  LC_REQUIRE_CUDA();
  std::mt19937 gen(99);
  Block b(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cuda;
  o.strict = true;
  const lc::GraphPlanSummary& s = b.g.plan(o);
  ASSERT_TRUE(s.captured) << s.to_string();
  for (int round = 0; round < 3; ++round) {
    const Tensor x = random_tensor({b.m, b.k}, gen);
    const Tensor xd = x.to(lc::DeviceKind::cuda);
    std::vector<Tensor> outs;
    b.g.execute_into({{"x", xd}}, outs);
    EXPECT_LT(max_abs_diff(outs[0], b.eager(x)), 2e-3f) << "round " << round;  // TF32-free fp32
  }
  const GraphIR::Stats st = b.g.stats();
  EXPECT_EQ(st.eager_runs, 1u);  // the warm-up before the first recording
  EXPECT_EQ(st.replays, 2u);
  EXPECT_GE(st.records, 1u);
}

}  // namespace
