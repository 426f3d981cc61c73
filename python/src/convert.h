// Conversions between Python objects and lc::Tensor for the op bindings.
//
// An op argument is a numpy array (or anything numpy can turn into one) or an lc.Tensor.
// numpy arrays are borrowed, never copied here (non-contiguous ones are copied once by the
// core when staged). Results are numpy arrays when every input was numpy and the result is in
// host memory; lc.Tensor objects otherwise.
#pragma once

#include <nanobind/nanobind.h>

#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/tensor.h"

namespace nb = nanobind;

namespace lcpy {

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
// Same, for an optional argument: returns false (and leaves `out` empty) for None.
bool to_opt_arg(nb::handle obj, const char* op, const char* name, Arg& out);

// A fresh C-contiguous float32 numpy array of `shape`, and an lc::Tensor over its memory.
nb::object new_numpy(const std::vector<std::int64_t>& shape, lc::Tensor& view);

// Wraps a result tensor: an lc.Tensor object (device or host).
nb::object wrap_tensor(lc::Tensor&& t);
// A numpy array over a host tensor's memory without a copy (keeps `owner` alive).
nb::object numpy_view(const lc::Tensor& t, nb::handle owner);

// The policy for one call: `policy` (an lc.ExecutionPolicy or None -> the current one: the
// innermost `with lc.policy` of the calling context, else lc::current_policy()), with `device`
// (None or a device string) overriding its device.
lc::ExecutionPolicy resolve_policy(nb::handle device, nb::handle policy, const char* op);

// The Python policy scope: `var` is the contextvars.ContextVar of python/lightning_core/policy.py
// (value None or (policy, parent)). context_policy() copies the innermost scoped policy of the
// current context into `out`; false when no scope is active (or before the variable is set).
void set_policy_context_var(nb::handle var);
bool context_policy(lc::ExecutionPolicy& out);

// Release the GIL for calls whose work is large enough that other threads should run.
bool worth_releasing_gil(double flops);

}  // namespace lcpy
