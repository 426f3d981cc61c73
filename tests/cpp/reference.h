// Float64 reference implementations of every backend op, plus the helpers kernel tests share.
//
// Backend-neutral on purpose: pure host code, no GoogleTest, no backend code. The CPU and the
// CUDA kernel tests both compare against these, so they must stay the *definition* of each op
// (the semantics documented in src/backends/backend.h), written as plainly as possible:
// naive loops, double accumulation, no shortcuts that could share a bug with a kernel.
//
// All pointers given to these functions are HOST pointers (copy device data back first).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"

namespace lc::ref {

// ---- random inputs -----------------------------------------------------------------------

// Fresh seed per test run (so repeated runs explore new inputs); LC_TEST_SEED=<n> replays one.
// Tests put describe() into their failure messages (e.g. SCOPED_TRACE(rng.describe())).
class Rng {
 public:
  Rng() : seed_(initial_seed()), gen_(seed_) {}
  explicit Rng(std::uint32_t seed) : seed_(seed), gen_(seed) {}

  std::uint32_t seed() const { return seed_; }
  std::string describe() const {
    return "random seed " + std::to_string(seed_) + " (replay with LC_TEST_SEED=" +
           std::to_string(seed_) + ")";
  }

  void fill(float* p, std::size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    for (std::size_t i = 0; i < n; ++i) p[i] = dist(gen_);
  }
  std::vector<float> vec(std::size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> v(n);
    fill(v.data(), n, lo, hi);
    return v;
  }
  std::int64_t uniform_int(std::int64_t lo, std::int64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(gen_);
  }
  std::mt19937& engine() { return gen_; }

 private:
  static std::uint32_t initial_seed() {
    if (const char* s = std::getenv("LC_TEST_SEED")) {
      return static_cast<std::uint32_t>(std::strtoul(s, nullptr, 10));
    }
    return std::random_device{}();
  }
  std::uint32_t seed_;
  std::mt19937 gen_;
};

// ---- output checking ---------------------------------------------------------------------

// Fill with quiet NaN so a kernel that skips an element is caught by count_nan().
inline void poison(float* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) p[i] = std::numeric_limits<float>::quiet_NaN();
}
inline void poison(std::vector<float>& v) { poison(v.data(), v.size()); }

inline std::size_t count_nan(const float* p, std::size_t n) {
  std::size_t c = 0;
  for (std::size_t i = 0; i < n; ++i) c += std::isnan(p[i]) ? 1 : 0;
  return c;
}
inline std::size_t count_nan(const std::vector<float>& v) { return count_nan(v.data(), v.size()); }

// ||out - ref||_2 / ||ref||_2. A zero reference falls back to the absolute norm so an
// all-zero expected output (e.g. relu of negatives) still demands an all-zero result.
// NaN/Inf anywhere in out gives +inf, so a NaN can never pass a "<= tol" check.
inline double rel_error(const float* out, const double* ref, std::size_t n) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}
inline double rel_error(const std::vector<float>& out, const std::vector<double>& ref) {
  return out.size() == ref.size() ? rel_error(out.data(), ref.data(), out.size())
                                  : std::numeric_limits<double>::infinity();
}

inline double max_abs_diff(const float* out, const double* ref, std::size_t n) {
  double m = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    m = std::fmax(m, std::fabs(static_cast<double>(out[i]) - ref[i]));
  }
  return m;
}
inline double max_abs_diff(const std::vector<float>& out, const std::vector<double>& ref) {
  return out.size() == ref.size() ? max_abs_diff(out.data(), ref.data(), out.size())
                                  : std::numeric_limits<double>::infinity();
}

// ---- activations -------------------------------------------------------------------------

// The tanh approximation (types.h: both backends compute this one, not the erf form).
inline double gelu(double x) {
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
}
inline double relu(double x) { return x > 0.0 ? x : 0.0; }
inline double activate(double x, Activation act) {
  switch (act) {
    case Activation::relu: return relu(x);
    case Activation::gelu: return gelu(x);
    case Activation::gelu_erf: return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
    case Activation::none: break;
  }
  return x;
}

// ---- ops (the Arg structs' pointers must be host pointers) --------------------------------

// float32 MatmulArgs (one product; the residual is added when given).
inline std::vector<double> matmul(const MatmulArgs& p) {
  const auto* A = static_cast<const float*>(p.a);
  const auto* B = static_cast<const float*>(p.b);
  const auto* bias = static_cast<const float*>(p.bias);
  const auto* res = static_cast<const float*>(p.residual);
  std::vector<double> out(static_cast<std::size_t>(p.m * p.n));
  for (std::int64_t i = 0; i < p.m; ++i) {
    for (std::int64_t j = 0; j < p.n; ++j) {
      double s = bias ? static_cast<double>(bias[j]) : 0.0;
      if (res) s += static_cast<double>(res[i * p.n + j]);
      for (std::int64_t t = 0; t < p.k; ++t) {
        const double bv = p.trans_b ? B[j * p.k + t] : B[t * p.n + j];
        s += static_cast<double>(A[i * p.k + t]) * bv;
      }
      out[static_cast<std::size_t>(i * p.n + j)] = activate(s, p.act);
    }
  }
  return out;
}

// Error of a matmul result scaled by the magnitude of its terms: ||out - ref|| / || |A||B| + |bias| ||.
// A product whose dot products cancel (a 1x7 @ 7x1 of random signs, say) has a tiny ||ref||, and
// plain relative error would then measure float32 rounding of the *terms* against that tiny sum;
// this is the standard forward-error scale of a dot product, equal to ||ref|| for positive data.
inline double matmul_error(const std::vector<float>& out, const MatmulArgs& p) {
  const std::vector<double> ref = matmul(p);
  const auto* A = static_cast<const float*>(p.a);
  const auto* B = static_cast<const float*>(p.b);
  std::vector<float> aa(A, A + p.m * p.k), bb(B, B + p.k * p.n), cc, rr;
  for (float& x : aa) x = std::fabs(x);
  for (float& x : bb) x = std::fabs(x);
  MatmulArgs q = p;
  q.a = aa.data();
  q.b = bb.data();
  q.act = Activation::none;
  if (p.bias) {
    const auto* bias = static_cast<const float*>(p.bias);
    cc.assign(bias, bias + p.n);
    for (float& x : cc) x = std::fabs(x);
    q.bias = cc.data();
  }
  if (p.residual) {
    const auto* res = static_cast<const float*>(p.residual);
    rr.assign(res, res + p.m * p.n);
    for (float& x : rr) x = std::fabs(x);
    q.residual = rr.data();
  }
  const std::vector<double> scale = matmul(q);
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += scale[i] * scale[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Element i of a float32 / float64 / float16 / bfloat16 buffer, exactly, as a double.
inline double elem(DType t, const void* p, std::int64_t i) {
  switch (t) {
    case DType::f64: return static_cast<const double*>(p)[i];
    case DType::f16: return to_float(static_cast<const float16*>(p)[i]);
    case DType::bf16: return to_float(static_cast<const bfloat16*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

inline std::vector<double> attention(const AttentionArgs& p) {
  std::vector<double> out(static_cast<std::size_t>(p.sq * p.dv), 0.0);
  std::vector<double> s(static_cast<std::size_t>(p.sk));
  for (std::int64_t i = 0; i < p.sq; ++i) {
    const std::int64_t visible = p.causal ? std::min<std::int64_t>(i + 1, p.sk) : p.sk;
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < visible; ++j) {
      double dot = 0.0;
      for (std::int64_t t = 0; t < p.d; ++t) {
        dot += elem(p.dtype, p.q, i * p.d + t) * elem(p.dtype, p.k, j * p.d + t);
      }
      s[j] = dot * static_cast<double>(p.scale);
      mx = std::fmax(mx, s[j]);
    }
    double denom = 0.0;
    for (std::int64_t j = 0; j < visible; ++j) {
      s[j] = std::exp(s[j] - mx);
      denom += s[j];
    }
    for (std::int64_t c = 0; c < p.dv; ++c) {
      double acc = 0.0;
      for (std::int64_t j = 0; j < visible; ++j) acc += s[j] * elem(p.dtype, p.v, j * p.dv + c);
      out[static_cast<std::size_t>(i * p.dv + c)] = visible > 0 ? acc / denom : 0.0;
    }
  }
  return out;
}

inline std::vector<double> conv2d(const Conv2dArgs& p) {
  std::vector<double> out(static_cast<std::size_t>(p.n * p.oc * p.oh * p.ow));
  for (std::int64_t b = 0; b < p.n; ++b)
    for (std::int64_t o = 0; o < p.oc; ++o)
      for (std::int64_t y = 0; y < p.oh; ++y)
        for (std::int64_t x = 0; x < p.ow; ++x) {
          double s = p.bias ? static_cast<double>(p.bias[o]) : 0.0;
          for (std::int64_t c = 0; c < p.c; ++c)
            for (std::int64_t ky = 0; ky < p.kh; ++ky) {
              const std::int64_t iy = y * p.stride_h - p.pad_h + ky;
              if (iy < 0 || iy >= p.h) continue;
              for (std::int64_t kx = 0; kx < p.kw; ++kx) {
                const std::int64_t ix = x * p.stride_w - p.pad_w + kx;
                if (ix < 0 || ix >= p.w_in) continue;
                s += static_cast<double>(p.x[((b * p.c + c) * p.h + iy) * p.w_in + ix]) *
                     p.w[((o * p.c + c) * p.kh + ky) * p.kw + kx];
              }
            }
          out[static_cast<std::size_t>(((b * p.oc + o) * p.oh + y) * p.ow + x)] =
              activate(s, p.act);
        }
  return out;
}

inline std::vector<double> layernorm(const LayerNormArgs& p) {
  std::vector<double> out(static_cast<std::size_t>(p.rows * p.cols));
  for (std::int64_t r = 0; r < p.rows; ++r) {
    // x + residual (the fused residual add), summed in double
    const auto x = [&](std::int64_t c) {
      const std::int64_t i = r * p.cols + c;
      return elem(p.dtype, p.x, i) + (p.residual ? elem(p.dtype, p.residual, i) : 0.0);
    };
    double mean = 0.0;
    for (std::int64_t c = 0; c < p.cols; ++c) mean += x(c);
    mean /= static_cast<double>(p.cols);
    double var = 0.0;
    for (std::int64_t c = 0; c < p.cols; ++c) var += (x(c) - mean) * (x(c) - mean);
    var /= static_cast<double>(p.cols);  // biased, as torch layer_norm
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(p.eps));
    for (std::int64_t c = 0; c < p.cols; ++c) {
      double y = (x(c) - mean) * inv;
      if (p.gamma) y *= elem(p.dtype, p.gamma, c);
      if (p.beta) y += elem(p.dtype, p.beta, c);
      out[static_cast<std::size_t>(r * p.cols + c)] = y;
    }
  }
  return out;
}

inline std::vector<double> softmax(const SoftmaxArgs& p) {
  std::vector<double> out(static_cast<std::size_t>(p.rows * p.cols));
  for (std::int64_t r = 0; r < p.rows; ++r) {
    // x * scale + mask (the fused prologue), in double
    const auto x = [&](std::int64_t c) {
      const double v = elem(p.dtype, p.x, r * p.cols + c) * static_cast<double>(p.scale);
      return p.mask ? v + elem(p.dtype, p.mask, p.mask_row(r) * p.cols + c) : v;
    };
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t c = 0; c < p.cols; ++c) mx = std::fmax(mx, x(c));
    double sum = 0.0;
    for (std::int64_t c = 0; c < p.cols; ++c) sum += std::exp(x(c) - mx);
    for (std::int64_t c = 0; c < p.cols; ++c) {
      out[static_cast<std::size_t>(r * p.cols + c)] = std::exp(x(c) - mx) / sum;
    }
  }
  return out;
}

// a and b are read before anything is written, so callers may alias out with a or b on the
// kernel side and still pass the ORIGINAL inputs here.
inline std::vector<double> elementwise(EwKind kind, const float* a, const float* b,
                                       std::int64_t n, float alpha = 1.0f) {
  std::vector<double> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = a[i];
    double y = 0.0;
    switch (kind) {
      case EwKind::add: y = x + static_cast<double>(b[i]); break;
      case EwKind::sub: y = x - static_cast<double>(b[i]); break;
      case EwKind::mul: y = x * static_cast<double>(b[i]); break;
      case EwKind::scale: y = x * static_cast<double>(alpha); break;
      case EwKind::relu: y = relu(x); break;
      case EwKind::gelu: y = gelu(x); break;
      case EwKind::div: y = x / static_cast<double>(b[i]); break;
      case EwKind::gelu_erf: y = 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); break;
    }
    out[static_cast<std::size_t>(i)] = y;
  }
  return out;
}
inline std::vector<double> elementwise(const ElementwiseArgs& p) {
  return elementwise(p.kind, static_cast<const float*>(p.a), static_cast<const float*>(p.b), p.n,
                     p.alpha);
}

}  // namespace lc::ref
