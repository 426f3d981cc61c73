// Elementwise programs on the CPU (Backend::elementwise_program, EwProgramArgs).
//
// A block interpreter: the output is walked in tiles of kTile elements; per tile each input is
// made a float (double for a float64 result) row (a contiguous float32 input is read in place,
// 16-bit ones are widened with the F16C / shift loops of half_convert), the constants are
// broadcast rows filled once, and every instruction runs as one tight loop over the tile (the
// switch is paid once per instruction per tile, not per element). The float32 loops
// (ew_program_loops.inc) are compiled for SSE2 / AVX2+FMA / AVX-512 and picked at run time
// (simd.h), and call no library function: exp / log / tanh are ew_math.h's branch-free
// full-range versions, gelu / gelu_erf vec_math.h's (exactly lc.gelu's), so every instruction
// vectorises. Strided / broadcast inputs are read run by run along the innermost dimension (a
// copy, a fill for a broadcast, or a strided loop; a float32 run that covers the whole tile is
// read in place). Large outputs split over the CPU pool; small ones run inline.
// out may alias an input in the contiguous case: a tile's inputs are read before it is written.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/half.h"
#include "backends/cpu/half_convert.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/thread_pool.h"
#include "backends/cpu/vec_math.h"

namespace lc::cpu {
namespace {

using i64 = std::int64_t;
constexpr int kTile = 256;
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

// n elements of an input from element `base` on, `stride` apart, as C: a copy (stride 1), a
// fill (stride 0: a broadcast dimension) or a strided loop.
template <class C>
void load_run(const void* p, DType t, i64 base, i64 stride, int n, C* dst) {
  if (stride == 1) return load_row(p, t, base, n, dst);
  if (stride == 0) return std::fill(dst, dst + n, load_as<C>(p, t, base));
  for (int j = 0; j < n; ++j) dst[j] = load_as<C>(p, t, base + j * stride);
}

// Output elements [lo, lo + len) of strided input k (ndim > 0) as a row of C. The tile is cut
// into runs along the innermost dimension, each one load_run; the multi-index is computed once
// per tile and carried per row, never per element. A float32 float tile that is one run of
// stride 1 is read in place (the returned pointer); otherwise the row lands in dst.
template <class C>
const C* gather_tile(const EwProgramArgs& p, int k, i64 lo, int len, C* dst) {
  const int nd = p.ndim;
  const i64* st = p.strides[k];
  const i64 inner = p.shape[nd - 1], s_in = st[nd - 1];
  i64 idx[kEwMaxDims];
  i64 rem = lo, base = 0;
  for (int d = nd - 1; d >= 0; --d) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
    base += idx[d] * st[d];
  }
  if constexpr (std::is_same_v<C, float>) {
    if (p.in_dtype[k] == DType::f32 && s_in == 1 && len <= inner - idx[nd - 1])
      return static_cast<const float*>(p.in[k]) + base;
  }
  for (int j = 0;;) {
    const int run = static_cast<int>(std::min<i64>(len - j, inner - idx[nd - 1]));
    load_run(p.in[k], p.in_dtype[k], base, s_in, run, dst + j);
    j += run;
    if (j >= len) break;
    // the next row: back to its first element, carry through the outer dimensions
    base -= idx[nd - 1] * s_in;
    idx[nd - 1] = 0;
    for (int d = nd - 2; d >= 0; --d) {
      base += st[d];
      if (++idx[d] < p.shape[d]) break;
      base -= st[d] * p.shape[d];
      idx[d] = 0;
    }
  }
  return dst;
}

// A float result to float16 inline (the hot case); a float64 result rounded once (dtype.h).
inline float16 to_half(float f) { return float16{float_to_half(f)}; }
inline float16 to_half(double v) { return to_f16(v); }

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
      for (int j = 0; j < len; ++j) d[j] = to_half(src[j]);
      return;
    }
    case DType::bf16: {
      bfloat16* d = static_cast<bfloat16*>(p) + lo;
      for (int j = 0; j < len; ++j) d[j] = to_bf16(src[j]);
      return;
    }
    default: return;
  }
}

// ---- float64 (a float64 result): plain loops, the C library's functions --------------------

inline double max_nan_d(double a, double b) { return (a != a || a > b) ? a : b; }
inline double min_nan_d(double a, double b) { return (a != a || a < b) ? a : b; }

void exec_instr_f64(const EwInstr& in, const double* __restrict a, const double* __restrict b,
                    double* __restrict d, int len) {
  switch (in.op) {
    case EwOp::add: for (int j = 0; j < len; ++j) d[j] = a[j] + b[j]; break;
    case EwOp::sub: for (int j = 0; j < len; ++j) d[j] = a[j] - b[j]; break;
    case EwOp::mul: for (int j = 0; j < len; ++j) d[j] = a[j] * b[j]; break;
    case EwOp::div: for (int j = 0; j < len; ++j) d[j] = a[j] / b[j]; break;
    case EwOp::max: for (int j = 0; j < len; ++j) d[j] = max_nan_d(a[j], b[j]); break;
    case EwOp::min: for (int j = 0; j < len; ++j) d[j] = min_nan_d(a[j], b[j]); break;
    case EwOp::neg: for (int j = 0; j < len; ++j) d[j] = -a[j]; break;
    case EwOp::abs: for (int j = 0; j < len; ++j) d[j] = std::fabs(a[j]); break;
    case EwOp::exp: for (int j = 0; j < len; ++j) d[j] = std::exp(a[j]); break;
    case EwOp::log: for (int j = 0; j < len; ++j) d[j] = std::log(a[j]); break;
    case EwOp::sqrt: for (int j = 0; j < len; ++j) d[j] = std::sqrt(a[j]); break;
    case EwOp::rsqrt: for (int j = 0; j < len; ++j) d[j] = 1.0 / std::sqrt(a[j]); break;
    case EwOp::tanh: for (int j = 0; j < len; ++j) d[j] = std::tanh(a[j]); break;
    case EwOp::sigmoid: for (int j = 0; j < len; ++j) d[j] = 1.0 / (1.0 + std::exp(-a[j])); break;
    case EwOp::relu: for (int j = 0; j < len; ++j) d[j] = a[j] < 0.0 ? 0.0 : a[j]; break;
    case EwOp::gelu:
      for (int j = 0; j < len; ++j)
        d[j] = 0.5 * a[j] * (1.0 + std::tanh(0.79788456080286536 * (a[j] + 0.044715 * a[j] * a[j] * a[j])));
      break;
    case EwOp::gelu_erf:
      for (int j = 0; j < len; ++j) d[j] = 0.5 * a[j] * (1.0 + std::erf(a[j] * 0.70710678118654752));
      break;
    case EwOp::silu: for (int j = 0; j < len; ++j) d[j] = a[j] / (1.0 + std::exp(-a[j])); break;
  }
}

// ---- float32: the vectorised loops, one build per instruction set --------------------------

// float32 gelu / gelu_erf: the elementwise kernels' own loops (their AVX2 / AVX-512 builds), so
// a fused gelu computes exactly what lc.gelu does.
void gelu_row(EwKind kind, const float* a, float* d, int len) {
  ElementwiseArgs e;
  e.kind = kind;
  e.a = a;
  e.out = d;
  e.n = len;
  e.dtype = DType::f32;
  elementwise(e);  // len <= kTile: runs inline, never on the pool
}

// -fno-trapping-math: see ew_math.inc (the selects stay selects, so the loops vectorise).
#pragma GCC push_options
#pragma GCC optimize("-fno-trapping-math")
namespace isa_sse {
#include "backends/cpu/ew_program_loops.inc"
}  // namespace isa_sse
#pragma GCC pop_options
#if defined(LC_CPU_MULTI_ISA)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC optimize("-fno-trapping-math")
namespace isa_avx2 {
#include "backends/cpu/ew_program_loops.inc"
}  // namespace isa_avx2
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#pragma GCC optimize("-fno-trapping-math")
namespace isa_avx512 {
#include "backends/cpu/ew_program_loops.inc"
}  // namespace isa_avx512
#pragma GCC pop_options
#endif

using ProgramFn = void (*)(const EwProgram&, const float**, float (*)[kTile], int);

ProgramFn program_kernel() {
  return LC_ISA_PICK(simd_level(), exec_program);
}

// Registers the program reads (inputs it never reads are not loaded).
unsigned read_inputs(const EwProgram& prog, int used) {
  unsigned m = 0;
  for (int i = 0; i < prog.n_instrs; ++i) {
    const EwInstr& in = prog.code[i];
    if (in.a < used) m |= 1u << in.a;
    if (ew_op_binary(in.op) && in.b < used) m |= 1u << in.b;
  }
  return m;
}

void run_range_f32(const EwProgramArgs& p, i64 lo, i64 hi, ProgramFn fn) {
  alignas(64) float in_rows[kEwProgMaxInputs][kTile];
  alignas(64) float const_rows[kEwProgMaxConsts][kTile];
  alignas(64) float tmp[kEwProgMaxInstrs][kTile];
  const EwProgram& prog = p.prog;
  const int used = std::min<int>(prog.n_inputs, p.n_inputs);
  const unsigned mask = read_inputs(prog, used);
  const float* row[kEwProgMaxRegs] = {};
  for (int c = 0; c < prog.n_consts; ++c) {
    std::fill(const_rows[c], const_rows[c] + kTile, static_cast<float>(prog.consts[c]));
    row[kEwRegConst + c] = const_rows[c];
  }
  for (i64 t0 = lo; t0 < hi; t0 += kTile) {
    const int len = static_cast<int>(std::min<i64>(kTile, hi - t0));
    for (int k = 0; k < used; ++k) {
      if (!((mask >> k) & 1u)) continue;
      const DType t = p.in_dtype[k];
      if (p.ndim > 0) {
        row[k] = gather_tile(p, k, t0, len, in_rows[k]);
      } else if (t == DType::f32) {
        row[k] = static_cast<const float*>(p.in[k]) + t0;  // read in place
      } else if (t == DType::f16 || t == DType::bf16) {
        widen_to_f32(t, static_cast<const char*>(p.in[k]) + t0 * 2, in_rows[k], len);
        row[k] = in_rows[k];
      } else {
        load_row(p.in[k], t, t0, len, in_rows[k]);
        row[k] = in_rows[k];
      }
    }
    fn(prog, row, tmp, len);
    const float* res = row[prog.result()];
    if (p.out_dtype == DType::f32)
      std::copy(res, res + len, static_cast<float*>(p.out) + t0);
    else if (p.out_dtype == DType::f16 || p.out_dtype == DType::bf16)
      narrow_from_f32(p.out_dtype, res, static_cast<char*>(p.out) + t0 * 2, len);
    else
      store_row(p.out, p.out_dtype, t0, len, res);
  }
}

void run_range_f64(const EwProgramArgs& p, i64 lo, i64 hi) {
  alignas(64) double r[kEwProgMaxRegs][kTile];
  const EwProgram& prog = p.prog;
  const int used = std::min<int>(prog.n_inputs, p.n_inputs);
  for (int c = 0; c < prog.n_consts; ++c)
    std::fill(r[kEwRegConst + c], r[kEwRegConst + c] + kTile, prog.consts[c]);
  for (i64 t0 = lo; t0 < hi; t0 += kTile) {
    const int len = static_cast<int>(std::min<i64>(kTile, hi - t0));
    if (p.ndim == 0) {
      for (int k = 0; k < used; ++k) load_row(p.in[k], p.in_dtype[k], t0, len, r[k]);
    } else {
      for (int k = 0; k < used; ++k) gather_tile(p, k, t0, len, r[k]);
    }
    for (int i = 0; i < prog.n_instrs; ++i) {
      const EwInstr& in = prog.code[i];
      exec_instr_f64(in, r[in.a], r[in.b], r[kEwRegTemp + i], len);
    }
    store_row(p.out, p.out_dtype, t0, len, r[prog.result()]);
  }
}

}  // namespace

void elementwise_program(const EwProgramArgs& p) {
  if (p.n <= 0) return;
  if (p.out_dtype == DType::f64) {
    if (p.n < kParallelElems) return run_range_f64(p, 0, p.n);
    parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { run_range_f64(p, lo, hi); });
    return;
  }
  const ProgramFn fn = program_kernel();
  if (p.n < kParallelElems) return run_range_f32(p, 0, p.n, fn);
  parallel_for(0, p.n, kGrain, [&](i64 lo, i64 hi) { run_range_f32(p, lo, hi, fn); });
}

}  // namespace lc::cpu
