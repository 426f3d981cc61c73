// CPU GEMM paths vs the float64 reference (reference.h) on fresh random inputs: the automatic
// choice, blas, pooled (single-threaded sgemm tiles in our pool), skinny, blocked per ISA, the
// fused epilogues, strided leading dimensions and the path rules.
//
// Every case poisons the output with NaN first, so a kernel that skips an element fails the
// count_nan check, and covers the size classes that switch code paths: 1, primes and other
// non-multiples of the vector/tile widths, and sizes big enough for the threaded / BLAS /
// blocked paths. Forced-path entry points (gemm_with, gemm_blocked_with_isa) make each path run
// regardless of the automatic thresholds.
//
// Tolerance: relative Frobenius error <= 1e-5 for fp32 (inputs in [-1, 1]; dot products up
// to k ~ 1000 accumulate ~sqrt(k) * 6e-8 relative error, well inside it).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "reference.h"

namespace {

using lc::ref::Rng;
using i64 = std::int64_t;
constexpr double kTol = 1e-5;

// ---- matmul ------------------------------------------------------------------------------

void check_matmul(Rng& rng, i64 m, i64 k, i64 n, bool trans_b, bool bias, lc::Activation act,
                  lc::cpu::GemmPath path, int isa = -1) {
  SCOPED_TRACE(rng.describe() + " m=" + std::to_string(m) + " k=" + std::to_string(k) +
               " n=" + std::to_string(n) + " trans_b=" + std::to_string(trans_b) +
               " bias=" + std::to_string(bias) + " act=" + std::to_string(int(act)) +
               " path=" + std::to_string(int(path)) + " isa=" + std::to_string(isa));
  auto a = rng.vec(m * k), b = rng.vec(k * n), bv = rng.vec(n);
  std::vector<float> out(m * n);
  lc::ref::poison(out);
  lc::MatmulArgs p;
  p.a = a.data();
  p.b = b.data();
  p.bias = bias ? bv.data() : nullptr;
  p.out = out.data();
  p.m = m;
  p.k = k;
  p.n = n;
  p.trans_b = trans_b;
  p.act = act;
  const i64 ldb = trans_b ? k : n;
  const float* bias_p = bias ? bv.data() : nullptr;
  if (isa >= 0) {
    lc::cpu::gemm_blocked_with_isa(isa, m, n, k, a.data(), k, b.data(), ldb, trans_b, out.data(), n);
    lc::cpu::bias_act_rows(out.data(), m, n, n, bias_p, act);
  } else if (path == lc::cpu::GemmPath::automatic) {
    lc::cpu::matmul(p);
  } else {
    lc::cpu::gemm_with(path, m, n, k, a.data(), k, b.data(), ldb, trans_b, out.data(), n);
    lc::cpu::bias_act_rows(out.data(), m, n, n, bias_p, act);
  }
  EXPECT_EQ(lc::ref::count_nan(out), 0u) << "output not fully written";
  EXPECT_LE(lc::ref::matmul_error(out, p), kTol)
      << "max abs diff " << lc::ref::max_abs_diff(out, lc::ref::matmul(p));
}

TEST(CpuMatmul, SmallAndOddShapesEveryPath) {
  Rng rng;
  const i64 sizes[][3] = {{1, 1, 1}, {1, 7, 1}, {7, 13, 31}, {13, 1, 5}, {31, 61, 17},
                          {5, 127, 3}, {61, 33, 65}, {2, 300, 9}};
  for (auto path : {lc::cpu::GemmPath::automatic, lc::cpu::GemmPath::tiny,
                    lc::cpu::GemmPath::blocked, lc::cpu::GemmPath::blas,
                    lc::cpu::GemmPath::pooled}) {
    for (auto& s : sizes)
      for (bool tb : {false, true})
        check_matmul(rng, s[0], s[1], s[2], tb, tb, lc::Activation::none, path);
  }
}

TEST(CpuMatmul, BiasAndActivations) {
  Rng rng;
  for (auto act : {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu})
    for (bool bias : {false, true})
      for (bool tb : {false, true}) {
        check_matmul(rng, 9, 23, 37, tb, bias, act, lc::cpu::GemmPath::automatic);
        check_matmul(rng, 130, 70, 257, tb, bias, act, lc::cpu::GemmPath::automatic);
      }
}

TEST(CpuMatmul, LargeThreadedEveryIsaAndBlas) {
  Rng rng;
  // > KC deep (two packed depth blocks, accumulate path), > MC rows, non-multiple widths.
  for (int isa = 0; isa < lc::cpu::gemm_isa_count(); ++isa)
    for (bool tb : {false, true})
      check_matmul(rng, 257, 300, 131, tb, true, lc::Activation::none,
                   lc::cpu::GemmPath::automatic, isa);
  check_matmul(rng, 200, 513, 127, false, true, lc::Activation::relu, lc::cpu::GemmPath::blas);
  check_matmul(rng, 256, 256, 256, true, true, lc::Activation::gelu,
               lc::cpu::GemmPath::automatic);
  // Wider than one NC block of the built-in kernel.
  check_matmul(rng, 7, 19, 2100, false, false, lc::Activation::none, lc::cpu::GemmPath::blocked);
}

TEST(CpuMatmul, ZeroDepthWritesZeros) {
  std::vector<float> out(6);
  lc::ref::poison(out);
  for (auto path : {lc::cpu::GemmPath::tiny, lc::cpu::GemmPath::blocked, lc::cpu::GemmPath::blas,
                    lc::cpu::GemmPath::pooled}) {
    lc::ref::poison(out);
    lc::cpu::gemm_with(path, 2, 3, 0, nullptr, 0, nullptr, 3, false, out.data(), 3);
    for (float v : out) EXPECT_EQ(v, 0.0f);
  }
  lc::ref::poison(out);
  lc::cpu::gemm_pooled_with_tiles(1, 1, 2, 3, 0, nullptr, 0, nullptr, 3, false, out.data(), 3);
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

// ---- pooled GEMM (single-threaded sgemm tiles in our pool) --------------------------------

// C = A @ B with padded leading dimensions: A is m x lda (lda >= k), B is k x ldb (ldb >= n) or,
// with trans_b, n x ldb (ldb >= k), C is m x ldc (ldc >= n). The padding of A and B is NaN
// (a kernel that reads it produces NaN), C is NaN everywhere; afterwards C's padding must still
// be NaN (not written) and its m x n block must match the float64 reference. `run` does the
// GEMM: run(a, lda, b, ldb, c, ldc).
template <class Run>
void check_gemm_strided(Rng& rng, i64 m, i64 k, i64 n, bool trans_b, i64 pad_a, i64 pad_b,
                        i64 pad_c, const std::string& what, Run&& run) {
  SCOPED_TRACE(rng.describe() + " " + what + " m=" + std::to_string(m) + " k=" +
               std::to_string(k) + " n=" + std::to_string(n) + " trans_b=" +
               std::to_string(trans_b) + " pads=" + std::to_string(pad_a) + "," +
               std::to_string(pad_b) + "," + std::to_string(pad_c));
  const i64 lda = k + pad_a, ldc = n + pad_c;
  const i64 brows = trans_b ? n : k, bcols = trans_b ? k : n, ldb = bcols + pad_b;
  auto a = rng.vec(m * k), b = rng.vec(k * n);
  std::vector<float> ap(static_cast<std::size_t>(m * lda)), bp(static_cast<std::size_t>(brows * ldb)),
      cp(static_cast<std::size_t>(m * ldc));
  lc::ref::poison(ap);
  lc::ref::poison(bp);
  lc::ref::poison(cp);
  for (i64 i = 0; i < m; ++i)
    for (i64 t = 0; t < k; ++t) ap[i * lda + t] = a[i * k + t];
  for (i64 r = 0; r < brows; ++r)
    for (i64 t = 0; t < bcols; ++t) bp[r * ldb + t] = b[r * bcols + t];
  run(ap.data(), lda, bp.data(), ldb, cp.data(), ldc);
  std::vector<float> out(static_cast<std::size_t>(m * n));
  std::size_t pad_nan = 0;
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) out[i * n + j] = cp[i * ldc + j];
    for (i64 j = n; j < ldc; ++j) pad_nan += std::isnan(cp[i * ldc + j]) ? 1 : 0;
  }
  EXPECT_EQ(pad_nan, static_cast<std::size_t>(m * pad_c)) << "C's padding was written";
  EXPECT_EQ(lc::ref::count_nan(out), 0u) << "output not fully written (or padding read)";
  lc::MatmulArgs p;
  p.a = a.data();
  p.b = b.data();
  p.m = m;
  p.k = k;
  p.n = n;
  p.trans_b = trans_b;
  EXPECT_LE(lc::ref::matmul_error(out, p), kTol)
      << "max abs diff " << lc::ref::max_abs_diff(out, lc::ref::matmul(p));
}

// Primes, size-1 dimensions, shapes whose tiles do not divide evenly, and shapes above the
// default pooled rule's lower end (2^21 multiply-adds), with bias / activation epilogues.
TEST(CpuMatmul, PooledOddShapes) {
  Rng rng;
  const i64 sizes[][3] = {{1, 1, 1},     {1, 300, 257}, {257, 300, 1},  {1, 1, 1031},
                          {1031, 1, 1},  {97, 31, 211}, {211, 13, 127}, {127, 257, 61},
                          {131, 97, 103}, {160, 160, 160}, {173, 131, 157}, {2, 3001, 2},
                          {509, 17, 5},  {3, 2048, 257}};
  for (auto& s : sizes)
    for (bool tb : {false, true})
      check_matmul(rng, s[0], s[1], s[2], tb, tb, tb ? lc::Activation::gelu : lc::Activation::none,
                   lc::cpu::GemmPath::pooled);
}

// Forced tile sizes: many tiles (more than threads, so the pool's dynamic claiming runs too),
// tiles that are not multiples of anything, 1x1 tiles, tiles larger than the matrix.
TEST(CpuMatmul, PooledForcedTilesUnevenEdges) {
  Rng rng;
  const i64 tiles[][2] = {{16, 32}, {8, 16}, {7, 5}, {1, 1}, {1, 1000}, {1000, 3}, {64, 64}, {5000, 5000}};
  const i64 sizes[][3] = {{37, 53, 41}, {100, 7, 130}, {1, 29, 67}, {61, 1, 1}, {33, 300, 17}};
  for (auto& t : tiles)
    for (auto& s : sizes)
      for (bool tb : {false, true})
        check_gemm_strided(rng, s[0], s[1], s[2], tb, 0, 0, 0,
                           "tiles " + std::to_string(t[0]) + "x" + std::to_string(t[1]),
                           [&](const float* a, i64 lda, const float* b, i64 ldb, float* c, i64 ldc) {
                             lc::cpu::gemm_pooled_with_tiles(t[0], t[1], s[0], s[2], s[1], a, lda,
                                                             b, ldb, tb, c, ldc);
                           });
}

// The fused epilogue (GemmEpilogue: bias + residual + activation, applied per tile on the pooled
// path): every activation, with and without bias / residual, padded leading dimensions of A, B,
// C and the residual (NaN in every padding: C's must stay unwritten, A's / B's / the
// residual's must never be read), many forced tile shapes and every GEMM path, against the
// float64 reference.
void check_gemm_fused(Rng& rng, i64 m, i64 k, i64 n, bool trans_b, bool bias, bool residual,
                      lc::Activation act, i64 pad, i64 tile_m, i64 tile_n,
                      lc::cpu::GemmPath path) {
  SCOPED_TRACE(rng.describe() + " m=" + std::to_string(m) + " k=" + std::to_string(k) +
               " n=" + std::to_string(n) + " trans_b=" + std::to_string(trans_b) + " bias=" +
               std::to_string(bias) + " residual=" + std::to_string(residual) + " act=" +
               std::to_string(int(act)) + " pad=" + std::to_string(pad) + " tiles=" +
               std::to_string(tile_m) + "x" + std::to_string(tile_n) + " path=" +
               std::to_string(int(path)));
  const i64 lda = k + pad, ldc = n + pad, ldr = n + 2 * pad;
  const i64 brows = trans_b ? n : k, bcols = trans_b ? k : n, ldb = bcols + pad;
  // Wider inputs than [-1, 1] so GELU sees both tails.
  auto a = rng.vec(m * k, -2.0f, 2.0f), b = rng.vec(k * n), bv = rng.vec(n, -3.0f, 3.0f),
       rv = rng.vec(m * n, -3.0f, 3.0f);
  std::vector<float> ap(static_cast<std::size_t>(m * lda)), bp(static_cast<std::size_t>(brows * ldb)),
      cp(static_cast<std::size_t>(m * ldc)), rp(static_cast<std::size_t>(m * ldr));
  lc::ref::poison(ap);
  lc::ref::poison(bp);
  lc::ref::poison(cp);
  lc::ref::poison(rp);
  for (i64 i = 0; i < m; ++i)
    for (i64 t = 0; t < k; ++t) ap[i * lda + t] = a[i * k + t];
  for (i64 r = 0; r < brows; ++r)
    for (i64 t = 0; t < bcols; ++t) bp[r * ldb + t] = b[r * bcols + t];
  for (i64 i = 0; i < m; ++i)
    for (i64 j = 0; j < n; ++j) rp[i * ldr + j] = rv[i * n + j];
  lc::cpu::GemmEpilogue ep;
  ep.bias = bias ? bv.data() : nullptr;
  ep.residual = residual ? rp.data() : nullptr;
  ep.ldr = ldr;
  ep.act = act;
  if (tile_m != 0)
    lc::cpu::gemm_pooled_fused_with_tiles(tile_m, tile_n, m, n, k, ap.data(), lda, bp.data(), ldb,
                                          trans_b, cp.data(), ldc, ep);
  else
    lc::cpu::gemm_fused(path, m, n, k, ap.data(), lda, bp.data(), ldb, trans_b, cp.data(), ldc, ep);
  std::vector<float> out(static_cast<std::size_t>(m * n));
  std::size_t pad_nan = 0;
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) out[i * n + j] = cp[i * ldc + j];
    for (i64 j = n; j < ldc; ++j) pad_nan += std::isnan(cp[i * ldc + j]) ? 1 : 0;
  }
  EXPECT_EQ(pad_nan, static_cast<std::size_t>(m * pad)) << "C's padding was written";
  lc::MatmulArgs p;
  p.a = a.data();
  p.b = b.data();
  p.bias = ep.bias;
  p.residual = residual ? rv.data() : nullptr;
  p.m = m;
  p.k = k;
  p.n = n;
  p.trans_b = trans_b;
  p.act = act;
  // Relative to the result, with the denominator floored at a tenth of the terms' size
  // (sum_t |a b| + |bias| + |residual| per element): bias and residual can cancel the product
  // to near zero, where float32's rounding of each term is not small next to the result
  // (m = k = n = 1: a result of ~2e-3 off by 2e-8, seed 504277368 in CI's ASan stage).
  const std::vector<double> ref = lc::ref::matmul(p);
  double num = 0.0, den = 0.0, terms = 0.0;
  for (i64 i = 0; i < m; ++i)
    for (i64 j = 0; j < n; ++j) {
      double t = (bias ? std::fabs(bv[j]) : 0.0) + (residual ? std::fabs(rv[i * n + j]) : 0.0);
      for (i64 q = 0; q < k; ++q)
        t += std::fabs(static_cast<double>(a[i * k + q]) * (trans_b ? b[j * k + q] : b[q * n + j]));
      const double r = ref[static_cast<std::size_t>(i * n + j)];
      const double dlt = static_cast<double>(out[static_cast<std::size_t>(i * n + j)]) - r;
      num += dlt * dlt;
      den += r * r;
      terms += t * t;
    }
  EXPECT_EQ(lc::ref::count_nan(out), 0u) << "output not fully written";
  const double d = std::max(den, 0.01 * terms);
  EXPECT_LE(d > 0.0 ? std::sqrt(num / d) : std::sqrt(num), kTol)
      << "max abs diff " << lc::ref::max_abs_diff(out, ref);
}

TEST(CpuMatmul, FusedEpiloguePooledTiles) {
  Rng rng;
  const i64 sizes[][3] = {{1, 1, 1}, {1, 29, 67}, {37, 53, 41}, {61, 1, 1}, {97, 31, 211}, {16, 384, 1536}};
  const i64 tiles[][2] = {{16, 32}, {7, 5}, {1, 1000}, {1000, 3}, {5000, 5000}};
  const lc::Activation acts[] = {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu,
                                 lc::Activation::gelu_erf};
  int c = 0;
  for (auto& s : sizes)
    for (auto& t : tiles)
      for (auto act : acts) {
        ++c;  // walk the flag combinations across the cases instead of multiplying them
        check_gemm_fused(rng, s[0], s[1], s[2], c % 2 == 1, c % 3 != 0, c % 4 < 2, act, c % 3,
                         t[0], t[1], lc::cpu::GemmPath::pooled);
      }
}

TEST(CpuMatmul, FusedEpilogueEveryPath) {
  Rng rng;
  const i64 sizes[][3] = {{1, 1, 1}, {7, 13, 31}, {131, 97, 103}, {160, 160, 160}, {128, 384, 1536}};
  for (auto path : {lc::cpu::GemmPath::automatic, lc::cpu::GemmPath::tiny,
                    lc::cpu::GemmPath::blocked, lc::cpu::GemmPath::blas,
                    lc::cpu::GemmPath::pooled})
    for (auto& s : sizes)
      for (auto act : {lc::Activation::none, lc::Activation::gelu_erf})
        for (bool res : {false, true})
          check_gemm_fused(rng, s[0], s[1], s[2], res, true, res, act, res ? 3 : 0, 0, 0, path);
  // k = 0: C = act(bias + residual).
  check_gemm_fused(rng, 5, 0, 9, false, true, true, lc::Activation::gelu_erf, 2, 0, 0,
                   lc::cpu::GemmPath::pooled);
  check_gemm_fused(rng, 5, 0, 9, false, true, true, lc::Activation::gelu_erf, 2, 2, 2,
                   lc::cpu::GemmPath::pooled);
  // m = 0 / n = 0: nothing written, nothing read.
  lc::cpu::GemmEpilogue ep;
  ep.act = lc::Activation::gelu_erf;
  lc::cpu::gemm_fused(lc::cpu::GemmPath::pooled, 0, 5, 3, nullptr, 3, nullptr, 5, false, nullptr,
                      5, ep);
  lc::cpu::gemm_fused(lc::cpu::GemmPath::blas, 4, 0, 3, nullptr, 3, nullptr, 0, false, nullptr, 0,
                      ep);
}

// gemm_skinny on padded A / B / C (NaN in every padding), each output against the float64 dot
// product within 2e-6 * sum |a_t b_t| (its forward error bound with room to spare).
void check_skinny_bound(Rng& rng, i64 m, i64 k, i64 n, i64 pad) {
  SCOPED_TRACE(rng.describe() + " skinny bound m=" + std::to_string(m) + " k=" +
               std::to_string(k) + " n=" + std::to_string(n) + " pad=" + std::to_string(pad));
  const i64 lda = k + pad, ldb = k + pad, ldc = n + pad;
  std::vector<float> a(static_cast<std::size_t>(m * lda)), b(static_cast<std::size_t>(n * ldb)),
      c(static_cast<std::size_t>(m * ldc));
  lc::ref::poison(a);
  lc::ref::poison(b);
  lc::ref::poison(c);
  auto av = rng.vec(m * k, -2.0f, 2.0f), bv = rng.vec(n * k);
  for (i64 i = 0; i < m; ++i)
    for (i64 t = 0; t < k; ++t) a[i * lda + t] = av[i * k + t];
  for (i64 j = 0; j < n; ++j)
    for (i64 t = 0; t < k; ++t) b[j * ldb + t] = bv[j * k + t];
  lc::cpu::gemm_skinny(m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, nullptr);
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < n; ++j) {
      double dot = 0.0, mag = 0.0;
      for (i64 t = 0; t < k; ++t) {
        const double p = double(av[i * k + t]) * double(bv[j * k + t]);
        dot += p;
        mag += std::fabs(p);
      }
      EXPECT_LE(std::fabs(double(c[i * ldc + j]) - dot), 2e-6 * mag) << "i=" << i << " j=" << j;
    }
    for (i64 j = n; j < ldc; ++j) EXPECT_TRUE(std::isnan(c[i * ldc + j])) << "C's padding written";
  }
}

// The skinny kernel (few rows x a [n, k] weight, no packing): every row count up to its limit
// (register-tile tails 1-3), depths around the vector widths (16 lanes and the scalar k tail),
// odd and 16-aligned column counts (column tails, the per-task chunks of 16), padded leading
// dimensions with NaN in every padding, and the fused epilogue, against float64. Forced through
// GemmPath::skinny and reached automatically (gemm_fused / matmul with trans_b).
TEST(CpuMatmul, SkinnyRowsDepthsColumnsAndEpilogue) {
  Rng rng;
  const i64 rows[] = {1, 2, 3, 4, 5, 7, 16, 31, 32};
  const i64 depths[] = {16, 17, 31, 64, 383};
  const i64 cols[] = {1, 3, 5, 16, 17, 100, 1153};
  const lc::Activation acts[] = {lc::Activation::none, lc::Activation::relu,
                                 lc::Activation::gelu, lc::Activation::gelu_erf};
  int c = 0;
  for (i64 m : rows)
    for (i64 k : depths)
      for (i64 n : cols) {
        ++c;  // walk the epilogue / padding combinations across the shapes
        ASSERT_TRUE(lc::cpu::gemm_skinny_fits(m, n, k, true));
        if (m * n < 16) {
          // A handful of outputs: the relative error of such a tiny vector measures how much
          // its few dot products cancel, not the kernel (seen: one 16-term dot product of
          // 0.017, 1.1e-5 relative). Each output is held to the dot product's own error bound,
          // a few ulps of sum |a_t b_t| (16-lane partial sums, a tree, a <= 15-term tail).
          check_skinny_bound(rng, m, k, n, c % 3);
          continue;
        }
        check_gemm_fused(rng, m, k, n, true, c % 2 == 0, c % 3 == 0, acts[c % 4], c % 3,
                         0, 0, c % 5 == 0 ? lc::cpu::GemmPath::automatic
                                          : lc::cpu::GemmPath::skinny);
      }
  // Outside its limits the forced path falls back to the default one (still correct).
  EXPECT_FALSE(lc::cpu::gemm_skinny_fits(33, 64, 64, true));
  EXPECT_FALSE(lc::cpu::gemm_skinny_fits(8, 64, 15, true));
  EXPECT_FALSE(lc::cpu::gemm_skinny_fits(8, 64, 64, false));
  check_gemm_fused(rng, 33, 40, 29, true, true, true, lc::Activation::gelu, 1, 0, 0,
                   lc::cpu::GemmPath::skinny);
  check_gemm_fused(rng, 8, 40, 29, false, true, false, lc::Activation::none, 2, 0, 0,
                   lc::cpu::GemmPath::skinny);
  for (i64 m : {1, 16, 32})
    check_matmul(rng, m, 384, 1152, true, true, lc::Activation::gelu_erf,
                 lc::cpu::GemmPath::automatic);
  // Every instruction set's kernel (SSE 4x2, AVX2 4x2, AVX-512 4x4 register tiles).
  for (int isa = 0; isa < lc::cpu::gemm_isa_count(); ++isa)
    for (auto s3 : {std::array<i64, 3>{1, 16, 1}, {3, 17, 5}, {7, 100, 33}, {32, 383, 37}})
      check_gemm_strided(rng, s3[0], s3[1], s3[2], true, 3, 5, 1, "skinny isa " + std::to_string(isa),
                         [&](const float* a, i64 lda, const float* b, i64 ldb, float* c, i64 ldc) {
                           lc::cpu::gemm_skinny(s3[0], s3[2], s3[1], a, lda, b, ldb, c, ldc,
                                                nullptr, isa);
                         });
}

// The vectorised epilogue's GELUs at every instruction set the CPU runs keep the accuracy of
// vec_math.h's scalar forms across the range (tails included): ~1e-6 relative near 0 and
// positive x, absolute ~1e-7 in the far negative tail.
TEST(CpuMatmul, EpilogueGeluErfAccuracy) {
  const i64 n = 20001;
  std::vector<float> x(n), y(n);
  for (i64 i = 0; i < n; ++i) x[i] = -10.0f + 20.0f * static_cast<float>(i) / (n - 1);
  y = x;
  lc::cpu::GemmEpilogue ep;
  ep.act = lc::Activation::gelu_erf;
  lc::cpu::gemm_epilogue(y.data(), 1, n, n, ep, false);
  double worst = 0.0;
  for (i64 i = 0; i < n; ++i) {
    const double xd = x[i], ref = 0.5 * xd * std::erfc(-xd / std::sqrt(2.0));
    worst = std::max(worst, std::fabs(y[i] - ref) / std::max(std::fabs(ref), 1e-3));
  }
  EXPECT_LE(worst, 3e-6);
}

// Leading dimensions larger than the rows (sub-matrices of bigger buffers), for every path.
TEST(CpuMatmul, StridedLeadingDimensionsEveryPath) {
  Rng rng;
  const i64 sizes[][3] = {{1, 1, 1}, {7, 13, 31}, {61, 33, 65}, {131, 97, 103}, {160, 160, 160}};
  for (auto path : {lc::cpu::GemmPath::tiny, lc::cpu::GemmPath::blocked, lc::cpu::GemmPath::blas,
                    lc::cpu::GemmPath::pooled})
    for (auto& s : sizes)
      for (bool tb : {false, true})
        check_gemm_strided(rng, s[0], s[1], s[2], tb, 3, 5, 7,
                           "path " + std::to_string(int(path)),
                           [&](const float* a, i64 lda, const float* b, i64 ldb, float* c, i64 ldc) {
                             lc::cpu::gemm_with(path, s[0], s[2], s[1], a, lda, b, ldb, tb, c, ldc);
                           });
  for (bool tb : {false, true})
    check_gemm_strided(rng, 45, 77, 91, tb, 16, 1, 33, "pooled tiles 16x32",
                       [&](const float* a, i64 lda, const float* b, i64 ldb, float* c, i64 ldc) {
                         lc::cpu::gemm_pooled_with_tiles(16, 32, 45, 91, 77, a, lda, b, ldb, tb, c,
                                                         ldc);
                       });
}

TEST(CpuMatmul, PooledGridShape) {
  // Exact grids for square shapes: square tiles, as many as threads ...
  auto g = lc::cpu::gemm_pooled_grid(512, 512, 512, 16);
  EXPECT_EQ(g.grid_m * g.grid_n, 16);
  EXPECT_EQ(g.tile_m, 128);
  EXPECT_EQ(g.tile_n, 128);
  // ... except small GEMMs (<= 4 waves of <= 2^18-multiply-add tiles): 256^3 on 16 threads
  // runs as 64 tiles of 32x32.
  g = lc::cpu::gemm_pooled_grid(256, 256, 256, 16);
  EXPECT_EQ(g.grid_m * g.grid_n, 64);
  EXPECT_EQ(g.tile_m, 32);
  EXPECT_EQ(g.tile_n, 32);
  g = lc::cpu::gemm_pooled_grid(1024, 1024, 1024, 4);
  EXPECT_EQ(g.tile_m, 512);
  EXPECT_EQ(g.tile_n, 512);
  // Small work: fewer tiles than threads (>= 2^17 multiply-adds each); tiny: one tile.
  g = lc::cpu::gemm_pooled_grid(64, 64, 64, 16);
  EXPECT_EQ(g.grid_m * g.grid_n, 2);
  g = lc::cpu::gemm_pooled_grid(16, 16, 16, 16);
  EXPECT_EQ(g.grid_m * g.grid_n, 1);
  EXPECT_EQ(g.tile_m, 16);
  EXPECT_EQ(g.tile_n, 16);
  // Properties over many shapes and thread counts: never more tiles than threads or than
  // useful, the grid covers C exactly once, tiles are multiples of 8 rows / 16 columns unless
  // they span the whole dimension.
  Rng rng;
  for (int threads : {1, 2, 3, 4, 7, 8, 16, 32, 64}) {
    for (int it = 0; it < 60; ++it) {
      const i64 m = it % 5 == 0 ? 1 : rng.uniform_int(1, 3000);
      const i64 n = it % 7 == 0 ? 1 : rng.uniform_int(1, 3000);
      const i64 k = rng.uniform_int(1, 2000);
      SCOPED_TRACE(rng.describe() + " threads=" + std::to_string(threads) + " m=" +
                   std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
      g = lc::cpu::gemm_pooled_grid(m, n, k, threads);
      const i64 tiles = g.grid_m * g.grid_n;
      EXPECT_GE(tiles, 1);
      const i64 work = m * n * k;
      if (threads > 1 && work > threads * (i64{1} << 18) && work <= 4 * threads * (i64{1} << 18)) {
        // small-tile grids: up to 4 waves of tiles <= 2^18 multiply-adds; where no such grid
        // exists (a thin C), the usual grid (<= threads tiles)
        EXPECT_LE(tiles, 4 * threads);
        if (tiles > threads) EXPECT_LE(g.tile_m * g.tile_n * k, i64{1} << 18);
      } else {
        EXPECT_LE(tiles, threads);
        EXPECT_LE(tiles, std::max<i64>(1, work / (i64{1} << 17)));
      }
      EXPECT_GE(g.tile_m * g.grid_m, m);
      EXPECT_LT(g.tile_m * (g.grid_m - 1), m);
      EXPECT_GE(g.tile_n * g.grid_n, n);
      EXPECT_LT(g.tile_n * (g.grid_n - 1), n);
      EXPECT_TRUE(g.tile_m == m || g.tile_m % 8 == 0) << g.tile_m;
      EXPECT_TRUE(g.tile_n == n || g.tile_n % 16 == 0) << g.tile_n;
    }
  }
}

// OpenBLAS's process-global thread count is 1 only while a pooled / attention-gemm call is in
// flight; concurrent callers (each its own user thread: one gets the pool, the others run
// inline) compute correct results and leave it restored.
TEST(CpuMatmul, PooledRestoresBlasThreadsUnderConcurrency) {
  if (!lc::cpu::have_blas()) GTEST_SKIP() << "no BLAS";
  const int threads = lc::cpu::num_threads();
  EXPECT_EQ(lc::cpu::blas_num_threads_now(), threads);
  const i64 m = 150, k = 140, n = 130;
  Rng seed_rng;
  const std::uint32_t base = seed_rng.seed();
  std::atomic<int> failures{0};
  auto worker = [&](int id) {
    Rng rng(base + static_cast<std::uint32_t>(id));
    for (int it = 0; it < 6; ++it) {
      auto a = rng.vec(m * k), b = rng.vec(k * n);
      std::vector<float> out(m * n);
      lc::ref::poison(out);
      const auto path = (id + it) % 3 == 0 ? lc::cpu::GemmPath::blas : lc::cpu::GemmPath::pooled;
      lc::cpu::gemm_with(path, m, n, k, a.data(), k, b.data(), n, false, out.data(), n);
      if (it % 2 == 1) {
        lc::AttentionArgs p;
        auto q = rng.vec(64 * 16), kk = rng.vec(300 * 16), v = rng.vec(300 * 16);
        std::vector<float> o(64 * 16);
        p.q = q.data(); p.k = kk.data(); p.v = v.data(); p.out = o.data();
        p.sq = 64; p.sk = 300; p.d = 16; p.dv = 16; p.scale = 0.25f;
        lc::cpu::attention_with(lc::cpu::AttentionPath::gemm, p);
        if (lc::ref::rel_error(o, lc::ref::attention(p)) > kTol) failures.fetch_add(1);
      }
      lc::MatmulArgs p;
      p.a = a.data(); p.b = b.data(); p.m = m; p.k = k; p.n = n;
      if (lc::ref::count_nan(out) != 0 || lc::ref::matmul_error(out, p) > kTol) failures.fetch_add(1);
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0) << "seed base " << base;
  EXPECT_EQ(lc::cpu::blas_num_threads_now(), threads);
}

TEST(CpuMatmul, DefaultPathRule) {
  using lc::cpu::GemmPath;
  // Tiny shapes never take the pooled path (nor get tuned).
  EXPECT_FALSE(lc::cpu::gemm_tunable(8, 8, 8));
  EXPECT_FALSE(lc::cpu::gemm_tunable(64, 64, 64));
  EXPECT_FALSE(lc::cpu::gemm_tunable(100, 100, 100));     // 2^19.9: pooled without tuning
  EXPECT_FALSE(lc::cpu::gemm_tunable(512, 1024, 1024));   // 2^29: pooled without tuning
  EXPECT_FALSE(lc::cpu::gemm_tunable(2048, 2048, 1024));  // 2^32 > 2^31
  // The tuner's window (2^29, 2^31] exists only with 2-3 threads; from 4 threads up the pool
  // owns the cores.
  const int threads = lc::cpu::num_threads();
  const bool few = lc::cpu::have_blas() && threads >= 2 && threads < 4;
  EXPECT_EQ(lc::cpu::gemm_tunable(513, 1024, 1024), few);   // just above 2^29
  EXPECT_EQ(lc::cpu::gemm_tunable(1024, 1024, 2048), few);  // 2^31
  const GemmPath tiny = lc::cpu::gemm_default_path(4, 4, 4);
  EXPECT_EQ(tiny, lc::cpu::have_blas() ? GemmPath::blas : GemmPath::tiny);
  EXPECT_EQ(lc::cpu::gemm_default_path(64, 64, 64),  // 2^18: OpenBLAS runs it on one thread
            lc::cpu::have_blas() ? GemmPath::blas : GemmPath::blocked);
  // Above 2^18 multiply-adds: pooled with >= 4 threads at any size; with 2-3 threads pooled up
  // to 2^29 and blas above; blas on one thread.
  for (auto s : {std::array<i64, 3>{100, 100, 100}, {256, 256, 256}, {128, 128, 128},
                 {512, 1024, 1024}, {513, 1024, 1024}, {1024, 1024, 2048}, {2048, 2048, 1024}}) {
    const GemmPath mid = lc::cpu::gemm_default_path(s[0], s[1], s[2]);
    const i64 work = s[0] * s[1] * s[2];
    GemmPath want = GemmPath::blas;
    if (!lc::cpu::have_blas()) want = GemmPath::blocked;
    else if (threads >= 4 || (threads >= 2 && work <= (i64{1} << 29))) want = GemmPath::pooled;
    EXPECT_EQ(mid, want) << s[0] << "x" << s[1] << "x" << s[2] << " threads " << threads;
  }
}

}  // namespace

// CBLAS takes int sizes: a leading dimension past INT_MAX must not reach it (an LP64 OpenBLAS
// prints "illegal value" and computes nothing, leaving C unwritten; CPU fuzz, 2026-12-01, via a
// convolution with an output plane of 2.9e9 pixels). C here is two rows 2^31 + 8 floats apart in
// a reserved, mostly untouched mapping, so only the pages the product writes are backed.
TEST(CpuKernels, GemmWithLeadingDimensionBeyondIntMax) {
  const std::int64_t ldc = (std::int64_t{1} << 31) + 8, m = 2, n = 5, k = 3;
  const std::size_t bytes = static_cast<std::size_t>(ldc + n) * sizeof(float);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
  if (mem == MAP_FAILED) GTEST_SKIP() << "cannot reserve " << bytes << " bytes of address space";
  float* c = static_cast<float*>(mem);
  const std::vector<float> a = {1, 2, 3, -1, 0.5f, 2};                               // [2, 3]
  const std::vector<float> b = {1, 0, 2, 1, -1, 0, 1, 1, 0, 2, 3, -2, 0.5f, 1, 1};  // [3, 5]
  using lc::cpu::GemmPath;
  for (GemmPath path : {GemmPath::automatic, GemmPath::blas, GemmPath::pooled, GemmPath::blocked}) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = std::nanf("");
    lc::cpu::gemm_with(path, m, n, k, a.data(), k, b.data(), n, false, c, ldc);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double ref = 0;
        for (std::int64_t p = 0; p < k; ++p) ref += double(a[i * k + p]) * b[p * n + j];
        EXPECT_NEAR(c[i * ldc + j], ref, 1e-5)
            << "path " << static_cast<int>(path) << " i=" << i << " j=" << j;
      }
  }
  munmap(mem, bytes);
}
