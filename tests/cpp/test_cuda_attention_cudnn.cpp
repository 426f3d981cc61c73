// The attention implementation knob (lc::set_attention_impl, runtime.h) and, on a GPU, the CUDA
// backend's cuDNN flash-attention route (src/backends/cuda/attention_cudnn.h) against our own
// kernel on the same bf16 inputs, with lc::last_op_report().impl naming the one that ran.
// CudaAttentionCudnn.* skip themselves without a usable CUDA backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/attention_cudnn.h"
#include "cuda_test.h"
#include "lightning_core/dtype.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"
#include "reference.h"

namespace {

using i64 = std::int64_t;

// Restores the process-wide choice when a test ends.
struct ImplScope {
  std::string before = lc::attention_impl();
  ~ImplScope() { lc::set_attention_impl(before); }
};

lc::Tensor random_bf16(lc::ref::Rng& rng, const std::vector<i64>& shape) {
  lc::Tensor t = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
  rng.fill(static_cast<float*>(t.data()), static_cast<std::size_t>(t.numel()));
  return t.astype(lc::DType::bf16);
}

std::vector<double> host_values(const lc::Tensor& t) {
  lc::Tensor c = t.to(lc::DeviceKind::cpu).astype(lc::DType::f64);
  const double* p = static_cast<const double*>(c.data());
  return std::vector<double>(p, p + c.numel());
}

double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

}  // namespace

TEST(AttentionImpl, KnobParsesAndRejects) {
  ImplScope keep;
  for (const char* name : {"own", "cudnn", "auto"}) {
    lc::set_attention_impl(name);
    EXPECT_EQ(lc::attention_impl(), name);
  }
  lc::set_attention_impl("own");
  EXPECT_EQ(lc::attention_impl_choice(), lc::AttentionImpl::own);
  EXPECT_THROW(lc::set_attention_impl("flash"), lc::ValueError);
  EXPECT_EQ(lc::attention_impl(), "own");  // unchanged by the rejected name
}

TEST(CudaAttentionCudnn, MatchesOwnKernelAndReportsImpl) {
  LC_REQUIRE_CUDA();
  ImplScope keep;
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  // GQA 12:4, causal bottom-right with Sq < Sk, an odd query length
  lc::Tensor q = random_bf16(rng, {2, 12, 77, 64}), k = random_bf16(rng, {2, 4, 200, 64}),
             v = random_bf16(rng, {2, 4, 200, 64});
  lc::Tensor lse_c, lse_o;
  lc::set_attention_impl("cudnn");
  lc::Tensor out_c = lc::attention(q, k, v, true, nullptr, 0.0f, p, &lse_c);
  const std::string ran = lc::last_op_report().impl;
  const bool have_frontend = *lc::cuda::cudnn_frontend_version() != '\0';
  if (have_frontend) {
    // cuDNN may be missing on the machine: then our kernel is the honest answer.
    EXPECT_TRUE(ran == "cudnn" || ran == "own") << ran;
  } else {
    EXPECT_EQ(ran, "own");
  }
  lc::set_attention_impl("own");
  lc::Tensor out_o = lc::attention(q, k, v, true, nullptr, 0.0f, p, &lse_o);
  EXPECT_STREQ(lc::last_op_report().impl, "own");
  EXPECT_LT(rel_error(host_values(out_c), host_values(out_o)), 1e-2);
  const std::vector<double> lc_ = host_values(lse_c), lo = host_values(lse_o);
  ASSERT_EQ(lc_.size(), lo.size());
  for (std::size_t i = 0; i < lo.size(); ++i) ASSERT_NEAR(lc_[i], lo[i], 1e-3 + 1e-4 * std::fabs(lo[i])) << i;
}
