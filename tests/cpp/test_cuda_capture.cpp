// The capture seam on CUDA (backend.h "Graph capture and replay", src/backends/cuda/capture.cpp):
// one recording per owner, replayed while the binding holds, re-recorded and updated in place
// (cudaGraphExecUpdate) when the buffers change, handed back to the cache keyed by topology,
// shapes and dtypes, and reused by the next owner of the same key. Every test skips without a
// usable GPU; the lead runs them on the H200.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "backends/backend.h"
#include "cuda_test.h"
#include "lightning_core/errors.h"
#include "lightning_core/fused.h"
#include "lightning_core/ops.h"
#include "lightning_core/session.h"

namespace {

using lc::test::gpu;

std::vector<float> randn(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// A float32 device buffer.
struct Dev {
  explicit Dev(std::size_t n) : n(n), t(lc::Tensor::empty({static_cast<std::int64_t>(n)}, lc::DType::f32, lc::DeviceKind::cuda)) {}
  float* ptr() const { return t.data_as<float>(); }
  void upload(const std::vector<float>& v) {
    gpu().copy_from_host(ptr(), v.data(), n * sizeof(float));
  }
  void poison() {
    std::vector<float> nan(n, std::numeric_limits<float>::quiet_NaN());
    upload(nan);
  }
  std::vector<float> download() const {
    std::vector<float> v(n);
    gpu().copy_to_host(v.data(), ptr(), n * sizeof(float));
    gpu().synchronize();
    return v;
  }
  std::size_t n;
  lc::Tensor t;
};

// A kernel of this backend and a cuBLASLt product, on one binding {a, b, sum, prod}:
// sum = a + b (elementwise over n_el = m*k), prod[m, n] = sum[m, k] @ b[k, n]; n == m, so the
// n_el elements of b are also a [k, n] matrix.
struct Chain {
  static constexpr std::int64_t m = 37, k = 41, n = 37;
  static constexpr std::size_t n_el = std::size_t(m * k);
  const float* a = nullptr;
  const float* b = nullptr;
  float* sum = nullptr;
  float* prod = nullptr;
  void operator()() const {
    lc::ElementwiseArgs e;
    e.kind = lc::EwKind::add;
    e.a = a;
    e.b = b;
    e.out = sum;
    e.n = static_cast<std::int64_t>(n_el);
    gpu().elementwise(e);
    lc::MatmulArgs mm;
    mm.a = sum;
    mm.b = b;
    mm.out = prod;
    mm.m = m;
    mm.k = k;
    mm.n = n;
    gpu().matmul(mm);
  }
  lc::GraphBinding binding() const {
    lc::GraphBinding g;
    g.add(a);
    g.add(b);
    g.add(sum);
    g.add(prod);
    return g;
  }
};

void expect_chain(const std::vector<float>& ha, const std::vector<float>& hb,
                  const std::vector<float>& sum, const std::vector<float>& prod) {
  for (std::size_t i = 0; i < Chain::n_el; ++i) ASSERT_EQ(sum[i], ha[i] + hb[i]) << i;
  for (std::int64_t i = 0; i < Chain::m; ++i)
    for (std::int64_t j = 0; j < Chain::n; ++j) {
      double r = 0;
      for (std::int64_t q = 0; q < Chain::k; ++q)
        r += (double(ha[std::size_t(i * Chain::k + q)]) + hb[std::size_t(i * Chain::k + q)]) *
             hb[std::size_t(q * Chain::n + j)];
      ASSERT_NEAR(prod[std::size_t(i * Chain::n + j)], r, 1e-3 * (1 + std::fabs(r))) << i << "," << j;
    }
}

TEST(CudaCapture, ReplayRebindUpdatesInPlace) {
  LC_REQUIRE_CUDA();
  ASSERT_TRUE(gpu().graphs_supported());
  Dev a1(Chain::n_el), b1(Chain::n_el), a2(Chain::n_el), b2(Chain::n_el);
  Dev s1(Chain::n_el), p1(std::size_t(Chain::m * Chain::n)), s2(Chain::n_el), p2(std::size_t(Chain::m * Chain::n));
  Chain c1{a1.ptr(), b1.ptr(), s1.ptr(), p1.ptr()}, c2{a2.ptr(), b2.ptr(), s2.ptr(), p2.ptr()};
  c1();  // the eager first run the seam asks for (plans, handles)
  gpu().synchronize();
  const lc::GraphCacheStats before = gpu().graph_cache_stats();
  auto g = gpu().capture_graph({"test.capture.chain", {Chain::m, Chain::k, Chain::n}});
  ASSERT_TRUE(g->is_graph());
  EXPECT_EQ(gpu().graph_cache_stats().checked_out, before.checked_out + 1);

  auto ha1 = randn(Chain::n_el, 1), hb1 = randn(Chain::n_el, 2);
  auto ha2 = randn(Chain::n_el, 3), hb2 = randn(Chain::n_el, 4);
  a1.upload(ha1);
  b1.upload(hb1);
  a2.upload(ha2);
  b2.upload(hb2);

  // Three replays on binding 1: one recording, one instantiation.
  for (int rep = 0; rep < 3; ++rep) {
    s1.poison();
    p1.poison();
    g->replay(c1, c1.binding());
    expect_chain(ha1, hb1, s1.download(), p1.download());
  }
  EXPECT_EQ(g->stats().records, 1u);
  EXPECT_EQ(g->stats().instantiations, 1u);
  EXPECT_EQ(g->stats().updates, 0u);

  // Binding 2: recorded again and applied to the instantiated graph in place (same topology:
  // same kernels, same cuBLASLt plan for the same alignment), results on the new buffers; the
  // old buffers are left alone.
  s1.poison();
  g->replay(c2, c2.binding());
  EXPECT_EQ(g->stats().records, 2u);
  EXPECT_EQ(g->stats().updates + g->stats().instantiations, 2u);
  EXPECT_EQ(g->stats().updates, 1u) << "cudaGraphExecUpdate refused a pointer-only change";
  expect_chain(ha2, hb2, s2.download(), p2.download());
  for (float v : s1.download()) ASSERT_TRUE(std::isnan(v));

  // New data in the same buffers: replays only (the fast path), reading the new contents.
  ha2 = randn(Chain::n_el, 5);
  a2.upload(ha2);
  for (int rep = 0; rep < 2; ++rep) g->replay(c2, c2.binding());
  expect_chain(ha2, hb2, s2.download(), p2.download());
  EXPECT_EQ(g->stats().records, 2u);
  EXPECT_EQ(g->stats().replays, 6u);

  // Back to binding 1.
  g->replay(c1, c1.binding());
  expect_chain(ha1, hb1, s1.download(), p1.download());
  EXPECT_EQ(g->stats().records, 3u);
  g.reset();
  gpu().synchronize();
}

TEST(CudaCapture, CacheHandsGraphsToTheNextOwnerOfTheKey) {
  LC_REQUIRE_CUDA();
  gpu().graph_cache_clear();
  Dev a(Chain::n_el), b(Chain::n_el), s(Chain::n_el), p(std::size_t(Chain::m * Chain::n));
  Dev a2(Chain::n_el), s2(Chain::n_el), p2(std::size_t(Chain::m * Chain::n));
  Chain c{a.ptr(), b.ptr(), s.ptr(), p.ptr()}, c2{a2.ptr(), b.ptr(), s2.ptr(), p2.ptr()};
  c();
  gpu().synchronize();
  auto ha = randn(Chain::n_el, 6), hb = randn(Chain::n_el, 7), ha2 = randn(Chain::n_el, 8);
  a.upload(ha);
  b.upload(hb);
  a2.upload(ha2);
  const lc::CaptureKey key{"test.capture.reuse", {Chain::m, Chain::k, Chain::n}};
  const lc::GraphCacheStats s0 = gpu().graph_cache_stats();
  {
    auto g = gpu().capture_graph(key);
    g->replay(c, c.binding());
    expect_chain(ha, hb, s.download(), p.download());
  }
  const lc::GraphCacheStats s1 = gpu().graph_cache_stats();
  EXPECT_EQ(s1.idle, s0.idle + 1);
  EXPECT_EQ(s1.instantiations, s0.instantiations + 1);
  {
    // A second owner of the same key picks that graph up and records its own buffers into it,
    // even when they are the very same buffers (a new owner never trusts the old recording).
    auto g = gpu().capture_graph(key);
    EXPECT_EQ(gpu().graph_cache_stats().reused, s1.reused + 1);
    EXPECT_EQ(gpu().graph_cache_stats().idle, s0.idle);
    s2.poison();
    p2.poison();
    g->replay(c2, c2.binding());
    EXPECT_EQ(g->stats().records, 1u);
    EXPECT_EQ(g->stats().updates, 1u);
    EXPECT_EQ(g->stats().instantiations, 0u);
    expect_chain(ha2, hb, s2.download(), p2.download());
  }
  // Another key is a new graph.
  {
    auto g = gpu().capture_graph({"test.capture.other", {1}});
    g->replay(c, c.binding());
    EXPECT_EQ(g->stats().instantiations, 1u);
  }
  gpu().graph_cache_clear();
  EXPECT_EQ(gpu().graph_cache_stats().idle, 0u);
  // Buffers handed to graphs went back to the allocator: the backend still works.
  c();
  expect_chain(ha, hb, s.download(), p.download());
}

// Backend::empty_cache frees the idle graphs (a closed session's) with the memory they hold.
TEST(CudaCapture, EmptyCacheFreesIdleGraphs) {
  LC_REQUIRE_CUDA();
  Dev a(Chain::n_el), b(Chain::n_el), s(Chain::n_el), p(std::size_t(Chain::m * Chain::n));
  Chain c{a.ptr(), b.ptr(), s.ptr(), p.ptr()};
  c();
  gpu().synchronize();
  {
    auto g = gpu().capture_graph({"test.capture.empty_cache", {}});
    g->replay(c, c.binding());
  }
  EXPECT_GE(gpu().graph_cache_stats().idle, 1u);
  gpu().empty_cache();
  EXPECT_EQ(gpu().graph_cache_stats().idle, 0u);
  auto ha = randn(Chain::n_el, 15), hb = randn(Chain::n_el, 16);
  a.upload(ha);
  b.upload(hb);
  c();
  expect_chain(ha, hb, s.download(), p.download());
}

// Work that throws while being recorded: the capture is ended, the exception reaches the
// caller, the stream is usable and the next replay records properly.
TEST(CudaCapture, WorkThatThrowsLeavesTheStreamUsable) {
  LC_REQUIRE_CUDA();
  Dev a(Chain::n_el), b(Chain::n_el), s(Chain::n_el), p(std::size_t(Chain::m * Chain::n));
  Chain c{a.ptr(), b.ptr(), s.ptr(), p.ptr()};
  c();
  gpu().synchronize();
  auto g = gpu().capture_graph({"test.capture.throws", {}});
  auto bad = [&] {
    c();
    throw std::runtime_error("refused");
  };
  EXPECT_THROW(g->replay(bad, c.binding()), std::runtime_error);
  EXPECT_EQ(g->stats().records, 0u);
  auto ha = randn(Chain::n_el, 9), hb = randn(Chain::n_el, 10);
  a.upload(ha);
  b.upload(hb);
  gpu().synchronize();
  g->replay(c, c.binding());
  EXPECT_EQ(g->stats().records, 1u);
  expect_chain(ha, hb, s.download(), p.download());
}

// Resident session with upload="never": a rebind to other device tensors is re-recorded into
// the same graph (SessionStats::graph_records), not a new capture per rebind.
TEST(CudaCapture, SessionRebindRecordsIntoTheSameGraph) {
  LC_REQUIRE_CUDA();
  const std::int64_t m = 65, k = 33, n = 17;
  auto av = randn(std::size_t(m * k), 11), bv = randn(std::size_t(k * n), 12),
       av2 = randn(std::size_t(m * k), 13);
  auto up = [](std::vector<float>& v, std::vector<std::int64_t> shape) {
    lc::Tensor t = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cuda);
    gpu().copy_from_host(t.data(), v.data(), v.size() * sizeof(float));
    return t;
  };
  lc::Tensor a = up(av, {m, k}), b = up(bv, {k, n}), a2 = up(av2, {m, k});
  std::vector<float> ov(std::size_t(m * n));
  const std::int64_t oshape[2] = {m, n}, ostr[2] = {n, 1};
  lc::Tensor out = lc::Tensor::wrap(ov.data(), 2, oshape, ostr, lc::DType::f32, lc::DeviceKind::cpu);
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  p.upload = lc::UploadMode::never;
  lc::Matmul2dSession s(a, b, p, /*use_graph=*/true);
  ASSERT_TRUE(s.uses_graph());
  auto check = [&](const std::vector<float>& A) {
    std::fill(ov.begin(), ov.end(), std::numeric_limits<float>::quiet_NaN());
    s.download_into(out);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double r = 0;
        for (std::int64_t q = 0; q < k; ++q) r += double(A[std::size_t(i * k + q)]) * bv[std::size_t(q * n + j)];
        ASSERT_NEAR(ov[std::size_t(i * n + j)], r, 1e-3 * (1 + std::fabs(r)));
      }
  };
  s.start_into({&a, &b}, out);
  s.run_batch_sync_no_download_into({&a, &b}, out, 4);
  check(av);
  EXPECT_EQ(s.stats().graph_records, 1u);
  s.run_batch_sync_no_download_into({&a2, &b}, out, 4);
  check(av2);
  EXPECT_EQ(s.stats().graph_records, 2u);
  s.run_batch_sync_no_download_into({&a2, &b}, out, 4);
  EXPECT_EQ(s.stats().graph_records, 2u);
  s.run_batch_sync_no_download_into({&a, &b}, out, 1);
  check(av);
  EXPECT_EQ(s.stats().graph_records, 3u);
  EXPECT_EQ(s.stats().graph_replays, 13u);
}

// conv_attention_nchw's graph mode goes through the same seam: fresh inputs each call, results
// as eager, one graph checked out per cached shape.
TEST(CudaCapture, ConvAttentionGraphModeUsesTheSeam) {
  LC_REQUIRE_CUDA();
  auto wv = randn(6 * 3 * 3 * 3, 14);
  const std::int64_t xs[4] = {1, 3, 8, 8}, xst[4] = {192, 64, 8, 1};
  const std::int64_t ws[4] = {6, 3, 3, 3}, wst[4] = {27, 9, 3, 1};
  lc::Tensor w = lc::Tensor::wrap(wv.data(), 4, ws, wst, lc::DType::f32, lc::DeviceKind::cpu);
  lc::ConvAttentionParams prm;
  prm.seq_len = 20;
  prm.head_dim = 24;
  prm.pad_h = prm.pad_w = 1;
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  const std::size_t out_before = gpu().graph_cache_stats().checked_out;
  for (int rep = 0; rep < 4; ++rep) {
    auto xv = randn(192, 20 + unsigned(rep));
    lc::Tensor x = lc::Tensor::wrap(xv.data(), 4, xs, xst, lc::DType::f32, lc::DeviceKind::cpu);
    prm.graph = false;
    lc::Tensor eager = lc::conv_attention_nchw(x, w, nullptr, prm, p).to(lc::DeviceKind::cpu);
    prm.graph = true;
    lc::Tensor g = lc::conv_attention_nchw(x, w, nullptr, prm, p).to(lc::DeviceKind::cpu);
    for (int i = 0; i < 20 * 24; ++i)
      ASSERT_NEAR(g.data_as<float>()[i], eager.data_as<float>()[i], 1e-5) << "rep " << rep;
  }
  // This thread's graph-mode cache holds the one graph of this shape.
  EXPECT_GE(gpu().graph_cache_stats().checked_out, out_before + 1);
}

}  // namespace
