// Cost-model calibration (placement.h): a short measurement of this machine, cached in the
// auto-tune cache keyed by the CPU and GPU fingerprints, so later processes reuse it.
//
// CPU: the CPU backend's kernels on tiny problems (one per op family), best of a few runs.
// GPU: launch + sync round trip of a 1-element op, H2D / D2H bandwidth of a 16 MB copy, and
// rates of medium problems per family. With CJ_CONV2D_CPU_CROSSOVER_DYNAMIC=1 the conv
// crossover is re-measured (never taken from the cache): a ladder of conv sizes is run on both
// sides (GPU including upload and download) and the first size where the GPU wins becomes the
// crossover. Everything here calls backends directly (not the op API), so it never recurses
// into placement.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/placement.h"
#include "lightning_core/autotune.h"
#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"

namespace lc {

namespace {

constexpr const char* kCalibOp = "calibration";
constexpr const char* kCalibShapes = "cost-model-v1";

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return false;
  const std::string s(v);
  return s == "1" || s == "on" || s == "true" || s == "yes";
}

double best_us(const std::function<void()>& f, int reps) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::micro>(
                              std::chrono::steady_clock::now() - t0).count());
  }
  return std::max(best, 1e-3);
}

// A buffer of `n` floats on `be` filled with a small constant (defined contents).
struct DevBuf {
  Backend* be = nullptr;
  void* p = nullptr;
  DevBuf(Backend& b, std::size_t n) : be(&b), p(b.alloc(n * sizeof(float))) {
    std::vector<float> h(n, 0.01f);
    b.copy_from_host(p, h.data(), n * sizeof(float));
  }
  ~DevBuf() { be->free(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  float* f() const { return static_cast<float*>(p); }
};

// Rate (GFLOP/s) of each family's probe on `be`; `sync` after each run for device backends.
void measure_rates(Backend& be, bool device, bool big, double out_gflops[]) {
  const auto sync = [&] {
    if (device) be.synchronize();
  };
  const int reps = 3;
  {  // matmul
    const std::int64_t n = big ? 1024 : 96;
    DevBuf a(be, n * n), b(be, n * n), c(be, n * n);
    MatmulArgs m;
    m.a = a.f();
    m.b = b.f();
    m.out = c.f();
    m.m = m.k = m.n = n;
    be.matmul(m);
    sync();
    const double us = best_us([&] { be.matmul(m); sync(); }, reps);
    out_gflops[static_cast<int>(OpFamily::matmul)] = 2.0 * n * n * n / (us * 1e3);
  }
  {  // attention
    const std::int64_t s = big ? 1024 : 64, d = 64;
    DevBuf q(be, s * d), o(be, s * d);
    AttentionArgs a;
    a.q = a.k = a.v = q.f();
    a.out = o.f();
    a.sq = a.sk = s;
    a.d = a.dv = d;
    a.scale = 0.125f;
    be.attention(a);
    sync();
    const double us = best_us([&] { be.attention(a); sync(); }, reps);
    out_gflops[static_cast<int>(OpFamily::attention)] = 4.0 * s * s * d / (us * 1e3);
  }
  {  // conv2d
    const std::int64_t c = big ? 64 : 8, hw = big ? 64 : 16;
    DevBuf x(be, c * hw * hw), w(be, c * c * 9), o(be, c * hw * hw);
    Conv2dArgs a;
    a.x = x.f();
    a.w = w.f();
    a.out = o.f();
    a.n = 1;
    a.c = a.oc = c;
    a.h = a.w_in = hw;
    a.kh = a.kw = 3;
    a.pad_h = a.pad_w = 1;
    a.oh = a.ow = hw;
    be.conv2d(a);
    sync();
    const double us = best_us([&] { be.conv2d(a); sync(); }, reps);
    out_gflops[static_cast<int>(OpFamily::conv2d)] = 2.0 * c * c * 9 * hw * hw / (us * 1e3);
  }
  {  // norm
    const std::int64_t rows = big ? 4096 : 64, cols = 1024;
    DevBuf x(be, rows * cols), o(be, rows * cols);
    LayerNormArgs a;
    a.x = x.f();
    a.out = o.f();
    a.rows = rows;
    a.cols = cols;
    be.layernorm(a);
    sync();
    const double us = best_us([&] { be.layernorm(a); sync(); }, reps);
    out_gflops[static_cast<int>(OpFamily::norm)] = 8.0 * rows * cols / (us * 1e3);
  }
  {  // elementwise
    const std::int64_t n = big ? (1 << 22) : (1 << 15);
    DevBuf a(be, n), b(be, n), o(be, n);
    ElementwiseArgs e;
    e.kind = EwKind::add;
    e.a = a.f();
    e.b = b.f();
    e.out = o.f();
    e.n = n;
    be.elementwise(e);
    sync();
    const double us = best_us([&] { be.elementwise(e); sync(); }, reps);
    out_gflops[static_cast<int>(OpFamily::elementwise)] = static_cast<double>(n) / (us * 1e3);
  }
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
    const double t_cpu = best_us([&] { cpu.conv2d(a); }, 5);
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
      t_gpu = best_us(gpu_call, 5);
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

const char* kFamilyNames[] = {"matmul", "attention", "conv2d", "norm", "elementwise"};

autotune::Fields to_fields(const CostModel& m, bool gpu) {
  autotune::Fields f;
  auto num = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return std::string(buf);
  };
  for (int i = 0; i < static_cast<int>(OpFamily::count); ++i) {
    f[std::string("cpu_gflops_") + kFamilyNames[i]] = num(m.cpu_gflops[i]);
    if (gpu) f[std::string("gpu_gflops_") + kFamilyNames[i]] = num(m.gpu_gflops[i]);
  }
  f["cpu_overhead_us"] = num(m.cpu_overhead_us);
  if (gpu) {
    f["gpu_launch_us"] = num(m.gpu_launch_us);
    f["h2d_gbps"] = num(m.h2d_gbps);
    f["d2h_gbps"] = num(m.d2h_gbps);
  }
  f["choice"] = gpu ? "cpu+gpu" : "cpu";
  return f;
}

bool from_fields(const autotune::Fields& f, CostModel& m) {
  auto get = [&](const std::string& k, double& v) {
    auto it = f.find(k);
    if (it == f.end()) return false;
    char* end = nullptr;
    const double d = std::strtod(it->second.c_str(), &end);
    if (!end || *end != '\0' || !(d > 0) || !std::isfinite(d)) return false;
    v = d;
    return true;
  };
  const bool gpu = f.count("gpu_launch_us") > 0;
  bool ok = true;
  for (int i = 0; i < static_cast<int>(OpFamily::count); ++i) {
    ok = ok && get(std::string("cpu_gflops_") + kFamilyNames[i], m.cpu_gflops[i]);
    if (gpu) ok = ok && get(std::string("gpu_gflops_") + kFamilyNames[i], m.gpu_gflops[i]);
  }
  ok = ok && get("cpu_overhead_us", m.cpu_overhead_us);
  if (gpu) ok = ok && get("gpu_launch_us", m.gpu_launch_us) && get("h2d_gbps", m.h2d_gbps) &&
                get("d2h_gbps", m.d2h_gbps);
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
    autotune::note_measurement();
    measure_rates(cpu, false, false, m.cpu_gflops);
    // Fixed per-call cost of the CPU path: a 1-element op.
    {
      float a = 1, b = 2, o = 0;
      ElementwiseArgs e;
      e.a = &a;
      e.b = &b;
      e.out = &o;
      e.n = 1;
      m.cpu_overhead_us = best_us([&] { cpu.elementwise(e); }, 20);
    }
    if (have_gpu) {
      measure_rates(gpu, true, true, m.gpu_gflops);
      DevBuf one(gpu, 1);
      ElementwiseArgs e;
      e.kind = EwKind::relu;
      e.a = one.f();
      e.out = one.f();
      e.n = 1;
      gpu.elementwise(e);
      gpu.synchronize();
      m.gpu_launch_us = best_us([&] { gpu.elementwise(e); gpu.synchronize(); }, 20);
      const std::size_t bytes = 16u << 20;
      std::vector<char> host(bytes, 1);
      void* d = gpu.alloc(bytes);
      try {
        gpu.copy_from_host(d, host.data(), bytes);
        gpu.synchronize();
        const double up = best_us([&] { gpu.copy_from_host(d, host.data(), bytes); gpu.synchronize(); }, 3);
        const double down = best_us([&] { gpu.copy_to_host(host.data(), d, bytes); gpu.synchronize(); }, 3);
        m.h2d_gbps = bytes / (up * 1e3);
        m.d2h_gbps = bytes / (down * 1e3);
      } catch (...) {
        gpu.free(d);
        throw;
      }
      gpu.free(d);
    }
    autotune::store(key, kCalibOp, kCalibShapes, "float32", fp, to_fields(m, have_gpu));
  }
  if (have_gpu && env_flag("CJ_CONV2D_CPU_CROSSOVER_DYNAMIC")) {
    const double x = measure_conv_crossover(cpu, gpu);
    // CPU won every size of the ladder: keep the crossover above the largest measured size.
    m.conv_cpu_crossover_macs = x > 0 ? x : 64.0 * 64 * 9 * 256 * 2;
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
  try {
    calibrate(false);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(g_calib_mu);
    g_calib_done = true;  // do not retry on every op
    std::cerr << "lightning_core: warning: cost-model calibration failed (" << e.what()
              << "); using the default model" << std::endl;
  }
}

}  // namespace lc
