// Elementwise programs on the CPU (Backend::elementwise_program, EwProgramArgs).
//
// A block interpreter: the output is walked in tiles of kTile elements; per tile each input is
// converted into a float (double for a float64 result) register row, the constants are
// broadcast into theirs, and every instruction runs as one tight loop over the tile (the
// switch is paid once per instruction per tile, not per element; add / mul / relu / gelu
// vectorise). Strided / broadcast inputs gather through per-tile offsets computed by an
// incrementing multi-index. Large outputs split over the CPU pool; small ones run inline.
// out may alias an input in the contiguous case: a tile's inputs are read before it is written.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;
constexpr int kTile = 128;
// A program is several passes of work per element: threads pay off from ~64K elements.
constexpr i64 kParallelElems = i64{1} << 16;
constexpr i64 kGrain = i64{1} << 14;

template <class C>
inline C load_as(const void* p, DType t, i64 i) {
  switch (t) {
    case DType::f32: return static_cast<C>(static_cast<const float*>(p)[i]);
    case DType::f64: return static_cast<C>(static_cast<const double*>(p)[i]);
    case DType::f16: return static_cast<C>(half_to_float(static_cast<const float16*>(p)[i].bits));
    case DType::bf16: return static_cast<C>(to_float(static_cast<const bfloat16*>(p)[i]));
    default: return C(0);
  }
}

template <class C>
void load_row(const void* p, DType t, i64 lo, int len, C* dst) {
  switch (t) {
    case DType::f32: {
      const float* s = static_cast<const float*>(p) + lo;
      for (int j = 0; j < len; ++j) dst[j] = static_cast<C>(s[j]);
      return;
    }
    case DType::f64: {
      const double* s = static_cast<const double*>(p) + lo;
      for (int j = 0; j < len; ++j) dst[j] = static_cast<C>(s[j]);
      return;
    }
    case DType::f16: {
      const float16* s = static_cast<const float16*>(p) + lo;
      for (int j = 0; j < len; ++j) dst[j] = static_cast<C>(half_to_float(s[j].bits));
      return;
    }
    case DType::bf16: {
      const bfloat16* s = static_cast<const bfloat16*>(p) + lo;
      for (int j = 0; j < len; ++j) dst[j] = static_cast<C>(to_float(s[j]));
      return;
    }
    default: return;
  }
}

template <class C>
void gather_row(const void* p, DType t, const i64* off, int len, C* dst) {
  for (int j = 0; j < len; ++j) dst[j] = load_as<C>(p, t, off[j]);
}

template <class C>
void store_row(void* p, DType t, i64 lo, int len, const C* src) {
  switch (t) {
    case DType::f32: {
      float* d = static_cast<float*>(p) + lo;
      for (int j = 0; j < len; ++j) d[j] = static_cast<float>(src[j]);
      return;
    }
    case DType::f64: {
      double* d = static_cast<double*>(p) + lo;
      for (int j = 0; j < len; ++j) d[j] = static_cast<double>(src[j]);
      return;
    }
    case DType::f16: {
      float16* d = static_cast<float16*>(p) + lo;
      for (int j = 0; j < len; ++j) d[j] = float16{float_to_half(static_cast<float>(src[j]))};
      return;
    }
    case DType::bf16: {
      bfloat16* d = static_cast<bfloat16*>(p) + lo;
      for (int j = 0; j < len; ++j) d[j] = to_bf16(static_cast<float>(src[j]));
      return;
    }
    default: return;
  }
}

// NaN-propagating max / min (numpy's maximum / minimum).
template <class C>
inline C max_nan(C a, C b) { return (a != a || a > b) ? a : b; }
template <class C>
inline C min_nan(C a, C b) { return (a != a || a < b) ? a : b; }

template <class C>
inline C gelu_tanh_c(C x) {
  if constexpr (std::is_same_v<C, float>) return gelu(x);  // lc.gelu's own definition
  else return 0.5 * x * (1.0 + std::tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
}
template <class C>
inline C gelu_erf_c(C x) {
  if constexpr (std::is_same_v<C, float>) return gelu_erf(x);
  else return 0.5 * x * (1.0 + std::erf(x * 0.70710678118654752));
}

// float32 gelu / gelu_erf: the elementwise kernels' own loops (their AVX2 / AVX-512 builds; a
// plain loop here gets only SSE2 and does not vectorise the exp), so a fused gelu computes
// exactly what lc.gelu does.
void gelu_row(EwKind kind, const float* a, float* d, int len) {
  ElementwiseArgs e;
  e.kind = kind;
  e.a = a;
  e.out = d;
  e.n = len;
  e.dtype = DType::f32;
  elementwise(e);  // len <= kTile: runs inline, never on the pool
}

// float32 sigmoid (silu: times x) on 8 lanes with fast_exp's vector twin (<= 2 ulp; its
// saturation at e^88 only rounds 1 / (1 + e^-x) to what float32 gives anyway).
void sigmoid_row(const float* __restrict a, float* __restrict d, int len, bool silu) {
  int j = 0;
  for (; j + 8 <= len; j += 8) {
    const v8f x = v8_load(a + j);
    const v8f sg = 1.0f / (1.0f + v8_exp(v8f{} - x));
    v8_store(d + j, silu ? x * sg : sg);
  }
  for (; j < len; ++j) {
    const float sg = 1.0f / (1.0f + fast_exp(-a[j]));
    d[j] = silu ? a[j] * sg : sg;
  }
}

template <class C>
void exec_instr(const EwInstr& in, C (*r)[kTile], int dst, int len) {
  // The destination is a later register than both operands (SSA): never the same row, so the
  // loops vectorise without overlap checks.
  const C* __restrict a = r[in.a];
  const C* __restrict b = r[in.b];
  C* __restrict d = r[dst];
  const C one = C(1);
  switch (in.op) {
    case EwOp::add: for (int j = 0; j < len; ++j) d[j] = a[j] + b[j]; break;
    case EwOp::sub: for (int j = 0; j < len; ++j) d[j] = a[j] - b[j]; break;
    case EwOp::mul: for (int j = 0; j < len; ++j) d[j] = a[j] * b[j]; break;
    case EwOp::div: for (int j = 0; j < len; ++j) d[j] = a[j] / b[j]; break;
    case EwOp::max: for (int j = 0; j < len; ++j) d[j] = max_nan(a[j], b[j]); break;
    case EwOp::min: for (int j = 0; j < len; ++j) d[j] = min_nan(a[j], b[j]); break;
    case EwOp::neg: for (int j = 0; j < len; ++j) d[j] = -a[j]; break;
    case EwOp::abs: for (int j = 0; j < len; ++j) d[j] = std::fabs(a[j]); break;
    case EwOp::exp: for (int j = 0; j < len; ++j) d[j] = std::exp(a[j]); break;
    case EwOp::log: for (int j = 0; j < len; ++j) d[j] = std::log(a[j]); break;
    case EwOp::sqrt: for (int j = 0; j < len; ++j) d[j] = std::sqrt(a[j]); break;
    case EwOp::rsqrt: for (int j = 0; j < len; ++j) d[j] = one / std::sqrt(a[j]); break;
    case EwOp::tanh: for (int j = 0; j < len; ++j) d[j] = std::tanh(a[j]); break;
    case EwOp::sigmoid:
      if constexpr (std::is_same_v<C, float>) sigmoid_row(a, d, len, false);
      else for (int j = 0; j < len; ++j) d[j] = one / (one + std::exp(-a[j]));
      break;
    case EwOp::relu: for (int j = 0; j < len; ++j) d[j] = a[j] < C(0) ? C(0) : a[j]; break;
    case EwOp::gelu:
      if constexpr (std::is_same_v<C, float>) gelu_row(EwKind::gelu, a, d, len);
      else for (int j = 0; j < len; ++j) d[j] = gelu_tanh_c(a[j]);
      break;
    case EwOp::gelu_erf:
      if constexpr (std::is_same_v<C, float>) gelu_row(EwKind::gelu_erf, a, d, len);
      else for (int j = 0; j < len; ++j) d[j] = gelu_erf_c(a[j]);
      break;
    case EwOp::silu:
      if constexpr (std::is_same_v<C, float>) sigmoid_row(a, d, len, true);
      else for (int j = 0; j < len; ++j) d[j] = a[j] / (one + std::exp(-a[j]));
      break;
  }
}

// Per-tile offsets of every strided input for the output elements [lo, lo + len).
void tile_offsets(const EwProgramArgs& p, i64 lo, int len, i64 (*off)[kTile]) {
  const int nd = p.ndim;
  i64 idx[kEwMaxDims];
  i64 o[kEwProgMaxInputs] = {};
  i64 rem = lo;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
  }
  for (int k = 0; k < p.n_inputs; ++k)
    for (int d = 0; d < nd; ++d) o[k] += idx[d] * p.strides[k][d];
  for (int j = 0; j < len; ++j) {
    for (int k = 0; k < p.n_inputs; ++k) off[k][j] = o[k];
    // advance the multi-index by one (carry through the dims)
    for (int d = nd - 1; d >= 0; --d) {
      for (int k = 0; k < p.n_inputs; ++k) o[k] += p.strides[k][d];
      if (++idx[d] < p.shape[d]) break;
      for (int k = 0; k < p.n_inputs; ++k) o[k] -= p.strides[k][d] * p.shape[d];
      idx[d] = 0;
    }
  }
}

template <class C>
void run_range(const EwProgramArgs& p, i64 lo, i64 hi) {
  alignas(64) C r[kEwProgMaxRegs][kTile];
  alignas(64) i64 off[kEwProgMaxInputs][kTile];
  const EwProgram& prog = p.prog;
  const int used = std::min<int>(prog.n_inputs, p.n_inputs);
  for (int c = 0; c < prog.n_consts; ++c)
    std::fill(r[kEwRegConst + c], r[kEwRegConst + c] + kTile, static_cast<C>(prog.consts[c]));
  for (i64 t0 = lo; t0 < hi; t0 += kTile) {
    const int len = static_cast<int>(std::min<i64>(kTile, hi - t0));
    if (p.ndim == 0) {
      for (int k = 0; k < used; ++k) load_row(p.in[k], p.in_dtype[k], t0, len, r[k]);
    } else {
      tile_offsets(p, t0, len, off);
      for (int k = 0; k < used; ++k) gather_row(p.in[k], p.in_dtype[k], off[k], len, r[k]);
    }
    for (int i = 0; i < prog.n_instrs; ++i) exec_instr(prog.code[i], r, kEwRegTemp + i, len);
    store_row(p.out, p.out_dtype, t0, len, r[prog.result()]);
  }
}

}  // namespace

void elementwise_program(const EwProgramArgs& p) {
  if (p.n <= 0) return;
  auto body = [&](auto c) {
    using C = decltype(c);
    if (p.n < kParallelElems) return run_range<C>(p, 0, p.n);
    parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { run_range<C>(p, lo, hi); });
  };
  if (p.out_dtype == DType::f64) body(double{});
  else body(float{});
}

}  // namespace lc::cpu
