// Strided copy with dtype conversion in host memory (Backend::copy_strided on the CPU).
#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/strided_copy.h"

namespace lc::cpu {

namespace {

bool is_contiguous(const std::int64_t* shape, const std::int64_t* strides, int ndim) {
  std::int64_t expected = 1;
  for (int i = ndim - 1; i >= 0; --i) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

}  // namespace

void copy_strided(const StridedCopyArgs& a) {
  std::int64_t n = 1;
  for (int i = 0; i < a.ndim; ++i) n *= a.shape[i];
  if (n == 0) return;
  const std::size_t ssz = dtype_size(a.src_dtype), dsz = dtype_size(a.dst_dtype);
  if (a.src_dtype == a.dst_dtype) {
    strided_copy(a.dst, a.dst_strides, a.src, a.src_strides, a.shape, a.ndim, ssz);
    return;
  }
  // Conversion: gather the source into a contiguous block (unless it is one), convert into the
  // destination (or a contiguous block scattered afterwards).
  std::int64_t contig[kEwMaxDims];
  std::int64_t st = 1;
  for (int i = a.ndim - 1; i >= 0; --i) {
    contig[i] = st;
    st *= a.shape[i];
  }
  const void* src = a.src;
  std::vector<unsigned char> src_buf, dst_buf;
  if (!is_contiguous(a.shape, a.src_strides, a.ndim)) {
    src_buf.resize(static_cast<std::size_t>(n) * ssz);
    strided_copy(src_buf.data(), contig, a.src, a.src_strides, a.shape, a.ndim, ssz);
    src = src_buf.data();
  }
  if (is_contiguous(a.shape, a.dst_strides, a.ndim)) {
    convert_elements(a.src_dtype, src, a.dst_dtype, a.dst, n);
    return;
  }
  dst_buf.resize(static_cast<std::size_t>(n) * dsz);
  convert_elements(a.src_dtype, src, a.dst_dtype, dst_buf.data(), n);
  strided_copy(a.dst, a.dst_strides, dst_buf.data(), contig, a.shape, a.ndim, dsz);
}

namespace {
template <class I>
std::int64_t first_bad(const I* ids, std::int64_t n, std::int64_t vocab) {
  for (std::int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || static_cast<std::int64_t>(ids[i]) >= vocab) return i;
  return -1;
}
std::int64_t id_at(const void* ids, DType t, std::int64_t i) {
  return t == DType::i32 ? static_cast<const std::int32_t*>(ids)[i]
                         : static_cast<const std::int64_t*>(ids)[i];
}
}  // namespace

std::int64_t first_bad_index(const void* ids, DType ids_dtype, std::int64_t n, std::int64_t vocab) {
  if (ids_dtype == DType::i32) return first_bad(static_cast<const std::int32_t*>(ids), n, vocab);
  return first_bad(static_cast<const std::int64_t*>(ids), n, vocab);
}

void embedding(const EmbeddingArgs& a) {
  if (a.n <= 0 || a.dim <= 0) return;
  const std::size_t row = static_cast<std::size_t>(a.dim) * dtype_size(a.dtype);
  const auto* w = static_cast<const unsigned char*>(a.weight);
  auto* o = static_cast<unsigned char*>(a.out);
  auto rows = [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t i = lo; i < hi; ++i) {
      const std::int64_t id = id_at(a.ids, a.ids_dtype, i);
      unsigned char* dst = o + static_cast<std::size_t>(i) * row;
      if (id < 0 || id >= a.vocab) std::memset(dst, 0, row);  // never read out of bounds
      else std::memcpy(dst, w + static_cast<std::size_t>(id) * row, row);
    }
  };
  // Parallel only when the copy is large (a worker wake-up costs ~ a 64 KiB memcpy).
  if (static_cast<double>(a.n) * static_cast<double>(row) < 4.0 * 1024 * 1024) {
    rows(0, a.n);
    return;
  }
  const std::int64_t grain = std::max<std::int64_t>(1, static_cast<std::int64_t>((256 * 1024) / row));
  parallel_for(0, a.n, grain, rows);
}

}  // namespace lc::cpu
