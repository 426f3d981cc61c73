// Device copies: the strided copy with dtype conversion (Backend::copy_strided) and the
// embedding gather with its id check.
//
// copy_strided: one kernel family, templated on the source and destination storage types (all
// 36 pairs of float32/float64/float16/bfloat16/int32/int64). The host side first orders the
// dimensions by decreasing destination stride (so consecutive threads write consecutive
// addresses: coalesced on the destination), drops size-1 dimensions and merges dimensions that
// are contiguous in both layouts; a copy that ends up as one contiguous run of the same dtype is
// a cudaMemcpyAsync. Index math is int64 (the grid is 1-D and grid-strided: no y/z limits).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "backends/cuda/check.h"
#include "backends/cuda/kernels.h"
#include "backends/cuda/launch.h"

namespace lc::cuda {

namespace {

static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2, "16-bit storage types");

template <class T>
__device__ __forceinline__ double to_d(T v) {
  if constexpr (std::is_same_v<T, __half>) return static_cast<double>(__half2float(v));
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return static_cast<double>(__bfloat162float(v));
  else return static_cast<double>(v);
}

// v truncated to a float with the lowest bit set when inexact ("round to odd"): rounding that
// float to a 16-bit type gives v rounded once (a float keeps 13+ bits beyond either), as the
// host's to_f16(double) / to_bf16(double) do, with the same NaN handling as the float path.
__device__ __forceinline__ float round_to_odd_float(double v) {
  const float f = __double2float_rz(v);
  if (isnan(v) || static_cast<double>(f) == v) return f;
  return __uint_as_float(__float_as_uint(f) | 1u);
}

// The conversions of convert_elements (dtype.h): floats round once to nearest even, float -> int
// truncates toward zero, NaN / out of range give the minimum.
template <class D>
__device__ __forceinline__ D from_d(double v) {
  if constexpr (std::is_same_v<D, __half>) return __float2half_rn(round_to_odd_float(v));
  else if constexpr (std::is_same_v<D, __nv_bfloat16>) return __float2bfloat16_rn(round_to_odd_float(v));
  else if constexpr (std::is_integral_v<D>) {
    constexpr double lo = static_cast<double>(std::numeric_limits<D>::min());
    constexpr double hi = -lo;
    if (!(v >= lo && v < hi)) return std::numeric_limits<D>::min();
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

template <class S, class D>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<S, D>) return v;
  else if constexpr (std::is_integral_v<S> && std::is_integral_v<D>) return static_cast<D>(v);
  else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, __half>) return __float2half_rn(v);
  else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, __nv_bfloat16>) return __float2bfloat16_rn(v);
  else return from_d<D>(to_d(v));
}

struct CopyDesc {
  int ndim;
  std::int64_t shape[kEwMaxDims];
  std::int64_t ss[kEwMaxDims];
  std::int64_t ds[kEwMaxDims];
};

template <class S, class D>
__global__ void __launch_bounds__(256) strided_copy_kernel(const S* src, D* dst, std::int64_t n,
                                                           CopyDesc d) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    std::int64_t rem = i, so = 0, dof = 0;
#pragma unroll
    for (int k = kEwMaxDims - 1; k >= 0; --k) {
      if (k < d.ndim) {
        const std::int64_t c = rem % d.shape[k];
        rem /= d.shape[k];
        so += c * d.ss[k];
        dof += c * d.ds[k];
      }
    }
    dst[dof] = convert<S, D>(src[so]);
  }
}

template <class T> struct DevType { using type = T; };
template <> struct DevType<float16> { using type = __half; };
template <> struct DevType<bfloat16> { using type = __nv_bfloat16; };

int grid_for(std::int64_t work, int sm_count) {
  const std::int64_t want = (work + 255) / 256;
  return static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>(want, static_cast<std::int64_t>(sm_count) * 8)));
}

// Canonical layout: dims ordered by decreasing |dst stride|, size-1 dims dropped, dims that
// are contiguous in both layouts merged. Returns the element count.
std::int64_t simplify(const StridedCopyArgs& a, CopyDesc& d) {
  std::int64_t n = 1;
  for (int i = 0; i < a.ndim; ++i) n *= a.shape[i];
  int order[kEwMaxDims];
  int m = 0;
  for (int i = 0; i < a.ndim; ++i)
    if (a.shape[i] != 1) order[m++] = i;
  auto absl = [](std::int64_t v) { return v < 0 ? -v : v; };
  std::stable_sort(order, order + m, [&](int x, int y) {
    return absl(a.dst_strides[x]) > absl(a.dst_strides[y]);
  });
  d.ndim = 0;
  for (int j = 0; j < m; ++j) {
    const int i = order[j];
    if (d.ndim > 0) {
      const int l = d.ndim - 1;
      // The previous (outer) dim continues into this one in both layouts: merge.
      if (d.ss[l] == a.src_strides[i] * a.shape[i] && d.ds[l] == a.dst_strides[i] * a.shape[i]) {
        d.shape[l] *= a.shape[i];
        d.ss[l] = a.src_strides[i];
        d.ds[l] = a.dst_strides[i];
        continue;
      }
    }
    d.shape[d.ndim] = a.shape[i];
    d.ss[d.ndim] = a.src_strides[i];
    d.ds[d.ndim] = a.dst_strides[i];
    ++d.ndim;
  }
  return n;
}

// ---- embedding --------------------------------------------------------------------------------
// One block row per id: threads copy the row in 16-byte units when the row and both bases are
// 16-byte aligned, else element by element. An id outside [0, vocab) writes zeros.
template <class I>
__global__ void __launch_bounds__(256) embedding_kernel(const I* ids, const unsigned char* w,
                                                        unsigned char* out, std::int64_t n,
                                                        std::int64_t vocab, std::int64_t row_bytes,
                                                        int vec16) {
  for (std::int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const std::int64_t id = static_cast<std::int64_t>(ids[r]);
    const bool ok = id >= 0 && id < vocab;
    unsigned char* o = out + r * row_bytes;
    const unsigned char* src = w + (ok ? id : 0) * row_bytes;
    if (vec16) {
      const std::int64_t nv = row_bytes / 16;
      uint4* o4 = reinterpret_cast<uint4*>(o);
      const uint4* s4 = reinterpret_cast<const uint4*>(src);
      for (std::int64_t j = threadIdx.x; j < nv; j += blockDim.x)
        o4[j] = ok ? s4[j] : make_uint4(0, 0, 0, 0);
    } else {
      const std::int64_t nh = row_bytes / 2;  // every supported dtype is a multiple of 2 bytes
      std::uint16_t* o2 = reinterpret_cast<std::uint16_t*>(o);
      const std::uint16_t* s2 = reinterpret_cast<const std::uint16_t*>(src);
      for (std::int64_t j = threadIdx.x; j < nh; j += blockDim.x) o2[j] = ok ? s2[j] : 0;
    }
  }
}

// *first = min(*first, i) over the positions i of ids outside [0, vocab).
template <class I>
__global__ void __launch_bounds__(256) bad_id_kernel(const I* ids, std::int64_t n,
                                                     std::int64_t vocab,
                                                     unsigned long long* first) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const std::int64_t id = static_cast<std::int64_t>(ids[i]);
    if (id < 0 || id >= vocab) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

}  // namespace

void launch_copy_strided(const StridedCopyArgs& a, int sm_count, cudaStream_t s) {
  CopyDesc d{};
  const std::int64_t n = simplify(a, d);
  if (n == 0) return;
  const std::size_t esz = dtype_size(a.src_dtype);
  if (a.src_dtype == a.dst_dtype && (d.ndim == 0 || (d.ndim == 1 && d.ss[0] == 1 && d.ds[0] == 1))) {
    if (a.src != a.dst)
      LC_CUDA_CHECK(cudaMemcpyAsync(a.dst, a.src, static_cast<std::size_t>(n) * esz,
                                    cudaMemcpyDeviceToDevice, s));
    return;
  }
  if (d.ndim == 0) {  // one element (every dimension 1)
    d.ndim = 1;
    d.shape[0] = 1;
    d.ss[0] = d.ds[0] = 0;
  }
  dispatch_dtype(a.src_dtype, [&](auto s_tag) {
    using S = typename DevType<decltype(s_tag)>::type;
    dispatch_dtype(a.dst_dtype, [&](auto d_tag) {
      using D = typename DevType<decltype(d_tag)>::type;
      launch(strided_copy_kernel<S, D>, grid_for(n, sm_count), 256, 0, s, "strided_copy_kernel",
             static_cast<const S*>(a.src), static_cast<D*>(a.dst), n, d);
    });
  });
}

void launch_embedding(const EmbeddingArgs& a, int sm_count, cudaStream_t s) {
  if (a.n <= 0 || a.dim <= 0) return;
  const std::int64_t row = a.dim * static_cast<std::int64_t>(dtype_size(a.dtype));
  const bool vec16 = row % 16 == 0 && reinterpret_cast<std::uintptr_t>(a.weight) % 16 == 0 &&
                     reinterpret_cast<std::uintptr_t>(a.out) % 16 == 0;
  const int blocks = static_cast<int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(a.n, static_cast<std::int64_t>(sm_count) * 16)));
  const auto* w = static_cast<const unsigned char*>(a.weight);
  auto* o = static_cast<unsigned char*>(a.out);
  if (a.ids_dtype == DType::i32)
    launch(embedding_kernel<std::int32_t>, blocks, 256, 0, s, "embedding_kernel",
           static_cast<const std::int32_t*>(a.ids), w, o, a.n, a.vocab, row, vec16 ? 1 : 0);
  else
    launch(embedding_kernel<std::int64_t>, blocks, 256, 0, s, "embedding_kernel",
           static_cast<const std::int64_t*>(a.ids), w, o, a.n, a.vocab, row, vec16 ? 1 : 0);
}

void launch_bad_id_check(const void* ids, DType ids_dtype, std::int64_t n, std::int64_t vocab,
                         unsigned long long* first, int sm_count, cudaStream_t s) {
  if (n <= 0) return;
  const int blocks = grid_for(n, sm_count);
  if (ids_dtype == DType::i32)
    launch(bad_id_kernel<std::int32_t>, blocks, 256, 0, s, "bad_id_kernel",
           static_cast<const std::int32_t*>(ids), n, vocab, first);
  else
    launch(bad_id_kernel<std::int64_t>, blocks, 256, 0, s, "bad_id_kernel",
           static_cast<const std::int64_t*>(ids), n, vocab, first);
}

}  // namespace lc::cuda
