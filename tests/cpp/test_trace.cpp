// The runtime trace: recording through the op launch path, the ring buffer's bound, the
// timeline (groups, sorting, hotspots), the Chrome export and concurrent recording.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/ops.h"
#include "lightning_core/tensor.h"
#include "lightning_core/trace.h"

namespace {

using lc::TraceEvent;
using lc::TraceKind;

lc::Tensor filled(const std::vector<std::int64_t>& shape, float v = 1.0f) {
  lc::Tensor t = lc::Tensor::empty(shape);
  float* p = t.data_as<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = v + 0.01f * static_cast<float>(i % 7);
  return t;
}

lc::ExecutionPolicy cpu_policy() {
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cpu;
  return p;
}

std::size_t count_of(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (std::size_t pos = s.find(needle); pos != std::string::npos; pos = s.find(needle, pos + 1)) ++n;
  return n;
}

// Every test starts from an empty, disabled trace at the default capacity and leaves it so.
class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cap_ = lc::trace_capacity();
    lc::trace_enable(false);
    lc::trace_clear();
  }
  void TearDown() override {
    lc::trace_enable(false);
    lc::trace_set_capacity(cap_);
    lc::trace_clear();
  }
  std::size_t cap_ = 0;
};

// A synthetic event for timeline tests: begin/end in ns on a thread.
TraceEvent mk(std::uint64_t seq, const char* op, lc::DeviceKind dev, const char* path,
              std::int64_t begin, std::int64_t end, std::uint64_t thread = 0, double device_ns = -1,
              TraceKind kind = TraceKind::op) {
  TraceEvent e;
  e.seq = seq;
  e.kind = kind;
  e.op = op;
  e.for_op = op;
  e.device = dev;
  e.path = path;
  e.host_begin_ns = begin;
  e.host_end_ns = end;
  e.thread_id = thread;
  e.device_ns = device_ns;
  e.stream = dev == lc::DeviceKind::cuda ? 0 : -1;
  if (device_ns >= 0) e.device_begin_ns = begin + 100;
  return e;
}

}  // namespace

TEST_F(TraceTest, DisabledRecordsNothing) {
  lc::Tensor a = filled({16}), b = filled({16});
  lc::elementwise("vector_add", a, &b, 1.0f, cpu_policy());
  EXPECT_EQ(lc::trace_size(), 0u);
  EXPECT_TRUE(lc::trace_events().empty());
}

TEST_F(TraceTest, KnownSequenceOrderAndContents) {
  lc::Tensor a = filled({4, 3}), b = filled({3, 5}), v = filled({8}), w = filled({8}),
             s = filled({2, 6});
  const lc::ExecutionPolicy p = cpu_policy();
  const std::int64_t before = lc::trace_now_ns();
  lc::trace_enable(true);
  lc::Tensor r1 = lc::matmul2d(a, b, p);
  lc::Tensor r2 = lc::elementwise("vector_add", v, &w, 1.0f, p);
  lc::Tensor r3 = lc::softmax(s, p);
  lc::trace_enable(false);
  lc::Tensor r4 = lc::softmax(s, p);  // not recorded
  const std::int64_t after = lc::trace_now_ns();

  const std::vector<TraceEvent> ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 3u);
  const char* ops[] = {"matmul2d", "vector_add", "softmax"};
  const char* shapes[] = {"[4, 3] [3, 5]", "[8] [8]", "[2, 6]"};
  for (std::size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(ops[i]);
    const TraceEvent& e = ev[i];
    EXPECT_EQ(e.kind, TraceKind::op);
    EXPECT_STREQ(e.op, ops[i]);
    EXPECT_STREQ(e.for_op, ops[i]);
    EXPECT_EQ(e.device, lc::DeviceKind::cpu);
    EXPECT_STREQ(e.path, "direct");
    EXPECT_STREQ(e.shapes, shapes[i]);
    EXPECT_EQ(e.policy_string(), "upload=always download=yes sync=per_call");
    EXPECT_EQ(e.op_path(), std::string(ops[i]) + "|cpu|direct");
    EXPECT_EQ(e.thread_id, lc::trace_thread_index());
    EXPECT_EQ(e.stream, -1);            // CPU: host-only event
    EXPECT_EQ(e.device_ns, -1.0);       // no device clock on the CPU
    EXPECT_EQ(e.device_begin_mark, -1);
    EXPECT_EQ(e.bytes, 0u);
    EXPECT_GE(e.host_begin_ns, before);
    EXPECT_LE(e.host_end_ns, after);
    EXPECT_LE(e.host_begin_ns, e.host_end_ns);
    if (i > 0) {
      EXPECT_EQ(e.seq, ev[i - 1].seq + 1);
      EXPECT_GE(e.host_begin_ns, ev[i - 1].host_end_ns);
    }
  }
}

TEST_F(TraceTest, PolicyIsRecorded) {
  lc::ExecutionPolicy p = cpu_policy();
  p.sync = lc::SyncMode::batch;
  lc::Tensor v = filled({8});
  lc::trace_enable(true);
  lc::elementwise("relu", v, nullptr, 1.0f, p);
  lc::trace_enable(false);
  const auto ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_STREQ(ev[0].op, "relu");
  EXPECT_STREQ(ev[0].shapes, "[8]");
  EXPECT_EQ(ev[0].policy_string(), "upload=always download=yes sync=batch");
}

TEST_F(TraceTest, ShapesAreCutToTheInlineBuffer) {
  // 6 inputs of 8 dims with 10-digit sizes cannot fit kTraceShapesCap: the text ends in "...".
  // (The last dimension is 0: a representable tensor; 1234567890^8 elements would be refused.)
  std::vector<std::int64_t> shape(8, 1234567890);
  shape[7] = 0;
  std::vector<std::int64_t> strides(8, 0);
  float x = 0;
  lc::Tensor big = lc::Tensor::wrap(&x, 8, shape.data(), strides.data(), lc::DType::f32,
                                    lc::DeviceKind::cpu);
  const lc::Tensor* ins[6] = {&big, &big, &big, &big, &big, &big};
  TraceEvent e;
  lc::trace_set_shapes(e, ins, 6);
  const std::string s = e.shapes;
  EXPECT_LT(s.size(), lc::kTraceShapesCap);
  ASSERT_GE(s.size(), 3u);
  EXPECT_EQ(s.substr(s.size() - 3), "...");
  EXPECT_EQ(s.rfind("[1234567890, 1234567890", 0), 0u);

  lc::Tensor small = filled({2, 3});
  const lc::Tensor* two[2] = {&small, nullptr};
  lc::trace_set_shapes(e, two, 2);
  EXPECT_STREQ(e.shapes, "[2, 3]");
}

TEST_F(TraceTest, RingBufferIsBounded) {
  lc::trace_set_capacity(10);
  EXPECT_EQ(lc::trace_capacity(), 10u);
  for (int i = 0; i < 25; ++i) {
    TraceEvent e;
    e.op = "x";
    e.host_begin_ns = i;
    e.host_end_ns = i + 1;
    lc::trace_record(std::move(e));
  }
  EXPECT_EQ(lc::trace_size(), 10u);
  EXPECT_EQ(lc::trace_dropped(), 15u);
  std::vector<TraceEvent> ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 10u);
  for (std::size_t i = 0; i < ev.size(); ++i) EXPECT_EQ(ev[i].host_begin_ns, 15 + static_cast<int>(i));
  for (std::size_t i = 1; i < ev.size(); ++i) EXPECT_EQ(ev[i].seq, ev[i - 1].seq + 1);

  // Shrinking keeps the newest events, in order.
  lc::trace_set_capacity(4);
  ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev.front().host_begin_ns, 21);
  EXPECT_EQ(ev.back().host_begin_ns, 24);
  EXPECT_EQ(lc::trace_dropped(), 21u);

  // Real ops through the launch path respect the bound too.
  lc::Tensor v = filled({4});
  lc::trace_enable(true);
  for (int i = 0; i < 9; ++i) lc::elementwise("relu", v, nullptr, 1.0f, cpu_policy());
  lc::trace_enable(false);
  ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 4u);
  for (const TraceEvent& e : ev) EXPECT_STREQ(e.op, "relu");

  lc::trace_clear();
  EXPECT_EQ(lc::trace_size(), 0u);
  EXPECT_EQ(lc::trace_dropped(), 0u);
  EXPECT_EQ(lc::trace_capacity(), 4u);  // clear keeps the capacity
}

TEST_F(TraceTest, TimelineGroupsByOpPathAndDevice) {
  using lc::DeviceKind;
  // Thread 0: matmul(100) gap 50 upload(20) gap 30 matmul(300) gap 10 sync(40).
  // Thread 1: matmul on cpu (fallback) 1000.
  std::vector<TraceEvent> ev = {
      mk(0, "matmul2d", DeviceKind::cuda, "direct", 0, 100, 0, 80.0),
      mk(1, "matmul2d", DeviceKind::cpu, "fallback", 5, 1005, 1),
      mk(2, "upload", DeviceKind::cuda, "direct", 150, 170, 0, -1, TraceKind::upload),
      mk(3, "matmul2d", DeviceKind::cuda, "direct", 200, 500, 0, 250.0),
      mk(4, "sync", DeviceKind::cuda, "direct", 510, 550, 0, -1, TraceKind::sync),
  };
  ev[2].bytes = 4096;

  lc::TraceTimeline t = lc::trace_timeline_of(ev, "op", "total_ns", true, 8);
  EXPECT_EQ(t.event_count, 5u);
  EXPECT_EQ(t.span_ns, 1005);
  EXPECT_EQ(t.total_host_ns, 100 + 1000 + 20 + 300 + 40);
  ASSERT_EQ(t.groups.size(), 3u);
  const lc::TraceGroup& mm = t.groups[0];
  EXPECT_EQ(mm.key, "matmul2d");
  EXPECT_EQ(mm.count, 3u);
  EXPECT_EQ(mm.total_ns, 1400);
  EXPECT_DOUBLE_EQ(mm.mean_ns, 1400.0 / 3);
  EXPECT_EQ(mm.min_ns, 100);
  EXPECT_EQ(mm.max_ns, 1000);
  // Gaps on the same thread: 100->150 = 50, 500->510 = 10; thread 1's only event: 0.
  EXPECT_EQ(mm.total_delta_next_ns, 60);
  EXPECT_DOUBLE_EQ(mm.mean_delta_next_ns, 20.0);
  EXPECT_EQ(mm.device_count, 2u);
  EXPECT_DOUBLE_EQ(mm.device_total_ns, 330.0);
  EXPECT_DOUBLE_EQ(mm.device_mean_ns, 165.0);
  EXPECT_DOUBLE_EQ(mm.share, 1400.0 / 1460.0);
  EXPECT_EQ(t.groups[1].key, "sync");
  EXPECT_EQ(t.groups[1].total_delta_next_ns, 0);  // the thread's last event
  EXPECT_EQ(t.groups[2].key, "upload");
  EXPECT_EQ(t.groups[2].total_delta_next_ns, 30);
  EXPECT_EQ(t.groups[2].bytes, 4096u);
  EXPECT_EQ(t.groups[2].device_total_ns, -1.0);  // no device time known

  t = lc::trace_timeline_of(ev, "op_path", "total_delta_next_ns", true, 8);
  ASSERT_EQ(t.groups.size(), 4u);
  EXPECT_EQ(t.groups[0].key, "matmul2d|cuda|direct");
  EXPECT_EQ(t.groups[0].total_delta_next_ns, 60);
  EXPECT_EQ(t.groups[1].key, "upload|cuda|direct");
  std::set<std::string> keys;
  for (const auto& g : t.groups) keys.insert(g.key);
  EXPECT_TRUE(keys.count("matmul2d|cpu|fallback"));
  EXPECT_TRUE(keys.count("sync|cuda|direct"));

  t = lc::trace_timeline_of(ev, "device", "count", false, 0);
  ASSERT_EQ(t.groups.size(), 2u);
  EXPECT_EQ(t.groups[0].key, "cpu");  // ascending by count: cpu 1, cuda 4
  EXPECT_EQ(t.groups[0].count, 1u);
  EXPECT_EQ(t.groups[1].key, "cuda");
  EXPECT_EQ(t.groups[1].count, 4u);
  EXPECT_TRUE(t.hotspots.empty());
}

TEST_F(TraceTest, TimelineSortsByEveryNumericField) {
  std::vector<TraceEvent> ev;
  std::uint64_t seq = 0;
  std::int64_t now = 0;
  const char* ops[] = {"a", "b", "c", "d"};
  for (int rep = 0; rep < 3; ++rep)
    for (int i = 0; i < 4; ++i) {
      const std::int64_t dur = 10 * (i + 1) + rep;
      ev.push_back(ev.size() % 2 ? mk(seq++, ops[i], lc::DeviceKind::cuda, "direct", now, now + dur, 0,
                                        static_cast<double>(dur) / 2)
                                 : mk(seq++, ops[i], lc::DeviceKind::cpu, "direct", now, now + dur));
      now += dur + 7 * (4 - i);
    }
  for (const std::string& f : lc::trace_group_sort_fields()) {
    for (bool desc : {true, false}) {
      SCOPED_TRACE(f + (desc ? " desc" : " asc"));
      const lc::TraceTimeline t = lc::trace_timeline_of(ev, "op", f, desc, 3);
      ASSERT_EQ(t.groups.size(), 4u);
      for (std::size_t i = 1; i < t.groups.size(); ++i) {
        const double x = lc::trace_group_field(t.groups[i - 1], f), y = lc::trace_group_field(t.groups[i], f);
        if (desc) EXPECT_GE(x, y);
        else EXPECT_LE(x, y);
      }
    }
  }
  // total_ns desc puts the longest op first; asc the shortest.
  EXPECT_EQ(lc::trace_timeline_of(ev, "op", "total_ns", true, 0).groups.front().key, "d");
  EXPECT_EQ(lc::trace_timeline_of(ev, "op", "total_ns", false, 0).groups.front().key, "a");
  // The gap after "a" is the largest (7*4 each time, the last "d" has none).
  EXPECT_EQ(lc::trace_timeline_of(ev, "op", "total_delta_next_ns", true, 0).groups.front().key, "a");
}

TEST_F(TraceTest, TimelineValidatesArguments) {
  std::vector<TraceEvent> ev = {mk(0, "x", lc::DeviceKind::cpu, "direct", 0, 10)};
  try {
    lc::trace_timeline_of(ev, "kernel", "total_ns", true, 8);
    FAIL() << "group_by=kernel accepted";
  } catch (const lc::ValueError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("kernel"), std::string::npos) << m;
    for (const char* k : {"\"op\"", "\"op_path\"", "\"device\""}) EXPECT_NE(m.find(k), std::string::npos) << m;
  }
  try {
    lc::trace_timeline_of(ev, "op", "speed", true, 8);
    FAIL() << "group_sort_by=speed accepted";
  } catch (const lc::ValueError& e) {
    const std::string m = e.what();
    for (const std::string& f : lc::trace_group_sort_fields())
      EXPECT_NE(m.find("\"" + f + "\""), std::string::npos) << f << " missing in: " << m;
  }
  EXPECT_THROW(lc::trace_timeline_of(ev, "op", "total_ns", true, -1), lc::ValueError);
  // An empty trace is a valid, empty timeline.
  const lc::TraceTimeline t = lc::trace_timeline_of({}, "op_path", "count", true, 8);
  EXPECT_EQ(t.event_count, 0u);
  EXPECT_TRUE(t.groups.empty());
  EXPECT_TRUE(t.hotspots.empty());
}

TEST_F(TraceTest, HotspotsAreTheTopEventsPreferringDeviceTime) {
  std::vector<TraceEvent> ev = {
      mk(0, "a", lc::DeviceKind::cpu, "direct", 0, 500),
      mk(1, "b", lc::DeviceKind::cuda, "direct", 600, 700, 0, 900.0),  // device time counts
      mk(2, "c", lc::DeviceKind::cpu, "direct", 800, 1100),
      mk(3, "d", lc::DeviceKind::cpu, "direct", 1200, 1210),
      mk(4, "e", lc::DeviceKind::cpu, "direct", 1300, 1600),  // ties with c: earlier seq first
  };
  std::strcpy(ev[0].shapes, "[7, 7]");
  lc::TraceTimeline t = lc::trace_timeline_of(ev, "op", "total_ns", true, 4);
  ASSERT_EQ(t.hotspots.size(), 4u);
  EXPECT_STREQ(t.hotspots[0].op, "b");
  EXPECT_STREQ(t.hotspots[0].timing, "device");
  EXPECT_DOUBLE_EQ(t.hotspots[0].ns, 900.0);
  EXPECT_EQ(t.hotspots[0].host_ns, 100);
  EXPECT_EQ(t.hotspots[0].op_path, "b|cuda|direct");
  EXPECT_EQ(t.hotspots[0].delta_next_ns, 100);
  EXPECT_STREQ(t.hotspots[1].op, "a");
  EXPECT_STREQ(t.hotspots[1].timing, "host");
  EXPECT_EQ(t.hotspots[1].shapes, "[7, 7]");
  EXPECT_EQ(t.hotspots[1].policy, "upload=always download=yes sync=per_call");
  EXPECT_STREQ(t.hotspots[2].op, "c");
  EXPECT_STREQ(t.hotspots[3].op, "e");
  // k larger than the trace: every event once.
  EXPECT_EQ(lc::trace_timeline_of(ev, "op", "total_ns", true, 100).hotspots.size(), 5u);
}

TEST_F(TraceTest, TimelineOfRecordedOps) {
  lc::Tensor a = filled({32, 32}), v = filled({64});
  lc::trace_enable(true);
  for (int i = 0; i < 5; ++i) lc::matmul2d(a, a, cpu_policy());
  for (int i = 0; i < 3; ++i) lc::elementwise("gelu", v, nullptr, 1.0f, cpu_policy());
  lc::trace_enable(false);
  const lc::TraceTimeline t = lc::trace_timeline("op_path", "count", true, 2);
  EXPECT_EQ(t.event_count, 8u);
  ASSERT_EQ(t.groups.size(), 2u);
  EXPECT_EQ(t.groups[0].key, "matmul2d|cpu|direct");
  EXPECT_EQ(t.groups[0].count, 5u);
  EXPECT_EQ(t.groups[1].key, "gelu|cpu|direct");
  EXPECT_EQ(t.groups[1].count, 3u);
  ASSERT_EQ(t.hotspots.size(), 2u);
  EXPECT_GE(t.hotspots[0].ns, t.hotspots[1].ns);
}

TEST_F(TraceTest, ChromeExportHasHostAndStreamTracks) {
  std::vector<TraceEvent> ev = {
      mk(0, "matmul2d", lc::DeviceKind::cuda, "direct", 1000, 3000, 0, 1500.0),
      mk(1, "softmax", lc::DeviceKind::cpu, "direct", 1500, 2500, 3),
      mk(2, "upload", lc::DeviceKind::cuda, "direct", 3500, 4000, 0, -1, TraceKind::upload),
  };
  std::strcpy(ev[1].shapes, "[2, \"6\"]");  // quotes must be escaped
  const std::string j = lc::trace_chrome_json_of(ev);
  EXPECT_EQ(j.rfind("{\"displayTimeUnit\":\"ns\"", 0), 0u);
  EXPECT_NE(j.find("\"traceEvents\":["), std::string::npos);
  // 3 host spans + 1 device span.
  EXPECT_EQ(count_of(j, "\"ph\":\"X\""), 4u);
  EXPECT_NE(j.find("\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":3"), std::string::npos);
  EXPECT_NE(j.find("\"cuda stream 0\""), std::string::npos);
  // ts/dur in microseconds from the first event: the matmul at 0 for 2 us; its device span
  // starts 100 ns in and lasts 1.5 us on process 2.
  EXPECT_NE(j.find("\"ts\":0.000,\"dur\":2.000,\"pid\":1,\"tid\":0"), std::string::npos) << j;
  EXPECT_NE(j.find("\"cat\":\"device\",\"ph\":\"X\",\"ts\":0.100,\"dur\":1.500,\"pid\":2,\"tid\":0"),
            std::string::npos) << j;
  EXPECT_NE(j.find("[2, \\\"6\\\"]"), std::string::npos);
  // No CUDA process when nothing has device time.
  const std::string cpu_only = lc::trace_chrome_json_of({ev[1]});
  EXPECT_EQ(cpu_only.find("lightning_core cuda"), std::string::npos);
  EXPECT_EQ(count_of(cpu_only, "\"ph\":\"X\""), 1u);
}

TEST_F(TraceTest, ExportChromeWritesAFile) {
  lc::Tensor v = filled({8});
  lc::trace_enable(true);
  lc::elementwise("relu", v, nullptr, 1.0f, cpu_policy());
  lc::trace_enable(false);
  const std::string path = ::testing::TempDir() + "lc_trace_test.json";
  EXPECT_EQ(lc::trace_export_chrome(path), 1u);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string body;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) body.append(buf, n);
  std::fclose(f);
  std::remove(path.c_str());
  EXPECT_EQ(body, lc::trace_chrome_json());
  EXPECT_NE(body.find("\"name\":\"relu\""), std::string::npos);
  EXPECT_THROW(lc::trace_export_chrome("/nonexistent-dir/x/trace.json"), lc::ValueError);
}

TEST_F(TraceTest, ConcurrentRecordingFromSeveralThreads) {
  constexpr int kThreads = 8, kOps = 300;
  lc::trace_set_capacity(kThreads * kOps * 2);
  lc::trace_enable(true);
  std::vector<std::thread> pool;
  std::vector<std::uint64_t> ids(kThreads);
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([t, &ids] {
      ids[t] = lc::trace_thread_index();
      lc::Tensor v = filled({static_cast<std::int64_t>(t + 1)});
      for (int i = 0; i < kOps; ++i) lc::elementwise(i % 2 ? "relu" : "gelu", v, nullptr, 1.0f, cpu_policy());
    });
  for (auto& th : pool) th.join();
  lc::trace_enable(false);

  const auto ev = lc::trace_events();
  ASSERT_EQ(ev.size(), static_cast<std::size_t>(kThreads * kOps));
  EXPECT_EQ(lc::trace_dropped(), 0u);
  std::map<std::uint64_t, std::vector<const TraceEvent*>> by_thread;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    if (i) EXPECT_EQ(ev[i].seq, ev[i - 1].seq + 1);
    by_thread[ev[i].thread_id].push_back(&ev[i]);
  }
  ASSERT_EQ(by_thread.size(), static_cast<std::size_t>(kThreads));
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(by_thread.count(ids[t]));
    const auto& mine = by_thread[ids[t]];
    ASSERT_EQ(mine.size(), static_cast<std::size_t>(kOps));
    const std::string shape = "[" + std::to_string(t + 1) + "]";
    for (int i = 0; i < kOps; ++i) {
      EXPECT_STREQ(mine[i]->op, i % 2 ? "relu" : "gelu");
      EXPECT_EQ(mine[i]->shapes, shape);  // no torn events
      if (i) EXPECT_GE(mine[i]->host_begin_ns, mine[i - 1]->host_end_ns);
    }
  }

  // A small ring under the same load stays bounded and counts what it dropped.
  lc::trace_clear();
  lc::trace_set_capacity(100);
  lc::trace_enable(true);
  pool.clear();
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([] {
      lc::Tensor v = filled({4});
      for (int i = 0; i < kOps; ++i) lc::elementwise("relu", v, nullptr, 1.0f, cpu_policy());
    });
  for (auto& th : pool) th.join();
  lc::trace_enable(false);
  EXPECT_EQ(lc::trace_size(), 100u);
  EXPECT_EQ(lc::trace_dropped(), static_cast<std::uint64_t>(kThreads * kOps - 100));
  const auto last = lc::trace_events();
  for (std::size_t i = 1; i < last.size(); ++i) EXPECT_EQ(last[i].seq, last[i - 1].seq + 1);
}

TEST_F(TraceTest, CudaTransfersSyncsAndDeviceTimes) {
  if (!lc::get_backend(lc::DeviceKind::cuda).available()) GTEST_SKIP() << "no usable CUDA device";
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  lc::Tensor a = filled({256, 128}), b = filled({128, 64});
  lc::trace_enable(true);
  lc::matmul2d(a, b, p);  // upload a, upload b, op, download
  lc::Tensor da = a.to(lc::DeviceKind::cuda), db = b.to(lc::DeviceKind::cuda);
  lc::ExecutionPolicy resident = p;
  resident.download = false;
  lc::matmul2d(da, db, resident);  // op, sync
  lc::trace_enable(false);
  const auto ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 6u);
  const TraceKind kinds[] = {TraceKind::upload, TraceKind::upload, TraceKind::op,
                             TraceKind::download, TraceKind::op, TraceKind::sync};
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(ev[i].kind, kinds[i]) << i;
    EXPECT_STREQ(ev[i].for_op, "matmul2d");
    EXPECT_EQ(ev[i].device, lc::DeviceKind::cuda);
    EXPECT_EQ(ev[i].stream, 0);
  }
  EXPECT_EQ(ev[0].bytes, a.nbytes());
  EXPECT_EQ(ev[3].bytes, 256u * 64u * 4u);
  for (std::size_t i : {2u, 4u}) {
    EXPECT_GT(ev[i].device_ns, 0.0);
    EXPECT_GT(ev[i].device_begin_ns, 0);
    EXPECT_STREQ(ev[i].shapes, "[256, 128] [128, 64]");
  }
  EXPECT_EQ(ev[4].policy_string(), "upload=always download=no sync=per_call");
  // Device timing off: the same op records host times only.
  lc::trace_clear();
  lc::trace_set_device_timing(false);
  lc::trace_enable(true);
  lc::matmul2d(da, db, resident);
  lc::trace_enable(false);
  lc::trace_set_device_timing(true);
  const auto host_only = lc::trace_events();
  ASSERT_EQ(host_only.size(), 2u);
  EXPECT_EQ(host_only[0].device_ns, -1.0);
  EXPECT_GT(host_only[0].host_ns(), 0);
  const std::string j = lc::trace_chrome_json_of(ev);
  EXPECT_EQ(count_of(j, "\"cat\":\"device\""), 2u);
  EXPECT_NE(j.find("\"cuda stream 0\""), std::string::npos);
}

TEST_F(TraceTest, CudaMarksAreRecycledInLongRuns) {
  if (!lc::get_backend(lc::DeviceKind::cuda).available()) GTEST_SKIP() << "no usable CUDA device";
  lc::ExecutionPolicy p;
  p.device = lc::DeviceRequest::cuda;
  p.download = false;
  p.sync = lc::SyncMode::batch;
  lc::Tensor x = filled({64}).to(lc::DeviceKind::cuda);
  lc::trace_set_capacity(16);
  lc::trace_enable(true);
  // 2 marks per launch: past 2 x 4096 outstanding marks the trace recycles them (twice here).
  for (int i = 0; i < 9000; ++i) lc::elementwise("relu", x, nullptr, 1.0f, p);
  lc::trace_enable(false);
  const auto ev = lc::trace_events();
  ASSERT_EQ(ev.size(), 16u);
  for (const TraceEvent& e : ev) {
    EXPECT_STREQ(e.op, "relu");
    EXPECT_GT(e.device_ns, 0.0);
    EXPECT_GE(e.device_begin_ns, 0);
  }
}
