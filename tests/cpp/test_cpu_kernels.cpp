// CPU kernels vs the float64 reference (reference.h) on fresh random inputs: attention, conv2d,
// layernorm / softmax, storage dtypes, elementwise, the thread pool and the backend object (the
// GEMM paths: test_cpu_gemm.cpp).
//
// Every case poisons the output with NaN first, so a kernel that skips an element fails the
// count_nan check, and covers the size classes that switch code paths: 1, primes and other
// non-multiples of the vector/tile widths, and sizes big enough for the threaded / BLAS /
// im2col / blocked paths. Forced-path entry points (gemm_with, attention_with, conv2d_with,
// gemm_blocked_with_isa) make each path run regardless of the automatic thresholds.
//
// Tolerance: relative Frobenius error <= 1e-5 for fp32 (inputs in [-1, 1]; dot products up
// to k ~ 1000 accumulate ~sqrt(k) * 6e-8 relative error, well inside it).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "lightning_core/errors.h"
#include "reference.h"

namespace lc {
Backend& cpu_backend_instance();
}

namespace {

using lc::ref::Rng;
using i64 = std::int64_t;
constexpr double kTol = 1e-5;

#define EXPECT_MATCHES(out, expect)                                            \
  do {                                                                         \
    EXPECT_EQ(lc::ref::count_nan(out), 0u) << "output not fully written";      \
    EXPECT_LE(lc::ref::rel_error(out, expect), kTol)                           \
        << "max abs diff " << lc::ref::max_abs_diff(out, expect);              \
  } while (0)

// ---- attention ---------------------------------------------------------------------------

void check_attention(Rng& rng, i64 sq, i64 sk, i64 d, i64 dv, bool causal,
                     lc::cpu::AttentionPath path, float amp = 1.0f) {
  SCOPED_TRACE(rng.describe() + " sq=" + std::to_string(sq) + " sk=" + std::to_string(sk) +
               " d=" + std::to_string(d) + " dv=" + std::to_string(dv) +
               " causal=" + std::to_string(causal) + " path=" + std::to_string(int(path)));
  auto q = rng.vec(sq * d, -amp, amp), k = rng.vec(sk * d, -amp, amp), v = rng.vec(sk * dv);
  std::vector<float> out(sq * dv);
  lc::ref::poison(out);
  lc::AttentionArgs p;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = out.data();
  p.sq = sq;
  p.sk = sk;
  p.d = d;
  p.dv = dv;
  p.causal = causal;
  p.scale = 1.0f / std::sqrt(static_cast<float>(d));
  lc::cpu::attention_with(path, p);
  EXPECT_MATCHES(out, lc::ref::attention(p));
}

TEST(CpuAttention, ShapesBothPathsCausalAndNot) {
  Rng rng;
  const i64 shapes[][4] = {{1, 1, 1, 1},  {8, 8, 16, 16},  {7, 13, 5, 3},  {13, 7, 16, 31},
                           {31, 61, 8, 9}, {5, 127, 33, 17}, {64, 64, 64, 64}, {2, 257, 7, 8},
                           {33, 1, 4, 4},  {64, 64, 32, 64}, {48, 60, 64, 40},
                           // K^T row padding: d * round_up(sk, 8) > 8192 must not take the
                           // stack path (d * sk alone fits).
                           {3, 1, 4000, 4}, {2, 9, 900, 5}};
  for (auto path : {lc::cpu::AttentionPath::automatic, lc::cpu::AttentionPath::small,
                    lc::cpu::AttentionPath::blocked, lc::cpu::AttentionPath::gemm})
    for (auto& s : shapes)
      for (bool causal : {false, true}) check_attention(rng, s[0], s[1], s[2], s[3], causal, path);
}

TEST(CpuAttention, LargeThreadedAndLongKeys) {
  Rng rng;
  for (bool causal : {false, true}) {
    check_attention(rng, 300, 300, 64, 64, causal, lc::cpu::AttentionPath::automatic);
    check_attention(rng, 45, 1031, 32, 40, causal, lc::cpu::AttentionPath::automatic);
  }
}

TEST(CpuAttention, GemmPathOddShapes) {
  // The BLAS-tiled path (128 query rows x 256-key tiles) forced at sizes that are not
  // multiples of either tile, sq != sk both ways, d != dv, causal and not; without BLAS the
  // forced path runs the blocked one. 300 x 700 causal has rows that see none of a later
  // tile's keys, and 1 x 513 / 700 x 3 hit the one-row and one-tile extremes.
  Rng rng;
  const i64 shapes[][4] = {{300, 700, 48, 40}, {700, 300, 64, 72}, {129, 257, 33, 17},
                           {1, 513, 16, 8},    {700, 3, 8, 24},    {257, 256, 64, 64}};
  for (auto& s : shapes)
    for (bool causal : {false, true})
      check_attention(rng, s[0], s[1], s[2], s[3], causal, lc::cpu::AttentionPath::gemm);
  for (bool causal : {false, true})
    check_attention(rng, 200, 600, 16, 16, causal, lc::cpu::AttentionPath::gemm, 10.0f);
}

TEST(CpuAttention, LargeLogitsStayFinite) {
  // |q.k| * scale up to ~40: a naive exp would overflow without the max subtraction.
  Rng rng;
  for (auto path : {lc::cpu::AttentionPath::small, lc::cpu::AttentionPath::blocked})
    for (bool causal : {false, true}) check_attention(rng, 17, 300, 16, 16, causal, path, 10.0f);
}

TEST(CpuAttention, CausalFirstRowIsFirstValue) {
  // Row 0 of a causal call sees only key 0, so its output is exactly v[0].
  Rng rng;
  for (auto path : {lc::cpu::AttentionPath::small, lc::cpu::AttentionPath::blocked,
                    lc::cpu::AttentionPath::gemm}) {
    auto q = rng.vec(4 * 8), k = rng.vec(6 * 8), v = rng.vec(6 * 5);
    std::vector<float> out(4 * 5);
    lc::ref::poison(out);
    lc::AttentionArgs p;
    p.q = q.data(); p.k = k.data(); p.v = v.data(); p.out = out.data();
    p.sq = 4; p.sk = 6; p.d = 8; p.dv = 5; p.causal = true; p.scale = 0.3f;
    lc::cpu::attention_with(path, p);
    for (int c = 0; c < 5; ++c) EXPECT_FLOAT_EQ(out[c], v[c]) << rng.describe();
  }
}

// ---- conv2d ------------------------------------------------------------------------------

struct ConvCase {
  i64 n, c, h, w, oc, kh, kw, sh, sw, ph, pw;
};

void check_conv(Rng& rng, const ConvCase& s, bool bias, lc::Activation act,
                lc::cpu::ConvPath path, int isa = -1) {
  lc::Conv2dArgs p;
  p.n = s.n; p.c = s.c; p.h = s.h; p.w_in = s.w; p.oc = s.oc; p.kh = s.kh; p.kw = s.kw;
  p.stride_h = s.sh; p.stride_w = s.sw; p.pad_h = s.ph; p.pad_w = s.pw;
  p.oh = (s.h + 2 * s.ph - s.kh) / s.sh + 1;
  p.ow = (s.w + 2 * s.pw - s.kw) / s.sw + 1;
  p.act = act;
  SCOPED_TRACE(rng.describe() + " conv n=" + std::to_string(s.n) + " c=" + std::to_string(s.c) +
               " hw=" + std::to_string(s.h) + "x" + std::to_string(s.w) +
               " oc=" + std::to_string(s.oc) + " k=" + std::to_string(s.kh) + "x" +
               std::to_string(s.kw) + " s=" + std::to_string(s.sh) + "," + std::to_string(s.sw) +
               " p=" + std::to_string(s.ph) + "," + std::to_string(s.pw) +
               " bias=" + std::to_string(bias) + " act=" + std::to_string(int(act)) +
               " path=" + std::to_string(int(path)) + " isa=" + std::to_string(isa));
  auto x = rng.vec(s.n * s.c * s.h * s.w), w = rng.vec(s.oc * s.c * s.kh * s.kw),
       b = rng.vec(s.oc);
  std::vector<float> out(p.n * p.oc * p.oh * p.ow);
  lc::ref::poison(out);
  p.x = x.data(); p.w = w.data(); p.bias = bias ? b.data() : nullptr; p.out = out.data();
  if (isa >= 0) {
    lc::cpu::conv2d_direct_with_isa(isa, p);
  } else {
    lc::cpu::conv2d_with(path, p);
  }
  EXPECT_MATCHES(out, lc::ref::conv2d(p));
}

TEST(CpuConv2d, StridePaddingKernelVariantsBothPaths) {
  Rng rng;
  const ConvCase cases[] = {
      {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},   {1, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1},
      {2, 3, 13, 11, 4, 3, 3, 2, 2, 1, 1}, {1, 2, 9, 13, 3, 5, 3, 1, 2, 2, 0},
      {2, 5, 8, 8, 7, 1, 1, 1, 1, 0, 0},   {1, 4, 10, 10, 2, 4, 4, 3, 3, 2, 2},
      {1, 1, 5, 5, 1, 7, 7, 1, 1, 3, 3},   {3, 2, 6, 9, 3, 2, 3, 2, 1, 0, 2},
      {1, 3, 4, 4, 2, 3, 3, 1, 1, 4, 4},  // padding wider than the kernel: zero border rows
  };
  for (auto path : {lc::cpu::ConvPath::automatic, lc::cpu::ConvPath::direct,
                    lc::cpu::ConvPath::im2col})
    for (auto& c : cases) check_conv(rng, c, true, lc::Activation::none, path);
}

TEST(CpuConv2d, BiasAndActivations) {
  Rng rng;
  for (auto act : {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu})
    for (bool bias : {false, true})
      for (auto path : {lc::cpu::ConvPath::direct, lc::cpu::ConvPath::im2col})
        check_conv(rng, {2, 3, 9, 9, 4, 3, 3, 1, 1, 1, 1}, bias, act, path);
}

TEST(CpuConv2d, LargeIm2colAndThreadedDirect) {
  Rng rng;
  // ~15M MACs: automatic picks im2col + threaded GEMM.
  check_conv(rng, {2, 16, 31, 33, 32, 3, 3, 1, 1, 1, 1}, true, lc::Activation::relu,
             lc::cpu::ConvPath::automatic);
  check_conv(rng, {1, 32, 28, 28, 64, 1, 1, 1, 1, 0, 0}, true, lc::Activation::gelu,
             lc::cpu::ConvPath::automatic);
  check_conv(rng, {2, 8, 30, 30, 16, 3, 3, 2, 2, 1, 1}, false, lc::Activation::none,
             lc::cpu::ConvPath::direct);
}

// The direct micro-kernel at every instruction set: widths that are not a multiple of any
// vector (tail strips), one-column outputs, stride 2/3 (phase-split input), padding 0/2,
// kernels 1/5/7, channel counts that leave a partial output-channel block and row counts
// that leave a partial row group.
TEST(CpuConv2d, DirectMicroKernelEveryIsa) {
  Rng rng;
  const ConvCase cases[] = {
      {1, 3, 16, 16, 16, 3, 3, 1, 1, 1, 1},  {2, 3, 24, 24, 16, 3, 3, 1, 1, 1, 1},
      {1, 3, 28, 28, 16, 3, 3, 1, 1, 1, 1},  {1, 3, 17, 19, 5, 3, 3, 1, 1, 1, 1},
      {1, 2, 15, 33, 9, 3, 3, 2, 2, 1, 1},   {2, 3, 21, 23, 7, 5, 5, 2, 2, 2, 2},
      {1, 4, 13, 13, 3, 1, 1, 1, 1, 0, 0},   {1, 2, 11, 29, 13, 7, 7, 1, 1, 0, 0},
      {1, 3, 19, 18, 6, 7, 7, 2, 1, 3, 3},   {1, 1, 9, 9, 17, 5, 5, 1, 1, 2, 2},
      {1, 2, 12, 40, 4, 3, 5, 1, 3, 0, 2},   {1, 3, 8, 1, 2, 3, 1, 1, 1, 1, 0},
      {2, 5, 7, 7, 11, 1, 1, 2, 2, 0, 0},    {1, 2, 5, 5, 3, 3, 3, 1, 1, 4, 4},
  };
  for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
    for (auto& c : cases)
      for (auto act : {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu})
        check_conv(rng, c, act != lc::Activation::relu, act, lc::cpu::ConvPath::direct, isa);
}

// ---- layernorm / softmax -----------------------------------------------------------------

TEST(CpuLayerNorm, ShapesAndOptionalAffine) {
  Rng rng;
  const i64 shapes[][2] = {{1, 1}, {1, 7}, {13, 31}, {3, 127}, {61, 257}, {1024, 300}, {2, 4099},
                           {5, 16}, {4, 48}, {3, 768}};
  for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
  for (auto& s : shapes)
    for (int affine = 0; affine < 4; ++affine) {
      const i64 rows = s[0], cols = s[1];
      SCOPED_TRACE(rng.describe() + " rows=" + std::to_string(rows) +
                   " cols=" + std::to_string(cols) + " affine=" + std::to_string(affine) +
                   " isa=" + std::to_string(isa));
      // Offset inputs: a one-pass E[x^2]-E[x]^2 variance would lose digits here.
      auto x = rng.vec(rows * cols, 99.0f, 101.0f), g = rng.vec(cols), b = rng.vec(cols);
      std::vector<float> out(rows * cols);
      lc::ref::poison(out);
      lc::LayerNormArgs p;
      p.x = x.data(); p.out = out.data(); p.rows = rows; p.cols = cols; p.eps = 1e-5f;
      p.gamma = (affine & 1) ? g.data() : nullptr;
      p.beta = (affine & 2) ? b.data() : nullptr;
      if (isa == 0 && affine == 0) lc::cpu::layernorm(p);  // the dispatching entry point too
      lc::cpu::layernorm_with_isa(isa, p);
      if (cols == 1) {
        // Variance 0: out = beta (or 0). Relative error vs ~0 values is meaningless here.
        EXPECT_LE(lc::ref::max_abs_diff(out, lc::ref::layernorm(p)), 1e-6);
      } else {
        // x in [99, 101] stored in fp32 has ~6e-6 absolute rounding per element, i.e. ~1e-5
        // of the unit-variance output; the kernel and reference see the same rounded x, so
        // the remaining error is the kernel's own arithmetic.
        EXPECT_MATCHES(out, lc::ref::layernorm(p));
      }
    }
}

TEST(CpuSoftmax, ShapesLargeLogitsAndAliasing) {
  Rng rng;
  const i64 shapes[][2] = {{1, 1}, {1, 7}, {13, 31}, {3, 127}, {61, 257}, {1024, 300}, {2, 5000},
                           {5, 16}, {4, 48}, {3, 768}};
  for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
  for (auto& s : shapes)
    for (float amp : {1.0f, 50.0f}) {
      const i64 rows = s[0], cols = s[1];
      SCOPED_TRACE(rng.describe() + " rows=" + std::to_string(rows) +
                   " cols=" + std::to_string(cols) + " amp=" + std::to_string(amp) +
                   " isa=" + std::to_string(isa));
      auto x = rng.vec(rows * cols, -amp, amp);
      std::vector<float> out(rows * cols);
      lc::ref::poison(out);
      lc::SoftmaxArgs p;
      p.x = x.data(); p.out = out.data(); p.rows = rows; p.cols = cols;
      const auto expect = lc::ref::softmax(p);
      lc::cpu::softmax_with_isa(isa, p);
      EXPECT_MATCHES(out, expect);
      p.out = x.data();  // in place
      if (isa == 0) {
        lc::cpu::softmax(p);  // the dispatching entry point
      } else {
        lc::cpu::softmax_with_isa(isa, p);
      }
      EXPECT_MATCHES(x, expect);
    }
}

// ---- storage dtypes ------------------------------------------------------------------------
// float16 / bfloat16 rows are computed in float32 and rounded once; float64 rows in float64.
// Inputs are rounded to the dtype first and the float64 reference reads the rounded values.

struct HostTyped {
  HostTyped(lc::DType t, const std::vector<float>& v) : t(t), bytes(v.size() * lc::dtype_size(t)) {
    for (std::size_t i = 0; i < v.size(); ++i) set(i, v[i]);
  }
  void set(std::size_t i, float v) {
    if (t == lc::DType::f16) reinterpret_cast<lc::float16*>(bytes.data())[i] = lc::to_f16(v);
    else if (t == lc::DType::bf16) reinterpret_cast<lc::bfloat16*>(bytes.data())[i] = lc::to_bf16(v);
    else if (t == lc::DType::f64) reinterpret_cast<double*>(bytes.data())[i] = v;
    else reinterpret_cast<float*>(bytes.data())[i] = v;
  }
  std::vector<float> values() const {
    std::vector<float> r(bytes.size() / lc::dtype_size(t));
    for (std::size_t i = 0; i < r.size(); ++i)
      r[i] = static_cast<float>(lc::ref::elem(t, bytes.data(), static_cast<i64>(i)));
    return r;
  }
  std::vector<double> values64() const {
    std::vector<double> r(bytes.size() / lc::dtype_size(t));
    for (std::size_t i = 0; i < r.size(); ++i) r[i] = lc::ref::elem(t, bytes.data(), static_cast<i64>(i));
    return r;
  }
  void* data() { return bytes.data(); }
  lc::DType t;
  std::vector<unsigned char> bytes;
};

double dtype_tol(lc::DType t) {
  return t == lc::DType::bf16 ? 1e-2 : t == lc::DType::f16 ? 2e-3 : t == lc::DType::f64 ? 1e-12 : 1e-5;
}

double rel_error64(const std::vector<double>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

TEST(CpuNorm, Float16Bfloat16Float64EveryIsaAndInPlace) {
  Rng rng;
  const i64 shapes[][2] = {{1, 1}, {5, 1}, {3, 7}, {13, 31}, {4, 768}, {3, 1031},
                           {2, 9000}, {600, 450}};  // 9000 > one scratch block; 270k threaded
  for (lc::DType dt : {lc::DType::f16, lc::DType::bf16, lc::DType::f64})
    for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
      for (auto& s : shapes) {
        const i64 rows = s[0], cols = s[1];
        SCOPED_TRACE(rng.describe() + " " + lc::to_string(dt) + " rows=" + std::to_string(rows) +
                     " cols=" + std::to_string(cols) + " isa=" + std::to_string(isa));
        HostTyped x(dt, rng.vec(rows * cols, 40.0f, 44.0f)), g(dt, rng.vec(cols, 0.5f, 1.5f)),
            b(dt, rng.vec(cols)), out(dt, std::vector<float>(rows * cols, NAN));
        lc::LayerNormArgs p{x.data(), g.data(), b.data(), out.data(), rows, cols, 1e-5f, dt};
        lc::cpu::layernorm_with_isa(isa, p);
        if (cols == 1) {  // variance 0: every row is beta
          EXPECT_EQ(out.values(), std::vector<float>(rows, b.values()[0]));
        } else {
          EXPECT_LE(rel_error64(out.values64(), lc::ref::layernorm(p)), dtype_tol(dt));
        }
        HostTyped sx(dt, rng.vec(rows * cols, -8.0f, 8.0f)), sout(dt, std::vector<float>(rows * cols, NAN));
        lc::SoftmaxArgs sp{sx.data(), sout.data(), rows, cols, dt};
        const auto expect = lc::ref::softmax(sp);
        lc::cpu::softmax_with_isa(isa, sp);
        EXPECT_LE(rel_error64(sout.values64(), expect), dtype_tol(dt));
        sp.out = sx.data();  // in place
        if (isa == 0) lc::cpu::softmax(sp);
        else lc::cpu::softmax_with_isa(isa, sp);
        EXPECT_LE(rel_error64(sx.values64(), expect), dtype_tol(dt));
      }
}

// The fused residual add (LayerNormArgs::residual) in every dtype and instruction set: the sum
// is formed in out's row (float32 / float64) or the float32 scratch block (16-bit); out may be
// x itself or the residual itself (in place).
TEST(CpuNorm, LayerNormResidualEveryDtypeIsaAndInPlace) {
  Rng rng;
  const i64 shapes[][2] = {{1, 1}, {1, 7}, {5, 1}, {13, 31}, {4, 768}, {3, 1031},
                           {2, 9000}, {600, 450}};  // 9000 > one scratch block; 270k threaded
  for (lc::DType dt : {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64})
    for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
      for (auto& s : shapes) {
        const i64 rows = s[0], cols = s[1];
        SCOPED_TRACE(rng.describe() + " " + lc::to_string(dt) + " rows=" + std::to_string(rows) +
                     " cols=" + std::to_string(cols) + " isa=" + std::to_string(isa));
        HostTyped x(dt, rng.vec(rows * cols, 38.0f, 42.0f)), r(dt, rng.vec(rows * cols, -3.0f, 3.0f)),
            g(dt, rng.vec(cols, 0.5f, 1.5f)), b(dt, rng.vec(cols)),
            out(dt, std::vector<float>(rows * cols, NAN));
        lc::LayerNormArgs p{x.data(), g.data(), b.data(), out.data(), rows, cols, 1e-5f, dt};
        p.residual = r.data();
        const auto expect = lc::ref::layernorm(p);
        const auto xs = x.bytes, rs = r.bytes;
        if (isa == 0) lc::cpu::layernorm(p);  // the dispatching entry point too
        else lc::cpu::layernorm_with_isa(isa, p);
        if (cols == 1) {  // variance 0: every row is beta
          EXPECT_EQ(out.values(), std::vector<float>(rows, b.values()[0]));
          continue;
        }
        EXPECT_LE(rel_error64(out.values64(), expect), dtype_tol(dt));
        EXPECT_TRUE(x.bytes == xs && r.bytes == rs);  // inputs untouched
        p.out = x.data();  // in place over x
        lc::cpu::layernorm_with_isa(isa, p);
        EXPECT_LE(rel_error64(x.values64(), expect), dtype_tol(dt));
        std::copy(xs.begin(), xs.end(), x.bytes.begin());  // x again (p.x still points at it)
        p.out = r.data();  // in place over the residual
        lc::cpu::layernorm_with_isa(isa, p);
        EXPECT_LE(rel_error64(r.values64(), expect), dtype_tol(dt));
      }
}

// The fused scale and additive mask (SoftmaxArgs::scale / mask / mask_rows / mask_repeat /
// mask_outer) in every dtype and instruction set: a mask of one row or of several (row r reads
// mask row r % mask_rows), a broadcast one (outer groups of `repeat` x `rows` rows, as
// [B, 1, 1, S] or [B, 1, S, S] for scores [B, H, S, S]), -inf mask entries weighing exactly 0,
// and in place over x.
TEST(CpuSoftmax, ScaleAndMaskEveryDtypeIsaAndInPlace) {
  Rng rng;
  // rows, cols, mask rows, repeat, outer
  const i64 shapes[][5] = {{1, 1, 1, 1, 1},     {1, 7, 1, 1, 1},     {6, 9, 3, 1, 1},
                           {13, 31, 13, 1, 1},  {8, 768, 4, 1, 1},   {3, 1031, 1, 1, 1},
                           {2, 9000, 2, 1, 1},  {600, 450, 20, 1, 1}, {24, 9, 1, 4, 6},
                           {36, 13, 3, 2, 6},   {50, 17, 3, 2, 4},   {600, 450, 5, 4, 30}};
  for (lc::DType dt : {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64})
    for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
      for (auto& s : shapes)
        for (bool with_mask : {true, false}) {
          const i64 rows = s[0], cols = s[1], mrows = s[2] * s[4];  // mask rows in all
          SCOPED_TRACE(rng.describe() + " " + lc::to_string(dt) + " rows=" + std::to_string(rows) +
                       " cols=" + std::to_string(cols) + " isa=" + std::to_string(isa) +
                       " mask=" + std::to_string(with_mask) + " repeat=" + std::to_string(s[3]) +
                       " outer=" + std::to_string(s[4]));
          auto mv = rng.vec(mrows * cols, -4.0f, 4.0f);
          for (i64 i = 0; i < mrows * cols; i += 3)
            if (i % cols) mv[static_cast<std::size_t>(i)] = -INFINITY;  // column 0 stays finite
          HostTyped x(dt, rng.vec(rows * cols, -6.0f, 6.0f)), m(dt, mv),
              out(dt, std::vector<float>(rows * cols, NAN));
          lc::SoftmaxArgs p{x.data(), out.data(), rows, cols, dt};
          p.scale = 0.37f;
          if (with_mask) {
            p.mask = m.data();
            p.mask_rows = s[2];
            p.mask_repeat = s[3];
            p.mask_outer = s[4];
          }
          const auto expect = lc::ref::softmax(p);
          if (isa == 0) lc::cpu::softmax(p);  // the dispatching entry point too
          else lc::cpu::softmax_with_isa(isa, p);
          const auto y = out.values();
          EXPECT_LE(rel_error64(out.values64(), expect), dtype_tol(dt));
          if (with_mask)
            for (i64 i = 0; i < rows * cols; ++i)
              if (std::isinf(mv[static_cast<std::size_t>(p.mask_row(i / cols) * cols + i % cols)]))
                ASSERT_EQ(y[static_cast<std::size_t>(i)], 0.0f) << i;
          p.out = x.data();  // in place
          lc::cpu::softmax_with_isa(isa, p);
          EXPECT_LE(rel_error64(x.values64(), expect), dtype_tol(dt));
        }
}

TEST(CpuSoftmax, MinusInfinityRowsEveryDtype) {
  Rng rng;
  for (lc::DType dt : {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64})
    for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa)
      for (i64 cols : {i64{1}, i64{7}, i64{33}, i64{768}}) {
        SCOPED_TRACE(rng.describe() + " " + lc::to_string(dt) + " cols=" + std::to_string(cols) +
                     " isa=" + std::to_string(isa));
        auto v = rng.vec(3 * cols, -3.0f, 3.0f);
        for (i64 c = 0; c < cols; ++c) v[c] = -INFINITY;           // row 0: all -inf
        for (i64 c = 0; c < cols; c += 2) v[cols + c] = -INFINITY;  // row 1: even columns
        HostTyped x(dt, v), out(dt, std::vector<float>(3 * cols, 0.0f));
        lc::SoftmaxArgs p{x.data(), out.data(), 3, cols, dt};
        lc::cpu::softmax_with_isa(isa, p);
        const auto y = out.values();
        for (i64 c = 0; c < cols; ++c) EXPECT_TRUE(std::isnan(y[c])) << c;  // as torch.softmax
        if (cols == 1) continue;  // row 1 is a lone -inf as well
        for (i64 c = 0; c < cols; c += 2) EXPECT_EQ(y[cols + c], 0.0f) << c;
        double sum = 0;
        for (i64 c = 0; c < cols; ++c) sum += y[cols + c];
        EXPECT_NEAR(sum, 1.0, 1e-2);
      }
}

TEST(CpuAttention, Float16Bfloat16EveryPath) {
  Rng rng;
  struct Case { i64 sq, sk, d, dv; };
  const Case cases[] = {{1, 1, 1, 1}, {4, 9, 16, 8}, {37, 53, 64, 64}, {37, 300, 17, 23}, {150, 300, 67, 45}};
  const lc::cpu::AttentionPath paths[] = {lc::cpu::AttentionPath::automatic, lc::cpu::AttentionPath::small,
                                          lc::cpu::AttentionPath::blocked, lc::cpu::AttentionPath::gemm};
  for (lc::DType dt : {lc::DType::f16, lc::DType::bf16})
    for (const auto& c : cases)
      for (auto path : paths)
        for (bool causal : {false, true}) {
          SCOPED_TRACE(rng.describe() + " " + lc::to_string(dt) + " sq=" + std::to_string(c.sq) +
                       " sk=" + std::to_string(c.sk) + " path=" + std::to_string(int(path)));
          HostTyped q(dt, rng.vec(c.sq * c.d)), k(dt, rng.vec(c.sk * c.d)), v(dt, rng.vec(c.sk * c.dv)),
              out(dt, std::vector<float>(c.sq * c.dv, NAN));
          lc::AttentionArgs a{q.data(), k.data(), v.data(), out.data(), c.sq, c.sk, c.d, c.dv,
                              causal, 1.0f / std::sqrt(static_cast<float>(c.d)), dt};
          lc::cpu::attention_with(path, a);
          const auto y = out.values64();
          for (double e : y) ASSERT_FALSE(std::isnan(e));
          EXPECT_LE(rel_error64(y, lc::ref::attention(a)), dtype_tol(dt));
        }
}

// ---- elementwise -------------------------------------------------------------------------

TEST(CpuElementwise, EveryKindSizesAndAliasing) {
  Rng rng;
  using lc::EwKind;
  for (i64 n : {i64{1}, i64{7}, i64{13}, i64{31}, i64{61}, i64{127}, i64{1000},
                i64{300001}, i64{(1 << 20) + 3}}) {
    for (EwKind kind : {EwKind::add, EwKind::sub, EwKind::mul, EwKind::scale, EwKind::relu,
                        EwKind::gelu}) {
      const bool binary = kind == EwKind::add || kind == EwKind::sub || kind == EwKind::mul;
      SCOPED_TRACE(rng.describe() + " n=" + std::to_string(n) + " kind=" +
                   std::to_string(int(kind)));
      auto a = rng.vec(n, -6.0f, 6.0f), b = rng.vec(n, -6.0f, 6.0f);
      const float alpha = -1.75f;
      const auto expect = lc::ref::elementwise(kind, a.data(), binary ? b.data() : nullptr, n, alpha);
      std::vector<float> out(n);
      lc::ref::poison(out);
      lc::ElementwiseArgs p;
      p.kind = kind; p.a = a.data(); p.b = binary ? b.data() : nullptr; p.out = out.data();
      p.n = n; p.alpha = alpha;
      lc::cpu::elementwise(p);
      EXPECT_MATCHES(out, expect);
      if (binary) {  // out aliases b
        auto b2 = b;
        p.out = b2.data(); p.b = b2.data();
        lc::cpu::elementwise(p);
        EXPECT_MATCHES(b2, expect);
        p.b = b.data();
      }
      p.out = a.data();  // out aliases a
      lc::cpu::elementwise(p);
      EXPECT_MATCHES(a, expect);
    }
  }
}

TEST(CpuElementwise, GeluIsTheTanhFormAtKnownPoints) {
  // Values of 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))); the erf form differs at 1e-4 level.
  const float xs[] = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};
  std::vector<float> out(7);
  lc::ElementwiseArgs p;
  p.kind = lc::EwKind::gelu; p.a = xs; p.out = out.data(); p.n = 7;
  lc::cpu::elementwise(p);
  for (int i = 0; i < 7; ++i)
    EXPECT_NEAR(out[i], lc::ref::gelu(xs[i]), 1e-6 * (1.0 + std::fabs(xs[i]))) << xs[i];
  EXPECT_NEAR(out[5], 0.8411920071f, 1e-6);  // tanh-GELU(1); erf-GELU(1) = 0.8413447
  EXPECT_EQ(out[3], 0.0f);
}

// ---- thread pool and backend object --------------------------------------------------------

TEST(CpuThreadPool, CoversRangeOnceNestedAndConcurrent) {
  std::vector<std::atomic<int>> hits(100000);
  auto run = [&] {
    lc::cpu::parallel_for(0, 100000, 1000, [&](i64 lo, i64 hi) {
      for (i64 i = lo; i < hi; ++i) hits[i].fetch_add(1);
      // Nested call: must run inline, not deadlock.
      lc::cpu::parallel_for(0, 4, 1, [&](i64, i64) {});
    });
  };
  run();
  for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  std::vector<std::thread> users;
  for (int t = 0; t < 4; ++t) users.emplace_back(run);
  for (auto& u : users) u.join();
  for (auto& h : hits) ASSERT_EQ(h.load(), 5);
  EXPECT_GE(lc::cpu::num_threads(), 1);
}

// Chunks are split into per-thread home ranges, each claimed by its thread first and stolen by
// the others after (thread_pool.cpp Job): every element exactly once, for any begin / length /
// grain, and only the very last sub-range may be shorter than the grain.
TEST(CpuThreadPool, HomeRangesCoverEveryElementOnceWithGrainSizedPieces) {
  const i64 begins[] = {0, 7, -13};
  const i64 lengths[] = {2, 3, 17, 64, 97, 1000, 4099, 65537, 1 << 20};
  const i64 grains[] = {1, 2, 5, 16, 1000, 32768};
  for (i64 b : begins) {
    for (i64 len : lengths) {
      for (i64 g : grains) {
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(len));
        std::atomic<int> short_pieces{0};
        lc::cpu::parallel_for(b, b + len, g, [&](i64 lo, i64 hi) {
          if (hi - lo < g) short_pieces.fetch_add(1);
          for (i64 i = lo; i < hi; ++i) hits[static_cast<std::size_t>(i - b)].fetch_add(1);
        });
        for (i64 i = 0; i < len; ++i)
          ASSERT_EQ(hits[static_cast<std::size_t>(i)].load(), 1)
              << "begin " << b << " len " << len << " grain " << g << " at " << i;
        ASSERT_LE(short_pieces.load(), 1) << "begin " << b << " len " << len << " grain " << g;
      }
    }
  }
}

TEST(CpuThreadPool, TaskExceptionReachesCaller) {
  EXPECT_THROW(lc::cpu::parallel_for(0, 1 << 20, 1, [](i64 lo, i64) {
                 if (lo == 0) throw lc::BackendError("boom");
               }),
               lc::BackendError);
}

TEST(CpuBackend, AllocAlignmentCopiesAndDescription) {
  lc::Backend& be = lc::cpu_backend_instance();
  EXPECT_TRUE(be.available());
  EXPECT_EQ(be.kind(), lc::DeviceKind::cpu);
  void* z = be.alloc(0);
  EXPECT_NE(z, nullptr);
  be.free(z);
  float src[5] = {1, 2, 3, 4, 5};
  auto* p = static_cast<float*>(be.alloc(sizeof(src)));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  be.copy_from_host(p, src, sizeof(src));
  be.copy_within(p + 1, p, 3 * sizeof(float));  // overlapping
  float back[5];
  be.copy_to_host(back, p, sizeof(back));
  be.synchronize();
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], 1.0f);
  EXPECT_EQ(back[3], 3.0f);
  EXPECT_EQ(back[4], 5.0f);
  be.free(p);
  EXPECT_THROW(be.alloc(static_cast<std::size_t>(1) << 62), lc::OutOfMemory);
  const std::string desc = be.device_description();
  EXPECT_NE(desc.find("threads"), std::string::npos) << desc;
  EXPECT_NE(desc.find(lc::cpu::gemm_engine()), std::string::npos) << desc;
}

TEST(CpuBackend, MatmulThroughBackendObject) {
  Rng rng;
  SCOPED_TRACE(rng.describe());
  auto a = rng.vec(3 * 4), b = rng.vec(5 * 4), bias = rng.vec(5);
  std::vector<float> out(15);
  lc::ref::poison(out);
  lc::MatmulArgs p;
  p.a = a.data(); p.b = b.data(); p.bias = bias.data(); p.out = out.data();
  p.m = 3; p.k = 4; p.n = 5; p.trans_b = true; p.act = lc::Activation::gelu;
  lc::cpu_backend_instance().matmul(p);
  EXPECT_MATCHES(out, lc::ref::matmul(p));
}

}  // namespace

// A row whose receptive fields alone pass the 16 MB im2col chunk (kk * ow > 2^22) is unrolled in
// column spans, so the scratch stays bounded whatever the width (device fuzz, 2026-12-01: a
// padding near 2^30 asked for 24 GiB of im2col scratch in one piece). Here kk = 576, ow = 7501:
// several spans per row, with padding and stride on both axes, odd sizes.
TEST(CpuConv2d, Im2colColumnSpansForVeryWideRows) {
  Rng rng;
  for (const ConvCase& s : {ConvCase{1, 64, 3, 7499, 3, 3, 3, 1, 1, 1, 2},
                            ConvCase{2, 64, 2, 15003, 2, 3, 3, 1, 2, 1, 1}}) {
    check_conv(rng, s, true, lc::Activation::relu, lc::cpu::ConvPath::im2col);
    check_conv(rng, s, false, lc::Activation::none, lc::cpu::ConvPath::im2col);
  }
}
