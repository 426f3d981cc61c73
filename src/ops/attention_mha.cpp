// attention / attention_into: batched multi-head and grouped-query attention (ops.h has the
// contract). Validation, placement and dispatch to Backend::attention_mha.
//
// Strided inputs: a q / k / v / mask that already lives on the chosen device with a unit-stride
// last dimension is handed to the kernel as is, with its batch / head / row strides (the
// [B, S, H, D] -> [B, H, S, D] permuted views transformer code makes cost no copy); anything
// else is staged contiguous by OpRunner::in_raw (an upload, or Backend::copy_strided on the
// device). Broadcast mask dimensions get stride 0.
#include <array>
#include <cmath>
#include <string>

#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/out_target.h"
#include "ops/registry.h"
#include "ops/work.h"

namespace lc {

namespace {

constexpr const char* kOp = "attention";

// The [batch, heads, rows, cols] view of a 2-, 3- or 4-D operand.
struct Dims4 {
  std::int64_t b = 1, h = 1, s = 0, c = 0;
};

Dims4 dims4(const Tensor& t) {
  Dims4 d;
  const int n = t.ndim();
  d.s = t.size(n - 2);
  d.c = t.size(n - 1);
  if (n >= 3) d.h = t.size(n - 3);
  if (n == 4) d.b = t.size(0);
  return d;
}

struct Shapes {
  std::int64_t b, h, hk, sq, sk, d, dv;
};

Shapes check_attention_mha(const Tensor& q, const Tensor& k, const Tensor& v,
                           const char* kOp = lc::kOp) {
  check_float(kOp, "q", q, /*allow_f64=*/true);
  check_same_dtype(kOp, "q", q, "k", k);
  check_same_dtype(kOp, "q", q, "v", v);
  const int n = q.ndim();
  if (n < 2 || n > 4)
    throw_value(kOp, "q is " + q.shape_str() +
                         "; q must be [Sq, D], [H, Sq, D] or [B, H, Sq, D] (2-D to 4-D)");
  if (k.ndim() != n || v.ndim() != n)
    throw_value(kOp, "q is " + q.shape_str() + ", k is " + k.shape_str() + " and v is " +
                         v.shape_str() + "; q, k and v must have the same number of dimensions");
  const Dims4 dq = dims4(q), dk = dims4(k), dvv = dims4(v);
  auto all = [&] {
    return "q is " + q.shape_str() + ", k is " + k.shape_str() + " and v is " + v.shape_str();
  };
  if (dk.b != dq.b || dvv.b != dq.b)
    throw_value(kOp, all() + "; q, k and v must have the same batch size (dimension 0)");
  if (dk.h != dvv.h)
    throw_value(kOp, all() + "; k and v must have the same number of heads");
  if (dk.h < 1 || dq.h % dk.h != 0)
    throw_value(kOp, all() + "; the key/value heads (" + std::to_string(dk.h) +
                         ") must be >= 1 and divide the query heads (" + std::to_string(dq.h) +
                         ") for grouped-query attention");
  if (dk.c != dq.c)
    throw_value(kOp, all() + "; q and k must share the head dimension D (last dimension)");
  if (dk.s != dvv.s)
    throw_value(kOp, all() + "; k and v must have the same sequence length Sk");
  return {dq.b, dq.h, dk.h, dq.s, dk.s, dq.c, dvv.c};
}

void check_scale(float scale, const char* kOp = lc::kOp) {
  if (!(scale >= 0.0f) || std::isinf(scale))
    throw_value(kOp, "scale must be a finite number > 0 (or 0 / None for 1/sqrt(head_dim)), got " +
                         std::to_string(scale));
}

// The mask's [batch, head, row, key] element strides against the full [B, H, Sq, Sk] (0 on
// broadcast dimensions); validates shape and dtype.
MaskKind check_mask(const Tensor& m, const Tensor& q, const Shapes& s,
                    const char* kOp = lc::kOp) {
  MaskKind kind;
  if (m.dtype() == DType::i32 || m.dtype() == DType::i64) {
    kind = MaskKind::keep;
  } else if (is_floating(m.dtype())) {
    if (m.dtype() != q.dtype())
      throw_type(kOp, std::string("an additive mask must have q's dtype (") +
                          dtype_info(q.dtype()).name + "), got " + dtype_info(m.dtype()).name +
                          "; convert it with astype, or pass a boolean mask");
    kind = MaskKind::additive;
  } else {
    throw_type(kOp, std::string("mask must be boolean / int32 / int64 (nonzero = attend) or "
                                "an additive float mask, got ") + dtype_info(m.dtype()).name);
  }
  const std::int64_t full[4] = {s.b, s.h, s.sq, s.sk};
  const int n = m.ndim();
  bool ok = n >= 1 && n <= 4;
  if (ok && kind == MaskKind::keep && n == 2) {  // key padding [B, Sk]
    ok = (m.size(0) == s.b || m.size(0) == 1) && (m.size(1) == s.sk || m.size(1) == 1);
  } else if (ok) {
    for (int i = 0; i < n; ++i) {
      const std::int64_t want = full[4 - n + i];
      if (m.size(i) != want && m.size(i) != 1) ok = false;
    }
  }
  if (!ok)
    throw_value(kOp, "mask is " + m.shape_str() + " for q " + q.shape_str() + " (B=" +
                         std::to_string(s.b) + ", H=" + std::to_string(s.h) + ", Sq=" +
                         std::to_string(s.sq) + ", Sk=" + std::to_string(s.sk) +
                         "); a boolean mask must be [B, Sk] (key padding) or broadcastable to "
                         "[B, H, Sq, Sk], an additive mask broadcastable to [B, H, Sq, Sk]");
  return kind;
}

// Element strides over [B, H, Sq, Sk] of a mask with strides st (0 where broadcast).
void mask_strides(const Tensor& m, MaskKind kind, const std::int64_t* st, std::int64_t out[4]) {
  for (int i = 0; i < 4; ++i) out[i] = 0;
  const int n = m.ndim();
  if (kind == MaskKind::keep && n == 2) {
    out[0] = m.size(0) == 1 ? 0 : st[0];
    out[3] = m.size(1) == 1 ? 0 : st[1];
    return;
  }
  for (int i = 0; i < n; ++i) out[4 - n + i] = m.size(i) == 1 ? 0 : st[i];
}

// A pointer to t's elements on r's device and t's element strides: t itself when it is there
// with a unit-stride last dimension (any last stride when `any_last`: the mask is read element
// by element), else a contiguous staged copy.
const void* strided_in(OpRunner& r, const Tensor& t, std::int64_t st[4], bool any_last = false) {
  const int n = t.ndim();
  if (t.device() == r.device() && (any_last || t.size(n - 1) <= 1 || t.stride(n - 1) == 1)) {
    for (int i = 0; i < n; ++i) st[i] = t.stride(i);
    return t.data();
  }
  std::int64_t e = 1;
  for (int i = n - 1; i >= 0; --i) {
    st[i] = e;
    e *= t.size(i);
  }
  return r.in_raw(t);
}

// [batch, head, row] strides of a 2- to 4-D operand from its own strides.
void bhr(const Tensor& t, const std::int64_t* st, std::int64_t out[3]) {
  const int n = t.ndim();
  out[0] = n == 4 ? st[0] : 0;
  out[1] = n >= 3 ? st[n - 3] : 0;
  out[2] = st[n - 2];
}

std::vector<std::int64_t> lse_shape(const Tensor& q) {
  std::vector<std::int64_t> s = q.shape();
  s.pop_back();
  return s;
}

std::vector<std::int64_t> out_shape(const Tensor& q, const Tensor& v) {
  std::vector<std::int64_t> s = q.shape();
  s.back() = v.size(v.ndim() - 1);
  return s;
}

struct Prepared {
  Shapes s;
  MaskKind kind = MaskKind::none;
  double scale = 0.0;
};

Prepared prepare(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* mask,
                 float scale, const char* op = kOp) {
  Prepared pr;
  pr.s = check_attention_mha(q, k, v, op);
  check_scale(scale, op);
  if (mask) pr.kind = check_mask(*mask, q, pr.s, op);
  pr.scale = scale > 0.0f ? static_cast<double>(scale)
                          : 1.0 / std::sqrt(static_cast<double>(pr.s.d > 0 ? pr.s.d : 1));
  return pr;
}

void place(OpRunner& r, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* mask,
           const Prepared& pr) {
  const Shapes& s = pr.s;
  const bool gpu_ok = opdefs::attention.supports(DeviceKind::cuda, OpArgs{&q, &k, &v});
  r.place(attention_mha_work(s.b, s.h, s.sq, s.sk, s.d, s.dv,
                             static_cast<double>(dtype_size(q.dtype()))),
          {&q, &k, &v, mask}, gpu_ok);
}

// The part of the forward's and the backward's arguments they share: q, k, v (and the mask)
// on r's device with their (batch, head, row) strides, the sizes, causal, scale, dtype.
void fill_problem(OpRunner& r, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor* mask, bool causal, const Prepared& pr, MhaProblem& a) {
  std::int64_t st[4];
  a.q = strided_in(r, q, st);
  bhr(q, st, a.q_strides);
  a.k = strided_in(r, k, st);
  bhr(k, st, a.k_strides);
  a.v = strided_in(r, v, st);
  bhr(v, st, a.v_strides);
  if (mask) {
    a.mask = strided_in(r, *mask, st, /*any_last=*/true);
    a.mask_kind = pr.kind;
    a.mask_dtype = mask->dtype();
    mask_strides(*mask, pr.kind, st, a.mask_strides);
  }
  a.batch = pr.s.b;
  a.heads = pr.s.h;
  a.kv_heads = pr.s.hk;
  a.sq = pr.s.sq;
  a.sk = pr.s.sk;
  a.d = pr.s.d;
  a.dv = pr.s.dv;
  a.causal = causal;
  a.scale = pr.scale;
  a.dtype = q.dtype();
}

// Launch with out / lse pointers already on r's device.
void launch_mha(OpRunner& r, const Tensor& q, const Tensor& k, const Tensor& v,
                const Tensor* mask, bool causal, const Prepared& pr, void* out, float* lse,
                const std::int64_t* out_strides = nullptr) {
  MhaArgs a;
  fill_problem(r, q, k, v, mask, causal, pr, a);
  a.out = out;
  if (out_strides)
    for (int i = 0; i < 3; ++i) a.out_strides[i] = out_strides[i];
  a.lse = lse;
  a.precision = r.policy().precision;
  r.launch([&](Backend& be) { be.attention_mha(a); });
}

// Where the kernel writes lse: the caller's tensor when it is on the device and shares no
// memory with an input, else device scratch copied into it by finish() (OpRunner stages one
// output only).
struct LseTarget {
  Tensor* lse;
  Tensor scratch;
  float* ptr = nullptr;
  LseTarget(OpRunner& r, Tensor* t, std::initializer_list<const Tensor*> inputs) : lse(t) {
    if (!lse || lse->numel() == 0) return;
    bool direct = lse->device() == r.device() && lse->is_contiguous();
    for (const Tensor* in : inputs)
      if (in && in->may_overlap(*lse)) direct = false;
    if (direct) {
      ptr = static_cast<float*>(lse->data());
    } else {
      scratch = Tensor::empty(lse->shape(), DType::f32, r.device());
      ptr = static_cast<float*>(scratch.data());
    }
  }
  void finish() {
    if (scratch.defined() && scratch.numel() > 0) scratch.copy_to(*lse);
  }
};

// ---- the op's registry facts (src/ops/registry.h) ----------------------------------------------

std::vector<std::int64_t> shape_vec(const ShapeRef& s) { return {s.dims, s.dims + s.ndim}; }

OpResult infer_attention(const OpDef& d, const OpArgs& a) {
  const ShapeRef& q = a[0];
  const ShapeRef& k = a[1];
  const ShapeRef& v = a[2];
  const int n = q.ndim;
  const std::int64_t hq = n >= 3 ? q[n - 3] : 1, hk = n >= 3 ? k[n - 3] : 1;
  if (n > 4 || k.ndim != n || v.ndim != n || (n == 4 && (k[0] != q[0] || v[0] != q[0])) ||
      (n >= 3 && v[n - 3] != hk) || hk < 1 || hq % hk != 0 || k.back() != q.back() ||
      k[n - 2] != v[n - 2])
    throw_value(d.name, "q " + shape_str(shape_vec(q)) + ", k " + shape_str(shape_vec(k)) +
                            ", v " + shape_str(shape_vec(v)) +
                            ": want q [B, H, Sq, D], k [B, Hk, Sk, D], v [B, Hk, Sk, Dv] (or "
                            "[H, S, D] / [S, D]) with Hk dividing H");
  std::vector<std::int64_t> out = shape_vec(q);
  out.back() = v.back();
  return {out, a.dtype};
}
// k and v default to q and k (the by-name query may pass q alone for self-attention).
WorkEstimate work_attention(const OpArgs& a) {
  const ShapeRef& q = a[0];
  const ShapeRef& k = a.has(1) ? a[1] : q;
  const ShapeRef& v = a.has(2) ? a[2] : k;
  const int n = q.ndim;
  return attention_mha_work(n == 4 ? q[0] : 1, n >= 3 ? q[n - 3] : 1, q[n - 2], k[k.ndim - 2],
                            q.back(), v.back(), static_cast<double>(dtype_size(a.dtype)));
}
bool limits_attention(DeviceKind be, const OpArgs& a) {
  if (be != DeviceKind::cuda) return true;
  const ShapeRef& q = a[0];
  const ShapeRef& v = a.has(2) ? a[2] : a.has(1) ? a[1] : q;
  return cuda_supports_attention(q.back(), v.back());
}

}  // namespace

const OpDef opdefs::attention{
    "attention", OpFamily::attention,
    "Batched multi-head / grouped-query attention softmax(q k^T * scale + mask) v: q [B, H, Sq, "
    "D], k [B, Hk, Sk, D], v [B, Hk, Sk, Dv] with Hk dividing H; bottom-right causal; boolean "
    "key-padding or additive mask; fully masked rows give zeros (docs/attention.md). "
    "return_lse=True returns (out, lse [B, H, Sq] float32).",
    {{in("q", -1, 2), in("k", -1, 2), in("v", -1, 2), opt("mask")}}, {"out"},
    {{{"causal", AttrType::boolean, "False", "query i sees keys j <= i + Sk - Sq"},
      {"scale", AttrType::real, "None", "None: 1/sqrt(head_dim)"},
      {"return_lse", AttrType::boolean, "False", "also return the float32 log-sum-exp [B, H, Sq]"}}},
    kFloatAll, kFloat16x, &infer_attention, &work_attention, &limits_attention};

std::vector<std::int64_t> attention_out_shape(const Tensor& q, const Tensor& k, const Tensor& v) {
  check_attention_mha(q, k, v);
  return out_shape(q, v);
}

std::vector<std::int64_t> attention_out_shape(const Tensor& q, const Tensor& k, const Tensor& v,
                                              const Tensor* mask) {
  const Shapes s = check_attention_mha(q, k, v);
  if (mask) check_mask(*mask, q, s);
  return out_shape(q, v);
}

void attention_into(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out, bool causal,
                    const Tensor* mask, float scale, const ExecutionPolicy& p, Tensor* lse) {
  const Prepared pr = prepare(q, k, v, mask, scale);
  // out may be a strided view (the merged-heads [B, Sq, H, Dv] buffer permuted to [B, H, Sq, Dv]):
  // written in place through its strides when it is on the op's device with unit-stride rows
  // and shares no memory with an input, else through OpRunner's scratch and one strided copy.
  check_out_strided(kOp, out, out_shape(q, v), q.dtype());
  if (lse) {
    check_out(kOp, *lse, lse_shape(q), DType::f32);
    if (lse->may_overlap(out))
      throw_value(kOp, "lse and out share memory; pass separate arrays");
  }
  OpRunner r(kOp, p);
  place(r, q, k, v, mask, pr);
  LseTarget lt(r, lse, {&q, &k, &v, mask});
  std::int64_t os[3];
  const std::int64_t* osp = nullptr;
  void* o = nullptr;
  const int n = out.ndim();
  if (!out.is_contiguous() && out.numel() > 0 && out.device() == r.device() &&
      (r.device() == DeviceKind::cpu || out.device_index() == r.device_index()) &&
      (out.size(n - 1) <= 1 || out.stride(n - 1) == 1) && !out.may_overlap(q) &&
      !out.may_overlap(k) && !out.may_overlap(v) && !(mask && out.may_overlap(*mask))) {
    const std::vector<std::int64_t> st = out.strides();
    bhr(out, st.data(), os);
    // strides of length-1 dimensions address nothing: keep them nonzero so the kernels never
    // see the all-zero "contiguous" default
    const std::int64_t dv = out.size(n - 1), sq = out.size(n - 2);
    if (os[2] == 0 || sq <= 1) os[2] = dv;
    if (n < 3 || out.size(n - 3) <= 1) os[1] = sq * os[2];
    if (n < 4 || out.size(0) <= 1) os[0] = (n >= 3 ? out.size(n - 3) : 1) * os[1];
    osp = os;
    o = out.data();
  } else {
    o = r.out_raw(out);
  }
  launch_mha(r, q, k, v, mask, causal, pr, o, lt.ptr, osp);
  r.finish();
  lt.finish();
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                 const Tensor* mask, float scale, const ExecutionPolicy& p, Tensor* lse) {
  const Prepared pr = prepare(q, k, v, mask, scale);
  OpRunner r(kOp, p);
  place(r, q, k, v, mask, pr);
  Tensor out = r.result(out_shape(q, v), q.dtype());
  if (lse) *lse = r.result(lse_shape(q), DType::f32);
  LseTarget lt(r, lse, {&q, &k, &v, mask});
  launch_mha(r, q, k, v, mask, causal, pr, r.out_raw(out), lt.ptr);
  r.finish();
  lt.finish();
  return out;
}

// ---- attention_backward ------------------------------------------------------------------------
// dq, dk, dv of attention() from dout, the forward's inputs, its out and its float32 lse
// (Backend::attention_mha_backward: the CPU's attention_mha_bwd.cpp, CUDA's attention_mha_bwd.cu
// for float32 / float16 / bfloat16 with head dims up to kCudaMaxHeadDim).

namespace {

constexpr const char* kBwd = "attention_backward";

void check_like(const char* what, const Tensor& t, const std::vector<std::int64_t>& want,
                const char* expect) {
  if (t.shape() != want)
    throw_value(kBwd, std::string(what) + " is " + t.shape_str() + "; it must be " +
                          shape_str(want) + " (" + expect + ")");
}

Prepared prepare_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                          const Tensor& out, const Tensor& lse, const Tensor* mask, float scale) {
  Prepared pr = prepare(q, k, v, mask, scale, kBwd);
  check_same_dtype(kBwd, "q", q, "out", out);
  check_same_dtype(kBwd, "q", q, "dout", dout);
  if (lse.dtype() != DType::f32)
    throw_type(kBwd, std::string("lse must be float32 (the forward's return_lse=True result), got ") +
                         dtype_info(lse.dtype()).name);
  const std::vector<std::int64_t> os = out_shape(q, v);
  check_like("out", out, os, "the forward's output: q's shape with v's last dimension");
  check_like("dout", dout, os, "the gradient of the forward's output, out's shape");
  check_like("lse", lse, lse_shape(q), "q's shape without its last dimension");
  return pr;
}

void place_backward(OpRunner& r, const Tensor& dout, const Tensor& q, const Tensor& k,
                    const Tensor& v, const Tensor& out, const Tensor* mask, const Prepared& pr) {
  const Shapes& s = pr.s;
  WorkEstimate w = attention_mha_work(s.b, s.h, s.sq, s.sk, s.d, s.dv,
                                      static_cast<double>(dtype_size(q.dtype())));
  w.flops *= 2.5;  // five products per tile against the forward's two
  const bool gpu_ok = opdefs::attention_backward.supports(DeviceKind::cuda, OpArgs{&dout, &q, &k, &v});
  r.place(w, {&dout, &q, &k, &v, &out, mask}, gpu_ok);
}

void launch_backward(OpRunner& r, const Tensor& dout, const Tensor& q, const Tensor& k,
                     const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor* mask,
                     bool causal, const Prepared& pr, void* dq, void* dk, void* dv) {
  MhaBackwardArgs a;
  fill_problem(r, q, k, v, mask, causal, pr, a);
  std::int64_t st[4];
  a.out = strided_in(r, out, st);
  bhr(out, st, a.out_strides);
  a.dout = strided_in(r, dout, st);
  bhr(dout, st, a.dout_strides);
  a.lse = static_cast<const float*>(r.in_raw(lse));
  a.dq = dq;
  a.dk = dk;
  a.dv_out = dv;
  r.launch([&](Backend& be) { be.attention_mha_backward(a); });
}

OpResult infer_attention_backward(const OpDef& d, const OpArgs& a) {
  // dout, q, k, v, out, lse[, mask]: the result is dq (q's shape); dk and dv have k's and v's.
  OpArgs fwd;
  fwd.n = 3;
  fwd.shapes[0] = a[1];
  fwd.shapes[1] = a[2];
  fwd.shapes[2] = a[3];
  fwd.dtype = a.dtype;
  infer_attention(d, fwd);
  return {shape_vec(a[1]), a.dtype};
}
// dout, q, k, v, ...: the CUDA kernels' head-dimension limit on q's D and v's Dv.
bool limits_attention_backward(DeviceKind be, const OpArgs& a) {
  if (be != DeviceKind::cuda) return true;
  const ShapeRef& q = a.has(1) ? a[1] : a[0];
  const ShapeRef& v = a.has(3) ? a[3] : a[0];
  return cuda_supports_attention_backward(q.back(), v.back());
}
WorkEstimate work_attention_backward(const OpArgs& a) {
  OpArgs fwd;
  fwd.n = 0;
  for (int i = 1; i <= 3 && a.has(i); ++i) fwd.shapes[static_cast<std::size_t>(fwd.n++)] = a[i];
  if (fwd.n == 0) fwd.shapes[static_cast<std::size_t>(fwd.n++)] = a[0];
  fwd.dtype = a.dtype;
  WorkEstimate w = work_attention(fwd);
  w.flops *= 2.5;
  return w;
}

}  // namespace

const OpDef opdefs::attention_backward{
    "attention_backward", OpFamily::attention,
    "Gradients (dq, dk, dv) of lc.attention from dout, the forward's q, k, v, its out and its "
    "float32 lse (return_lse=True), with the forward's causal / mask / scale. No Sq x Sk matrix "
    "is stored (P is recomputed tile by tile); for grouped-query attention dk / dv sum over the "
    "query heads of their key/value head; rows with no visible key get zero gradients. CPU and "
    "CUDA (float32 / float16 / bfloat16, head dims up to 256); docs/attention.md.",
    {{in("dout", -1, 2), in("q", -1, 2), in("k", -1, 2), in("v", -1, 2), in("out", -1, 2),
      in("lse", -1, 1), opt("mask")}},
    {"dq", "dk", "dv"},
    {{{"causal", AttrType::boolean, "False", "as the forward's"},
      {"scale", AttrType::real, "None", "as the forward's (None: 1/sqrt(head_dim))"}}},
    kFloatAll, kFloat16x, &infer_attention_backward, &work_attention_backward,
    &limits_attention_backward};

void attention_backward_into(const Tensor& dout, const Tensor& q, const Tensor& k,
                             const Tensor& v, const Tensor& out, const Tensor& lse, Tensor& dq,
                             Tensor& dk, Tensor& dv, bool causal, const Tensor* mask, float scale,
                             const ExecutionPolicy& p) {
  const Prepared pr = prepare_backward(dout, q, k, v, out, lse, mask, scale);
  check_out(kBwd, dq, q.shape(), q.dtype());
  check_out(kBwd, dk, k.shape(), q.dtype());
  check_out(kBwd, dv, v.shape(), q.dtype());
  if (dq.may_overlap(dk) || dq.may_overlap(dv) || dk.may_overlap(dv))
    throw_value(kBwd, "dq, dk and dv share memory; pass three separate arrays");
  OpRunner r(kBwd, p);
  place_backward(r, dout, q, k, v, out, mask, pr);
  std::initializer_list<const Tensor*> ins{&dout, &q, &k, &v, &out, &lse, mask};
  OutTarget tq(r, dq, ins), tk(r, dk, ins), tv(r, dv, ins);
  launch_backward(r, dout, q, k, v, out, lse, mask, causal, pr, tq.ptr, tk.ptr, tv.ptr);
  r.finish();
  tq.finish();
  tk.finish();
  tv.finish();
}

std::array<Tensor, 3> attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                         const Tensor& v, const Tensor& out, const Tensor& lse,
                                         bool causal, const Tensor* mask, float scale,
                                         const ExecutionPolicy& p) {
  const Prepared pr = prepare_backward(dout, q, k, v, out, lse, mask, scale);
  OpRunner r(kBwd, p);
  place_backward(r, dout, q, k, v, out, mask, pr);
  std::array<Tensor, 3> g{r.result(q.shape(), q.dtype()), r.result(k.shape(), q.dtype()),
                          r.result(v.shape(), q.dtype())};
  std::initializer_list<const Tensor*> ins{&dout, &q, &k, &v, &out, &lse, mask};
  OutTarget tq(r, g[0], ins), tk(r, g[1], ins), tv(r, g[2], ins);
  launch_backward(r, dout, q, k, v, out, lse, mask, causal, pr, tq.ptr, tk.ptr, tv.ptr);
  r.finish();
  tq.finish();
  tk.finish();
  tv.finish();
  return g;
}

}  // namespace lc
