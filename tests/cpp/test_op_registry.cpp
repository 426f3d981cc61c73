// The op registry (src/ops/registry.h): every op registered once and found by name; its shape and
// dtype inference; its work estimates equal the formulas the ops used before the registry
// (written out here by hand, not through work.h); supports() reports the backends' dtype sets
// and size limits (CUDA attention head dim <= 512, its backward <= 256, the CUDA conv's 32-bit sizes, float64
// CPU-only); estimate_work() by name goes through the registry.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"
#include "ops/registry.h"
#include "ops/work.h"

namespace {

using lc::DeviceKind;
using lc::DType;
using lc::OpArgs;
using lc::OpDef;
using Shapes = std::vector<std::vector<std::int64_t>>;

const char* const kExpectedOps[] = {
    "matmul2d", "matmul", "linear", "attention2d", "conv2d_nchw", "conv_attention_nchw",
    "layernorm", "softmax", "vector_add", "vector_sub", "vector_mul", "matrix_sub",
    "vector_scale", "relu", "gelu", "add", "sub", "mul", "div", "embedding", "attention",
    "attention_backward", "lstm", "elementwise_program"};

// OpArgs borrows the shapes: `s` must outlive the result (name the Shapes, no temporaries).
OpArgs args_of(const Shapes& s, DType dt = DType::f32) { return OpArgs::of_shapes(s, dt); }

TEST(OpRegistry, EveryOpRegisteredOnceAndFoundByName) {
  std::set<std::string> names;
  for (const OpDef* d : lc::all_ops()) {
    ASSERT_NE(d, nullptr);
    EXPECT_TRUE(names.insert(d->name).second) << "registered twice: " << d->name;
    EXPECT_EQ(lc::find_op(d->name), d);
    EXPECT_NE(d->infer, nullptr) << d->name;
    EXPECT_NE(d->work, nullptr) << d->name;
    EXPECT_NE(d->summary, nullptr) << d->name;
    EXPECT_GE(d->num_inputs(), 1) << d->name;
    // One result "out", except attention_backward's three gradients and lstm's (y, h_n, c_n).
    if (std::string(d->name) == "attention_backward")
      EXPECT_STREQ(d->outputs[0], "dq");
    else if (std::string(d->name) == "lstm")
      EXPECT_STREQ(d->outputs[0], "y");
    else
      EXPECT_STREQ(d->outputs[0], "out") << d->name;
    EXPECT_LT(static_cast<int>(d->family), static_cast<int>(lc::OpFamily::count)) << d->name;
    // Every op runs float32 on the CPU; nothing is CUDA-only.
    EXPECT_TRUE(d->cpu_dtypes.has(DType::f32)) << d->name;
    EXPECT_EQ(d->cuda_dtypes.bits & ~d->cpu_dtypes.bits, 0u) << d->name;
  }
  for (const char* n : kExpectedOps) EXPECT_TRUE(names.count(n)) << n << " is not registered";
  EXPECT_EQ(names.size(), std::size(kExpectedOps));
  EXPECT_EQ(lc::find_op("no_such_op"), nullptr);
  try {
    lc::get_op("no_such_op");
    FAIL() << "no exception";
  } catch (const lc::ValueError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no_such_op"), std::string::npos) << msg;
    EXPECT_NE(msg.find("matmul2d"), std::string::npos) << msg;  // lists the registered ops
  }
}

TEST(OpRegistry, FrontEndsHoldTheSameDefinitions) {
  // The globals the op front-ends use are the registry's entries (no second copy).
  EXPECT_EQ(lc::find_op("attention2d"), &lc::opdefs::attention2d);
  EXPECT_EQ(lc::find_op("conv2d_nchw"), &lc::opdefs::conv2d_nchw);
  EXPECT_EQ(lc::find_op("embedding"), &lc::opdefs::embedding);
  EXPECT_EQ(lc::find_op("div"), &lc::opdefs::div);
}

TEST(OpRegistry, AttributesAndInputs) {
  const OpDef& conv = lc::opdefs::conv2d_nchw;
  ASSERT_EQ(conv.num_inputs(), 3);
  EXPECT_STREQ(conv.inputs[2].name, "bias");
  EXPECT_TRUE(conv.inputs[2].optional);
  ASSERT_EQ(conv.num_attrs(), 5);
  EXPECT_STREQ(conv.attrs[0].name, "stride_h");
  EXPECT_STREQ(conv.attrs[0].default_value, "1");
  EXPECT_STREQ(conv.attrs[4].name, "activation");
  EXPECT_EQ(conv.attrs[4].type, lc::AttrType::string);
  const OpDef& emb = lc::opdefs::embedding;
  EXPECT_TRUE(emb.inputs[0].index);
  EXPECT_FALSE(emb.inputs[1].index);
  EXPECT_STREQ(lc::opdefs::layernorm.attrs[0].name, "eps");
  EXPECT_EQ(lc::opdefs::vector_scale.attrs[0].default_value, nullptr);  // alpha is required
}

// ---- work estimates: the formulas the ops used before the registry -------------------------

TEST(OpRegistry, WorkEqualsTheOldFormulas) {
  {  // matmul2d: 2 m k n flops, m n results of 4 bytes, every input uploaded
    const auto w = lc::estimate_work("matmul2d", {{7, 13}, {13, 5}});
    EXPECT_EQ(w.family, lc::OpFamily::matmul);
    EXPECT_DOUBLE_EQ(w.flops, 2.0 * 7 * 13 * 5);
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 7 * 5);
    EXPECT_DOUBLE_EQ(w.host_bytes_in, 4.0 * (7 * 13 + 13 * 5));
  }
  {  // matmul: broadcast batch [2, 1] x [5] -> 10 products of 3x4 @ 4x6
    const auto w = lc::estimate_work("matmul", {{2, 1, 3, 4}, {5, 4, 6}});
    EXPECT_DOUBLE_EQ(w.flops, 2.0 * 10 * 3 * 4 * 6);
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 10 * 3 * 6);
    const auto v = lc::estimate_work("matmul", {{11}, {11, 3}});  // 1-D a: m = 1
    EXPECT_DOUBLE_EQ(v.flops, 2.0 * 1 * 11 * 3);
  }
  {  // linear: rows = product of x's leading dims
    const auto w = lc::estimate_work("linear", {{2, 3, 8}, {5, 8}});
    EXPECT_DOUBLE_EQ(w.flops, 2.0 * 6 * 8 * 5);
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 6 * 5);
  }
  {  // attention2d: 2 sq sk (d + dv) flops, sq dv results
    const auto w = lc::estimate_work("attention2d", {{9, 16}, {11, 16}, {11, 32}});
    EXPECT_EQ(w.family, lc::OpFamily::attention);
    EXPECT_DOUBLE_EQ(w.flops, 2.0 * 9 * 11 * (16 + 32));
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 9 * 32);
    // The storage dtype sizes the result bytes (the front-ends pass the tensors' dtype).
    const auto h = lc::opdefs::attention2d.work(args_of({{9, 16}, {11, 16}, {11, 32}}, DType::bf16));
    EXPECT_DOUBLE_EQ(h.host_bytes_out, 2.0 * 9 * 32);
  }
  {  // conv2d: stride 2, pad 1 -> oh = (17 + 2 - 3) / 2 + 1 = 9, ow = (19 + 2 - 5) / 2 + 1 = 9
    const auto w = lc::estimate_work("conv2d_nchw", {{1, 3, 17, 19}, {8, 3, 3, 5}}, 2, 2, 1, 1);
    EXPECT_EQ(w.family, lc::OpFamily::conv2d);
    const double macs = 1.0 * 8 * 9 * 9 * 3 * 3 * 5;
    EXPECT_DOUBLE_EQ(w.conv_macs, macs);
    EXPECT_DOUBLE_EQ(w.flops, 2.0 * macs);
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 8 * 9 * 9);
  }
  {  // conv -> attention: the real [seq, d] stage when given, else the square assumption
    const Shapes s{{1, 4, 8, 8}, {4, 4, 3, 3}};
    OpArgs a = args_of(s);
    a.pad_h = a.pad_w = 1;
    const double conv_out = 4.0 * 8 * 8;
    const auto sq = lc::opdefs::conv_attention_nchw.work(a);
    EXPECT_EQ(sq.family2, lc::OpFamily::attention);
    EXPECT_DOUBLE_EQ(sq.flops2, 4.0 * conv_out * std::sqrt(conv_out));
    a.seq_len = 32;
    a.head_dim = 8;
    const auto real = lc::opdefs::conv_attention_nchw.work(a);
    EXPECT_DOUBLE_EQ(real.flops, 2.0 * 4 * 8 * 8 * 4 * 3 * 3);
    EXPECT_DOUBLE_EQ(real.flops2, 2.0 * 32 * 32 * (8 + 8));
    EXPECT_DOUBLE_EQ(real.host_bytes_out, 4.0 * 32 * 8);
  }
  {  // norms: 8 flops per element
    const auto w = lc::estimate_work("layernorm", {{4, 5, 6}});
    EXPECT_EQ(w.family, lc::OpFamily::norm);
    EXPECT_DOUBLE_EQ(w.flops, 8.0 * 120);
    EXPECT_DOUBLE_EQ(lc::estimate_work("softmax", {{3, 7}}).host_bytes_out, 4.0 * 21);
  }
  {  // elementwise: 1 flop per result element; broadcast result counted
    EXPECT_DOUBLE_EQ(lc::estimate_work("vector_add", {{1000}, {1000}}).flops, 1000.0);
    EXPECT_DOUBLE_EQ(lc::estimate_work("relu", {{3, 5}}).flops, 15.0);
    const auto w = lc::estimate_work("add", {{3, 1, 5}, {4, 1}});
    EXPECT_EQ(w.family, lc::OpFamily::elementwise);
    EXPECT_DOUBLE_EQ(w.flops, 3.0 * 4 * 5);
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 60);
  }
  {  // embedding: n ids x dim elements moved (elementwise family)
    const auto w = lc::estimate_work("embedding", {{2, 7}, {100, 16}});
    EXPECT_EQ(w.family, lc::OpFamily::elementwise);
    EXPECT_DOUBLE_EQ(w.flops, 14.0 * 16);
    EXPECT_DOUBLE_EQ(w.host_bytes_out, 4.0 * 14 * 16);
  }
}

TEST(OpRegistry, WorkMatchesTheWorkHelpers) {
  // The registry applies work.h's formulas: the same numbers as calling them directly.
  const auto a = lc::opdefs::matmul2d.work(args_of({{33, 17}, {17, 9}}, DType::f16));
  const auto b = lc::matmul_work(33, 17, 9, 1, DType::f16);
  EXPECT_DOUBLE_EQ(a.flops, b.flops);
  EXPECT_DOUBLE_EQ(a.host_bytes_out, b.host_bytes_out);
  const auto c = lc::opdefs::layernorm.work(args_of({{5, 31}}, DType::bf16));
  EXPECT_DOUBLE_EQ(c.host_bytes_out, lc::norm_work(155, 2.0).host_bytes_out);
}

TEST(OpRegistry, EstimateWorkRejectsUnknownOpsAndWrongRanks) {
  EXPECT_THROW(lc::estimate_work("no_such_op", {{1}}), lc::ValueError);
  EXPECT_THROW(lc::estimate_work("matmul2d", {{4}, {4, 4}}), lc::ValueError);
  EXPECT_THROW(lc::estimate_work("matmul2d", {{4, 4}}), lc::ValueError);  // b missing
  EXPECT_THROW(lc::estimate_work("conv2d_nchw", {{1, 3, 8}, {2, 3, 3, 3}}), lc::ValueError);
  EXPECT_THROW(lc::estimate_work("linear", {{}, {4, 4}}), lc::ValueError);
  // Optional trailing inputs may be left out (conv's bias).
  EXPECT_NO_THROW(lc::estimate_work("conv2d_nchw", {{1, 3, 8, 8}, {2, 3, 3, 3}}));
}

TEST(OpRegistry, FlopsHintIsZeroForShapesOfTheWrongRank) {
  // The bindings' GIL decision runs before validation: wrong ranks give 0, never a throw.
  const Shapes ok{{64, 32}, {32, 16}}, bad{{64}, {32, 16}}, missing{{64, 32}};
  EXPECT_DOUBLE_EQ(lc::opdefs::matmul2d.flops_hint(args_of(ok)), 2.0 * 64 * 32 * 16);
  EXPECT_EQ(lc::opdefs::matmul2d.flops_hint(args_of(bad)), 0.0);
  EXPECT_EQ(lc::opdefs::matmul2d.flops_hint(args_of(missing)), 0.0);
  EXPECT_FALSE(lc::opdefs::matmul2d.ranks_ok(args_of(bad)));
  const Shapes conv{{1, 4, 8, 8}, {4, 4, 3, 3}};
  OpArgs c = args_of(conv);
  c.seq_len = 16;
  c.head_dim = 16;
  const auto w = lc::opdefs::conv_attention_nchw.work(c);
  EXPECT_DOUBLE_EQ(lc::opdefs::conv_attention_nchw.flops_hint(c), w.flops + w.flops2);
}

// ---- shape and dtype inference --------------------------------------------------------------

std::vector<std::int64_t> infer(const char* op, const Shapes& s, DType dt = DType::f32) {
  return lc::get_op(op).infer_result(args_of(s, dt)).shape;
}

TEST(OpRegistry, InferShapes) {
  using V = std::vector<std::int64_t>;
  EXPECT_EQ(infer("matmul2d", {{7, 13}, {13, 5}}), (V{7, 5}));
  EXPECT_EQ(infer("matmul", {{2, 1, 3, 4}, {5, 4, 6}}), (V{2, 5, 3, 6}));
  EXPECT_EQ(infer("matmul", {{4}, {2, 4, 3}}), (V{2, 3}));
  EXPECT_EQ(infer("matmul", {{2, 3, 4}, {4}}), (V{2, 3}));
  EXPECT_EQ(infer("linear", {{2, 3, 8}, {5, 8}, {5}}), (V{2, 3, 5}));
  EXPECT_EQ(infer("attention2d", {{9, 16}, {11, 16}, {11, 32}}), (V{9, 32}));
  EXPECT_EQ(infer("layernorm", {{4, 5, 6}, {6}, {6}}), (V{4, 5, 6}));
  EXPECT_EQ(infer("softmax", {{0, 3}}), (V{0, 3}));
  EXPECT_EQ(infer("add", {{3, 1, 5}, {4, 1}}), (V{3, 4, 5}));
  EXPECT_EQ(infer("relu", {{2, 0, 3}}), (V{2, 0, 3}));
  EXPECT_EQ(infer("embedding", {{2, 7}, {100, 16}}), (V{2, 7, 16}));
  const Shapes cs{{2, 3, 17, 19}, {8, 3, 3, 5}};
  OpArgs c = args_of(cs);
  c.stride_h = c.stride_w = 2;
  c.pad_h = c.pad_w = 1;
  EXPECT_EQ(lc::opdefs::conv2d_nchw.infer_result(c).shape, (V{2, 8, 9, 9}));
  // dtype: the storage dtype of the inputs (embedding: the weight's, given by the caller).
  const Shapes mm{{2, 2}, {2, 2}};
  EXPECT_EQ(lc::opdefs::matmul2d.infer_result(args_of(mm, DType::bf16)).dtype, DType::bf16);
}

TEST(OpRegistry, InferRejectsShapesTheOpRejects) {
  EXPECT_THROW(infer("matmul2d", {{7, 13}, {12, 5}}), lc::ValueError);
  EXPECT_THROW(infer("matmul", {{2, 3, 4}, {3, 4, 5}}), lc::ValueError);  // batch 2 vs 3
  EXPECT_THROW(infer("attention2d", {{9, 16}, {11, 8}, {11, 32}}), lc::ValueError);
  EXPECT_THROW(infer("add", {{3, 2}, {3}}), lc::ValueError);
  EXPECT_THROW(infer("vector_add", {{3}, {4}}), lc::ValueError);
  EXPECT_THROW(infer("matrix_sub", {{3}, {3}}), lc::ValueError);
  EXPECT_THROW(infer("conv2d_nchw", {{1, 3, 2, 2}, {4, 3, 5, 5}}), lc::ValueError);
  EXPECT_THROW(infer("layernorm", {{4, 6}, {5}}), lc::ValueError);
  EXPECT_THROW(infer("linear", {{2, 8}, {5, 7}}), lc::ValueError);
  try {
    infer("matmul2d", {{7, 13}, {12, 5}});
  } catch (const lc::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("[matmul2d]"), std::string::npos) << e.what();
  }
}

// ---- supports: dtypes and sizes per backend ---------------------------------------------------

TEST(OpRegistry, SupportsDTypesPerBackend) {
  const Shapes s44{{4, 4}, {4, 4}};
  const OpArgs f64 = args_of(s44, DType::f64);
  const OpArgs bf16 = args_of(s44, DType::bf16);
  for (const char* op : {"matmul2d", "matmul", "add", "vector_add"}) {
    const OpDef& d = lc::get_op(op);
    EXPECT_TRUE(d.supports(DeviceKind::cpu, f64)) << op;    // float64: CPU only
    EXPECT_FALSE(d.supports(DeviceKind::cuda, f64)) << op;
    EXPECT_TRUE(d.supports(DeviceKind::cuda, bf16)) << op;
    EXPECT_FALSE(d.supports(DeviceKind::metal, bf16)) << op;  // no Metal backend here
  }
  const Shapes s4{{4, 4}};
  const OpArgs x64 = args_of(s4, DType::f64);
  EXPECT_TRUE(lc::opdefs::layernorm.supports(DeviceKind::cpu, x64));
  EXPECT_FALSE(lc::opdefs::layernorm.supports(DeviceKind::cuda, x64));
  // Conv computes float32 only; attention and embedding no float64.
  const Shapes sc{{1, 3, 8, 8}, {2, 3, 3, 3}};
  const OpArgs conv16 = args_of(sc, DType::f16);
  EXPECT_FALSE(lc::opdefs::conv2d_nchw.supports(DeviceKind::cpu, conv16));
  EXPECT_FALSE(lc::opdefs::conv2d_nchw.supports(DeviceKind::cuda, conv16));
  EXPECT_FALSE(lc::opdefs::attention2d.supports(DeviceKind::cpu,
                                                args_of({{2, 2}, {2, 2}, {2, 2}}, DType::f64)));
  EXPECT_FALSE(lc::opdefs::embedding.supports(DeviceKind::cpu, args_of({{3}, {4, 2}}, DType::f64)));
  EXPECT_TRUE(lc::opdefs::embedding.supports(DeviceKind::cuda, args_of({{3}, {4, 2}}, DType::f16)));
  EXPECT_TRUE(lc::kIndexDTypes.has(DType::i32) && lc::kIndexDTypes.has(DType::i64));
}

TEST(OpRegistry, SupportsCudaAttentionHeadDimLimit) {
  const OpDef& d = lc::opdefs::attention2d;
  auto qkv = [](std::int64_t dq, std::int64_t dv) {
    return Shapes{{8, dq}, {8, dq}, {8, dv}};
  };
  const Shapes at = qkv(lc::kCudaMaxHeadDim, lc::kCudaMaxHeadDim);
  const Shapes over_d = qkv(lc::kCudaMaxHeadDim + 1, 64);
  const Shapes over_dv = qkv(64, lc::kCudaMaxHeadDim + 1);
  EXPECT_EQ(lc::kCudaMaxHeadDim, 512);
  EXPECT_TRUE(d.supports(DeviceKind::cuda, args_of(at)));
  EXPECT_FALSE(d.supports(DeviceKind::cuda, args_of(over_d)));
  EXPECT_FALSE(d.supports(DeviceKind::cuda, args_of(over_dv)));
  EXPECT_TRUE(d.supports(DeviceKind::cpu, args_of(over_d)));  // the CPU has no limit
  // conv -> attention: the head_dim attribute decides.
  const Shapes cs{{1, 4, 8, 8}, {4, 4, 3, 3}};
  OpArgs c = args_of(cs);
  c.seq_len = 2;
  c.head_dim = 513;
  EXPECT_FALSE(lc::opdefs::conv_attention_nchw.supports(DeviceKind::cuda, c));
  c.head_dim = 512;
  EXPECT_TRUE(lc::opdefs::conv_attention_nchw.supports(DeviceKind::cuda, c));
  // The batched forward takes 512-wide heads, its backward stops at 256.
  const Shapes mha_at{{2, 3, 5, 512}, {2, 3, 7, 512}, {2, 3, 7, 512}};
  const Shapes mha_over{{2, 3, 5, 513}, {2, 3, 7, 513}, {2, 3, 7, 64}};
  EXPECT_TRUE(lc::opdefs::attention.supports(DeviceKind::cuda, args_of(mha_at)));
  EXPECT_FALSE(lc::opdefs::attention.supports(DeviceKind::cuda, args_of(mha_over)));
  EXPECT_EQ(lc::kCudaMaxHeadDimBackward, 256);
  auto bwd = [](std::int64_t dh) {  // dout, q, k, v, out, lse
    return Shapes{{2, 3, 5, dh}, {2, 3, 5, dh}, {2, 3, 7, dh}, {2, 3, 7, dh}, {2, 3, 5, dh}, {2, 3, 5}};
  };
  EXPECT_TRUE(lc::opdefs::attention_backward.supports(DeviceKind::cuda, args_of(bwd(256))));
  EXPECT_FALSE(lc::opdefs::attention_backward.supports(DeviceKind::cuda, args_of(bwd(257))));
}

TEST(OpRegistry, SupportsCudaConvInt32Limits) {
  const OpDef& d = lc::opdefs::conv2d_nchw;
  const Shapes s{{1, 3, 8, 8}, {2, 3, 3, 3}};
  OpArgs ok = args_of(s);
  EXPECT_TRUE(d.supports(DeviceKind::cuda, ok));
  // A padding near 2^30: 2 * pad + h passes INT_MAX.
  OpArgs pad = ok;
  pad.pad_w = (1 << 30);
  EXPECT_FALSE(d.supports(DeviceKind::cuda, pad));
  EXPECT_TRUE(d.supports(DeviceKind::cpu, pad));
  // An input of more than 2^31 - 1 elements.
  const Shapes big{{1, 1, 65536, 32769}, {1, 1, 1, 1}};
  EXPECT_FALSE(d.supports(DeviceKind::cuda, args_of(big)));
  // The same predicate work.h's cuda_supports_conv states.
  EXPECT_EQ(d.supports(DeviceKind::cuda, ok), lc::cuda_supports_conv(1, 3, 8, 8, 2, 3, 3, 6, 6, 0, 0));
}

TEST(OpRegistry, OpArgsFromTensorsBorrowShapes) {
  const lc::Tensor q = lc::Tensor::empty({5, 300});
  const lc::Tensor v = lc::Tensor::empty({7, 12}, DType::bf16);
  const OpArgs a{&q, nullptr, &v};
  EXPECT_EQ(a.n, 3);
  EXPECT_TRUE(a.has(0));
  EXPECT_FALSE(a.has(1));  // an absent optional input
  EXPECT_EQ(a[0].ndim, 2);
  EXPECT_EQ(a[0][1], 300);
  EXPECT_EQ(a[2].back(), 12);
  EXPECT_EQ(a.dtype, DType::f32);  // the first tensor's
  const OpArgs b({&q, &v}, DType::bf16);
  EXPECT_EQ(b.dtype, DType::bf16);
  // The front-end's question for attention2d with a 520-wide head: not on CUDA.
  const lc::Tensor k = lc::Tensor::empty({7, 520});
  const lc::Tensor vv = lc::Tensor::empty({7, 520});
  EXPECT_FALSE(lc::opdefs::attention2d.supports(DeviceKind::cuda, OpArgs{&q, &k, &vv}));
}

}  // namespace
