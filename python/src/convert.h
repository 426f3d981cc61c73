// Conversions between Python objects and lc::Tensor for the op bindings.
//
// An op argument is a numpy array (or anything numpy can turn into one) or an lc.Tensor.
// numpy arrays are borrowed, never copied here (non-contiguous ones are copied once by the
// core when staged). Results are numpy arrays when every input was numpy and the result is in
// host memory; lc.Tensor objects otherwise.
#pragma once

#include <nanobind/nanobind.h>

#include <string>
#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"

namespace nb = nanobind;

namespace lcpy {

// The type name of `o` for messages: tp_name, or (stable ABI, where PyTypeObject is opaque) the
// name nanobind reads through the type's attributes.
inline std::string py_type_name(PyObject* o) {
#ifdef Py_LIMITED_API
  return nb::type_name(nb::handle(reinterpret_cast<PyObject*>(Py_TYPE(o)))).c_str();
#else
  return Py_TYPE(o)->tp_name;
#endif
}

struct Arg {
  lc::Tensor t;
  bool from_lc = false;     // an lc.Tensor (not numpy)
  PyObject* hold = nullptr; // a converted array we own (non-ndarray input)
  Arg() = default;
  Arg(const Arg&) = delete;
  Arg& operator=(const Arg&) = delete;
  ~Arg() { Py_XDECREF(hold); }
};

// Fills `out` from `obj`; raises TypeError naming op/name for objects that are not arrays.
void to_arg(nb::handle obj, const char* op, const char* name, Arg& out);
// `out` of an _into call or a session method: it must be written in place, so an ndarray of
// another dtype is an out-dtype error (TypeError) and an object that would have to be
// converted (byte-swapped or misaligned arrays, lists, buffers numpy copies) is a ValueError,
// since the result would land in a temporary copy and be lost.
void to_out_arg(nb::handle obj, const char* op, Arg& out);
// Same, for an optional argument: returns false (and leaves `out` empty) for None.
bool to_opt_arg(nb::handle obj, const char* op, const char* name, Arg& out);

// A fresh C-contiguous numpy array of `shape` and `dtype`, and an lc::Tensor over its memory.
// Host memory exhaustion is a MemoryError naming `op`.
nb::object new_numpy(const std::vector<std::int64_t>& shape, lc::Tensor& view, const char* op,
                     lc::DType dtype = lc::DType::f32);

// numpy <-> lc dtypes. bfloat16 is ml_dtypes.bfloat16 (imported on first use); npy_type
// raises TypeError naming `op` when a dtype has no numpy counterpart here (bfloat16 without
// ml_dtypes installed).
int npy_type(lc::DType t, const char* op);
bool dtype_from_npy(int type_num, lc::DType* out);
// A dtype argument: a string ("float16", "bf16", ...), a numpy dtype or scalar type
// (np.float16, ml_dtypes.bfloat16, np.dtype("int32")); anything else is a TypeError.
lc::DType dtype_param(nb::handle h, const char* op);

// Wraps a result tensor: an lc.Tensor object (device or host).
nb::object wrap_tensor(lc::Tensor&& t);
// A numpy array over a host tensor's memory without a copy (keeps `owner` alive).
nb::object numpy_view(const lc::Tensor& t, nb::handle owner);

// The policy for one call: `policy` (an lc.ExecutionPolicy or None -> the current one: the
// innermost `with lc.policy` of the calling context, else lc::current_policy()), with `device`
// (None or a device string) overriding its device.
lc::ExecutionPolicy resolve_policy(nb::handle device, nb::handle policy, const char* op);

// Scalar arguments, converted with errors that name the op and the argument (TypeError for a
// wrong type, ValueError for a value out of range) instead of nanobind's generic messages.
std::string str_param(nb::handle h, const char* op, const char* name);
double float_param(nb::handle h, const char* op, const char* name);
bool bool_param(nb::handle h, const char* op, const char* name);
// An integer in [lo, hi] (Python int or numpy integer; bool is refused).
std::int64_t int_param(nb::handle h, const char* op, const char* name, std::int64_t lo,
                       std::int64_t hi);
// The attention scale: None -> 0 (meaning 1/sqrt(head_dim)); else a finite number > 0. The one
// rule for every attention entry point (ops, sessions, conv -> attention).
float scale_param(nb::handle h, const char* op);

// The Python policy scope: `var` is the contextvars.ContextVar of python/lightning_core/policy.py
// (value None or (policy, parent)). context_policy() copies the innermost scoped policy of the
// current context into `out`; false when no scope is active (or before the variable is set).
void set_policy_context_var(nb::handle var);
bool context_policy(lc::ExecutionPolicy& out);
// Called when the first scope is entered (policy.py); before that context_policy() is free.
void mark_policy_scopes_used();

// Release the GIL for calls whose work is large enough that other threads should run.
bool worth_releasing_gil(double flops);

}  // namespace lcpy
