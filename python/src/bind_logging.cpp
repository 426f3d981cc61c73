// The library's messages (lc::log, include/lightning_core/log.h) into Python:
//   warning and above -> warnings.warn(..., RuntimeWarning): filters apply, and under
//                        `-W error` (or a filter "error") the warning becomes the exception of
//                        the call that caused it;
//   info / debug      -> the "lightning_core" logger (python/lightning_core/_logging.py sets
//                        its level from LC_LOG_LEVEL and tells the library the threshold).
// A message from a thread with no Python thread state (a worker of the CPU pool) is never
// raised: it is logged (a warning turned error is logged at ERROR).
#include <iostream>

#include <nanobind/stl/string.h>

#include "bindings.h"
#include "lightning_core/log.h"

namespace lcpy {

namespace {

nb::object g_logger;  // logging.getLogger("lightning_core"), set by _set_logger

void log_record(lc::log::Level lv, const std::string& text) {
  if (!g_logger.is_valid()) {
    std::cerr << "lightning_core: " << text << std::endl;
    return;
  }
  try {
    g_logger.attr("log")(static_cast<int>(lv), nb::str(text.c_str()));
  } catch (nb::python_error& e) {
    e.discard_as_unraisable("lightning_core log handler");
  }
}

void py_handler(lc::log::Level lv, const std::string& text) {
  if (!Py_IsInitialized()) {
    std::cerr << "lightning_core: " << text << std::endl;
    return;
  }
  // A thread Python knows (the caller of an op, also while the op runs without the GIL) may
  // raise; a library worker thread may not.
  const bool python_thread = PyGILState_GetThisThreadState() != nullptr;
  nb::gil_scoped_acquire gil;
  if (lv < lc::log::Level::warning) {
    nb::error_scope keep;  // an exception already being raised stays intact
    log_record(lv, text);
    return;
  }
  const bool raising = PyErr_Occurred() != nullptr;
  PyObject *t, *v, *tb;
  PyErr_Fetch(&t, &v, &tb);
  const std::string full = "lightning_core: " + text;
  if (PyErr_WarnEx(PyExc_RuntimeWarning, full.c_str(), 1) < 0) {
    if (python_thread && !raising) throw nb::python_error();  // -W error: the call raises it
    PyErr_Clear();
    log_record(lc::log::Level::error, text);
  }
  PyErr_Restore(t, v, tb);
}

}  // namespace

void register_logging(nb::module_& m) {
  lc::log::set_handler(&py_handler);
  m.def("_set_logger", [](nb::object logger) { g_logger = std::move(logger); },
        "The logging.Logger that info/debug messages go to (lightning_core/_logging.py).");
  m.def("_set_log_threshold", [](int level) {
          lc::log::set_threshold(static_cast<lc::log::Level>(level));
        }, "The lowest logging level the library sends (cheap check before building a message).");
  m.def("_log", [](int level, const std::string& text) {
          lc::log::message(static_cast<lc::log::Level>(level), text);
        }, "Sends a message through the library's log path (tests).");
  // The logger outlives nothing: drop it before the interpreter finalizes.
  nb::module_::import_("atexit").attr("register")(nb::cpp_function([] {
    lc::log::set_handler(nullptr);
    g_logger = nb::object();
  }));
}

}  // namespace lcpy
