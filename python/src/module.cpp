// The extension module lightning_core._lightning_core. The pure-Python package
// (python/lightning_core/) re-exports it and adds the Python-only layers.
#define LC_NUMPY_IMPORT
#include "numpy_api.h"

#include "bindings.h"

NB_MODULE(_lightning_core, m) {
  // numpy's C API table; import_array() returns NULL on failure (numpy missing or broken).
  if (_import_array() < 0) throw nb::python_error();
  m.doc() = "Lightning Core native extension: tensors, ops, policy, trace and sessions.";
  lcpy::register_errors(m);
  lcpy::register_tensor(m);
  lcpy::register_runtime(m);
  lcpy::register_devices(m);
  lcpy::register_policy(m);
  lcpy::register_ops(m);
  lcpy::register_attention(m);
  lcpy::register_lstm(m);
  lcpy::register_trace(m);
  lcpy::register_sessions(m);
  lcpy::register_autotune(m);
  lcpy::register_graph(m);
  lcpy::register_distributed(m);
  lcpy::register_argument_errors(m);
  lcpy::register_docs(m);
  lcpy::register_logging(m);
}
