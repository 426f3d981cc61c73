// Argument checks shared by the op front-ends. Every failure names the op, the argument, the
// shapes involved and how to fix the call (errors.h lists the exception types).
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"

namespace lc {

// `out` has the wrong dtype: a ValueError per the op contract that Python also reports as a
// TypeError (the bindings map it to a class deriving from both).
struct OutDTypeError : ValueError {
  using ValueError::ValueError;
};

void check_f32(const char* op, const char* name, const Tensor& t);
// `t` is a floating dtype the op computes in: float32, float16 or bfloat16, plus float64 when
// `allow_f64` (CPU-only ops). Anything else is a TypeError naming the op and the dtypes it takes.
void check_float(const char* op, const char* name, const Tensor& t, bool allow_f64 = false);
// `b` has the same dtype as `a` (ops do not mix storage dtypes; convert with astype first).
void check_same_dtype(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b);
void check_ndim(const char* op, const char* name, const Tensor& t, int ndim);
void check_nonempty(const char* op, const char* name, const Tensor& t);
void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b);
// `out` must have `dtype` (float32 unless given), be contiguous, writable and exactly `shape`.
// Hot path: no allocation unless the check fails (the initializer_list form takes the shape
// from the call site). check_out_like takes shape and dtype from `like`.
void check_out(const char* op, const Tensor& out, std::initializer_list<std::int64_t> shape,
               DType dtype = DType::f32);
void check_out(const char* op, const Tensor& out, const std::vector<std::int64_t>& shape,
               DType dtype = DType::f32);
void check_out_like(const char* op, const Tensor& out, const Tensor& like);
// As check_out, but `out` may be a strided view (e.g. a permuted slice of a bigger buffer) as
// long as no two of its elements share memory (a broadcast / overlapping view is a ValueError).
// For ops that write strided outputs themselves or through OpRunner's scratch (attention_into).
void check_out_strided(const char* op, const Tensor& out, const std::vector<std::int64_t>& shape,
                       DType dtype = DType::f32);
std::string shape_str(const std::vector<std::int64_t>& s);

}  // namespace lc
