// The public C++ op API (include/lightning_core/ops.h) on lc::Tensor: results vs the float64
// reference (reference.h), the exception types and "[op]" messages of bad calls with `out`
// left untouched, Tensor view / contiguous / copy_to semantics, ExecutionPolicy::validate and
// placement with an explicit device.
//
// Inputs are fresh random values per run (Rng; LC_TEST_SEED=<n> replays, the seed is in every
// failure message). Tolerance: relative Frobenius error <= 1e-5 (fp32; see tests/python/parity.py
// for the measured errors).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/sizes.h"
#include "lightning_core/policy.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"
#include "reference.h"

namespace {

using lc::DType;
using lc::DeviceKind;
using lc::Tensor;
using i64 = std::int64_t;
constexpr double kTol = 1e-5;
constexpr float kSentinel = 7.25f;

// ---- helpers ------------------------------------------------------------------------------

Tensor filled(const std::vector<i64>& shape, float v, DType dt = DType::f32) {
  Tensor t = Tensor::empty(shape, dt);
  if (dt == DType::f32) {
    for (i64 i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = v;
  } else {
    for (i64 i = 0; i < t.numel(); ++i) t.data_as<double>()[i] = v;
  }
  return t;
}

Tensor random(lc::ref::Rng& rng, const std::vector<i64>& shape) {
  Tensor t = Tensor::empty(shape);
  rng.fill(t.data_as<float>(), static_cast<std::size_t>(t.numel()));
  return t;
}

Tensor nan_tensor(const std::vector<i64>& shape) {
  Tensor t = Tensor::empty(shape);
  lc::ref::poison(t.data_as<float>(), static_cast<std::size_t>(t.numel()));
  return t;
}

std::vector<float> host_values(const Tensor& t) {
  Tensor c = t.to(DeviceKind::cpu).contiguous();
  const float* p = c.data_as<float>();
  return std::vector<float>(p, p + c.numel());
}

// Bitwise snapshot, so NaN == NaN.
std::vector<unsigned char> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.data());
  return std::vector<unsigned char>(p, p + t.nbytes());
}

#define EXPECT_MATCHES_REF(out_tensor, expect, rng)                                   \
  do {                                                                                \
    const std::vector<float> got_ = host_values(out_tensor);                          \
    EXPECT_EQ(lc::ref::count_nan(got_), 0u) << "output not fully written; "           \
                                            << (rng).describe();                      \
    EXPECT_LE(lc::ref::rel_error(got_, expect), kTol)                                 \
        << "max abs diff " << lc::ref::max_abs_diff(got_, expect) << "; "             \
        << (rng).describe();                                                          \
  } while (0)

// Expects `fn` to throw exactly E (or a subclass) with a message starting "[op]" and
// containing `needle`.
template <class E, class F>
void expect_error(F&& fn, const std::string& op, const std::string& needle = "") {
  try {
    fn();
    ADD_FAILURE() << "expected an exception from [" << op << "]";
  } catch (const E& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("[" + op + "]", 0), 0u) << msg;
    if (!needle.empty()) EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

lc::ExecutionPolicy cpu_policy() {
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  return p;
}

// ---- results vs the float64 reference ---------------------------------------------------

TEST(OpsApi, Matmul2dMatchesReference) {
  lc::ref::Rng rng;
  for (auto [m, k, n] : {std::array<i64, 3>{1, 1, 1}, {7, 13, 5}, {17, 33, 65}, {131, 97, 103}}) {
    SCOPED_TRACE("m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n));
    Tensor a = random(rng, {m, k}), b = random(rng, {k, n});
    lc::MatmulArgs args;
    args.a = a.data_as<float>();
    args.b = b.data_as<float>();
    args.m = m;
    args.k = k;
    args.n = n;
    const std::vector<double> expect = lc::ref::matmul(args);
    Tensor r = lc::matmul2d(a, b, cpu_policy());
    ASSERT_EQ(r.shape(), (std::vector<i64>{m, n}));
    EXPECT_EQ(r.device(), DeviceKind::cpu);
    EXPECT_TRUE(r.is_contiguous());
    EXPECT_MATCHES_REF(r, expect, rng);
    Tensor out = nan_tensor({m, n});
    lc::matmul2d_into(a, b, out, cpu_policy());
    EXPECT_MATCHES_REF(out, expect, rng);
    // Non-contiguous b (a transposed view of its transpose) gives the same result.
    Tensor bt = Tensor::empty({n, k});
    b.t().copy_to(bt);
    Tensor out2 = nan_tensor({m, n});
    lc::matmul2d_into(a, bt.t(), out2, cpu_policy());
    EXPECT_MATCHES_REF(out2, expect, rng);
  }
}

TEST(OpsApi, LinearWithBiasAndActivations) {
  lc::ref::Rng rng;
  const i64 m = 29, in = 37, o = 19;
  Tensor x = random(rng, {m, in}), w = random(rng, {o, in}), b = random(rng, {o});
  for (lc::Activation act : {lc::Activation::none, lc::Activation::relu, lc::Activation::gelu}) {
    SCOPED_TRACE(lc::to_string(act));
    lc::MatmulArgs args;
    args.a = x.data_as<float>();
    args.b = w.data_as<float>();
    args.bias = b.data_as<float>();
    args.m = m;
    args.k = in;
    args.n = o;
    args.trans_b = true;
    args.act = act;
    const std::vector<double> expect = lc::ref::matmul(args);
    EXPECT_MATCHES_REF(lc::linear(x, w, &b, act, cpu_policy()), expect, rng);
    Tensor out = nan_tensor({m, o});
    lc::linear_into(x, w, &b, act, out, cpu_policy());
    EXPECT_MATCHES_REF(out, expect, rng);
  }
}

TEST(OpsApi, AttentionCausalAndFull) {
  lc::ref::Rng rng;
  for (auto [sq, sk, d, dv] : {std::array<i64, 4>{1, 1, 1, 1}, {7, 13, 5, 3}, {37, 300, 17, 23}}) {
    Tensor q = random(rng, {sq, d}), k = random(rng, {sk, d}), v = random(rng, {sk, dv});
    for (bool causal : {false, true}) {
      SCOPED_TRACE("sq=" + std::to_string(sq) + " sk=" + std::to_string(sk) +
                   (causal ? " causal" : " full"));
      lc::AttentionArgs args;
      args.q = q.data_as<float>();
      args.k = k.data_as<float>();
      args.v = v.data_as<float>();
      args.sq = sq;
      args.sk = sk;
      args.d = d;
      args.dv = dv;
      args.causal = causal;
      args.scale = 1.0f / std::sqrt(static_cast<float>(d));
      const std::vector<double> expect = lc::ref::attention(args);
      EXPECT_MATCHES_REF(lc::attention2d(q, k, v, causal, cpu_policy()), expect, rng);
      Tensor out = nan_tensor({sq, dv});
      lc::attention2d_into(q, k, v, out, causal, cpu_policy());
      EXPECT_MATCHES_REF(out, expect, rng);
      // explicit scale
      args.scale = 0.37f;
      const std::vector<double> expect_s = lc::ref::attention(args);
      EXPECT_MATCHES_REF(lc::attention2d(q, k, v, causal, cpu_policy(), 0.37f), expect_s, rng);
    }
  }
}

TEST(OpsApi, Conv2dLayernormSoftmaxElementwise) {
  lc::ref::Rng rng;
  {  // conv2d: stride 2x1, padding 1x2, bias, relu
    Tensor x = random(rng, {2, 3, 11, 9}), w = random(rng, {5, 3, 3, 4}), b = random(rng, {5});
    lc::Conv2dArgs a;
    a.x = x.data_as<float>();
    a.w = w.data_as<float>();
    a.bias = b.data_as<float>();
    a.n = 2, a.c = 3, a.h = 11, a.w_in = 9, a.oc = 5, a.kh = 3, a.kw = 4;
    a.stride_h = 2, a.stride_w = 1, a.pad_h = 1, a.pad_w = 2;
    a.oh = (11 + 2 - 3) / 2 + 1;
    a.ow = (9 + 4 - 4) / 1 + 1;
    a.act = lc::Activation::relu;
    const std::vector<double> expect = lc::ref::conv2d(a);
    EXPECT_EQ(lc::conv2d_nchw_out_shape(x, w, &b, 2, 1, 1, 2), (std::vector<i64>{2, 5, a.oh, a.ow}));
    Tensor r = lc::conv2d_nchw(x, w, &b, 2, 1, 1, 2, lc::Activation::relu, cpu_policy());
    EXPECT_MATCHES_REF(r, expect, rng);
  }
  {  // layernorm over 3-D input, gamma + beta
    Tensor x = random(rng, {3, 5, 67}), g = random(rng, {67}), b = random(rng, {67});
    lc::LayerNormArgs a;
    a.x = x.data_as<float>();
    a.gamma = g.data_as<float>();
    a.beta = b.data_as<float>();
    a.rows = 15;
    a.cols = 67;
    a.eps = 1e-5f;
    const std::vector<double> expect = lc::ref::layernorm(a);
    Tensor out = nan_tensor({3, 5, 67});
    lc::layernorm_into(x, &g, &b, 1e-5f, out, cpu_policy());
    EXPECT_MATCHES_REF(out, expect, rng);
  }
  {  // softmax over a non-contiguous (transposed) input
    Tensor xt = random(rng, {41, 13});
    Tensor x = xt.t();  // [13, 41], strides {1, 13}
    ASSERT_FALSE(x.is_contiguous());
    Tensor xc = x.contiguous();
    lc::SoftmaxArgs a;
    a.x = xc.data_as<float>();
    a.rows = 13;
    a.cols = 41;
    const std::vector<double> expect = lc::ref::softmax(a);
    EXPECT_MATCHES_REF(lc::softmax(x, cpu_policy()), expect, rng);
  }
  {  // elementwise, odd length, every kind
    const i64 n = 1031;
    Tensor a = random(rng, {n}), b = random(rng, {n});
    struct K {
      const char* name;
      lc::EwKind kind;
      bool binary;
    };
    for (K k : {K{"vector_add", lc::EwKind::add, true}, K{"vector_sub", lc::EwKind::sub, true},
                K{"vector_mul", lc::EwKind::mul, true}, K{"vector_scale", lc::EwKind::scale, false},
                K{"relu", lc::EwKind::relu, false}, K{"gelu", lc::EwKind::gelu, false}}) {
      SCOPED_TRACE(k.name);
      const std::vector<double> expect = lc::ref::elementwise(
          k.kind, a.data_as<float>(), k.binary ? b.data_as<float>() : nullptr, n, -1.5f);
      Tensor out = nan_tensor({n});
      lc::elementwise_into(k.name, a, k.binary ? &b : nullptr, -1.5f, out, cpu_policy());
      EXPECT_MATCHES_REF(out, expect, rng);
    }
  }
}

// ---- errors: type, "[op]" message, out untouched --------------------------------------------

TEST(OpsApi, ErrorsLeaveOutUntouched) {
  Tensor a = filled({3, 4}, 1.0f), b = filled({4, 5}, 1.0f);
  Tensor out = nan_tensor({3, 5});
  const auto before = bytes_of(out);
  auto untouched = [&] { EXPECT_EQ(bytes_of(out), before) << "out was modified"; };

  expect_error<lc::TypeError>([&] { lc::matmul2d_into(filled({3, 4}, 1, DType::f64), b, out); },
                              "matmul2d", "float64");
  untouched();
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(a, filled({5, 5}, 1), out); }, "matmul2d",
                               "[3, 4]");
  untouched();
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(filled({12}, 1), b, out); }, "matmul2d",
                               "2-D");
  untouched();
  Tensor wrong_shape = filled({5, 3}, kSentinel);
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(a, b, wrong_shape); }, "matmul2d", "[5, 3]");
  EXPECT_EQ(host_values(wrong_shape), std::vector<float>(15, kSentinel));
  Tensor wrong_dtype = filled({3, 5}, kSentinel, DType::f64);
  // The out-dtype error is a ValueError in C++ (Python raises a TypeError+ValueError subclass).
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(a, b, wrong_dtype); }, "matmul2d",
                               "float32");
  Tensor big = filled({5, 3}, kSentinel);
  Tensor noncontig = big.t();
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(a, b, noncontig); }, "matmul2d",
                               "contiguous");
  EXPECT_EQ(host_values(big), std::vector<float>(15, kSentinel));
  float ro_buf[15];
  for (float& f : ro_buf) f = kSentinel;
  const i64 shp[2] = {3, 5}, str[2] = {5, 1};
  Tensor ro = Tensor::wrap(ro_buf, 2, shp, str, DType::f32, DeviceKind::cpu, nullptr, false);
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(a, b, ro); }, "matmul2d", "read-only");
  for (float f : ro_buf) EXPECT_EQ(f, kSentinel);

  Tensor aout = nan_tensor({2, 3});
  const auto abefore = bytes_of(aout);
  expect_error<lc::ValueError>(
      [&] { lc::attention2d_into(filled({2, 8}, 1), filled({4, 6}, 1), filled({4, 3}, 1), aout, true); },
      "attention2d", "head dimension");
  expect_error<lc::ValueError>(
      [&] { lc::attention2d_into(filled({2, 8}, 1), filled({4, 8}, 1), filled({5, 3}, 1), aout, false); },
      "attention2d", "sequence length");
  EXPECT_EQ(bytes_of(aout), abefore);

  Tensor cout = nan_tensor({1, 2, 4, 4});
  const auto cbefore = bytes_of(cout);
  Tensor x = filled({1, 3, 6, 6}, 1), w = filled({2, 3, 3, 3}, 1);
  expect_error<lc::ValueError>(
      [&] { lc::conv2d_nchw_into(x, w, nullptr, 0, 1, 0, 0, lc::Activation::none, cout); },
      "conv2d_nchw", "stride");
  expect_error<lc::ValueError>(
      [&] { lc::conv2d_nchw_into(x, w, nullptr, 1, 1, -1, 0, lc::Activation::none, cout); },
      "conv2d_nchw", "padding");
  expect_error<lc::ValueError>(
      [&] { lc::conv2d_nchw_into(x, filled({2, 4, 3, 3}, 1), nullptr, 1, 1, 0, 0, lc::Activation::none, cout); },
      "conv2d_nchw", "channel");
  Tensor bias3 = filled({3}, 1);
  expect_error<lc::ValueError>(
      [&] { lc::conv2d_nchw_into(x, w, &bias3, 1, 1, 0, 0, lc::Activation::none, cout); },
      "conv2d_nchw", "bias");
  EXPECT_EQ(bytes_of(cout), cbefore);

  Tensor lout = nan_tensor({4, 6});
  const auto lbefore = bytes_of(lout);
  Tensor g5 = filled({5}, 1);
  expect_error<lc::ValueError>([&] { lc::layernorm_into(filled({4, 6}, 1), &g5, nullptr, 1e-5f, lout); },
                               "layernorm", "gamma");
  expect_error<lc::ValueError>([&] { lc::layernorm_into(filled({4, 6}, 1), nullptr, nullptr, 0.0f, lout); },
                               "layernorm", "eps");
  expect_error<lc::ValueError>([&] { lc::softmax_into(filled({4, 6}, 1, DType::f64), lout); },
                               "softmax", "float64");  // out must have x's dtype
  Tensor g6d = filled({6}, 1, DType::f64);
  expect_error<lc::TypeError>([&] { lc::layernorm_into(filled({4, 6}, 1), &g6d, nullptr, 1e-5f, lout); },
                              "layernorm", "gamma");
  expect_error<lc::ValueError>([&] { lc::softmax_into(filled({4, 0}, 1), lout); }, "softmax",
                               "[4, 0]");  // an empty x gives an empty result: out's shape differs
  EXPECT_EQ(bytes_of(lout), lbefore);

  Tensor eout = nan_tensor({5});
  const auto ebefore = bytes_of(eout);
  expect_error<lc::ValueError>([&] { Tensor b6 = filled({6}, 1); lc::elementwise_into("vector_add", filled({5}, 1), &b6, 1.0f, eout); },
                               "vector_add", "same shape");
  expect_error<lc::ValueError>([&] { Tensor b5 = filled({5}, 1); lc::elementwise_into("matrix_sub", filled({5}, 1), &b5, 1.0f, eout); },
                               "matrix_sub", "2-D");
  expect_error<lc::ValueError>([&] { lc::elementwise_into("vector_add", filled({5}, 1), nullptr, 1.0f, eout); },
                               "vector_add", "two inputs");
  expect_error<lc::ValueError>([&] { lc::elementwise_into("vector_pow", filled({5}, 1), nullptr, 1.0f, eout); },
                               "elementwise", "vector_pow");
  EXPECT_EQ(bytes_of(eout), ebefore);

  // The runtime keeps working after all of that.
  Tensor ok = nan_tensor({3, 5});
  lc::matmul2d_into(a, b, ok, cpu_policy());
  EXPECT_EQ(host_values(ok), std::vector<float>(15, 4.0f));
}

TEST(OpsApi, ShapeInferenceRunsTheSameChecks) {
  Tensor a = filled({3, 4}, 1), b = filled({4, 5}, 1);
  EXPECT_EQ(lc::matmul2d_out_shape(a, b), (std::vector<i64>{3, 5}));
  expect_error<lc::ValueError>([&] { lc::matmul2d_out_shape(a, a); }, "matmul2d");
  Tensor w = filled({6, 4}, 1);
  EXPECT_EQ(lc::linear_out_shape(a, w, nullptr), (std::vector<i64>{3, 6}));
  EXPECT_EQ(lc::attention2d_out_shape(filled({2, 8}, 1), filled({5, 8}, 1), filled({5, 3}, 1)),
            (std::vector<i64>{2, 3}));
  EXPECT_EQ(lc::softmax_out_shape(filled({2, 3, 4}, 1)), (std::vector<i64>{2, 3, 4}));
  EXPECT_EQ(lc::elementwise_out_shape("relu", filled({7}, 1), nullptr), (std::vector<i64>{7}));
  EXPECT_EQ(lc::softmax_out_shape(filled({2}, 1, DType::f64)), (std::vector<i64>{2}));
  EXPECT_EQ(lc::layernorm_out_shape(filled({3, 0}, 1), nullptr, nullptr, 1e-5f),
            (std::vector<i64>{3, 0}));
  expect_error<lc::TypeError>([&] { lc::softmax_out_shape(filled({2}, 1, DType::i64)); }, "softmax");
}

// ---- Tensor semantics -------------------------------------------------------------------

TEST(TensorApi, ViewContiguousCopyTo) {
  Tensor t = Tensor::empty({4, 5});
  for (int i = 0; i < 20; ++i) t.data_as<float>()[i] = static_cast<float>(i);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.shape_str(), "[4, 5]");

  Tensor v = t.view({2, 3}, {5, 1}, 6);  // rows 1..2, cols 1..3
  EXPECT_FALSE(v.is_contiguous());
  EXPECT_EQ(v.data(), static_cast<void*>(t.data_as<float>() + 6));  // no copy
  Tensor c = v.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.data(), v.data());
  EXPECT_EQ(host_values(c), (std::vector<float>{6, 7, 8, 11, 12, 13}));
  EXPECT_EQ(t.contiguous().data(), t.data());  // already contiguous: the same memory

  // writes through a view reach the base
  v.data_as<float>()[0] = -1;
  EXPECT_EQ(t.data_as<float>()[6], -1);

  Tensor tt = t.t();
  EXPECT_EQ(tt.shape(), (std::vector<i64>{5, 4}));
  EXPECT_EQ(tt.strides(), (std::vector<i64>{1, 5}));
  Tensor dst = Tensor::empty({5, 4});
  tt.copy_to(dst);
  EXPECT_EQ(dst.data_as<float>()[1], t.data_as<float>()[5]);  // dst[0,1] = t[1,0]

  // copy_to into a strided destination
  Tensor big = filled({5, 4}, 0);
  Tensor src = filled({4, 5}, 3);
  Tensor big_t = big.t();
  src.copy_to(big_t);
  EXPECT_EQ(host_values(big), std::vector<float>(20, 3));

  expect_error<lc::ValueError>([&] { Tensor d = Tensor::empty({3, 3}); t.copy_to(d); }, "Tensor.copy_to",
                               "mismatch");
  expect_error<lc::ValueError>([&] { t.view({4, 5}, {5, 1}, 1); }, "TensorView", "outside");
  expect_error<lc::ValueError>([&] { t.view({2}, {1, 1}); }, "TensorView");
  expect_error<lc::ValueError>([&] { filled({3}, 1).t(); }, "Tensor.t", "2-D");
  EXPECT_NO_THROW(t.view({20}, {1}, 0));
  EXPECT_NO_THROW(t.view({4}, {-5}, 15));  // column 0, bottom up
  expect_error<lc::ValueError>([&] { t.view({4}, {-5}, 14); }, "TensorView");

  // same-device to() shares memory
  EXPECT_EQ(t.to(DeviceKind::cpu).data(), t.data());
}

TEST(TensorApi, ViewOfBorrowedMemoryIsBoundsChecked) {
  float buf[4] = {1, 2, 3, 4};
  const i64 shp[1] = {4}, str[1] = {1};
  Tensor w = Tensor::wrap(buf, 1, shp, str, DType::f32, DeviceKind::cpu);
  EXPECT_NO_THROW(w.view({4}, {1}, 0));
  EXPECT_NO_THROW(w.view({2}, {2}, 1));
  expect_error<lc::ValueError>([&] { w.view({5}, {1}, 0); }, "TensorView");  // one past the end
  expect_error<lc::ValueError>([&] { w.view({1}, {1}, 4); }, "TensorView");
  expect_error<lc::ValueError>([&] { w.view({2}, {-1}, 0); }, "TensorView");
}

TEST(TensorApi, EmptyTensorsAreContiguous) {
  // numpy gives empty arrays arbitrary strides (often 0); they hold no elements either way.
  const i64 shp[2] = {3, 0}, str[2] = {0, 0};
  float dummy = 0;
  Tensor e = Tensor::wrap(&dummy, 2, shp, str, DType::f32, DeviceKind::cpu);
  EXPECT_TRUE(e.is_contiguous());
  EXPECT_EQ(e.numel(), 0);
  Tensor out = Tensor::wrap(&dummy, 2, shp, str, DType::f32, DeviceKind::cpu);
  EXPECT_NO_THROW(lc::elementwise_into("relu", e, nullptr, 1.0f, out, cpu_policy()));
  // A borrowed empty tensor covers no memory: only empty views of it are allowed.
  EXPECT_NO_THROW(e.view({0}, {1}, 0));
  expect_error<lc::ValueError>([&] { e.view({1}, {1}, 0); }, "TensorView");
}

// ---- policy and placement ----------------------------------------------------------------

TEST(Policy, Validate) {
  lc::ExecutionPolicy p;
  EXPECT_NO_THROW(p.validate("op"));
  p.device = lc::DeviceRequest::cpu;
  EXPECT_NO_THROW(p.validate("op"));

  auto bad = [](auto mutate, const char* needle) {
    lc::ExecutionPolicy q;
    mutate(q);
    expect_error<lc::ValueError>([&] { q.validate("my_op"); }, "my_op", needle);
  };
  bad([](lc::ExecutionPolicy& q) { q.device = lc::DeviceRequest::cpu; q.upload = lc::UploadMode::never; },
      "upload");
  bad([](lc::ExecutionPolicy& q) { q.device = lc::DeviceRequest::cpu; q.download = false; }, "download");
  bad([](lc::ExecutionPolicy& q) { q.sync = lc::SyncMode::none; }, "sync");
  bad([](lc::ExecutionPolicy& q) { q.device = lc::DeviceRequest::cpu; q.precision = lc::Precision::bf16; },
      "bf16");

  // A valid GPU-side combination is fine to construct (availability is checked by placement).
  lc::ExecutionPolicy g;
  g.device = lc::DeviceRequest::cuda;
  g.download = false;
  g.sync = lc::SyncMode::none;
  g.upload = lc::UploadMode::never;
  EXPECT_NO_THROW(g.validate("op"));

  expect_error<lc::ValueError>([] { lc::parse_upload("sometimes", "p"); }, "p", "always");
  expect_error<lc::ValueError>([] { lc::parse_activation("tanh", "p"); }, "p", "relu");
  expect_error<lc::ValueError>([] { lc::parse_device("foo", "p"); }, "p", "cpu");
  EXPECT_EQ(lc::parse_device("cpu", "p"), lc::DeviceRequest::cpu);
  expect_error<lc::ValueError>([] { lc::parse_device("cuda:1", "p"); }, "p", "index");
}

TEST(Policy, DeviceIndexParsing) {
  int i = 7;
  EXPECT_EQ(lc::parse_device_index("cuda:1", "p", &i), lc::DeviceRequest::cuda);
  EXPECT_EQ(i, 1);
  EXPECT_EQ(lc::parse_device_index("cuda", "p", &i), lc::DeviceRequest::cuda);
  EXPECT_EQ(i, -1);
  EXPECT_EQ(lc::parse_device_index("cuda:63", "p", &i), lc::DeviceRequest::cuda);
  EXPECT_EQ(i, 63);
  EXPECT_EQ(lc::parse_device_index("cpu:0", "p", &i), lc::DeviceRequest::cpu);
  EXPECT_EQ(i, 0);
  for (const char* bad : {"cuda:", "cuda:x", "cuda:64", "cuda:100", "auto:0", "cpu:1", "cuda:-1", "foo:0"})
    expect_error<lc::ValueError>([&] { lc::parse_device_index(bad, "p", &i); }, "p", "");
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  p.device_index = 1;
  EXPECT_EQ(p.device_string(), "cuda:1");
  EXPECT_NE(p.to_string().find("device=cuda:1"), std::string::npos);
  lc::ExecutionPolicy q = p;
  q.device_index = 0;
  EXPECT_FALSE(p == q);
  lc::ExecutionPolicy a;
  a.device_index = 0;  // "auto" with an index: refused
  expect_error<lc::ValueError>([&] { a.validate("op"); }, "op", "auto");
}

TEST(Policy, InvalidPolicyFailsTheOpBeforeWriting) {
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  p.download = false;
  Tensor a = filled({2, 2}, 1);
  Tensor out = nan_tensor({2, 2});
  const auto before = bytes_of(out);
  expect_error<lc::ValueError>([&] { lc::matmul2d_into(a, a, out, p); }, "matmul2d", "download");
  EXPECT_EQ(bytes_of(out), before);
}

TEST(Policy, ScopeNestsAndRestores) {
  const lc::ExecutionPolicy outer = lc::current_policy();
  {
    lc::PolicyScope s(cpu_policy());
    EXPECT_EQ(lc::current_policy().device, lc::DeviceRequest::cpu);
    lc::ExecutionPolicy inner = cpu_policy();
    inner.fusion = false;
    {
      lc::PolicyScope s2(inner);
      EXPECT_FALSE(lc::current_policy().fusion);
    }
    EXPECT_TRUE(lc::current_policy().fusion);
  }
  EXPECT_EQ(lc::current_policy(), outer);
}

TEST(Placement, ExplicitCpu) {
  Tensor a = filled({8, 8}, 1);
  Tensor r = lc::matmul2d(a, a, cpu_policy());
  EXPECT_EQ(r.device(), DeviceKind::cpu);
  const lc::OpReport& rep = lc::last_op_report();
  EXPECT_STREQ(rep.op, "matmul2d");
  EXPECT_EQ(rep.device, DeviceKind::cpu);
  EXPECT_STREQ(rep.path, "direct");
}

TEST(Placement, UnavailableDeviceIsAValueErrorAndOutUntouched) {
  Tensor a = filled({4, 4}, 1);
  Tensor out = nan_tensor({4, 4});
  const auto before = bytes_of(out);
  lc::ExecutionPolicy metal;
  metal.device = lc::DeviceRequest::metal;
  expect_error<lc::Unavailable>([&] { lc::matmul2d_into(a, a, out, metal); }, "matmul2d", "metal");
  EXPECT_EQ(bytes_of(out), before);
  expect_error<lc::ValueError>([&] { lc::require_device(lc::DeviceRequest::metal, "x"); }, "x",
                               "Available devices");
  if (!lc::cuda_available()) {
    lc::ExecutionPolicy cuda;
    cuda.device = lc::DeviceRequest::cuda;
    expect_error<lc::Unavailable>([&] { lc::matmul2d_into(a, a, out, cuda); }, "matmul2d", "\"cpu\"");
    EXPECT_EQ(bytes_of(out), before);
    expect_error<lc::Unavailable>([&] { Tensor::empty({2}, DType::f32, DeviceKind::cuda); }, "cuda");
    EXPECT_EQ(lc::available_devices(), (std::vector<std::string>{"cpu"}));
  } else {
    GTEST_LOG_(INFO) << "CUDA present: the unavailable-CUDA checks do not apply";
  }
}

TEST(Placement, ExplicitCudaWhenAvailable) {
  if (!lc::cuda_available()) GTEST_SKIP() << "no usable CUDA device";
  lc::ref::Rng rng;
  Tensor a = random(rng, {33, 17}), b = random(rng, {17, 9});
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  Tensor r = lc::matmul2d(a, b, p);  // host inputs, download=true: the result lands on the host
  EXPECT_EQ(r.device(), DeviceKind::cpu);
  EXPECT_EQ(lc::last_op_report().device, DeviceKind::cuda);
  lc::MatmulArgs args;
  args.a = a.data_as<float>();
  args.b = b.data_as<float>();
  args.m = 33, args.k = 17, args.n = 9;
  EXPECT_MATCHES_REF(r, lc::ref::matmul(args), rng);
  // resident inputs: the result stays on the device
  Tensor ra = lc::matmul2d(a.to(DeviceKind::cuda), b.to(DeviceKind::cuda), p);
  EXPECT_EQ(ra.device(), DeviceKind::cuda);
  EXPECT_MATCHES_REF(ra, lc::ref::matmul(args), rng);
}

}  // namespace

// Host allocations the machine cannot back are a MemoryError before anything is touched (CPU
// fuzz under ASan, 2026-12-01: a 23 GB conv result on a 24 GB machine was allocated by
// overcommit and the process was killed writing it).
TEST(OpsApi, HostAllocationsBeyondWhatIsAvailableAreOutOfMemory) {
  const std::size_t avail = lc::host_bytes_available();
  ASSERT_GT(avail, std::size_t{0});
  EXPECT_NO_THROW(lc::check_host_alloc("test", 1024));  // small: never checked
  if (avail < (std::size_t{1} << 60)) {
    try {
      lc::check_host_alloc("test", avail + (std::size_t{1} << 30));
      FAIL() << "expected lc::OutOfMemory";
    } catch (const lc::OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("[test]"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("available"), std::string::npos) << e.what();
    }
    // One eighth of what is available stays in reserve.
    EXPECT_THROW(lc::check_host_alloc("test", avail - avail / 16), lc::OutOfMemory);
    // The CPU backend applies it: the allocation throws instead of overcommitting.
    EXPECT_THROW(lc::get_backend(lc::DeviceKind::cpu).alloc(avail + (std::size_t{1} << 30)),
                 lc::OutOfMemory);
  }
  EXPECT_NO_THROW(lc::check_host_alloc("test", lc::kHostCheckBytes));
}
