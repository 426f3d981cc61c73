// Runtime trace bindings: enable/clear/capacity, the raw events, the timeline and the Chrome
// export. All computation is in C++ (src/core/trace*.cpp); these only build dicts.
// python/lightning_core/trace.py adds a context manager and a text report on top.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>

#include "bindings.h"
#include "lightning_core/trace.h"

namespace lcpy {

namespace {

nb::dict event_dict(const lc::TraceEvent& e) {
  nb::dict d;
  d["seq"] = e.seq;
  d["kind"] = lc::to_string(e.kind);
  d["op"] = e.op;
  d["for_op"] = e.for_op;
  d["device"] = lc::to_string(e.device);
  d["path"] = e.path;
  d["impl"] = e.impl;
  d["op_path"] = e.op_path();
  d["shapes"] = e.shapes;
  d["policy"] = e.policy_string();
  d["host_begin_ns"] = e.host_begin_ns;
  d["host_end_ns"] = e.host_end_ns;
  d["host_ns"] = e.host_ns();
  d["device_ns"] = e.device_ns;
  d["device_begin_ns"] = e.device_begin_ns;
  d["thread"] = e.thread_id;
  d["stream"] = e.stream;
  d["bytes"] = e.bytes;
  return d;
}

nb::dict group_dict(const lc::TraceGroup& g) {
  nb::dict d;
  d["key"] = g.key;
  d["count"] = g.count;
  d["total_ns"] = g.total_ns;
  d["mean_ns"] = g.mean_ns;
  d["min_ns"] = g.min_ns;
  d["max_ns"] = g.max_ns;
  d["total_delta_next_ns"] = g.total_delta_next_ns;
  d["mean_delta_next_ns"] = g.mean_delta_next_ns;
  d["device_count"] = g.device_count;
  d["device_total_ns"] = g.device_total_ns;
  d["device_mean_ns"] = g.device_mean_ns;
  d["bytes"] = g.bytes;
  d["share"] = g.share;
  return d;
}

nb::dict hotspot_dict(const lc::TraceHotspot& h) {
  nb::dict d;
  d["seq"] = h.seq;
  d["kind"] = h.kind;
  d["op"] = h.op;
  d["op_path"] = h.op_path;
  d["device"] = h.device;
  d["path"] = h.path;
  d["shapes"] = h.shapes;
  d["policy"] = h.policy;
  d["ns"] = h.ns;
  d["timing"] = h.timing;
  d["host_ns"] = h.host_ns;
  d["device_ns"] = h.device_ns;
  d["delta_next_ns"] = h.delta_next_ns;
  d["thread"] = h.thread;
  d["stream"] = h.stream;
  d["bytes"] = h.bytes;
  return d;
}

}  // namespace

void register_trace(nb::module_& m) {
  m.def("runtime_trace_enable", &lc::trace_enable, nb::arg("enabled") = true,
        "Turns event recording on (or off with False). Recording is process-wide.");
  m.def("runtime_trace_enabled", &lc::trace_enabled);
  m.def("runtime_trace_clear", &lc::trace_clear, "Drops every recorded event.");
  m.def("runtime_trace_set_capacity", &lc::trace_set_capacity, nb::arg("events"),
        "Ring-buffer size in events (default 65536 or $LC_TRACE_CAPACITY); the oldest events "
        "are dropped past it.");
  m.def("runtime_trace_capacity", &lc::trace_capacity);
  m.def("runtime_trace_set_device_timing", &lc::trace_set_device_timing, nb::arg("enabled"),
        "CUDA: time each op's kernels with CUDA events (default True; a few us per op). "
        "False records host times only.");
  m.def("runtime_trace_device_timing", &lc::trace_device_timing);
  m.def("runtime_trace_dropped", &lc::trace_dropped,
        "Events overwritten by the ring buffer since the last clear.");
  m.def("runtime_trace_size", &lc::trace_size, "Events in the buffer now.");
  m.def("runtime_trace_events", [] {
    nb::list out;
    for (const lc::TraceEvent& e : lc::trace_events()) out.append(event_dict(e));
    return out;
  }, "The recorded events, oldest first, as dicts.");
  m.def(
      "runtime_trace_timeline",
      [](const std::string& group_by, const std::string& group_sort_by, bool group_descending,
         int hotspot_top_k) {
        lc::TraceTimeline t =
            lc::trace_timeline(group_by, group_sort_by, group_descending, hotspot_top_k);
        nb::dict d;
        d["group_by"] = t.group_by;
        d["group_sort_by"] = t.group_sort_by;
        d["group_descending"] = t.group_descending;
        d["event_count"] = t.event_count;
        d["dropped"] = t.dropped;
        d["span_ns"] = t.span_ns;
        d["total_host_ns"] = t.total_host_ns;
        nb::list groups, hotspots;
        for (const lc::TraceGroup& g : t.groups) groups.append(group_dict(g));
        for (const lc::TraceHotspot& h : t.hotspots) hotspots.append(hotspot_dict(h));
        d["groups"] = groups;
        d["hotspots"] = hotspots;
        return d;
      },
      nb::arg("group_by") = "op", nb::arg("group_sort_by") = "total_ns",
      nb::arg("group_descending") = true, nb::arg("hotspot_top_k") = 8,
      "Where time goes: {'groups': [...], 'hotspots': [...], ...}. group_by: 'op', 'op_path' "
      "(op|selected_device|direct_or_fallback) or 'device'; group_sort_by: any numeric group "
      "field (count, total_ns, mean_ns, min_ns, max_ns, total_delta_next_ns, "
      "mean_delta_next_ns, device_count, device_total_ns, device_mean_ns, bytes, share). "
      "total_delta_next_ns sums the gaps from each event to the next one on its thread "
      "(launch, staging and sync overhead). Hotspots are the top single events by device time "
      "when known, else host time.");
  m.def("runtime_trace_export_chrome", &lc::trace_export_chrome, nb::arg("path"),
        "Writes the events as Chrome/Perfetto trace-event JSON ('X' events, ts/dur in us; one "
        "track per host thread and per CUDA stream). Returns the number of events.");
  m.def("runtime_trace_chrome_json", &lc::trace_chrome_json,
        "The Chrome/Perfetto trace-event JSON as a string.");
  m.def("runtime_trace_group_fields", &lc::trace_group_sort_fields,
        "The numeric group fields runtime_trace_timeline can sort by.");
}

}  // namespace lcpy
