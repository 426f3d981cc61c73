// The tensor-core attention forward (src/backends/cuda/attention_mha_tc.cu), forced with
// lc::cuda::launch_attention_mha_tc, against a float64 reference of the MhaArgs contract
// (backend.h): float16 / bfloat16, head dims 8..128, odd lengths, causal with sq != sk, GQA and
// MQA, key-padding / additive / per-row keep masks with fully masked rows, q / k / v as views of
// a packed [B, S, 3, H, D] buffer, out written through strides into a [B, Sq, H, D] buffer,
// every output element poisoned first and checked; each forced case runs once per compiled
// kernel variant (lc::set_attention_kernel_variant("tc", i), backend.h's kAttentionTcVariants). Also MhaArgs::out_strides through the CPU
// backend (runs in CI), our CUDA kernels and cuDNN. CudaAttentionTc* skip without a GPU; the
// CpuMhaOutStrides case runs everywhere (this file is not test_cuda_*: CPU-only builds keep it).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "backends/backend.h"
#include "cuda_test.h"
#include "lightning_core/dtype.h"
#include "lightning_core/errors.h"
#include "lightning_core/runtime.h"
#include "reference.h"

#ifdef LC_HAVE_CUDA
#include "backends/cuda/context.h"
#include "backends/cuda/kernels.h"
#endif

namespace {

using i64 = std::int64_t;
constexpr double kInf = std::numeric_limits<double>::infinity();

struct TcCase {
  i64 b, h, hk, sq, sk, d;
  bool causal;
  int mask;          // 0 none, 1 keep int32 [B, Sk], 2 additive [B, 1, Sq, Sk], 3 keep int64 [B, H, Sq, Sk]
  bool packed;       // q, k, v: views of one [B, S, 3, H, D] buffer (needs sq == sk, h == hk)
  bool strided_out;  // out: the [B, Sq, H, D] buffer read as [B, H, Sq, D]
};

std::string describe(const TcCase& c, lc::DType t) {
  return std::string(lc::dtype_info(t).name) + " B" + std::to_string(c.b) + " H" +
         std::to_string(c.h) + " Hk" + std::to_string(c.hk) + " " + std::to_string(c.sq) + "x" +
         std::to_string(c.sk) + " d" + std::to_string(c.d) + (c.causal ? " causal" : "") +
         " mask" + std::to_string(c.mask) + (c.packed ? " packed" : "") +
         (c.strided_out ? " strided-out" : "");
}

void put(lc::DType t, void* p, i64 i, double v) {
  switch (t) {
    case lc::DType::f64: static_cast<double*>(p)[i] = v; break;
    case lc::DType::f16: static_cast<lc::float16*>(p)[i] = lc::to_f16(static_cast<float>(v)); break;
    case lc::DType::bf16: static_cast<lc::bfloat16*>(p)[i] = lc::to_bf16(static_cast<float>(v)); break;
    default: static_cast<float*>(p)[i] = static_cast<float>(v);
  }
}

// out [B, H, Sq, D] (dense, float64) and lse [B, H, Sq] of host pointers in `a`.
void reference(const lc::MhaArgs& a, std::vector<double>& out, std::vector<double>& lse) {
  out.assign(static_cast<std::size_t>(a.batch * a.heads * a.sq * a.dv), 0.0);
  lse.assign(static_cast<std::size_t>(a.batch * a.heads * a.sq), -kInf);
  const i64 group = a.heads / a.kv_heads;
  std::vector<double> s(static_cast<std::size_t>(a.sk));
  for (i64 b = 0; b < a.batch; ++b)
    for (i64 h = 0; h < a.heads; ++h) {
      const i64 g = h / group;
      for (i64 i = 0; i < a.sq; ++i) {
        double mx = -kInf;
        for (i64 j = 0; j < a.sk; ++j) {
          bool vis = !a.causal || j <= i + a.sk - a.sq;
          double acc = 0.0;
          const i64 mi = b * a.mask_strides[0] + h * a.mask_strides[1] + i * a.mask_strides[2] +
                         j * a.mask_strides[3];
          if (a.mask_kind == lc::MaskKind::keep)
            vis = vis && (a.mask_dtype == lc::DType::i32
                              ? static_cast<const std::int32_t*>(a.mask)[mi] != 0
                              : static_cast<const std::int64_t*>(a.mask)[mi] != 0);
          if (vis) {
            for (i64 t = 0; t < a.d; ++t)
              acc += lc::ref::elem(a.dtype, a.q, b * a.q_strides[0] + h * a.q_strides[1] + i * a.q_strides[2] + t) *
                     lc::ref::elem(a.dtype, a.k, b * a.k_strides[0] + g * a.k_strides[1] + j * a.k_strides[2] + t);
            acc *= a.scale;
            if (a.mask_kind == lc::MaskKind::additive) acc += lc::ref::elem(a.dtype, a.mask, mi);
          }
          s[static_cast<std::size_t>(j)] = vis ? acc : -kInf;
          mx = std::max(mx, s[static_cast<std::size_t>(j)]);
        }
        if (mx == -kInf) continue;
        double l = 0.0;
        for (i64 j = 0; j < a.sk; ++j) {
          double& e = s[static_cast<std::size_t>(j)];
          e = e == -kInf ? 0.0 : std::exp(e - mx);
          l += e;
        }
        const i64 row = (b * a.heads + h) * a.sq + i;
        lse[static_cast<std::size_t>(row)] = mx + std::log(l);
        for (i64 c = 0; c < a.dv; ++c) {
          double acc = 0.0;
          for (i64 j = 0; j < a.sk; ++j)
            if (s[static_cast<std::size_t>(j)] != 0.0)
              acc += s[static_cast<std::size_t>(j)] *
                     lc::ref::elem(a.dtype, a.v, b * a.v_strides[0] + g * a.v_strides[1] + j * a.v_strides[2] + c);
          out[static_cast<std::size_t>(row * a.dv + c)] = acc / l;
        }
      }
    }
}

struct Buf {
  lc::Backend& be;
  std::vector<unsigned char> host;
  void* dev = nullptr;
  Buf(lc::Backend& b, std::size_t bytes) : be(b), host(bytes) { dev = be.alloc(bytes ? bytes : 16); }
  ~Buf() { be.free(dev); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  void up() { if (!host.empty()) be.copy_from_host(dev, host.data(), host.size()); }
  void down() { if (!host.empty()) be.copy_to_host(host.data(), dev, host.size()); }
};

// How a case runs: through the forced tensor-core launcher, or Backend::attention_mha.
enum class Path { tc, backend };

void check_tc_outputs(const TcCase& c, lc::DType t, const Buf& o, const Buf& l, const i64 os[3],
                      const std::vector<double>& ref_out, const std::vector<double>& ref_lse,
                      double tol);

// Builds the case's inputs on `be`, runs it, and checks every element of out (poisoned with NaN
// first; with strided_out the whole [B, Sq, H, D] buffer is the view) and lse.
void run_tc_case(lc::Backend& be, lc::DType t, const TcCase& c, lc::ref::Rng& rng, Path path,
                 double tol = 1e-2) {
  SCOPED_TRACE(describe(c, t));
  const i64 es = static_cast<i64>(lc::dtype_size(t));
  lc::MhaArgs a;
  a.batch = c.b;
  a.heads = c.h;
  a.kv_heads = c.hk;
  a.sq = c.sq;
  a.sk = c.sk;
  a.d = c.d;
  a.dv = c.d;
  a.causal = c.causal;
  a.scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  a.dtype = t;
  auto fill = [&](Buf& buf, i64 n) {
    std::vector<float> v = rng.vec(static_cast<std::size_t>(n), -2.0f, 2.0f);
    for (i64 i = 0; i < n; ++i) put(t, buf.host.data(), i, v[static_cast<std::size_t>(i)]);
  };
  const i64 nq = c.b * c.h * c.sq * c.d, nk = c.b * c.hk * c.sk * c.d;
  Buf packed(be, c.packed ? static_cast<std::size_t>(3 * nq * es) : 0);
  Buf q(be, c.packed ? 0 : static_cast<std::size_t>(nq * es));
  Buf k(be, c.packed ? 0 : static_cast<std::size_t>(nk * es));
  Buf v(be, c.packed ? 0 : static_cast<std::size_t>(nk * es));
  const void* hq;
  const void* hk;
  const void* hv;
  if (c.packed) {  // [B, S, 3, H, D]: q at +0, k at +H*D, v at +2*H*D
    fill(packed, 3 * nq);
    const i64 st[3] = {c.sq * 3 * c.h * c.d, c.d, 3 * c.h * c.d};
    for (int i = 0; i < 3; ++i) a.q_strides[i] = a.k_strides[i] = a.v_strides[i] = st[i];
    unsigned char* base = packed.host.data();
    hq = base;
    hk = base + c.h * c.d * es;
    hv = base + 2 * c.h * c.d * es;
  } else {
    fill(q, nq);
    fill(k, nk);
    fill(v, nk);
    const i64 qs[3] = {c.h * c.sq * c.d, c.sq * c.d, c.d}, ks[3] = {c.hk * c.sk * c.d, c.sk * c.d, c.d};
    for (int i = 0; i < 3; ++i) {
      a.q_strides[i] = qs[i];
      a.k_strides[i] = a.v_strides[i] = ks[i];
    }
    hq = q.host.data();
    hk = k.host.data();
    hv = v.host.data();
  }
  // masks
  i64 mn = 0, mes = 0;
  if (c.mask == 1) { mn = c.b * c.sk; mes = 4; }
  if (c.mask == 2) { mn = c.b * c.sq * c.sk; mes = es; }
  if (c.mask == 3) { mn = c.b * c.h * c.sq * c.sk; mes = 8; }
  Buf m(be, static_cast<std::size_t>(mn * mes));
  if (c.mask == 1) {
    a.mask_kind = lc::MaskKind::keep;
    a.mask_dtype = lc::DType::i32;
    auto* p = reinterpret_cast<std::int32_t*>(m.host.data());
    for (i64 i = 0; i < mn; ++i) p[i] = rng.uniform_int(0, 3) != 0;
    if (c.b > 1)
      for (i64 j = 0; j < c.sk; ++j) p[c.sk + j] = 0;  // batch 1 sees no key: zero rows
    a.mask_strides[0] = c.sk;
    a.mask_strides[3] = 1;
    // values at hidden keys are NaN / inf: they must never reach the output
    const i64 hd = c.hk * c.d;
    for (i64 b = 0; b < c.b; ++b)
      for (i64 j = 0; j < c.sk; ++j)
        if (p[b * c.sk + j] == 0 && !c.packed)
          for (i64 e = 0; e < hd; ++e) {
            const i64 hh = e / c.d, cc = e % c.d;
            put(t, v.host.data(), b * a.v_strides[0] + hh * a.v_strides[1] + j * a.v_strides[2] + cc,
                (j % 2) ? std::nan("") : kInf);
          }
  } else if (c.mask == 2) {
    a.mask_kind = lc::MaskKind::additive;
    a.mask_dtype = t;
    for (i64 i = 0; i < mn; ++i)
      put(t, m.host.data(), i, rng.uniform_int(0, 4) == 0 ? -kInf : rng.vec(1, -2.f, 2.f)[0]);
    for (i64 j = 0; j < c.sk; ++j) put(t, m.host.data(), j, -kInf);  // batch 0 row 0: no key
    a.mask_strides[0] = c.sq * c.sk;
    a.mask_strides[2] = c.sk;
    a.mask_strides[3] = 1;
  } else if (c.mask == 3) {
    a.mask_kind = lc::MaskKind::keep;
    a.mask_dtype = lc::DType::i64;
    auto* p = reinterpret_cast<std::int64_t*>(m.host.data());
    for (i64 i = 0; i < mn; ++i) p[i] = rng.uniform_int(0, 2) != 0 ? 5 : 0;
    for (i64 j = 0; j < c.sk; ++j) p[c.sk * (c.sq - 1) + j] = 0;  // last row of (0, 0): no key
    a.mask_strides[0] = c.h * c.sq * c.sk;
    a.mask_strides[1] = c.sq * c.sk;
    a.mask_strides[2] = c.sk;
    a.mask_strides[3] = 1;
  }
  lc::MhaArgs hr = a;
  hr.q = hq;
  hr.k = hk;
  hr.v = hv;
  hr.mask = c.mask ? m.host.data() : nullptr;
  std::vector<double> ref_out, ref_lse;
  reference(hr, ref_out, ref_lse);

  // upload
  packed.up();
  q.up();
  k.up();
  v.up();
  m.up();
  const i64 no = c.b * c.h * c.sq * c.d, nl = c.b * c.h * c.sq;
  Buf o(be, static_cast<std::size_t>(no * es)), l(be, static_cast<std::size_t>(nl * 4));
  i64 os[3] = {c.h * c.sq * c.d, c.sq * c.d, c.d};
  if (c.strided_out) {  // [B, Sq, H, D]
    os[0] = c.sq * c.h * c.d;
    os[1] = c.d;
    os[2] = c.h * c.d;
    for (int i = 0; i < 3; ++i) a.out_strides[i] = os[i];
  }
  auto dev_of = [&](const void* h, Buf& own) -> const void* {
    if (!c.packed) return own.dev;
    return static_cast<const unsigned char*>(packed.dev) +
           (static_cast<const unsigned char*>(h) - packed.host.data());
  };
  a.q = dev_of(hq, q);
  a.k = dev_of(hk, k);
  a.v = dev_of(hv, v);
  a.mask = c.mask ? m.dev : nullptr;
  a.out = o.dev;
  a.lse = static_cast<float*>(l.dev);
  // The tensor-core path runs (and is checked) once per compiled kernel variant
  // (lc::set_attention_kernel_variant), the backend path once with the current choice.
  const int variants = path == Path::tc ? lc::kAttentionTcVariants : 1;
  const int variant_before = lc::attention_kernel_variant("tc");
  for (int variant = 0; variant < variants; ++variant) {
    SCOPED_TRACE(path == Path::tc ? "tc variant " + std::to_string(variant) : std::string("backend"));
    for (i64 i = 0; i < no; ++i) put(t, o.host.data(), i, std::nan(""));
    for (i64 i = 0; i < nl; ++i) put(lc::DType::f32, l.host.data(), i, std::nan(""));
    o.up();
    l.up();
    if (path == Path::tc) {
#ifdef LC_HAVE_CUDA
      ASSERT_TRUE(lc::cuda::attention_mha_tc_eligible(a));
      lc::set_attention_kernel_variant("tc", variant);
      const bool launched = lc::cuda::launch_attention_mha_tc(a, lc::cuda::ctx().stream);
      lc::set_attention_kernel_variant("tc", variant_before);
      ASSERT_TRUE(launched);
#endif
    } else {
      be.attention_mha(a);
    }
    be.synchronize();
    o.down();
    l.down();
    check_tc_outputs(c, t, o, l, os, ref_out, ref_lse, tol);
  }
}

// Every element of out (through its strides os) and lse against the float64 reference.
void check_tc_outputs(const TcCase& c, lc::DType t, const Buf& o, const Buf& l, const i64 os[3],
                      const std::vector<double>& ref_out, const std::vector<double>& ref_lse,
                      double tol) {
  const i64 nl = c.b * c.h * c.sq;
  double num = 0.0, den = 0.0;
  i64 nans = 0, nonzero_dead = 0;
  for (i64 b = 0; b < c.b; ++b)
    for (i64 h = 0; h < c.h; ++h)
      for (i64 i = 0; i < c.sq; ++i) {
        const i64 row = (b * c.h + h) * c.sq + i;
        for (i64 cc = 0; cc < c.d; ++cc) {
          const double got = lc::ref::elem(t, o.host.data(), b * os[0] + h * os[1] + i * os[2] + cc);
          const double want = ref_out[static_cast<std::size_t>(row * c.d + cc)];
          if (std::isnan(got)) { ++nans; continue; }
          if (ref_lse[static_cast<std::size_t>(row)] == -kInf && got != 0.0) ++nonzero_dead;
          num += (got - want) * (got - want);
          den += want * want;
        }
      }
  EXPECT_EQ(nans, 0) << "unwritten or NaN outputs";
  EXPECT_EQ(nonzero_dead, 0) << "rows that see no key must be exact zeros";
  EXPECT_LE(den > 0.0 ? std::sqrt(num / den) : std::sqrt(num), tol);
  const float* gl = reinterpret_cast<const float*>(l.host.data());
  int bad = 0;
  for (i64 i = 0; i < nl; ++i) {
    const double r = ref_lse[static_cast<std::size_t>(i)];
    const bool ok = r == -kInf ? gl[i] == -std::numeric_limits<float>::infinity()
                               : std::abs(gl[i] - r) <= 2e-3 * (1.0 + std::abs(r));
    if (!ok && bad++ < 3) ADD_FAILURE() << "lse[" << i << "] = " << gl[i] << ", expected " << r;
  }
}

}  // namespace

// MhaArgs::out_strides on the CPU backend: every dtype, out as a [B, Sq, H, D] buffer.
TEST(CpuMhaOutStrides, MergedHeadsLayout) {
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::Backend& cpu = lc::get_backend(lc::DeviceKind::cpu);
  for (lc::DType t : {lc::DType::f32, lc::DType::bf16, lc::DType::f16, lc::DType::f64}) {
    const double tol = t == lc::DType::f64 ? 1e-12 : t == lc::DType::f32 ? 1e-5 : 1e-2;
    run_tc_case(cpu, t, {2, 3, 3, 7, 7, 16, false, 1, true, true}, rng, Path::backend, tol);
    run_tc_case(cpu, t, {3, 4, 2, 13, 29, 8, true, 2, false, true}, rng, Path::backend, tol);
    run_tc_case(cpu, t, {1, 2, 1, 5, 1, 24, false, 0, false, true}, rng, Path::backend, tol);
  }
}

TEST(CudaAttentionTc, HeadDimsLengthsDtypes) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  lc::Backend& gpu = lc::test::gpu();
  const i64 lens[][2] = {{1, 1}, {7, 7}, {64, 64}, {129, 129}, {300, 300}, {1, 300}, {7, 129},
                         {129, 7}, {64, 300}};
  int n = 0;
  for (lc::DType t : {lc::DType::bf16, lc::DType::f16})
    for (i64 d : {16, 32, 64, 80, 128})
      for (const auto& sl : lens) {
        ++n;
        const bool causal = n % 2 == 0;
        run_tc_case(gpu, t, {2, 3, 3, sl[0], sl[1], d, causal, 0, false, n % 3 == 0}, rng, Path::tc);
      }
}

TEST(CudaAttentionTc, OddHeadDimsPadded) {  // d % 16 != 0: zero-padded to the MMA's k
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (i64 d : {8, 24, 40, 48, 56, 72, 96, 104, 112, 120})
    run_tc_case(lc::test::gpu(), lc::DType::bf16, {1, 2, 2, 37, 70, d, d % 16 == 8, 0, false, false},
                rng, Path::tc);
}

TEST(CudaAttentionTc, GqaMqaCausal) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType t : {lc::DType::bf16, lc::DType::f16}) {
    run_tc_case(lc::test::gpu(), t, {2, 8, 2, 65, 129, 64, true, 0, false, false}, rng, Path::tc);   // 4:1, sq < sk
    run_tc_case(lc::test::gpu(), t, {2, 8, 1, 129, 65, 32, true, 0, false, true}, rng, Path::tc);    // MQA, sq > sk
    run_tc_case(lc::test::gpu(), t, {1, 12, 3, 300, 7, 128, true, 0, false, false}, rng, Path::tc);  // early rows see nothing
  }
}

TEST(CudaAttentionTc, MasksWithFullyMaskedRows) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType t : {lc::DType::bf16, lc::DType::f16})
    for (int mask : {1, 2, 3}) {
      run_tc_case(lc::test::gpu(), t, {3, 4, 2, 129, 129, 32, false, mask, false, true}, rng, Path::tc);
      run_tc_case(lc::test::gpu(), t, {2, 4, 1, 7, 300, 64, true, mask, false, false}, rng, Path::tc);
      run_tc_case(lc::test::gpu(), t, {2, 2, 2, 64, 64, 80, false, mask, false, true}, rng, Path::tc);
    }
}

TEST(CudaAttentionTc, PackedQkvAndStridedOut) {  // the BERT layout: [B, S, 3, H, D] -> [B, S, H, D]
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType t : {lc::DType::bf16, lc::DType::f16}) {
    run_tc_case(lc::test::gpu(), t, {4, 12, 12, 128, 128, 32, false, 1, true, true}, rng, Path::tc);
    run_tc_case(lc::test::gpu(), t, {2, 4, 4, 129, 129, 64, false, 0, true, true}, rng, Path::tc);
    run_tc_case(lc::test::gpu(), t, {1, 2, 2, 7, 7, 128, true, 2, true, false}, rng, Path::tc);
  }
}

TEST(CudaAttentionTc, ManyHeadPairsGridX) {  // batch * heads > 65535
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  run_tc_case(lc::test::gpu(), lc::DType::bf16, {700, 100, 20, 3, 5, 16, true, 0, false, false}, rng, Path::tc);
}

// Through Backend::attention_mha: the dispatch (tensor cores for 16-bit, attention_mha.cu's
// kernel for float32 and unaligned views, flash decoding for decode shapes, cuDNN when chosen),
// each honouring out_strides.
TEST(CudaAttentionTc, BackendPathsHonourOutStrides) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const std::string before = lc::attention_impl();
  for (const char* impl : {"own", "cudnn"}) {
    lc::set_attention_impl(impl);
    for (lc::DType t : {lc::DType::bf16, lc::DType::f16, lc::DType::f32}) {
      const double tol = t == lc::DType::f32 ? 1e-5 : 1e-2;
      run_tc_case(lc::test::gpu(), t, {2, 6, 2, 77, 200, 64, true, 0, false, true}, rng, Path::backend, tol);
      run_tc_case(lc::test::gpu(), t, {2, 12, 12, 128, 128, 32, false, 1, true, true}, rng, Path::backend, tol);
      run_tc_case(lc::test::gpu(), t, {2, 3, 3, 9, 9, 12, false, 0, false, true}, rng, Path::backend, tol);
      // decode shapes (sq <= 8, sk >= 256): attention_decode.cu's combine pass writes the rows
      run_tc_case(lc::test::gpu(), t, {2, 8, 2, 1, 300, 64, false, 1, false, true}, rng, Path::backend, tol);
      run_tc_case(lc::test::gpu(), t, {2, 8, 2, 4, 512, 128, true, 0, false, true}, rng, Path::backend, tol);
    }
  }
  lc::set_attention_impl(before);
}

// The kernel-variant hook (runtime.h): every index in range is accepted and read back, the
// names are one per variant with the default first, and bad kernels / indices throw ValueError
// without changing the choice. Host-only (no GPU needed).
TEST(AttentionKernelVariants, SetGetAndErrors) {
  const std::pair<const char*, int> kernels[] = {{"tc", lc::kAttentionTcVariants},
                                                 {"decode", lc::kAttentionDecodeVariants}};
  for (const auto& [kernel, count] : kernels) {
    SCOPED_TRACE(kernel);
    const std::vector<std::string> names = lc::attention_kernel_variant_names(kernel);
    ASSERT_EQ(static_cast<int>(names.size()), count);
    EXPECT_NE(names[0].find("default"), std::string::npos);
    const int before = lc::attention_kernel_variant(kernel);
    for (int i = 0; i < count; ++i) {
      lc::set_attention_kernel_variant(kernel, i);
      EXPECT_EQ(lc::attention_kernel_variant(kernel), i);
    }
    EXPECT_THROW(lc::set_attention_kernel_variant(kernel, count), lc::ValueError);
    EXPECT_THROW(lc::set_attention_kernel_variant(kernel, -1), lc::ValueError);
    EXPECT_EQ(lc::attention_kernel_variant(kernel), count - 1);
    lc::set_attention_kernel_variant(kernel, before);
  }
  EXPECT_THROW(lc::set_attention_kernel_variant("flash", 0), lc::ValueError);
  EXPECT_THROW(lc::attention_kernel_variant("flash"), lc::ValueError);
}
