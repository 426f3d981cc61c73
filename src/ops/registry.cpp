// The op registry (registry.h): one OpDef per op. The formulas themselves are work.h's
// (matmul_work, attention_work, ...) and its CUDA size predicates; this file says, per op, which
// of them apply to which arguments.
#include "ops/registry.h"

#include <algorithm>
#include <cmath>

#include "lightning_core/errors.h"
#include "ops/checks.h"
#include "ops/work.h"

namespace lc {

OpArgs OpArgs::of_shapes(const std::vector<std::vector<std::int64_t>>& v, DType dtype) {
  OpArgs a;
  a.dtype = dtype;
  for (const auto& s : v) {
    if (a.n == kMaxInputs) break;
    a.shapes[static_cast<std::size_t>(a.n++)] = {s.data(), static_cast<int>(s.size())};
  }
  return a;
}

const char* to_string(AttrType t) {
  switch (t) {
    case AttrType::boolean: return "bool";
    case AttrType::integer: return "int";
    case AttrType::real: return "float";
    case AttrType::string: return "str";
    case AttrType::ints: return "tuple of int";
  }
  return "?";
}

int OpDef::num_inputs() const {
  int k = 0;
  while (k < kMaxIo && inputs[static_cast<std::size_t>(k)].name) ++k;
  return k;
}

int OpDef::num_attrs() const {
  int k = 0;
  while (k < kMaxAttrs && attrs[static_cast<std::size_t>(k)].name) ++k;
  return k;
}

void OpDef::check_ranks(const OpArgs& a) const {
  const int ni = num_inputs();
  for (int i = 0; i < ni; ++i) {
    const OpInput& in = inputs[static_cast<std::size_t>(i)];
    if (!a.has(i)) {
      if (in.optional) continue;
      throw_value(name, std::string("needs the shape of '") + in.name + "' (argument " +
                            std::to_string(i) + "); " + name + " takes " + std::to_string(ni) +
                            " input(s)");
    }
    const int nd = a[i].ndim;
    if ((in.rank >= 0 && nd != in.rank) || nd < in.min_rank)
      throw_value(name, std::string("argument ") + std::to_string(i) + " ('" + in.name +
                            "') must be a " +
                            (in.rank >= 0 ? std::to_string(in.rank) + "-D shape"
                                          : "shape of at least " + std::to_string(in.min_rank) +
                                                " dimension(s)") +
                            ", got " + std::to_string(nd) + "-D");
  }
}

OpResult OpDef::infer_result(const OpArgs& a) const {
  check_ranks(a);
  return infer(*this, a);
}

WorkEstimate OpDef::estimate(const OpArgs& a) const {
  check_ranks(a);
  WorkEstimate w = work(a);
  double in_elems = 0;
  for (int i = 0; i < a.n; ++i)
    if (a.has(i)) in_elems += a[i].numel();
  w.host_bytes_in = static_cast<double>(dtype_size(a.dtype)) * in_elems;
  return w;
}

namespace {

using Shape = std::vector<std::int64_t>;

// ---- argument access for the by-shape functions -----------------------------------------------

Shape to_vec(const ShapeRef& s) { return Shape(s.dims, s.dims + s.ndim); }

// numpy's broadcast of two shapes; false when they do not broadcast.
bool broadcast(const ShapeRef& a, const ShapeRef& b, Shape& out) {
  const int nd = std::max(a.ndim, b.ndim);
  out.assign(static_cast<std::size_t>(nd), 1);
  for (int i = 0; i < nd; ++i) {
    const int ia = a.ndim - nd + i, ib = b.ndim - nd + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    out[static_cast<std::size_t>(i)] = da == 1 ? db : da;
  }
  return true;
}

// The estimate's count of broadcast elements: per right-aligned dimension the larger size
// (a mismatch counts as the larger one; this is an estimate, the op rejects it).
double broadcast_count(const ShapeRef& a, const ShapeRef& b) {
  const int nd = std::max(a.ndim, b.ndim);
  double n = 1;
  for (int i = 0; i < nd; ++i) {
    const int ia = a.ndim - nd + i, ib = b.ndim - nd + i;
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    n *= static_cast<double>(da == 1 ? db : da);
  }
  return n;
}

// ---- matrix products ---------------------------------------------------------------------------

OpResult infer_matmul2d(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& y = a[1];
  if (x[1] != y[0])
    throw_value(d.name, "inner dimensions differ: a is " + shape_str(to_vec(x)) + " and b is " +
                            shape_str(to_vec(y)));
  return {{x[0], y[1]}, a.dtype};
}
WorkEstimate work_matmul2d(const OpArgs& a) {
  return matmul_work(a[0][0], a[0][1], a[1][1], 1, a.dtype);
}

// torch.matmul: m, k, n after the 1-D promotions and the broadcast batch count.
struct MatmulDims {
  std::int64_t m, k, kb, n, batch;
};
MatmulDims matmul_dims(const ShapeRef& x, const ShapeRef& y) {
  MatmulDims r;
  r.m = x.ndim >= 2 ? x[x.ndim - 2] : 1;
  r.k = x.back();
  r.kb = y.ndim >= 2 ? y[y.ndim - 2] : y[0];
  r.n = y.ndim >= 2 ? y.back() : 1;
  const int ab = std::max(x.ndim - 2, 0), bb = std::max(y.ndim - 2, 0), nb = std::max(ab, bb);
  r.batch = 1;
  for (int i = 0; i < nb; ++i) {
    const int ia = i - (nb - ab), ib = i - (nb - bb);
    const std::int64_t da = ia >= 0 ? x[ia] : 1, db = ib >= 0 ? y[ib] : 1;
    r.batch *= std::max(da, db);
  }
  return r;
}
OpResult infer_matmul(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& y = a[1];
  const MatmulDims md = matmul_dims(x, y);
  if (md.k != md.kb)
    throw_value(d.name, "inner dimensions differ: a is " + shape_str(to_vec(x)) + " and b is " +
                            shape_str(to_vec(y)));
  const ShapeRef xb{x.dims, std::max(x.ndim - 2, 0)}, yb{y.dims, std::max(y.ndim - 2, 0)};
  Shape out;
  if (!broadcast(xb, yb, out))
    throw_value(d.name, "batch dimensions do not broadcast: a is " + shape_str(to_vec(x)) +
                            " and b is " + shape_str(to_vec(y)));
  if (x.ndim >= 2) out.push_back(md.m);
  if (y.ndim >= 2) out.push_back(md.n);
  return {out, a.dtype};
}
WorkEstimate work_matmul(const OpArgs& a) {
  const MatmulDims md = matmul_dims(a[0], a[1]);
  return matmul_work(md.m, md.k, md.n, md.batch, a.dtype);
}

std::int64_t leading_rows(const ShapeRef& x) {
  std::int64_t r = 1;
  for (int i = 0; i + 1 < x.ndim; ++i) r *= x[i];
  return r;
}
OpResult infer_linear(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& w = a[1];
  if (x.back() != w[1])
    throw_value(d.name, "x is " + shape_str(to_vec(x)) + " but weight is " + shape_str(to_vec(w)) +
                            "; weight must be [out_features, in_features]");
  if (a.has(2) && (a[2].ndim != 1 || a[2][0] != w[0]))
    throw_value(d.name, "bias must be 1-D of length out_features=" + std::to_string(w[0]));
  Shape out = to_vec(x);
  out.back() = w[0];
  if (a.has(3) && to_vec(a[3]) != out)
    throw_value(d.name, "residual must have the result's shape " + shape_str(out));
  return {out, a.dtype};
}
WorkEstimate work_linear(const OpArgs& a) {
  return matmul_work(leading_rows(a[0]), a[0].back(), a[1][0], 1, a.dtype);
}

// ---- attention -------------------------------------------------------------------------------

OpResult infer_attention2d(const OpDef& d, const OpArgs& a) {
  const ShapeRef& q = a[0];
  const ShapeRef& k = a[1];
  const ShapeRef& v = a[2];
  if (q[1] != k[1] || k[0] != v[0])
    throw_value(d.name, "q " + shape_str(to_vec(q)) + ", k " + shape_str(to_vec(k)) + ", v " +
                            shape_str(to_vec(v)) + ": q and k must share the head dimension and "
                            "k and v the sequence length");
  return {{q[0], v[1]}, a.dtype};
}
// k and v default to q and k (the by-name query may pass q alone for self-attention).
WorkEstimate work_attention2d(const OpArgs& a) {
  const ShapeRef& q = a[0];
  const ShapeRef& k = a.has(1) ? a[1] : q;
  const ShapeRef& v = a.has(2) ? a[2] : k;
  return attention_work(q[0], k[0], q[1], v[1], static_cast<double>(dtype_size(a.dtype)));
}
bool limits_attention2d(DeviceKind be, const OpArgs& a) {
  if (be != DeviceKind::cuda) return true;
  const ShapeRef& q = a[0];
  const ShapeRef& v = a.has(2) ? a[2] : a.has(1) ? a[1] : q;
  return cuda_supports_attention(q[1], v[1]);
}

// ---- convolution -----------------------------------------------------------------------------

struct ConvDims {
  std::int64_t n, c, h, w, oc, kh, kw, oh, ow;
};
ConvDims conv_dims(const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& k = a[1];
  return {x[0], x[1], x[2], x[3], k[0], k[2], k[3],
          conv_out_size(x[2], k[2], a.stride_h, a.pad_h), conv_out_size(x[3], k[3], a.stride_w, a.pad_w)};
}
OpResult infer_conv2d(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& k = a[1];
  if (x[1] != k[1])
    throw_value(d.name, "x is " + shape_str(to_vec(x)) + " (N, C, H, W) but weight is " +
                            shape_str(to_vec(k)) + " (OC, C, KH, KW); channel counts differ");
  if (a.stride_h < 1 || a.stride_w < 1 || a.pad_h < 0 || a.pad_w < 0)
    throw_value(d.name, "stride must be >= 1 and padding >= 0");
  if (x[2] + 2 * std::int64_t{a.pad_h} < k[2] || x[3] + 2 * std::int64_t{a.pad_w} < k[3])
    throw_value(d.name, "the kernel is larger than the padded input");
  if (a.has(2) && (a[2].ndim != 1 || a[2][0] != k[0]))
    throw_value(d.name, "bias must be 1-D of length out_channels=" + std::to_string(k[0]));
  const ConvDims c = conv_dims(a);
  return {{c.n, c.oc, c.oh, c.ow}, a.dtype};
}
WorkEstimate work_conv2d(const OpArgs& a) {
  const ConvDims c = conv_dims(a);
  return conv_work(c.n, c.c, c.oc, c.kh, c.kw, c.oh, c.ow);
}
bool limits_conv2d(DeviceKind be, const OpArgs& a) {
  if (be != DeviceKind::cuda) return true;
  const ConvDims c = conv_dims(a);
  return cuda_supports_conv(c.n, c.c, c.h, c.w, c.oc, c.kh, c.kw, c.oh, c.ow, a.pad_h, a.pad_w);
}

// conv2d (one image) -> [seq_len, head_dim] self-attention. Without seq_len/head_dim the
// attention stage assumes a square arrangement of the conv output (seq = d = sqrt(n)):
// attention_work's 4 seq^2 d = 4 n^1.5.
OpResult infer_conv_attention(const OpDef& d, const OpArgs& a) {
  infer_conv2d(d, a);
  if (a[0][0] != 1) throw_value(d.name, "x must hold one image (N=1)");
  if (a.seq_len <= 0 || a.head_dim <= 0)
    throw_value(d.name, "seq_len and head_dim must be >= 1");
  return {{a.seq_len, a.head_dim}, a.dtype};
}
WorkEstimate work_conv_attention(const OpArgs& a) {
  const WorkEstimate conv = work_conv2d(a);
  if (a.seq_len > 0 && a.head_dim > 0) return conv_attention_work(conv, a.seq_len, a.head_dim);
  WorkEstimate w = conv;
  const double conv_out = conv.host_bytes_out / 4.0;
  w.family2 = OpFamily::attention;
  w.flops2 = 4.0 * conv_out * std::sqrt(conv_out);
  return w;
}
// The chain runs on one device; the CUDA attention kernel's head-dimension limit decides (the
// conv step checks its own limits and falls back by itself).
bool limits_conv_attention(DeviceKind be, const OpArgs& a) {
  if (be != DeviceKind::cuda || a.head_dim <= 0) return true;
  return cuda_supports_attention(a.head_dim, a.head_dim);
}

// ---- normalisation ---------------------------------------------------------------------------

OpResult infer_rows(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  for (int i = 1; i < a.n; ++i)
    if (a.has(i) && (a[i].ndim != 1 || a[i][0] != x.back()))
      throw_value(d.name, std::string("'") + d.inputs[static_cast<std::size_t>(i)].name +
                              "' must be 1-D of length " + std::to_string(x.back()));
  return {to_vec(x), a.dtype};
}
WorkEstimate work_rows(const OpArgs& a) {
  return norm_work(a[0].numel(), static_cast<double>(dtype_size(a.dtype)));
}
// layernorm(x, gamma, beta, residual): gamma / beta as infer_rows; the residual (the fused
// residual add) must be exactly x's shape.
OpResult infer_layernorm(const OpDef& d, const OpArgs& a) {
  if (a.has(3) && to_vec(a[3]) != to_vec(a[0]))
    throw_value(d.name, "'residual' must have x's shape " + shape_str(to_vec(a[0])) +
                            " (it is added to x elementwise, without broadcasting), got " +
                            shape_str(to_vec(a[3])));
  OpArgs affine = a;
  affine.n = std::min(a.n, 3);
  return infer_rows(d, affine);
}
// softmax(x, mask): the mask broadcasts against x as softmax_mask_layout reads it.
OpResult infer_softmax(const OpDef& d, const OpArgs& a) {
  if (a.has(1) && !softmax_mask_layout(a[0], a[1]).ok)
    throw_value(d.name, softmax_mask_error(to_vec(a[0]), to_vec(a[1])));
  return {to_vec(a[0]), a.dtype};
}
WorkEstimate work_layernorm(const OpArgs& a) {
  WorkEstimate w = work_rows(a);
  if (a.has(3)) w.flops += a[0].numel();  // the residual add
  return w;
}

// ---- elementwise -----------------------------------------------------------------------------

OpResult infer_unary(const OpDef&, const OpArgs& a) { return {to_vec(a[0]), a.dtype}; }
OpResult infer_same_shape(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& y = a[1];
  if (to_vec(x) != to_vec(y))
    throw_value(d.name, "a is " + shape_str(to_vec(x)) + " and b is " + shape_str(to_vec(y)) +
                            "; the shapes must be equal");
  return {to_vec(x), a.dtype};
}
OpResult infer_matrix_sub(const OpDef& d, const OpArgs& a) {
  if (a[0].ndim != 2 || a[1].ndim != 2)
    throw_value(d.name, "a and b must be 2-D, got " + shape_str(to_vec(a[0])) + " and " +
                            shape_str(to_vec(a[1])));
  return infer_same_shape(d, a);
}
OpResult infer_broadcast(const OpDef& d, const OpArgs& a) {
  const ShapeRef& x = a[0];
  const ShapeRef& y = a[1];
  Shape out;
  if (!broadcast(x, y, out))
    throw_value(d.name, "shapes " + shape_str(to_vec(x)) + " and " + shape_str(to_vec(y)) +
                            " cannot be broadcast together");
  return {out, a.dtype};
}
WorkEstimate work_unary(const OpArgs& a) {
  return elementwise_work(a[0].numel(), dtype_size(a.dtype));
}
WorkEstimate work_broadcast(const OpArgs& a) {
  return elementwise_work(broadcast_count(a[0], a[1]), dtype_size(a.dtype));
}

// ---- embedding -------------------------------------------------------------------------------

OpResult infer_embedding(const OpDef&, const OpArgs& a) {
  const ShapeRef& ids = a[0];
  const ShapeRef& w = a[1];
  Shape out = to_vec(ids);
  out.push_back(w[1]);
  return {out, a.dtype};
}
WorkEstimate work_embedding(const OpArgs& a) {
  return embedding_work(a[0].numel(), static_cast<double>(a[1][1]), dtype_size(a.dtype));
}

constexpr const char* kOut = "out";

}  // namespace

SoftmaxMaskLayout softmax_mask_layout(const ShapeRef& x, const ShapeRef& m) {
  SoftmaxMaskLayout l;
  if (x.ndim < 1 || m.ndim < 1 || m.ndim > x.ndim || m.back() != x.back()) return l;
  // x's leading dimensions, right to left: the mask's size there (1 where it has none)
  const int lead = x.ndim - 1, off = x.ndim - m.ndim;
  auto msize = [&](int i) { return i >= off ? m[i - off] : std::int64_t{1}; };
  for (int i = 0; i < lead; ++i)
    if (msize(i) != 1 && msize(i) != x[i]) return l;
  // groups from the right: inner (x's sizes), 1s, outer (x's sizes), then only 1s; a dimension
  // where x's size is 1 fits any group
  int i = lead - 1;
  auto match = [&](int k) { return msize(k) == x[k]; };
  auto bcast = [&](int k) { return msize(k) == 1; };
  for (; i >= 0 && match(i); --i) l.rows *= x[i];
  for (; i >= 0 && bcast(i); --i) l.repeat *= x[i];
  for (; i >= 0 && match(i); --i) l.outer *= x[i];
  for (; i >= 0; --i)
    if (!bcast(i)) return l;
  l.ok = true;
  return l;
}

std::string softmax_mask_error(const std::vector<std::int64_t>& x,
                               const std::vector<std::int64_t>& m) {
  return "'mask' " + shape_str(m) + " does not broadcast to x " + shape_str(x) +
         " as softmax reads it: its last dimension must be x's, and its others x's sizes or 1 in "
         "at most two runs of x's sizes (for scores [B, H, S, S]: [S, S], [B, 1, 1, S], "
         "[B, 1, S, S], [1, H, 1, S]); broadcast it to x's shape first (np.broadcast_to) if it "
         "is another pattern";
}

// ---- the definitions ---------------------------------------------------------------------------
// inputs: {name, optional, index}; attrs: {name, type, Python default (nullptr: required), doc}.
// dtypes: CPU, then CUDA.
namespace opdefs {

const OpDef matmul2d{
    "matmul2d", OpFamily::matmul, "a[m,k] @ b[k,n] (float32, float16, bfloat16; float64 on the CPU).",
    {{in("a", 2), in("b", 2)}}, {kOut}, {},
    kFloatAll, kFloat16x, &infer_matmul2d, &work_matmul2d, nullptr};

const OpDef matmul{
    "matmul", OpFamily::matmul,
    "torch.matmul semantics: 1-D operands promoted (and the dimension removed), leading batch "
    "dimensions broadcast numpy-style.",
    {{in("a", -1, 1), in("b", -1, 1)}}, {kOut}, {},
    kFloatAll, kFloat16x, &infer_matmul, &work_matmul, nullptr};

const OpDef linear{
    "linear", OpFamily::matmul,
    "activation(x[..., in] @ weight[out,in]^T + bias + residual); activation \"none\", "
    "\"relu\" or \"gelu\"; the residual (the result's shape) is added before it.",
    {{in("x", -1, 1), in("weight", 2), opt("bias", 1), opt("residual")}}, {kOut},
    {{{"activation", AttrType::string, "'none'", "'none', 'relu' or 'gelu'"}}},
    kFloatAll, kFloat16x, &infer_linear, &work_linear, nullptr};

const OpDef attention2d{
    "attention2d", OpFamily::attention, 
    "softmax(q k^T * scale [causal]) v for one head; scale defaults to 1/sqrt(head_dim).",
    {{in("q", 2), in("k", 2), in("v", 2)}}, {kOut},
    {{{"causal", AttrType::boolean, "False", "mask keys after the query's position"},
      {"scale", AttrType::real, "None", "None: 1/sqrt(head_dim)"}}},
    kFloat16x, kFloat16x, &infer_attention2d, &work_attention2d, &limits_attention2d};

const OpDef conv2d_nchw{
    "conv2d_nchw", OpFamily::conv2d,
    "NCHW 2-D convolution x[n,c,h,w] * weight[oc,c,kh,kw] + bias[oc], optional fused activation.",
    {{in("x", 4), in("weight", 4), opt("bias", 1)}}, {kOut},
    {{{"stride_h", AttrType::integer, "1", nullptr},
      {"stride_w", AttrType::integer, "1", nullptr},
      {"pad_h", AttrType::integer, "0", nullptr},
      {"pad_w", AttrType::integer, "0", nullptr},
      {"activation", AttrType::string, "'none'", "'none', 'relu' or 'gelu'"}}},
    kF32Only, kF32Only, &infer_conv2d, &work_conv2d, &limits_conv2d};

const OpDef conv_attention_nchw{
    "conv_attention_nchw", OpFamily::conv2d,
    "conv2d_nchw(+activation) -> the flattened output read cyclically into [seq_len, head_dim] "
    "(api.qkv_arrange) -> self-attention (q=k=v), on one device; x must be one image. "
    "graph=True runs the chain as a cached GraphIR (one CUDA graph on a GPU).",
    {{in("x", 4), in("w", 4), opt("b", 1)}}, {kOut},
    {{{"seq_len", AttrType::integer, nullptr, "rows of the attention input"},
      {"head_dim", AttrType::integer, nullptr, "columns of the attention input"},
      {"stride_h", AttrType::integer, "1", nullptr},
      {"stride_w", AttrType::integer, "1", nullptr},
      {"pad_h", AttrType::integer, "0", nullptr},
      {"pad_w", AttrType::integer, "0", nullptr},
      {"activation", AttrType::string, "'relu'", "the conv's fused activation"},
      {"causal", AttrType::boolean, "False", nullptr},
      {"scale", AttrType::real, "None", "None: 1/sqrt(head_dim)"},
      {"graph", AttrType::boolean, "False", "replay the chain as one CUDA graph"}}},
    kF32Only, kF32Only, &infer_conv_attention, &work_conv_attention, &limits_conv_attention};

const OpDef layernorm{
    "layernorm", OpFamily::norm,
    "Layer normalisation over the last dimension, of x + residual when a residual is given.",
    {{in("x", -1, 1), opt("gamma", 1), opt("beta", 1), opt("residual")}}, {kOut},
    {{{"eps", AttrType::real, "1e-05", nullptr}}},
    kFloatAll, kFloat16x, &infer_layernorm, &work_layernorm, nullptr};

const OpDef softmax{
    "softmax", OpFamily::norm,
    "Softmax over the last dimension of x * scale + mask (both optional; the mask has x's "
    "trailing dimensions).",
    {{in("x", -1, 1), opt("mask")}}, {kOut},
    {{{"scale", AttrType::real, "None", "None: 1 (x unscaled)"}}},
    kFloatAll, kFloat16x, &infer_softmax, &work_rows, nullptr};

#define LC_EW_OP(NAME, SUMMARY, INPUTS, ATTRS, INFER, WORK)                                    \
  const OpDef NAME{#NAME, OpFamily::elementwise, SUMMARY, INPUTS, {kOut}, ATTRS,               \
                   kFloatAll, kFloat16x, INFER, WORK, nullptr};
#define LC_AB {{in("a"), in("b")}}
#define LC_A {{in("a")}}
LC_EW_OP(vector_add, "a + b (same shapes).", LC_AB, {}, &infer_same_shape, &work_unary)
LC_EW_OP(vector_sub, "a - b (same shapes).", LC_AB, {}, &infer_same_shape, &work_unary)
LC_EW_OP(vector_mul, "a * b (same shapes).", LC_AB, {}, &infer_same_shape, &work_unary)
LC_EW_OP(matrix_sub, "a - b (same 2-D shapes).", LC_AB, {}, &infer_matrix_sub, &work_unary)
const OpDef vector_scale{"vector_scale", OpFamily::elementwise, "alpha * a.", LC_A, {kOut},
                         {{{"alpha", AttrType::real, nullptr, nullptr}}},
                         kFloatAll, kFloat16x, &infer_unary, &work_unary, nullptr};
LC_EW_OP(relu, "max(a, 0).", LC_A, {}, &infer_unary, &work_unary)
const OpDef gelu{"gelu", OpFamily::elementwise, "GELU: approximate=\"tanh\" (default) or \"none\" (exact erf form).",
                 LC_A, {kOut},
                 {{{"approximate", AttrType::string, "'tanh'", "'tanh' or 'none' (exact erf)"}}},
                 kFloatAll, kFloat16x, &infer_unary, &work_unary, nullptr};
LC_EW_OP(add, "a + b (numpy broadcasting).", LC_AB, {}, &infer_broadcast, &work_broadcast)
LC_EW_OP(sub, "a - b (numpy broadcasting).", LC_AB, {}, &infer_broadcast, &work_broadcast)
LC_EW_OP(mul, "a * b (numpy broadcasting).", LC_AB, {}, &infer_broadcast, &work_broadcast)
LC_EW_OP(div, "a / b (numpy broadcasting).", LC_AB, {}, &infer_broadcast, &work_broadcast)
#undef LC_A
#undef LC_AB
#undef LC_EW_OP

// A memory-bound row gather: the elementwise family's rates. dtype = the weight's.
const OpDef embedding{
    "embedding", OpFamily::elementwise, 
    "weight[ids]: ids int32/int64 of any shape, weight [V, D] float; result ids.shape + [D].",
    {{ids("ids"), in("weight", 2)}}, {kOut}, {},
    kFloat16x, kFloat16x, &infer_embedding, &work_embedding, nullptr};

}  // namespace opdefs

namespace {
#define LC_OPDEF_POINTER(NAME) &opdefs::NAME,
const OpDef* const kAllOps[] = {LC_REGISTERED_OPS(LC_OPDEF_POINTER)};
#undef LC_OPDEF_POINTER
}  // namespace

std::span<const OpDef* const> all_ops() { return kAllOps; }

const OpDef* find_op(std::string_view name) {
  for (const OpDef* d : kAllOps)
    if (name == d->name) return d;
  return nullptr;
}

const OpDef& get_op(std::string_view name, const char* who) {
  if (const OpDef* d = find_op(name)) return *d;
  std::string names;
  for (const OpDef* d : kAllOps) names += std::string(names.empty() ? "" : ", ") + d->name;
  throw_value(who, "unknown op '" + std::string(name) + "'; the registered ops are " + names);
}

}  // namespace lc
