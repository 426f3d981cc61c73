// CUDA norms and attention in float16 / bfloat16 storage (and float32 through the same code)
// vs the float64 host reference (tests/cpp/reference.h); split from test_cuda_kernels.cpp, which
// holds the float32 kernels. Every test skips itself without a usable CUDA backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/dtype.h"
#include "cuda_test.h"
#include "reference.h"

namespace {

using lc::test::gpu;
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

struct AttnCase {
  std::int64_t sq, sk, d, dv;
};

// ---- storage dtypes: float16 / bfloat16 (and float32 through the same code) ---------------
//
// Inputs are rounded to the dtype on the host first; the float64 reference reads those rounded
// values (ref::elem), so the error left is the kernel's float32 arithmetic plus the one rounding
// of each stored result: <= 2^-11 relative per element for float16, 2^-8 for bfloat16.

double tol16(lc::DType t) { return t == lc::DType::bf16 ? 1e-2 : t == lc::DType::f16 ? 2e-3 : 1e-5; }

// n elements of dtype t on the device, `offset` elements into the allocation (misaligned views),
// with a host copy of exactly what was uploaded.
struct TypedBuf {
  TypedBuf(lc::DType t, std::size_t n, std::size_t offset = 0)
      : t_(t), n_(n), es_(lc::dtype_size(t)), off_(offset), host_(n * es_),
        base_(static_cast<char*>(gpu().alloc((n + offset) * es_))) {}
  ~TypedBuf() { gpu().free(base_); }
  TypedBuf(const TypedBuf&) = delete;
  TypedBuf& operator=(const TypedBuf&) = delete;
  void* get() const { return base_ + off_ * es_; }
  const void* host() const { return host_.data(); }
  // Rounds v to the dtype, keeps the rounded copy and uploads it.
  void upload(const std::vector<float>& v) {
    for (std::size_t i = 0; i < n_; ++i) set(host_.data(), i, v[i]);
    gpu().copy_from_host(get(), host_.data(), n_ * es_);
  }
  void poison() const {
    std::vector<unsigned char> p(n_ * es_);
    for (std::size_t i = 0; i < n_; ++i) set(p.data(), i, std::numeric_limits<float>::quiet_NaN());
    gpu().copy_from_host(get(), p.data(), n_ * es_);
  }
  std::vector<float> download() const {
    std::vector<unsigned char> raw(n_ * es_);
    gpu().copy_to_host(raw.data(), get(), n_ * es_);
    std::vector<float> out(n_);
    for (std::size_t i = 0; i < n_; ++i)
      out[i] = static_cast<float>(lc::ref::elem(t_, raw.data(), static_cast<std::int64_t>(i)));
    return out;
  }
  void set(unsigned char* p, std::size_t i, float v) const {
    if (t_ == lc::DType::f16) reinterpret_cast<lc::float16*>(p)[i] = lc::to_f16(v);
    else if (t_ == lc::DType::bf16) reinterpret_cast<lc::bfloat16*>(p)[i] = lc::to_bf16(v);
    else reinterpret_cast<float*>(p)[i] = v;
  }
  lc::DType t_;
  std::size_t n_, es_, off_;
  std::vector<unsigned char> host_;
  char* base_;
};

const lc::DType kNormDtypes[] = {lc::DType::f16, lc::DType::bf16, lc::DType::f32};

// Every kernel of norm.cu for each dtype: warp / block / long-row kernels, the 16-byte vector
// path (aligned, cols a multiple of 8) and the element path (odd cols, or a misaligned view).
TEST(CudaNorm, Float16Bfloat16AllPathsAndMisaligned) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t shapes[][2] = {{1, 1},    {5, 1},     {3, 7},     {9, 8},     {17, 33},
                                    {6, 256},  {64, 768},  {5, 1000},  {33, 1024}, {7, 1025},
                                    {4, 3000}, {3, 4096},  {2, 16384}, {2, 20000}, {1000, 64},
                                    {3, 4104}};
  for (lc::DType dt : kNormDtypes) {
    for (const auto& s : shapes) {
      for (std::size_t off : {std::size_t{0}, std::size_t{1}}) {
        const std::int64_t rows = s[0], cols = s[1];
        auto hx = rng.vec(sz(rows * cols), 40.0f, 44.0f);  // a common offset, as above
        TypedBuf x(dt, hx.size(), off), g(dt, sz(cols), off), b(dt, sz(cols), off),
            o(dt, hx.size(), off);
        x.upload(hx);
        g.upload(rng.vec(sz(cols), 0.5f, 1.5f));
        b.upload(rng.vec(sz(cols)));
        for (bool affine : {true, false}) {
          o.poison();
          lc::LayerNormArgs a{x.get(), affine ? g.get() : nullptr, affine ? b.get() : nullptr,
                              o.get(), rows, cols, 1e-5f, dt};
          gpu().layernorm(a);
          lc::LayerNormArgs h = a;
          h.x = x.host();
          h.gamma = affine ? g.host() : nullptr;
          h.beta = affine ? b.host() : nullptr;
          const auto out = o.download();
          ASSERT_EQ(lc::ref::count_nan(out), 0u) << "layernorm " << rows << "x" << cols;
          EXPECT_LE(lc::ref::rel_error(out, lc::ref::layernorm(h)), tol16(dt))
              << "layernorm " << lc::to_string(dt) << " " << rows << "x" << cols
              << " offset=" << off << " affine=" << affine;
        }
        // softmax over a wider range (-8, 8): the max subtraction matters
        auto hs = rng.vec(sz(rows * cols), -8.0f, 8.0f);
        x.upload(hs);
        o.poison();
        lc::SoftmaxArgs sa{x.get(), o.get(), rows, cols, dt};
        gpu().softmax(sa);
        lc::SoftmaxArgs hsa{x.host(), nullptr, rows, cols, dt};
        const auto out = o.download();
        ASSERT_EQ(lc::ref::count_nan(out), 0u) << "softmax " << rows << "x" << cols;
        EXPECT_LE(lc::ref::rel_error(out, lc::ref::softmax(hsa)), tol16(dt))
            << "softmax " << lc::to_string(dt) << " " << rows << "x" << cols << " offset=" << off;
      }
    }
  }
}

// The fused softmax scale and mask (SoftmaxArgs) through every kernel and path: the mask
// aligned or one element off (that alone must turn the vector path off), one mask row or
// several (row r reads mask row r % mask_rows), broadcast masks (mask_repeat / mask_outer, as
// [B, 1, 1, S] or [B, 1, S, S] for scores [B, H, S, S]), -inf entries.
TEST(CudaNorm, SoftmaxScaleMaskAllPathsAndMisaligned) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  // rows, cols, mask rows, repeat, outer
  const std::int64_t shapes[][5] = {
      {1, 1, 1, 1, 1},      {5, 1, 5, 1, 1},      {3, 7, 1, 1, 1},      {9, 8, 3, 1, 1},
      {17, 33, 17, 1, 1},   {64, 768, 16, 1, 1},  {5, 1000, 1, 1, 1},   {33, 1024, 11, 1, 1},
      {7, 1025, 7, 1, 1},   {4, 3000, 2, 1, 1},   {3, 4096, 1, 1, 1},   {2, 16384, 2, 1, 1},
      {2, 20000, 1, 1, 1},  {1000, 64, 10, 1, 1}, {24, 9, 1, 4, 6},     {36, 13, 3, 2, 6},
      {50, 17, 3, 2, 4},    {384, 128, 1, 48, 8}, {768, 128, 128, 3, 2}, {8, 5000, 1, 2, 4}};
  for (lc::DType dt : kNormDtypes) {
    for (const auto& s : shapes) {
      for (std::size_t off : {std::size_t{0}, std::size_t{1}}) {
        const std::int64_t rows = s[0], cols = s[1], mrows = s[2] * s[4];  // mask rows in all
        auto mv = rng.vec(sz(mrows * cols), -4.0f, 4.0f);
        for (std::size_t i = 0; i < mv.size(); i += 3)
          if (i % sz(cols)) mv[i] = -std::numeric_limits<float>::infinity();
        TypedBuf x(dt, sz(rows * cols)), m(dt, sz(mrows * cols), off), o(dt, sz(rows * cols));
        x.upload(rng.vec(sz(rows * cols), -6.0f, 6.0f));
        m.upload(mv);
        for (bool with_mask : {true, false}) {
          o.poison();
          lc::SoftmaxArgs a{x.get(), o.get(), rows, cols, dt};
          a.scale = 0.37f;
          if (with_mask) {
            a.mask = m.get();
            a.mask_rows = s[2];
            a.mask_repeat = s[3];
            a.mask_outer = s[4];
          }
          gpu().softmax(a);
          lc::SoftmaxArgs h = a;
          h.x = x.host();
          h.mask = with_mask ? m.host() : nullptr;
          const auto out = o.download();
          ASSERT_EQ(lc::ref::count_nan(out), 0u) << "softmax " << rows << "x" << cols;
          EXPECT_LE(lc::ref::rel_error(out, lc::ref::softmax(h)), tol16(dt))
              << "softmax scale/mask " << lc::to_string(dt) << " " << rows << "x" << cols
              << " mask offset=" << off << " mask=" << with_mask << " repeat=" << s[3]
              << " outer=" << s[4];
        }
      }
    }
  }
}

// The fused residual add (LayerNormArgs::residual) through every kernel and path: the residual
// aligned or one element off (that alone must turn the 16-byte vector path off), x + residual
// summed in float32 (the reference sums the stored values in double).
TEST(CudaNorm, LayerNormResidualAllPathsAndMisaligned) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::int64_t shapes[][2] = {{1, 1},   {5, 1},    {3, 7},     {9, 8},     {17, 33},
                                    {64, 768}, {5, 1000}, {33, 1024}, {7, 1025},  {4, 3000},
                                    {3, 4096}, {2, 16384}, {2, 20000}, {1000, 64}, {3, 4104}};
  for (lc::DType dt : kNormDtypes) {
    for (const auto& s : shapes) {
      for (std::size_t off : {std::size_t{0}, std::size_t{1}}) {
        const std::int64_t rows = s[0], cols = s[1];
        TypedBuf x(dt, sz(rows * cols)), r(dt, sz(rows * cols), off), g(dt, sz(cols)),
            b(dt, sz(cols)), o(dt, sz(rows * cols));
        x.upload(rng.vec(sz(rows * cols), 38.0f, 42.0f));
        r.upload(rng.vec(sz(rows * cols), -3.0f, 3.0f));
        g.upload(rng.vec(sz(cols), 0.5f, 1.5f));
        b.upload(rng.vec(sz(cols)));
        for (bool affine : {true, false}) {
          o.poison();
          lc::LayerNormArgs a{x.get(), affine ? g.get() : nullptr, affine ? b.get() : nullptr,
                              o.get(), rows, cols, 1e-5f, dt};
          a.residual = r.get();
          gpu().layernorm(a);
          lc::LayerNormArgs h = a;
          h.x = x.host();
          h.residual = r.host();
          h.gamma = affine ? g.host() : nullptr;
          h.beta = affine ? b.host() : nullptr;
          const auto out = o.download();
          ASSERT_EQ(lc::ref::count_nan(out), 0u) << "layernorm+residual " << rows << "x" << cols;
          if (cols == 1) {  // variance 0: beta (or 0) exactly
            for (std::size_t i = 0; i < out.size(); ++i)
              EXPECT_EQ(out[i], affine ? static_cast<float>(lc::ref::elem(dt, b.host(), 0)) : 0.0f);
            continue;
          }
          EXPECT_LE(lc::ref::rel_error(out, lc::ref::layernorm(h)), tol16(dt))
              << "layernorm+residual " << lc::to_string(dt) << " " << rows << "x" << cols
              << " residual offset=" << off << " affine=" << affine;
        }
      }
    }
  }
}

// -inf entries weigh exactly 0; a row of only -inf is NaN everywhere (-inf - -inf), as
// torch.softmax gives. Every kernel (warp, block, long rows) and dtype.
TEST(CudaNorm, SoftmaxMinusInfinityRows) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const float inf = std::numeric_limits<float>::infinity();
  for (lc::DType dt : kNormDtypes) {
    for (std::int64_t cols : {std::int64_t{1}, std::int64_t{7}, std::int64_t{768},
                              std::int64_t{3000}, std::int64_t{20000}}) {
      const std::int64_t rows = 4;
      auto hx = rng.vec(sz(rows * cols), -3.0f, 3.0f);
      for (std::int64_t c = 0; c < cols; ++c) hx[sz(c)] = -inf;              // row 0: all -inf
      for (std::int64_t c = 0; c < cols; c += 2) hx[sz(cols + c)] = -inf;    // row 1: even cols
      if (cols > 1) hx[sz(2 * cols)] = -inf;                                 // row 2: the first
      TypedBuf x(dt, hx.size()), o(dt, hx.size());
      x.upload(hx);
      o.poison();
      lc::SoftmaxArgs a{x.get(), o.get(), rows, cols, dt};
      gpu().softmax(a);
      const auto out = o.download();
      for (std::int64_t c = 0; c < cols; ++c)
        EXPECT_TRUE(std::isnan(out[sz(c)])) << lc::to_string(dt) << " cols=" << cols << " c=" << c;
      // rows 1..3 against the reference (which gives exp(-inf) = 0 there)
      lc::SoftmaxArgs h{static_cast<const char*>(x.host()) + cols * lc::dtype_size(dt), nullptr,
                        rows - 1, cols, dt};
      const std::vector<float> rest(out.begin() + cols, out.end());
      const auto ref = lc::ref::softmax(h);
      if (cols == 1) {  // row 1 is a lone -inf: NaN as well
        EXPECT_TRUE(std::isnan(rest[0]));
        continue;
      }
      ASSERT_EQ(lc::ref::count_nan(rest), 0u) << lc::to_string(dt) << " cols=" << cols;
      EXPECT_LE(lc::ref::rel_error(rest, ref), tol16(dt)) << lc::to_string(dt) << " cols=" << cols;
      for (std::int64_t c = 0; c < cols; c += 2) EXPECT_EQ(rest[sz(c)], 0.0f);
    }
  }
}

// Rows of 1e4 + N(0, 1)-like values: the mean must not lose the small deviations.
TEST(CudaNorm, LayerNormLargeCommonOffset) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (std::int64_t cols : {std::int64_t{33}, std::int64_t{768}, std::int64_t{3000},
                            std::int64_t{20000}}) {
    const std::int64_t rows = 3;
    auto hx = rng.vec(sz(rows * cols), 1e4f - 1.0f, 1e4f + 1.0f);
    TypedBuf x(lc::DType::f32, hx.size()), o(lc::DType::f32, hx.size());
    x.upload(hx);
    o.poison();
    lc::LayerNormArgs a{x.get(), nullptr, nullptr, o.get(), rows, cols, 1e-5f};
    gpu().layernorm(a);
    lc::LayerNormArgs h = a;
    h.x = x.host();
    EXPECT_LE(lc::ref::rel_error(o.download(), lc::ref::layernorm(h)), 1e-5) << cols;
  }
}

// attention2d with float16 / bfloat16 q, k, v, out: every tile configuration (d <= 64, 128,
// 256, 512), causal or not, split-K (long sk), odd head dims and misaligned views.
TEST(CudaAttention, Float16Bfloat16) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const AttnCase cases[] = {{1, 1, 1, 1},     {5, 1, 8, 8},      {37, 53, 64, 64},
                            {97, 131, 17, 33}, {61, 200, 256, 256}, {200, 61, 80, 40},
                            {3, 2053, 64, 64}, {19, 300, 256, 7}, {300, 300, 100, 130},
                            {1, 4099, 128, 128}, {61, 300, 384, 384}, {33, 1031, 5, 512}};
  for (lc::DType dt : {lc::DType::f16, lc::DType::bf16}) {
    for (const auto& c : cases) {
      for (std::size_t off : {std::size_t{0}, std::size_t{1}}) {
        for (bool causal : {false, true}) {
          TypedBuf q(dt, sz(c.sq * c.d), off), k(dt, sz(c.sk * c.d), off),
              v(dt, sz(c.sk * c.dv), off), o(dt, sz(c.sq * c.dv), off);
          q.upload(rng.vec(sz(c.sq * c.d)));
          k.upload(rng.vec(sz(c.sk * c.d)));
          v.upload(rng.vec(sz(c.sk * c.dv)));
          o.poison();
          lc::AttentionArgs args{q.get(), k.get(), v.get(), o.get(), c.sq, c.sk, c.d, c.dv,
                                 causal, 1.0f / std::sqrt(static_cast<float>(c.d)), dt};
          gpu().attention(args);
          lc::AttentionArgs h = args;
          h.q = q.host();
          h.k = k.host();
          h.v = v.host();
          const auto out = o.download();
          ASSERT_EQ(lc::ref::count_nan(out), 0u) << c.sq << "," << c.sk << "," << c.d << "," << c.dv;
          EXPECT_LE(lc::ref::rel_error(out, lc::ref::attention(h)), tol16(dt))
              << lc::to_string(dt) << " sq=" << c.sq << " sk=" << c.sk << " d=" << c.d
              << " dv=" << c.dv << " causal=" << causal << " offset=" << off;
        }
      }
    }
  }
}

// ---- memory, copies, graphs, trace -------------------------------------------------------

}  // namespace
