// Cost-model calibration (placement.h): a short measurement of this machine, cached in the
// auto-tune cache keyed by the CPU and GPU fingerprints, so later processes reuse it.
//
// Per op family and per side the model is t(flops) = a + flops / r. Both parameters come from
// two probe sizes (small and medium, e.g. GEMM 64^3 and 384^3 on the CPU, 64^3 and 1024^3 on
// the GPU): each point is the MEDIAN of >= 7 runs after warm-up runs (the medium size first, so
// the CPU thread pool, first-touch pages, cuBLASLt/cuDNN handles are up before anything is
// timed); a >= 0 and r > 0 are enforced (fit_two_points). A single size extrapolated badly: a
// small-size CPU rate misses the multi-threaded rate of medium sizes, one cold sample made the
// CPU look slow. Shared fixed costs: the CPU call overhead (a 1-element op) and the GPU launch +
// sync round trip of a 1-element kernel; the per-family intercepts are stored as the excess over
// them. Transfers: per direction a small (4 KB) and a large (8 MB) copy from pageable host memory
// (what one-shot numpy calls do), appended to a tiny kernel + sync, give latency and bandwidth.
// With CJ_CONV2D_CPU_CROSSOVER_DYNAMIC=1 the conv crossover is re-measured (never taken from
// the cache): a ladder of conv sizes is run on both sides (GPU including upload and download)
// and the first size where the GPU wins becomes the crossover. Everything here calls backends
// directly (not the op API), so it never recurses into placement.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "runtime/placement.h"
#include "lightning_core/autotune.h"
#include "lightning_core/log.h"
#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"

namespace lc {

namespace {

constexpr const char* kCalibOp = "calibration";
// v2: two-point fits per family and side, per-family overheads, transfer latencies. The key
// changes with the schema, so models cached by older versions are never reused.
constexpr const char* kCalibShapes = "cost-model-v3";  // v3: small-copy bandwidths, pooled CPU GEMM

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return false;
  const std::string s(v);
  return s == "1" || s == "on" || s == "true" || s == "yes";
}

// Median wall time (µs) of `reps` runs of f.
double median_us(const std::function<void()>& f, int reps) {
  std::vector<double> t(static_cast<std::size_t>(std::max(reps, 1)));
  for (auto& x : t) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    x = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return std::max(t[t.size() / 2], 1e-3);
}

// A buffer of `n` floats on `be` filled with a small constant (defined contents).
struct DevBuf {
  Backend* be = nullptr;
  void* p = nullptr;
  DevBuf(Backend& b, std::size_t n) : be(&b), p(b.alloc(n * sizeof(float))) {
    std::vector<float> h(n, 0.01f);
    try {
      b.copy_from_host(p, h.data(), n * sizeof(float));
    } catch (...) {
      b.free(p);
      throw;
    }
  }
  ~DevBuf() { be->free(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  float* f() const { return static_cast<float*>(p); }
};

// One probe: an op of a family at one size (calibration_probe: its registry arguments and
// flops), with its buffers and its call on the backend.
struct Probe {
  double flops = 0;
  std::vector<std::unique_ptr<DevBuf>> bufs;
  std::function<void()> run;
  float* buf(Backend& be, std::size_t n) {
    bufs.push_back(std::make_unique<DevBuf>(be, n));
    return bufs.back()->f();
  }
};

// Size parameters of the two probes per family: {small, medium} for each side.
struct Sizes {
  std::int64_t mm[2];         // n of an n^3 GEMM
  std::int64_t att[2][2];     // seq, head dim
  std::int64_t conv[2][3];    // c (= in channels), oc, h = w (3x3, pad 1)
  std::int64_t norm[2][2];    // rows, cols
  std::int64_t ew[2];         // elements
};
constexpr Sizes kCpuSizes{{64, 384},
                          {{16, 32}, {256, 64}},
                          {{3, 16, 16}, {32, 32, 32}},
                          {{16, 256}, {512, 1024}},
                          {4096, 1 << 20}};
constexpr Sizes kGpuSizes{{64, 1024},
                          {{16, 32}, {1024, 64}},
                          {{3, 16, 16}, {64, 64, 64}},
                          {{16, 256}, {4096, 1024}},
                          {4096, 1 << 22}};

}  // namespace

// The op that stands for each family, at one of the two sizes, as registry arguments: its flops
// are the OpDef's (estimate_work), the formulas the ops themselves are placed by.
CalibrationProbe calibration_probe(OpFamily fam, bool gpu, int which) {
  const Sizes& sz = gpu ? kGpuSizes : kCpuSizes;
  CalibrationProbe p;
  p.family = fam;
  switch (fam) {
    case OpFamily::matmul: {
      const std::int64_t n = sz.mm[which];
      p.op = "matmul2d";
      p.shapes = {{n, n}, {n, n}};
      break;
    }
    case OpFamily::attention: {
      const std::int64_t seq = sz.att[which][0], d = sz.att[which][1];
      p.op = "attention2d";
      p.shapes = {{seq, d}, {seq, d}, {seq, d}};
      break;
    }
    case OpFamily::conv2d: {  // 3x3, padding 1: the output keeps h x w
      const std::int64_t c = sz.conv[which][0], oc = sz.conv[which][1], hw = sz.conv[which][2];
      p.op = "conv2d_nchw";
      p.shapes = {{1, c, hw, hw}, {oc, c, 3, 3}};
      p.pad = 1;
      break;
    }
    case OpFamily::norm: {
      p.op = "layernorm";
      p.shapes = {{sz.norm[which][0], sz.norm[which][1]}};
      break;
    }
    case OpFamily::elementwise:
    case OpFamily::count: {
      const std::int64_t n = sz.ew[which];
      p.family = OpFamily::elementwise;
      p.op = "vector_add";
      p.shapes = {{n}, {n}};
      break;
    }
  }
  p.flops = estimate_work(p.op, p.shapes, 1, 1, p.pad, p.pad).flops;
  return p;
}

namespace {

// The probe's buffers and its call on `be`, from its registry arguments.
std::unique_ptr<Probe> make_probe(Backend& be, OpFamily fam, bool gpu, int which) {
  const CalibrationProbe cp = calibration_probe(fam, gpu, which);
  const auto& s = cp.shapes;
  auto p = std::make_unique<Probe>();
  p->flops = cp.flops;
  switch (cp.family) {
    case OpFamily::matmul: {
      const std::int64_t n = s[0][0];
      MatmulArgs m;
      m.a = p->buf(be, n * n);
      m.b = p->buf(be, n * n);
      m.out = p->buf(be, n * n);
      m.m = m.k = m.n = n;
      p->run = [&be, m] { be.matmul(m); };
      break;
    }
    case OpFamily::attention: {
      const std::int64_t seq = s[0][0], d = s[0][1];
      AttentionArgs a;
      a.q = a.k = a.v = p->buf(be, seq * d);
      a.out = p->buf(be, seq * d);
      a.sq = a.sk = seq;
      a.d = a.dv = d;
      a.scale = 1.0f / std::sqrt(static_cast<float>(d));
      p->run = [&be, a] { be.attention(a); };
      break;
    }
    case OpFamily::conv2d: {
      const std::int64_t c = s[0][1], hw = s[0][2], oc = s[1][0];
      Conv2dArgs a;
      a.x = p->buf(be, c * hw * hw);
      a.w = p->buf(be, oc * c * 9);
      a.out = p->buf(be, oc * hw * hw);
      a.n = 1;
      a.c = c;
      a.oc = oc;
      a.h = a.w_in = hw;
      a.kh = a.kw = 3;
      a.pad_h = a.pad_w = cp.pad;
      a.oh = a.ow = hw;
      p->run = [&be, a] { be.conv2d(a); };
      break;
    }
    case OpFamily::norm: {
      const std::int64_t rows = s[0][0], cols = s[0][1];
      LayerNormArgs a;
      a.x = p->buf(be, rows * cols);
      a.out = p->buf(be, rows * cols);
      a.rows = rows;
      a.cols = cols;
      p->run = [&be, a] { be.layernorm(a); };
      break;
    }
    case OpFamily::elementwise:
    case OpFamily::count: {
      const std::int64_t n = s[0][0];
      ElementwiseArgs e;
      e.kind = EwKind::add;
      e.a = p->buf(be, n);
      e.b = p->buf(be, n);
      e.out = p->buf(be, n);
      e.n = n;
      p->run = [&be, e] { be.elementwise(e); };
      break;
    }
  }
  return p;
}

// One measured point of the fit (kept in the cache entry for diagnosis).
struct Point {
  double flops = 0, us = 0;
};

// Fits t = a + flops / r for every family on `be` (`device`: synchronise after each run).
// Writes the rates and intercepts, and the raw points.
void fit_families(Backend& be, bool device, double gflops[], double a_us[],
                  Point points[][2]) {
  for (int i = 0; i < CostModel::kFamilies; ++i) {
    const auto fam = static_cast<OpFamily>(i);
    auto small = make_probe(be, fam, device, 0);
    auto medium = make_probe(be, fam, device, 1);
    auto timed = [&](Probe& p) {
      return [&be, &p, device] {
        p.run();
        if (device) be.synchronize();
      };
    };
    const auto run_s = timed(*small), run_m = timed(*medium);
    // Warm-up: the medium size first (starts the thread pool / library handles, touches every
    // page), then the small one.
    run_m();
    run_m();
    run_s();
    run_s();
    const double ts = median_us(run_s, 11);
    const double tm = median_us(run_m, 7);
    const LinearFit f = fit_two_points(small->flops, ts, medium->flops, tm);
    gflops[i] = f.gflops;
    a_us[i] = f.a_us;
    points[i][0] = {small->flops, ts};
    points[i][1] = {medium->flops, tm};
  }
}

// Transfer latency and bandwidth of one direction: a tiny kernel + sync with a small and a large
// copy appended, minus the kernel + sync alone. `to_device`: H2D, else D2H.
void fit_transfer(Backend& gpu, bool to_device, double launch_us, std::size_t mid,
                  double& latency_us, double& gbps, double& small_gbps) {
  const std::size_t small = 4u << 10, large = 8u << 20;
  std::vector<char> host(large, 1);
  DevBuf one(gpu, 1);
  void* d = gpu.alloc(large);
  ElementwiseArgs e;
  e.kind = EwKind::relu;
  e.a = one.f();
  e.out = one.f();
  e.n = 1;
  auto run = [&](std::size_t bytes) {
    return [&gpu, &host, d, e, bytes, to_device] {
      if (to_device) {
        gpu.copy_from_host(d, host.data(), bytes);
        gpu.elementwise(e);
      } else {
        gpu.elementwise(e);
        gpu.copy_to_host(host.data(), d, bytes);
      }
      gpu.synchronize();
    };
  };
  double ts = 0, tl = 0, tm = 0;
  try {
    const auto rs = run(small), rl = run(large), rm = run(mid);
    rl();
    rs();
    rm();
    ts = median_us(rs, 11);
    tl = median_us(rl, 7);
    tm = median_us(rm, 9);
  } catch (...) {
    gpu.free(d);
    throw;
  }
  gpu.free(d);
  const double slope = (tl - ts) / static_cast<double>(large - small);  // µs per byte
  gbps = slope > 0 ? 1.0 / (slope * 1e3) : static_cast<double>(large) / (tl * 1e3);
  latency_us = std::max(0.0, ts - launch_us - small / (gbps * 1e3));
  // The small-copy regime (direct, unstaged copies up to `mid` bytes): its own slope between the
  // 4 KiB and the `mid` point, never faster than the large-copy fit (0 = no separate regime).
  const double slope_small = (tm - ts) / static_cast<double>(mid - small);
  small_gbps = slope_small > 0 ? std::min(gbps, 1.0 / (slope_small * 1e3)) : 0.0;
}

// The smallest conv (MACs) of a ladder where the GPU, uploads and downloads included, beats the
// CPU; the geometric mean with the last CPU-winning size. Returns <0 when the CPU always won.
double measure_conv_crossover(Backend& cpu, Backend& gpu) {
  double last_cpu_win = -1;
  for (std::int64_t c : {2, 4, 8, 16, 32, 64}) {
    const std::int64_t hw = 16;
    const std::size_t xs = c * hw * hw, ws = c * c * 9;
    std::vector<float> hx(xs, 0.01f), hw_(ws, 0.01f), hout(xs);
    Conv2dArgs a;
    a.n = 1;
    a.c = a.oc = c;
    a.h = a.w_in = hw;
    a.kh = a.kw = 3;
    a.pad_h = a.pad_w = 1;
    a.oh = a.ow = hw;
    const double macs = static_cast<double>(c) * c * 9 * hw * hw;
    a.x = hx.data();
    a.w = hw_.data();
    a.out = hout.data();
    cpu.conv2d(a);
    const double t_cpu = median_us([&] { cpu.conv2d(a); }, 7);
    void* dx = gpu.alloc(xs * 4);
    void* dw = gpu.alloc(ws * 4);
    void* dout = gpu.alloc(xs * 4);
    Conv2dArgs g = a;
    g.x = static_cast<float*>(dx);
    g.w = static_cast<float*>(dw);
    g.out = static_cast<float*>(dout);
    auto gpu_call = [&] {
      gpu.copy_from_host(dx, hx.data(), xs * 4);
      gpu.copy_from_host(dw, hw_.data(), ws * 4);
      gpu.conv2d(g);
      gpu.copy_to_host(hout.data(), dout, xs * 4);
      gpu.synchronize();
    };
    double t_gpu = 0;
    try {
      gpu_call();
      t_gpu = median_us(gpu_call, 7);
    } catch (...) {
      gpu.free(dx);
      gpu.free(dw);
      gpu.free(dout);
      throw;
    }
    gpu.free(dx);
    gpu.free(dw);
    gpu.free(dout);
    if (t_gpu < t_cpu) return last_cpu_win > 0 ? std::sqrt(last_cpu_win * macs) : macs;
    last_cpu_win = macs;
  }
  return -1;
}


std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

autotune::Fields to_fields(const CostModel& m, bool gpu, const Point cpu_pts[][2],
                           const Point gpu_pts[][2]) {
  autotune::Fields f;
  auto pts = [](const Point p[2]) {
    return num(p[0].flops) + "flop:" + num(p[0].us) + "us," + num(p[1].flops) + "flop:" +
           num(p[1].us) + "us";
  };
  // The measured fields (placement.h's tables): the CPU side's always, the GPU side's with one.
  auto stored = [gpu](CostSide s) { return s == CostSide::cpu || (gpu && s == CostSide::gpu); };
  for (int i = 0; i < CostModel::kFamilies; ++i) {
    const std::string fam = to_string(static_cast<OpFamily>(i));
    for (const CostFamilyField& c : kCostFamilyFields)
      if (stored(c.measured)) f[c.cache_prefix + fam] = num((m.*c.field)[i]);
    if (cpu_pts) f["cpu_points_" + fam] = pts(cpu_pts[i]);  // informational
    if (gpu && gpu_pts) f["gpu_points_" + fam] = pts(gpu_pts[i]);
  }
  for (const CostScalarField& c : kCostScalarFields)
    if (stored(c.measured)) f[c.name] = num(m.*c.field);
  f["choice"] = gpu ? "cpu+gpu" : "cpu";
  return f;
}

bool from_fields(const autotune::Fields& f, CostModel& m) {
  // positive: rates and bandwidths (> 0); otherwise a time (>= 0).
  auto get = [&](const std::string& k, double& v, bool positive) {
    auto it = f.find(k);
    if (it == f.end()) return false;
    char* end = nullptr;
    const double d = std::strtod(it->second.c_str(), &end);
    if (!end || *end != '\0' || !std::isfinite(d) || d < 0 || (positive && !(d > 0))) return false;
    v = d;
    return true;
  };
  const bool gpu = f.count("gpu_launch_us") > 0;
  bool ok = true;
  auto stored = [gpu](CostSide s) { return s == CostSide::cpu || (gpu && s == CostSide::gpu); };
  for (int i = 0; i < CostModel::kFamilies; ++i) {
    const std::string fam = to_string(static_cast<OpFamily>(i));
    for (const CostFamilyField& c : kCostFamilyFields)
      if (stored(c.measured)) ok = ok && get(c.cache_prefix + fam, (m.*c.field)[i], c.positive);
  }
  for (const CostScalarField& c : kCostScalarFields)
    if (stored(c.measured)) ok = ok && get(c.name, m.*c.field, c.positive);
  m.gpu_calibrated = gpu;
  return ok;
}

std::mutex g_calib_mu;
bool g_calib_done = false;

}  // namespace

bool calibration_enabled() {
  const char* v = std::getenv("LC_CALIBRATE");
  if (!v) return true;
  const std::string s(v);
  return !(s == "0" || s == "off" || s == "false" || s == "no");
}

CostModel calibrate(bool force) {
  std::lock_guard<std::mutex> lk(g_calib_mu);
  Backend& cpu = get_backend(DeviceKind::cpu);
  Backend& gpu = get_backend(DeviceKind::cuda);
  const bool have_gpu = gpu.available();
  const std::string fp = cpu_fingerprint() + " / " + (have_gpu ? cuda_fingerprint() : "no-gpu");
  const std::string key = autotune::make_key(kCalibOp, kCalibShapes, "float32", fp);
  CostModel m;
  bool have = false;
  if (!force) {
    if (auto f = autotune::lookup(key)) have = from_fields(*f, m);
  }
  if (!have) {
    m = CostModel{};
    autotune::note_measurement();
    Point cpu_pts[CostModel::kFamilies][2], gpu_pts[CostModel::kFamilies][2];
    // Fixed per-call cost of the CPU path: a 1-element op.
    {
      float a = 1, b = 2, o = 0;
      ElementwiseArgs e;
      e.a = &a;
      e.b = &b;
      e.out = &o;
      e.n = 1;
      cpu.elementwise(e);
      m.cpu_overhead_us = median_us([&] { cpu.elementwise(e); }, 21);
    }
    double a_us[CostModel::kFamilies];
    fit_families(cpu, false, m.cpu_gflops, a_us, cpu_pts);
    for (int i = 0; i < CostModel::kFamilies; ++i)
      m.cpu_family_overhead_us[i] = std::max(0.0, a_us[i] - m.cpu_overhead_us);
    if (have_gpu) {
      {  // launch + sync round trip of a 1-element kernel
        DevBuf one(gpu, 1);
        ElementwiseArgs e;
        e.kind = EwKind::relu;
        e.a = one.f();
        e.out = one.f();
        e.n = 1;
        for (int w = 0; w < 3; ++w) {
          gpu.elementwise(e);
          gpu.synchronize();
        }
        m.gpu_launch_us = median_us([&] { gpu.elementwise(e); gpu.synchronize(); }, 21);
      }
      fit_families(gpu, true, m.gpu_gflops, a_us, gpu_pts);
      for (int i = 0; i < CostModel::kFamilies; ++i)
        m.gpu_family_overhead_us[i] = std::max(0.0, a_us[i] - m.gpu_launch_us);
      const auto mid = static_cast<std::size_t>(m.small_copy_bytes);
      fit_transfer(gpu, true, m.gpu_launch_us, mid, m.h2d_latency_us, m.h2d_gbps, m.h2d_small_gbps);
      fit_transfer(gpu, false, m.gpu_launch_us, mid, m.d2h_latency_us, m.d2h_gbps, m.d2h_small_gbps);
      m.gpu_calibrated = true;
    }
    autotune::store(key, kCalibOp, kCalibShapes, "float32", fp,
                    to_fields(m, have_gpu, cpu_pts, have_gpu ? gpu_pts : nullptr));
  }
  if (have_gpu && env_flag("CJ_CONV2D_CPU_CROSSOVER_DYNAMIC")) {
    const double x = measure_conv_crossover(cpu, gpu);
    // CPU won every size of the ladder: keep the crossover above the largest measured size.
    m.conv_cpu_crossover_macs = x > 0 ? x : 64.0 * 64 * 9 * 256 * 2;
    m.conv_crossover_explicit = true;  // measured on purpose: it decides conv placement
  }
  m.calibrated = true;
  install_calibrated_model(m);
  g_calib_done = true;
  return m;
}

void ensure_calibrated() {
  {
    std::lock_guard<std::mutex> lk(g_calib_mu);
    if (g_calib_done) return;
  }
  if (!calibration_enabled() || cost_model_fixed()) return;
  std::string failure;
  try {
    calibrate(false);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(g_calib_mu);
    g_calib_done = true;  // do not retry on every op
    failure = e.what();
  }
  // Outside the lock: the Python handler takes the GIL and may raise (-W error).
  if (!failure.empty())
    log::warn("cost-model calibration failed (" + failure + "); using the default model");
}

}  // namespace lc
