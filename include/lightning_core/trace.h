// Runtime trace: every op dispatch, upload, download and sync records an event here when
// tracing is on. Recording happens in one place (src/core/launch.h), so nothing bypasses it.
// Disabled cost: one relaxed atomic load per op.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lightning_core/types.h"

namespace lc {

enum class TraceKind : std::uint8_t { op = 0, upload = 1, download = 2, sync = 3 };
const char* to_string(TraceKind k);

struct TraceEvent {
  std::uint64_t seq = 0;        // global order of recording
  TraceKind kind = TraceKind::op;
  const char* op = "";          // static string: the op's name ("matmul2d", "upload", ...)
  DeviceKind device = DeviceKind::cpu;
  const char* path = "direct";  // "direct" | "fallback"
  std::string shapes;           // "a=[128, 64] b=[64, 32]"
  std::string policy;           // "upload=always download=yes sync=per_call"
  std::int64_t host_begin_ns = 0;  // steady clock, ns
  std::int64_t host_end_ns = 0;
  std::int64_t device_begin_mark = -1;  // backend marks (CUDA events); resolved lazily
  std::int64_t device_end_mark = -1;
  double device_ns = -1.0;      // device time of the event's kernels, -1 when unknown
  std::uint64_t thread_id = 0;  // small per-thread index (0, 1, 2, ...)
  int stream = -1;              // CUDA stream index, -1 for host-only events
  std::uint64_t bytes = 0;      // bytes moved (upload/download)
};

namespace detail {
extern std::atomic<bool> g_trace_enabled;
}
inline bool trace_enabled() { return detail::g_trace_enabled.load(std::memory_order_relaxed); }
void trace_enable(bool on);
void trace_clear();
// Ring-buffer capacity in events (default 65536); the oldest events are dropped past it.
void trace_set_capacity(std::size_t n);
std::size_t trace_capacity();
std::uint64_t trace_dropped();  // events overwritten since the last clear
void trace_record(TraceEvent&& e);
// A snapshot of the buffer in recording order, device times resolved.
std::vector<TraceEvent> trace_events();
std::int64_t trace_now_ns();
std::uint64_t trace_thread_index();

}  // namespace lc
