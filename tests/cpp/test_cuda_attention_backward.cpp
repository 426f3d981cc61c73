// CUDA attention backward (attention_mha_bwd.cu) through the op API, against the CPU backend's
// float64 backward. Tolerances: 2e-5 for float32 (the forward's: tile-order accumulation in the
// exp2 domain, plus P recomputed from a float32 lse), 1e-2 for bfloat16 (out and dout rounded to
// 8 bits feed D = rowsum(dout out)). Every test skips itself without a usable CUDA backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"
#include "cuda_test.h"
#include "reference.h"
#include "tensor_checks.h"

namespace {

using lc::DeviceKind;
using lc::test::host_f64;
using lc::test::nan_on_gpu;
using lc::test::random_host;
using lc::test::rel_l2;

// ---- attention backward (attention_mha_bwd.cu) ------------------------------------------
// Through the op API on device tensors (their strides reach the kernels as given), against the
// CPU backend's float64 backward of the same rounded inputs, with NaN-poisoned device outputs.

struct BwdCase {
  std::int64_t b, h, hk, sq, sk, d, dv;
  bool causal;
  int mask;  // 0 none, 1 int32 key padding [B, Sk] (batch 0 fully masked), 2 additive [Sq, Sk]
};

// Our kernels, also for the 16-bit calls cuDNN would take under "auto" (restored after).
struct OwnAttentionImpl {
  std::string before = lc::attention_impl();
  OwnAttentionImpl() { lc::set_attention_impl("own"); }
  ~OwnAttentionImpl() { lc::set_attention_impl(before); }
};

TEST(CudaAttentionBackward, MatchesFloat64CpuBackward) {
  LC_REQUIRE_CUDA();
  OwnAttentionImpl own;
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const BwdCase cases[] = {{1, 1, 1, 1, 1, 1, 1, false, 0},      {2, 4, 2, 37, 53, 13, 13, true, 0},
                           {2, 8, 1, 7, 130, 64, 64, true, 1},   {1, 2, 2, 129, 97, 128, 96, false, 2},
                           {1, 2, 1, 33, 70, 256, 7, true, 0},   {2, 3, 3, 65, 64, 80, 48, true, 1},
                           {1, 2, 2, 70, 30, 16, 16, true, 2},   {1, 4, 4, 200, 200, 64, 64, false, 0}};
  lc::ExecutionPolicy on_cpu, on_gpu;
  on_cpu.device = lc::DeviceRequest::cpu;
  on_gpu.device = lc::DeviceRequest::cuda;
  on_gpu.download = false;
  for (const lc::DType dt : {lc::DType::f32, lc::DType::bf16}) {
    for (const BwdCase& c : cases) {
      SCOPED_TRACE("case b=" + std::to_string(c.b) + " h=" + std::to_string(c.h) + " hk=" +
                   std::to_string(c.hk) + " sq=" + std::to_string(c.sq) + " sk=" +
                   std::to_string(c.sk) + " d=" + std::to_string(c.d) + " dv=" +
                   std::to_string(c.dv) + " causal=" + std::to_string(c.causal) + " mask=" +
                   std::to_string(c.mask) + " dtype=" + lc::dtype_info(dt).name);
      // Inputs rounded to dt; the reference sees exactly those values in float64.
      const lc::Tensor q = random_host(rng, {c.b, c.h, c.sq, c.d}).astype(dt);
      const lc::Tensor k = random_host(rng, {c.b, c.hk, c.sk, c.d}).astype(dt);
      const lc::Tensor v = random_host(rng, {c.b, c.hk, c.sk, c.dv}).astype(dt);
      const lc::Tensor g = random_host(rng, {c.b, c.h, c.sq, c.dv}).astype(dt);
      lc::Tensor mask, mask64;
      if (c.mask == 1) {
        mask = lc::Tensor::empty({c.b, c.sk}, lc::DType::i32, DeviceKind::cpu);
        for (std::int64_t i = 0; i < mask.numel(); ++i)
          mask.data_as<std::int32_t>()[i] = (i / c.sk == 0) ? 0 : ((i * 7919) % 5 != 0);
        mask64 = mask;
      } else if (c.mask == 2) {
        lc::Tensor add = random_host(rng, {c.sq, c.sk});
        for (std::int64_t i = 0; i < add.numel(); i += 5) add.data_as<float>()[i] = -INFINITY;
        mask = add.astype(dt);
        mask64 = mask.astype(lc::DType::f64);
      }
      const lc::Tensor* m64 = c.mask ? &mask64 : nullptr;
      const lc::Tensor q64 = q.astype(lc::DType::f64), k64 = k.astype(lc::DType::f64),
                       v64 = v.astype(lc::DType::f64), g64 = g.astype(lc::DType::f64);
      lc::Tensor lse64;
      const lc::Tensor out64 = lc::attention(q64, k64, v64, c.causal, m64, 0.0f, on_cpu, &lse64);
      const auto ref = lc::attention_backward(g64, q64, k64, v64, out64, lse64, c.causal, m64,
                                              0.0f, on_cpu);

      const lc::Tensor dq_ = q.to(DeviceKind::cuda), dk_ = k.to(DeviceKind::cuda),
                       dv_ = v.to(DeviceKind::cuda), dg = g.to(DeviceKind::cuda);
      const lc::Tensor dmask = c.mask ? mask.to(DeviceKind::cuda) : lc::Tensor();
      const lc::Tensor* dm = c.mask ? &dmask : nullptr;
      lc::Tensor lse;
      const lc::Tensor out = lc::attention(dq_, dk_, dv_, c.causal, dm, 0.0f, on_gpu, &lse);
      ASSERT_EQ(out.device(), DeviceKind::cuda);
      lc::Tensor gq = nan_on_gpu(q.shape(), dt), gk = nan_on_gpu(k.shape(), dt),
                 gv = nan_on_gpu(v.shape(), dt);
      lc::attention_backward_into(dg, dq_, dk_, dv_, out, lse, gq, gk, gv, c.causal, dm, 0.0f,
                                  on_gpu);
      const double tol = dt == lc::DType::f32 ? 2e-5 : 1e-2;
      EXPECT_LE(rel_l2(host_f64(gq), host_f64(ref[0])), tol) << "dq";
      EXPECT_LE(rel_l2(host_f64(gk), host_f64(ref[1])), tol) << "dk";
      EXPECT_LE(rel_l2(host_f64(gv), host_f64(ref[2])), tol) << "dv";
    }
  }
}

// The kernels' corner paths straight through the seam: sq == 0 (dk / dv zero-filled), sk == 0
// (dq zero-filled), misaligned float32 rows (scalar loads), and more than 65535 blocks.
TEST(CudaAttentionBackward, EmptySizesMisalignmentAndLargeGrids) {
  LC_REQUIRE_CUDA();
  OwnAttentionImpl own;
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::ExecutionPolicy on_gpu;
  on_gpu.device = lc::DeviceRequest::cuda;
  on_gpu.download = false;
  {  // no query rows: dk = dv = 0
    const lc::Tensor q = lc::Tensor::empty({1, 2, 0, 8}, lc::DType::f32, DeviceKind::cuda);
    const lc::Tensor k = random_host(rng, {1, 2, 9, 8}).to(DeviceKind::cuda);
    const lc::Tensor v = random_host(rng, {1, 2, 9, 8}).to(DeviceKind::cuda);
    lc::Tensor lse;
    const lc::Tensor out = lc::attention(q, k, v, false, nullptr, 0.0f, on_gpu, &lse);
    lc::Tensor gq = lc::Tensor::empty(q.shape(), lc::DType::f32, DeviceKind::cuda);
    lc::Tensor gk = nan_on_gpu(k.shape(), lc::DType::f32), gv = nan_on_gpu(v.shape(), lc::DType::f32);
    lc::attention_backward_into(out, q, k, v, out, lse, gq, gk, gv, false, nullptr, 0.0f, on_gpu);
    for (double x : host_f64(gk)) ASSERT_EQ(x, 0.0);
    for (double x : host_f64(gv)) ASSERT_EQ(x, 0.0);
  }
  {  // no keys: dq = 0
    const lc::Tensor q = random_host(rng, {1, 2, 5, 8}).to(DeviceKind::cuda);
    const lc::Tensor k = lc::Tensor::empty({1, 2, 0, 8}, lc::DType::f32, DeviceKind::cuda);
    lc::Tensor lse;
    const lc::Tensor out = lc::attention(q, k, k, false, nullptr, 0.0f, on_gpu, &lse);
    lc::Tensor gq = nan_on_gpu(q.shape(), lc::DType::f32);
    lc::Tensor gk = lc::Tensor::empty(k.shape(), lc::DType::f32, DeviceKind::cuda);
    lc::Tensor gv = lc::Tensor::empty(k.shape(), lc::DType::f32, DeviceKind::cuda);
    lc::attention_backward_into(out, q, k, k, out, lse, gq, gk, gv, false, nullptr, 0.0f, on_gpu);
    for (double x : host_f64(gq)) ASSERT_EQ(x, 0.0);
  }
  {  // rows of [1, 2, S, 65] buffers viewed from element 1 as D = 64: no row 16-byte aligned
    const std::int64_t S = 45, D = 64;
    auto view = [&](const lc::Tensor& full) {
      return full.view({1, 2, S, D}, {2 * S * (D + 1), S * (D + 1), D + 1, 1}, 1);
    };
    const lc::Tensor fq = random_host(rng, {1, 2, S, D + 1}), fk = random_host(rng, {1, 2, S, D + 1}),
                     fv = random_host(rng, {1, 2, S, D + 1}), fg = random_host(rng, {1, 2, S, D + 1});
    lc::ExecutionPolicy on_cpu;
    on_cpu.device = lc::DeviceRequest::cpu;
    const lc::Tensor hq = view(fq).astype(lc::DType::f64), hk = view(fk).astype(lc::DType::f64),
                     hv = view(fv).astype(lc::DType::f64), hg = view(fg).astype(lc::DType::f64);
    lc::Tensor lse64;
    const lc::Tensor o64 = lc::attention(hq, hk, hv, true, nullptr, 0.0f, on_cpu, &lse64);
    const auto ref = lc::attention_backward(hg, hq, hk, hv, o64, lse64, true, nullptr, 0.0f, on_cpu);
    const lc::Tensor gq_full = fq.to(DeviceKind::cuda), gk_full = fk.to(DeviceKind::cuda),
                     gv_full = fv.to(DeviceKind::cuda), gg_full = fg.to(DeviceKind::cuda);
    const lc::Tensor q = view(gq_full), k = view(gk_full), v = view(gv_full), g = view(gg_full);
    lc::Tensor lse;
    const lc::Tensor out = lc::attention(q, k, v, true, nullptr, 0.0f, on_gpu, &lse);
    const auto grads = lc::attention_backward(g, q, k, v, out, lse, true, nullptr, 0.0f, on_gpu);
    for (int i = 0; i < 3; ++i)
      EXPECT_LE(rel_l2(host_f64(grads[static_cast<std::size_t>(i)]),
                       host_f64(ref[static_cast<std::size_t>(i)])), 2e-5) << "misaligned grad " << i;
  }
  {  // 70000 (batch x head) pairs with one query and one key: p = 1, dv = dout
    const std::int64_t H = 70000;
    const lc::Tensor q = random_host(rng, {1, H, 1, 4}).to(DeviceKind::cuda);
    const lc::Tensor k = random_host(rng, {1, H, 1, 4}).to(DeviceKind::cuda);
    const lc::Tensor v = random_host(rng, {1, H, 1, 4}).to(DeviceKind::cuda);
    const lc::Tensor hg = random_host(rng, {1, H, 1, 4});
    const lc::Tensor g = hg.to(DeviceKind::cuda);
    lc::Tensor lse;
    const lc::Tensor out = lc::attention(q, k, v, false, nullptr, 0.0f, on_gpu, &lse);
    const auto grads = lc::attention_backward(g, q, k, v, out, lse, false, nullptr, 0.0f, on_gpu);
    const std::vector<double> dv = host_f64(grads[2]), want = host_f64(hg);
    EXPECT_LE(rel_l2(dv, want), 1e-6);
    for (double x : host_f64(grads[0])) ASSERT_LE(std::abs(x), 1e-5);
  }
}

}  // namespace
