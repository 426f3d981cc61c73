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
#include <memory>
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

// ---- the register-allocated / vectorised kernels (CUDA ew_kernel<S, V>, the CPU ISA loops) ----

// Float64 evaluation of a program on one element's input values.
inline double ref_program(const EwProgram& prog, const double* x) {
  double r[kEwProgMaxRegs] = {};
  for (int k = 0; k < kEwProgMaxInputs; ++k) r[k] = x[k];
  for (int c = 0; c < prog.n_consts; ++c) r[kEwRegConst + c] = prog.consts[c];
  for (int i = 0; i < prog.n_instrs; ++i) {
    const EwInstr& in = prog.code[i];
    r[kEwRegTemp + i] = ref_op(in.op, r[in.a], r[in.b]);
  }
  return r[prog.result()];
}

// One operand of run_program: values over its own extent, its storage dtype, the misalignment
// of its pointer in elements, and its element strides over the output's shape (empty:
// contiguous with the output, the ndim == 0 path when every operand is).
struct ProgIn {
  std::vector<double> v;
  DType t = DType::f32;
  std::size_t pad = 0;
  std::vector<i64> strides;
};

// Runs `text` over `shape` (empty: a flat n-element output) and checks every element against
// ref_program (the inputs' stored values, float64), the output poisoned with NaN first. n == 0
// must write nothing (the poisoned guard element stays NaN).
inline void run_program(Backend& be, const std::string& text, std::vector<ProgIn> ins, DType out_t,
                        std::vector<i64> shape, i64 n, std::size_t out_pad, double tol,
                        const std::string& what) {
  const EwProgram prog = parse_ew_program(text);
  const int ni = static_cast<int>(ins.size());
  std::vector<std::unique_ptr<Buf>> bufs;
  EwProgramArgs p;
  p.prog = prog;
  p.n_inputs = ni;
  for (int k = 0; k < ni; ++k) {
    ins[k].v = rounded(ins[k].v, ins[k].t);
    const std::size_t es = dtype_size(ins[k].t);
    bufs.push_back(std::make_unique<Buf>(be, std::max<std::size_t>(1, ins[k].v.size()) * es, ins[k].pad * es));
    if (!ins[k].v.empty()) bufs.back()->upload(encode(ins[k].v, ins[k].t));
    p.in[k] = bufs.back()->get();
    p.in_dtype[k] = ins[k].t;
  }
  const std::size_t oes = dtype_size(out_t);
  const i64 n_alloc = std::max<i64>(1, n);
  Buf bo(be, static_cast<std::size_t>(n_alloc) * oes, out_pad * oes);
  bo.upload(nan_bytes(n_alloc, out_t));
  p.out = bo.get();
  p.out_dtype = out_t;
  p.n = n;
  p.ndim = static_cast<int>(shape.size());
  for (int d = 0; d < p.ndim; ++d) {
    p.shape[d] = shape[static_cast<std::size_t>(d)];
    for (int k = 0; k < ni; ++k) {
      i64 contig = 1;
      for (int e = d + 1; e < p.ndim; ++e) contig *= shape[static_cast<std::size_t>(e)];
      p.strides[k][d] = ins[k].strides.empty() ? contig : ins[k].strides[static_cast<std::size_t>(d)];
    }
  }
  be.elementwise_program(p);
  const auto got = decode(bo.download(), out_t);
  if (n == 0) {
    EXPECT_TRUE(std::isnan(got[0])) << what << ": n == 0 wrote the output";
    return;
  }
  std::vector<double> ref(static_cast<std::size_t>(n));
  std::vector<i64> idx(shape.size(), 0);
  for (i64 e = 0; e < n; ++e) {
    double x[kEwProgMaxInputs] = {};
    for (int k = 0; k < ni; ++k) {
      i64 off = e;
      if (!shape.empty()) {
        off = 0;
        for (std::size_t d = 0; d < shape.size(); ++d)
          off += idx[d] * static_cast<i64>(p.strides[k][d]);
      }
      x[k] = ins[k].v[static_cast<std::size_t>(off)];
    }
    ref[static_cast<std::size_t>(e)] = ref_program(prog, x);
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[static_cast<std::size_t>(d)] < shape[static_cast<std::size_t>(d)]) break;
      idx[static_cast<std::size_t>(d)] = 0;
    }
  }
  expect_close(got, rounded(ref, out_t), tol, what);
}

// The contiguous fast path: sizes around the vector widths (2, 4, 8) and the tails, 0 and 1
// elements, each input misaligned on its own (one aligned, one off by an element, so the
// kernel mixes vector and scalar loads), every dtype (and mixed), out misaligned.
inline void check_vector_paths(Backend& be, std::initializer_list<DType> dtypes) {
  const std::string prog = "mul x0 x1; add t0 x0; gelu t1; sub t2 x1; relu t3; mul t4 0.5";
  for (DType t : dtypes)
    for (i64 n : {i64{0}, i64{1}, i64{2}, i64{3}, i64{5}, i64{7}, i64{8}, i64{9}, i64{13}, i64{31},
                  i64{4097}, i64{70001}})
      for (int mis = 0; mis < 4; ++mis) {
        const std::size_t pa = (mis & 1) ? 1 : 0, pb = (mis & 2) ? 3 : 0, po = mis == 3 ? 1 : 0;
        std::vector<ProgIn> ins{{values(n, -3, 3, 11), t, pa, {}}, {values(n, -2, 2, 12), t, pb, {}}};
        run_program(be, prog, ins, t, {}, n, po, 2 * ewtest::tol(t),
                    std::string("vector path ") + to_string(t) + " n=" + std::to_string(n) +
                        " misaligned=" + std::to_string(mis));
      }
  // mixed storage: a float32 and a 16-bit input, a 16-bit result (the 16-byte vector width of
  // the widest element)
  for (DType t : dtypes) {
    if (t == DType::f32 || t == DType::f64) continue;
    std::vector<ProgIn> ins{{values(1003, -3, 3, 13), t, 0, {}}, {values(1003, -2, 2, 14), DType::f32, 0, {}}};
    run_program(be, "mul x0 x1; tanh t0; add t1 x1", ins, t, {}, 1003, 0, 2 * ewtest::tol(t),
                std::string("mixed ") + to_string(t));
  }
}

// Programs of every size class: 16 instructions (the maximum) over 6 inputs and 8 constants, a
// DAG keeping 11 values live at once (the largest slot bucket any program can need), inputs the
// program never reads, constants-only instructions, a value read by many later instructions.
inline void check_program_shapes(Backend& be, std::initializer_list<DType> dtypes) {
  const char* progs[] = {
      // 16 instructions, 6 inputs, 8 distinct constants
      "mul x0 0.5; add t0 x1; mul t1 1.5; sub t2 x2; max t3 -0.25; min t4 2.5; mul t5 x3; "
      "add t6 0.125; tanh t7; mul t8 x4; sub t9 0.75; sigmoid t10; mul t11 x5; add t12 3; abs t13; "
      "mul t14 0.5",
      // 11 values live at once: 5 unary results of still-live inputs, then a reduction
      "neg x0; abs x1; relu x2; tanh x3; sigmoid x4; silu x5; add t0 t1; add t2 t3; add t4 t5; "
      "add t6 t7; add t8 t9; mul t10 x0; sub t11 x5; add t12 x3; mul t13 x1; add t14 x2",
      // x0 and x2 never read; a constants-only instruction; t0 read four times
      "add 1 2; mul x1 t0; exp t1; mul t1 t2; sub t3 t1; mul t4 t1; add t5 t1",
      // one input, the smallest slot bucket
      "silu x0; mul t0 x0; neg t1; exp t2; log t3"};
  for (DType t : dtypes)
    for (const char* prog : progs)
      for (i64 n : {i64{1}, i64{6}, i64{257}, i64{5003}}) {
        std::vector<ProgIn> ins;
        for (int k = 0; k < kEwProgMaxInputs; ++k)
          ins.push_back({values(n, k == 1 ? 0.2 : -1.5, k == 1 ? 1.0 : 1.5, 20 + static_cast<unsigned>(k)), t,
                         static_cast<std::size_t>(k % 2), {}});
        run_program(be, prog, ins, t, {}, n, 0, 4 * ewtest::tol(t),
                    std::string("program '") + prog + "' " + to_string(t) + " n=" + std::to_string(n));
      }
}

// The general path: operands contiguous with the output (vector loads there too) next to
// broadcast and transposed ones; inner sizes that are not multiples of the vector width, so a
// group of elements wraps across rows; a 3-d broadcast.
inline void check_general_paths(Backend& be, std::initializer_list<DType> dtypes) {
  for (DType t : dtypes) {
    for (i64 cols : {i64{1}, i64{3}, i64{5}, i64{8}, i64{67}, i64{300}}) {  // 300: tiles read in place
      const i64 rows = 37;
      const i64 n = rows * cols;
      std::vector<ProgIn> ins{
          {values(n, -2, 2, 30), t, 1, {}},                              // same shape (misaligned)
          {values(cols, -1, 1, 31), t, 0, {0, 1}},                       // bias [cols]
          {values(rows, -1.5, 1.5, 32), DType::f32, 0, {1, 0}},          // column [rows, 1]
          {values(n, -1, 1, 33), t, 0, {1, rows}},                       // transposed [cols, rows]^T
          {values(n, -1, 1, 34), t, 0, {}}};                             // same shape (aligned)
      run_program(be, "add x0 x1; mul t0 x2; gelu t1; sub t2 x3; add t3 x4", ins, t, {rows, cols}, n, 0,
                  2 * ewtest::tol(t), std::string("general ") + to_string(t) + " cols=" + std::to_string(cols));
    }
    // [4, 1, 6] * [1, 5, 6] + [4, 5, 1]
    const i64 a = 4, b = 5, c = 6, n = a * b * c;
    std::vector<ProgIn> ins{{values(a * c, -2, 2, 35), t, 0, {c, 0, 1}},
                            {values(b * c, -2, 2, 36), t, 0, {0, c, 1}},
                            {values(a * b, -2, 2, 37), t, 0, {b, 1, 0}}};
    run_program(be, "mul x0 x1; add t0 x2; exp t1", ins, t, {a, b, c}, n, 0, 2 * ewtest::tol(t),
                std::string("3-d broadcast ") + to_string(t));
  }
}

}  // namespace lc::ewprogtest
