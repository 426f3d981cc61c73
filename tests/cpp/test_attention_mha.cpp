// Backend::attention_mha (batched multi-head / grouped-query attention) on the CPU and CUDA
// backends vs a float64 reference written here from the MhaArgs contract (backend.h). The
// CudaMha* tests skip themselves without a usable CUDA backend. Also lc::attention through the
// public API (OpsApi-style) on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_ops.h"
#include "cuda_test.h"
#include "lightning_core/dtype.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/tensor.h"
#include "ops/registry.h"
#include "reference.h"

namespace {

using i64 = std::int64_t;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Expected out [B, H, Sq, Dv] and lse [B, H, Sq] for host pointers in `a`.
void reference(const lc::MhaArgs& a, std::vector<double>& out, std::vector<double>& lse) {
  out.assign(static_cast<std::size_t>(a.batch * a.heads * a.sq * a.dv), 0.0);
  lse.assign(static_cast<std::size_t>(a.batch * a.heads * a.sq), -kInf);
  const i64 group = a.kv_heads > 0 ? a.heads / a.kv_heads : 1;
  std::vector<double> s(static_cast<std::size_t>(a.sk));
  std::vector<char> vis(static_cast<std::size_t>(a.sk));
  for (i64 b = 0; b < a.batch; ++b)
    for (i64 h = 0; h < a.heads; ++h) {
      const i64 g = h / group;
      for (i64 i = 0; i < a.sq; ++i) {
        double mx = -kInf;
        for (i64 j = 0; j < a.sk; ++j) {
          double acc = 0.0;
          for (i64 t = 0; t < a.d; ++t)
            acc += lc::ref::elem(a.dtype, a.q, b * a.q_strides[0] + h * a.q_strides[1] + i * a.q_strides[2] + t) *
                   lc::ref::elem(a.dtype, a.k, b * a.k_strides[0] + g * a.k_strides[1] + j * a.k_strides[2] + t);
          acc *= a.scale;
          bool v = !a.causal || j <= i + a.sk - a.sq;
          const i64 mi = b * a.mask_strides[0] + h * a.mask_strides[1] + i * a.mask_strides[2] +
                         j * a.mask_strides[3];
          if (a.mask_kind == lc::MaskKind::additive) acc += lc::ref::elem(a.dtype, a.mask, mi);
          if (a.mask_kind == lc::MaskKind::keep)
            v = v && (a.mask_dtype == lc::DType::i32 ? static_cast<const std::int32_t*>(a.mask)[mi] != 0
                                                     : static_cast<const std::int64_t*>(a.mask)[mi] != 0);
          if (!v) acc = -kInf;
          s[j] = acc;
          vis[j] = acc != -kInf;
          if (vis[j]) mx = std::max(mx, acc);
        }
        if (mx == -kInf) continue;  // no visible key: zeros, lse -inf
        double l = 0.0;
        for (i64 j = 0; j < a.sk; ++j) s[j] = vis[j] ? std::exp(s[j] - mx) : 0.0;
        for (i64 j = 0; j < a.sk; ++j) l += s[j];
        const i64 row = (b * a.heads + h) * a.sq + i;
        lse[row] = mx + std::log(l);
        for (i64 c = 0; c < a.dv; ++c) {
          double acc = 0.0;
          for (i64 j = 0; j < a.sk; ++j)
            if (vis[j])
              acc += s[j] * lc::ref::elem(a.dtype, a.v, b * a.v_strides[0] + g * a.v_strides[1] + j * a.v_strides[2] + c);
          out[row * a.dv + c] = acc / l;
        }
      }
    }
}

void store(lc::DType t, void* p, i64 i, double v) {
  switch (t) {
    case lc::DType::f64: static_cast<double*>(p)[i] = v; break;
    case lc::DType::f16: static_cast<lc::float16*>(p)[i] = lc::to_f16(static_cast<float>(v)); break;
    case lc::DType::bf16: static_cast<lc::bfloat16*>(p)[i] = lc::to_bf16(static_cast<float>(v)); break;
    default: static_cast<float*>(p)[i] = static_cast<float>(v);
  }
}

struct Case {
  i64 b, h, hk, sq, sk, d, dv;
  bool causal;
  int mask;  // 0 none, 1 key padding (int32 [B, Sk]), 2 additive [1, 1, Sq, Sk], 3 keep int64 [B, H, Sq, Sk]
  bool permuted;  // q/k/v laid out [B, S, H, D] and read through strides
};

std::string describe(const Case& c, lc::DType t) {
  return std::string(lc::dtype_info(t).name) + " B" + std::to_string(c.b) + " H" +
         std::to_string(c.h) + " Hk" + std::to_string(c.hk) + " " + std::to_string(c.sq) + "x" +
         std::to_string(c.sk) + " d" + std::to_string(c.d) + " dv" + std::to_string(c.dv) +
         (c.causal ? " causal" : "") + " mask" + std::to_string(c.mask) +
         (c.permuted ? " permuted" : "");
}

// Runs one case on `be` (host buffers built here, copied into the backend's memory) and checks
// out (poisoned first) and lse against the reference.
// `call`, when set, runs the kernel instead of be.attention_mha (forced CPU paths).
void run_case(lc::Backend& be, lc::DType t, const Case& c, lc::ref::Rng& rng, double tol,
              const std::function<void(const lc::MhaArgs&)>& call = {}) {
  SCOPED_TRACE(describe(c, t));
  const std::size_t es = lc::dtype_size(t);
  struct Buf {
    lc::Backend& be;
    std::vector<unsigned char> host;
    void* dev = nullptr;
    Buf(lc::Backend& b, std::size_t bytes) : be(b), host(bytes) { dev = be.alloc(bytes ? bytes : 1); }
    ~Buf() { be.free(dev); }
    void up() { if (!host.empty()) be.copy_from_host(dev, host.data(), host.size()); }
    void down() { if (!host.empty()) be.copy_to_host(host.data(), dev, host.size()); }
  };
  auto fill = [&](Buf& buf, i64 n) {
    std::vector<float> v = rng.vec(static_cast<std::size_t>(n), -1.5f, 1.5f);
    for (i64 i = 0; i < n; ++i) store(t, buf.host.data(), i, v[static_cast<std::size_t>(i)]);
    buf.up();
  };
  const i64 nq = c.b * c.h * c.sq * c.d, nk = c.b * c.hk * c.sk * c.d, nv = c.b * c.hk * c.sk * c.dv;
  Buf q(be, nq * es), k(be, nk * es), v(be, nv * es);
  fill(q, nq);
  fill(k, nk);
  fill(v, nv);
  lc::MhaArgs a;
  a.batch = c.b;
  a.heads = c.h;
  a.kv_heads = c.hk;
  a.sq = c.sq;
  a.sk = c.sk;
  a.d = c.d;
  a.dv = c.dv;
  a.causal = c.causal;
  a.scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  a.dtype = t;
  auto set_strides = [&](i64* st, i64 heads, i64 s, i64 cols) {
    if (c.permuted) {  // [B, S, heads, cols] memory read as [B, heads, S, cols]
      st[0] = s * heads * cols;
      st[1] = cols;
      st[2] = heads * cols;
    } else {
      st[0] = heads * s * cols;
      st[1] = s * cols;
      st[2] = cols;
    }
  };
  set_strides(a.q_strides, c.h, c.sq, c.d);
  set_strides(a.k_strides, c.hk, c.sk, c.d);
  set_strides(a.v_strides, c.hk, c.sk, c.dv);
  std::size_t mbytes = 0;
  i64 mn = 0;
  if (c.mask == 1) { mn = c.b * c.sk; mbytes = mn * 4; }
  if (c.mask == 2) { mn = c.sq * c.sk; mbytes = mn * es; }
  if (c.mask == 3) { mn = c.b * c.h * c.sq * c.sk; mbytes = mn * 8; }
  Buf m(be, mbytes);
  if (c.mask == 1) {
    a.mask_kind = lc::MaskKind::keep;
    a.mask_dtype = lc::DType::i32;
    auto* p = reinterpret_cast<std::int32_t*>(m.host.data());
    for (i64 i = 0; i < mn; ++i) p[i] = rng.uniform_int(0, 3) != 0;
    if (c.b > 1)  // batch 1: every key hidden -> zero rows
      for (i64 j = 0; j < c.sk; ++j) p[c.sk + j] = 0;
    a.mask_strides[0] = c.sk;
    a.mask_strides[3] = 1;
  } else if (c.mask == 2) {
    a.mask_kind = lc::MaskKind::additive;
    a.mask_dtype = t;
    for (i64 i = 0; i < mn; ++i)
      store(t, m.host.data(), i, rng.uniform_int(0, 4) == 0 ? -kInf : rng.vec(1, -2.f, 2.f)[0]);
    a.mask_strides[2] = c.sk;
    a.mask_strides[3] = 1;
  } else if (c.mask == 3) {
    a.mask_kind = lc::MaskKind::keep;
    a.mask_dtype = lc::DType::i64;
    auto* p = reinterpret_cast<std::int64_t*>(m.host.data());
    for (i64 i = 0; i < mn; ++i) p[i] = rng.uniform_int(0, 2) != 0 ? 7 : 0;
    a.mask_strides[0] = c.h * c.sq * c.sk;
    a.mask_strides[1] = c.sq * c.sk;
    a.mask_strides[2] = c.sk;
    a.mask_strides[3] = 1;
  }
  if (c.mask) m.up();
  // reference on the host buffers
  lc::MhaArgs hr = a;
  hr.q = q.host.data();
  hr.k = k.host.data();
  hr.v = v.host.data();
  hr.mask = c.mask ? m.host.data() : nullptr;
  std::vector<double> ref_out, ref_lse;
  reference(hr, ref_out, ref_lse);

  const i64 no = c.b * c.h * c.sq * c.dv, nl = c.b * c.h * c.sq;
  Buf o(be, no * es), l(be, nl * 4);
  for (i64 i = 0; i < no; ++i) store(t, o.host.data(), i, std::nan(""));
  for (i64 i = 0; i < nl; ++i) store(lc::DType::f32, l.host.data(), i, std::nan(""));
  o.up();
  l.up();
  a.q = q.dev;
  a.k = k.dev;
  a.v = v.dev;
  a.mask = c.mask ? m.dev : nullptr;
  a.out = o.dev;
  a.lse = static_cast<float*>(l.dev);
  if (call) call(a);
  else be.attention_mha(a);
  be.synchronize();
  o.down();
  l.down();
  // compared in double (float64 results must match to 1e-12)
  std::vector<double> got(static_cast<std::size_t>(no));
  for (i64 i = 0; i < no; ++i) got[i] = lc::ref::elem(t, o.host.data(), i);
  double num = 0.0, den = 0.0;
  std::size_t nans = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    nans += std::isnan(got[i]) ? 1 : 0;
    num += (got[i] - ref_out[i]) * (got[i] - ref_out[i]);
    den += ref_out[i] * ref_out[i];
  }
  EXPECT_EQ(nans, 0u) << "unwritten or NaN outputs";
  if (nans == 0) EXPECT_LE(den > 0.0 ? std::sqrt(num / den) : std::sqrt(num), tol);
  const float* gl = reinterpret_cast<const float*>(l.host.data());
  int bad = 0;
  for (i64 i = 0; i < nl; ++i) {
    const double r = ref_lse[static_cast<std::size_t>(i)];
    const bool ok = r == -kInf ? (gl[i] == -std::numeric_limits<float>::infinity())
                               : std::abs(gl[i] - r) <= 1e-4 * (1.0 + std::abs(r));
    if (!ok && bad++ < 3) ADD_FAILURE() << "lse[" << i << "] = " << gl[i] << ", expected " << r;
  }
  // rows with no visible key are exact zeros
  for (i64 row = 0; row < nl; ++row)
    if (ref_lse[static_cast<std::size_t>(row)] == -kInf)
      for (i64 cc = 0; cc < c.dv; ++cc)
        if (got[row * c.dv + cc] != 0.0) {
          ADD_FAILURE() << "row " << row << " sees no key but is not zero";
          break;
        }
}

const Case kCases[] = {
    {1, 1, 1, 1, 1, 1, 1, false, 0, false},
    {2, 3, 3, 37, 53, 13, 13, false, 0, false},
    {2, 3, 3, 37, 53, 13, 13, true, 0, true},
    {2, 12, 4, 17, 29, 16, 16, false, 1, true},   // GQA 3:1, key padding with a dead batch
    {1, 8, 1, 9, 33, 64, 64, true, 0, false},     // MQA, causal Sq < Sk
    {1, 2, 1, 19, 7, 8, 8, true, 0, false},       // causal Sq > Sk: leading rows see nothing
    {2, 2, 2, 70, 90, 32, 24, true, 2, false},    // additive [1, 1, Sq, Sk] with -inf entries
    {2, 4, 2, 33, 65, 96, 80, false, 3, true},    // keep int64 [B, H, Sq, Sk]
    {1, 2, 2, 150, 200, 64, 64, false, 0, true},  // several key tiles (BLAS tiles on the CPU)
    {1, 1, 1, 20, 45, 256, 256, true, 0, false},
    {2, 3, 1, 0, 5, 8, 8, false, 0, false},       // Sq = 0
    {2, 3, 1, 6, 0, 8, 8, true, 1, false},        // Sk = 0: zeros, lse -inf
};

TEST(CpuMha, MatchesFloat64ReferenceEveryDtype) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  for (lc::DType t : {lc::DType::f32, lc::DType::f16, lc::DType::bf16, lc::DType::f64})
    for (const Case& c : kCases)
      run_case(cpu, t, c, rng, t == lc::DType::f64 ? 1e-12 : t == lc::DType::f32 ? 1e-5 : 1e-2);
}

// The encoder kernel (attention_enc.cpp) forced at every instruction set this CPU runs, on the
// float32 cases above (the tiled path forced too, so both stay covered whichever the rule
// picks) and on encoder shapes: MiniLM's packed [B, S, 3, H, D] q / k / v views with the
// merged-heads out layout, row counts around the 4-row register block and the lane widths,
// batch 1 (query rows split across tasks) and batch > threads.
TEST(CpuMha, EncoderKernelEveryIsa) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  const Case enc[] = {
      {1, 12, 12, 16, 16, 32, 32, false, 0, true},   // MiniLM 1x16
      {2, 12, 12, 128, 128, 32, 32, false, 1, true}, // MiniLM 2x128, key padding
      {3, 4, 4, 5, 5, 32, 32, true, 0, true},
      {1, 2, 1, 33, 17, 7, 9, true, 2, false},       // odd d / dv (vector tails), Sq > Sk causal
      {5, 3, 3, 1, 1, 1, 1, false, 3, false},
      {1, 1, 1, 1, 512, 64, 64, false, 0, false},    // the kernel's most keys
      {2, 2, 2, 70, 255, 40, 24, false, 2, true},
  };
  for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa) {
    SCOPED_TRACE("isa " + std::to_string(isa));
    auto call = [isa](const lc::MhaArgs& a) { lc::cpu::attention_mha_encoder(a, isa); };
    for (const Case& c : kCases) run_case(cpu, lc::DType::f32, c, rng, 1e-5, call);
    for (const Case& c : enc) run_case(cpu, lc::DType::f32, c, rng, 1e-5, call);
  }
  auto tiled = [](const lc::MhaArgs& a) { lc::cpu::attention_mha_tiled(a); };
  for (const Case& c : enc) run_case(cpu, lc::DType::f32, c, rng, 1e-5, tiled);
}

// The flash-decoding kernel (attention_decode.cpp) forced at every instruction set this CPU runs
// and every storage dtype it takes: a few query rows against many keys, GQA / MQA / H == Hk,
// row counts per kv head around the 4- and 8-row blocks, causal bottom-right, every mask kind,
// permuted q / k / v, key counts around the 4-key score groups and the 256-key chunks.
TEST(CpuMha, DecodeKernelEveryIsaAndDtype) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  const Case dec[] = {
      {1, 8, 2, 1, 257, 64, 64, false, 0, false},    // 4 rows per kv head, the boundary key count
      {2, 12, 4, 3, 515, 32, 48, true, 1, true},     // 9 rows, key padding with a dead batch
      {1, 16, 1, 1, 1031, 16, 16, false, 2, false},  // MQA 16 rows, additive [1, 1, Sq, Sk]
      {2, 4, 4, 16, 300, 7, 9, true, 3, true},       // sq at the limit, odd dims, keep int64
      {1, 2, 2, 5, 2049, 128, 128, true, 0, false},  // 9 chunks
  };
  for (lc::DType t : {lc::DType::f32, lc::DType::f16, lc::DType::bf16})
    for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa) {
      SCOPED_TRACE("isa " + std::to_string(isa));
      auto call = [isa](const lc::MhaArgs& a) {
        ASSERT_TRUE(lc::cpu::attention_mha_decode_applies(a));
        lc::cpu::attention_mha_decode(a, isa);
      };
      for (const Case& c : dec) run_case(cpu, t, c, rng, t == lc::DType::f32 ? 1e-5 : 1e-2, call);
    }
}

// A masked key whose value row is inf / NaN contributes exactly 0 on the encoder path (never
// 0 * inf), as on the tiled one.
TEST(CpuMha, EncoderKernelMaskedNonFiniteValues) {
  const i64 S = 6, D = 4;
  std::vector<float> q(S * D, 0.5f), k(S * D, 0.25f), v(S * D), out(S * D, NAN);
  for (i64 j = 0; j < S; ++j)
    for (i64 c = 0; c < D; ++c) v[j * D + c] = j == S - 1 ? INFINITY : float(j + c);
  std::int32_t keep[S] = {1, 1, 1, 1, 1, 0};  // the inf row is masked
  lc::MhaArgs a;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.out = out.data();
  a.batch = a.heads = a.kv_heads = 1;
  a.sq = a.sk = S;
  a.d = a.dv = D;
  for (i64* st : {a.q_strides, a.k_strides, a.v_strides}) {
    st[0] = st[1] = S * D;
    st[2] = D;
  }
  a.mask = keep;
  a.mask_kind = lc::MaskKind::keep;
  a.mask_dtype = lc::DType::i32;
  a.mask_strides[3] = 1;
  a.scale = 0.5;
  for (int isa = 0; isa < lc::cpu::simd_isa_count(); ++isa) {
    std::fill(out.begin(), out.end(), NAN);
    lc::cpu::attention_mha_encoder(a, isa);
    // equal scores: the mean of the 5 visible value rows, (0+1+2+3+4)/5 + c
    for (i64 i = 0; i < S; ++i)
      for (i64 c = 0; c < D; ++c) EXPECT_NEAR(out[i * D + c], 2.0f + float(c), 1e-5) << isa;
  }
}

TEST(CudaMha, MatchesFloat64ReferenceEveryDtype) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType t : {lc::DType::f32, lc::DType::f16, lc::DType::bf16})
    for (const Case& c : kCases)
      run_case(lc::test::gpu(), t, c, rng, t == lc::DType::f32 ? 1e-5 : 1e-2);
}

// More (batch, head, query tile) pairs than a grid's y/z limit (65535).
TEST(CudaMha, ManyPairsGridStride) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  run_case(lc::test::gpu(), lc::DType::bf16, Case{700, 100, 20, 3, 5, 4, 4, true, 0, false}, rng, 1e-2);
}

// The public API: shapes, GQA, masks through Tensors, and errors before any write.
TEST(OpsApi, AttentionBatchedGqaAndErrors) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  auto random = [&](std::vector<i64> shape) {
    lc::Tensor t = lc::Tensor::empty(shape, lc::DType::f32, lc::DeviceKind::cpu);
    rng.fill(static_cast<float*>(t.data()), static_cast<std::size_t>(t.numel()));
    return t;
  };
  lc::Tensor q = random({2, 6, 11, 8}), k = random({2, 2, 17, 8}), v = random({2, 2, 17, 5});
  lc::Tensor lse;
  lc::Tensor out = lc::attention(q, k, v, true, nullptr, 0.0f, p, &lse);
  ASSERT_EQ(out.shape(), (std::vector<i64>{2, 6, 11, 5}));
  ASSERT_EQ(lse.shape(), (std::vector<i64>{2, 6, 11}));
  lc::MhaArgs a;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.batch = 2;
  a.heads = 6;
  a.kv_heads = 2;
  a.sq = 11;
  a.sk = 17;
  a.d = 8;
  a.dv = 5;
  a.causal = true;
  a.scale = 1.0 / std::sqrt(8.0);
  const i64 qs[3] = {6 * 11 * 8, 11 * 8, 8}, ks[3] = {2 * 17 * 8, 17 * 8, 8}, vs[3] = {2 * 17 * 5, 17 * 5, 5};
  std::memcpy(a.q_strides, qs, sizeof qs);
  std::memcpy(a.k_strides, ks, sizeof ks);
  std::memcpy(a.v_strides, vs, sizeof vs);
  std::vector<double> ref_out, ref_lse;
  reference(a, ref_out, ref_lse);
  std::vector<float> got(static_cast<const float*>(out.data()),
                         static_cast<const float*>(out.data()) + out.numel());
  EXPECT_LE(lc::ref::rel_error(got, ref_out), 1e-5);
  for (i64 i = 0; i < lse.numel(); ++i)
    EXPECT_NEAR(static_cast<const float*>(lse.data())[i], ref_lse[static_cast<std::size_t>(i)], 1e-4);

  lc::Tensor o = lc::Tensor::empty({2, 6, 11, 5}, lc::DType::f32, lc::DeviceKind::cpu);
  for (i64 i = 0; i < o.numel(); ++i) static_cast<float*>(o.data())[i] = std::nanf("");
  auto untouched = [&] {
    for (i64 i = 0; i < o.numel(); ++i)
      if (!std::isnan(static_cast<float*>(o.data())[i])) return false;
    return true;
  };
  lc::Tensor k5 = random({2, 4, 17, 8}), v5 = random({2, 4, 17, 5});
  EXPECT_THROW(lc::attention_into(q, k5, v5, o, false, nullptr, 0.0f, p), lc::ValueError);
  EXPECT_TRUE(untouched());
  lc::Tensor badmask = lc::Tensor::empty({2, 16}, lc::DType::i32, lc::DeviceKind::cpu);
  EXPECT_THROW(lc::attention_into(q, k, v, o, false, &badmask, 0.0f, p), lc::ValueError);
  EXPECT_TRUE(untouched());
  lc::Tensor qi = lc::Tensor::empty({2, 6, 11, 8}, lc::DType::i32, lc::DeviceKind::cpu);
  EXPECT_THROW(lc::attention_into(qi, k, v, o, false, nullptr, 0.0f, p), lc::TypeError);
  EXPECT_TRUE(untouched());
  lc::attention_into(q, k, v, o, true, nullptr, 0.0f, p);
  EXPECT_TRUE(std::equal(static_cast<float*>(o.data()), static_cast<float*>(o.data()) + o.numel(),
                         static_cast<const float*>(out.data())));
}

// The registry entry: shape inference, work per head x B*H, CUDA head-dim limit, float64 CPU-only.
TEST(OpRegistry, AttentionMhaDefinition) {
  const lc::OpDef* d = lc::find_op("attention");
  ASSERT_NE(d, nullptr);
  const std::vector<std::vector<i64>> shapes = {{2, 8, 5, 16}, {2, 2, 7, 16}, {2, 2, 7, 4}};
  lc::OpArgs a = lc::OpArgs::of_shapes(shapes);
  EXPECT_EQ(d->infer_result(a).shape, (std::vector<i64>{2, 8, 5, 4}));
  EXPECT_DOUBLE_EQ(d->work(a).flops, 2.0 * 2 * 8 * 5 * 7 * (16 + 4));
  EXPECT_TRUE(d->supports(lc::DeviceKind::cuda, a));
  const std::vector<std::vector<i64>> big = {{1, 2, 5, 520}, {1, 1, 7, 520}, {1, 1, 7, 4}};
  EXPECT_FALSE(d->supports(lc::DeviceKind::cuda, lc::OpArgs::of_shapes(big)));
  EXPECT_FALSE(d->supports(lc::DeviceKind::cuda, lc::OpArgs::of_shapes(shapes, lc::DType::f64)));
  EXPECT_TRUE(d->supports(lc::DeviceKind::cpu, lc::OpArgs::of_shapes(shapes, lc::DType::f64)));
  const std::vector<std::vector<i64>> bad = {{2, 6, 5, 16}, {2, 4, 7, 16}, {2, 4, 7, 4}};
  EXPECT_THROW(d->infer_result(lc::OpArgs::of_shapes(bad)), lc::ValueError);
}

}  // namespace
