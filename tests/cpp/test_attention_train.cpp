// lc::attention_train_step (train.h, src/pipelines/attention_train.cpp) and the attention
// sessions' train_step (session.h): the step against its definition written with the op API in
// float64 (forward, loss, backward, SGD), the session and the functional step giving identical
// results (one implementation), the loss decreasing over steps, and the checks (nothing written).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/session.h"
#include "lightning_core/tensor.h"
#include "lightning_core/train.h"
#include "reference.h"

namespace {

using i64 = std::int64_t;

lc::Tensor random_t(lc::ref::Rng& rng, const std::vector<i64>& shape, lc::DType dt) {
  lc::Tensor t = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
  rng.fill(t.data_as<float>(), static_cast<std::size_t>(t.numel()));
  return t.astype(dt);
}

std::vector<double> vals(const lc::Tensor& t) {
  const lc::Tensor h = t.to(lc::DeviceKind::cpu).astype(lc::DType::f64);
  return {h.data_as<const double>(), h.data_as<const double>() + h.numel()};
}

lc::ExecutionPolicy cpu_policy() {
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  return p;
}

TEST(AttentionTrain, Float64StepMatchesItsDefinition) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const lc::ExecutionPolicy p = cpu_policy();
  lc::Tensor q = random_t(rng, {2, 4, 5, 3}, lc::DType::f64);
  lc::Tensor k = random_t(rng, {2, 2, 7, 3}, lc::DType::f64);
  lc::Tensor v = random_t(rng, {2, 2, 7, 2}, lc::DType::f64);
  const lc::Tensor target = random_t(rng, {2, 4, 5, 2}, lc::DType::f64);
  const double lr = 0.3;
  // The definition, op by op.
  lc::Tensor lse;
  const lc::Tensor out = lc::attention(q, k, v, true, nullptr, 0.0f, p, &lse);
  const std::vector<double> o = vals(out), t = vals(target);
  double loss = 0;
  lc::Tensor dout = lc::Tensor::empty(out.shape(), lc::DType::f64, lc::DeviceKind::cpu);
  for (std::size_t i = 0; i < o.size(); ++i) {
    loss += (o[i] - t[i]) * (o[i] - t[i]);
    dout.data_as<double>()[i] = 2.0 * (o[i] - t[i]) / static_cast<double>(o.size());
  }
  loss /= static_cast<double>(o.size());
  const auto g = lc::attention_backward(dout, q, k, v, out, lse, true, nullptr, 0.0f, p);
  std::vector<std::vector<double>> want;
  const lc::Tensor* xs[3] = {&q, &k, &v};
  for (int i = 0; i < 3; ++i) {
    std::vector<double> x = vals(*xs[i]), gx = vals(g[static_cast<std::size_t>(i)]);
    for (std::size_t j = 0; j < x.size(); ++j) x[j] -= lr * gx[j];
    want.push_back(x);
  }
  const lc::AttentionTrainResult r = lc::attention_train_step(q, k, v, target, lr, true, nullptr,
                                                              0.0f, p);
  EXPECT_NEAR(r.loss, loss, 1e-14 * loss);
  const std::vector<double> ro = vals(r.out);
  for (std::size_t i = 0; i < o.size(); ++i) ASSERT_EQ(ro[i], o[i]);
  for (int i = 0; i < 3; ++i) {
    const std::vector<double> got = vals(*xs[i]);
    for (std::size_t j = 0; j < got.size(); ++j)
      ASSERT_NEAR(got[j], want[static_cast<std::size_t>(i)][j], 1e-14) << "input " << i;
  }
}

TEST(AttentionTrain, SessionAndFunctionalStepAgreeAndTheLossDecreases) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const lc::ExecutionPolicy p = cpu_policy();
  const lc::Tensor q = random_t(rng, {1, 4, 9, 8}, lc::DType::f32);
  const lc::Tensor k = random_t(rng, {1, 1, 11, 8}, lc::DType::f32);
  const lc::Tensor v = random_t(rng, {1, 1, 11, 8}, lc::DType::f32);
  const lc::Tensor target = random_t(rng, {1, 4, 9, 8}, lc::DType::f32);
  lc::Tensor mask = lc::Tensor::empty({1, 11}, lc::DType::i32, lc::DeviceKind::cpu);
  for (i64 j = 0; j < 11; ++j) mask.data_as<std::int32_t>()[j] = j % 4 != 1;
  lc::AttentionSession s(q, k, v, true, &mask, 0.0f, p);
  lc::Tensor fq = q.astype(lc::DType::f32), fk = k.astype(lc::DType::f32),
             fv = v.astype(lc::DType::f32);  // copies
  std::vector<double> losses;
  for (int step = 0; step < 6; ++step) {
    const lc::AttentionTrainResult a = s.train_step(target, 0.5);
    const lc::AttentionTrainResult b =
        lc::attention_train_step(fq, fk, fv, target, 0.5, true, &mask, 0.0f, p);
    ASSERT_EQ(a.loss, b.loss) << step;
    ASSERT_EQ(vals(a.out), vals(b.out)) << step;
    losses.push_back(a.loss);
  }
  EXPECT_EQ(vals(s.parameter(0)), vals(fq));
  EXPECT_EQ(vals(s.parameter(1)), vals(fk));
  EXPECT_EQ(vals(s.parameter(2)), vals(fv));
  EXPECT_LT(losses.back(), losses.front());
  lc::Tensor out = lc::Tensor::empty(s.out_shape(), lc::DType::f32, lc::DeviceKind::cpu);
  s.forward_into(out);
  EXPECT_EQ(vals(out), vals(lc::attention(fq, fk, fv, true, &mask, 0.0f, p)));
  s.close();
  EXPECT_THROW(s.train_step(target, 0.5), lc::ValueError);
  EXPECT_THROW(s.forward(), lc::ValueError);
}

TEST(AttentionTrain, ChecksWriteNothing) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const lc::ExecutionPolicy p = cpu_policy();
  lc::Tensor q = random_t(rng, {1, 2, 4, 4}, lc::DType::f32);
  lc::Tensor k = random_t(rng, {1, 2, 4, 4}, lc::DType::f32);
  lc::Tensor v = random_t(rng, {1, 2, 4, 4}, lc::DType::f32);
  const std::vector<double> q0 = vals(q);
  const lc::Tensor target = random_t(rng, {1, 2, 4, 4}, lc::DType::f32);
  EXPECT_THROW(lc::attention_train_step(q, k, v, random_t(rng, {1, 2, 4, 3}, lc::DType::f32), 0.1,
                                        false, nullptr, 0.0f, p),
               lc::ValueError);
  EXPECT_THROW(lc::attention_train_step(q, k, v, target.astype(lc::DType::f16), 0.1, false,
                                        nullptr, 0.0f, p),
               lc::TypeError);
  EXPECT_THROW(lc::attention_train_step(q, k, v, target, NAN, false, nullptr, 0.0f, p),
               lc::ValueError);
  lc::Tensor qv = q;  // the same memory twice
  EXPECT_THROW(lc::attention_train_step(q, qv, v, target, 0.1, false, nullptr, 0.0f, p),
               lc::ValueError);
  lc::Tensor strided = q.transpose(2, 3);
  EXPECT_THROW(lc::attention_train_step(strided, k, v, target, 0.1, false, nullptr, 0.0f, p),
               lc::ValueError);
  lc::Tensor ints = q.astype(lc::DType::i32);
  EXPECT_THROW(lc::attention_train_step(ints, k, v, target, 0.1, false, nullptr, 0.0f, p),
               lc::TypeError);
  EXPECT_EQ(vals(q), q0);
  // A session refuses a target of the wrong shape / dtype before touching its parameters.
  lc::AttentionSession s(q, k, v, false, nullptr, 0.0f, p);
  EXPECT_THROW(s.train_step(random_t(rng, {1, 2, 4, 5}, lc::DType::f32), 0.1), lc::ValueError);
  EXPECT_THROW(s.train_step(target.astype(lc::DType::bf16), 0.1), lc::TypeError);
  EXPECT_EQ(vals(s.parameter(0)), q0);
  // Mixed dtypes at creation are a TypeError.
  EXPECT_THROW(lc::AttentionSession(q, k.astype(lc::DType::f16), v, false, nullptr, 0.0f, p),
               lc::TypeError);
}

}  // namespace
