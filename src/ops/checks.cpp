#include "ops/checks.h"

namespace lc {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void check_f32(const char* op, const char* name, const Tensor& t) {
  if (t.dtype() != DType::f32)
    throw_type(op, std::string("'") + name + "' must be float32, got " + to_string(t.dtype()) +
                       " with shape " + t.shape_str() + "; convert it with .astype(np.float32)");
}

void check_ndim(const char* op, const char* name, const Tensor& t, int ndim) {
  if (t.ndim() != ndim)
    throw_value(op, std::string("'") + name + "' must be " + std::to_string(ndim) + "-D, got " +
                        std::to_string(t.ndim()) + "-D with shape " + t.shape_str() +
                        (ndim == 2 ? "; reshape it to (rows, cols)" : ""));
}

void check_nonempty(const char* op, const char* name, const Tensor& t) {
  for (int i = 0; i < t.ndim(); ++i)
    if (t.size(i) == 0)
      throw_value(op, std::string("'") + name + "' has an empty dimension (shape " + t.shape_str() +
                          "); every dimension must be >= 1");
}

namespace {

bool same_dims(const Tensor& t, const std::int64_t* dims, int ndim) {
  if (t.ndim() != ndim) return false;
  for (int i = 0; i < ndim; ++i)
    if (t.size(i) != dims[i]) return false;
  return true;
}

void check_out_dims(const char* op, const Tensor& out, const std::int64_t* dims, int ndim) {
  const std::vector<std::int64_t> shape(dims, dims + ndim);  // only for messages below
  if (out.dtype() != DType::f32)
    throw OutDTypeError(std::string("[") + op + "] 'out' must be float32, got " +
                        to_string(out.dtype()) + "; allocate it with np.empty(" + shape_str(shape) +
                        ", dtype=np.float32)");
  if (!same_dims(out, dims, ndim))
    throw_value(op, "'out' has shape " + out.shape_str() + " but the result has shape " +
                        shape_str(shape) + "; allocate out with exactly that shape");
  if (!out.is_contiguous())
    throw_value(op, "'out' with shape " + out.shape_str() +
                        " is not C-contiguous; pass np.ascontiguousarray(out) or a fresh np.empty");
  if (!out.writable()) throw_value(op, "'out' is read-only; pass a writable array");
}

bool out_ok(const Tensor& out, const std::int64_t* dims, int ndim) {
  return out.dtype() == DType::f32 && same_dims(out, dims, ndim) && out.is_contiguous() &&
         out.writable();
}

}  // namespace

void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b) {
  if (!same_dims(b, a.shape_data(), a.ndim()))
    throw_value(op, std::string("'") + na + "' and '" + nb + "' must have the same shape, got " +
                        a.shape_str() + " and " + b.shape_str());
}

void check_out(const char* op, const Tensor& out, std::initializer_list<std::int64_t> shape) {
  if (!out_ok(out, shape.begin(), static_cast<int>(shape.size())))
    check_out_dims(op, out, shape.begin(), static_cast<int>(shape.size()));
}

void check_out(const char* op, const Tensor& out, const std::vector<std::int64_t>& shape) {
  if (!out_ok(out, shape.data(), static_cast<int>(shape.size())))
    check_out_dims(op, out, shape.data(), static_cast<int>(shape.size()));
}

void check_out_like(const char* op, const Tensor& out, const Tensor& like) {
  if (!out_ok(out, like.shape_data(), like.ndim()))
    check_out_dims(op, out, like.shape_data(), like.ndim());
}

}  // namespace lc
