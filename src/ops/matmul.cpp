// matmul2d, linear and the batched / broadcast matmul: validation, placement and dispatch to
// Backend::matmul.
//
// Storage dtypes: float32, float16, bfloat16 on every backend, float64 on the CPU only (placed
// there whatever the policy says); inputs and the result share one dtype. The policy's
// precision is the compute mode of float32 storage (fp32 / tf32 / bf16 tensor-core inputs);
// 16-bit storage always multiplies in its own type with float32 accumulation (backend.h).
#include <algorithm>
#include <array>

#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/registry.h"

namespace lc {

namespace {

// Both floating (float64 included: the CPU computes it) and of one storage dtype.
void check_same_float(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b) {
  check_float(op, na, a, /*allow_f64=*/true);
  check_float(op, nb, b, /*allow_f64=*/true);
  if (a.dtype() != b.dtype())
    throw_type(op, std::string("'") + na + "' is " + to_string(a.dtype()) + " with shape " +
                       a.shape_str() + " but '" + nb + "' is " + to_string(b.dtype()) +
                       " with shape " + b.shape_str() + "; matrix products do not mix storage "
                       "dtypes, convert one with .astype(...)");
}

void check_operands(const char* op, const char* na, const Tensor& a, const char* nb,
                    const Tensor& b) {
  check_same_float(op, na, a, nb, b);
}

void check_matmul(const char* op, const Tensor& a, const Tensor& b) {
  check_operands(op, "a", a, "b", b);
  check_ndim(op, "a", a, 2);
  check_ndim(op, "b", b, 2);
  if (a.size(1) != b.size(0))
    throw_value(op, "inner dimensions differ: a is " + a.shape_str() + " and b is " + b.shape_str() +
                        "; a's columns must equal b's rows (a[m,k] @ b[k,n])");
}

// Rows of linear's x [..., in]: the product of its leading dimensions (0 rows is legal).
std::int64_t leading_rows(const Tensor& x) {
  std::int64_t r = 1;
  for (int i = 0; i + 1 < x.ndim(); ++i) r *= x.size(i);
  return r;
}

// linear takes x of shape [..., in] (any leading dimensions, as torch's nn.Linear): the rows
// are the product of the leading dimensions and the result is [..., out]. The residual has the
// result's shape and dtype.
void check_linear(const char* op, const Tensor& x, const Tensor& w, const Tensor* bias,
                  const Tensor* residual) {
  check_operands(op, "x", x, "weight", w);
  if (x.ndim() < 1)
    throw_value(op, "'x' must have at least 1 dimension ([..., in_features]), got a 0-D tensor");
  check_ndim(op, "weight", w, 2);
  if (x.size(x.ndim() - 1) != w.size(1))
    throw_value(op, "x is " + x.shape_str() + " but weight is " + w.shape_str() +
                        "; weight must be [out_features, in_features] with in_features = x's "
                        "last dimension (torch nn.Linear layout)");
  if (bias) {
    check_same_float(op, "x", x, "bias", *bias);
    if (bias->ndim() != 1 || bias->size(0) != w.size(0))
      throw_value(op, "bias must be 1-D of length out_features=" + std::to_string(w.size(0)) +
                          ", got shape " + bias->shape_str());
  }
  if (residual) {
    check_same_float(op, "x", x, "residual", *residual);
    bool same = residual->ndim() == x.ndim();
    for (int i = 0; same && i + 1 < x.ndim(); ++i) same = residual->size(i) == x.size(i);
    if (same) same = residual->size(x.ndim() - 1) == w.size(0);
    if (!same) {
      std::vector<std::int64_t> shape = x.shape();
      shape.back() = w.size(0);
      throw_value(op, "residual has shape " + residual->shape_str() + " but the result has shape " +
                          shape_str(shape) + " (x " + x.shape_str() + ", weight " + w.shape_str() +
                          "); pass a residual of exactly the result's shape (no broadcasting)");
    }
  }
}

// a is read as the row-major [m, k] matrix of its elements (a 2-D matrix, or linear's
// [..., in] input with its leading dimensions as rows).
void run_matmul(OpRunner& r, const Tensor& a, const Tensor& b, const Tensor* bias, bool trans_b,
                Activation act, Tensor& out, const Tensor* residual = nullptr) {
  MatmulArgs args;
  args.a = r.in_raw(a);
  args.b = r.in_raw(b);
  args.bias = r.in_raw_opt(bias);
  args.residual = r.in_raw_opt(residual);
  args.k = a.size(a.ndim() - 1);
  args.m = leading_rows(a);
  args.n = trans_b ? b.size(0) : b.size(1);
  args.trans_b = trans_b;
  args.act = act;
  args.precision = r.policy().precision;
  args.dtype = a.dtype();
  args.out = r.out_raw(out);
  // The exact GELU (linear's "gelu_erf"): the CPU fuses it into the GEMM epilogue; other
  // backends have no such epilogue (cuBLASLt's GELU is the tanh form), so they run the product
  // with bias / residual and then the elementwise gelu_erf in place on the result.
  const bool split_gelu_erf = act == Activation::gelu_erf && r.device() != DeviceKind::cpu;
  if (split_gelu_erf) args.act = Activation::none;
  // On the CPU, mid-size float32 GEMMs choose between OpenBLAS's threading and pooled sgemm
  // tiles per shape (measured once, cached; tiny shapes skip this after one compare).
  // (Backend::tune_matmul: the CPU backend's tuner; 0 = the built-in rule, what matmul() does.)
  int choice = 0;
  if (r.device() == DeviceKind::cpu && args.dtype == DType::f32)
    choice = get_backend(DeviceKind::cpu).tune_matmul(args, r.policy().autotune);
  r.launch([&](Backend& be) {
    if (choice != 0) be.matmul_tuned(args, choice);
    else be.matmul(args);
    if (split_gelu_erf) {
      ElementwiseArgs e;
      e.kind = EwKind::gelu_erf;
      e.a = args.out;
      e.out = args.out;  // in place: ElementwiseArgs allows out to alias a
      e.n = std::max<std::int64_t>(args.batch, 1) * args.m * args.n;
      e.dtype = args.dtype;
      if (e.n > 0) be.elementwise(e);
    }
  });
  r.finish();
}

// ---- matmul (torch.matmul semantics) -----------------------------------------------------

// The shapes of one matmul call after the 1-D promotions and the batch broadcast.
struct MatmulShape {
  std::int64_t m = 0, k = 0, n = 0;
  int batch_ndim = 0;                          // broadcast batch dimensions
  std::array<std::int64_t, kMaxDims> batch{};  // their sizes
  std::array<std::int64_t, kMaxDims> a_batch{}, b_batch{};  // each operand's, 1-padded left
  bool a_vec = false, b_vec = false;           // 1-D operands (their dimension is dropped)
  std::int64_t batch_count() const {
    std::int64_t c = 1;
    for (int i = 0; i < batch_ndim; ++i) c *= batch[static_cast<std::size_t>(i)];
    return c;
  }
  std::vector<std::int64_t> out_shape() const {
    std::vector<std::int64_t> s(batch.begin(), batch.begin() + batch_ndim);
    if (!a_vec) s.push_back(m);
    if (!b_vec) s.push_back(n);
    return s;
  }
};

MatmulShape matmul_shape(const char* op, const Tensor& a, const Tensor& b) {
  check_operands(op, "a", a, "b", b);
  if (a.ndim() < 1 || b.ndim() < 1)
    throw_value(op, "both operands need at least 1 dimension, got a " + a.shape_str() + " and b " +
                        b.shape_str() + "; multiply 0-D values with vector_scale");
  MatmulShape s;
  s.a_vec = a.ndim() == 1;
  s.b_vec = b.ndim() == 1;
  s.m = s.a_vec ? 1 : a.size(a.ndim() - 2);
  s.k = a.size(a.ndim() - 1);
  const std::int64_t kb = s.b_vec ? b.size(0) : b.size(b.ndim() - 2);
  s.n = s.b_vec ? 1 : b.size(b.ndim() - 1);
  if (s.k != kb)
    throw_value(op, "inner dimensions differ: a is " + a.shape_str() + " and b is " + b.shape_str() +
                        "; a's last dimension (" + std::to_string(s.k) + ") must equal b's " +
                        (s.b_vec ? "length" : "second-to-last dimension") + " (" +
                        std::to_string(kb) + ")");
  const int ab = std::max(a.ndim() - 2, 0), bb = std::max(b.ndim() - 2, 0);
  s.batch_ndim = std::max(ab, bb);
  for (int i = 0; i < s.batch_ndim; ++i) {
    const int ia = i - (s.batch_ndim - ab), ib = i - (s.batch_ndim - bb);
    const std::int64_t da = ia >= 0 ? a.size(ia) : 1, db = ib >= 0 ? b.size(ib) : 1;
    if (da != db && da != 1 && db != 1)
      throw_value(op, "batch dimensions do not broadcast: a is " + a.shape_str() + " and b is " +
                          b.shape_str() + " (batch sizes " + std::to_string(da) + " and " +
                          std::to_string(db) + " at batch dimension " + std::to_string(i) +
                          "); each pair must be equal or one of them 1 (numpy broadcasting)");
    const auto u = static_cast<std::size_t>(i);
    s.a_batch[u] = da;
    s.b_batch[u] = db;
    s.batch[u] = da == 1 ? db : da;
  }
  return s;
}

// b given as the transpose of a contiguous [..., n, k] array (b.mT of a row-major weight,
// q @ k.T): read it with trans_b instead of copying it.
bool is_transposed_contiguous(const Tensor& b) {
  const int d = b.ndim();
  if (d < 2 || b.is_contiguous()) return false;
  if (b.stride(d - 2) != 1 || b.stride(d - 1) != b.size(d - 2)) return false;
  std::int64_t expect = b.size(d - 1) * b.size(d - 2);
  for (int i = d - 3; i >= 0; --i) {
    if (b.size(i) != 1 && b.stride(i) != expect) return false;
    expect *= b.size(i);
  }
  return true;
}

void run_batched(OpRunner& r, const MatmulShape& s, const Tensor& a, const Tensor& b, Tensor& out) {
  const bool trans_b = is_transposed_contiguous(b);
  MatmulArgs args;
  args.a = r.in_raw(a);
  args.b = r.in_raw(trans_b ? b.transpose(-2, -1) : b);
  args.m = s.m;
  args.k = s.k;
  args.n = s.n;
  args.trans_b = trans_b;
  args.precision = r.policy().precision;
  args.dtype = a.dtype();
  args.out = r.out_raw(out);
  const int nd = s.batch_ndim;
  const std::int64_t mat_a = s.m * s.k, mat_b = s.k * s.n, mat_o = s.m * s.n;
  // Element strides of each operand's (contiguous) batch dimensions; 0 where it broadcasts.
  std::array<std::int64_t, kMaxDims> sa{}, sb{}, so{};
  std::int64_t ea = mat_a, eb = mat_b, eo = mat_o;
  for (int i = nd - 1; i >= 0; --i) {
    const auto u = static_cast<std::size_t>(i);
    sa[u] = s.a_batch[u] == 1 ? 0 : ea;
    sb[u] = s.b_batch[u] == 1 ? 0 : eb;
    so[u] = eo;
    ea *= s.a_batch[u];
    eb *= s.b_batch[u];
    eo *= s.batch[u];
  }
  // The innermost run of batch dimensions along which each operand is either entirely
  // broadcast or entirely present is one strided batch (stride 0 or one matrix); the
  // dimensions outside it (a [2,1] x [1,3] broadcast) are looped over, one batched call each.
  int j = nd;
  int a_mode = 0, b_mode = 0;  // 0 unknown, 1 present, 2 broadcast
  auto fits = [](int& mode, std::int64_t stride) {
    const int want = stride == 0 ? 2 : 1;
    if (mode == 0) mode = want;
    return mode == want;
  };
  while (j > 0) {
    const auto u = static_cast<std::size_t>(j - 1);
    if (s.batch[u] != 1) {
      int am = a_mode, bm = b_mode;
      if (!fits(am, sa[u]) || !fits(bm, sb[u])) break;
      a_mode = am;
      b_mode = bm;
    }
    --j;
  }
  std::int64_t inner = 1;
  for (int i = j; i < nd; ++i) inner *= s.batch[static_cast<std::size_t>(i)];
  args.batch = inner;
  args.stride_a = a_mode == 1 ? mat_a : 0;
  args.stride_b = b_mode == 1 ? mat_b : 0;
  args.stride_out = mat_o;
  // b shared by every product and a's matrices back to back: one [batch * m, k] GEMM (what
  // torch does for x[B, m, k] @ w[k, n]); out's matrices are back to back as well.
  if (args.batch > 1 && args.stride_b == 0 && args.stride_a == mat_a) {
    args.m *= args.batch;
    args.batch = 1;
  }
  if (args.batch == 1) args.stride_a = args.stride_b = args.stride_out = 0;
  std::int64_t outer = 1;
  for (int i = 0; i < j; ++i) outer *= s.batch[static_cast<std::size_t>(i)];
  const std::size_t esz = dtype_size(args.dtype);
  r.launch([&](Backend& be) {
    if (outer == 1) return be.matmul(args);
    std::array<std::int64_t, kMaxDims> idx{};
    MatmulArgs g = args;
    for (std::int64_t o = 0; o < outer; ++o) {
      std::int64_t oa = 0, ob = 0, oo = 0;
      for (int i = 0; i < j; ++i) {
        const auto u = static_cast<std::size_t>(i);
        oa += idx[u] * sa[u];
        ob += idx[u] * sb[u];
        oo += idx[u] * so[u];
      }
      g.a = static_cast<const char*>(args.a) + oa * static_cast<std::int64_t>(esz);
      g.b = static_cast<const char*>(args.b) + ob * static_cast<std::int64_t>(esz);
      g.out = static_cast<char*>(args.out) + oo * static_cast<std::int64_t>(esz);
      be.matmul(g);
      for (int i = j - 1; i >= 0; --i) {  // next outer index (row-major odometer)
        const auto u = static_cast<std::size_t>(i);
        if (++idx[u] < s.batch[u]) break;
        idx[u] = 0;
      }
    }
  });
  r.finish();
}

// The op's facts come from its OpDef (registry.h): the work estimate and the CUDA dtypes
// (float64 runs on the CPU).
void place(OpRunner& r, const OpDef& def, std::initializer_list<const Tensor*> inputs) {
  const OpArgs args(inputs);
  r.place(def.work(args), inputs, def.supports(DeviceKind::cuda, args));
}

}  // namespace

std::vector<std::int64_t> matmul2d_out_shape(const Tensor& a, const Tensor& b) {
  check_matmul("matmul2d", a, b);
  return {a.size(0), b.size(1)};
}

std::vector<std::int64_t> linear_out_shape(const Tensor& x, const Tensor& w, const Tensor* bias,
                                           const Tensor* residual) {
  check_linear("linear", x, w, bias, residual);
  std::vector<std::int64_t> shape = x.shape();
  shape.back() = w.size(0);
  return shape;
}

std::vector<std::int64_t> matmul_out_shape(const Tensor& a, const Tensor& b) {
  return matmul_shape("matmul", a, b).out_shape();
}

void matmul2d_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) {
  static constexpr const char* op = "matmul2d";
  check_matmul(op, a, b);
  check_out(op, out, {a.size(0), b.size(1)}, a.dtype());
  OpRunner r(op, p);
  place(r, opdefs::matmul2d, {&a, &b});
  run_matmul(r, a, b, nullptr, false, Activation::none, out);
}

Tensor matmul2d(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) {
  static constexpr const char* op = "matmul2d";
  check_matmul(op, a, b);
  OpRunner r(op, p);
  place(r, opdefs::matmul2d, {&a, &b});
  Tensor out = r.result({a.size(0), b.size(1)}, a.dtype());
  run_matmul(r, a, b, nullptr, false, Activation::none, out);
  return out;
}

void linear_into(const Tensor& x, const Tensor& w, const Tensor* bias, Activation act, Tensor& out,
                 const ExecutionPolicy& p, const Tensor* residual) {
  static constexpr const char* op = "linear";
  check_linear(op, x, w, bias, residual);
  check_out(op, out, linear_out_shape(x, w, bias, residual), x.dtype());
  OpRunner r(op, p);
  place(r, opdefs::linear, {&x, &w, bias, residual});
  run_matmul(r, x, w, bias, true, act, out, residual);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias, Activation act,
              const ExecutionPolicy& p, const Tensor* residual) {
  static constexpr const char* op = "linear";
  check_linear(op, x, w, bias, residual);
  OpRunner r(op, p);
  place(r, opdefs::linear, {&x, &w, bias, residual});
  Tensor out = r.result(linear_out_shape(x, w, bias, residual), x.dtype());
  run_matmul(r, x, w, bias, true, act, out, residual);
  return out;
}

void matmul_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) {
  static constexpr const char* op = "matmul";
  const MatmulShape s = matmul_shape(op, a, b);
  check_out(op, out, s.out_shape(), a.dtype());
  OpRunner r(op, p);
  place(r, opdefs::matmul, {&a, &b});
  run_batched(r, s, a, b, out);
}

Tensor matmul(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) {
  static constexpr const char* op = "matmul";
  const MatmulShape s = matmul_shape(op, a, b);
  OpRunner r(op, p);
  place(r, opdefs::matmul, {&a, &b});
  Tensor out = r.result(s.out_shape(), a.dtype());
  run_batched(r, s, a, b, out);
  return out;
}

}  // namespace lc
