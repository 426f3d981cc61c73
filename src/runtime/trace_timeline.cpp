// The trace timeline (grouped totals, gaps to the next event, hotspots) and the Chrome /
// Perfetto trace-event export, both computed from a snapshot of the ring buffer.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "lightning_core/errors.h"
#include "lightning_core/trace.h"

namespace lc {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) {
    if (!s.empty()) s += ", ";
    s += '"' + x + '"';
  }
  return s;
}

std::string group_key(const TraceEvent& e, const std::string& group_by) {
  if (group_by == "op") return e.op;
  if (group_by == "device") return to_string(e.device);
  return e.op_path();
}

// For each event (by index), the gap from its end to the begin of the next event recorded on
// the same host thread; 0 for a thread's last event. Never negative.
std::vector<std::int64_t> deltas_next(const std::vector<TraceEvent>& events) {
  std::vector<std::int64_t> d(events.size(), 0);
  std::unordered_map<std::uint64_t, std::size_t> last;  // thread -> index of its latest event
  for (std::size_t i = 0; i < events.size(); ++i) {
    auto it = last.find(events[i].thread_id);
    if (it != last.end()) {
      const TraceEvent& prev = events[it->second];
      d[it->second] = std::max<std::int64_t>(0, events[i].host_begin_ns - prev.host_end_ns);
      it->second = i;
    } else {
      last.emplace(events[i].thread_id, i);
    }
  }
  return d;
}

}  // namespace

const std::vector<std::string>& trace_group_by_keys() {
  static const std::vector<std::string> k = {"op", "op_path", "device"};
  return k;
}

const std::vector<std::string>& trace_group_sort_fields() {
  static const std::vector<std::string> k = {
      "count",         "total_ns",       "mean_ns",        "min_ns",
      "max_ns",        "total_delta_next_ns", "mean_delta_next_ns", "device_count",
      "device_total_ns", "device_mean_ns", "bytes",          "share"};
  return k;
}

double trace_group_field(const TraceGroup& g, const std::string& f) {
  if (f == "count") return static_cast<double>(g.count);
  if (f == "total_ns") return static_cast<double>(g.total_ns);
  if (f == "mean_ns") return g.mean_ns;
  if (f == "min_ns") return static_cast<double>(g.min_ns);
  if (f == "max_ns") return static_cast<double>(g.max_ns);
  if (f == "total_delta_next_ns") return static_cast<double>(g.total_delta_next_ns);
  if (f == "mean_delta_next_ns") return g.mean_delta_next_ns;
  if (f == "device_count") return static_cast<double>(g.device_count);
  if (f == "device_total_ns") return g.device_total_ns;
  if (f == "device_mean_ns") return g.device_mean_ns;
  if (f == "bytes") return static_cast<double>(g.bytes);
  if (f == "share") return g.share;
  throw_value("runtime_trace_timeline", "group_sort_by=\"" + f + "\" is not a group field; use one of " +
                                           join(trace_group_sort_fields()));
}

TraceTimeline trace_timeline_of(const std::vector<TraceEvent>& events, const std::string& group_by,
                                const std::string& sort_by, bool descending, int top_k,
                                std::uint64_t dropped) {
  const auto& keys = trace_group_by_keys();
  if (std::find(keys.begin(), keys.end(), group_by) == keys.end())
    throw_value("runtime_trace_timeline",
                "group_by=\"" + group_by + "\" is not supported; use one of " + join(keys));
  const auto& fields = trace_group_sort_fields();
  if (std::find(fields.begin(), fields.end(), sort_by) == fields.end())
    throw_value("runtime_trace_timeline", "group_sort_by=\"" + sort_by +
                                             "\" is not a group field; use one of " + join(fields));
  if (top_k < 0)
    throw_value("runtime_trace_timeline",
                "hotspot_top_k must be >= 0 (got " + std::to_string(top_k) + ")");

  TraceTimeline t;
  t.group_by = group_by;
  t.group_sort_by = sort_by;
  t.group_descending = descending;
  t.event_count = events.size();
  t.dropped = dropped;
  if (events.empty()) return t;

  const std::vector<std::int64_t> delta = deltas_next(events);
  std::int64_t first = events.front().host_begin_ns, last = events.front().host_end_ns;

  // Groups in order of first appearance (a stable base for the sort).
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const TraceEvent& e = events[i];
    first = std::min(first, e.host_begin_ns);
    last = std::max(last, e.host_end_ns);
    const std::int64_t ns = e.host_ns();
    t.total_host_ns += ns;
    std::string key = group_key(e, group_by);
    auto [it, fresh] = index.emplace(key, t.groups.size());
    if (fresh) {
      TraceGroup g;
      g.key = std::move(key);
      g.min_ns = ns;
      g.max_ns = ns;
      t.groups.push_back(std::move(g));
    }
    TraceGroup& g = t.groups[it->second];
    ++g.count;
    g.total_ns += ns;
    g.min_ns = std::min(g.min_ns, ns);
    g.max_ns = std::max(g.max_ns, ns);
    g.total_delta_next_ns += delta[i];
    g.bytes += e.bytes;
    if (e.device_ns >= 0) {
      g.device_total_ns = (g.device_count ? g.device_total_ns : 0.0) + e.device_ns;
      ++g.device_count;
    }
  }
  t.span_ns = last - first;
  for (TraceGroup& g : t.groups) {
    g.mean_ns = static_cast<double>(g.total_ns) / static_cast<double>(g.count);
    g.mean_delta_next_ns = static_cast<double>(g.total_delta_next_ns) / static_cast<double>(g.count);
    if (g.device_count) g.device_mean_ns = g.device_total_ns / static_cast<double>(g.device_count);
    g.share = t.total_host_ns > 0
                  ? static_cast<double>(g.total_ns) / static_cast<double>(t.total_host_ns)
                  : 0.0;
  }
  std::stable_sort(t.groups.begin(), t.groups.end(), [&](const TraceGroup& a, const TraceGroup& b) {
    const double x = trace_group_field(a, sort_by), y = trace_group_field(b, sort_by);
    return descending ? x > y : x < y;
  });

  // Hotspots: the top-k single events by time (device time when known, else host time).
  std::vector<std::size_t> order(events.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto ns_of = [&](std::size_t i) {
    const TraceEvent& e = events[i];
    return e.device_ns >= 0 ? e.device_ns : static_cast<double>(e.host_ns());
  };
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(top_k), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                    [&](std::size_t a, std::size_t b) {
                      const double x = ns_of(a), y = ns_of(b);
                      return x != y ? x > y : events[a].seq < events[b].seq;
                    });
  for (std::size_t j = 0; j < k; ++j) {
    const TraceEvent& e = events[order[j]];
    TraceHotspot h;
    h.seq = e.seq;
    h.kind = to_string(e.kind);
    h.op = e.op;
    h.op_path = e.op_path();
    h.device = to_string(e.device);
    h.path = e.path;
    h.shapes = e.shapes;
    h.policy = e.policy_string();
    h.ns = ns_of(order[j]);
    h.timing = e.device_ns >= 0 ? "device" : "host";
    h.host_ns = e.host_ns();
    h.device_ns = e.device_ns;
    h.delta_next_ns = delta[order[j]];
    h.thread = e.thread_id;
    h.stream = e.stream;
    h.bytes = e.bytes;
    t.hotspots.push_back(std::move(h));
  }
  return t;
}

TraceTimeline trace_timeline(const std::string& group_by, const std::string& sort_by,
                             bool descending, int top_k) {
  std::vector<TraceEvent> ev = trace_events();
  return trace_timeline_of(ev, group_by, sort_by, descending, top_k, trace_dropped());
}

// ---- Chrome / Perfetto export ----------------------------------------------------------

namespace {

void put_json_string(std::string& out, const char* s) {
  out += '"';
  for (const char* p = s; *p; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

// Nanoseconds as microseconds with ns resolution ("12.345").
void put_us(std::string& out, std::int64_t ns) {
  char buf[40];
  const bool neg = ns < 0;
  const std::uint64_t a = neg ? static_cast<std::uint64_t>(-ns) : static_cast<std::uint64_t>(ns);
  std::snprintf(buf, sizeof buf, "%s%llu.%03llu", neg ? "-" : "",
                static_cast<unsigned long long>(a / 1000), static_cast<unsigned long long>(a % 1000));
  out += buf;
}

constexpr int kHostPid = 1;
constexpr int kCudaPid = 2;

void put_meta(std::string& out, const char* what, int pid, std::int64_t tid, const std::string& name,
              bool& first) {
  out += first ? "\n" : ",\n";
  first = false;
  out += "{\"name\":\"";
  out += what;
  out += "\",\"ph\":\"M\",\"pid\":" + std::to_string(pid) + ",\"tid\":" + std::to_string(tid) +
         ",\"args\":{\"name\":";
  put_json_string(out, name.c_str());
  out += "}}";
}

void put_args(std::string& out, const TraceEvent& e, bool device_track) {
  out += "\"args\":{\"seq\":" + std::to_string(e.seq) + ",\"kind\":\"" + to_string(e.kind) +
         "\",\"op_path\":";
  put_json_string(out, e.op_path().c_str());
  out += ",\"for_op\":";
  put_json_string(out, e.for_op);
  out += ",\"device\":\"";
  out += to_string(e.device);
  out += "\",\"path\":\"";
  out += e.path;
  out += "\",\"shapes\":";
  put_json_string(out, e.shapes);
  out += ",\"policy\":";
  put_json_string(out, e.policy_string().c_str());
  out += ",\"host_ns\":" + std::to_string(e.host_ns());
  if (e.device_ns >= 0) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.0f", e.device_ns);
    out += ",\"device_ns\":";
    out += buf;
  }
  if (e.bytes) out += ",\"bytes\":" + std::to_string(e.bytes);
  if (e.stream >= 0) out += ",\"stream\":" + std::to_string(e.stream);
  if (device_track) out += ",\"timing\":\"device\"";
  out += '}';
}

}  // namespace

std::string trace_chrome_json_of(const std::vector<TraceEvent>& events) {
  std::string out;
  out.reserve(256 + events.size() * 400);
  out += "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"generator\":\"lightning_core\","
         "\"time_unit\":\"us from the first event\"";
  std::int64_t origin = 0;
  if (!events.empty()) {
    origin = events.front().host_begin_ns;
    for (const TraceEvent& e : events) {
      origin = std::min(origin, e.host_begin_ns);
      if (e.device_begin_ns >= 0) origin = std::min(origin, e.device_begin_ns);
    }
  }
  out += ",\"origin_steady_ns\":" + std::to_string(origin) + "},\"traceEvents\":[";

  bool first = true;
  std::set<std::uint64_t> threads;
  std::set<int> streams;
  for (const TraceEvent& e : events) {
    threads.insert(e.thread_id);
    if (e.device_ns >= 0 && e.device_begin_ns >= 0 && e.stream >= 0) streams.insert(e.stream);
  }
  put_meta(out, "process_name", kHostPid, 0, "lightning_core host", first);
  for (std::uint64_t t : threads)
    put_meta(out, "thread_name", kHostPid, static_cast<std::int64_t>(t),
             "host thread " + std::to_string(t), first);
  if (!streams.empty()) {
    put_meta(out, "process_name", kCudaPid, 0, "lightning_core cuda", first);
    for (int s : streams) put_meta(out, "thread_name", kCudaPid, s, "cuda stream " + std::to_string(s), first);
  }

  for (const TraceEvent& e : events) {
    // The host span of every event on its thread's track.
    out += ",\n{\"name\":";
    put_json_string(out, e.op);
    out += ",\"cat\":\"";
    out += to_string(e.kind);
    out += "\",\"ph\":\"X\",\"ts\":";
    put_us(out, e.host_begin_ns - origin);
    out += ",\"dur\":";
    put_us(out, std::max<std::int64_t>(0, e.host_ns()));
    out += ",\"pid\":" + std::to_string(kHostPid) + ",\"tid\":" + std::to_string(e.thread_id) + ',';
    put_args(out, e, false);
    out += '}';
    // The device span of its kernels on the stream's track.
    if (e.device_ns >= 0 && e.device_begin_ns >= 0 && e.stream >= 0) {
      out += ",\n{\"name\":";
      put_json_string(out, e.op);
      out += ",\"cat\":\"device\",\"ph\":\"X\",\"ts\":";
      put_us(out, e.device_begin_ns - origin);
      out += ",\"dur\":";
      put_us(out, static_cast<std::int64_t>(e.device_ns));
      out += ",\"pid\":" + std::to_string(kCudaPid) + ",\"tid\":" + std::to_string(e.stream) + ',';
      put_args(out, e, true);
      out += '}';
    }
  }
  out += "\n]}\n";
  return out;
}

std::string trace_chrome_json() { return trace_chrome_json_of(trace_events()); }

std::size_t trace_export_chrome(const std::string& path) {
  const std::vector<TraceEvent> ev = trace_events();
  const std::string json = trace_chrome_json_of(ev);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw_value("runtime_trace_export_chrome", "cannot open \"" + path + "\" for writing");
  f.write(json.data(), static_cast<std::streamsize>(json.size()));
  f.close();
  if (!f) throw_value("runtime_trace_export_chrome", "failed writing \"" + path + "\"");
  return ev.size();
}

}  // namespace lc
