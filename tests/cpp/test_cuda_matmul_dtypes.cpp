// CUDA matmul beyond float32 2-D (backend.h MatmulArgs): float16 / bfloat16 storage through
// cuBLASLt (COMPUTE_32F), strided batches (stride 0 = a broadcast operand), the residual as
// cuBLASLt's C (beta = 1) and the k == 0 fill kernel, against a float64 host reference computed
// from the very 16-bit values the GPU saw. Every test skips itself without a usable device.
//
// Error: max |out - ref| / (|A| |B| + |bias| + |residual|) per element (the forward error bound
// of a dot product). Tolerances: float32 1e-5; float16 / bfloat16 1e-2 (float32 accumulation,
// one rounding of the output: 2^-11 / 2^-8 relative); the GELU epilogue 1e-2 for 16-bit too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/dtype.h"
#include "cuda_test.h"
#include "reference.h"

namespace {

using lc::Backend;
using lc::DeviceKind;
using lc::DType;
using i64 = std::int64_t;

using lc::test::gpu;

// Host values rounded to `dt` (kept as float) and their storage bits.
struct Host {
  DType dt;
  std::vector<float> val;             // the values the device sees, as float
  std::vector<unsigned char> bytes;   // storage
  Host(DType d, const std::vector<float>& v) : dt(d), val(v) {
    const std::size_t es = lc::dtype_size(d);
    bytes.resize(v.size() * es);
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (d == DType::f16) {
        const lc::float16 h = lc::to_f16(v[i]);
        val[i] = lc::to_float(h);
        std::memcpy(&bytes[i * 2], &h.bits, 2);
      } else if (d == DType::bf16) {
        const lc::bfloat16 h = lc::to_bf16(v[i]);
        val[i] = lc::to_float(h);
        std::memcpy(&bytes[i * 2], &h.bits, 2);
      } else {
        std::memcpy(&bytes[i * 4], &v[i], 4);
      }
    }
  }
};

float to_f(DType dt, const unsigned char* p) {
  if (dt == DType::f16) {
    lc::float16 h;
    std::memcpy(&h.bits, p, 2);
    return lc::to_float(h);
  }
  if (dt == DType::bf16) {
    lc::bfloat16 h;
    std::memcpy(&h.bits, p, 2);
    return lc::to_float(h);
  }
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// Device bytes with an optional leading offset in elements (misaligned views).
struct Dev {
  Dev(std::size_t bytes, std::size_t offset_bytes = 0)
      : n(bytes), off(offset_bytes), base(static_cast<unsigned char*>(gpu().alloc(bytes + offset_bytes + 16))) {}
  ~Dev() { gpu().free(base); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void* get() const { return base + off; }
  void upload(const std::vector<unsigned char>& h) const {
    if (!h.empty()) gpu().copy_from_host(get(), h.data(), h.size());
  }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> h(n);
    if (n) gpu().copy_to_host(h.data(), get(), n);
    return h;
  }
  void poison() const {  // 0xFF bytes: NaN in every float format
    std::vector<unsigned char> p(n, 0xFF);
    upload(p);
  }
  std::size_t n, off;
  unsigned char* base;
};

double act64(double x, lc::Activation a) {
  if (a == lc::Activation::relu) return x < 0 ? 0 : x;
  if (a == lc::Activation::gelu) return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  return x;
}

struct Case {
  i64 m, k, n;
  bool trans_b = false, bias = false, residual = false;
  lc::Activation act = lc::Activation::none;
  i64 batch = 1;
  bool bcast_a = false, bcast_b = false;  // stride 0
};

// Runs one (batched) product on the GPU and returns the worst scaled error (inf on NaN).
double run(lc::ref::Rng& rng, DType dt, const Case& c, std::size_t misalign_bytes = 0) {
  const i64 na = c.bcast_a ? 1 : c.batch, nb = c.bcast_b ? 1 : c.batch;
  Host A(dt, rng.vec(static_cast<std::size_t>(na * c.m * c.k)));
  Host B(dt, rng.vec(static_cast<std::size_t>(nb * c.k * c.n)));
  Host bias(dt, rng.vec(static_cast<std::size_t>(c.n)));
  Host res(dt, rng.vec(static_cast<std::size_t>(c.batch * c.m * c.n)));
  const std::size_t es = lc::dtype_size(dt);
  Dev da(A.bytes.size(), misalign_bytes), db(B.bytes.size(), misalign_bytes), dbias(bias.bytes.size()),
      dres(res.bytes.size()), dout(static_cast<std::size_t>(c.batch * c.m * c.n) * es, misalign_bytes);
  da.upload(A.bytes);
  db.upload(B.bytes);
  dbias.upload(bias.bytes);
  dres.upload(res.bytes);
  dout.poison();
  lc::MatmulArgs args;
  args.a = da.get();
  args.b = db.get();
  args.bias = c.bias ? dbias.get() : nullptr;
  args.residual = c.residual ? dres.get() : nullptr;
  args.out = dout.get();
  args.m = c.m;
  args.k = c.k;
  args.n = c.n;
  args.trans_b = c.trans_b;
  args.act = c.act;
  args.dtype = dt;
  args.batch = c.batch;
  args.stride_a = c.bcast_a ? 0 : c.m * c.k;
  args.stride_b = c.bcast_b ? 0 : c.k * c.n;
  args.stride_out = c.m * c.n;
  gpu().matmul(args);
  const auto out = dout.download();
  double worst = 0;
  for (i64 bi = 0; bi < c.batch; ++bi) {
    const float* a = A.val.data() + (c.bcast_a ? 0 : bi * c.m * c.k);
    const float* b = B.val.data() + (c.bcast_b ? 0 : bi * c.k * c.n);
    for (i64 i = 0; i < c.m; ++i)
      for (i64 j = 0; j < c.n; ++j) {
        double s = 0, scale = 0;
        for (i64 p = 0; p < c.k; ++p) {
          const double bv = c.trans_b ? b[j * c.k + p] : b[p * c.n + j];
          s += static_cast<double>(a[i * c.k + p]) * bv;
          scale += std::fabs(static_cast<double>(a[i * c.k + p]) * bv);
        }
        if (c.bias) {
          s += bias.val[static_cast<std::size_t>(j)];
          scale += std::fabs(bias.val[static_cast<std::size_t>(j)]);
        }
        const std::size_t at = static_cast<std::size_t>((bi * c.m + i) * c.n + j);
        if (c.residual) {
          s += res.val[at];
          scale += std::fabs(res.val[at]);
        }
        const double want = act64(s, c.act);
        const float got = to_f(dt, &out[at * es]);
        if (!std::isfinite(got)) return INFINITY;
        // float16 below its smallest normal (2^-14) is subnormal: fixed spacing 2^-24
        const double floor = dt == DType::f16 ? 6.103515625e-05 : 1e-30;
        worst = std::max(worst, std::fabs(got - want) / (scale + floor));
      }
  }
  return worst;
}

double tol(DType dt, lc::Activation act) {
  if (dt != DType::f32) return 1e-2;
  return act == lc::Activation::gelu ? 1e-4 : 1e-5;  // cuBLASLt's GELU uses a fast tanh
}

const char* name(DType dt) { return lc::dtype_info(dt).name; }

TEST(CudaMatmulDtypes, Fp16Bf16ShapesEpiloguesLayouts) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const i64 shapes[][3] = {{1, 1, 1}, {1, 7, 1}, {3, 5, 7}, {17, 13, 19}, {64, 128, 32},
                           {127, 129, 131}, {257, 511, 263}};
  const lc::Activation acts[] = {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu};
  for (DType dt : {DType::f16, DType::bf16})
    for (const auto& s : shapes)
      for (bool tb : {false, true})
        for (bool bias : {false, true})
          for (lc::Activation act : acts) {
            Case c{s[0], s[1], s[2], tb, bias, false, act};
            EXPECT_LE(run(rng, dt, c), tol(dt, act))
                << name(dt) << " " << c.m << "x" << c.k << "x" << c.n << " tb=" << tb
                << " bias=" << bias << " act=" << int(act);
          }
}

TEST(CudaMatmulDtypes, LargeBf16Fp16Gemm) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType dt : {DType::f16, DType::bf16}) {
    Case c{512, 1024, 384, true, true, true, lc::Activation::none};
    EXPECT_LE(run(rng, dt, c), 1e-2) << name(dt);
  }
}

TEST(CudaMatmulDtypes, MisalignedPointers) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType dt : {DType::f32, DType::f16, DType::bf16})
    for (std::size_t off : {std::size_t{2}, std::size_t{4}, std::size_t{6}, std::size_t{8}}) {
      if (off % lc::dtype_size(dt)) continue;
      Case c{33, 65, 17, false, true, true, lc::Activation::relu};
      EXPECT_LE(run(rng, dt, c, off), tol(dt, c.act)) << name(dt) << " offset " << off;
    }
}

TEST(CudaMatmulDtypes, ResidualEveryDtypeBeforeTheActivation) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType dt : {DType::f32, DType::f16, DType::bf16})
    for (lc::Activation act : {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu})
      for (bool bias : {false, true}) {
        Case c{37, 41, 29, true, bias, true, act};
        EXPECT_LE(run(rng, dt, c), tol(dt, act)) << name(dt) << " act=" << int(act);
      }
}

TEST(CudaMatmulDtypes, StridedBatchedAndBroadcast) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    // The benchmark's shape: 64 x (128x64 @ 64x128).
    Case bmm{128, 64, 128};
    bmm.batch = 64;
    EXPECT_LE(run(rng, dt, bmm), tol(dt, bmm.act)) << name(dt) << " bmm";
    // Odd sizes, transposed b, each operand broadcast (stride 0).
    for (int which = 0; which < 3; ++which)
      for (bool tb : {false, true}) {
        Case c{13, 7, 11, tb};
        c.batch = 5;
        c.bcast_a = which == 1;
        c.bcast_b = which == 2;
        EXPECT_LE(run(rng, dt, c), tol(dt, c.act))
            << name(dt) << " which=" << which << " tb=" << tb;
      }
    Case one{1, 1, 1};
    one.batch = 70000;  // many tiny products (beyond 65535: no grid-dimension limits)
    EXPECT_LE(run(rng, dt, one), tol(dt, one.act)) << name(dt) << " 70000 x 1x1x1";
  }
}

TEST(CudaMatmulDtypes, EmptySumFillsBiasResidualActivation) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (DType dt : {DType::f32, DType::f16, DType::bf16})
    for (lc::Activation act : {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu}) {
      Case c{9, 0, 5, false, true, true, act};
      EXPECT_LE(run(rng, dt, c), tol(dt, act)) << name(dt) << " k=0 act=" << int(act);
      Case plain{4, 0, 3};
      plain.batch = 3;
      EXPECT_LE(run(rng, dt, plain), 0.0) << name(dt) << " k=0 batch=3 -> zeros";
    }
}

TEST(CudaMatmulDtypes, RepeatedCallsReplayTheSameResult) {
  // The launch-replay (run_captured) key includes the dtype plan and the residual pointer: a
  // repeated call (captured after a few) gives the same bits; a changed residual is honoured.
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  const i64 m = 64, k = 96, n = 80;
  Host A(DType::bf16, rng.vec(m * k)), B(DType::bf16, rng.vec(k * n)),
      R1(DType::bf16, rng.vec(m * n)), R2(DType::bf16, rng.vec(m * n));
  Dev da(A.bytes.size()), db(B.bytes.size()), dr1(R1.bytes.size()), dr2(R2.bytes.size()),
      dout(static_cast<std::size_t>(m * n) * 2);
  da.upload(A.bytes);
  db.upload(B.bytes);
  dr1.upload(R1.bytes);
  dr2.upload(R2.bytes);
  lc::MatmulArgs args;
  args.a = da.get();
  args.b = db.get();
  args.out = dout.get();
  args.m = m;
  args.k = k;
  args.n = n;
  args.dtype = DType::bf16;
  args.residual = dr1.get();
  gpu().matmul(args);
  const auto first = dout.download();
  for (int i = 0; i < 5; ++i) {
    dout.poison();
    gpu().matmul(args);
    EXPECT_EQ(dout.download(), first) << "call " << i;
  }
  args.residual = dr2.get();
  gpu().matmul(args);
  EXPECT_NE(dout.download(), first);
  args.residual = nullptr;
  gpu().matmul(args);
  EXPECT_NE(dout.download(), first);
}

}  // namespace
