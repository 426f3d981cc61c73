// lc::Tensor: a strided array of any storage dtype (dtype.h) on one device. It either owns its memory
// (allocated through the device's backend) or borrows it (a numpy buffer, a caller's pointer),
// in which case an optional `owner` keeps the memory alive. A view (TensorView in Python) is a
// Tensor sharing the owner with other shape/strides, so no copy is made.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lightning_core/types.h"

namespace lc {

constexpr int kMaxDims = 8;

class Tensor {
 public:
  Tensor() = default;

  // New, uninitialised, contiguous memory on `device` (throws lc::OutOfMemory / lc::Unavailable).
  static Tensor empty(const std::vector<std::int64_t>& shape, DType dtype = DType::f32,
                      DeviceKind device = DeviceKind::cpu);
  // Borrows `data` (element strides). `owner` (may be null) is kept alive as long as the tensor.
  // `device_index`: which device of `device` holds the data (the GPU number; 0 on the CPU).
  static Tensor wrap(void* data, int ndim, const std::int64_t* shape, const std::int64_t* strides,
                     DType dtype, DeviceKind device, std::shared_ptr<void> owner = nullptr,
                     bool writable = true, int device_index = 0);
  // The same as `*this = wrap(...)` without an owner, written in place: the bindings convert
  // every numpy argument of every call this way (a temporary Tensor and its move cost ~20 ns).
  void rewrap(void* data, int ndim, const std::int64_t* shape, const std::int64_t* strides,
              DType dtype, DeviceKind device, bool writable);

  bool defined() const { return data_ != nullptr || (ndim_ > 0 && numel() == 0); }
  DType dtype() const { return dtype_; }
  DeviceKind device() const { return device_; }
  // Which device of that kind: the GPU number ("cuda:1" -> 1); 0 on the CPU. Tensors made by
  // empty() live on the thread's current device at the time.
  int device_index() const { return device_index_; }
  // True when both tensors' memory is on the very same device (kind and index).
  bool same_device(const Tensor& o) const {
    return device_ == o.device_ && device_index_ == o.device_index_;
  }
  int ndim() const { return ndim_; }
  std::int64_t size(int i) const { return shape_[i]; }
  std::int64_t stride(int i) const { return strides_[i]; }
  const std::int64_t* shape_data() const { return shape_.data(); }
  const std::int64_t* strides_data() const { return strides_.data(); }
  std::vector<std::int64_t> shape() const { return {shape_.begin(), shape_.begin() + ndim_}; }
  std::vector<std::int64_t> strides() const { return {strides_.begin(), strides_.begin() + ndim_}; }
  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;
  bool writable() const { return writable_; }
  void* data() const { return data_; }
  template <class T>
  T* data_as() const { return static_cast<T*>(data_); }
  const std::shared_ptr<void>& owner() const { return owner_; }

  // A copy on `device` (contiguous). Same device: returns a tensor sharing this memory.
  // `index` picks the GPU ("cuda:1"); -1: this tensor's own index when it is already on that
  // kind of device, else the thread's current device.
  Tensor to(DeviceKind device, int index = -1) const;
  // A contiguous tensor on the same device (this one if already contiguous).
  Tensor contiguous() const;
  // Deep copy into `dst` (same shape and dtype; any devices; any strides). Within one GPU a
  // strided copy is a kernel (Backend::copy_strided), never a trip through host memory.
  void copy_to(Tensor& dst) const;
  // A view with other shape/strides/offset over the same memory (no copy). Bounds-checked.
  Tensor view(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& strides,
              std::int64_t offset_elems = 0) const;
  // Transpose of a 2-D tensor (a view).
  Tensor t() const;
  // ---- views (no copy; device-agnostic: only shape, strides and offset change) ----
  // `shape` with at most one -1 (inferred). A view when the elements are laid out as a
  // contiguous block, else a contiguous copy first (numpy's reshape).
  Tensor reshape(std::vector<std::int64_t> shape) const;
  // Dimensions reordered: result dim i is this tensor's dim dims[i] (a permutation).
  Tensor permute(const std::vector<int>& dims) const;
  // Dimensions d0 and d1 swapped (negative indices count from the end).
  Tensor transpose(int d0, int d1) const;
  // Basic slicing of one dimension: elements start, start + step, ... before stop (Python
  // semantics: negative start/stop count from the end and are clamped; step != 0, may be < 0).
  Tensor slice(int dim, std::int64_t start, std::int64_t stop, std::int64_t step) const;
  // Dimension `dim` removed at `index` (negative counts from the end).
  Tensor select(int dim, std::int64_t index) const;
  // A new dimension of size 1 at `dim` (0 <= dim <= ndim).
  Tensor unsqueeze(int dim) const;

  // A new contiguous tensor holding the values converted to `dtype`, on the same device
  // (numpy's astype: always a copy; float -> int truncates). Device tensors convert on the
  // device (one strided-copy kernel, no host round trip).
  Tensor astype(DType dtype) const;
  // True when the memory spans of the two tensors intersect (same device, both non-empty):
  // numpy's may_share_memory rule, by bounds, so it may say yes for interleaved views that
  // share no element. Ops use it to detect an `out` that aliases an input.
  bool may_overlap(const Tensor& other) const {
    if (!same_device(other)) return false;
    std::uintptr_t a0, a1, b0, b1;
    byte_range(a0, a1);
    other.byte_range(b0, b1);
    return a0 < a1 && b0 < b1 && a0 < b1 && b0 < a1;
  }
  // [lo, hi) byte addresses this tensor's elements cover; lo == hi when it has none.
  void byte_range(std::uintptr_t& lo, std::uintptr_t& hi) const {
    std::int64_t neg = 0, pos = 0;
    for (int i = 0; i < ndim_; ++i) {
      if (shape_[i] == 0) {
        lo = hi = 0;
        return;
      }
      const std::int64_t ext = (shape_[i] - 1) * strides_[i];
      if (ext < 0) neg += ext; else pos += ext;
    }
    const auto esz = static_cast<std::int64_t>(dtype_size(dtype_));
    const auto base = reinterpret_cast<std::uintptr_t>(data_);
    lo = base + static_cast<std::uintptr_t>(neg * esz);
    hi = base + static_cast<std::uintptr_t>((pos + 1) * esz);
  }

  std::string shape_str() const;  // "[128, 64]"

 private:
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
  // Base allocation for view bounds checks: [base_, base_ + base_bytes_).
  void* base_ = nullptr;
  std::size_t base_bytes_ = 0;
  std::array<std::int64_t, kMaxDims> shape_{};
  std::array<std::int64_t, kMaxDims> strides_{};
  int ndim_ = 0;
  DType dtype_ = DType::f32;
  DeviceKind device_ = DeviceKind::cpu;
  std::int8_t device_index_ = 0;
  bool writable_ = true;
};

}  // namespace lc
