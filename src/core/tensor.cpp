// lc::Tensor: construction, views, contiguity and copies across devices.
#include "lightning_core/tensor.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "backends/backend.h"
#include "core/strided_copy.h"
#include "lightning_core/errors.h"
#include "lightning_core/sizes.h"

namespace lc {

namespace {
// The backend's description of copying every element of `src` into `dst` (same shape).
StridedCopyArgs strided_copy_args(const Tensor& src, const Tensor& dst) {
  StridedCopyArgs a;
  a.src = src.data();
  a.dst = dst.data();
  a.src_dtype = src.dtype();
  a.dst_dtype = dst.dtype();
  a.ndim = src.ndim();
  for (int i = 0; i < a.ndim; ++i) {
    a.shape[i] = src.size(i);
    a.src_strides[i] = src.stride(i);
    a.dst_strides[i] = dst.stride(i);
  }
  return a;
}
}  // namespace

std::int64_t Tensor::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape_[i];
  return n;
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no elements: strides are meaningless (numpy gives 0 here)
  std::int64_t expected = 1;
  for (int i = ndim_ - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::shape_str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim_; ++i) os << (i ? ", " : "") << shape_[i];
  os << ']';
  return os.str();
}

Tensor Tensor::empty(const std::vector<std::int64_t>& shape, DType dtype, DeviceKind device) {
  if (shape.size() > static_cast<std::size_t>(kMaxDims))
    throw_value("Tensor", "at most " + std::to_string(kMaxDims) + " dimensions are supported");
  // Validates every dimension and that the byte count fits (no wrap-around to a tiny size).
  checked_numel("Tensor", shape.data(), static_cast<int>(shape.size()), dtype_size(dtype));
  Tensor t;
  t.ndim_ = static_cast<int>(shape.size());
  t.dtype_ = dtype;
  t.device_ = device;
  std::int64_t stride = 1;
  for (int i = t.ndim_ - 1; i >= 0; --i) {
    t.shape_[i] = shape[i];
    t.strides_[i] = stride;
    stride *= shape[i];
  }
  Backend& be = get_backend(device);
  // On the thread's current device (ops and to() make the wanted one current first).
  if (device != DeviceKind::cpu) t.device_index_ = static_cast<std::int8_t>(be.current_device());
  const std::size_t bytes = t.nbytes();
  void* p = be.alloc(bytes);
  Backend* bep = &be;
  t.owner_ = std::shared_ptr<void>(p, [bep](void* q) { bep->free(q); });
  t.data_ = p;
  t.base_ = p;
  t.base_bytes_ = bytes;
  return t;
}

Tensor Tensor::wrap(void* data, int ndim, const std::int64_t* shape, const std::int64_t* strides,
                    DType dtype, DeviceKind device, std::shared_ptr<void> owner, bool writable,
                    int device_index) {
  Tensor t;
  t.rewrap(data, ndim, shape, strides, dtype, device, writable);
  if (device_index < 0 || device_index > kMaxDeviceIndex || (device == DeviceKind::cpu && device_index != 0))
    throw_value("Tensor", "device index " + std::to_string(device_index) + " is not valid for " +
                              to_string(device));
  t.device_index_ = static_cast<std::int8_t>(device_index);
  t.owner_ = std::move(owner);
  return t;  // base_ unknown (borrowed): views of it are not bounds-checked against a base.
}

void Tensor::rewrap(void* data, int ndim, const std::int64_t* shape, const std::int64_t* strides,
                    DType dtype, DeviceKind device, bool writable) {
  if (ndim > kMaxDims || ndim < 0)
    throw_value("Tensor", "at most " + std::to_string(kMaxDims) + " dimensions are supported");
  checked_numel("Tensor", shape, ndim, dtype_size(dtype));
  data_ = data;
  owner_.reset();
  base_ = nullptr;
  base_bytes_ = 0;
  ndim_ = ndim;
  dtype_ = dtype;
  device_ = device;
  device_index_ = 0;
  writable_ = writable;
  for (int i = 0; i < ndim; ++i) {
    shape_[i] = shape[i];
    strides_[i] = strides[i];
  }
}

Tensor Tensor::to(DeviceKind device, int index) const {
  if (device == device_ && (index < 0 || index == device_index_)) return *this;
  DeviceScope scope(device, index);
  Tensor dst = Tensor::empty(shape(), dtype_, device);
  copy_to(dst);
  return dst;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  DeviceScope scope(device_, device_index_);
  Tensor dst = Tensor::empty(shape(), dtype_, device_);
  copy_to(dst);
  return dst;
}

void Tensor::copy_to(Tensor& dst) const {
  if (dst.dtype_ != dtype_)
    throw_type("Tensor.copy_to", "dtype mismatch: " + shape_str() + " " + to_string(dtype_) +
                                     " -> " + dst.shape_str() + " " + to_string(dst.dtype_) +
                                     "; convert the source to the destination's dtype first");
  if (dst.ndim_ != ndim_ || dst.shape() != shape())
    throw_value("Tensor.copy_to", "shape mismatch: " + shape_str() + " -> " + dst.shape_str());
  if (!dst.writable_) throw_value("Tensor.copy_to", "destination is read-only");
  const std::size_t bytes = nbytes();
  if (bytes == 0) return;
  if (device_ == dst.device_ && device_ != DeviceKind::cpu && device_index_ != dst.device_index_) {
    // Two devices of one backend (cuda:0 -> cuda:1): peer to peer when the backend can and
    // both sides are contiguous, else through host memory.
    if (is_contiguous() && dst.is_contiguous() &&
        get_backend(device_).copy_peer(dst.data_, dst.device_index_, data_, device_index_, bytes))
      return;
    Tensor host = to(DeviceKind::cpu);
    host.copy_to(dst);
    return;
  }
  // From here on at most one device besides the host is involved: make it current.
  const Tensor& dev_side = device_ != DeviceKind::cpu ? *this : dst;
  DeviceScope scope(dev_side.device_, dev_side.device_index_);
  if (may_overlap(dst) && !(data_ == dst.data_ && strides() == dst.strides())) {
    // Source and destination share memory (overlapping views of one buffer): read everything
    // first, then write, so no element is overwritten before it is read.
    Tensor tmp = Tensor::empty(shape(), dtype_, device_);
    copy_to(tmp);
    tmp.copy_to(dst);
    return;
  }
  if (same_device(dst) && data_ == dst.data_ && strides() == dst.strides())
    return;  // the very same elements
  const std::size_t esz = dtype_size(dtype_);
  if (is_contiguous() && dst.is_contiguous()) {
    if (device_ == DeviceKind::cpu && dst.device_ == DeviceKind::cpu) {
      std::memmove(dst.data_, data_, bytes);
    } else if (device_ == DeviceKind::cpu) {
      get_backend(dst.device_).copy_from_host(dst.data_, data_, bytes);
    } else if (dst.device_ == DeviceKind::cpu) {
      get_backend(device_).copy_to_host(dst.data_, data_, bytes);
    } else if (device_ == dst.device_) {
      get_backend(device_).copy_within(dst.data_, data_, bytes);
    } else {
      Tensor host = to(DeviceKind::cpu);
      host.copy_to(dst);
    }
    return;
  }
  // Strided on either side, one device: the backend's strided copy (a kernel on the GPU; no
  // host round trip).
  if (device_ == dst.device_) {
    get_backend(device_).copy_strided(strided_copy_args(*this, dst));
    return;
  }
  // Strided, between host and device: gather/scatter on the host around one transfer.
  if (device_ == DeviceKind::cpu && dst.device_ == DeviceKind::cpu) {
    strided_copy(dst.data_, dst.strides_.data(), data_, strides_.data(), shape_.data(), ndim_, esz);
    return;
  }
  Tensor src_host = device_ == DeviceKind::cpu ? *this : Tensor::empty(shape(), dtype_, DeviceKind::cpu);
  if (device_ != DeviceKind::cpu) {
    if (is_contiguous()) {
      get_backend(device_).copy_to_host(src_host.data_, data_, bytes);
    } else {
      // Download the whole span the view covers, then gather on the host.
      std::int64_t lo = 0, hi = 0;
      for (int i = 0; i < ndim_; ++i) {
        const std::int64_t ext = (shape_[i] - 1) * strides_[i];
        if (ext < 0) lo += ext; else hi += ext;
      }
      const std::size_t span = static_cast<std::size_t>(hi - lo + 1) * esz;
      std::vector<unsigned char> buf(span);
      get_backend(device_).copy_to_host(buf.data(), static_cast<const char*>(data_) + lo * std::int64_t(esz), span);
      strided_copy(src_host.data_, src_host.strides_.data(), buf.data() - lo * std::int64_t(esz),
                   strides_.data(), shape_.data(), ndim_, esz);
    }
  }
  if (dst.device_ == DeviceKind::cpu) {
    strided_copy(dst.data_, dst.strides_.data(), src_host.data_, src_host.strides_.data(),
                 shape_.data(), ndim_, esz);
  } else if (dst.is_contiguous()) {
    Tensor c = src_host.contiguous();
    get_backend(dst.device_).copy_from_host(dst.data_, c.data_, bytes);
    get_backend(dst.device_).synchronize();  // `c` dies at scope end
  } else {
    // A strided view of device memory: read the span it covers, scatter the values on the host,
    // write the span back (elements of the span outside the view go back unchanged; the
    // download waits for queued work, so none of them is stale).
    std::int64_t lo = 0, hi = 0;
    for (int i = 0; i < ndim_; ++i) {
      const std::int64_t ext = (shape_[i] - 1) * dst.strides_[i];
      if (ext < 0) lo += ext; else hi += ext;
    }
    const std::size_t span = static_cast<std::size_t>(hi - lo + 1) * esz;
    std::vector<unsigned char> buf(span);
    Backend& be = get_backend(dst.device_);
    char* first = static_cast<char*>(dst.data_) + lo * std::int64_t(esz);
    be.copy_to_host(buf.data(), first, span);
    strided_copy(buf.data() - lo * std::int64_t(esz), dst.strides_.data(), src_host.data_,
                 src_host.strides_.data(), shape_.data(), ndim_, esz);
    be.copy_from_host(first, buf.data(), span);
    be.synchronize();  // `buf` dies at scope end
  }
}

Tensor Tensor::view(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& strides,
                    std::int64_t offset_elems) const {
  if (shape.size() != strides.size() || shape.size() > static_cast<std::size_t>(kMaxDims))
    throw_value("TensorView", "shape and strides must have the same length (<= 8)");
  const std::int64_t esz = static_cast<std::int64_t>(dtype_size(dtype_));
  // The view's element count and the extent of its span must be representable (a huge
  // stride-0 view would otherwise report a wrapped-around size).
  const bool empty_view =
      checked_numel("TensorView", shape.data(), static_cast<int>(shape.size()), esz) == 0;
  std::int64_t lo = offset_elems, hi = offset_elems;
  if (!empty_view)
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const std::int64_t ext = checked_mul("TensorView", shape[i] - 1, strides[i], "view extent");
      if (ext < 0) lo = checked_add("TensorView", lo, ext, "view extent");
      else hi = checked_add("TensorView", hi, ext, "view extent");
    }
  // Bounds: against the owned allocation when known, else against this tensor's own span.
  std::int64_t base_lo, base_hi;
  if (base_) {
    base_lo = (static_cast<char*>(base_) - static_cast<char*>(data_)) / esz;
    base_hi = base_lo + static_cast<std::int64_t>(base_bytes_) / esz - 1;
  } else {
    // Element indices [base_lo, base_hi] this tensor itself covers (none when it is empty).
    base_lo = 0;
    base_hi = numel() == 0 ? -1 : 0;
    if (numel() > 0)
      for (int i = 0; i < ndim_; ++i) {
        const std::int64_t ext = (shape_[i] - 1) * strides_[i];
        if (ext < 0) base_lo += ext; else base_hi += ext;
      }
  }
  if (!empty_view && (lo < base_lo || hi > base_hi))
    throw_value("TensorView", "view (offset " + std::to_string(offset_elems) +
                                  ") reaches outside the tensor's memory");
  Tensor v = *this;
  v.ndim_ = static_cast<int>(shape.size());
  for (int i = 0; i < v.ndim_; ++i) {
    v.shape_[i] = shape[i];
    v.strides_[i] = strides[i];
  }
  v.data_ = static_cast<char*>(data_) + offset_elems * esz;
  return v;
}

Tensor Tensor::astype(DType dtype) const {
  // One strided, converting copy on this tensor's device (a kernel on the GPU).
  DeviceScope scope(device_, device_index_);
  Tensor dst = Tensor::empty(shape(), dtype, device_);
  if (numel() > 0) get_backend(device_).copy_strided(strided_copy_args(*this, dst));
  return dst;
}

namespace {
std::string dims_str(const std::vector<std::int64_t>& d) {
  std::string r = "[";
  for (std::size_t i = 0; i < d.size(); ++i) r += (i ? ", " : "") + std::to_string(d[i]);
  return r + "]";
}

int wrap_dim(int d, int ndim, const char* op) {
  if (d < -ndim || d >= ndim)
    throw_value(op, "dimension " + std::to_string(d) + " is out of range for a " +
                        std::to_string(ndim) + "-D tensor");
  return d < 0 ? d + ndim : d;
}
}  // namespace

Tensor Tensor::reshape(std::vector<std::int64_t> new_shape) const {
  static constexpr const char* op = "Tensor.reshape";
  if (new_shape.size() > static_cast<std::size_t>(kMaxDims))
    throw_value(op, "at most " + std::to_string(kMaxDims) + " dimensions are supported");
  int infer = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < new_shape.size(); ++i) {
    if (new_shape[i] == -1) {
      if (infer >= 0) throw_value(op, "only one dimension can be -1");
      infer = static_cast<int>(i);
    } else if (new_shape[i] < 0) {
      throw_value(op, "negative dimension " + std::to_string(new_shape[i]));
    } else {
      known = checked_mul(op, known, new_shape[i], "the new shape");
    }
  }
  const std::int64_t n = numel();
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      throw_value(op, "cannot infer the -1 dimension: " + std::to_string(n) +
                          " elements do not divide into " + dims_str(new_shape));
    new_shape[static_cast<std::size_t>(infer)] = n / known;
    known = n;
  }
  if (known != n)
    throw_value(op, "cannot reshape " + shape_str() + " (" + std::to_string(n) + " elements) to " +
                        dims_str(new_shape));
  const Tensor src = contiguous();
  std::vector<std::int64_t> strides(new_shape.size());
  std::int64_t st = 1;
  for (int i = static_cast<int>(new_shape.size()) - 1; i >= 0; --i) {
    strides[static_cast<std::size_t>(i)] = st;
    st *= std::max<std::int64_t>(new_shape[static_cast<std::size_t>(i)], 1);
  }
  return src.view(new_shape, strides, 0);
}

Tensor Tensor::permute(const std::vector<int>& dims) const {
  static constexpr const char* op = "Tensor.permute";
  if (static_cast<int>(dims.size()) != ndim_)
    throw_value(op, "needs " + std::to_string(ndim_) + " dimensions for a tensor of shape " +
                        shape_str() + ", got " + std::to_string(dims.size()));
  std::vector<bool> seen(static_cast<std::size_t>(ndim_), false);
  std::vector<std::int64_t> shape(dims.size()), strides(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i) {
    const int d = wrap_dim(dims[i], ndim_, op);
    if (seen[static_cast<std::size_t>(d)]) throw_value(op, "dimension " + std::to_string(d) + " is repeated");
    seen[static_cast<std::size_t>(d)] = true;
    shape[i] = shape_[d];
    strides[i] = strides_[d];
  }
  return view(shape, strides, 0);
}

Tensor Tensor::transpose(int d0, int d1) const {
  std::vector<int> dims(static_cast<std::size_t>(ndim_));
  for (int i = 0; i < ndim_; ++i) dims[static_cast<std::size_t>(i)] = i;
  std::swap(dims[static_cast<std::size_t>(wrap_dim(d0, ndim_, "Tensor.transpose"))],
            dims[static_cast<std::size_t>(wrap_dim(d1, ndim_, "Tensor.transpose"))]);
  return permute(dims);
}

Tensor Tensor::slice(int dim, std::int64_t start, std::int64_t stop, std::int64_t step) const {
  static constexpr const char* op = "Tensor.__getitem__";
  const int d = wrap_dim(dim, ndim_, op);
  if (step == 0) throw_value(op, "slice step cannot be zero");
  const std::int64_t n = shape_[d];
  // Python's slice.indices(n), with start/stop already resolved to integers.
  auto clamp = [&](std::int64_t v, std::int64_t lo, std::int64_t hi) {
    if (v < 0) v += n;
    return v < lo ? lo : (v > hi ? hi : v);
  };
  std::int64_t len;
  if (step > 0) {
    start = clamp(start, 0, n);
    stop = clamp(stop, 0, n);
    len = stop > start ? (stop - start + step - 1) / step : 0;
  } else {
    start = clamp(start, -1, n - 1);
    stop = clamp(stop, -1, n - 1);
    len = start > stop ? (start - stop - step - 1) / (-step) : 0;
  }
  std::vector<std::int64_t> shape = this->shape(), strides = this->strides();
  shape[static_cast<std::size_t>(d)] = len;
  strides[static_cast<std::size_t>(d)] = checked_mul(op, strides_[d], step, "slice stride");
  const std::int64_t offset = len > 0 ? checked_mul(op, start, strides_[d], "slice offset") : 0;
  return view(shape, strides, offset);
}

Tensor Tensor::select(int dim, std::int64_t index) const {
  static constexpr const char* op = "Tensor.__getitem__";
  const int d = wrap_dim(dim, ndim_, op);
  const std::int64_t n = shape_[d];
  if (index < -n || index >= n)
    throw_value(op, "index " + std::to_string(index) + " is out of range for dimension " +
                        std::to_string(d) + " of size " + std::to_string(n));
  if (index < 0) index += n;
  std::vector<std::int64_t> shape, strides;
  for (int i = 0; i < ndim_; ++i)
    if (i != d) {
      shape.push_back(shape_[i]);
      strides.push_back(strides_[i]);
    }
  return view(shape, strides, index * strides_[d]);
}

Tensor Tensor::unsqueeze(int dim) const {
  if (dim < 0 || dim > ndim_)
    throw_value("Tensor.unsqueeze", "dimension " + std::to_string(dim) + " is out of range");
  std::vector<std::int64_t> shape = this->shape(), strides = this->strides();
  const std::int64_t st = dim < ndim_ ? strides_[dim] * shape_[dim] : 1;
  shape.insert(shape.begin() + dim, 1);
  strides.insert(strides.begin() + dim, st == 0 ? 1 : st);
  return view(shape, strides, 0);
}

Tensor Tensor::t() const {
  if (ndim_ != 2) throw_value("Tensor.t", "needs a 2-D tensor, got " + shape_str());
  return view({shape_[1], shape_[0]}, {strides_[1], strides_[0]}, 0);
}

}  // namespace lc
