// Flash decoding (src/backends/cuda/attention_decode.cu): lc::cuda::launch_attention_decode
// called directly (so every sk runs the split-K kernels, also the short ones that
// launch_attention_mha keeps on attention_mha.cu) and through Backend::attention_mha, against
// a float64 reference written here from the MhaArgs contract (backend.h): masks, causal
// bottom-right, rows that see no key (zeros, lse = -inf), grouped-query heads.
//
// Inputs are rounded to the storage dtype first, so the reference sees exactly the kernel's
// inputs. Outputs and lse are poisoned with NaN and checked element by element. K/V live in a
// cache [B, Hk, Smax, D] read as its first sk rows (slack rows hold NaN: a read past sk would
// show), q in [B, Sq, H, D] memory read as [B, H, Sq, D]. Keys that no row of a batch may see
// hold NaN in K and V where a case asks for it (masked positions must never reach the output).
// The CudaAttentionDecode* GPU tests skip themselves without a usable CUDA device; the dispatch
// rule test is host-only. Every direct launch runs once per compiled kernel variant
// (lc::set_attention_kernel_variant("decode", i), backend.h's kAttentionDecodeVariants).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/context.h"
#include "backends/cuda/kernels.h"
#include "cuda_test.h"
#include "lightning_core/dtype.h"
#include "lightning_core/runtime.h"
#include "reference.h"

namespace {

using i64 = std::int64_t;
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Case {
  i64 b, h, hk, sq, sk, d, dv;
  bool causal = false;
  // 0 none; 1 key padding int32 [B, Sk] (batch 1, when present, sees no key); 2 additive
  // [1, 1, Sq, Sk] in the storage dtype with -inf entries (query row 0 sees no key); 3 keep
  // int64 [B, H, Sq, Sk]
  int mask = 0;
  bool strided = true;      // cache view for K/V and a permuted q (else contiguous)
  bool nan_dead = false;    // NaN in K and V at keys no row of the batch may see
  bool via_backend = false; // Backend::attention_mha instead of launch_attention_decode
};

std::string describe(const Case& c, lc::DType t) {
  return std::string(lc::dtype_info(t).name) + " B" + std::to_string(c.b) + " H" +
         std::to_string(c.h) + " Hk" + std::to_string(c.hk) + " Sq" + std::to_string(c.sq) +
         " Sk" + std::to_string(c.sk) + " d" + std::to_string(c.d) + " dv" + std::to_string(c.dv) +
         (c.causal ? " causal" : "") + " mask" + std::to_string(c.mask) +
         (c.strided ? " strided" : " contiguous") + (c.nan_dead ? " nan-dead" : "") +
         (c.via_backend ? " backend" : "");
}

void store(lc::DType t, void* p, i64 i, double v) {
  switch (t) {
    case lc::DType::f16: static_cast<lc::float16*>(p)[i] = lc::to_f16(static_cast<float>(v)); break;
    case lc::DType::bf16: static_cast<lc::bfloat16*>(p)[i] = lc::to_bf16(static_cast<float>(v)); break;
    default: static_cast<float*>(p)[i] = static_cast<float>(v);
  }
}

// A device buffer with its host twin.
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

// Tolerances: elementwise |got - ref| <= atol + rtol |ref|, and the relative Frobenius error.
struct Tol {
  double atol, rtol, frob;
};
Tol tol_for(lc::DType t) {
  if (t == lc::DType::f32) return {2e-5, 2e-5, 1e-5};
  if (t == lc::DType::f16) return {4e-3, 4e-3, 1e-2};
  return {2e-2, 1e-2, 1e-2};  // bfloat16: 8 bits of mantissa on the output
}

void check_outputs(lc::DType t, const Case& c, i64 nrows, const Buf& ob, const Buf& lb,
                   const std::vector<double>& ref, const std::vector<double>& ref_lse);

void run_case(lc::DType t, const Case& c, lc::ref::Rng& rng) {
  SCOPED_TRACE(describe(c, t));
  lc::Backend& be = lc::test::gpu();
  const std::size_t es = lc::dtype_size(t);
  const i64 group = c.h / c.hk;
  const i64 smax = c.strided ? c.sk + 5 : c.sk;  // cache rows (slack rows: NaN)

  // logical values, rounded to the dtype
  auto rounded = [&](i64 n, float lo, float hi) {
    std::vector<float> f = rng.vec(static_cast<std::size_t>(n), lo, hi);
    std::vector<double> d(f.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
      unsigned char tmp[4];
      store(t, tmp, 0, f[i]);
      d[i] = lc::ref::elem(t, tmp, 0);
    }
    return d;
  };
  std::vector<double> q = rounded(c.b * c.h * c.sq * c.d, -1.5f, 1.5f);
  std::vector<double> k = rounded(c.b * c.hk * c.sk * c.d, -1.5f, 1.5f);
  std::vector<double> v = rounded(c.b * c.hk * c.sk * c.dv, -1.5f, 1.5f);

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
  if (c.strided) {
    const i64 qs[3] = {c.sq * c.h * c.d, c.d, c.h * c.d};  // [B, Sq, H, D] memory
    const i64 ks[3] = {c.hk * smax * c.d, smax * c.d, c.d};
    const i64 vs[3] = {c.hk * smax * c.dv, smax * c.dv, c.dv};
    std::memcpy(a.q_strides, qs, sizeof qs);
    std::memcpy(a.k_strides, ks, sizeof ks);
    std::memcpy(a.v_strides, vs, sizeof vs);
  } else {
    const i64 qs[3] = {c.h * c.sq * c.d, c.sq * c.d, c.d};
    const i64 ks[3] = {c.hk * c.sk * c.d, c.sk * c.d, c.d};
    const i64 vs[3] = {c.hk * c.sk * c.dv, c.sk * c.dv, c.dv};
    std::memcpy(a.q_strides, qs, sizeof qs);
    std::memcpy(a.k_strides, ks, sizeof ks);
    std::memcpy(a.v_strides, vs, sizeof vs);
  }

  // masks: the dense view bias[b][h][i][j] (additive value, -inf = hidden) for the reference
  const i64 nrows = c.b * c.h * c.sq;
  std::vector<double> bias(static_cast<std::size_t>(nrows * c.sk), 0.0);
  auto at = [&](i64 b, i64 h, i64 i, i64 j) -> double& {
    return bias[static_cast<std::size_t>(((b * c.h + h) * c.sq + i) * c.sk + j)];
  };
  std::size_t mbytes = 0;
  if (c.mask == 1) mbytes = static_cast<std::size_t>(c.b * c.sk) * 4;
  if (c.mask == 2) mbytes = static_cast<std::size_t>(c.sq * c.sk) * es;
  if (c.mask == 3) mbytes = static_cast<std::size_t>(nrows * c.sk) * 8;
  Buf m(be, mbytes);
  if (c.mask == 1) {
    a.mask_kind = lc::MaskKind::keep;
    a.mask_dtype = lc::DType::i32;
    a.mask_strides[0] = c.sk;
    a.mask_strides[3] = 1;
    auto* p = reinterpret_cast<std::int32_t*>(m.host.data());
    for (i64 b = 0; b < c.b; ++b)
      for (i64 j = 0; j < c.sk; ++j) p[b * c.sk + j] = b == 1 ? 0 : rng.uniform_int(0, 2) != 0;
  } else if (c.mask == 2) {
    a.mask_kind = lc::MaskKind::additive;
    a.mask_dtype = t;
    a.mask_strides[2] = c.sk;
    a.mask_strides[3] = 1;
    for (i64 i = 0; i < c.sq; ++i)
      for (i64 j = 0; j < c.sk; ++j)
        store(t, m.host.data(), i * c.sk + j,
              i == 0 || rng.uniform_int(0, 4) == 0 ? -kInf : rng.vec(1, -2.f, 2.f)[0]);
  } else if (c.mask == 3) {
    a.mask_kind = lc::MaskKind::keep;
    a.mask_dtype = lc::DType::i64;
    a.mask_strides[0] = c.h * c.sq * c.sk;
    a.mask_strides[1] = c.sq * c.sk;
    a.mask_strides[2] = c.sk;
    a.mask_strides[3] = 1;
    auto* p = reinterpret_cast<std::int64_t*>(m.host.data());
    for (i64 i = 0; i < nrows * c.sk; ++i) p[i] = rng.uniform_int(0, 1) != 0 ? 7 : 0;
  }
  for (i64 b = 0; b < c.b; ++b)
    for (i64 h = 0; h < c.h; ++h)
      for (i64 i = 0; i < c.sq; ++i)
        for (i64 j = 0; j < c.sk; ++j) {
          double x = 0.0;
          if (c.causal && j > i + c.sk - c.sq) x = -kInf;
          const i64 mi = b * a.mask_strides[0] + h * a.mask_strides[1] + i * a.mask_strides[2] +
                         j * a.mask_strides[3];
          if (c.mask == 1 && reinterpret_cast<const std::int32_t*>(m.host.data())[mi] == 0) x = -kInf;
          if (c.mask == 3 && reinterpret_cast<const std::int64_t*>(m.host.data())[mi] == 0) x = -kInf;
          if (c.mask == 2 && x != -kInf) x = lc::ref::elem(t, m.host.data(), mi);
          at(b, h, i, j) = x;
        }

  // dead keys (hidden from every row of their batch): NaN in K and V when asked
  std::vector<char> dead(static_cast<std::size_t>(c.b * c.sk), 0);
  if (c.nan_dead)
    for (i64 b = 0; b < c.b; ++b)
      for (i64 j = 0; j < c.sk; ++j) {
        bool all = true;
        for (i64 h = 0; h < c.h && all; ++h)
          for (i64 i = 0; i < c.sq && all; ++i) all = at(b, h, i, j) == -kInf;
        dead[static_cast<std::size_t>(b * c.sk + j)] = all;
      }

  // reference (dead keys are hidden, so their NaN never enters it)
  std::vector<double> ref(static_cast<std::size_t>(nrows * c.dv), 0.0);
  std::vector<double> ref_lse(static_cast<std::size_t>(nrows), -kInf);
  std::vector<double> s(static_cast<std::size_t>(c.sk));
  for (i64 b = 0; b < c.b; ++b)
    for (i64 h = 0; h < c.h; ++h) {
      const i64 g = h / group;
      for (i64 i = 0; i < c.sq; ++i) {
        const double* qr = &q[static_cast<std::size_t>(((b * c.h + h) * c.sq + i) * c.d)];
        double mx = -kInf;
        for (i64 j = 0; j < c.sk; ++j) {
          const double bj = at(b, h, i, j);
          if (bj == -kInf) {
            s[static_cast<std::size_t>(j)] = -kInf;
            continue;
          }
          const double* kr = &k[static_cast<std::size_t>(((b * c.hk + g) * c.sk + j) * c.d)];
          double acc = 0.0;
          for (i64 e = 0; e < c.d; ++e) acc += qr[e] * kr[e];
          s[static_cast<std::size_t>(j)] = acc * a.scale + bj;
          mx = std::max(mx, s[static_cast<std::size_t>(j)]);
        }
        if (mx == -kInf) continue;
        double l = 0.0;
        const i64 row = (b * c.h + h) * c.sq + i;
        double* out = &ref[static_cast<std::size_t>(row * c.dv)];
        for (i64 j = 0; j < c.sk; ++j) {
          if (s[static_cast<std::size_t>(j)] == -kInf) continue;
          const double p = std::exp(s[static_cast<std::size_t>(j)] - mx);
          l += p;
          const double* vr = &v[static_cast<std::size_t>(((b * c.hk + g) * c.sk + j) * c.dv)];
          for (i64 e = 0; e < c.dv; ++e) out[e] += p * vr[e];
        }
        for (i64 e = 0; e < c.dv; ++e) out[e] /= l;
        ref_lse[static_cast<std::size_t>(row)] = mx + std::log(l);
      }
    }

  // storage: q, then K/V caches (slack rows NaN, dead keys NaN when asked)
  const double nan = std::nan("");
  Buf qb(be, static_cast<std::size_t>(nrows * c.d) * es);
  Buf kb(be, static_cast<std::size_t>(c.b * c.hk * smax * c.d) * es);
  Buf vb(be, static_cast<std::size_t>(c.b * c.hk * smax * c.dv) * es);
  for (i64 b = 0; b < c.b; ++b)
    for (i64 h = 0; h < c.h; ++h)
      for (i64 i = 0; i < c.sq; ++i)
        for (i64 e = 0; e < c.d; ++e)
          store(t, qb.host.data(), b * a.q_strides[0] + h * a.q_strides[1] + i * a.q_strides[2] + e,
                q[static_cast<std::size_t>(((b * c.h + h) * c.sq + i) * c.d + e)]);
  for (i64 x = 0; x < c.b * c.hk * smax * c.d; ++x) store(t, kb.host.data(), x, nan);
  for (i64 x = 0; x < c.b * c.hk * smax * c.dv; ++x) store(t, vb.host.data(), x, nan);
  for (i64 b = 0; b < c.b; ++b)
    for (i64 g = 0; g < c.hk; ++g)
      for (i64 j = 0; j < c.sk; ++j) {
        const bool d = dead[static_cast<std::size_t>(b * c.sk + j)] != 0;
        for (i64 e = 0; e < c.d; ++e)
          store(t, kb.host.data(), b * a.k_strides[0] + g * a.k_strides[1] + j * a.k_strides[2] + e,
                d ? nan : k[static_cast<std::size_t>(((b * c.hk + g) * c.sk + j) * c.d + e)]);
        for (i64 e = 0; e < c.dv; ++e)
          store(t, vb.host.data(), b * a.v_strides[0] + g * a.v_strides[1] + j * a.v_strides[2] + e,
                d ? nan : v[static_cast<std::size_t>(((b * c.hk + g) * c.sk + j) * c.dv + e)]);
      }
  qb.up();
  kb.up();
  vb.up();
  if (c.mask) m.up();

  Buf ob(be, static_cast<std::size_t>(nrows * c.dv) * es), lb(be, static_cast<std::size_t>(nrows) * 4);
  a.q = qb.dev;
  a.k = kb.dev;
  a.v = vb.dev;
  a.mask = c.mask ? m.dev : nullptr;
  a.out = ob.dev;
  a.lse = static_cast<float*>(lb.dev);
  // The forced launcher runs (and is checked) once per compiled kernel variant
  // (lc::set_attention_kernel_variant); the backend path once with the current choice.
  const int variants = c.via_backend ? 1 : lc::kAttentionDecodeVariants;
  const int variant_before = lc::attention_kernel_variant("decode");
  for (int variant = 0; variant < variants; ++variant) {
    SCOPED_TRACE(c.via_backend ? std::string("backend") : "decode variant " + std::to_string(variant));
    for (i64 x = 0; x < nrows * c.dv; ++x) store(t, ob.host.data(), x, nan);
    for (i64 x = 0; x < nrows; ++x) store(lc::DType::f32, lb.host.data(), x, nan);
    ob.up();
    lb.up();
    if (c.via_backend) {
      be.attention_mha(a);
    } else {
      lc::cuda::EnqueueScope enq;  // as the backend's ops: synchronize() then waits for it
      lc::set_attention_kernel_variant("decode", variant);
      const bool launched = lc::cuda::launch_attention_decode(a, lc::cuda::ctx().stream);
      lc::set_attention_kernel_variant("decode", variant_before);
      ASSERT_TRUE(launched);
    }
    be.synchronize();
    ob.down();
    lb.down();
    check_outputs(t, c, nrows, ob, lb, ref, ref_lse);
  }
}

// Every element of out and lse against the float64 reference (rows that see no key: exact 0
// and -inf).
void check_outputs(lc::DType t, const Case& c, i64 nrows, const Buf& ob, const Buf& lb,
                   const std::vector<double>& ref, const std::vector<double>& ref_lse) {
  const Tol tol = tol_for(t);
  double num = 0.0, den = 0.0;
  int bad = 0;
  for (i64 x = 0; x < nrows * c.dv; ++x) {
    const double got = lc::ref::elem(t, ob.host.data(), x), r = ref[static_cast<std::size_t>(x)];
    const bool zero_row = ref_lse[static_cast<std::size_t>(x / c.dv)] == -kInf;
    const bool ok = zero_row ? got == 0.0 : std::abs(got - r) <= tol.atol + tol.rtol * std::abs(r);
    if (!ok && bad++ < 5)
      ADD_FAILURE() << "out[" << x << "] (row " << x / c.dv << ", col " << x % c.dv << ") = " << got
                    << ", expected " << r << (zero_row ? " (row sees no key: exact 0)" : "");
    if (!std::isnan(got)) {
      num += (got - r) * (got - r);
      den += r * r;
    }
  }
  EXPECT_EQ(bad, 0) << bad << " bad outputs";
  EXPECT_LE(den > 0.0 ? std::sqrt(num / den) : std::sqrt(num), tol.frob);
  const float* gl = reinterpret_cast<const float*>(lb.host.data());
  int bad_lse = 0;
  for (i64 x = 0; x < nrows; ++x) {
    const double r = ref_lse[static_cast<std::size_t>(x)];
    const bool ok = r == -kInf ? gl[x] == -std::numeric_limits<float>::infinity()
                               : std::abs(gl[x] - r) <= 1e-4 * (1.0 + std::abs(r));
    if (!ok && bad_lse++ < 3) ADD_FAILURE() << "lse[" << x << "] = " << gl[x] << ", expected " << r;
  }
  EXPECT_EQ(bad_lse, 0);
}

const lc::DType kDtypes[] = {lc::DType::bf16, lc::DType::f16, lc::DType::f32};

// Every sq x sk x D combination of the list per dtype; heads rotate through GQA 4:1,
// MQA (12 query heads: 12 x sq rows, several row chunks) and H == Hk; causal on every other
// case (with sk < sq its leading rows see no key); strided and contiguous alternate.
TEST(CudaAttentionDecode, SweepShapesEveryDtype) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  const i64 sqs[] = {1, 2, 5, 8}, sks[] = {1, 7, 255, 256, 1000, 4097}, ds[] = {64, 80, 128, 256};
  const i64 heads[3][2] = {{8, 2}, {12, 1}, {3, 3}};
  for (lc::DType t : kDtypes) {
    int n = 0;
    for (i64 sq : sqs)
      for (i64 sk : sks)
        for (i64 d : ds) {
          const i64* hh = heads[n % 3];
          Case c{2, hh[0], hh[1], sq, sk, d, d};
          c.causal = (n / 3) % 2 == 1;
          c.strided = n % 2 == 0;
          run_case(t, c, rng);
          ++n;
          if (HasFailure()) return;  // one failing shape is enough to read
        }
  }
}

// Key padding (a batch that sees no key), additive masks with -inf (a query row that sees no
// key) and per-row keep masks; NaN in K/V at keys nobody may see must not reach the output.
TEST(CudaAttentionDecode, MasksAndRowsWithoutKeys) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType t : kDtypes)
    for (int mask : {1, 2, 3})
      for (i64 sk : {7, 300, 1000})
        for (i64 sq : {1, 3, 8}) {
          Case c{3, 8, 2, sq, sk, 128, 128};
          c.mask = mask;
          c.causal = sq == 3;
          c.nan_dead = true;
          run_case(t, c, rng);
          if (HasFailure()) return;
        }
}

// dv != d, D not a power of two, and the smallest head dims.
TEST(CudaAttentionDecode, ValueDimDiffers) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  for (lc::DType t : kDtypes) {
    run_case(t, Case{2, 8, 2, 1, 777, 64, 128}, rng);
    run_case(t, Case{1, 4, 4, 2, 513, 128, 40, true}, rng);
    run_case(t, Case{2, 6, 3, 4, 300, 8, 8}, rng);
    run_case(t, Case{1, 2, 1, 1, 600, 16, 256}, rng);
  }
}

// The long-cache shape (hundreds of splits), and one kv head alone against 100k keys
// (the split count capped at 1024 chunks is not reached, but the combine walks many splits).
TEST(CudaAttentionDecode, LongCacheManySplits) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  run_case(lc::DType::bf16, Case{1, 32, 8, 1, 32768, 128, 128}, rng);
  run_case(lc::DType::f32, Case{1, 1, 1, 1, 100003, 64, 64, true}, rng);
  run_case(lc::DType::f16, Case{1, 4, 1, 8, 20000, 256, 256, true, 2}, rng);
}

// More batches than a grid's z limit (65535), and kv heads x row chunks beyond y's.
TEST(CudaAttentionDecode, GridStrideBeyondLimits) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  run_case(lc::DType::bf16, Case{70000, 1, 1, 1, 3, 8, 8}, rng);
  run_case(lc::DType::f32, Case{1, 66000, 66000, 1, 2, 8, 8}, rng);
  run_case(lc::DType::bf16, Case{1, 66000, 66000, 1, 2, 8, 8}, rng);  // the tensor-core kernel's y loop
}

// Through Backend::attention_mha (float32: cuDNN never takes it): decode shapes reach the
// decode kernels via launch_attention_mha, and the results hold.
TEST(CudaAttentionDecode, BackendDispatch) {
  LC_REQUIRE_CUDA();
  lc::ref::Rng rng;
  SCOPED_TRACE(rng.describe());
  Case c{2, 8, 2, 1, 4097, 128, 128};
  c.via_backend = true;
  run_case(lc::DType::f32, c, rng);
  c.sq = 8;
  c.causal = true;
  c.mask = 1;
  run_case(lc::DType::f32, c, rng);
  // and with the choice forced to our kernels, a 16-bit decode shape
  const std::string before = lc::attention_impl();
  lc::set_attention_impl("own");
  c = Case{2, 8, 2, 2, 1000, 64, 64};
  c.via_backend = true;
  run_case(lc::DType::bf16, c, rng);
  lc::set_attention_impl(before);
}

// Calls outside the supported set are declined with nothing queued (launch returns false).
TEST(CudaAttentionDecode, DeclinesUnsupportedCalls) {
  LC_REQUIRE_CUDA();
  lc::Backend& be = lc::test::gpu();
  void* buf = be.alloc(4096);
  lc::MhaArgs a;
  a.q = a.k = a.v = buf;
  a.out = buf;
  a.batch = a.heads = a.kv_heads = a.sq = 1;
  a.sk = 4;
  a.d = a.dv = 12;  // not a multiple of 8
  a.dtype = lc::DType::bf16;
  const i64 st[3] = {48, 48, 12};
  std::memcpy(a.q_strides, st, sizeof st);
  std::memcpy(a.k_strides, st, sizeof st);
  std::memcpy(a.v_strides, st, sizeof st);
  EXPECT_FALSE(lc::cuda::launch_attention_decode(a, lc::cuda::ctx().stream));
  a.d = a.dv = 16;
  a.q = static_cast<char*>(buf) + 2;  // not 16-byte aligned
  EXPECT_FALSE(lc::cuda::launch_attention_decode(a, lc::cuda::ctx().stream));
  be.free(buf);
}

// Host-only: which calls launch_attention_mha sends to the decode kernels.
TEST(CudaAttentionDecode, DispatchRule) {
  alignas(16) static unsigned char dummy[64];
  lc::MhaArgs a;
  a.q = a.k = a.v = dummy;
  a.out = dummy;
  a.batch = 8;
  a.heads = 32;
  a.kv_heads = 8;
  a.sq = 1;
  a.sk = 4096;
  a.d = a.dv = 128;
  a.dtype = lc::DType::bf16;
  const i64 qs[3] = {32 * 128, 128, 3};  // the row stride of a length-1 dimension is not used
  const i64 ks[3] = {8 * 8192 * 128, 8192 * 128, 128};  // a cache [B, Hk, 8192, D]
  std::memcpy(a.q_strides, qs, sizeof qs);
  std::memcpy(a.k_strides, ks, sizeof ks);
  std::memcpy(a.v_strides, ks, sizeof ks);
  EXPECT_TRUE(lc::cuda::attention_decode_applies(a));
  lc::MhaArgs b = a;
  b.sk = lc::cuda::kDecodeMinKeys - 1;  // short: attention_mha.cu's kernel
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  EXPECT_TRUE(lc::cuda::attention_decode_supported(b));
  b = a;
  b.sq = lc::cuda::kDecodeMaxQueries + 1;
  b.q_strides[2] = 128;
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  b.sq = lc::cuda::kDecodeMaxQueries;
  EXPECT_TRUE(lc::cuda::attention_decode_applies(b));
  b.q_strides[2] = 3;  // now used: not whole vectors
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  b = a;
  b.dtype = lc::DType::f64;
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  b = a;
  b.d = 72;
  b.dv = 264;
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  b.dv = 40;
  EXPECT_TRUE(lc::cuda::attention_decode_applies(b));
  b = a;
  b.k = dummy + 8;
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  b = a;
  b.heads = 30;  // not a multiple of kv_heads
  EXPECT_FALSE(lc::cuda::attention_decode_applies(b));
  b = a;
  b.mask_kind = lc::MaskKind::keep;  // masks and causal are the kernel's own business
  b.causal = true;
  EXPECT_TRUE(lc::cuda::attention_decode_applies(b));
}

}  // namespace
