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
  // By element size (bit patterns are copied, never converted): 2 = float16 / bfloat16,
  // 4 = float32 / int32, 8 = float64 / int64.
  switch (elem_size) {
    case 1:
      copy_rec(static_cast<std::uint8_t*>(dst), dst_strides, static_cast<const std::uint8_t*>(src),
               src_strides, shape, ndim);
      break;
    case 2:
      copy_rec(static_cast<std::uint16_t*>(dst), dst_strides,
               static_cast<const std::uint16_t*>(src), src_strides, shape, ndim);
      break;
    case 4:
      copy_rec(static_cast<std::uint32_t*>(dst), dst_strides,
               static_cast<const std::uint32_t*>(src), src_strides, shape, ndim);
      break;
    default:
      copy_rec(static_cast<std::uint64_t*>(dst), dst_strides,
               static_cast<const std::uint64_t*>(src), src_strides, shape, ndim);
      break;
  }
}

}  // namespace lc
