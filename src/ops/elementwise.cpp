// The elementwise family: vector_add / sub / mul / scale, matrix_sub, relu, gelu (same shapes)
// and add / sub / mul / div (numpy broadcasting): validation, placement, dispatch.
//
// Storage dtypes: float32, float16, bfloat16 everywhere, float64 on the CPU only (an op on
// float64 is placed on the CPU: "auto" never picks the GPU for it, and an explicit
// device="cuda" runs it on the CPU as a fallback, which explain/trace report). The result has
// the inputs' dtype; inputs of different dtypes are a TypeError.
//
// Operands on the op's device are read in place through their strides (a transposed view or a
// broadcast row costs no copy); operands on the other device are transferred contiguous first.
#include <algorithm>
#include <cstring>

#include "runtime/op_runner.h"
#include "ops/checks.h"
#include "ops/work.h"
#include "ops/registry.h"

namespace lc {

namespace {

struct EwSpec {
  const char* name;
  const OpDef* def;  // the op's registry entry (dtypes per backend, work estimate)
  EwKind kind;
  bool binary;
  int ndim;        // required ndim, 0 = any
  bool broadcast;  // numpy broadcasting (else binary operands need equal shapes)
};

// The kernel-side facts (which EwKind, how operands are checked); everything else about the op
// is its OpDef.
const EwSpec kSpecs[] = {
    {"vector_add", &opdefs::vector_add, EwKind::add, true, 0, false},
    {"vector_sub", &opdefs::vector_sub, EwKind::sub, true, 0, false},
    {"vector_mul", &opdefs::vector_mul, EwKind::mul, true, 0, false},
    {"matrix_sub", &opdefs::matrix_sub, EwKind::sub, true, 2, false},
    {"vector_scale", &opdefs::vector_scale, EwKind::scale, false, 0, false},
    {"relu", &opdefs::relu, EwKind::relu, false, 0, false},
    {"gelu", &opdefs::gelu, EwKind::gelu, false, 0, false},
    {"add", &opdefs::add, EwKind::add, true, 0, true},
    {"sub", &opdefs::sub, EwKind::sub, true, 0, true},
    {"mul", &opdefs::mul, EwKind::mul, true, 0, true},
    {"div", &opdefs::div, EwKind::div, true, 0, true},
};
// gelu(x, approximate="none"): reported as "gelu" like the tanh form.
const EwSpec kGeluErf = {"gelu", &opdefs::gelu, EwKind::gelu_erf, false, 0, false};

const EwSpec& find_spec(const char* op) {
  for (const EwSpec& s : kSpecs)
    if (std::strcmp(s.name, op) == 0) return s;
  throw_value("elementwise", std::string("unknown elementwise op '") + op + "'");
}

const EwSpec& gelu_spec(const char* approximate) {
  if (approximate == nullptr || std::strcmp(approximate, "tanh") == 0) return find_spec("gelu");
  if (std::strcmp(approximate, "none") == 0) return kGeluErf;
  throw_value("gelu", std::string("approximate must be \"tanh\" (the default) or \"none\" (exact "
                                  "erf form), got \"") + approximate + "\"");
}

// numpy's broadcast of two shapes (right-aligned; each pair equal or one of them 1).
void broadcast_into(const char* op, const Tensor& a, const Tensor& b, std::int64_t* out, int& nd) {
  nd = a.ndim() > b.ndim() ? a.ndim() : b.ndim();
  for (int i = 0; i < nd; ++i) {
    const int ia = a.ndim() - nd + i, ib = b.ndim() - nd + i;
    const std::int64_t da = ia >= 0 ? a.size(ia) : 1, db = ib >= 0 ? b.size(ib) : 1;
    if (da != db && da != 1 && db != 1)
      throw_value(op, "shapes " + a.shape_str() + " and " + b.shape_str() +
                          " cannot be broadcast together (dimension " + std::to_string(i) +
                          " of the broadcast result, dimensions aligned from the right: " + std::to_string(da) + " vs " +
                          std::to_string(db) + "); each dimension must match or be 1");
    out[i] = da == 1 ? db : da;
  }
}

bool is_float_dtype(DType d) {
  return d == DType::f32 || d == DType::f16 || d == DType::bf16 || d == DType::f64;
}

// Dtypes first (TypeError), then shapes (ValueError). The checks' functions run (and build
// messages) only on failure: the tiny-op path stays a few compares.
void check_ew(const EwSpec& s, const Tensor& a, const Tensor* b) {
  if (!is_float_dtype(a.dtype())) check_float(s.name, "a", a, /*allow_f64=*/true);
  if (s.binary) {
    if (!b) throw_value(s.name, "needs two inputs (a, b)");
    if (!is_float_dtype(b->dtype())) check_float(s.name, "b", *b, /*allow_f64=*/true);
    if (a.dtype() != b->dtype()) check_same_dtype(s.name, "a", a, "b", *b);
  }
  if (s.ndim) check_ndim(s.name, "a", a, s.ndim);
  if (s.binary) {
    if (s.ndim) check_ndim(s.name, "b", *b, s.ndim);
    if (!s.broadcast) check_same_shape(s.name, "a", a, "b", *b);
  }
}

// The result's shape: a's, or the broadcast shape. Fills dims/nd (no allocation).
void out_dims(const EwSpec& s, const Tensor& a, const Tensor* b, std::int64_t* dims, int& nd) {
  if (s.binary && s.broadcast) {
    broadcast_into(s.name, a, *b, dims, nd);
    return;
  }
  nd = a.ndim();
  for (int i = 0; i < nd; ++i) dims[i] = a.size(i);
}

std::int64_t count(const std::int64_t* dims, int nd) {
  std::int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= dims[i];
  return n;
}

WorkEstimate ew_work(const Tensor& a, std::int64_t n) {
  return elementwise_work(static_cast<double>(n), dtype_size(a.dtype()));
}

// The op's CUDA dtypes (registry.h: float64 has no CUDA kernels, such ops run on the CPU).
// The elementwise OpDefs have no size limits, so the dtype decides (no OpArgs on this path).
bool gpu_can_run(const EwSpec& s, const Tensor& a) {
  return s.def->cuda_dtypes.has(a.dtype());
}

// Operand strides over the result's dims (right-aligned, 0 where the operand has size 1).
void operand_strides(const Tensor& t, bool staged, int nd, std::int64_t* st) {
  std::int64_t contig = 1;
  for (int i = nd - 1; i >= 0; --i) {
    const int it = t.ndim() - nd + i;
    const std::int64_t size = it >= 0 ? t.size(it) : 1;
    const std::int64_t stride = staged ? contig : (it >= 0 ? t.stride(it) : 0);
    st[i] = (size == 1 || it < 0) ? 0 : stride;
    contig *= size;
  }
}

void run_ew(OpRunner& r, const EwSpec& s, const Tensor& a, const Tensor* b, float alpha,
            Tensor& out, const std::int64_t* dims, int nd) {
  ElementwiseArgs e;
  e.kind = s.kind;
  e.dtype = a.dtype();
  e.alpha = alpha;
  e.n = count(dims, nd);
  // (the same-shape ops' operands were checked to have equal shapes)
  const bool same_shape = !s.binary || !s.broadcast ||
                          (b->ndim() == a.ndim() &&
                           std::equal(a.shape_data(), a.shape_data() + a.ndim(), b->shape_data()));
  const bool here_a = a.device() == r.device();
  const bool here_b = !s.binary || b->device() == r.device();
  const bool direct_a = here_a && a.is_contiguous();
  const bool direct_b = s.binary && here_b && b->is_contiguous();
  if (same_shape && (!here_a || direct_a) && (!s.binary || !here_b || direct_b)) {
    // Contiguous, same shape: the fast path (operands on another device arrive contiguous).
    e.a = direct_a ? a.data() : r.in_raw(a);
    e.b = !s.binary ? nullptr : direct_b ? b->data() : r.in_raw(*b);
  } else {
    // Broadcasting or a strided operand: read each operand through its strides.
    e.a = here_a ? a.data() : r.in_raw(a);
    e.b = s.binary ? (here_b ? b->data() : r.in_raw(*b)) : nullptr;
    std::int64_t as[kEwMaxDims], bs[kEwMaxDims];
    operand_strides(a, !here_a, nd, as);
    if (s.binary) operand_strides(*b, !here_b, nd, bs);
    else std::fill(bs, bs + nd, 0);
    // Drop size-1 dims and merge dims that are contiguous for both operands (out is contiguous).
    e.ndim = 0;
    for (int i = 0; i < nd; ++i) {
      if (dims[i] == 1) continue;
      if (e.ndim > 0) {
        const int l = e.ndim - 1;
        if (e.a_strides[l] == as[i] * dims[i] && e.b_strides[l] == bs[i] * dims[i]) {
          e.shape[l] *= dims[i];
          e.a_strides[l] = as[i];
          e.b_strides[l] = bs[i];
          continue;
        }
      }
      e.shape[e.ndim] = dims[i];
      e.a_strides[e.ndim] = as[i];
      e.b_strides[e.ndim] = bs[i];
      ++e.ndim;
    }
    // One contiguous run after all, or a single element ([1] + [1, 1]): the fast path.
    if (e.ndim == 0 || (e.ndim == 1 && e.a_strides[0] == 1 && (!s.binary || e.b_strides[0] == 1)))
      e.ndim = 0;
  }
  e.out = r.out_raw(out);
  if (e.n > 0) r.launch([&](Backend& be) { be.elementwise(e); });
  r.finish();
}

void ew_into(const EwSpec& s, const Tensor& a, const Tensor* b, float alpha, Tensor& out,
             const ExecutionPolicy& p) {
  check_ew(s, a, b);
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  out_dims(s, a, b, dims, nd);
  // A valid out costs no allocation; check_out builds the message otherwise.
  bool ok = out.dtype() == a.dtype() && out.ndim() == nd && out.is_contiguous() && out.writable();
  for (int i = 0; ok && i < nd; ++i) ok = out.size(i) == dims[i];
  if (!ok) check_out(s.name, out, std::vector<std::int64_t>(dims, dims + nd), a.dtype());
  OpRunner r(s.name, p);
  r.place(ew_work(a, count(dims, nd)), {&a, s.binary ? b : nullptr}, gpu_can_run(s, a));
  run_ew(r, s, a, b, alpha, out, dims, nd);
}

Tensor ew_ret(const EwSpec& s, const Tensor& a, const Tensor* b, float alpha,
              const ExecutionPolicy& p) {
  check_ew(s, a, b);
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  out_dims(s, a, b, dims, nd);
  OpRunner r(s.name, p);
  r.place(ew_work(a, count(dims, nd)), {&a, s.binary ? b : nullptr}, gpu_can_run(s, a));
  Tensor out = r.result(std::vector<std::int64_t>(dims, dims + nd), a.dtype());
  run_ew(r, s, a, b, alpha, out, dims, nd);
  return out;
}

}  // namespace

std::vector<std::int64_t> elementwise_out_shape(const char* op, const Tensor& a, const Tensor* b) {
  const EwSpec& s = find_spec(op);
  check_ew(s, a, b);
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  out_dims(s, a, b, dims, nd);
  return {dims, dims + nd};
}

std::vector<std::int64_t> broadcast_shapes(const char* op, const Tensor& a, const Tensor& b) {
  std::int64_t dims[kEwMaxDims];
  int nd = 0;
  broadcast_into(op, a, b, dims, nd);
  return {dims, dims + nd};
}

void elementwise_into(const char* op, const Tensor& a, const Tensor* b, float alpha, Tensor& out,
                      const ExecutionPolicy& p) {
  const EwSpec& s = find_spec(op);
  if (!s.broadcast) {
    // The same-shape ops' hot path: out has a's shape and dtype (no vector built).
    check_ew(s, a, b);
    check_out_like(s.name, out, a);
    OpRunner r(s.name, p);
    r.place(ew_work(a, a.numel()), {&a, s.binary ? b : nullptr}, gpu_can_run(s, a));
    run_ew(r, s, a, b, alpha, out, a.shape_data(), a.ndim());
    return;
  }
  ew_into(s, a, b, alpha, out, p);
}

Tensor elementwise(const char* op, const Tensor& a, const Tensor* b, float alpha,
                   const ExecutionPolicy& p) {
  return ew_ret(find_spec(op), a, b, alpha, p);
}

Tensor add(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) { return ew_ret(find_spec("add"), a, &b, 1.0f, p); }
Tensor sub(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) { return ew_ret(find_spec("sub"), a, &b, 1.0f, p); }
Tensor mul(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) { return ew_ret(find_spec("mul"), a, &b, 1.0f, p); }
Tensor div(const Tensor& a, const Tensor& b, const ExecutionPolicy& p) { return ew_ret(find_spec("div"), a, &b, 1.0f, p); }
void add_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) { ew_into(find_spec("add"), a, &b, 1.0f, out, p); }
void sub_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) { ew_into(find_spec("sub"), a, &b, 1.0f, out, p); }
void mul_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) { ew_into(find_spec("mul"), a, &b, 1.0f, out, p); }
void div_into(const Tensor& a, const Tensor& b, Tensor& out, const ExecutionPolicy& p) { ew_into(find_spec("div"), a, &b, 1.0f, out, p); }

Tensor gelu(const Tensor& x, const char* approximate, const ExecutionPolicy& p) {
  return ew_ret(gelu_spec(approximate), x, nullptr, 1.0f, p);
}
void gelu_into(const Tensor& x, Tensor& out, const char* approximate, const ExecutionPolicy& p) {
  ew_into(gelu_spec(approximate), x, nullptr, 1.0f, out, p);
}

}  // namespace lc
