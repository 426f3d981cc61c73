// The trace ring buffer: bounded, thread-safe, cheap when disabled.
#include "lightning_core/trace.h"

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "backends/backend.h"
#include "lightning_core/tensor.h"

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

std::string TraceEvent::policy_string() const {
  std::string s = "upload=";
  s += to_string(upload);
  s += download ? " download=yes sync=" : " download=no sync=";
  s += to_string(sync);
  return s;
}

std::string TraceEvent::op_path() const {
  std::string s = op;
  s += '|';
  s += to_string(device);
  s += '|';
  s += path;
  return s;
}

namespace {

constexpr std::size_t kDefaultCapacity = 65536;

std::size_t capacity_from_env() {
  const char* v = std::getenv("LC_TRACE_CAPACITY");
  if (!v || !*v) return kDefaultCapacity;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (end == v || *end != '\0' || n == 0) return kDefaultCapacity;  // malformed: ignore
  return static_cast<std::size_t>(n);
}

struct Ring {
  std::mutex mu;
  std::vector<TraceEvent> buf;  // grows to `capacity`, then wraps
  std::size_t capacity = capacity_from_env();
  std::size_t head = 0;  // oldest event once full (= next write position)
  std::uint64_t seq = 0;
  std::uint64_t dropped = 0;
  // Device marks (CUDA events) recorded since the last recycle, and the clock anchor: the
  // first marked event's begin mark and host time. Device begins are placed on the host clock
  // as anchor_host + elapsed(anchor_mark, begin_mark).
  std::uint64_t marks = 0;
  std::int64_t anchor_mark = -1;
  std::int64_t anchor_host_ns = 0;
  DeviceKind anchor_device = DeviceKind::cuda;
};
Ring& ring() {
  static Ring* r = new Ring();  // never destroyed: threads may record during exit
  return *r;
}
// Held shared by a launch between its begin mark and its record; exclusively to recycle.
std::shared_mutex& marks_mutex() {
  static std::shared_mutex* m = new std::shared_mutex();
  return *m;
}
std::atomic<bool> g_recycle_needed{false};
std::atomic<bool> g_device_timing{true};
std::atomic<std::uint64_t> g_next_thread{0};

std::size_t recycle_threshold(const Ring& r) {
  return 2 * (r.capacity < 4096 ? std::size_t{4096} : r.capacity);
}

// Resolves the device times of `e` (ring lock held); its marks are no longer needed after.
void resolve(Ring& r, TraceEvent& e) {
  if (e.device_begin_mark < 0 || e.device_end_mark < 0) return;
  Backend& be = get_backend(e.device);
  e.device_ns = be.elapsed_ns(e.device_begin_mark, e.device_end_mark);
  if (r.anchor_mark >= 0 && r.anchor_device == e.device) {
    const double off = be.elapsed_ns(r.anchor_mark, e.device_begin_mark);
    if (e.device_ns >= 0) e.device_begin_ns = r.anchor_host_ns + static_cast<std::int64_t>(off);
  }
  e.device_begin_mark = e.device_end_mark = -1;
}

void release_all_marks() {
  for (DeviceKind d : {DeviceKind::cuda, DeviceKind::metal}) {
    Backend& be = get_backend(d);
    if (be.available()) be.release_marks();
  }
}

// Resolves every buffered event, then hands all marks back to the backends.
void recycle_marks() {
  std::unique_lock<std::shared_mutex> mk(marks_mutex());
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  if (r.marks == 0) return;
  for (TraceEvent& e : r.buf) resolve(r, e);
  release_all_marks();
  r.marks = 0;
  r.anchor_mark = -1;
  g_recycle_needed.store(false, std::memory_order_relaxed);
}

char* put_int(char* p, char* end, std::int64_t v) {
  auto res = std::to_chars(p, end, v);
  return res.ec == std::errc() ? res.ptr : end;
}

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

void trace_set_device_timing(bool on) { g_device_timing.store(on, std::memory_order_relaxed); }
bool trace_device_timing() { return g_device_timing.load(std::memory_order_relaxed); }

void trace_clear() {
  std::unique_lock<std::shared_mutex> mk(marks_mutex());
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  r.buf.clear();
  r.buf.shrink_to_fit();
  r.head = 0;
  r.dropped = 0;
  r.marks = 0;
  r.anchor_mark = -1;
  g_recycle_needed.store(false, std::memory_order_relaxed);
  release_all_marks();
}

void trace_set_capacity(std::size_t n) {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  if (n == 0) n = 1;
  // Keep the newest events that still fit, in order.
  std::vector<TraceEvent> ordered;
  const std::size_t size = r.buf.size();
  const std::size_t keep = size < n ? size : n;
  ordered.reserve(keep);
  for (std::size_t i = size - keep; i < size; ++i)
    ordered.push_back(r.buf[(r.head + i) % size]);
  r.dropped += size - keep;
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

std::size_t trace_size() {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  return r.buf.size();
}

void trace_record(TraceEvent&& e) {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  e.seq = r.seq++;
  if (e.device_begin_mark >= 0) {
    if (r.anchor_mark < 0) {
      r.anchor_mark = e.device_begin_mark;
      r.anchor_host_ns = e.host_begin_ns;
      r.anchor_device = e.device;
    }
    r.marks += 2;
    if (r.marks >= recycle_threshold(r)) g_recycle_needed.store(true, std::memory_order_relaxed);
  }
  if (r.buf.size() < r.capacity) {
    if (r.buf.capacity() == r.buf.size()) {
      // Grow geometrically but never past the capacity.
      std::size_t want = r.buf.size() < 256 ? 256 : r.buf.size() * 2;
      r.buf.reserve(want < r.capacity ? want : r.capacity);
    }
    r.buf.push_back(e);
  } else {
    r.buf[r.head] = e;
    r.head = (r.head + 1) % r.capacity;
    ++r.dropped;
  }
}

std::vector<TraceEvent> trace_events() {
  Ring& r = ring();
  std::lock_guard<std::mutex> lk(r.mu);
  std::vector<TraceEvent> out;
  const std::size_t n = r.buf.size();
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    TraceEvent& e = r.buf[(r.head + i) % n];
    resolve(r, e);
    out.push_back(e);
  }
  return out;
}

void trace_set_shapes(TraceEvent& e, const Tensor* const* tensors, int n) {
  char* p = e.shapes;
  // Leave room for "..." and the NUL.
  char* const limit = e.shapes + kTraceShapesCap - 4;
  bool cut = false;
  for (int i = 0; i < n && !cut; ++i) {
    const Tensor* t = tensors[i];
    if (!t) continue;
    if (p != e.shapes) {
      if (p >= limit) { cut = true; break; }
      *p++ = ' ';
    }
    if (p >= limit) { cut = true; break; }
    *p++ = '[';
    const std::int64_t* s = t->shape_data();
    for (int d = 0; d < t->ndim(); ++d) {
      if (d) {
        if (p + 2 >= limit) { cut = true; break; }
        *p++ = ',';
        *p++ = ' ';
      }
      char* q = put_int(p, limit, s[d]);
      if (q >= limit) { cut = true; break; }
      p = q;
    }
    if (cut) break;
    if (p >= limit) { cut = true; break; }
    *p++ = ']';
  }
  if (cut) {
    if (p > limit) p = limit;
    std::memcpy(p, "...", 3);
    p += 3;
  }
  *p = '\0';
}

void trace_set_policy(TraceEvent& e, const ExecutionPolicy& p) {
  e.upload = p.upload;
  e.download = p.download;
  e.sync = p.sync;
}

void TraceMarks::release() {
  marks_mutex().unlock_shared();
  held_ = false;
  if (g_recycle_needed.load(std::memory_order_relaxed)) recycle_marks();
}

std::int64_t TraceMarks::begin(Backend& be) {
  // No device clock (or device timing off): no marks and no lock either.
  if (be.kind() == DeviceKind::cpu || !g_device_timing.load(std::memory_order_relaxed)) return -1;
  marks_mutex().lock_shared();
  held_ = true;
  const std::int64_t m = be.mark();
  if (m < 0) {
    marks_mutex().unlock_shared();
    held_ = false;
  }
  return m;
}

std::int64_t TraceMarks::end(Backend& be) { return held_ ? be.mark() : -1; }

}  // namespace lc
