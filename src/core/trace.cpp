// The trace ring buffer: bounded, thread-safe, cheap when disabled.
#include "lightning_core/trace.h"

#include <chrono>
#include <mutex>

#include "backends/backend.h"

namespace lc {

namespace detail {
std::atomic<bool> g_trace_enabled{false};
}

const char* to_string(TraceKind k) {
  switch (k) {
    case TraceKind::op: return "op";
    case TraceKind::upload: return "upload";
    case TraceKind::download: return "download";
    case TraceKind::sync: return "sync";
  }
  return "?";
}

namespace {
struct Ring {
  std::mutex mu;
  std::vector<TraceEvent> buf;
  std::size_t capacity = 65536;
  std::size_t head = 0;  // next write position once full
  std::uint64_t seq = 0;
  std::uint64_t dropped = 0;
};
Ring& ring() {
  static Ring r;
  return r;
}
std::atomic<std::uint64_t> g_next_thread{0};
}  // namespace

std::int64_t trace_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::uint64_t trace_thread_index() {
  thread_local std::uint64_t idx = g_next_thread.fetch_add(1);
  return idx;
}

void trace_enable(bool on) { detail::g_trace_enabled.store(on, std::memory_order_relaxed); }

void trace_clear() {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  r.buf.clear();
  r.head = 0;
  r.dropped = 0;
  for (DeviceKind d : {DeviceKind::cuda}) {
    Backend& be = get_backend(d);
    if (be.available()) be.release_marks();
  }
}

void trace_set_capacity(std::size_t n) {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  if (n == 0) n = 1;
  // Keep the newest events that still fit, in order.
  std::vector<TraceEvent> ordered;
  ordered.reserve(r.buf.size());
  for (std::size_t i = 0; i < r.buf.size(); ++i)
    ordered.push_back(std::move(r.buf[(r.head + i) % r.buf.size()]));
  if (ordered.size() > n) {
    r.dropped += ordered.size() - n;
    ordered.erase(ordered.begin(), ordered.begin() + static_cast<std::ptrdiff_t>(ordered.size() - n));
  }
  r.buf = std::move(ordered);
  r.head = 0;
  r.capacity = n;
}

std::size_t trace_capacity() {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  return r.capacity;
}

std::uint64_t trace_dropped() {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  return r.dropped;
}

void trace_record(TraceEvent&& e) {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  e.seq = r.seq++;
  if (r.buf.size() < r.capacity) {
    r.buf.push_back(std::move(e));
  } else {
    r.buf[r.head] = std::move(e);
    r.head = (r.head + 1) % r.capacity;
    ++r.dropped;
  }
}

std::vector<TraceEvent> trace_events() {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  std::vector<TraceEvent> out;
  out.reserve(r.buf.size());
  const std::size_t n = r.buf.size();
  for (std::size_t i = 0; i < n; ++i) {
    TraceEvent& e = r.buf[(r.head + i) % n];
    if (e.device_ns < 0 && e.device_begin_mark >= 0 && e.device_end_mark >= 0)
      e.device_ns = get_backend(e.device).elapsed_ns(e.device_begin_mark, e.device_end_mark);
    out.push_back(e);
  }
  return out;
}

}  // namespace lc
