// lc.Tensor: an array of any storage dtype (float32, float64, float16, bfloat16, int32, int64;
// include/lightning_core/dtype.h) on "cpu" or "cuda" with numpy interop both ways (bfloat16 as
// ml_dtypes.bfloat16).
// CPU tensors expose __array_interface__, so np.asarray(t) is zero-copy; .numpy() copies a
// device tensor to the host. lc.Tensor64 and lc.TensorView are thin Python subclasses
// (python/lightning_core/_tensor.py).
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "convert.h"
#include "lightning_core/errors.h"
#include "backends/backend.h"
#include "lightning_core/runtime.h"
#include "numpy_api.h"

namespace lcpy {

namespace {

// A place for data: the device kind and index ("cuda:1"; index -1 = the current device).
struct Place {
  lc::DeviceKind kind;
  int index;
};

Place parse_place(const std::string& s, const char* op) {
  int index = -1;
  lc::DeviceRequest r = lc::parse_device_index(s, op, &index);
  if (r == lc::DeviceRequest::automatic)
    return {lc::cuda_available() ? lc::DeviceKind::cuda : lc::DeviceKind::cpu, -1};
  const lc::DeviceKind kind = lc::require_device(r, op);
  if (index >= 0 && kind != lc::DeviceKind::cpu) lc::require_device_index(kind, index, op);
  return {kind, index};
}

// "cpu", "cuda:0", "cuda:1": where a tensor lives, index included (for messages and repr).
std::string place_name(const lc::Tensor& t) {
  if (t.device() == lc::DeviceKind::cpu) return "cpu";
  return std::string(lc::to_string(t.device())) + ":" + std::to_string(t.device_index());
}

// Builds a tensor on `device` holding a copy of `data` (any array-like) converted to `dtype`.
void init_tensor(lc::Tensor* self, nb::handle data, const std::string& device, nb::handle dtype_h,
                 bool share) {
  lc::Tensor* src_lc = nullptr;
  if (share) {
    // Alias another tensor (TensorView's constructor): same memory, no copy.
    if (!nb::try_cast<lc::Tensor*>(data, src_lc) || !src_lc)
      lc::throw_type("Tensor", "share=True needs an lc.Tensor to alias");
    new (self) lc::Tensor(*src_lc);
    return;
  }
  // dtype=None: an lc.Tensor source keeps its dtype; numpy data keeps float16, bfloat16, int32
  // and int64; anything else (float32, float64, lists) is float32, the original Tensor's dtype
  // (float64 data stays float64 with dtype="float64" or lc.Tensor64).
  lc::DType dt = lc::DType::f32;
  if (!dtype_h.is_none()) {
    dt = dtype_param(dtype_h, "Tensor");
  } else if (nb::try_cast<lc::Tensor*>(data, src_lc) && src_lc) {
    dt = src_lc->dtype();
  } else if (PyArray_Check(data.ptr())) {
    lc::DType d;
    if (dtype_from_npy(PyArray_TYPE(reinterpret_cast<PyArrayObject*>(data.ptr())), &d) &&
        d != lc::DType::f64)
      dt = d;
  } else if (PyArray_IsScalar(data.ptr(), Generic)) {
    // numpy scalars (np.float16(1.5), a 0-d array's [()]) keep their dtype as 0-d arrays do.
    lc::DType d;
    PyArray_Descr* descr = PyArray_DescrFromScalar(data.ptr());
    if (descr) {
      if (dtype_from_npy(descr->type_num, &d) && d != lc::DType::f64) dt = d;
      Py_DECREF(descr);
    } else {
      PyErr_Clear();
    }
  }
  src_lc = nullptr;
  const Place place = parse_place(device, "Tensor");
  const lc::DeviceKind dev = place.kind;
  lc::DeviceScope scope(place.kind, place.index);
  if (nb::try_cast<lc::Tensor*>(data, src_lc) && src_lc) {
    // Always a copy (as for numpy data): to()/contiguous() would alias a same-device source.
    lc::Tensor src = src_lc->dtype() == dt ? *src_lc : src_lc->astype(dt);
    lc::Tensor t = lc::Tensor::empty(src.shape(), dt, dev);
    src.copy_to(t);
    new (self) lc::Tensor(std::move(t));
    return;
  }
  // numpy converts to the target dtype; bfloat16 without ml_dtypes goes through float32 and
  // our own rounding.
  lc::DType via = dt;
  int type = -1;
  if (dt == lc::DType::bf16) {
    try {
      type = npy_type(dt, "Tensor");
    } catch (const lc::TypeError&) {
      via = lc::DType::f32;
    }
  }
  if (type < 0) type = npy_type(via, "Tensor");
  PyObject* arr = PyArray_FromAny(data.ptr(), PyArray_DescrFromType(type), 0, lc::kMaxDims,
                                  NPY_ARRAY_CARRAY_RO | NPY_ARRAY_FORCECAST, nullptr);
  if (!arr) throw nb::python_error();
  nb::object hold = nb::steal(arr);
  PyArrayObject* a = reinterpret_cast<PyArrayObject*>(arr);
  std::vector<std::int64_t> shape(PyArray_DIMS(a), PyArray_DIMS(a) + PyArray_NDIM(a));
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  lc::Tensor src = lc::Tensor::wrap(PyArray_DATA(a), static_cast<int>(shape.size()), shape.data(),
                                    strides.data(), via, lc::DeviceKind::cpu);
  if (via != dt) src = src.astype(dt);
  lc::Tensor t = lc::Tensor::empty(shape, dt, dev);
  src.copy_to(t);
  new (self) lc::Tensor(std::move(t));
}

// The fields the array interface protocols (numpy's and CUDA's, both version 3) share: shape,
// strides in bytes (None when C-contiguous and `none_if_contiguous`), typestr, data, version.
nb::dict interface_dict(const lc::Tensor& t, const char* typestr, bool none_if_contiguous) {
  nb::dict d;
  nb::list shape, strides;
  const std::size_t isz = lc::dtype_size(t.dtype());
  for (int i = 0; i < t.ndim(); ++i) {
    shape.append(t.size(i));
    strides.append(t.stride(i) * static_cast<std::int64_t>(isz));
  }
  d["shape"] = nb::tuple(shape);
  d["strides"] = none_if_contiguous && t.is_contiguous() ? nb::none() : nb::object(nb::tuple(strides));
  d["typestr"] = typestr;
  // A zero-size array may carry a null pointer (both protocols allow 0 for it).
  d["data"] = nb::make_tuple(reinterpret_cast<std::uintptr_t>(t.data()), !t.writable());
  d["version"] = 3;
  return d;
}

nb::dict array_interface(nb::handle self_h) {
  lc::Tensor& t = nb::cast<lc::Tensor&>(self_h);
  if (t.device() != lc::DeviceKind::cpu)
    throw nb::attribute_error("__array_interface__ is only defined for CPU tensors; call .numpy()");
  const char* typestr = lc::dtype_info(t.dtype()).typestr;
  if (!*typestr)  // bfloat16: numpy has no typestr for it; np.asarray falls back to __array__
    throw nb::attribute_error("__array_interface__ has no typestr for bfloat16; use .numpy()");
  return interface_dict(t, typestr, false);
}

// __cuda_array_interface__ (version 3) of a CUDA tensor: what CuPy, Numba and PyTorch read to
// use the memory without a copy. Queued work is synchronised first, so "stream" is None (the
// consumer needs no synchronisation). CPU tensors and bfloat16 (no typestr) raise AttributeError,
// so hasattr() is False for them, as for torch's CPU tensors.
nb::dict cuda_array_interface(nb::handle self_h) {
  lc::Tensor& t = nb::cast<lc::Tensor&>(self_h);
  if (t.device() != lc::DeviceKind::cuda)
    throw nb::attribute_error("__cuda_array_interface__ is only defined for CUDA tensors; this one "
                              "lives on the CPU (use __array_interface__ or .numpy())");
  const char* typestr = lc::dtype_info(t.dtype()).typestr;
  if (!*typestr)
    throw nb::attribute_error("__cuda_array_interface__ has no typestr for bfloat16; use DLPack "
                              "(torch.from_dlpack(t) / cupy.from_dlpack(t))");
  {
    nb::gil_scoped_release nogil;
    lc::DeviceScope scope(t.device(), t.device_index());
    lc::get_backend(t.device()).synchronize();
  }
  nb::dict d = interface_dict(t, typestr, true);
  d["stream"] = nb::none();
  return d;
}

// Zero-copy: an lc.Tensor over a numpy array's memory that keeps the array alive.
lc::Tensor from_numpy(nb::handle arr_h) {
  if (!PyArray_Check(arr_h.ptr())) lc::throw_type("Tensor.from_numpy", "expects a numpy.ndarray");
  PyArrayObject* a = reinterpret_cast<PyArrayObject*>(arr_h.ptr());
  lc::DType dt;
  if (!dtype_from_npy(PyArray_TYPE(a), &dt))
    lc::throw_type("Tensor.from_numpy", "expects a float32, float64, float16, bfloat16, int32 or "
                                        "int64 array");
  if (!PyArray_ISALIGNED(a) || PyArray_ISBYTESWAPPED(a))
    lc::throw_value("Tensor.from_numpy", "array is misaligned or byte-swapped; pass np.ascontiguousarray(arr)");
  const int nd = PyArray_NDIM(a);
  if (nd > lc::kMaxDims) lc::throw_value("Tensor.from_numpy", "too many dimensions");
  const npy_intp isz = PyArray_ITEMSIZE(a);
  std::int64_t shape[lc::kMaxDims], strides[lc::kMaxDims];
  for (int i = 0; i < nd; ++i) {
    shape[i] = PyArray_DIMS(a)[i];
    if (PyArray_STRIDES(a)[i] % isz != 0)
      lc::throw_value("Tensor.from_numpy", "strides are not a multiple of the item size");
    strides[i] = PyArray_STRIDES(a)[i] / isz;
  }
  PyObject* obj = arr_h.ptr();
  Py_INCREF(obj);
  std::shared_ptr<void> owner(obj, [](void* o) {
    nb::gil_scoped_acquire gil;
    Py_DECREF(static_cast<PyObject*>(o));
  });
  return lc::Tensor::wrap(PyArray_DATA(a), nd, shape, strides, dt, lc::DeviceKind::cpu,
                          std::move(owner), PyArray_ISWRITEABLE(a));
}

nb::object to_numpy(nb::handle self_h) {
  lc::Tensor& t = nb::cast<lc::Tensor&>(self_h);
  if (t.device() == lc::DeviceKind::cpu) return numpy_view(t, self_h);
  lc::Tensor host = t.to(lc::DeviceKind::cpu);
  nb::object owner = wrap_tensor(std::move(host));
  return numpy_view(nb::cast<lc::Tensor&>(owner), owner);
}

// A shape from Python: reshape(2, 3), reshape((2, 3)) and reshape([2, 3]) alike.
std::vector<std::int64_t> shape_args(nb::args args, const char* op) {
  nb::handle src = args;
  if (args.size() == 1 && (PyTuple_Check(args[0].ptr()) || PyList_Check(args[0].ptr()))) src = args[0];
  std::vector<std::int64_t> out;
  for (nb::handle h : src) out.push_back(int_param(h, op, "shape", INT64_MIN, INT64_MAX));
  return out;
}

// Basic indexing (ints, slices, None, ...): always a view, as numpy's basic indexing is.
lc::Tensor getitem(const lc::Tensor& self, nb::handle key) {
  static constexpr const char* op = "Tensor.__getitem__";
  nb::tuple items = PyTuple_Check(key.ptr()) ? nb::borrow<nb::tuple>(key) : nb::make_tuple(key);
  int consumed = 0, ellipses = 0, added = 0, dropped = 0;
  for (nb::handle it : items) {
    PyObject* o = it.ptr();
    if (o == Py_Ellipsis) ++ellipses;
    else if (it.is_none()) ++added;
    else ++consumed;
    if (o != Py_Ellipsis && !it.is_none() && !PySlice_Check(o)) ++dropped;  // an integer index
  }
  if (ellipses > 1) lc::throw_value(op, "an index can only have a single ellipsis ('...')");
  if (consumed > self.ndim())
    lc::throw_value(op, "too many indices for a " + std::to_string(self.ndim()) + "-D tensor");
  if (self.ndim() - dropped + added > lc::kMaxDims)
    lc::throw_value(op, "the result would have " + std::to_string(self.ndim() - dropped + added) +
                            " dimensions; lightning_core tensors have at most " +
                            std::to_string(lc::kMaxDims) + " (index with fewer None)");
  // Slices and integers first (t never has more dimensions than self), then the None axes at
  // their final positions, in increasing order: indexing left to right would pass through more
  // than kMaxDims dimensions when Nones come before integers (a 4-D tensor, five Nones, then an
  // integer: 9 dimensions on the way to 8).
  lc::Tensor t = self;
  int d = 0, out_pos = 0;
  int new_axes[lc::kMaxDims];
  int n_new = 0;
  for (nb::handle it : items) {
    PyObject* o = it.ptr();
    if (o == Py_Ellipsis) {
      d += self.ndim() - consumed;
      out_pos += self.ndim() - consumed;
    } else if (it.is_none()) {
      new_axes[n_new++] = out_pos++;  // n_new <= added <= kMaxDims (checked above)
    } else if (PySlice_Check(o)) {
      Py_ssize_t start, stop, step;
      if (PySlice_Unpack(o, &start, &stop, &step) < 0) {
        const bool zero_step = PyErr_ExceptionMatches(PyExc_ValueError);
        PyErr_Clear();
        if (zero_step) lc::throw_value(op, "slice step cannot be zero");
        lc::throw_type(op, "slice indices must be integers or None");
      }
      t = t.slice(d++, start, stop, step);
      ++out_pos;
    } else if (!PyBool_Check(o) && (PyLong_Check(o) || PyArray_IsScalar(o, Integer))) {
      t = t.select(d, int_param(it, op, "index", INT64_MIN, INT64_MAX));
    } else {
      lc::throw_type(op, std::string("only basic indexing is supported (ints, slices, None, "
                                     "...), got ") + py_type_name(o));
    }
  }
  for (int i = 0; i < n_new; ++i) t = t.unsqueeze(new_axes[i]);
  return t;
}

// t[key]: basic indexing here (a view, no copy); a key with index arrays (numpy, lists, an
// lc.Tensor of ints) or boolean masks goes to lightning_core/_indexing.py, which gathers
// through the embedding op (the tracer records the same steps as graph nodes).
nb::object getitem_any(nb::handle self_h, nb::handle key) {
  nb::tuple items = PyTuple_Check(key.ptr()) ? nb::borrow<nb::tuple>(key) : nb::make_tuple(key);
  for (nb::handle it : items) {
    PyObject* o = it.ptr();
    const bool basic = o == Py_Ellipsis || it.is_none() || PySlice_Check(o) ||
                       (!PyBool_Check(o) && (PyLong_Check(o) || PyArray_IsScalar(o, Integer)));
    if (!basic)
      return nb::module_::import_("lightning_core._indexing").attr("advanced_getitem")(self_h, key);
  }
  return nb::cast(getitem(nb::cast<const lc::Tensor&>(self_h), key), nb::rv_policy::move);
}

// t + o, t - o, t * o, t / o (and reflected), -t, t @ o: lightning_core/_tensor_ops.py (the op
// functions on the tensor's device; NotImplemented for other operand types).
nb::object tensor_binary(const char* op, nb::handle self_h, nb::handle other, bool reverse) {
  return nb::module_::import_("lightning_core._tensor_ops").attr("binary")(op, self_h, other, reverse);
}
nb::object tensor_matmul(nb::handle self_h, nb::handle other, bool reverse) {
  return nb::module_::import_("lightning_core._tensor_ops").attr("matmul")(self_h, other, reverse);
}

// The values of small tensors (numpy's formatting), else the shape alone.
std::string tensor_repr(nb::handle self_h) {
  const lc::Tensor& t = nb::cast<const lc::Tensor&>(self_h);
  std::string tail = std::string(", dtype=") + lc::to_string(t.dtype()) + ", device=\"" +
                     lc::to_string(t.device()) + "\"" + (t.is_contiguous() ? "" : ", strided") + ")";
  if (t.numel() <= 64) {
    try {
      nb::object a = to_numpy(self_h);
      nb::object txt = nb::module_::import_("numpy").attr("array2string")(
          a, nb::arg("separator") = ", ", nb::arg("prefix") = "lightning_core.Tensor(");
      return "lightning_core.Tensor(" + nb::cast<std::string>(txt) + tail;
    } catch (const std::exception&) {  // e.g. bfloat16 without ml_dtypes
      PyErr_Clear();
    }
  }
  return "lightning_core.Tensor(shape=" + t.shape_str() + tail;
}

// ---- DLPack (through nanobind's ndarray, which implements the protocol) --------------------
constexpr int kDLCPU = 1, kDLCUDA = 2;

nb::dlpack::dtype dl_dtype(lc::DType t) {
  using C = nb::dlpack::dtype_code;
  const auto bits = static_cast<std::uint8_t>(8 * lc::dtype_size(t));
  switch (t) {
    case lc::DType::bf16: return {static_cast<std::uint8_t>(C::Bfloat), bits, 1};
    case lc::DType::i32:
    case lc::DType::i64: return {static_cast<std::uint8_t>(C::Int), bits, 1};
    default: return {static_cast<std::uint8_t>(C::Float), bits, 1};
  }
}

bool dtype_from_dl(nb::dlpack::dtype d, lc::DType* out) {
  using C = nb::dlpack::dtype_code;
  if (d.lanes != 1) return false;
  for (const lc::DTypeInfo& info : lc::kDTypes)
    if (dl_dtype(info.dtype) == d) {
      *out = info.dtype;
      return true;
    }
  (void)C::Float;
  return false;
}

// t.__dlpack__(stream=None, max_version=None, dl_device=None, copy=None): a capsule over the
// tensor's memory (no copy); the capsule keeps the tensor alive. Device tensors: the queued work
// is synchronised first, so a consumer on any stream reads finished data.
nb::object dlpack_export(nb::handle self_h, nb::kwargs kwargs) {
  const lc::Tensor& t = nb::cast<const lc::Tensor&>(self_h);
  if (kwargs.contains("copy") && !kwargs["copy"].is_none() && PyObject_IsTrue(kwargs["copy"].ptr()) == 1)
    lc::throw_value("Tensor.__dlpack__", "copy=True is not supported; export, then copy with the "
                                         "consumer (or use .contiguous() / .to() first)");
  if (t.device() != lc::DeviceKind::cpu) {
    nb::gil_scoped_release nogil;
    lc::DeviceScope scope(t.device(), t.device_index());
    lc::get_backend(t.device()).synchronize();
  }
  std::size_t shape[lc::kMaxDims];
  std::int64_t strides[lc::kMaxDims];
  for (int i = 0; i < t.ndim(); ++i) {
    shape[i] = static_cast<std::size_t>(t.size(i));
    strides[i] = t.stride(i);
  }
  const int dev = t.device() == lc::DeviceKind::cpu ? kDLCPU : kDLCUDA;
  nb::object nd;
  if (t.writable())
    nd = nb::cast(nb::ndarray<>(t.data(), static_cast<std::size_t>(t.ndim()), shape, self_h,
                                strides, dl_dtype(t.dtype()), dev, t.device_index()));
  else
    nd = nb::cast(nb::ndarray<nb::ro>(t.data(), static_cast<std::size_t>(t.ndim()), shape, self_h,
                                      strides, dl_dtype(t.dtype()), dev, t.device_index()));
  // nanobind turns a framework-less ndarray into the "dltensor" capsule itself (the legacy,
  // unversioned form, which every consumer accepts whatever max_version it asks for).
  if (PyCapsule_CheckExact(nd.ptr())) return nd;
  nb::dict kw;
  for (auto [k, v] : kwargs)
    if (nb::cast<std::string>(nb::str(k)) != "copy") kw[k] = v;
  return nd.attr("__dlpack__")(**kw);
}

nb::tuple dlpack_device(const lc::Tensor& t) {
  return nb::make_tuple(t.device() == lc::DeviceKind::cpu ? kDLCPU : kDLCUDA, t.device_index());
}

// lc.from_dlpack(obj): an lc.Tensor over the memory of any DLPack producer (numpy, torch,
// CuPy, JAX, ...) without a copy; it keeps the producer's buffer alive.
lc::Tensor from_dlpack(nb::handle obj) {
  static constexpr const char* op = "from_dlpack";
  nb::ndarray<> nd;
  if (!nb::try_cast<nb::ndarray<>>(obj, nd))
    lc::throw_type(op, std::string("expects an object with __dlpack__ (numpy, torch, CuPy, JAX ...), "
                                   "got ") + py_type_name(obj.ptr()));
  lc::DType dt;
  if (!dtype_from_dl(nd.dtype(), &dt))
    lc::throw_type(op, "unsupported dtype (code " + std::to_string(nd.dtype().code) + ", " +
                           std::to_string(nd.dtype().bits) + " bits); lc tensors hold float32, "
                           "float64, float16, bfloat16, int32 or int64");
  lc::DeviceKind dev;
  int index = 0;
  if (nd.device_type() == kDLCPU) {
    dev = lc::DeviceKind::cpu;
  } else if (nd.device_type() == kDLCUDA && nd.device_id() >= 0 &&
             nd.device_id() <= lc::kMaxDeviceIndex) {
    dev = lc::DeviceKind::cuda;
    index = static_cast<int>(nd.device_id());
  } else {
    lc::throw_value(op, "memory on device type " + std::to_string(nd.device_type()) + " id " +
                            std::to_string(nd.device_id()) + " is not supported (cpu and cuda:N)");
  }
  if (nd.ndim() > static_cast<std::size_t>(lc::kMaxDims))
    lc::throw_value(op, "at most " + std::to_string(lc::kMaxDims) + " dimensions are supported");
  std::int64_t shape[lc::kMaxDims], strides[lc::kMaxDims];
  for (std::size_t i = 0; i < nd.ndim(); ++i) {
    shape[i] = static_cast<std::int64_t>(nd.shape(i));
    strides[i] = nd.stride(i);
  }
  auto* keep = new nb::ndarray<>(nd);  // holds the producer's buffer until the tensor dies
  std::shared_ptr<void> owner(keep, [](void* p) {
    nb::gil_scoped_acquire gil;
    delete static_cast<nb::ndarray<>*>(p);
  });
  return lc::Tensor::wrap(nd.data(), static_cast<int>(nd.ndim()), shape, strides, dt, dev,
                          std::move(owner), true, index);
}

}  // namespace

// The cache key of a call's array arguments in one native call (lc.compile's and the pipelines'
// graph caches): bytes naming, per item of `items` (a tuple or list), its kind and, for an
// lc.Tensor or numpy array, its dtype and shape (None: a marker; anything else: TypeError).
// Where a tensor lives is not part of it: a graph plans per residency itself. Per call one
// bytes object instead of a shape tuple and a dtype string per argument.
nb::bytes signature(nb::handle items) {
  PyObject* fast = PySequence_Fast(items.ptr(), "_signature: a tuple or list");
  if (!fast) throw nb::python_error();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  PyObject** it = PySequence_Fast_ITEMS(fast);
  std::vector<std::int64_t> key;
  key.reserve(static_cast<std::size_t>(n) * 4);
  for (Py_ssize_t i = 0; i < n; ++i) {
    nb::handle h(it[i]);
    lc::Tensor* t = nullptr;
    if (h.is_none()) {
      key.push_back(-1);
    } else if (nb::try_cast<lc::Tensor*>(h, t) && t) {
      key.push_back(static_cast<std::int64_t>(t->dtype()) * 64 + t->ndim());
      for (int d = 0; d < t->ndim(); ++d) key.push_back(t->size(d));
    } else if (PyArray_Check(h.ptr())) {
      auto* a = reinterpret_cast<PyArrayObject*>(h.ptr());
      key.push_back(-1000 - static_cast<std::int64_t>(PyArray_TYPE(a)) * 64 - PyArray_NDIM(a));
      for (int d = 0; d < PyArray_NDIM(a); ++d) key.push_back(PyArray_DIMS(a)[d]);
    } else {
      Py_DECREF(fast);
      lc::throw_type("_signature", "item " + std::to_string(i) +
                                       " is neither an lc.Tensor, a numpy array nor None");
    }
  }
  Py_DECREF(fast);
  return nb::bytes(reinterpret_cast<const char*>(key.data()), key.size() * sizeof(std::int64_t));
}

void register_tensor(nb::module_& m) {
  m.def("_signature", &signature, nb::arg("items"));
  nb::class_<lc::Tensor>(m, "Tensor",
                         "A strided array on \"cpu\" or \"cuda\": float32 (default), float64, float16, bfloat16, int32 or int64.\n\n"
                         "lc.Tensor(data, device=\"cpu\", dtype=None) copies any array-like "
                         "to the device. dtype=None keeps the dtype of float16, bfloat16, int32 and "
                         "int64 arrays and of lc.Tensor data, and makes float32 of anything else "
                         "(float64 included: pass dtype=\"float64\" to keep it). Ops given lc.Tensor "
                         "inputs on \"cuda\" do no host transfers.")
      .def("__init__", &init_tensor, nb::arg("data"), nb::arg("device") = "cpu",
           nb::arg("dtype").none() = nb::none(), nb::kw_only(), nb::arg("share") = false)
      .def_static("from_dlpack", &from_dlpack, nb::arg("obj"),
                  "A tensor over any DLPack producer's memory (no copy).")
      .def_static("from_numpy", &from_numpy, nb::arg("array"),
                  "A CPU tensor over the array's memory (no copy); keeps the array alive.")
      .def_static(
          "empty",
          [](const std::vector<std::int64_t>& shape, const std::string& device, nb::handle dtype) {
            const lc::DType dt = dtype_param(dtype, "Tensor.empty");
            const Place place = parse_place(device, "Tensor.empty");
            lc::DeviceScope scope(place.kind, place.index);
            return lc::Tensor::empty(shape, dt, place.kind);
          },
          nb::arg("shape"), nb::arg("device") = "cpu", nb::arg("dtype").none() = "float32",
          "Uninitialised tensor of `shape` on `device`.")
      .def_prop_ro("shape", [](const lc::Tensor& t) { return nb::tuple(nb::cast(t.shape())); })
      .def_prop_ro("strides", [](const lc::Tensor& t) { return nb::tuple(nb::cast(t.strides())); },
                   "Strides in elements (numpy's are in bytes).")
      .def_prop_ro("ndim", &lc::Tensor::ndim)
      .def_prop_ro("size", &lc::Tensor::numel)
      .def_prop_ro("nbytes", &lc::Tensor::nbytes)
      .def_prop_ro("dtype", [](const lc::Tensor& t) { return std::string(lc::to_string(t.dtype())); })
      .def_prop_ro("device", [](const lc::Tensor& t) { return std::string(lc::to_string(t.device())); },
                   "The device type: \"cpu\" or \"cuda\" (device_index says which GPU).")
      .def_prop_ro("device_index", &lc::Tensor::device_index,
                   "Which device of that type holds the data: the GPU number (0 on the CPU).")
      .def("get_device", [](const lc::Tensor& t) {
             return t.device() == lc::DeviceKind::cpu ? -1 : t.device_index();
           }, "The GPU number, or -1 for a CPU tensor (torch's Tensor.get_device).")
      .def_prop_ro("location", &place_name,
                   "Where the data lives with its index: \"cpu\", \"cuda:0\", \"cuda:1\", ...")
      .def("is_contiguous", &lc::Tensor::is_contiguous)
      .def("numpy", &to_numpy, "A numpy array: a zero-copy view for CPU tensors, a copy otherwise.")
      .def("__array__",
           [](nb::handle self, nb::handle dtype, nb::handle copy) {
             // numpy 2's copy semantics: copy=False must not copy, so it refuses a device
             // tensor (as torch and CuPy do) and a dtype conversion; None copies only if needed.
             const lc::Tensor& t = nb::cast<const lc::Tensor&>(self);
             const bool no_copy = copy.ptr() == Py_False;
             if (no_copy && t.device() != lc::DeviceKind::cpu)
               lc::throw_value("Tensor.__array__", "a tensor on \"" + std::string(lc::to_string(t.device())) +
                               "\" cannot become a numpy array without a copy; call .numpy() or "
                               "np.asarray(t, copy=True)");
             nb::object a = to_numpy(self);
             if (!dtype.is_none()) {
               if (no_copy) a = a.attr("astype")(dtype, nb::arg("copy") = false);
               else a = a.attr("astype")(dtype);
               if (no_copy && !a.is(self) && PyArray_Check(a.ptr()) &&
                   PyArray_DATA(reinterpret_cast<PyArrayObject*>(a.ptr())) != t.data())
                 lc::throw_value("Tensor.__array__", "copy=False, but converting to that dtype copies");
             }
             if (!copy.is_none() && PyObject_IsTrue(copy.ptr()) == 1) a = a.attr("copy")();
             return a;
           },
           nb::arg("dtype") = nb::none(), nb::arg("copy") = nb::none())
      .def("__dlpack__", &dlpack_export, "DLPack export (no copy; see lc.from_dlpack).")
      .def("__dlpack_device__", &dlpack_device)
      .def_prop_ro("__array_interface__", &array_interface)
      .def_prop_ro("__cuda_array_interface__", &cuda_array_interface)
      .def("to", [](const lc::Tensor& t, const std::string& device) {
             const Place place = parse_place(device, "Tensor.to");
             return t.to(place.kind, place.index);
           }, nb::arg("device"),
           "A copy on `device` (\"cpu\", \"cuda\", \"cuda:N\"; this tensor if already there).")
      .def("cpu", [](const lc::Tensor& t) { return t.to(lc::DeviceKind::cpu); })
      .def("contiguous", &lc::Tensor::contiguous)
      .def("astype", [](const lc::Tensor& t, nb::handle dtype) {
             return t.astype(dtype_param(dtype, "Tensor.astype"));
           }, nb::arg("dtype"),
           "A copy converted to `dtype` (\"float32\", \"float16\", \"bfloat16\", \"float64\", "
           "\"int32\", \"int64\" or a numpy dtype) on the same device; float -> int truncates.")
      .def("copy_", [](lc::Tensor& self, const lc::Tensor& src) { src.copy_to(self); },
           nb::arg("src"), "Copies `src` (same shape and dtype, any device) into this tensor.")
      .def("_view", &lc::Tensor::view, nb::arg("shape"), nb::arg("strides"), nb::arg("offset") = 0)
      .def("t", &lc::Tensor::t, "Transpose of a 2-D tensor (a view, no copy).")
      .def_prop_ro("T", &lc::Tensor::t)
      .def("__len__", [](const lc::Tensor& t) {
        if (t.ndim() == 0) throw nb::type_error("len() of a 0-d tensor");
        return t.size(0);
      })
      .def("reshape", [](const lc::Tensor& t, nb::args shape) {
             return t.reshape(shape_args(shape, "Tensor.reshape"));
           }, "The same elements in another shape (one -1 is inferred): a view of a contiguous "
              "tensor, else a contiguous copy (numpy's reshape).")
      .def("view", [](const lc::Tensor& t, nb::args shape) {
             if (!t.is_contiguous())
               lc::throw_value("Tensor.view", "tensor of shape " + t.shape_str() + " is not "
                               "contiguous, so no view of another shape exists; use .reshape() "
                               "(copies) or .contiguous() first");
             return t.reshape(shape_args(shape, "Tensor.view"));
           }, "A view in another shape (contiguous tensors only; never copies).")
      .def("permute", [](const lc::Tensor& t, nb::args dims) {
             std::vector<int> d;
             for (std::int64_t v : shape_args(dims, "Tensor.permute")) d.push_back(static_cast<int>(v));
             return t.permute(d);
           }, "A view with the dimensions reordered (torch's permute).")
      .def("transpose", [](const lc::Tensor& t, int d0, int d1) { return t.transpose(d0, d1); },
           nb::arg("dim0"), nb::arg("dim1"), "A view with two dimensions swapped.")
      .def("__getitem__", &getitem_any, nb::arg("key").none(),
           "Basic indexing (ints, slices with steps, None, ...): a view, no copy. Index arrays "
           "(ints, negative ones counted from the end, 1-D boolean masks; several broadcast "
           "together): a gather, as numpy's advanced indexing.")
      .def("__repr__", &tensor_repr)
      .def("__add__", [](nb::handle s, nb::handle o) { return tensor_binary("add", s, o, false); },
           nb::arg("other").none(), "lc.add(self, other) (a number: one elementwise_program with it as a constant).")
      .def("__radd__", [](nb::handle s, nb::handle o) { return tensor_binary("add", s, o, true); },
           nb::arg("other").none(), "lc.add(other, self).")
      .def("__sub__", [](nb::handle s, nb::handle o) { return tensor_binary("sub", s, o, false); },
           nb::arg("other").none(), "lc.sub(self, other).")
      .def("__rsub__", [](nb::handle s, nb::handle o) { return tensor_binary("sub", s, o, true); },
           nb::arg("other").none(), "lc.sub(other, self).")
      .def("__mul__", [](nb::handle s, nb::handle o) { return tensor_binary("mul", s, o, false); },
           nb::arg("other").none(), "lc.mul(self, other); a number: lc.vector_scale(self, other).")
      .def("__rmul__", [](nb::handle s, nb::handle o) { return tensor_binary("mul", s, o, true); },
           nb::arg("other").none(), "lc.mul(other, self).")
      .def("__truediv__", [](nb::handle s, nb::handle o) { return tensor_binary("div", s, o, false); },
           nb::arg("other").none(), "lc.div(self, other); a number: one elementwise_program with it as a constant.")
      .def("__rtruediv__", [](nb::handle s, nb::handle o) { return tensor_binary("div", s, o, true); },
           nb::arg("other").none(), "lc.div(other, self).")
      .def("__matmul__", [](nb::handle s, nb::handle o) { return tensor_matmul(s, o, false); },
           nb::arg("other").none(), "lc.matmul(self, other).")
      .def("__rmatmul__", [](nb::handle s, nb::handle o) { return tensor_matmul(s, o, true); },
           nb::arg("other").none(), "lc.matmul(other, self).")
      .def("__neg__", [](nb::handle s) {
             return nb::module_::import_("lightning_core._tensor_ops").attr("neg")(s);
           }, "lc.vector_scale(self, -1.0).");
}

}  // namespace lcpy
