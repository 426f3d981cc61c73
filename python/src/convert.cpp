#include "convert.h"

#include <nanobind/stl/string.h>

#include <cmath>

#include "lightning_core/errors.h"
#include "lightning_core/sizes.h"
#include "numpy_api.h"
#include "ops/checks.h"

namespace lcpy {

namespace {

void fill_from_ndarray(PyArrayObject* a, const char* op, const char* name, Arg& out) {
  const int type = PyArray_TYPE(a);
  lc::DType dt = lc::DType::f32;
  // Every storage dtype passes here (float32 first: the hot path); the op front-end decides
  // which dtypes it computes in and raises a TypeError naming the op for the others.
  if (type != NPY_FLOAT32 && !dtype_from_npy(type, &dt)) {
    PyArray_Descr* d = PyArray_DESCR(a);
    nb::str tn = nb::steal<nb::str>(PyObject_Str(reinterpret_cast<PyObject*>(d)));
    lc::throw_type(op, std::string("'") + name + "' has dtype " + tn.c_str() +
                           ", which lightning_core does not store (float32, float16, bfloat16, "
                           "float64, int32, int64); convert it with np.asarray(" + name +
                           ", dtype=np.float32)");
  }
  const int nd = PyArray_NDIM(a);
  if (nd > lc::kMaxDims) lc::throw_value(op, std::string("'") + name + "' has too many dimensions");
  const npy_intp* dims = PyArray_DIMS(a);
  const npy_intp* bstrides = PyArray_STRIDES(a);
  const npy_intp isz = PyArray_ITEMSIZE(a);
  std::int64_t shape[lc::kMaxDims], strides[lc::kMaxDims];
  bool odd = !PyArray_ISALIGNED(a) || PyArray_ISBYTESWAPPED(a);
  for (int i = 0; i < nd; ++i) {
    shape[i] = dims[i];
    if (bstrides[i] % isz != 0) odd = true;
    strides[i] = bstrides[i] / isz;
  }
  if (odd) {
    // Misaligned or byte-swapped memory: take an aligned native copy once.
    PyObject* c = PyArray_FromAny(reinterpret_cast<PyObject*>(a),
                                  PyArray_DescrFromType(type), 0, 0,
                                  NPY_ARRAY_CARRAY | NPY_ARRAY_ENSURECOPY, nullptr);
    if (!c) throw nb::python_error();
    Py_XDECREF(out.hold);
    out.hold = c;
    fill_from_ndarray(reinterpret_cast<PyArrayObject*>(c), op, name, out);
    return;
  }
  out.t.rewrap(PyArray_DATA(a), nd, shape, strides, dt, lc::DeviceKind::cpu,
                           PyArray_ISWRITEABLE(a));
}

}  // namespace

void to_arg(nb::handle obj, const char* op, const char* name, Arg& out) {
  PyObject* o = obj.ptr();
  if (PyArray_Check(o)) {
    fill_from_ndarray(reinterpret_cast<PyArrayObject*>(o), op, name, out);
    return;
  }
  lc::Tensor* t = nullptr;
  if (nb::try_cast<lc::Tensor*>(obj, t) && t) {
    out.t = *t;
    out.from_lc = true;
    return;
  }
  if (obj.is_none())
    lc::throw_type(op, std::string("'") + name + "' is None; pass a float32 numpy array or lc.Tensor");
  // Array-likes (lists, buffers, objects with __array__): numpy decides their dtype.
  PyObject* arr = PyArray_FromAny(o, nullptr, 0, 0, 0, nullptr);
  if (!arr) {
    PyErr_Clear();
    lc::throw_type(op, std::string("'") + name + "' must be a float32 numpy array or lc.Tensor, got " +
                           py_type_name(o));
  }
  Py_XDECREF(out.hold);
  out.hold = arr;
  fill_from_ndarray(reinterpret_cast<PyArrayObject*>(arr), op, name, out);
}

void to_out_arg(nb::handle obj, const char* op, Arg& out) {
  PyObject* o = obj.ptr();
  if (PyArray_Check(o)) {
    const int type = PyArray_TYPE(reinterpret_cast<PyArrayObject*>(o));
    lc::DType dt;
    if (type != NPY_FLOAT32 && !dtype_from_npy(type, &dt)) {
      nb::str tn = nb::steal<nb::str>(PyObject_Str(
          reinterpret_cast<PyObject*>(PyArray_DESCR(reinterpret_cast<PyArrayObject*>(o)))));
      throw lc::OutDTypeError(std::string("[") + op + "] 'out' must be float32, got " +
                              tn.c_str() + "; allocate it with np.empty(shape, dtype=np.float32)");
    }
  }
  to_arg(obj, op, "out", out);
  if (out.hold)  // to_arg had to convert or copy it
    lc::throw_value(op, std::string("'out' (") + py_type_name(o) +
                            ") cannot be written in place (not an aligned, native-byte-order "
                            "float32 array); pass np.empty(shape, dtype=np.float32) or an lc.Tensor");
}

bool to_opt_arg(nb::handle obj, const char* op, const char* name, Arg& out) {
  if (obj.is_none()) return false;
  to_arg(obj, op, name, out);
  return true;
}

nb::object new_numpy(const std::vector<std::int64_t>& shape, lc::Tensor& view, const char* op,
                     lc::DType dtype) {
  npy_intp dims[lc::kMaxDims];
  const int nd = static_cast<int>(shape.size());
  std::size_t bytes = lc::dtype_size(dtype);
  for (int i = 0; i < nd; ++i) {
    dims[i] = static_cast<npy_intp>(shape[i]);
    bytes *= static_cast<std::size_t>(shape[i]);  // the op checked the count (sizes.h)
  }
  // numpy's allocation succeeds for any size under overcommit; the kernel would then be killed
  // touching the pages. Large results are checked against what the host can back.
  lc::check_host_alloc(op, bytes);
  PyObject* a = PyArray_SimpleNew(nd, dims, dtype == lc::DType::f32 ? NPY_FLOAT32 : npy_type(dtype, op));
  if (!a) {
    if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
      PyErr_Clear();
      lc::throw_oom(op, "could not allocate the result of shape " + lc::shape_str(shape) +
                            " in host memory; use smaller shapes or keep the result on the device");
    }
    throw nb::python_error();
  }
  std::int64_t strides[lc::kMaxDims];
  std::int64_t s = 1;
  for (int i = nd - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  view.rewrap(PyArray_DATA(reinterpret_cast<PyArrayObject*>(a)), nd, shape.data(), strides,
              dtype, lc::DeviceKind::cpu, true);
  return nb::steal(a);
}

namespace {

// numpy's type number of ml_dtypes.bfloat16, or -1 when ml_dtypes is not installed. Looked up
// until found (a later import of ml_dtypes by the user is picked up).
int bf16_type_num() {
  static int cached = -1;
  if (cached >= 0) return cached;
  PyObject* mod = PyImport_ImportModule("ml_dtypes");
  if (!mod) {
    PyErr_Clear();
    return -1;
  }
  PyObject* bf = PyObject_GetAttrString(mod, "bfloat16");
  Py_DECREF(mod);
  if (!bf) {
    PyErr_Clear();
    return -1;
  }
  PyArray_Descr* d = nullptr;
  const int ok = PyArray_DescrConverter(bf, &d);
  Py_DECREF(bf);
  if (!ok || !d) {
    PyErr_Clear();
    return -1;
  }
  cached = d->type_num;
  Py_DECREF(d);
  return cached;
}

}  // namespace

int npy_type(lc::DType t, const char* op) {
  switch (t) {
    case lc::DType::f32: return NPY_FLOAT32;
    case lc::DType::f64: return NPY_FLOAT64;
    case lc::DType::f16: return NPY_HALF;
    case lc::DType::i32: return NPY_INT32;
    case lc::DType::i64: return NPY_INT64;
    case lc::DType::bf16: break;
  }
  const int bf = bf16_type_num();
  if (bf < 0)
    lc::throw_type(op, "bfloat16 numpy arrays need the ml_dtypes package (pip install ml_dtypes); "
                       "or convert first with .astype(\"float32\")");
  return bf;
}

bool dtype_from_npy(int type_num, lc::DType* out) {
  switch (type_num) {
    case NPY_FLOAT32: *out = lc::DType::f32; return true;
    case NPY_FLOAT64: *out = lc::DType::f64; return true;
    case NPY_HALF: *out = lc::DType::f16; return true;
    default: break;
  }
  // int32 / int64 under whichever C type numpy uses for them on this platform.
  if (type_num == NPY_INT || type_num == NPY_LONG || type_num == NPY_LONGLONG) {
    const std::size_t size = type_num == NPY_INT    ? sizeof(int)
                             : type_num == NPY_LONG ? sizeof(long)
                                                    : sizeof(long long);
    if (size == 4) { *out = lc::DType::i32; return true; }
    if (size == 8) { *out = lc::DType::i64; return true; }
  }
  if (type_num >= NPY_USERDEF && type_num == bf16_type_num()) {
    *out = lc::DType::bf16;
    return true;
  }
  return false;
}

lc::DType dtype_param(nb::handle h, const char* op) {
  if (PyUnicode_Check(h.ptr())) return lc::parse_dtype(str_param(h, op, "dtype"), op);
  PyArray_Descr* d = nullptr;
  if (!h.is_none() && PyArray_DescrConverter(h.ptr(), &d) && d) {
    const int num = d->type_num;
    Py_DECREF(d);
    lc::DType t;
    if (dtype_from_npy(num, &t)) return t;
  }
  PyErr_Clear();
  lc::throw_type(op, "dtype must be float32, float64, float16, bfloat16, int32 or int64 (a string "
                     "or a numpy dtype), got " + nb::cast<std::string>(nb::repr(h)));
}

nb::object wrap_tensor(lc::Tensor&& t) { return nb::cast(std::move(t), nb::rv_policy::move); }

nb::object numpy_view(const lc::Tensor& t, nb::handle owner) {
  npy_intp dims[lc::kMaxDims], strides[lc::kMaxDims];
  const npy_intp isz = static_cast<npy_intp>(lc::dtype_size(t.dtype()));
  for (int i = 0; i < t.ndim(); ++i) {
    dims[i] = static_cast<npy_intp>(t.size(i));
    strides[i] = static_cast<npy_intp>(t.stride(i)) * isz;
  }
  const int type = npy_type(t.dtype(), "Tensor.numpy");
  PyObject* a = PyArray_New(&PyArray_Type, t.ndim(), dims, type, strides, t.data(), 0,
                            t.writable() ? NPY_ARRAY_WRITEABLE : 0, nullptr);
  if (!a) throw nb::python_error();
  Py_INCREF(owner.ptr());
  if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(a), owner.ptr()) != 0) {
    Py_DECREF(a);
    throw nb::python_error();
  }
  return nb::steal(a);
}

// ---- the Python policy scope (a contextvars.ContextVar) -------------------------------------
// `with lc.policy(...)` (python/lightning_core/policy.py) keeps its scope in a ContextVar, so
// asyncio tasks and threads each see their own. Its value is None or a tuple (policy, parent):
// the innermost ExecutionPolicy and the enclosing scope's tuple. The variable and the
// ExecutionPolicy type are looked up once (set_policy_context_var, at import) and held for the
// life of the process.
namespace {
PyObject* g_policy_var = nullptr;      // the ContextVar (strong reference)
// Set once any `with lc.policy(...)` scope was entered: until then no context can hold a scope,
// and the ops skip the ContextVar read (~20 ns of a ~400 ns tiny op).
bool g_scopes_used = false;
PyTypeObject* g_policy_type = nullptr;  // lc.ExecutionPolicy
}  // namespace

void set_policy_context_var(nb::handle var) {
#ifdef Py_LIMITED_API
  // The stable ABI (abi3 wheels) has no PyContextVar_* API: check and read through Python.
  const bool is_var = nb::isinstance(var, nb::module_::import_("contextvars").attr("ContextVar"));
#else
  const bool is_var = PyContextVar_CheckExact(var.ptr());
#endif
  if (!is_var)
    lc::throw_type("_set_policy_context_var", "expects a contextvars.ContextVar");
  g_policy_type = reinterpret_cast<PyTypeObject*>(nb::type<lc::ExecutionPolicy>().ptr());
  Py_INCREF(var.ptr());
  PyObject* prev = g_policy_var;
  g_policy_var = var.ptr();
  Py_XDECREF(prev);
}

void mark_policy_scopes_used() { g_scopes_used = true; }

bool context_policy(lc::ExecutionPolicy& out) {
  if (!g_policy_var || !g_scopes_used) return false;
  PyObject* v = nullptr;
#ifdef Py_LIMITED_API
  v = PyObject_CallMethod(g_policy_var, "get", "O", Py_None);  // ContextVar.get(None)
  if (!v) throw nb::python_error();
#else
  if (PyContextVar_Get(g_policy_var, nullptr, &v) < 0) throw nb::python_error();
  if (!v) return false;  // never set in this context
#endif
  bool found = false;
  if (PyTuple_CheckExact(v) && PyTuple_Size(v) == 2) {
    PyObject* pol = PyTuple_GetItem(v, 0);  // borrowed
    if (Py_TYPE(pol) == g_policy_type) {
      out = *nb::inst_ptr<lc::ExecutionPolicy>(pol);
      found = true;
    } else {
      lc::ExecutionPolicy* given = nullptr;
      if (nb::try_cast<lc::ExecutionPolicy*>(nb::handle(pol), given) && given) {
        out = *given;
        found = true;
      }
    }
  }
  Py_DECREF(v);  // None (outside every scope) or an unexpected value: no scope
  return found;
}

lc::ExecutionPolicy resolve_policy(nb::handle device, nb::handle policy, const char* op) {
  lc::ExecutionPolicy p;
  if (policy.is_none()) {
    // The innermost `with lc.policy` of this context, else C++'s (its thread's PolicyScope or
    // the process default).
    if (!context_policy(p)) p = lc::current_policy();
  } else {
    lc::ExecutionPolicy* given = nullptr;
    if (!nb::try_cast<lc::ExecutionPolicy*>(policy, given) || !given)
      lc::throw_type(op, "policy must be an lc.ExecutionPolicy (or None for the current policy)");
    p = *given;
  }
  if (!device.is_none()) {
    if (!PyUnicode_Check(device.ptr()))
      lc::throw_type(op, "device must be a string: \"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"metal\"");
    Py_ssize_t len = 0;
    const char* s = PyUnicode_AsUTF8AndSize(device.ptr(), &len);
    int index = -1;
    p.device = lc::parse_device_index(std::string(s, static_cast<std::size_t>(len)), op, &index);
    // A per-call device replaces the policy's device and its index alike.
    p.device_index = static_cast<std::int8_t>(index);
  }
  return p;
}

std::string str_param(nb::handle h, const char* op, const char* name) {
  if (!PyUnicode_Check(h.ptr()))
    lc::throw_type(op, std::string("'") + name + "' must be a string, got " +
                           py_type_name(h.ptr()));
  Py_ssize_t len = 0;
  const char* s = PyUnicode_AsUTF8AndSize(h.ptr(), &len);
  if (!s) throw nb::python_error();
  return std::string(s, static_cast<std::size_t>(len));
}

double float_param(nb::handle h, const char* op, const char* name) {
  PyObject* o = h.ptr();
  if (PyBool_Check(o) || !(PyFloat_Check(o) || PyLong_Check(o) || PyArray_IsScalar(o, Number)))
    lc::throw_type(op, std::string("'") + name + "' must be a number, got " + py_type_name(o));
  const double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    lc::throw_value(op, std::string("'") + name + "' is out of the range of a float");
  }
  return v;
}

bool bool_param(nb::handle h, const char* op, const char* name) {
  PyObject* o = h.ptr();
  if (PyBool_Check(o)) return o == Py_True;
  if (PyArray_IsScalar(o, Bool)) return PyObject_IsTrue(o) == 1;
  lc::throw_type(op, std::string("'") + name + "' must be True or False, got " +
                         py_type_name(o));
}

std::int64_t int_param(nb::handle h, const char* op, const char* name, std::int64_t lo,
                       std::int64_t hi) {
  PyObject* o = h.ptr();
  if (PyBool_Check(o) || !(PyLong_Check(o) || PyArray_IsScalar(o, Integer)))
    lc::throw_type(op, std::string("'") + name + "' must be an int, got " + py_type_name(o));
  int overflow = 0;
  PyObject* as_long = PyNumber_Index(o);
  if (!as_long) throw nb::python_error();
  const long long v = PyLong_AsLongLongAndOverflow(as_long, &overflow);
  Py_DECREF(as_long);
  if (overflow < 0 || (overflow == 0 && v < lo))
    lc::throw_value(op, std::string(name) + " must be >= " + std::to_string(lo) + ", got " +
                            name + "=" + nb::cast<std::string>(nb::str(h)));
  if (overflow > 0 || v > hi)
    lc::throw_value(op, std::string(name) + " must be <= " + std::to_string(hi) + ", got " +
                            name + "=" + nb::cast<std::string>(nb::str(h)));
  return static_cast<std::int64_t>(v);
}

float scale_param(nb::handle h, const char* op) {
  if (h.is_none()) return 0.0f;
  const double s = float_param(h, op, "scale");
  if (!(s > 0.0) || !std::isfinite(static_cast<float>(s)))
    lc::throw_value(op, "scale must be a finite number > 0 (or None for 1/sqrt(head_dim)), got " +
                            std::to_string(s));
  return static_cast<float>(s);
}

bool worth_releasing_gil(double flops) { return flops > 2e5; }

}  // namespace lcpy
