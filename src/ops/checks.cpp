#include "ops/checks.h"

#include <algorithm>
#include <utility>

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

void check_float(const char* op, const char* name, const Tensor& t, bool allow_f64) {
  const DType d = t.dtype();
  if (d == DType::f32 || d == DType::f16 || d == DType::bf16 || (allow_f64 && d == DType::f64))
    return;
  throw_type(op, std::string("'") + name + "' must be float32, float16 or bfloat16" +
                     (allow_f64 ? " (or float64)" : "") + ", got " + to_string(d) +
                     " with shape " + t.shape_str() + "; convert it with .astype(np.float32)" +
                     (d == DType::f64 && !allow_f64 ? " (float64 is computed on the CPU only by "
                                                      "the ops that say so)"
                                                    : ""));
}

void check_same_dtype(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b) {
  if (a.dtype() != b.dtype())
    throw_type(op, std::string("'") + na + "' is " + to_string(a.dtype()) + " but '" + nb +
                       "' is " + to_string(b.dtype()) + "; ops do not mix storage dtypes, convert "
                       "one with .astype(...)");
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

void check_out_dims(const char* op, const Tensor& out, const std::int64_t* dims, int ndim,
                    DType dtype) {
  const std::vector<std::int64_t> shape(dims, dims + ndim);  // only for messages below
  if (out.dtype() != dtype)
    throw OutDTypeError(std::string("[") + op + "] 'out' must be " + to_string(dtype) + ", got " +
                        to_string(out.dtype()) + "; allocate it with np.empty(" + shape_str(shape) +
                        ", dtype=" + (dtype == DType::bf16 ? "ml_dtypes." : "np.") +
                        to_string(dtype) + ")");
  if (!same_dims(out, dims, ndim))
    throw_value(op, "'out' has shape " + out.shape_str() + " but the result has shape " +
                        shape_str(shape) + "; allocate out with exactly that shape");
  if (!out.is_contiguous())
    throw_value(op, "'out' with shape " + out.shape_str() +
                        " is not C-contiguous; pass np.ascontiguousarray(out) or a fresh np.empty");
  if (!out.writable()) throw_value(op, "'out' is read-only; pass a writable array");
}

bool out_ok(const Tensor& out, const std::int64_t* dims, int ndim, DType dtype) {
  return out.dtype() == dtype && same_dims(out, dims, ndim) && out.is_contiguous() &&
         out.writable();
}

}  // namespace

void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b) {
  if (!same_dims(b, a.shape_data(), a.ndim()))
    throw_value(op, std::string("'") + na + "' and '" + nb + "' must have the same shape, got " +
                        a.shape_str() + " and " + b.shape_str());
}

void check_out(const char* op, const Tensor& out, std::initializer_list<std::int64_t> shape,
               DType dtype) {
  if (!out_ok(out, shape.begin(), static_cast<int>(shape.size()), dtype))
    check_out_dims(op, out, shape.begin(), static_cast<int>(shape.size()), dtype);
}

void check_out(const char* op, const Tensor& out, const std::vector<std::int64_t>& shape,
               DType dtype) {
  if (!out_ok(out, shape.data(), static_cast<int>(shape.size()), dtype))
    check_out_dims(op, out, shape.data(), static_cast<int>(shape.size()), dtype);
}

void check_out_strided(const char* op, const Tensor& out, const std::vector<std::int64_t>& shape,
                       DType dtype) {
  if (out_ok(out, shape.data(), static_cast<int>(shape.size()), dtype)) return;  // contiguous
  if (out.dtype() != dtype || !same_dims(out, shape.data(), static_cast<int>(shape.size()))) {
    check_out_dims(op, out, shape.data(), static_cast<int>(shape.size()), dtype);  // throws
    return;
  }
  if (!out.writable()) throw_value(op, "'out' is read-only; pass a writable array");
  // No internal overlap: with the dimensions longer than 1 ordered by stride, each stride
  // exceeds the farthest offset the smaller ones reach (sufficient, and what permuted / sliced
  // views of one buffer satisfy).
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size)
  for (int i = 0; i < out.ndim(); ++i)
    if (out.size(i) > 1) dims.emplace_back(out.stride(i), out.size(i));
  std::sort(dims.begin(), dims.end());
  std::int64_t reach = 0;
  for (const auto& [st, n] : dims) {
    if (st <= reach)
      throw_value(op, "'out' with shape " + out.shape_str() + " is a view whose elements share "
                      "memory (a broadcast or overlapping strides); pass an array with distinct "
                      "elements, e.g. a fresh np.empty(" + shape_str(shape) + ")");
    reach += st * (n - 1);
  }
}

void check_out_like(const char* op, const Tensor& out, const Tensor& like) {
  if (!out_ok(out, like.shape_data(), like.ndim(), like.dtype()))
    check_out_dims(op, out, like.shape_data(), like.ndim(), like.dtype());
}

}  // namespace lc
