// Branch-free float math that g++ -O3 auto-vectorises (even at the baseline SSE2 target).
//
// Why not std::exp / std::tanh: they are library calls the vectoriser cannot inline, costing
// ~5-10 ns each. Softmax, attention and GELU are dominated by them at small sizes (attention at
// seq=8 needs 64 exps per call), so these are written with integer bit tricks the vectoriser
// handles: round-to-nearest via the 1.5*2^23 magic constant, 2^n built in the exponent field.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "lightning_core/types.h"

namespace lc::cpu {

// Below this, float32's e^x underflows to exactly 0 (e^-103.28 is the smallest denormal).
constexpr float kExpUnderflow = -103.28f;
// Where float32's exp overflows to inf: ln(FLT_MAX).
constexpr float kExpOverflow = 88.7228f;

// e^x with <= ~2 ulp relative error on [-87, 88]; on [-103.28, -87) it returns e^-87 (tiny and
// nonzero, like the denormal float32 would give), below -103.28 exactly 0 as float32's exp (so
// a masked or -inf score has weight 0 and 0 * inf is NaN, as in torch); above 88 it saturates
// at e^88 (never inf); NaN stays NaN.
inline float fast_exp(float x) {
  const bool under = x < kExpUnderflow;
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  std::int32_t ti;
  std::memcpy(&ti, &t, 4);
  const std::int32_t ni = ti - 0x4B400000;  // the integer n, from t's mantissa bits
  // Cody-Waite: ln2 split into a part exactly representable with few bits plus the rest, so
  // r = x - n*ln2 keeps full precision.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  // Minimax polynomial for e^r on [-ln2/2, ln2/2] (the classic single-precision expf set).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return under ? 0.0f : p * scale;
}

// GELU, tanh approximation: 0.5*x*(1 + tanh(u)), u = sqrt(2/pi)*(x + 0.044715 x^3).
// Uses the identity 0.5*(1 + tanh(u)) = 1/(1 + e^(-2u)), which has no cancellation near
// u = 0 (unlike 1 - 2/(e^(2u)+1)) and needs a single exp.
// Where e^(-2u) overflows float32 (x below about -10.33) the result is -0, as float32's exp
// gives it (x / inf; the CUDA kernels' expf does the same): fast_exp saturates at e^88 instead,
// which left ~1e-37 there, and 1e-37 * inf is inf where torch and the reference give NaN (the
// fuzz suite found it through lc.api.ffn with an infinite second weight).
// Non-finite inputs follow torch: gelu(nan) = nan, gelu(+inf) = +inf, gelu(-inf) = nan
// (torch computes -inf * 0 there; fast_exp's clamping alone would give -inf).
inline float gelu(float x) {
  const float u2 = -1.5957691216057308f * (x + 0.044715f * x * x * x);  // -2*sqrt(2/pi)*(...)
  const float y = u2 > kExpOverflow ? 0.0f * x : x / (1.0f + fast_exp(u2));
  return x == -__builtin_inff() ? __builtin_nanf("") : y;
}

// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2) (torch's approximate=
// "none"), written so the vectoriser can inline it (std::erf is a library call: 17x slower).
// erfc(z) for z = |x| / sqrt 2 >= 0 is t exp(-z^2 + P(t)), t = 1 / (1 + z/2), with the
// Chebyshev-fitted degree-9 P of Press et al.'s erfcc (fractional error < 1.2e-7 over z >= 0);
// erfc(-z) = 2 - erfc(z). Working through erfc keeps the negative tail relatively accurate
// (1 + erf(x / sqrt 2) would cancel). Measured against float64 on 200,001 points of [-12, 12]:
// relative error <= 4e-7 for x >= 0, <= 2e-6 on [-4, 0), <= 6e-6 on [-8, -4) and <= 2e-5
// below (where |gelu| < 1e-14: float32's rounding of z^2 in the exponent dominates).
// gelu_erf(-inf) = NaN (-inf * 0, as the tanh form), gelu_erf(+inf) = inf, NaN stays NaN.
inline float gelu_erf(float x) {
  const float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float e = t * fast_exp(p - z * z);  // erfc(|x| / sqrt 2)
  const float c = x < 0.0f ? e : 2.0f - e;  // erfc(-x / sqrt 2)
  return 0.5f * x * c;
}

// NaN propagates (relu(nan) = nan), as in torch.relu and np.maximum(x, 0).
inline float relu(float x) { return x < 0.0f ? 0.0f : x; }

inline float activate(float x, Activation act) {
  if (act == Activation::relu) return relu(x);
  if (act == Activation::gelu) return gelu(x);
  if (act == Activation::gelu_erf) return gelu_erf(x);
  return x;
}

// These helpers are always inlined, so the 32-byte-vector calling convention (which differs
// with and without AVX, hence g++'s -Wpsabi note) never applies to a real call.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// ---- explicit 8-lane vectors (GCC/Clang vector extensions) --------------------------------
// Used where trip counts are tiny and runtime-sized (attention at seq=8): auto-vectorised
// loops spend more time in their prologue/epilogue than in the body there. In a function
// compiled for AVX2 a v8f is one ymm register; at the baseline target it is two xmm.
typedef float v8f __attribute__((vector_size(32)));
typedef std::int32_t v8i __attribute__((vector_size(32)));
// 16 lanes: one zmm register in functions compiled for AVX-512 (used only there).
typedef float v16f __attribute__((vector_size(64)));
typedef std::int32_t v16i __attribute__((vector_size(64)));
// The float / int32 vector types of W lanes (W = 8 or 16), for code templated on the width.
template <int W> struct VecOf;
template <> struct VecOf<8> { using F = v8f; using I = v8i; };
template <> struct VecOf<16> { using F = v16f; using I = v16i; };

[[gnu::always_inline]] inline v8f v8_load(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
[[gnu::always_inline]] inline void v8_store(float* p, const v8f& v) { std::memcpy(p, &v, sizeof(v)); }

// fast_exp, lane-wise (same constants, error bound and underflow to exact 0), for any width
// of float vector VF with its int32 vector VI (v8f / v8i below, or 16 lanes in AVX-512 code).
template <class VF, class VI>
[[gnu::always_inline]] inline VF vec_exp(const VF& xin) {
  VF x = xin;
  const VF lo = VF{} - 87.0f, hi = VF{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const VF magic = VF{} + 12582912.0f;
  const VF t = x * 1.44269504088896341f + magic;
  const VF n = t - magic;
  VI ti;
  static_assert(sizeof(VI) == sizeof(VF), "VI must have VF's lanes");
  std::memcpy(&ti, &t, sizeof(ti));  // bit cast; compiles to nothing
  const VI ni = ti - 0x4B400000;
  VF r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  VF p = VF{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const VI bits = (ni + 127) << 23;
  VF scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return xin < kExpUnderflow ? VF{} : p * scale;  // exactly 0 where float32's exp is
}

[[gnu::always_inline]] inline v8f v8_exp(const v8f& xin) { return vec_exp<v8f, v8i>(xin); }

[[gnu::always_inline]] inline float v8_hmax(const v8f& v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
[[gnu::always_inline]] inline float v8_hsum(const v8f& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

}  // namespace lc::cpu
