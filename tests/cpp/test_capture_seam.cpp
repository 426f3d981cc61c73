// The backend seam's backend-owned services on the CPU (and the stubs): graph capture as direct
// execution, the binding compared pointer by pointer, fingerprints and the build flag through
// the backend, and the CPU's tuned execution against the plain op. The CUDA side of the same
// seam is tests/cpp/test_cuda_capture.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/autotune.h"
#include "lightning_core/fused.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"
#include "lightning_core/session.h"

namespace {

std::vector<float> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

lc::Tensor wrap(std::vector<float>& v, std::vector<std::int64_t> shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[static_cast<std::size_t>(i)] = s;
    s *= shape[static_cast<std::size_t>(i)];
  }
  return lc::Tensor::wrap(v.data(), static_cast<int>(shape.size()), shape.data(), strides.data(),
                          lc::DType::f32, lc::DeviceKind::cpu);
}

TEST(CaptureSeam, BindingComparesPointersAndRefusesOverflow) {
  float buf[lc::kMaxGraphBinding + 1];
  lc::GraphBinding a, b;
  for (int i = 0; i < lc::kMaxGraphBinding; ++i) {
    EXPECT_TRUE(a.add(buf + i));
    EXPECT_TRUE(b.add(buf + i));
  }
  EXPECT_FALSE(a.add(buf + lc::kMaxGraphBinding));  // full: nothing added
  EXPECT_EQ(a.n, lc::kMaxGraphBinding);
  EXPECT_TRUE(a == b);
  b.ptrs[3] = buf + lc::kMaxGraphBinding;
  EXPECT_TRUE(a != b);
  lc::GraphBinding c;
  c.add(buf);
  EXPECT_FALSE(c == a);  // a prefix is not the same binding
  lc::GraphBinding empty1, empty2;
  EXPECT_TRUE(empty1 == empty2);
}

TEST(CaptureSeam, CaptureKeyEquality) {
  lc::CaptureKey a{"matmul", {2, 3, 4}}, b{"matmul", {2, 3, 4}}, c{"matmul", {2, 3, 5}},
      d{"attention", {2, 3, 4}};
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a == c);
  EXPECT_FALSE(a == d);
}

// The CPU has no graphs: capture_graph gives a DirectGraph whose replays run the work, every
// time, on whatever the binding says (no recording, nothing cached).
TEST(CaptureSeam, CpuReplaysRunTheWorkDirectly) {
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  EXPECT_FALSE(cpu.graphs_supported());
  const lc::CaptureKey key{"test.add", {7}};
  auto g = cpu.capture_graph(key);
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->is_graph());
  EXPECT_TRUE(g->key() == key);

  std::vector<float> x1 = randn(7, 1), x2 = randn(7, 2), y1 = randn(7, 3), out(7);
  const float* xa = x1.data();
  const float* xb = y1.data();
  int runs = 0;
  auto work = [&] {
    ++runs;
    lc::ElementwiseArgs e;
    e.kind = lc::EwKind::add;
    e.a = xa;
    e.b = xb;
    e.out = out.data();
    e.n = 7;
    cpu.elementwise(e);
  };
  for (int round = 0; round < 3; ++round) {
    xa = round == 1 ? x2.data() : x1.data();  // a changed binding on round 1
    lc::GraphBinding b;
    b.add(xa);
    b.add(xb);
    b.add(out.data());
    std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
    g->replay(work, b);
    for (int i = 0; i < 7; ++i) EXPECT_EQ(out[i], xa[i] + xb[i]) << "round " << round << " i " << i;
  }
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(g->stats().replays, 3u);
  EXPECT_EQ(g->stats().records, 0u);  // nothing is recorded on the CPU
  EXPECT_EQ(g->stats().instantiations, 0u);
  const lc::GraphCacheStats st = cpu.graph_cache_stats();
  EXPECT_EQ(st.checked_out, 0u);
  EXPECT_EQ(st.idle, 0u);
  cpu.graph_cache_clear();  // a no-op on the CPU
}

// A backend that is not compiled in (or has no device) gives out direct graphs too; replaying
// one runs the work, whose ops raise lc::Unavailable.
TEST(CaptureSeam, UnavailableBackendReplayRaisesThroughTheWork) {
  lc::Backend& metal = lc::get_backend(lc::DeviceKind::metal);
  ASSERT_FALSE(metal.available());
  EXPECT_FALSE(metal.graphs_supported());
  EXPECT_FALSE(metal.compiled());
  auto g = metal.capture_graph({"test", {}});
  auto work = [&] { metal.synchronize(); (void)metal.alloc(16); };
  EXPECT_THROW(g->replay(work, lc::GraphBinding{}), lc::Unavailable);
}

TEST(CaptureSeam, FingerprintsAndBuildFlagComeFromTheBackends) {
  EXPECT_EQ(lc::device_fingerprint(lc::DeviceKind::cpu), lc::cpu_fingerprint());
  EXPECT_EQ(lc::cpu_fingerprint(), lc::get_backend(lc::DeviceKind::cpu).fingerprint());
  EXPECT_EQ(lc::cpu_fingerprint().rfind("cpu:", 0), 0u) << lc::cpu_fingerprint();
  EXPECT_NE(lc::cpu_fingerprint().find(";threads="), std::string::npos);
  EXPECT_EQ(lc::device_fingerprint(lc::DeviceKind::cuda), lc::cuda_fingerprint());
  EXPECT_EQ(lc::cuda_fingerprint().rfind("cuda:", 0), 0u) << lc::cuda_fingerprint();
  EXPECT_EQ(lc::device_fingerprint(lc::DeviceKind::metal), "metal:unavailable");
  lc::Backend& cuda = lc::get_backend(lc::DeviceKind::cuda);
  EXPECT_EQ(lc::cuda_compiled(), cuda.compiled());
  if (!cuda.compiled()) {
    EXPECT_EQ(lc::cuda_fingerprint(), "cuda:unavailable (not compiled)");
    EXPECT_FALSE(cuda.graphs_supported());
  } else {
    EXPECT_TRUE(cuda.graphs_supported());
    if (!cuda.available())
      EXPECT_EQ(lc::cuda_fingerprint().rfind("cuda:unavailable (", 0), 0u) << lc::cuda_fingerprint();
  }
  EXPECT_TRUE(lc::get_backend(lc::DeviceKind::cpu).compiled());
}

// The CPU backend has no GEMM algorithm list (its choice is the tuned path below): the GEMM-mode
// hooks say so instead of running anything.
TEST(CaptureSeam, CpuHasNoGemmAlgorithms) {
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  lc::MatmulArgs a;
  a.m = a.k = a.n = 64;
  EXPECT_TRUE(cpu.gemm_algorithms(a, 8).empty());
  EXPECT_THROW(cpu.matmul_with_algorithm(a, 0), lc::ValueError);
  EXPECT_THROW(cpu.set_gemm_algorithm(a, 0), lc::ValueError);
}

// Tuned execution on the CPU: without tuning the choice is the built-in rule (0); every forced
// GEMM and conv path gives the plain op's result.
TEST(CaptureSeam, CpuTunedPathsMatchThePlainOp) {
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  const std::int64_t m = 37, k = 29, n = 41;
  std::vector<float> A = randn(std::size_t(m * k), 4), B = randn(std::size_t(k * n), 5),
                     bias = randn(std::size_t(n), 6), ref(std::size_t(m * n)), got(std::size_t(m * n));
  lc::MatmulArgs a;
  a.a = A.data();
  a.b = B.data();
  a.bias = bias.data();
  a.m = m;
  a.k = k;
  a.n = n;
  a.act = lc::Activation::relu;
  a.out = ref.data();
  EXPECT_EQ(cpu.tune_matmul(a, /*tune=*/false), 0);
  EXPECT_EQ(cpu.tune_matmul(a, /*tune=*/true), 0);  // 37*29*41 is below the tuning window
  cpu.matmul(a);
  a.out = got.data();
  for (int choice = 1; choice <= 4; ++choice) {  // tiny, blocked, blas, pooled
    std::fill(got.begin(), got.end(), std::numeric_limits<float>::quiet_NaN());
    cpu.matmul_tuned(a, choice);
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], ref[i], 1e-4f * (1.0f + std::fabs(ref[i]))) << "choice " << choice;
  }

  std::vector<float> x = randn(2 * 3 * 9 * 7, 7), w = randn(5 * 3 * 3 * 3, 8), cb = randn(5, 9);
  lc::Conv2dArgs c;
  c.x = x.data();
  c.w = w.data();
  c.bias = cb.data();
  c.n = 2;
  c.c = 3;
  c.h = 9;
  c.w_in = 7;
  c.oc = 5;
  c.kh = c.kw = 3;
  c.pad_h = c.pad_w = 1;
  c.oh = 9;
  c.ow = 7;
  std::vector<float> cref(2 * 5 * 9 * 7), cgot(cref.size());
  c.out = cref.data();
  EXPECT_EQ(cpu.tune_conv2d(c, /*tune=*/false), 0);
  cpu.conv2d(c);
  c.out = cgot.data();
  for (int choice = 1; choice <= 2; ++choice) {  // direct, im2col
    std::fill(cgot.begin(), cgot.end(), std::numeric_limits<float>::quiet_NaN());
    cpu.conv2d_tuned(c, choice);
    for (std::size_t i = 0; i < cgot.size(); ++i)
      ASSERT_NEAR(cgot[i], cref[i], 1e-4f * (1.0f + std::fabs(cref[i]))) << "choice " << choice;
  }
}

// A CPU session asked for a graph runs its batches directly (no graph on the CPU), with the
// same results and counts as without.
TEST(CaptureSeam, CpuSessionWithUseGraphRunsDirectly) {
  auto av = randn(19 * 23, 10), bv = randn(23 * 11, 11);
  std::vector<float> ov(19 * 11, std::numeric_limits<float>::quiet_NaN());
  lc::Tensor a = wrap(av, {19, 23}), b = wrap(bv, {23, 11}), out = wrap(ov, {19, 11});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  lc::Matmul2dSession s(a, b, p, /*use_graph=*/true);
  EXPECT_FALSE(s.uses_graph());
  s.start_into({&a, &b}, out);
  s.run_batch_sync_no_download_into({&a, &b}, out, 3);
  std::fill(ov.begin(), ov.end(), std::numeric_limits<float>::quiet_NaN());
  s.download_into(out);
  for (int i = 0; i < 19; ++i)
    for (int j = 0; j < 11; ++j) {
      double r = 0;
      for (int q = 0; q < 23; ++q) r += double(av[std::size_t(i * 23 + q)]) * bv[std::size_t(q * 11 + j)];
      ASSERT_NEAR(ov[std::size_t(i * 11 + j)], r, 1e-4 * (1 + std::fabs(r)));
    }
  EXPECT_EQ(s.stats().launches, 4u);
  EXPECT_EQ(s.stats().graph_replays, 0u);
  EXPECT_EQ(s.stats().graph_records, 0u);
}

// conv_attention_nchw's graph mode on the CPU: the chain's GraphIR, run by the executor through
// the seam's DirectGraph, gives eager's results (test_graph_pipelines.cpp covers more shapes).
TEST(CaptureSeam, CpuConvAttentionGraphModeMatchesEager) {
  auto xv = randn(1 * 3 * 6 * 6, 12), wv = randn(4 * 3 * 3 * 3, 13);
  lc::Tensor x = wrap(xv, {1, 3, 6, 6}), w = wrap(wv, {4, 3, 3, 3});
  lc::ConvAttentionParams prm;
  prm.seq_len = 12;
  prm.head_dim = 12;
  prm.pad_h = prm.pad_w = 1;
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  lc::Tensor eager = lc::conv_attention_nchw(x, w, nullptr, prm, p);
  prm.graph = true;
  for (int rep = 0; rep < 2; ++rep) {
    lc::Tensor g = lc::conv_attention_nchw(x, w, nullptr, prm, p);
    for (int i = 0; i < 144; ++i) EXPECT_NEAR(g.data_as<float>()[i], eager.data_as<float>()[i], 1e-5);
  }
}

}  // namespace
