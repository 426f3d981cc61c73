#include "core/strided_copy.h"

#include <cstdint>
#include <cstring>

namespace lc {

namespace {
template <class T>
void copy_rec(T* dst, const std::int64_t* ds, const T* src, const std::int64_t* ss,
              const std::int64_t* shape, int ndim) {
  if (ndim == 1) {
    const std::int64_t n = shape[0], d = ds[0], s = ss[0];
    if (d == 1 && s == 1) {
      std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
    } else {
      for (std::int64_t i = 0; i < n; ++i) dst[i * d] = src[i * s];
    }
    return;
  }
  for (std::int64_t i = 0; i < shape[0]; ++i)
    copy_rec(dst + i * ds[0], ds + 1, src + i * ss[0], ss + 1, shape + 1, ndim - 1);
}
}  // namespace

void strided_copy(void* dst, const std::int64_t* dst_strides, const void* src,
                  const std::int64_t* src_strides, const std::int64_t* shape, int ndim,
                  std::size_t elem_size) {
  for (int i = 0; i < ndim; ++i)
    if (shape[i] == 0) return;
  if (ndim == 0) {
    std::memcpy(dst, src, elem_size);
    return;
  }
  if (elem_size == 2)  // float16 / bfloat16: moved as raw 16-bit words
    copy_rec(static_cast<std::uint16_t*>(dst), dst_strides, static_cast<const std::uint16_t*>(src),
             src_strides, shape, ndim);
  else if (elem_size == 4)
    copy_rec(static_cast<float*>(dst), dst_strides, static_cast<const float*>(src), src_strides,
             shape, ndim);
  else
    copy_rec(static_cast<double*>(dst), dst_strides, static_cast<const double*>(src), src_strides,
             shape, ndim);
}

}  // namespace lc
