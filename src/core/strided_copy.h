// Host gather/scatter between two strided layouts of the same shape.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lc {

// Copies every element of `shape` from src (element strides) to dst (element strides).
void strided_copy(void* dst, const std::int64_t* dst_strides, const void* src,
                  const std::int64_t* src_strides, const std::int64_t* shape, int ndim,
                  std::size_t elem_size);

}  // namespace lc
