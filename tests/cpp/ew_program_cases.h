// Backend-generic checks of Backend::elementwise_program (EwProgramArgs), written against the
// Backend interface only, so the same code runs on the CPU (test_ew_program.cpp) and on CUDA
// (test_cuda_ew_program.cpp, skipped without a GPU): every instruction in every storage dtype,
// the contiguous path (aligned: CUDA's vector loads + tail; unaligned: its scalar path),
// broadcast / strided inputs, mixed input dtypes, a multi-block size. Outputs are poisoned with
// NaN first; references are float64 from the inputs' stored values.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ew_cases.h"
#include "lightning_core/ew_program.h"

namespace lc::ewprogtest {

using i64 = std::int64_t;
using ewtest::Buf;
using ewtest::decode;
using ewtest::encode;
using ewtest::nan_bytes;
using ewtest::rounded;

inline double ref_op(EwOp op, double a, double b) {
  const double s = 1.0 / (1.0 + std::exp(-a));
  switch (op) {
    case EwOp::add: return a + b;
    case EwOp::sub: return a - b;
    case EwOp::mul: return a * b;
    case EwOp::div: return a / b;
    case EwOp::max: return a > b ? a : b;
    case EwOp::min: return a < b ? a : b;
    case EwOp::neg: return -a;
    case EwOp::abs: return std::fabs(a);
    case EwOp::exp: return std::exp(a);
    case EwOp::log: return std::log(a);
    case EwOp::sqrt: return std::sqrt(a);
    case EwOp::rsqrt: return 1.0 / std::sqrt(a);
    case EwOp::tanh: return std::tanh(a);
    case EwOp::sigmoid: return s;
    case EwOp::relu: return a < 0 ? 0.0 : a;
    case EwOp::gelu: return 0.5 * a * (1.0 + std::tanh(0.79788456080286536 * (a + 0.044715 * a * a * a)));
    case EwOp::gelu_erf: return 0.5 * a * (1.0 + std::erf(a * 0.70710678118654752));
    case EwOp::silu: return a * s;
  }
  return 0;
}

inline double tol_for(DType t, EwOp op) {
  if (t == DType::f32 && (op == EwOp::rsqrt || op == EwOp::gelu_erf)) return 5e-5;
  return ewtest::tol(t);
}

inline void expect_close(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < got.size() && bad < 5; ++i) {
    const double err = std::fabs(got[i] - ref[i]);
    if (!(err <= tol * (1.0 + std::fabs(ref[i])))) {
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << ", want " << ref[i];
      ++bad;
    }
  }
}

// Deterministic values in [lo, hi) (a cheap LCG: the same on every backend).
inline std::vector<double> values(i64 n, double lo, double hi, unsigned seed) {
  std::vector<double> v(static_cast<std::size_t>(n));
  std::uint32_t s = seed * 2654435761u + 1u;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = lo + (hi - lo) * (static_cast<double>(s >> 8) / 16777216.0);
  }
  return v;
}

// One instruction over n contiguous elements, `pad` bytes of misalignment on every pointer.
inline void check_op(Backend& be, EwOp op, DType t, i64 n, std::size_t pad) {
  const bool positive = op == EwOp::log || op == EwOp::sqrt || op == EwOp::rsqrt;
  const std::vector<double> a = rounded(values(n, positive ? 0.1 : -3.0, positive ? 4.0 : 3.0, 1), t);
  std::vector<double> b = values(n, 0.5, 2.0, 2);
  for (std::size_t i = 0; i < b.size(); i += 2) b[i] = -b[i];
  b = rounded(b, t);
  const std::size_t es = dtype_size(t);
  Buf ba(be, static_cast<std::size_t>(n) * es, pad), bb(be, static_cast<std::size_t>(n) * es, pad),
      bo(be, static_cast<std::size_t>(n) * es, pad);
  ba.upload(encode(a, t));
  bb.upload(encode(b, t));
  bo.upload(nan_bytes(n, t));
  EwProgramArgs p;
  p.prog = parse_ew_program(std::string(to_string(op)) + (ew_op_binary(op) ? " x0 x1" : " x0"));
  p.n_inputs = 2;
  p.in[0] = ba.get();
  p.in[1] = bb.get();
  p.in_dtype[0] = p.in_dtype[1] = t;
  p.out = bo.get();
  p.out_dtype = t;
  p.n = n;
  be.elementwise_program(p);
  std::vector<double> ref(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < ref.size(); ++i) ref[i] = ref_op(op, a[i], b[i]);
  expect_close(decode(bo.download(), t), rounded(ref, t), tol_for(t, op),
               std::string(to_string(op)) + " " + to_string(t) + " n=" + std::to_string(n) +
                   " pad=" + std::to_string(pad));
}

inline void check_every_op(Backend& be, std::initializer_list<DType> dtypes) {
  for (DType t : dtypes)
    for (int k = 0; k < kEwOpCount; ++k)
      for (i64 n : {i64{1}, i64{4}, i64{1031}}) {
        check_op(be, static_cast<EwOp>(k), t, n, 0);
        if (n > 1) check_op(be, static_cast<EwOp>(k), t, n, dtype_size(t));  // unaligned
      }
}

// out[M, N] = gelu((x[M, N] + bias[N]) * col[M, 1]) - xt[N, M]^T, mixed input dtypes.
inline void check_broadcast_strided(Backend& be, std::initializer_list<DType> dtypes) {
  for (DType t : dtypes) {
    const i64 m = 37, n = 53;
    const DType t2 = t == DType::f32 ? DType::bf16 : DType::f32;  // a second storage dtype
    const auto x = rounded(values(m * n, -2, 2, 3), t);
    const auto bias = rounded(values(n, -1, 1, 4), t2);
    const auto col = rounded(values(m, -1.5, 1.5, 5), t);
    const auto xt = rounded(values(n * m, -1, 1, 6), t);
    Buf bx(be, x.size() * dtype_size(t)), bbias(be, bias.size() * dtype_size(t2)),
        bcol(be, col.size() * dtype_size(t)), bxt(be, xt.size() * dtype_size(t)),
        bo(be, static_cast<std::size_t>(m * n) * dtype_size(t));
    bx.upload(encode(x, t));
    bbias.upload(encode(bias, t2));
    bcol.upload(encode(col, t));
    bxt.upload(encode(xt, t));
    bo.upload(nan_bytes(m * n, t));
    EwProgramArgs p;
    p.prog = parse_ew_program("add x0 x1; mul t0 x2; gelu t1; sub t2 x3");
    p.n_inputs = 4;
    const void* ptr[4] = {bx.get(), bbias.get(), bcol.get(), bxt.get()};
    const DType dt[4] = {t, t2, t, t};
    const i64 st[4][2] = {{n, 1}, {0, 1}, {1, 0}, {1, m}};
    for (int k = 0; k < 4; ++k) {
      p.in[k] = ptr[k];
      p.in_dtype[k] = dt[k];
      p.strides[k][0] = st[k][0];
      p.strides[k][1] = st[k][1];
    }
    p.out = bo.get();
    p.out_dtype = t;
    p.n = m * n;
    p.ndim = 2;
    p.shape[0] = m;
    p.shape[1] = n;
    be.elementwise_program(p);
    std::vector<double> ref(static_cast<std::size_t>(m * n));
    for (i64 i = 0; i < m; ++i)
      for (i64 j = 0; j < n; ++j) {
        const double v = (x[static_cast<std::size_t>(i * n + j)] + bias[static_cast<std::size_t>(j)]) *
                         col[static_cast<std::size_t>(i)];
        ref[static_cast<std::size_t>(i * n + j)] =
            ref_op(EwOp::gelu, v, 0) - xt[static_cast<std::size_t>(j * m + i)];
      }
    expect_close(decode(bo.download(), t), rounded(ref, t), 2 * ewtest::tol(t),
                 std::string("broadcast ") + to_string(t));
  }
}

// Many blocks and grid-stride iterations: n > 8 blocks x 256 threads x SMs, odd.
inline void check_large(Backend& be, DType t) {
  const i64 n = (i64{1} << 22) + 7;
  const auto a = rounded(values(n, -3, 3, 7), t);
  const std::vector<double> c{0.75};  // a broadcast scalar through ndim 1, stride 0 (exact in t)
  Buf ba(be, a.size() * dtype_size(t)), bc(be, dtype_size(t)), bo(be, a.size() * dtype_size(t));
  ba.upload(encode(a, t));
  bc.upload(encode(c, t));
  bo.upload(nan_bytes(n, t));
  for (int strided = 0; strided < 2; ++strided) {
    EwProgramArgs p;
    p.prog = parse_ew_program(strided ? "mul x0 x1; silu t0" : "silu x0; mul t0 0.75");
    p.n_inputs = strided ? 2 : 1;
    p.in[0] = ba.get();
    p.in[1] = bc.get();
    p.in_dtype[0] = p.in_dtype[1] = t;
    p.out = bo.get();
    p.out_dtype = t;
    p.n = n;
    if (strided) {
      p.ndim = 1;
      p.shape[0] = n;
      p.strides[0][0] = 1;
      p.strides[1][0] = 0;
    }
    be.elementwise_program(p);
    const auto got = decode(bo.download(), t);
    std::vector<double> ref(a.size());
    for (std::size_t i = 0; i < a.size(); ++i)
      ref[i] = strided ? ref_op(EwOp::silu, a[i] * c[0], 0) : ref_op(EwOp::silu, a[i], 0) * 0.75;
    expect_close(got, rounded(ref, t), ewtest::tol(t), std::string("large ") + to_string(t));
  }
}

}  // namespace lc::ewprogtest
