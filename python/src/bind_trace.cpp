// Runtime trace bindings: enable/clear/capacity and the raw events; the timeline and the
// Chrome export are built on these in python/lightning_core/trace.py.
#include <nanobind/stl/string.h>

#include "bindings.h"
#include "lightning_core/trace.h"

namespace lcpy {

void register_trace(nb::module_& m) {
  m.def("runtime_trace_enable", &lc::trace_enable, nb::arg("enabled") = true);
  m.def("runtime_trace_enabled", &lc::trace_enabled);
  m.def("runtime_trace_clear", &lc::trace_clear);
  m.def("runtime_trace_set_capacity", &lc::trace_set_capacity, nb::arg("events"));
  m.def("runtime_trace_capacity", &lc::trace_capacity);
  m.def("runtime_trace_dropped", &lc::trace_dropped);
  m.def("runtime_trace_events", [] {
    nb::list out;
    for (const lc::TraceEvent& e : lc::trace_events()) {
      nb::dict d;
      d["seq"] = e.seq;
      d["kind"] = lc::to_string(e.kind);
      d["op"] = e.op;
      d["device"] = lc::to_string(e.device);
      d["path"] = e.path;
      d["shapes"] = e.shapes;
      d["policy"] = e.policy;
      d["host_begin_ns"] = e.host_begin_ns;
      d["host_end_ns"] = e.host_end_ns;
      d["host_ns"] = e.host_end_ns - e.host_begin_ns;
      d["device_ns"] = e.device_ns;
      d["thread"] = e.thread_id;
      d["stream"] = e.stream;
      d["bytes"] = e.bytes;
      out.append(d);
    }
    return out;
  }, "The recorded events, oldest first, as dicts.");
}

}  // namespace lcpy
