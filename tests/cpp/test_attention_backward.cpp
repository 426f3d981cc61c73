// lc::attention_backward (src/ops/attention_mha.cpp, the CPU kernel in
// src/backends/cpu/attention_mha_bwd.cpp): float64 gradients against central finite differences
// of lc::attention itself (independent of the backward's algorithm), float32 against those
// float64 gradients, GQA + causal + a key-padding mask with a fully masked batch, the error
// paths (no write into dq / dk / dv), and the registry entry (CPU and CUDA).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/tensor.h"
#include "ops/registry.h"
#include "reference.h"
#include "tensor_checks.h"

namespace {

using i64 = std::int64_t;

lc::Tensor random_f64(lc::ref::Rng& rng, std::vector<i64> shape) {
  lc::Tensor t = lc::Tensor::empty(shape, lc::DType::f64, lc::DeviceKind::cpu);
  std::vector<float> tmp(static_cast<std::size_t>(t.numel()));
  rng.fill(tmp.data(), tmp.size());
  for (i64 i = 0; i < t.numel(); ++i) static_cast<double*>(t.data())[i] = tmp[static_cast<std::size_t>(i)];
  return t;
}

lc::Tensor to_f32(const lc::Tensor& t) {
  lc::Tensor r = lc::Tensor::empty(t.shape(), lc::DType::f32, lc::DeviceKind::cpu);
  for (i64 i = 0; i < t.numel(); ++i)
    static_cast<float*>(r.data())[i] = static_cast<float>(static_cast<const double*>(t.data())[i]);
  return r;
}

std::vector<double> values(const lc::Tensor& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (i64 i = 0; i < t.numel(); ++i)
    v[static_cast<std::size_t>(i)] = t.dtype() == lc::DType::f64
                                         ? static_cast<const double*>(t.data())[i]
                                         : static_cast<const float*>(t.data())[i];
  return v;
}

struct Problem {
  lc::Tensor q, k, v, g, mask;  // g: dout
  bool causal = true;
};

double loss(const Problem& p, const lc::ExecutionPolicy& pol) {
  lc::Tensor out = lc::attention(p.q, p.k, p.v, p.causal, &p.mask, 0.0f, pol);
  double s = 0;
  for (i64 i = 0; i < out.numel(); ++i)
    s += static_cast<const double*>(out.data())[i] * static_cast<const double*>(p.g.data())[i];
  return s;
}

TEST(AttentionBackward, Float64MatchesFiniteDifferencesAndFloat32Follows) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::ExecutionPolicy pol;
  pol.device = lc::DeviceRequest::cpu;
  // B=2, H=4, Hk=2 (GQA), Sq=3 < Sk=5 (bottom-right causal), batch 1 fully masked.
  Problem p;
  p.q = random_f64(rng, {2, 4, 3, 3});
  p.k = random_f64(rng, {2, 2, 5, 3});
  p.v = random_f64(rng, {2, 2, 5, 2});
  p.g = random_f64(rng, {2, 4, 3, 2});
  p.mask = lc::Tensor::empty({2, 5}, lc::DType::i32, lc::DeviceKind::cpu);
  const std::int32_t keep[10] = {1, 0, 1, 1, 1, 0, 0, 0, 0, 0};
  for (int i = 0; i < 10; ++i) static_cast<std::int32_t*>(p.mask.data())[i] = keep[i];
  lc::Tensor lse;
  lc::Tensor out = lc::attention(p.q, p.k, p.v, true, &p.mask, 0.0f, pol, &lse);
  std::array<lc::Tensor, 3> grads =
      lc::attention_backward(p.g, p.q, p.k, p.v, out, lse, true, &p.mask, 0.0f, pol);
  lc::Tensor* xs[3] = {&p.q, &p.k, &p.v};
  const double eps = 1e-6;
  for (int w = 0; w < 3; ++w) {
    lc::Tensor& x = *xs[w];
    std::vector<double> num(static_cast<std::size_t>(x.numel()));
    double* xd = static_cast<double*>(x.data());
    for (i64 i = 0; i < x.numel(); ++i) {
      const double x0 = xd[i];
      xd[i] = x0 + eps;
      const double lp = loss(p, pol);
      xd[i] = x0 - eps;
      const double lm = loss(p, pol);
      xd[i] = x0;
      num[static_cast<std::size_t>(i)] = (lp - lm) / (2 * eps);
    }
    const std::vector<double> got = values(grads[static_cast<std::size_t>(w)]);
    EXPECT_LE(lc::test::rel_l2(got, num), 1e-7) << "gradient " << w;
    // batch 1 sees no key: its gradients are exactly 0
    const i64 half = x.numel() / 2;
    for (i64 i = half; i < x.numel(); ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], 0.0);
  }
  // float32 inputs: within 1e-5 of the float64 gradients
  lc::Tensor q32 = to_f32(p.q), k32 = to_f32(p.k), v32 = to_f32(p.v), g32 = to_f32(p.g);
  lc::Tensor lse32;
  lc::Tensor out32 = lc::attention(q32, k32, v32, true, &p.mask, 0.0f, pol, &lse32);
  std::array<lc::Tensor, 3> g32s =
      lc::attention_backward(g32, q32, k32, v32, out32, lse32, true, &p.mask, 0.0f, pol);
  for (int w = 0; w < 3; ++w)
    EXPECT_LE(lc::test::rel_l2(values(g32s[static_cast<std::size_t>(w)]), values(grads[static_cast<std::size_t>(w)])), 1e-5)
        << "float32 gradient " << w;
}

// Multi-query attention with one (batch, kv head) pair and enough work: the kernel splits the
// pair's items over tasks with private dK / dV partials (when the pool has > 1 thread). Float32
// against float64 (the float64 path is checked against the Jacobian reference in Python), with
// an additive [Sq, Sk] mask holding -inf entries and bottom-right causal Sq > Sk.
TEST(AttentionBackward, MultiQuerySplitFloat32MatchesFloat64) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::ExecutionPolicy pol;
  pol.device = lc::DeviceRequest::cpu;
  lc::Tensor q = random_f64(rng, {1, 4, 150, 16}), k = random_f64(rng, {1, 1, 100, 16}),
             v = random_f64(rng, {1, 1, 100, 12}), g = random_f64(rng, {1, 4, 150, 12});
  lc::Tensor add = random_f64(rng, {150, 100});
  for (i64 i = 0; i < add.numel(); i += 7) static_cast<double*>(add.data())[i] = -INFINITY;
  lc::Tensor lse;
  lc::Tensor out = lc::attention(q, k, v, true, &add, 0.0f, pol, &lse);
  std::array<lc::Tensor, 3> ref = lc::attention_backward(g, q, k, v, out, lse, true, &add, 0.0f, pol);
  lc::Tensor q32 = to_f32(q), k32 = to_f32(k), v32 = to_f32(v), g32 = to_f32(g), add32 = to_f32(add);
  lc::Tensor lse32;
  lc::Tensor out32 = lc::attention(q32, k32, v32, true, &add32, 0.0f, pol, &lse32);
  std::array<lc::Tensor, 3> got =
      lc::attention_backward(g32, q32, k32, v32, out32, lse32, true, &add32, 0.0f, pol);
  for (int w = 0; w < 3; ++w)
    EXPECT_LE(lc::test::rel_l2(values(got[static_cast<std::size_t>(w)]), values(ref[static_cast<std::size_t>(w)])), 1e-5)
        << "gradient " << w;
  // causal with Sq > Sk: the first Sq - Sk = 50 rows of every head see no key -> dq rows are 0
  const std::vector<double> dq = values(got[0]);
  for (i64 h = 0; h < 4; ++h)
    for (i64 i = 0; i < 50 * 16; ++i) EXPECT_EQ(dq[static_cast<std::size_t>(h * 150 * 16 + i)], 0.0);
}

TEST(AttentionBackward, ErrorsWriteNothingAndCudaRequestWithoutDevice) {
  lc::ref::Rng rng;
  lc::ExecutionPolicy pol;
  pol.device = lc::DeviceRequest::cpu;
  lc::Tensor q = to_f32(random_f64(rng, {1, 2, 4, 3})), k = to_f32(random_f64(rng, {1, 1, 5, 3})),
             v = to_f32(random_f64(rng, {1, 1, 5, 3}));
  lc::Tensor lse;
  lc::Tensor out = lc::attention(q, k, v, false, nullptr, 0.0f, pol, &lse);
  lc::Tensor dq = lc::Tensor::empty(q.shape(), lc::DType::f32, lc::DeviceKind::cpu);
  lc::Tensor dk = lc::Tensor::empty(k.shape(), lc::DType::f32, lc::DeviceKind::cpu);
  lc::Tensor dv_bad = lc::Tensor::empty({1, 1, 5, 2}, lc::DType::f32, lc::DeviceKind::cpu);
  for (i64 i = 0; i < dq.numel(); ++i) static_cast<float*>(dq.data())[i] = 7.0f;
  for (i64 i = 0; i < dk.numel(); ++i) static_cast<float*>(dk.data())[i] = 7.0f;
  try {
    lc::attention_backward_into(out, q, k, v, out, lse, dq, dk, dv_bad, false, nullptr, 0.0f, pol);
    ADD_FAILURE() << "a wrong dv shape must throw";
  } catch (const lc::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("attention_backward"), std::string::npos) << e.what();
  }
  lc::Tensor lse64 = lc::Tensor::empty(lse.shape(), lc::DType::f64, lc::DeviceKind::cpu);
  EXPECT_THROW(lc::attention_backward(out, q, k, v, out, lse64, false, nullptr, 0.0f, pol),
               lc::TypeError);
  for (i64 i = 0; i < dq.numel(); ++i) EXPECT_EQ(static_cast<float*>(dq.data())[i], 7.0f);
  for (i64 i = 0; i < dk.numel(); ++i) EXPECT_EQ(static_cast<float*>(dk.data())[i], 7.0f);
  // device="cuda" runs the CUDA backward (test_cuda_kernels.cpp checks its values); without a
  // device it is the usual clear "not available" error naming the op.
  if (!lc::get_backend(lc::DeviceKind::cuda).available()) {
    lc::ExecutionPolicy cuda;
    cuda.device = lc::DeviceRequest::cuda;
    try {
      lc::attention_backward(out, q, k, v, out, lse, false, nullptr, 0.0f, cuda);
      ADD_FAILURE() << "device=cuda without a device must throw";
    } catch (const lc::Error& e) {
      EXPECT_NE(std::string(e.what()).find("[attention_backward]"), std::string::npos) << e.what();
    }
  }
}

TEST(OpRegistry, AttentionBackwardDefinition) {
  const lc::OpDef* d = lc::find_op("attention_backward");
  ASSERT_NE(d, nullptr);
  const std::vector<std::vector<i64>> shapes = {{2, 8, 5, 4}, {2, 8, 5, 16}, {2, 2, 7, 16},
                                                {2, 2, 7, 4}, {2, 8, 5, 4},  {2, 8, 5}};
  lc::OpArgs a = lc::OpArgs::of_shapes(shapes);
  EXPECT_EQ(d->infer_result(a).shape, (std::vector<i64>{2, 8, 5, 16}));
  EXPECT_DOUBLE_EQ(d->work(a).flops, 2.5 * 2.0 * 2 * 8 * 5 * 7 * (16 + 4));
  EXPECT_TRUE(d->supports(lc::DeviceKind::cuda, a));  // attention_mha_bwd.cu
  EXPECT_FALSE(d->supports(lc::DeviceKind::cuda, lc::OpArgs::of_shapes(shapes, lc::DType::f64)));
  const std::vector<std::vector<i64>> big = {{1, 1, 5, 300}, {1, 1, 5, 300}, {1, 1, 7, 300},
                                             {1, 1, 7, 300}, {1, 1, 5, 300}, {1, 1, 5}};
  EXPECT_FALSE(d->supports(lc::DeviceKind::cuda, lc::OpArgs::of_shapes(big)));  // D > 256
  EXPECT_TRUE(d->supports(lc::DeviceKind::cpu, a));
  EXPECT_TRUE(d->supports(lc::DeviceKind::cpu, lc::OpArgs::of_shapes(shapes, lc::DType::f64)));
  EXPECT_STREQ(d->outputs[2], "dv");
}

}  // namespace
