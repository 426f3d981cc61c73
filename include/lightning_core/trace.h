// Runtime trace: every op dispatch, upload, download and sync records an event here when
// tracing is on. Recording happens in one place (OpRunner, src/runtime/op_runner.h: launch(),
// in(), finish()), so no op can bypass it.
//
// Cost: disabled, one relaxed atomic load per op (plus one per staged input / finish). Enabled,
// two clock reads, a fixed-size event (no heap allocation: shapes are formatted into an inline
// buffer, the policy is kept as enums) and one short mutex-protected copy into the ring. On
// CUDA, two cudaEvents mark each launch; they are resolved into device times lazily and
// recycled when too many are outstanding (see trace_events()).
//
// The timeline (grouped totals, gaps to the next event, hotspots) and the Chrome/Perfetto
// export are computed here too (src/runtime/trace_timeline.cpp), so C++ users get them as well.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lightning_core/policy.h"
#include "lightning_core/types.h"

namespace lc {

class Tensor;
class Backend;

enum class TraceKind : std::uint8_t { op = 0, upload = 1, download = 2, sync = 3 };
const char* to_string(TraceKind k);

constexpr std::size_t kTraceShapesCap = 96;  // bytes of the inline shapes text, NUL included

struct TraceEvent {
  std::uint64_t seq = 0;        // global order of recording (never reset, also not by clear)
  TraceKind kind = TraceKind::op;
  const char* op = "";          // static string: the op's name ("matmul2d", "upload", "sync")
  const char* for_op = "";      // transfers and syncs: the op they belong to; ops: same as op
  DeviceKind device = DeviceKind::cpu;  // op: the selected device; transfers: the GPU side
  const char* path = "direct";  // "direct" | "fallback" (the requested device could not run it)
  const char* impl = "";        // ops: the backend's implementation when it has several
                                // (CUDA attention: "cudnn" | "own"), else ""
  char shapes[kTraceShapesCap] = {};  // input shapes, "[128, 64] [64, 32]" ("..." if cut)
  // The policy the op ran under (kept as enums; policy_string() formats it).
  UploadMode upload = UploadMode::always;
  bool download = true;
  SyncMode sync = SyncMode::per_call;
  std::int64_t host_begin_ns = 0;  // steady clock (trace_now_ns), ns
  std::int64_t host_end_ns = 0;
  std::int64_t device_begin_mark = -1;  // backend marks (CUDA events); -1 once resolved
  std::int64_t device_end_mark = -1;
  double device_ns = -1.0;             // device time of the event's kernels, -1 when unknown
  std::int64_t device_begin_ns = -1;   // device start on the host clock (approx.), -1 unknown
  std::uint64_t thread_id = 0;  // small per-thread index (0, 1, 2, ...)
  int stream = -1;              // CUDA stream index, -1 for host-only events
  std::uint64_t bytes = 0;      // bytes moved (upload/download)

  std::int64_t host_ns() const { return host_end_ns - host_begin_ns; }
  std::string policy_string() const;  // "upload=always download=yes sync=per_call"
  std::string op_path() const;        // "matmul2d|cuda|direct"
};

namespace detail {
extern std::atomic<bool> g_trace_enabled;
}
inline bool trace_enabled() { return detail::g_trace_enabled.load(std::memory_order_relaxed); }
void trace_enable(bool on);
// Drops every buffered event (and the CUDA events behind them); resets trace_dropped().
void trace_clear();
// Ring-buffer capacity in events (default 65536, or the environment's LC_TRACE_CAPACITY at
// first use); the oldest events are dropped past it. Shrinking keeps the newest events.
void trace_set_capacity(std::size_t n);
std::size_t trace_capacity();
std::uint64_t trace_dropped();  // events overwritten since the last clear
std::size_t trace_size();       // events in the buffer now
// Device times on GPU backends (two CUDA events per launch, default on). They cost a few
// microseconds per launch on CUDA; off, CUDA ops record host times only (~100 ns per op).
void trace_set_device_timing(bool on);
bool trace_device_timing();
void trace_record(TraceEvent&& e);
// A snapshot of the buffer in recording order, device times resolved (this waits for the
// device to reach the marks of the events it resolves).
std::vector<TraceEvent> trace_events();
std::int64_t trace_now_ns();
std::uint64_t trace_thread_index();

// Helpers for the recording sites (OpRunner).
// Formats the shapes of `n` tensors into e.shapes without allocating.
void trace_set_shapes(TraceEvent& e, const Tensor* const* tensors, int n);
void trace_set_policy(TraceEvent& e, const ExecutionPolicy& p);

// Device marks of one launch. While it holds marks it keeps the trace from recycling them
// (a shared lock, taken only when tracing on a backend with a device clock).
class TraceMarks {
 public:
  TraceMarks() = default;
  ~TraceMarks() {
    if (held_) release();
  }
  TraceMarks(const TraceMarks&) = delete;
  TraceMarks& operator=(const TraceMarks&) = delete;
  // Records the begin mark on `be`'s queue (-1 when the backend has no device clock).
  std::int64_t begin(Backend& be);
  std::int64_t end(Backend& be);  // the end mark (-1 if begin() gave none)

 private:
  void release();  // drops the shared lock; recycles the marks when too many are out
  bool held_ = false;
};

// ---- timeline --------------------------------------------------------------------------
struct TraceGroup {
  std::string key;  // op | "op|device|path" | device
  std::uint64_t count = 0;
  std::int64_t total_ns = 0;   // host time
  double mean_ns = 0;
  std::int64_t min_ns = 0;
  std::int64_t max_ns = 0;
  // Gap from each event's end to the next event's begin on the same host thread: launch,
  // staging and sync overhead between events. The last event of a thread counts 0.
  std::int64_t total_delta_next_ns = 0;
  double mean_delta_next_ns = 0;
  std::uint64_t device_count = 0;  // events with a known device time
  double device_total_ns = -1;     // -1 when no event of the group has a device time
  double device_mean_ns = -1;
  std::uint64_t bytes = 0;
  double share = 0;  // total_ns / the sum of total_ns over all groups
};

struct TraceHotspot {
  std::uint64_t seq = 0;
  const char* kind = "op";
  const char* op = "";
  std::string op_path;
  const char* device = "cpu";
  const char* path = "direct";
  std::string shapes;
  std::string policy;
  double ns = 0;               // device_ns when known, else host_ns
  const char* timing = "host"; // which of the two `ns` is
  std::int64_t host_ns = 0;
  double device_ns = -1;
  std::int64_t delta_next_ns = 0;
  std::uint64_t thread = 0;
  int stream = -1;
  std::uint64_t bytes = 0;
};

struct TraceTimeline {
  std::string group_by;
  std::string group_sort_by;
  bool group_descending = true;
  std::uint64_t event_count = 0;
  std::uint64_t dropped = 0;
  std::int64_t span_ns = 0;        // first begin to last end
  std::int64_t total_host_ns = 0;  // sum of every event's host time
  std::vector<TraceGroup> groups;
  std::vector<TraceHotspot> hotspots;
};

// group_by: "op" | "op_path" | "device". group_sort_by: a numeric TraceGroup field (see
// trace_group_sort_fields()). Both are validated: lc::ValueError lists the valid values.
TraceTimeline trace_timeline(const std::string& group_by = "op",
                             const std::string& group_sort_by = "total_ns",
                             bool group_descending = true, int hotspot_top_k = 8);
// The same from a given event list (in recording order), for tests and offline use.
TraceTimeline trace_timeline_of(const std::vector<TraceEvent>& events, const std::string& group_by,
                                const std::string& group_sort_by, bool group_descending,
                                int hotspot_top_k, std::uint64_t dropped = 0);
const std::vector<std::string>& trace_group_by_keys();
const std::vector<std::string>& trace_group_sort_fields();
// The numeric value of `field` (one of trace_group_sort_fields()) of a group.
double trace_group_field(const TraceGroup& g, const std::string& field);

// ---- Chrome / Perfetto export ----------------------------------------------------------
// Trace-event JSON: {"traceEvents": [...], "displayTimeUnit": "ns", "otherData": {...}}.
// Complete ("X") events, ts/dur in microseconds from the first event; process 1 = host with
// one track (tid) per host thread, process 2 = CUDA with one track per stream holding the
// device-time events. Opens in ui.perfetto.dev and chrome://tracing.
std::string trace_chrome_json();
std::string trace_chrome_json_of(const std::vector<TraceEvent>& events);
// Writes trace_chrome_json() to `path`; returns the number of events written. Throws
// lc::ValueError when the file cannot be written.
std::size_t trace_export_chrome(const std::string& path);

}  // namespace lc
