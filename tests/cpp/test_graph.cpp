// GraphIR (include/lightning_core/graph.h): validation passes, fusion, liveness packing, and
// execution on the CPU (DirectGraph) and, where a GPU is usable, as one captured CUDA graph
// replayed with new input addresses (CudaGraph* tests skip without a device).
#include <gtest/gtest.h>

#include <algorithm>
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
  o.fusion.elementwise_chain = false;  // else the chain is one elementwise_program step
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

// View nodes: x[6,4] -> relu -> reshape(2,3,4) -> permute(2,0,1) -> select(1, -1) ->
// reshape(8) (needs a copy) -> add(b) and a graph output that is an alias (slice of h).
struct ViewChain {
  GraphIR g;
  Tensor b;
  explicit ViewChain(std::mt19937& gen) {
    b = random_tensor({8}, gen);
    g.add_tensor("x", {6, 4}, DType::f32);
    g.add_tensor("b", {8}, DType::f32, true, &b);
    g.add_node("relu", {"x"}, {"h"}, {}, "act");
    g.add_node("reshape", {"h"}, {"h3"}, {{"shape", GraphAttr::of(std::vector<std::int64_t>{2, 3, 4})}}, "r3");
    g.add_node("permute", {"h3"}, {"p"}, {{"dims", GraphAttr::of(std::vector<std::int64_t>{2, 0, 1})}}, "perm");
    g.add_node("select", {"p"}, {"s"}, {{"dim", GraphAttr::of(2)}, {"index", GraphAttr::of(-1)}}, "sel");
    g.add_node("reshape", {"s"}, {"flat"}, {{"shape", GraphAttr::of(std::vector<std::int64_t>{-1})}}, "flatten");
    g.add_node("add", {"flat", "b"}, {"y"}, {}, "bias");
    g.add_node("slice", {"h"}, {"rows"},
               {{"dim", GraphAttr::of(0)}, {"start", GraphAttr::of(1)}, {"step", GraphAttr::of(2)}}, "odd_rows");
    g.set_outputs({"y", "rows"});
  }
  // The same with host loops: y[i*2 + j] = relu(x)[3*4 + ...] per the view algebra.
  void reference(const Tensor& x, std::vector<float>& y, std::vector<float>& rows) const {
    const float* xp = x.data_as<float>();
    auto h = [&](std::int64_t i) { return std::max(xp[i], 0.0f); };
    y.assign(8, 0);
    // h3[a][c][d] = h[a*12 + c*4 + d]; p[d][a][c] = h3[a][c][d]; s[d][a] = p[d][a][2]
    for (int d = 0; d < 4; ++d)
      for (int a = 0; a < 2; ++a) y[static_cast<std::size_t>(d * 2 + a)] = h(a * 12 + 2 * 4 + d) + b.data_as<float>()[d * 2 + a];
    rows.clear();
    for (int r = 1; r < 6; r += 2)
      for (int c = 0; c < 4; ++c) rows.push_back(h(r * 4 + c));
  }
};

TEST(GraphViews, AliasesCopiesAndViewOutputs) {
  std::mt19937 gen(5);
  ViewChain v(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cpu;
  const lc::GraphPlanSummary& s = v.g.plan(o);
  std::vector<std::string> ops;
  for (const auto& st : s.steps) ops.push_back(st.op);
  // relu, the one copy (the select of a permute is not contiguous), the add
  EXPECT_EQ(ops, (std::vector<std::string>{"relu", "reshape", "add"})) << s.to_string();
  EXPECT_EQ(v.g.tensor_shape("rows"), (std::vector<std::int64_t>{3, 4}));
  for (bool graph_mode : {true, false}) {
    const Tensor x = random_tensor({6, 4}, gen);
    const std::vector<Tensor> outs = v.g.execute({{"x", x}}, graph_mode);
    std::vector<float> y, rows;
    v.reference(x, y, rows);
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(outs[0].data_as<float>()[i], y[i]);
    for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_FLOAT_EQ(outs[1].data_as<float>()[i], rows[i]);
  }
}

TEST(GraphViews, AViewKeepsItsRootAlive) {
  // h = relu(x) is read only through a view at the very end: the ping-pong of the gelu chain
  // must not reuse its bytes.
  GraphIR g;
  g.add_tensor("x", {32, 32}, DType::f32);
  g.add_node("relu", {"x"}, {"h"}, {}, "keep");
  g.add_node("transpose", {"h"}, {"ht"}, {{"dim0", GraphAttr::of(0)}, {"dim1", GraphAttr::of(1)}}, "T");
  std::string prev = "x";
  for (int i = 0; i < 4; ++i) {
    const std::string out = "t" + std::to_string(i);
    g.add_node("gelu", {prev}, {out}, {}, "g" + std::to_string(i));
    prev = out;
  }
  g.add_node("add", {prev, "ht"}, {"y"}, {}, "sum");
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cpu;
  g.plan(o);
  std::mt19937 gen(6);
  const Tensor x = random_tensor({32, 32}, gen);
  Tensor ref = x;
  for (int i = 0; i < 4; ++i) ref = lc::gelu(ref);
  ref = lc::add(ref, lc::elementwise("relu", x, nullptr).t().contiguous());
  EXPECT_LT(max_abs_diff(g.execute({{"x", x}})[0], ref), 1e-6f);
}

TEST(GraphViews, BadViewsNameTheNode) {
  GraphIR g;
  g.add_tensor("x", {3, 4}, DType::f32);
  g.add_node("reshape", {"x"}, {"y"}, {{"shape", GraphAttr::of(std::vector<std::int64_t>{5, 2})}}, "rs");
  g.add_node("select", {"x"}, {"z"}, {{"dim", GraphAttr::of(0)}, {"index", GraphAttr::of(3)}}, "pick");
  const auto issues = g.validate_report();
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_NE(issues[0].message.find("node 'rs' (reshape): cannot reshape"), std::string::npos) << issues[0].message;
  EXPECT_NE(issues[1].message.find("node 'pick' (select): index 3 is out of range"), std::string::npos)
      << issues[1].message;
  EXPECT_THROW(g.add_node("permute", {"x"}, {"p"}, {{"dims", GraphAttr::of(2)}}, "p"), lc::TypeError);
  EXPECT_THROW(g.add_node("slice", {"x"}, {"q"}, {{"dim", GraphAttr::of(0)}, {"step", GraphAttr::of(0)}}, "q"),
               lc::ValueError);
}

// GPU: the view chain captured as one graph (aliases are addresses inside the arena).
TEST(CudaGraphViews, CapturedViewChain) {
  LC_REQUIRE_CUDA();
  std::mt19937 gen(7);
  ViewChain v(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cuda;
  o.strict = true;
  ASSERT_TRUE(v.g.plan(o).captured);
  for (int round = 0; round < 3; ++round) {
    const Tensor x = random_tensor({6, 4}, gen);
    const std::vector<Tensor> outs = v.g.execute({{"x", x.to(lc::DeviceKind::cuda)}});
    std::vector<float> y, rows;
    v.reference(x, y, rows);
    const Tensor o0 = outs[0].to(lc::DeviceKind::cpu), o1 = outs[1].to(lc::DeviceKind::cpu);
    for (std::size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(o0.data_as<float>()[i], y[i]) << round;
    for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_FLOAT_EQ(o1.data_as<float>()[i], rows[i]) << round;
  }
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

// GPU: a captured plan's outputs come from its ring of output sets (docs/graph.md, "Results
// without a copy"): results held by the caller are never overwritten by later calls, more
// held results than the ring has are copies, and released sets replay without recording.
TEST(CudaGraphIR, ResultsHandedOutFromTheRing) {
  LC_REQUIRE_CUDA();
  std::mt19937 gen(5);
  Block b(gen);
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cuda;
  o.strict = true;
  ASSERT_TRUE(b.g.plan(o).captured);
  Tensor xd = Tensor::empty({b.m, b.k}, DType::f32, lc::DeviceKind::cuda);  // bound in place
  std::vector<Tensor> kept, expected;
  for (int call = 0; call < 6; ++call) {
    const Tensor x = random_tensor({b.m, b.k}, gen);
    x.copy_to(xd);
    std::vector<Tensor> outs;
    b.g.execute_into({{"x", xd}}, outs, true, /*results_on_device=*/true);
    ASSERT_EQ(outs.size(), 1u);
    EXPECT_EQ(outs[0].device(), lc::DeviceKind::cuda);
    for (const Tensor& k : kept) EXPECT_NE(k.data(), outs[0].data()) << "call " << call;
    kept.push_back(outs[0]);
    expected.push_back(b.eager(x));
  }
  for (std::size_t i = 0; i < kept.size(); ++i)
    EXPECT_LT(max_abs_diff(kept[i], expected[i]), 2e-3f) << "result of call " << i;
  EXPECT_EQ(b.g.stats().outputs_handed_out, 3u);  // the ring; calls 4-6 got copies of set 0
  kept.clear();
  std::uint64_t records = 0;
  for (int call = 0; call < 4; ++call) {
    if (call == 1) records = b.g.stats().records;
    const Tensor x = random_tensor({b.m, b.k}, gen);
    x.copy_to(xd);
    std::vector<Tensor> outs;
    b.g.execute_into({{"x", xd}}, outs, true, true);
    EXPECT_LT(max_abs_diff(outs[0], b.eager(x)), 2e-3f) << "released round, call " << call;
  }
  EXPECT_EQ(b.g.stats().records, records);  // the sets' recordings are reused
  EXPECT_EQ(b.g.stats().outputs_handed_out, 3u + 4u);
}

}  // namespace
