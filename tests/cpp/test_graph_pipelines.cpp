// The pipelines as graphs (issue #14) and the rules / views they brought: conv_attention_nchw's
// graph mode (a GraphIR: conv2d_nchw -> view nodes -> attention2d) on the CPU and, where a GPU is
// usable, as a captured CUDA graph; the expand view node; the attention_out_proj rule's report.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include "cuda_test.h"
#include "lightning_core/errors.h"
#include "lightning_core/fused.h"
#include "lightning_core/graph.h"
#include "lightning_core/ops.h"

namespace {

using lc::DType;
using lc::GraphAttr;
using lc::GraphIR;
using lc::Tensor;
using V = std::vector<std::int64_t>;

Tensor random_tensor(const V& shape, std::mt19937& gen, float scale = 1.0f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::normal_distribution<float> d(0.0f, scale);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = d(gen);
  return t;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  Tensor ah = a.to(lc::DeviceKind::cpu).contiguous(), bh = b.to(lc::DeviceKind::cpu).contiguous();
  EXPECT_EQ(ah.shape(), bh.shape());
  float m = 0;
  for (std::int64_t i = 0; i < ah.numel(); ++i)
    m = std::max(m, std::fabs(ah.data_as<float>()[i] - bh.data_as<float>()[i]));
  return m;
}

// (seq_len, head_dim): 6x6x... conv 1x3x6x6 -> 4 channels k3 pad 1 gives 144 features: 12x12 is
// a view, 10x7 a truncation, 13x17 a repetition (2 copies, truncated).
const std::pair<std::int64_t, std::int64_t> kArrangements[] = {{12, 12}, {10, 7}, {13, 17}, {1, 1}};

TEST(GraphPipelines, CpuConvAttentionGraphModeMatchesEager) {
  std::mt19937 gen(21);
  const Tensor w = random_tensor({4, 3, 3, 3}, gen, 0.3f), b = random_tensor({4}, gen, 0.1f);
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  for (const auto& [seq, hd] : kArrangements) {
    for (bool causal : {false, true}) {
      lc::ConvAttentionParams prm;
      prm.seq_len = seq;
      prm.head_dim = hd;
      prm.pad_h = prm.pad_w = 1;
      prm.causal = causal;
      for (int rep = 0; rep < 3; ++rep) {  // fresh inputs reach the cached graph
        const Tensor x = random_tensor({1, 3, 6, 6}, gen);
        prm.graph = false;
        const Tensor eager = lc::conv_attention_nchw(x, w, &b, prm, p);
        prm.graph = true;
        const Tensor g = lc::conv_attention_nchw(x, w, &b, prm, p);
        EXPECT_LT(max_abs_diff(g, eager), 1e-5f) << seq << "x" << hd << " rep " << rep;
        // into a caller's buffer, poisoned first
        Tensor out = Tensor::empty({seq, hd}, DType::f32);
        std::fill(out.data_as<float>(), out.data_as<float>() + out.numel(), NAN);
        lc::conv_attention_nchw_into(x, w, nullptr, prm, out, p);
        prm.graph = false;
        EXPECT_LT(max_abs_diff(out, lc::conv_attention_nchw(x, w, nullptr, prm, p)), 1e-5f);
      }
    }
  }
}

TEST(GraphPipelines, ConvAttentionGraphModeErrorsAsEager) {
  std::mt19937 gen(22);
  lc::ConvAttentionParams prm;
  prm.seq_len = 4;
  prm.head_dim = 4;
  prm.graph = true;
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  const Tensor w = random_tensor({4, 3, 3, 3}, gen);
  EXPECT_THROW(lc::conv_attention_nchw(random_tensor({2, 3, 6, 6}, gen), w, nullptr, prm, p),
               lc::ValueError);
  EXPECT_THROW(lc::conv_attention_nchw(random_tensor({1, 2, 6, 6}, gen), w, nullptr, prm, p),
               lc::ValueError);
}

TEST(GraphViews, ExpandBroadcastsWithStrideZero) {
  std::mt19937 gen(23);
  GraphIR g;
  g.add_tensor("x", {1, 5}, DType::f32);
  g.add_tensor("r", {3, 4, 5}, DType::f32);
  g.add_node("expand", {"x"}, {"e"}, {{"shape", GraphAttr::of(V{3, 4, -1})}}, "bc");
  g.add_node("add", {"e", "r"}, {"y"}, {}, "sum");                       // reads the alias
  g.add_node("reshape", {"e"}, {"flat"}, {{"shape", GraphAttr::of(V{60})}}, "flatten");  // a copy
  g.set_outputs({"y", "flat"});
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cpu;
  const lc::GraphPlanSummary& s = g.plan(o);
  EXPECT_EQ(s.view_aliases, 1);
  EXPECT_EQ(s.view_copies, 1);
  EXPECT_EQ(g.tensor_shape("e"), (V{3, 4, 5}));
  const Tensor x = random_tensor({1, 5}, gen), r = random_tensor({3, 4, 5}, gen);
  for (bool graph_mode : {true, false}) {
    const std::vector<Tensor> outs = g.execute({{"x", x}, {"r", r}}, graph_mode);
    for (int i = 0; i < 60; ++i) {
      EXPECT_FLOAT_EQ(outs[0].data_as<float>()[i], x.data_as<float>()[i % 5] + r.data_as<float>()[i]);
      EXPECT_FLOAT_EQ(outs[1].data_as<float>()[i], x.data_as<float>()[i % 5]);
    }
  }
  GraphIR bad;
  bad.add_tensor("x", {2, 5}, DType::f32);
  bad.add_node("expand", {"x"}, {"e"}, {{"shape", GraphAttr::of(V{3, 5})}}, "bc");
  const auto issues = bad.validate_report();
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("node 'bc' (expand): cannot expand"), std::string::npos)
      << issues[0].message;
}

// attention -> permute -> reshape -> linear: the report names the rule; where it applies (this
// build's attention writes a strided out, or the what-if switch) the copy step goes and the
// results agree with the unfused plan.
TEST(GraphFusion, AttentionOutProj) {
  std::mt19937 gen(24);
  const std::int64_t B = 2, H = 3, S = 5, D = 4, N = 7;
  const Tensor wo = random_tensor({N, H * D}, gen, 0.3f), bo = random_tensor({N}, gen);
  auto build = [&](GraphIR& g) {
    for (const char* n : {"q", "k", "v"}) g.add_tensor(n, {B, H, S, D}, DType::f32);
    g.add_tensor("wo", {N, H * D}, DType::f32, true, &wo);
    g.add_tensor("bo", {N}, DType::f32, true, &bo);
    g.add_node("attention", {"q", "k", "v"}, {"a"}, {}, "attn");
    g.add_node("permute", {"a"}, {"p"}, {{"dims", GraphAttr::of(V{0, 2, 1, 3})}}, "heads");
    g.add_node("reshape", {"p"}, {"m"}, {{"shape", GraphAttr::of(V{B, S, H * D})}}, "merge");
    g.add_node("linear", {"m", "wo", "bo"}, {"y"}, {}, "out_proj");
  };
  const Tensor q = random_tensor({B, H, S, D}, gen), k = random_tensor({B, H, S, D}, gen),
               v = random_tensor({B, H, S, D}, gen);
  lc::GraphPlanOptions off;
  off.device = lc::DeviceRequest::cpu;
  off.fusion.attention_out_proj = false;
  GraphIR g0;
  build(g0);
  g0.plan(off);
  for (const auto& f : g0.fusion_report()) EXPECT_NE(f.rule, "attention_out_proj");
  const Tensor ref = g0.execute({{"q", q}, {"k", k}, {"v", v}})[0];
  for (bool force : {false, true}) {
    if (force) setenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ", "1", 1);
    GraphIR g;
    build(g);
    lc::GraphPlanOptions on;
    on.device = lc::DeviceRequest::cpu;
    const lc::GraphPlanSummary& s = g.plan(on);
    if (force) unsetenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ");
    const auto rep = g.fusion_report();
    auto it = std::find_if(rep.begin(), rep.end(), [](const lc::GraphFusion& f) { return f.rule == "attention_out_proj"; });
    ASSERT_NE(it, rep.end());
    EXPECT_EQ(it->nodes, (std::vector<std::string>{"attn", "heads", "merge", "out_proj"}));
    if (force) {
      EXPECT_TRUE(it->applied) << it->reason;
    }
    std::vector<std::string> ops;
    for (const auto& st : s.steps) ops.push_back(st.op);
    if (it->applied) {
      EXPECT_EQ(ops, (std::vector<std::string>{"attention", "linear"}));
    } else {
      EXPECT_EQ(ops, (std::vector<std::string>{"attention", "reshape", "linear"})) << it->reason;
    }
    for (bool graph_mode : {true, false})
      EXPECT_LT(max_abs_diff(g.execute({{"q", q}, {"k", k}, {"v", v}}, graph_mode)[0], ref), 1e-5f);
  }
}

// GPU: the conv -> attention graph mode replays one captured CUDA graph; fresh inputs each call.
TEST(CudaGraphPipelines, ConvAttentionGraphMode) {
  LC_REQUIRE_CUDA();
  std::mt19937 gen(25);
  const Tensor w = random_tensor({16, 3, 3, 3}, gen, 0.3f), b = random_tensor({16}, gen, 0.1f);
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  for (const auto& [seq, hd] : {std::pair<std::int64_t, std::int64_t>{32, 32}, {48, 8}, {40, 40}}) {
    lc::ConvAttentionParams prm;
    prm.seq_len = seq;
    prm.head_dim = hd;
    prm.pad_h = prm.pad_w = 1;
    for (int rep = 0; rep < 4; ++rep) {
      const Tensor x = random_tensor({1, 3, 8, 8}, gen);
      prm.graph = false;
      const Tensor eager = lc::conv_attention_nchw(x, w, &b, prm, p);
      prm.graph = true;
      const Tensor g = lc::conv_attention_nchw(x, w, &b, prm, p);
      EXPECT_LT(max_abs_diff(g, eager), 1e-5f) << seq << "x" << hd << " rep " << rep;
      const Tensor xd = x.to(lc::DeviceKind::cuda);  // a device input: bound in place
      EXPECT_LT(max_abs_diff(lc::conv_attention_nchw(xd, w, &b, prm, p), eager), 1e-5f);
    }
  }
}

// GPU: attention_out_proj inside a captured graph (forced where the build lacks the in-place
// strided write: the op stages the view), against the unfused plan.
TEST(CudaGraphFusion, AttentionOutProjCaptured) {
  LC_REQUIRE_CUDA();
  std::mt19937 gen(26);
  const std::int64_t B = 2, H = 4, S = 33, D = 64, N = 96;
  const Tensor wo = random_tensor({N, H * D}, gen, 0.05f), bo = random_tensor({N}, gen);
  Tensor outs[2];
  for (int force = 0; force < 2; ++force) {
    if (force) setenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ", "1", 1);
    GraphIR g;
    for (const char* n : {"q", "k", "v"}) g.add_tensor(n, {B, H, S, D}, DType::f32);
    g.add_tensor("wo", {N, H * D}, DType::f32, true, &wo);
    g.add_tensor("bo", {N}, DType::f32, true, &bo);
    g.add_node("attention", {"q", "k", "v"}, {"a"}, {}, "attn");
    g.add_node("permute", {"a"}, {"p"}, {{"dims", GraphAttr::of(V{0, 2, 1, 3})}}, "heads");
    g.add_node("reshape", {"p"}, {"m"}, {{"shape", GraphAttr::of(V{B, S, H * D})}}, "merge");
    g.add_node("linear", {"m", "wo", "bo"}, {"y"}, {}, "out_proj");
    lc::GraphPlanOptions o;
    o.device = lc::DeviceRequest::cuda;
    o.fusion.attention_out_proj = force == 1;
    ASSERT_TRUE(g.plan(o).captured);
    if (force) unsetenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ");
    std::mt19937 g2(27);
    for (int rep = 0; rep < 3; ++rep) {
      const Tensor q = random_tensor({B, H, S, D}, g2), k = random_tensor({B, H, S, D}, g2),
                   v = random_tensor({B, H, S, D}, g2);
      outs[force] = g.execute({{"q", q}, {"k", k}, {"v", v}})[0];
    }
  }
  EXPECT_LT(max_abs_diff(outs[0], outs[1]), 1e-4f);
}

}  // namespace
