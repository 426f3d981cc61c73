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
void check_ndim(const char* op, const char* name, const Tensor& t, int ndim);
void check_nonempty(const char* op, const char* name, const Tensor& t);
void check_same_shape(const char* op, const char* na, const Tensor& a, const char* nb,
                      const Tensor& b);
// `out` must be float32, contiguous, writable and exactly `shape`. Hot path: no allocation
// unless the check fails (the initializer_list form takes the shape from the call site).
void check_out(const char* op, const Tensor& out, std::initializer_list<std::int64_t> shape);
void check_out(const char* op, const Tensor& out, const std::vector<std::int64_t>& shape);
void check_out_like(const char* op, const Tensor& out, const Tensor& like);
std::string shape_str(const std::vector<std::int64_t>& s);

}  // namespace lc
