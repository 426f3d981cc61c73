// vector_add / sub / mul / scale, matrix_sub, relu, gelu: validation, placement, dispatch.
#include <cstring>

#include "core/op_runner.h"
#include "ops/checks.h"
#include "ops/work.h"

namespace lc {

namespace {

struct EwSpec {
  const char* name;
  EwKind kind;
  bool binary;
  int ndim;  // required ndim, 0 = any
};

constexpr EwSpec kSpecs[] = {
    {"vector_add", EwKind::add, true, 0},   {"vector_sub", EwKind::sub, true, 0},
    {"vector_mul", EwKind::mul, true, 0},   {"matrix_sub", EwKind::sub, true, 2},
    {"vector_scale", EwKind::scale, false, 0}, {"relu", EwKind::relu, false, 0},
    {"gelu", EwKind::gelu, false, 0},
};

const EwSpec& find_spec(const char* op) {
  for (const EwSpec& s : kSpecs)
    if (std::strcmp(s.name, op) == 0) return s;
  throw_value("elementwise", std::string("unknown elementwise op '") + op + "'");
}

void check_ew(const EwSpec& s, const Tensor& a, const Tensor* b) {
  check_f32(s.name, "a", a);
  if (s.ndim) check_ndim(s.name, "a", a, s.ndim);
  if (s.binary) {
    if (!b) throw_value(s.name, "needs two inputs (a, b)");
    check_f32(s.name, "b", *b);
    if (s.ndim) check_ndim(s.name, "b", *b, s.ndim);
    check_same_shape(s.name, "a", a, "b", *b);
  }
}

WorkEstimate ew_work(const Tensor& a) { return elementwise_work(static_cast<double>(a.numel())); }

void run_ew(OpRunner& r, const EwSpec& s, const Tensor& a, const Tensor* b, float alpha, Tensor& out) {
  ElementwiseArgs e;
  e.kind = s.kind;
  e.a = r.in(a);
  e.b = s.binary ? r.in(*b) : nullptr;
  e.n = a.numel();
  e.alpha = alpha;
  e.out = r.out(out);
  if (e.n > 0) r.launch([&](Backend& be) { be.elementwise(e); });
  r.finish();
}

}  // namespace

std::vector<std::int64_t> elementwise_out_shape(const char* op, const Tensor& a, const Tensor* b) {
  const EwSpec& s = find_spec(op);
  check_ew(s, a, b);
  return a.shape();
}

void elementwise_into(const char* op, const Tensor& a, const Tensor* b, float alpha, Tensor& out,
                      const ExecutionPolicy& p) {
  const EwSpec& s = find_spec(op);
  check_ew(s, a, b);
  check_out_like(s.name, out, a);
  OpRunner r(s.name, p);
  r.place(ew_work(a), {&a, s.binary ? b : nullptr});
  run_ew(r, s, a, b, alpha, out);
}

Tensor elementwise(const char* op, const Tensor& a, const Tensor* b, float alpha,
                   const ExecutionPolicy& p) {
  const EwSpec& s = find_spec(op);
  check_ew(s, a, b);
  OpRunner r(s.name, p);
  r.place(ew_work(a), {&a, s.binary ? b : nullptr});
  Tensor out = r.result(a.shape());
  run_ew(r, s, a, b, alpha, out);
  return out;
}

}  // namespace lc
