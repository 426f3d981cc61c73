// elementwise_program: the text form (parse / print / validate), the CPU kernel through the
// backend-generic cases (ew_program_cases.h), the op front-end (broadcasting, strided views,
// float64) and the graph's elementwise_chain rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ew_program_cases.h"
#include "lightning_core/errors.h"
#include "lightning_core/graph.h"
#include "lightning_core/ops.h"
#include "lightning_core/tensor.h"

namespace lc {
Backend& cpu_backend_instance();
}

namespace {

lc::Backend& cpu() { return lc::cpu_backend_instance(); }

TEST(EwProgramText, ParsePrintRoundTrip) {
  const lc::EwProgram p = lc::parse_ew_program("sigmoid x0;mul x0 t0\n add t1, x1 ; mul t2 -0.5;");
  EXPECT_EQ(p.n_instrs, 4);
  EXPECT_EQ(p.n_inputs, 2);
  EXPECT_EQ(p.n_consts, 1);
  EXPECT_EQ(lc::ew_program_text(p), "sigmoid x0; mul x0 t0; add t1 x1; mul t2 -0.5");
  const lc::EwProgram q = lc::parse_ew_program(lc::ew_program_text(p));
  EXPECT_EQ(lc::ew_program_text(q), lc::ew_program_text(p));
  EXPECT_NO_THROW(lc::validate_ew_program(q));
  // constants are deduplicated, 0.1 keeps every bit through the text
  const lc::EwProgram c = lc::parse_ew_program("add x0 0.1; mul t0 0.1");
  EXPECT_EQ(c.n_consts, 1);
  EXPECT_EQ(lc::parse_ew_program(lc::ew_program_text(c)).consts[0], 0.1);
}

TEST(EwProgramText, InvalidProgramsAreValueErrors) {
  for (const char* bad : {"", ";;", "frob x0", "add x0", "neg x0 x1", "neg t0", "neg x6", "neg q1",
                          "neg 1e400x"})
    EXPECT_THROW(lc::parse_ew_program(bad), lc::ValueError) << bad;
  lc::EwProgram p;
  p.n_instrs = 1;
  p.code[0] = {lc::EwOp::add, 0, static_cast<std::uint8_t>(lc::kEwRegTemp)};  // reads itself
  p.n_inputs = 1;
  EXPECT_THROW(lc::validate_ew_program(p), lc::ValueError);
  p.n_instrs = 0;
  EXPECT_THROW(lc::validate_ew_program(p), lc::ValueError);
}

TEST(EwProgramCpu, EveryInstructionEveryDtype) {
  lc::ewprogtest::check_every_op(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64});
}

TEST(EwProgramCpu, BroadcastStridedMixedDtypes) {
  lc::ewprogtest::check_broadcast_strided(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16});
}

TEST(EwProgramCpu, LargeMultiThreaded) { lc::ewprogtest::check_large(cpu(), lc::DType::f32); }

TEST(EwProgramCpu, VectorPathSizesAlignmentDtypes) {
  lc::ewprogtest::check_vector_paths(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64});
}

TEST(EwProgramCpu, ProgramShapesEverySlotBucket) {
  lc::ewprogtest::check_program_shapes(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64});
}

TEST(EwProgramCpu, GeneralPathFlatAndGatheredOperands) {
  lc::ewprogtest::check_general_paths(cpu(), {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64});
}

// The float32 loops' exp / log / tanh / sigmoid / silu (ew_math.inc) at the edges and over wide
// ranges, against float64: overflow to inf, gradual underflow, log's specials and denormals.
TEST(EwProgramCpu, TranscendentalsFullRange) {
  auto run = [](const char* prog, const std::vector<float>& x) {
    std::vector<float> out(x.size(), std::nanf(""));
    lc::EwProgramArgs p;
    p.prog = lc::parse_ew_program(prog);
    p.n_inputs = 1;
    p.in[0] = x.data();
    p.in_dtype[0] = lc::DType::f32;
    p.out = out.data();
    p.out_dtype = lc::DType::f32;
    p.n = static_cast<std::int64_t>(x.size());
    cpu().elementwise_program(p);
    return out;
  };
  // atol: 1 / (1 + e^-x) underflows to 0 in float32 below x ~ -88.7 (e^-x overflows) although
  // sigmoid itself is a denormal there: every float32 formula does that, so sigmoid gets 1e-37.
  auto close = [](double got, double want, double atol = 3e-45) {
    if (std::isnan(want)) return std::isnan(got);
    const double fw = static_cast<float>(want);  // what float32 can represent (denormals, inf)
    if (std::isinf(fw)) return got == fw;
    return std::fabs(got - fw) <= 2e-6 * std::fabs(fw) + atol;
  };
  std::vector<float> xs;
  for (int i = -4000; i <= 4000; ++i) xs.push_back(static_cast<float>(i) * 0.026f);  // [-104, 104]
  for (float v : {0.0f, -0.0f, 88.7f, 88.73f, 89.0f, -87.5f, -100.0f, -103.9f, -104.5f, 1e-30f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::nanf("")})
    xs.push_back(v);
  const auto e = run("exp x0", xs);
  const auto th = run("tanh x0", xs);
  const auto sg = run("sigmoid x0", xs);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    EXPECT_TRUE(close(e[i], std::exp(x))) << "exp(" << x << ") = " << e[i];
    EXPECT_TRUE(close(th[i], std::tanh(x))) << "tanh(" << x << ") = " << th[i];
    EXPECT_TRUE(close(sg[i], 1.0 / (1.0 + std::exp(-x)), 1e-37)) << "sigmoid(" << x << ") = " << sg[i];
  }
  std::vector<float> ls;
  for (int i = -149; i <= 127; ++i) ls.push_back(std::ldexp(1.37f, i));  // denormals to 2^127
  for (float v : {0.0f, -1.0f, 1.0f, 0.999f, 1.001f, std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::max(), std::nanf("")})
    ls.push_back(v);
  const auto lg = run("log x0", ls);
  for (std::size_t i = 0; i < ls.size(); ++i) {
    const double want = std::log(static_cast<double>(ls[i]));
    EXPECT_TRUE(close(lg[i], want) || std::fabs(lg[i] - want) <= 2e-7) << "log(" << ls[i] << ") = " << lg[i];
  }
}

TEST(EwProgramOp, BroadcastViewsAndFloat64) {
  const lc::ExecutionPolicy cpu_p = [] {
    lc::ExecutionPolicy p;
    p.device = lc::DeviceRequest::cpu;
    return p;
  }();
  std::vector<double> xv(12), bv(4);
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = 0.25 * static_cast<double>(i) - 1.0;
  for (std::size_t i = 0; i < bv.size(); ++i) bv[i] = 0.5 + static_cast<double>(i);
  lc::Tensor x = lc::Tensor::empty({3, 4}, lc::DType::f64);
  lc::Tensor b = lc::Tensor::empty({4}, lc::DType::f64);
  std::copy(xv.begin(), xv.end(), static_cast<double*>(x.data()));
  std::copy(bv.begin(), bv.end(), static_cast<double*>(b.data()));
  lc::Tensor xt = x.transpose(0, 1);  // [4, 3], strided
  const lc::Tensor* ins[] = {&xt, &b};
  // b [4] does not broadcast against [4, 3]: a ValueError naming the op
  EXPECT_THROW(lc::elementwise_program(lc::parse_ew_program("add x0 x1"), ins, cpu_p), lc::ValueError);
  const lc::Tensor* ins2[] = {&x, &b};
  lc::Tensor y = lc::elementwise_program(lc::parse_ew_program("add x0 x1; tanh t0; mul t1 x1"), ins2, cpu_p);
  ASSERT_EQ(y.dtype(), lc::DType::f64);
  const double* yd = static_cast<const double*>(y.data());
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      EXPECT_NEAR(yd[i * 4 + j], std::tanh(xv[i * 4 + j] + bv[j]) * bv[j], 1e-14);
}

TEST(EwProgramGraph, ChainFusesAndReports) {
  lc::GraphIR g;
  g.add_tensor("x", {5, 6}, lc::DType::f32);
  g.add_tensor("b", {6}, lc::DType::f32);
  g.add_node("add", {"x", "b"}, {"h"}, {}, "bias");
  g.add_node("relu", {"h"}, {"r"}, {}, "act");
  g.add_node("mul", {"r", "x"}, {"y"}, {}, "gate");
  lc::GraphPlanOptions o;
  o.device = lc::DeviceRequest::cpu;
  EXPECT_TRUE(o.fusion.elementwise_chain);  // on by default (graph.h)
  o.fusion.elementwise_chain = true;
  const lc::GraphPlanSummary s = g.plan(o);
  ASSERT_EQ(s.steps.size(), 1u);
  EXPECT_EQ(s.steps[0].op, "elementwise_program");
  bool found = false;
  for (const lc::GraphFusion& f : g.fusion_report())
    if (f.rule == "elementwise_chain" && f.applied) found = true;
  EXPECT_TRUE(found);
  o.fusion.elementwise_chain = false;
  EXPECT_EQ(g.plan(o).steps.size(), 3u);
}

}  // namespace
