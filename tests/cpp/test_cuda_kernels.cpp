// CUDA backend kernels vs the float64 host reference (tests/cpp/reference.h). Attention backward
// and the LSTM: test_cuda_attention_backward.cpp, test_cuda_lstm.cpp.
//
// Every test skips itself when the CUDA backend is not available (no driver/GPU, or a build
// without CUDA), so this file runs everywhere; on the GPU machine it checks every op on fresh
// random inputs, odd sizes, misaligned pointers and NaN-poisoned outputs.
//
// Tolerances (relative L2 error vs float64):
//   fp32 elementwise / layernorm / softmax / matmul fp32: 1e-5 (a few ulp after accumulation);
//     matmul with the fused GELU epilogue: 1e-4 (cuBLASLt's epilogue uses a fast tanh).
//   attention: 2e-5. The kernel accumulates QK^T and PV in tile order, works in the exp2 domain
//     with the scale folded into Q (one extra rounding of each q), and split-K partials are
//     merged with rescaling, so errors are a few ulp larger than a plain dot product; still
//     ~100x below what TF32 would give (~3e-4).
//   conv2d: 1e-5 (direct kernel and cuDNN with CUDNN_FMA_MATH are both plain fp32 sums).
//   matmul tf32: 2e-3 (10-bit mantissa operands); bf16: 2e-2 (8-bit mantissa operands).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"
#include "cuda_test.h"
#include "reference.h"

#ifdef LC_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"
#include "backends/cuda/matmul.h"
#include "backends/cuda/staging.h"
#endif

namespace {

using lc::Backend;
using lc::DeviceKind;

using lc::test::gpu;

// A device buffer of `n` floats plus `offset` leading floats (for misaligned views).
struct DevBuf {
  explicit DevBuf(std::size_t n, std::size_t offset = 0)
      : n_(n), off_(offset), base_(static_cast<float*>(gpu().alloc((n + offset) * sizeof(float)))) {}
  ~DevBuf() { gpu().free(base_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  float* get() const { return base_ + off_; }
  void upload(const std::vector<float>& h) const {
    gpu().copy_from_host(get(), h.data(), h.size() * sizeof(float));
  }
  std::vector<float> download() const {
    std::vector<float> h(n_);
    gpu().copy_to_host(h.data(), get(), n_ * sizeof(float));
    return h;
  }
  void poison() const {
    std::vector<float> p(n_);
    lc::ref::poison(p);
    upload(p);
  }
  std::size_t n_, off_;
  float* base_;
};

std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

// ---- availability ------------------------------------------------------------------------

TEST(CudaBackend, AvailabilityIsCleanEitherWay) {
  Backend& b = gpu();
  EXPECT_EQ(b.kind(), DeviceKind::cuda);
  if (!b.available()) {
    // No driver / no device: a clear reason and clean errors, never a crash.
    EXPECT_FALSE(b.unavailable_reason().empty());
    EXPECT_THROW(b.alloc(16), lc::Unavailable);
    lc::ElementwiseArgs e;
    EXPECT_THROW(b.elementwise(e), lc::Unavailable);
    return;
  }
  EXPECT_TRUE(b.unavailable_reason().empty());
  const std::string desc = b.device_description();
  EXPECT_NE(desc.find("sm_"), std::string::npos) << desc;
  EXPECT_NE(desc.find("SMs"), std::string::npos) << desc;
}

// ---- elementwise -------------------------------------------------------------------------

TEST(CudaElementwise, AllKindsOddSizesAndMisalignedPointers) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t sizes[] = {1, 2, 3, 5, 7, 13, 31, 64, 1000, 4099, (1 << 20) + 3};
  const std::size_t offs[][3] = {{0, 0, 0}, {1, 1, 1}, {3, 3, 3}, {1, 2, 3}, {0, 1, 0}, {2, 0, 2}};
  const lc::EwKind kinds[] = {lc::EwKind::add, lc::EwKind::sub, lc::EwKind::mul,
                              lc::EwKind::scale, lc::EwKind::relu, lc::EwKind::gelu};
  for (std::int64_t n : sizes) {
    for (const auto& off : offs) {
      for (lc::EwKind k : kinds) {
        auto ha = rng.vec(sz(n), -3.0f, 3.0f), hb = rng.vec(sz(n), -3.0f, 3.0f);
        DevBuf a(sz(n), off[0]), b(sz(n), off[1]), o(sz(n), off[2]);
        a.upload(ha);
        b.upload(hb);
        o.poison();
        lc::ElementwiseArgs args;
        args.kind = k;
        args.a = a.get();
        const bool binary = k == lc::EwKind::add || k == lc::EwKind::sub || k == lc::EwKind::mul;
        args.b = binary ? b.get() : nullptr;
        args.out = o.get();
        args.n = n;
        args.alpha = 0.37f;
        gpu().elementwise(args);
        auto out = o.download();
        auto ref = lc::ref::elementwise(k, ha.data(), hb.data(), n, 0.37f);
        ASSERT_EQ(lc::ref::count_nan(out), 0u) << "n=" << n << " kind=" << int(k);
        ASSERT_LE(lc::ref::rel_error(out, ref), 1e-6)
            << "n=" << n << " kind=" << int(k) << " offsets " << off[0] << off[1] << off[2];
      }
    }
  }
}

TEST(CudaElementwise, OutputAliasesInput) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (std::int64_t n : {1, 17, 100003}) {
    auto ha = rng.vec(sz(n)), hb = rng.vec(sz(n));
    DevBuf a(sz(n), 1), b(sz(n), 1);
    a.upload(ha);
    b.upload(hb);
    lc::ElementwiseArgs args;
    args.kind = lc::EwKind::mul;
    args.a = a.get();
    args.b = b.get();
    args.out = a.get();  // in place
    args.n = n;
    gpu().elementwise(args);
    auto ref = lc::ref::elementwise(lc::EwKind::mul, ha.data(), hb.data(), n);
    EXPECT_LE(lc::ref::rel_error(a.download(), ref), 1e-6) << n;
  }
}

// ---- matmul ------------------------------------------------------------------------------

struct MmCase {
  std::int64_t m, k, n;
  bool trans_b, bias;
  lc::Activation act;
};

double run_matmul(lc::ref::Rng& rng, const MmCase& c, lc::Precision prec) {
  auto ha = rng.vec(sz(c.m * c.k)), hb = rng.vec(sz(c.k * c.n)), hbias = rng.vec(sz(c.n));
  DevBuf a(ha.size()), b(hb.size()), bias(hbias.size()), o(sz(c.m * c.n));
  a.upload(ha);
  b.upload(hb);
  bias.upload(hbias);
  o.poison();
  lc::MatmulArgs args;
  args.a = a.get();
  args.b = b.get();
  args.bias = c.bias ? bias.get() : nullptr;
  args.out = o.get();
  args.m = c.m;
  args.k = c.k;
  args.n = c.n;
  args.trans_b = c.trans_b;
  args.act = c.act;
  args.precision = prec;
  gpu().matmul(args);
  auto out = o.download();
  lc::MatmulArgs h = args;
  h.a = ha.data();
  h.b = hb.data();
  h.bias = c.bias ? hbias.data() : nullptr;
  if (lc::ref::count_nan(out) != 0) return INFINITY;
  return lc::ref::matmul_error(out, h);  // scaled by |A||B|: tiny cancelling shapes stay stable
}

TEST(CudaMatmul, Fp32ShapesEpiloguesLayouts) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 1},      {3, 5, 7},      {17, 13, 19},
                                    {64, 128, 32}, {127, 129, 131}, {257, 511, 263}, {1, 300, 2}};
  const lc::Activation acts[] = {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu};
  for (const auto& s : shapes)
    for (bool tb : {false, true})
      for (bool bias : {false, true})
        for (lc::Activation act : acts) {
          MmCase c{s[0], s[1], s[2], tb, bias, act};
          // cuBLASLt's fused GELU epilogue evaluates tanh with a fast approximation: up to ~3e-5
          // relative error on single elements (seen on H200, 1x7x1 output), so 1e-4 there.
          const double tol = act == lc::Activation::gelu ? 1e-4 : 1e-5;
          EXPECT_LE(run_matmul(rng, c, lc::Precision::fp32), tol)
              << c.m << "x" << c.k << "x" << c.n << " tb=" << tb << " bias=" << bias
              << " act=" << int(act);
        }
}

TEST(CudaMatmul, Tf32AndBf16) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (bool tb : {false, true}) {
    MmCase c{384, 512, 320, tb, true, lc::Activation::relu};
    const double e32 = run_matmul(rng, c, lc::Precision::tf32);
    EXPECT_LE(e32, 2e-3);
    EXPECT_LE(run_matmul(rng, c, lc::Precision::bf16), 2e-2);
    // fp32 must really be fp32 (not silently TF32): far below the TF32 error.
    EXPECT_LE(run_matmul(rng, c, lc::Precision::fp32), 1e-5);
  }
}

TEST(CudaMatmul, TunerApiListsAndRunsEveryCandidate) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t m = 96, k = 80, n = 72;
  auto ha = rng.vec(sz(m * k)), hb = rng.vec(sz(k * n)), hbias = rng.vec(sz(n));
  DevBuf a(ha.size()), b(hb.size()), bias(hbias.size()), o(sz(m * n));
  a.upload(ha);
  b.upload(hb);
  bias.upload(hbias);
  lc::MatmulArgs args;
  args.a = a.get();
  args.b = b.get();
  args.bias = bias.get();
  args.out = o.get();
  args.m = m;
  args.k = k;
  args.n = n;
  args.act = lc::Activation::relu;
  lc::MatmulArgs h = args;
  h.a = ha.data();
  h.b = hb.data();
  h.bias = hbias.data();
  const auto ref = lc::ref::matmul(h);
  const auto algos = lc::cuda::matmul_list_algos(args, 6);
  ASSERT_GE(algos.size(), 1u);
  for (const auto& al : algos) {
    o.poison();
    lc::cuda::matmul_with_algo(args, al.index);
    EXPECT_LE(lc::ref::rel_error(o.download(), ref), 1e-5) << "algo index " << al.index;
  }
  lc::cuda::matmul_set_algo(args, static_cast<int>(algos.size()) - 1);
  o.poison();
  gpu().matmul(args);
  EXPECT_LE(lc::ref::rel_error(o.download(), ref), 1e-5);
  EXPECT_THROW(lc::cuda::matmul_with_algo(args, 100000), lc::ValueError);
}

// ---- attention ---------------------------------------------------------------------------

struct AttnCase {
  std::int64_t sq, sk, d, dv;
};

TEST(CudaAttention, ShapesCausalAndNot) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const AttnCase cases[] = {{1, 1, 1, 1},       {1, 7, 3, 5},       {5, 1, 8, 8},
                            {37, 53, 64, 64},   {97, 131, 17, 33},  {64, 64, 64, 64},
                            {128, 128, 128, 128}, {61, 200, 256, 256}, {200, 61, 80, 40},
                            {3, 2053, 64, 64},  {1031, 1031, 64, 64}, {19, 300, 256, 7},
                            {300, 300, 100, 130}, {1, 4099, 128, 128}};
  for (const auto& c : cases) {
    for (bool causal : {false, true}) {
      auto hq = rng.vec(sz(c.sq * c.d)), hk = rng.vec(sz(c.sk * c.d)), hv = rng.vec(sz(c.sk * c.dv));
      DevBuf q(hq.size()), k(hk.size()), v(hv.size()), o(sz(c.sq * c.dv));
      q.upload(hq);
      k.upload(hk);
      v.upload(hv);
      o.poison();
      lc::AttentionArgs args;
      args.q = q.get();
      args.k = k.get();
      args.v = v.get();
      args.out = o.get();
      args.sq = c.sq;
      args.sk = c.sk;
      args.d = c.d;
      args.dv = c.dv;
      args.causal = causal;
      args.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
      gpu().attention(args);
      auto out = o.download();
      lc::AttentionArgs h = args;
      h.q = hq.data();
      h.k = hk.data();
      h.v = hv.data();
      ASSERT_EQ(lc::ref::count_nan(out), 0u) << c.sq << "," << c.sk << "," << c.d << "," << c.dv;
      EXPECT_LE(lc::ref::rel_error(out, lc::ref::attention(h)), 2e-5)
          << "sq=" << c.sq << " sk=" << c.sk << " d=" << c.d << " dv=" << c.dv
          << " causal=" << causal;
    }
  }
}

TEST(CudaAttention, MisalignedInputsAndLargeScale) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t sq = 77, sk = 91, d = 64, dv = 64;
  auto hq = rng.vec(sz(sq * d)), hk = rng.vec(sz(sk * d)), hv = rng.vec(sz(sk * dv));
  DevBuf q(hq.size(), 1), k(hk.size(), 3), v(hv.size(), 2), o(sz(sq * dv), 1);
  q.upload(hq);
  k.upload(hk);
  v.upload(hv);
  for (float scale : {0.125f, 4.0f}) {  // 4.0 makes the softmax very peaked
    o.poison();
    lc::AttentionArgs args{q.get(), k.get(), v.get(), o.get(), sq, sk, d, dv, true, scale};
    gpu().attention(args);
    lc::AttentionArgs h = args;
    h.q = hq.data();
    h.k = hk.data();
    h.v = hv.data();
    EXPECT_LE(lc::ref::rel_error(o.download(), lc::ref::attention(h)), 2e-5) << scale;
  }
}

// ---- conv2d ------------------------------------------------------------------------------

struct ConvCase {
  std::int64_t n, c, h, w, oc, kh, kw, sh, sw, ph, pw;
};

TEST(CudaConv2d, DirectAndCudnnPaths) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const ConvCase cases[] = {
      {1, 3, 16, 16, 16, 3, 3, 1, 1, 1, 1},  // the small direct case
      {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},     {2, 5, 13, 11, 7, 3, 2, 2, 1, 1, 0},
      {3, 4, 9, 17, 5, 5, 5, 1, 2, 2, 2},    {1, 2, 7, 7, 3, 7, 7, 1, 1, 0, 0},
      {2, 32, 40, 40, 48, 3, 3, 1, 1, 1, 1},  // 44 M MACs: cuDNN when compiled in
      {1, 64, 29, 31, 40, 3, 3, 2, 2, 1, 1},  // odd sizes, strided
  };
  const lc::Activation acts[] = {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu};
  for (const auto& c : cases) {
    for (lc::Activation act : acts) {
      for (bool with_bias : {true, false}) {
        lc::Conv2dArgs args;
        args.n = c.n; args.c = c.c; args.h = c.h; args.w_in = c.w;
        args.oc = c.oc; args.kh = c.kh; args.kw = c.kw;
        args.stride_h = c.sh; args.stride_w = c.sw; args.pad_h = c.ph; args.pad_w = c.pw;
        args.oh = (c.h + 2 * c.ph - c.kh) / c.sh + 1;
        args.ow = (c.w + 2 * c.pw - c.kw) / c.sw + 1;
        args.act = act;
        auto hx = rng.vec(sz(c.n * c.c * c.h * c.w)), hw = rng.vec(sz(c.oc * c.c * c.kh * c.kw));
        auto hb = rng.vec(sz(c.oc));
        DevBuf x(hx.size()), w(hw.size()), b(hb.size()), o(sz(c.n * c.oc * args.oh * args.ow));
        x.upload(hx);
        w.upload(hw);
        b.upload(hb);
        o.poison();
        args.x = x.get();
        args.w = w.get();
        args.bias = with_bias ? b.get() : nullptr;
        args.out = o.get();
        gpu().conv2d(args);
        auto out = o.download();
        lc::Conv2dArgs h = args;
        h.x = hx.data();
        h.w = hw.data();
        h.bias = with_bias ? hb.data() : nullptr;
        ASSERT_EQ(lc::ref::count_nan(out), 0u);
        EXPECT_LE(lc::ref::rel_error(out, lc::ref::conv2d(h)), 1e-5)
            << c.n << "x" << c.c << "x" << c.h << "x" << c.w << "->" << c.oc << " k" << c.kh
            << "x" << c.kw << " act=" << int(act) << " bias=" << with_bias;
      }
    }
  }
}

// ---- layernorm / softmax -----------------------------------------------------------------

TEST(CudaNorm, LayerNormAndSoftmaxAllPaths) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t shapes[][2] = {{1, 1},   {3, 7},    {9, 32},   {17, 33},   {5, 100},
                                    {33, 1024}, {7, 1025}, {4, 3000}, {3, 4096}, {2, 16384},
                                    {2, 20000}, {1000, 64}};
  for (const auto& s : shapes) {
    const std::int64_t rows = s[0], cols = s[1];
    // shifted inputs: catches E[x^2]-E[x]^2 cancellation and a missing max subtraction
    auto hx = rng.vec(sz(rows * cols), 40.0f, 44.0f);
    auto hg = rng.vec(sz(cols), 0.5f, 1.5f), hb = rng.vec(sz(cols));
    DevBuf x(hx.size()), g(hg.size()), b(hb.size()), o(hx.size());
    x.upload(hx);
    g.upload(hg);
    b.upload(hb);
    for (bool affine : {true, false}) {
      o.poison();
      lc::LayerNormArgs a{x.get(), affine ? g.get() : nullptr, affine ? b.get() : nullptr,
                          o.get(), rows, cols, 1e-5f};
      gpu().layernorm(a);
      lc::LayerNormArgs h = a;
      h.x = hx.data();
      h.gamma = affine ? hg.data() : nullptr;
      h.beta = affine ? hb.data() : nullptr;
      EXPECT_LE(lc::ref::rel_error(o.download(), lc::ref::layernorm(h)), 1e-5)
          << "layernorm " << rows << "x" << cols << " affine=" << affine;
    }
    o.poison();
    lc::SoftmaxArgs sa{x.get(), o.get(), rows, cols};
    gpu().softmax(sa);
    lc::SoftmaxArgs hs{hx.data(), nullptr, rows, cols};
    EXPECT_LE(lc::ref::rel_error(o.download(), lc::ref::softmax(hs)), 1e-5)
        << "softmax " << rows << "x" << cols;
  }
}

TEST(CudaMemory, OutOfMemoryIsCleanAndRecoverable) {
  LC_REQUIRE_CUDA();
  const std::size_t huge = std::size_t{1} << 50;  // 1 PiB: far beyond any card
  try {
    (void)gpu().alloc(huge);
    FAIL() << "allocating 1 PiB succeeded";
  } catch (const lc::OutOfMemory& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(huge)), std::string::npos) << msg;
    EXPECT_NE(msg.find("free"), std::string::npos) << msg;
  }
  // the runtime is still usable afterwards
  lc::ref::Rng rng;
  auto ha = rng.vec(1000), hb = rng.vec(1000);
  DevBuf a(1000), b(1000), o(1000);
  a.upload(ha);
  b.upload(hb);
  gpu().elementwise({lc::EwKind::add, a.get(), b.get(), o.get(), 1000, 1.0f});
  gpu().synchronize();
  EXPECT_LE(lc::ref::rel_error(o.download(), lc::ref::elementwise(lc::EwKind::add, ha.data(),
                                                                  hb.data(), 1000)), 1e-7);
}

TEST(CudaMemory, AllocatorReusesFreedBlocks) {
  LC_REQUIRE_CUDA();
  void* p = gpu().alloc(3 << 20);
  gpu().free(p);
  const auto before = lc::cuda::allocator_stats();
  void* q = gpu().alloc((3 << 20) - 100);  // same size class
  const auto after = lc::cuda::allocator_stats();
  EXPECT_EQ(p, q);
  EXPECT_EQ(after.cuda_mallocs, before.cuda_mallocs);
  EXPECT_EQ(after.cache_hits, before.cache_hits + 1);
  void* z = gpu().alloc(0);  // zero bytes is legal
  EXPECT_NE(z, nullptr);
  gpu().free(z);
  gpu().free(q);
  gpu().free(nullptr);
  lc::cuda::empty_cache();
  EXPECT_EQ(lc::cuda::allocator_stats().cached_bytes, 0u);
}

TEST(CudaMemory, CopyRoundTripsOfOddSizes) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::size_t sizes[] = {0, 1, 3, 4097, 256 * 1024 + 1, (8u << 20) + 5, (24u << 20) + 13,
                               (40u << 20) + 7};
  for (std::size_t bytes : sizes) {
    std::vector<unsigned char> src(bytes), back(bytes, 0xAB), back2(bytes, 0xCD);
    std::uniform_int_distribution<int> dist(0, 255);
    for (auto& ch : src) ch = static_cast<unsigned char>(dist(rng.engine()));
    auto* d1 = static_cast<unsigned char*>(gpu().alloc(bytes + 3));
    auto* d2 = static_cast<unsigned char*>(gpu().alloc(bytes + 3));
    gpu().copy_from_host(d1 + 3, src.data(), bytes);  // odd device offset
    std::vector<unsigned char> clobber = src;         // the source may be reused at once
    std::fill(src.begin(), src.end(), 0);
    gpu().copy_to_host(back.data(), d1 + 3, bytes);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), clobber.begin())) << bytes;
    gpu().copy_within(d2 + 1, d1 + 3, bytes);
    gpu().copy_to_host(back2.data(), d2 + 1, bytes);
    EXPECT_TRUE(std::equal(back2.begin(), back2.end(), clobber.begin())) << bytes;
    gpu().free(d1);
    gpu().free(d2);
  }
}

// Staged copies (src/backends/cuda/staging.cpp): sizes around the direct-path limit, the chunk
// sizes it picks (256 KiB .. 4 MiB, ~bytes/8) and the slot count, odd sizes and offsets, with one,
// three and the default number of copy threads. Two uploads back to back from one host buffer
// that is overwritten at once check that the second upload waits for the first one's DMAs before
// reusing the pinned buffers, and that the source may be reused as soon as the call returns.
TEST(CudaMemory, StagedCopiesAtChunkBoundariesAndThreadCounts) {
  LC_REQUIRE_CUDA();
  const std::size_t dir = lc::cuda::kDirectBytes, slot = lc::cuda::kSlotBytes;
  const std::size_t sizes[] = {dir - 1, dir, dir + 1, 300000, (1u << 20) - 1, (1u << 20) + 1,
                               (2u << 20) + 64, slot - 1, slot, slot + 1,
                               slot * lc::cuda::kSlots + 1, (4u << 20) * 8 + 3,
                               (4u << 20) * 17 + 4093};
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto fill = [&](std::vector<unsigned char>& v) {  // fast pseudo-random bytes (splitmix64)
    for (std::size_t i = 0; i < v.size(); i += 8) {
      std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      std::memcpy(v.data() + i, &z, std::min<std::size_t>(8, v.size() - i));
    }
  };
  for (int threads : {1, 3, 0}) {  // 0: LC_COPY_THREADS / hardware default
    lc::cuda::set_copy_threads(threads);
    for (std::size_t bytes : sizes) {
      SCOPED_TRACE("bytes " + std::to_string(bytes) + ", copy threads " +
                   std::to_string(lc::cuda::copy_threads()));
      std::vector<unsigned char> host(bytes + 1), first(bytes), second(bytes), back(bytes + 1, 0xEE);
      fill(host);
      std::memcpy(first.data(), host.data() + 1, bytes);
      auto* d1 = static_cast<unsigned char*>(gpu().alloc(bytes + 5));
      auto* d2 = static_cast<unsigned char*>(gpu().alloc(bytes + 5));
      gpu().copy_from_host(d1 + 5, host.data() + 1, bytes);  // odd host and device offsets
      fill(host);                                            // reuse the source at once
      std::memcpy(second.data(), host.data(), bytes);
      gpu().copy_from_host(d2, host.data(), bytes);          // no sync in between
      std::fill(host.begin(), host.end(), 0);
      gpu().copy_to_host(back.data() + 1, d1 + 5, bytes);
      EXPECT_TRUE(std::equal(first.begin(), first.end(), back.begin() + 1));
      EXPECT_EQ(back[0], 0xEE);  // nothing written before the destination
      back[bytes] = 0xEE;  // (the first download wrote it)
      gpu().copy_to_host(back.data(), d2, bytes);
      EXPECT_TRUE(std::equal(second.begin(), second.end(), back.begin()));
      EXPECT_EQ(back[bytes], 0xEE);  // nor after it
      gpu().free(d1);
      gpu().free(d2);
    }
  }
  lc::cuda::set_copy_threads(0);
}

TEST(CudaGraph, CaptureAndReplay) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t n = 4099, sq = 40, d = 32;
  DevBuf a(sz(n)), b(sz(n)), o(sz(n)), q(sz(sq * d)), ao(sz(sq * d));
  // warm up (plans, handles) before capturing
  lc::ElementwiseArgs ew{lc::EwKind::add, a.get(), b.get(), o.get(), n, 1.0f};
  lc::AttentionArgs at{q.get(), q.get(), q.get(), ao.get(), sq, sq, d, d, true, 0.2f};
  a.upload(rng.vec(sz(n)));
  b.upload(rng.vec(sz(n)));
  q.upload(rng.vec(sz(sq * d)));
  gpu().elementwise(ew);
  gpu().attention(at);
  gpu().synchronize();
  lc::cuda::capture_begin();
  gpu().elementwise(ew);
  gpu().attention(at);
  auto g = lc::cuda::capture_end();
  for (int rep = 0; rep < 3; ++rep) {
    auto ha = rng.vec(sz(n)), hb = rng.vec(sz(n)), hq = rng.vec(sz(sq * d));
    a.upload(ha);
    b.upload(hb);
    q.upload(hq);
    o.poison();
    ao.poison();
    lc::cuda::graph_launch(g);
    EXPECT_LE(lc::ref::rel_error(o.download(),
                                 lc::ref::elementwise(lc::EwKind::add, ha.data(), hb.data(), n)),
              1e-7);
    lc::AttentionArgs h = at;
    h.q = h.k = h.v = hq.data();
    EXPECT_LE(lc::ref::rel_error(ao.download(), lc::ref::attention(h)), 2e-5);
  }
  lc::cuda::graph_destroy(g);
}

// Backend::tile_cyclic (conv -> attention's QKV arrangement): one kernel on the GPU, checked
// against the index rule for sizes around the wrap-around, and against the default
// implementation (doubling device copies) that other backends inherit.
TEST(CudaTileCyclic, MatchesIndexRuleForAllRatios) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t cases[][2] = {{1, 1}, {1, 97}, {7, 3}, {1024, 9216}, {1024, 4608},
                                   {4096, 960}, {4096, 4096}, {13, 1000003}, {257, 257 * 3}};
  for (const auto& c : cases) {
    const std::int64_t have = c[0], need = c[1];
    auto h = rng.vec(sz(have));
    DevBuf src(sz(have)), dst(sz(need));
    src.upload(h);
    auto mismatches = [&] {  // elements of dst that break dst[i] == src[i % have]
      const auto out = dst.download();
      std::int64_t bad = 0;
      for (std::int64_t i = 0; i < need; ++i) bad += out[sz(i)] != h[sz(i % have)];
      return bad;
    };
    for (int rep = 0; rep < 4; ++rep) {  // calls 3+ replay the launch's graph
      dst.poison();
      gpu().tile_cyclic(dst.get(), src.get(), have, need);
      ASSERT_EQ(mismatches(), 0) << have << " -> " << need << " rep " << rep;
    }
    dst.poison();
    gpu().Backend::tile_cyclic(dst.get(), src.get(), have, need);  // the base class's copies
    ASSERT_EQ(mismatches(), 0) << "default implementation, " << have << " -> " << need;
  }
}

// cuBLASLt products go through cuda::run_captured (launch.h): from the third identical call a
// captured graph replays them. Replays must read the operands' current contents, a different
// bias pointer must be a different graph, and a user's capture must still record the product.
TEST(CudaLaunchCache, RepeatedMatmulsReplayCapturedGraphsWithFreshData) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const char* env = std::getenv("LC_CUDA_GRAPH_LAUNCH");
  const bool default_threshold = env == nullptr || *env == '\0';
  const std::int64_t m = 67, k = 131, n = 53;  // primes: no tile divides them
  DevBuf a(sz(m * k)), b(sz(n * k)), bias1(sz(n)), bias2(sz(n)), o(sz(m * n));
  lc::MatmulArgs args;
  args.a = a.get();
  args.b = b.get();
  args.out = o.get();
  args.m = m;
  args.k = k;
  args.n = n;
  args.trans_b = true;  // nn.Linear's weight layout
  args.act = lc::Activation::gelu;
  const auto before = lc::cuda::launch_cache_stats();
  auto check = [&](const std::vector<float>& ha, const std::vector<float>& hb,
                   const std::vector<float>* hbias, const char* what, int rep) {
    lc::MatmulArgs h = args;
    h.a = ha.data();
    h.b = hb.data();
    h.bias = hbias ? hbias->data() : nullptr;
    const auto out = o.download();
    ASSERT_EQ(lc::ref::count_nan(out), 0u) << what << " rep " << rep;
    ASSERT_LE(lc::ref::matmul_error(out, h), 1e-5) << what << " rep " << rep;
  };
  for (int rep = 0; rep < 6; ++rep) {
    auto ha = rng.vec(sz(m * k)), hb = rng.vec(sz(n * k)), hb1 = rng.vec(sz(n)),
         hb2 = rng.vec(sz(n));
    a.upload(ha); b.upload(hb); bias1.upload(hb1); bias2.upload(hb2);
    // Alternate two bias buffers every call: two keys, each repeated.
    for (int which = 0; which < 2; ++which) {
      args.bias = which == 0 ? bias1.get() : bias2.get();
      o.poison();
      gpu().matmul(args);
      check(ha, hb, which == 0 ? &hb1 : &hb2, which == 0 ? "bias1" : "bias2", rep);
    }
  }
  const auto after = lc::cuda::launch_cache_stats();
  if (default_threshold) {
    // Threshold 3: calls 3..6 of each of the two products replay a captured graph.
    EXPECT_GE(after.replays - before.replays, 2u * 4u);
    EXPECT_GE(after.captured, 2u);
  }
  // A user's capture after the graphs exist records the product itself.
  args.bias = bias1.get();
  lc::cuda::capture_begin();
  gpu().matmul(args);
  auto cap = lc::cuda::capture_end();
  for (int rep = 0; rep < 2; ++rep) {
    auto ha = rng.vec(sz(m * k)), hb = rng.vec(sz(n * k)), hb1 = rng.vec(sz(n));
    a.upload(ha); b.upload(hb); bias1.upload(hb1);
    o.poison();
    lc::cuda::graph_launch(cap);
    check(ha, hb, &hb1, "user capture", rep);
  }
  lc::cuda::graph_destroy(cap);
  lc::cuda::launch_cache_clear();
  EXPECT_EQ(lc::cuda::launch_cache_stats().captured, 0u);
}

// The same for cuDNN convolutions (conv2d.cu launch_cudnn): repeated calls with fresh data replay
// a captured graph of cudnnConvolutionForward, followed by the bias + activation kernel.
TEST(CudaLaunchCache, RepeatedCudnnConvsReplayCapturedGraphsWithFreshData) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const char* env = std::getenv("LC_CUDA_GRAPH_LAUNCH");
  const bool default_threshold = env == nullptr || *env == '\0';
  lc::Conv2dArgs args;
  args.n = 2; args.c = 32; args.h = 41; args.w_in = 37;  // 47 M MACs: above the direct limit
  args.oc = 48; args.kh = 3; args.kw = 3;
  args.pad_h = 1; args.pad_w = 1;
  args.oh = 41; args.ow = 37;
  args.act = lc::Activation::relu;
  DevBuf x(sz(2 * 32 * 41 * 37)), w(sz(48 * 32 * 9)), b(sz(48)), o(sz(2 * 48 * 41 * 37));
  args.x = x.get();
  args.w = w.get();
  args.bias = b.get();
  args.out = o.get();
  const bool cudnn = lc::cuda::conv2d_uses_cudnn(args);
  const auto before = lc::cuda::launch_cache_stats();
  for (int rep = 0; rep < 6; ++rep) {
    auto hx = rng.vec(x.n_), hw = rng.vec(w.n_), hb = rng.vec(b.n_);
    x.upload(hx); w.upload(hw); b.upload(hb);
    o.poison();
    gpu().conv2d(args);
    const auto out = o.download();
    lc::Conv2dArgs h = args;
    h.x = hx.data();
    h.w = hw.data();
    h.bias = hb.data();
    ASSERT_EQ(lc::ref::count_nan(out), 0u) << "rep " << rep;
    ASSERT_LE(lc::ref::rel_error(out, lc::ref::conv2d(h)), 1e-5) << "rep " << rep;
  }
  const auto after = lc::cuda::launch_cache_stats();
  if (cudnn && default_threshold) {
    EXPECT_GE(after.captured, 1u);
    EXPECT_GE(after.replays - before.replays, 4u);  // calls 3..6: the conv (+ the bias kernel)
  }
  lc::cuda::launch_cache_clear();
}

// cuda::launch replays repeated identical launches from cached one-node graphs (launch.h): the
// replays must read the buffers' current contents, and a stream capture must still record a
// kernel node (not a replay) even for a launch whose graph is cached.
TEST(CudaLaunchCache, RepeatedLaunchesReplayWithFreshDataAndCaptureStillWorks) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const char* env = std::getenv("LC_CUDA_GRAPH_LAUNCH");
  const bool default_threshold = env == nullptr || *env == '\0';
  const std::int64_t n = 65536 + 3, rows = 37, cols = 211, sq = 300, d = 64;
  DevBuf a(sz(n)), b(sz(n)), o(sz(n)), x(sz(rows * cols)), g(sz(cols)), be(sz(cols)),
      y(sz(rows * cols)), q(sz(sq * d)), k(sz(sq * d)), v(sz(sq * d)), ao(sz(sq * d));
  lc::ElementwiseArgs ew{lc::EwKind::add, a.get(), b.get(), o.get(), n, 1.0f};
  lc::LayerNormArgs ln{x.get(), g.get(), be.get(), y.get(), rows, cols, 1e-5f};
  lc::AttentionArgs at{q.get(), k.get(), v.get(), ao.get(), sq, sq, d, d, false, 0.125f};
  const auto before = lc::cuda::launch_cache_stats();
  for (int rep = 0; rep < 6; ++rep) {
    auto ha = rng.vec(sz(n)), hb = rng.vec(sz(n)), hx = rng.vec(sz(rows * cols)),
         hg = rng.vec(sz(cols)), hbe = rng.vec(sz(cols)), hq = rng.vec(sz(sq * d)),
         hk = rng.vec(sz(sq * d)), hv = rng.vec(sz(sq * d));
    a.upload(ha); b.upload(hb); x.upload(hx); g.upload(hg); be.upload(hbe);
    q.upload(hq); k.upload(hk); v.upload(hv);
    o.poison(); y.poison(); ao.poison();
    gpu().elementwise(ew);
    gpu().layernorm(ln);
    gpu().attention(at);
    ASSERT_LE(lc::ref::rel_error(o.download(),
                                 lc::ref::elementwise(lc::EwKind::add, ha.data(), hb.data(), n)),
              1e-7) << "rep " << rep;
    lc::LayerNormArgs hln{hx.data(), hg.data(), hbe.data(), nullptr, rows, cols, 1e-5f};
    ASSERT_LE(lc::ref::rel_error(y.download(), lc::ref::layernorm(hln)), 2e-5) << "rep " << rep;
    lc::AttentionArgs hat = at;
    hat.q = hq.data(); hat.k = hk.data(); hat.v = hv.data();
    ASSERT_LE(lc::ref::rel_error(ao.download(), lc::ref::attention(hat)), 2e-5) << "rep " << rep;
  }
  const auto after = lc::cuda::launch_cache_stats();
  if (default_threshold) {
    // Threshold 3: calls 3..6 of each of the three ops (at least 3 kernels) replay.
    EXPECT_GE(after.replays - before.replays, 3u * 4u);
    EXPECT_GE(after.graphs, 3u);
  }
  // Capture after the graphs exist: the captured graph must hold the kernels themselves.
  lc::cuda::capture_begin();
  gpu().elementwise(ew);
  auto cap = lc::cuda::capture_end();
  for (int rep = 0; rep < 2; ++rep) {
    auto ha = rng.vec(sz(n)), hb = rng.vec(sz(n));
    a.upload(ha);
    b.upload(hb);
    o.poison();
    lc::cuda::graph_launch(cap);
    EXPECT_LE(lc::ref::rel_error(o.download(),
                                 lc::ref::elementwise(lc::EwKind::add, ha.data(), hb.data(), n)),
              1e-7);
  }
  lc::cuda::graph_destroy(cap);
  lc::cuda::launch_cache_clear();
  EXPECT_EQ(lc::cuda::launch_cache_stats().graphs, 0u);
  // Still correct after the cache was dropped.
  auto ha = rng.vec(sz(n)), hb = rng.vec(sz(n));
  a.upload(ha);
  b.upload(hb);
  gpu().elementwise(ew);
  EXPECT_LE(lc::ref::rel_error(o.download(),
                               lc::ref::elementwise(lc::EwKind::add, ha.data(), hb.data(), n)),
            1e-7);
}

TEST(CudaTrace, MarksMeasureDeviceTime) {
  LC_REQUIRE_CUDA();
  const std::int64_t n = 1 << 22;
  DevBuf a(sz(n)), o(sz(n));
  lc::ref::Rng rng;
  a.upload(rng.vec(sz(n)));
  const auto t0 = gpu().mark();
  for (int i = 0; i < 20; ++i) gpu().elementwise({lc::EwKind::relu, a.get(), nullptr, o.get(), n, 1.0f});
  const auto t1 = gpu().mark();
  ASSERT_GE(t0, 0);
  ASSERT_GE(t1, 0);
  const double ns = gpu().elapsed_ns(t0, t1);
  EXPECT_GT(ns, 0.0);
  EXPECT_LT(ns, 1e9);
  gpu().range_push("lc-test");
  gpu().range_pop();
  gpu().release_marks();
  EXPECT_GE(gpu().mark(), 0);
  gpu().release_marks();
}

}  // namespace
