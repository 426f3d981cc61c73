// choose_device: policy + data location + cost model -> device. See placement.h.
#include "runtime/placement.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/runtime.h"

namespace lc {

const char* to_string(OpFamily f) {
  switch (f) {
    case OpFamily::matmul: return "matmul";
    case OpFamily::attention: return "attention";
    case OpFamily::conv2d: return "conv2d";
    case OpFamily::norm: return "norm";
    case OpFamily::elementwise: return "elementwise";
    case OpFamily::count: break;
  }
  return "?";
}

int typical_host_inputs(OpFamily f) {
  switch (f) {
    case OpFamily::matmul: return 2;
    case OpFamily::attention: return 3;
    case OpFamily::conv2d: return 2;
    case OpFamily::norm: return 1;
    case OpFamily::elementwise: return 2;
    case OpFamily::count: break;
  }
  return 1;
}

double CostModel::cpu_us(const WorkEstimate& w) const {
  const int f = static_cast<int>(w.family);
  double t = cpu_overhead_us + cpu_family_overhead_us[f] + w.flops / (cpu_gflops[f] * 1e3);
  if (w.flops2 > 0) {
    const int f2 = static_cast<int>(w.family2);
    t += cpu_family_overhead_us[f2] + w.flops2 / (cpu_gflops[f2] * 1e3);
  }
  return t;
}

double CostModel::transfer_us(const WorkEstimate& w) const {
  // The bandwidth of one copy of `per_copy` bytes: small copies take the direct path.
  auto bw = [this](double per_copy, double large, double small) {
    return per_copy <= small_copy_bytes && small > 0 ? small : large;
  };
  double t = 0;
  if (w.host_bytes_in > 0) {
    const int uploads = typical_host_inputs(w.family);
    const double g = bw(w.host_bytes_in / uploads, h2d_gbps, h2d_small_gbps);
    t += uploads * h2d_latency_us + w.host_bytes_in / (g * 1e3);
  }
  if (w.host_bytes_out > 0)
    t += d2h_latency_us + w.host_bytes_out / (bw(w.host_bytes_out, d2h_gbps, d2h_small_gbps) * 1e3);
  return t;
}

double CostModel::gpu_us(const WorkEstimate& w) const {
  const int f = static_cast<int>(w.family);
  double t = gpu_launch_us + gpu_family_overhead_us[f] + transfer_us(w) +
             w.flops / (gpu_gflops[f] * 1e3);
  if (w.flops2 > 0) {
    const int f2 = static_cast<int>(w.family2);
    t += gpu_family_overhead_us[f2] + w.flops2 / (gpu_gflops[f2] * 1e3);
  }
  return t;
}

LinearFit fit_two_points(double f1, double t1, double f2, double t2) {
  LinearFit r;
  if (!(f2 > f1) || !(f1 >= 0) || !(t2 > 0) || !std::isfinite(t1) || !std::isfinite(t2)) {
    // Degenerate input: everything is compute at the larger point.
    r.a_us = 0;
    r.gflops = (f2 > 0 && t2 > 0) ? f2 / (t2 * 1e3) : 1;
    return r;
  }
  const double slope = (t2 - t1) / (f2 - f1);  // µs per flop
  // The compute part of t2: the fitted one, clamped to [t2 / 4, t2] (a >= 0; a probe whose
  // medium size is still overhead-bound yields at most 4x the through-origin rate).
  const double compute2 = std::clamp(std::isfinite(slope) ? slope * f2 : t2, 0.25 * t2, t2);
  r.gflops = f2 / (compute2 * 1e3);
  r.a_us = std::max(0.0, t2 - compute2);
  return r;
}

namespace {

bool env_number(const char* name, double& out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  const double d = std::strtod(v, &end);
  if (!end || *end != '\0' || !std::isfinite(d)) return false;
  out = d;
  return true;
}

double env_double(const char* name, double fallback) {
  double d = fallback;
  return env_number(name, d) ? d : fallback;
}

}  // namespace

CostModel apply_env_knobs(CostModel m) {
  double x = 0;
  if (env_number("CJ_CONV2D_CPU_CROSSOVER_MACS", x)) {
    m.conv_cpu_crossover_macs = x;
    m.conv_crossover_explicit = true;
  }
  if (env_number("LC_CONV2D_CPU_CROSSOVER_MACS", x)) {
    m.conv_cpu_crossover_macs = x;
    m.conv_crossover_explicit = true;
  }
  for (const CostScalarField& f : kCostScalarFields)
    if (f.env) m.*f.field = env_double(f.env, m.*f.field);
  for (int i = 0; i < CostModel::kFamilies; ++i) {
    std::string fam = to_string(static_cast<OpFamily>(i));  // MATMUL, ATTENTION, ...
    for (char& c : fam) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (const CostFamilyField& f : kCostFamilyFields)
      (m.*f.field)[i] = env_double((f.env_prefix + fam).c_str(), (m.*f.field)[i]);
  }
  return m;
}

namespace {

std::mutex g_model_mu;
std::shared_ptr<const CostModel> g_model;
std::shared_ptr<const CostModel> g_calibrated;  // last calibration (before knobs)
bool g_fixed = false;

std::shared_ptr<const CostModel> base_model_locked() {
  return std::make_shared<CostModel>(apply_env_knobs(g_calibrated ? *g_calibrated : CostModel{}));
}

}  // namespace

const CostModel& cost_model() {
  // The shared_ptr keeps a replaced model alive for readers on this thread until its next call;
  // models are replaced rarely (tests, calibration).
  static thread_local std::shared_ptr<const CostModel> t_hold;
  std::lock_guard<std::mutex> lk(g_model_mu);
  if (!g_model) g_model = base_model_locked();
  t_hold = g_model;
  return *t_hold;
}

void set_cost_model(const CostModel& m) {
  std::lock_guard<std::mutex> lk(g_model_mu);
  g_model = std::make_shared<CostModel>(m);
  g_fixed = true;
}

void reset_cost_model() {
  std::lock_guard<std::mutex> lk(g_model_mu);
  g_fixed = false;
  g_model = base_model_locked();
}

bool cost_model_fixed() {
  std::lock_guard<std::mutex> lk(g_model_mu);
  return g_fixed;
}

void install_calibrated_model(const CostModel& m) {
  std::lock_guard<std::mutex> lk(g_model_mu);
  auto c = std::make_shared<CostModel>(m);
  c->calibrated = true;
  g_calibrated = c;
  if (!g_fixed) g_model = base_model_locked();
}

namespace {
// snprintf rather than iostreams for the explanation numbers (%g: "0.317067", "2.6e+05").
std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
// A few words for "auto" explanations without a GPU ("no CUDA device",
// "cudaErrorInsufficientDriver", "this build has no CUDA backend"), instead of the backend's
// whole message, whose advice (use "cpu" or "auto") makes no sense to a caller who used auto.
std::string short_no_gpu_reason(const std::string& r) {
  const auto e = r.find("cudaError");
  if (e != std::string::npos)
    return "no CUDA device (" + r.substr(e, r.find_first_of(" ().,;", e) - e) + ")";
  if (r.find("no CUDA backend") != std::string::npos) return "no CUDA device (this build has no CUDA backend)";
  return "no CUDA device";
}
}  // namespace

Placement choose_device_with(const char* op, const WorkEstimate& w, const ExecutionPolicy& p,
                             bool gpu_present, bool gpu_can_run, bool explain, const CostModel& m,
                             const std::string& no_gpu_reason) {
  Placement pl;
  switch (p.device) {
    case DeviceRequest::cpu:
      pl.device = DeviceKind::cpu;
      if (explain) pl.reason = "policy requests device=\"cpu\"";
      return pl;
    case DeviceRequest::metal:
      throw Unavailable(std::string("[") + op + "] device \"metal\" is not available on this "
                        "platform; use \"cpu\", \"cuda\" or \"auto\"");
    case DeviceRequest::cuda:
      if (!gpu_present)
        throw Unavailable(std::string("[") + op + "] device \"cuda\" is not available: " +
                          no_gpu_reason + " (use device=\"cpu\" or \"auto\")");
      if (!gpu_can_run) {
        pl.device = DeviceKind::cpu;
        pl.fallback = true;
        if (explain) pl.reason = "policy requests device=\"cuda\", but the CUDA backend does not "
                                 "support this op at these sizes; ran on the CPU (fallback)";
        return pl;
      }
      pl.device = DeviceKind::cuda;
      if (explain) pl.reason = "policy requests device=\"cuda\"";
      return pl;
    case DeviceRequest::automatic:
      break;
  }
  const bool gpu = gpu_can_run && gpu_present;
  // Under upload="never" host data cannot move to the GPU, so any host input keeps the op on
  // the CPU, also when other inputs live on the GPU (downloading those is allowed).
  if (p.upload == UploadMode::never && w.host_bytes_in > 0) {
    pl.device = DeviceKind::cpu;
    if (explain)
      pl.reason = "auto: policy upload=\"never\" and inputs are in host memory, so the op "
                  "runs where the data is (cpu)";
    return pl;
  }
  if (w.inputs_on_gpu && gpu) {
    pl.device = DeviceKind::cuda;
    if (explain) pl.reason = "auto: inputs already live on the GPU, so the op stays there";
    return pl;
  }
  if (!gpu) {
    pl.device = DeviceKind::cpu;
    if (explain)
      pl.reason = gpu_present ? "auto: the CUDA backend does not support this op at these sizes"
                              : "auto: " + short_no_gpu_reason(no_gpu_reason) + ", so the CPU";
    return pl;
  }
  if (w.family == OpFamily::conv2d && m.conv_uses_crossover()) {
    // The original's rule: below the MAC crossover a conv with host data runs on the CPU; at or
    // above it, the model decides (as for every other op).
    if (w.conv_macs < m.conv_cpu_crossover_macs) {
      pl.device = DeviceKind::cpu;
      if (explain) {
        pl.reason = "auto: conv2d with " + num(w.conv_macs) + " MACs is below the CPU crossover (" +
                    num(m.conv_cpu_crossover_macs) + " MACs, CJ_CONV2D_CPU_CROSSOVER_MACS" +
                    (m.conv_crossover_explicit ? ", set explicitly" : ", no fitted CPU+GPU model") +
                    ")";
      }
      return pl;
    }
  }
  const double cpu = m.cpu_us(w), gpu_t = m.gpu_us(w);
  pl.device = gpu_t < cpu ? DeviceKind::cuda : DeviceKind::cpu;
  if (explain) {
    const int f = static_cast<int>(w.family);
    pl.reason = "auto: estimated CPU " + num(cpu) + " us (overhead " +
                num(m.cpu_overhead_us + m.cpu_family_overhead_us[f]) + " us + " +
                num(m.cpu_gflops[f]) + " GFLOP/s) vs GPU " + num(gpu_t) + " us (launch " +
                num(m.gpu_launch_us + m.gpu_family_overhead_us[f]) + " us + transfers " +
                num(m.transfer_us(w)) + " us for " +
                num((w.host_bytes_in + w.host_bytes_out) / 1e6) + " MB + " +
                num(m.gpu_gflops[f]) + " GFLOP/s) for " + num(w.flops / 1e6) + " MFLOP of " +
                to_string(w.family) +
                (m.gpu_calibrated ? " [calibrated]"
                                  : m.calibrated ? " [CPU calibrated, GPU default]" : " [default model]") +
                " -> " + (pl.device == DeviceKind::cuda ? "cuda" : "cpu");
  }
  return pl;
}

Placement choose_device(const char* op, const WorkEstimate& w, const ExecutionPolicy& p,
                        bool gpu_can_run, bool explain) {
  if (p.device == DeviceRequest::cuda || p.device == DeviceRequest::metal)
    require_device(p.device, op);  // the runtime's message lists the available devices
  if (p.device == DeviceRequest::cpu)
    return choose_device_with(op, w, p, false, gpu_can_run, explain, cost_model());
  Backend& cuda = get_backend(DeviceKind::cuda);
  const bool present = cuda.available();
  if (p.device == DeviceRequest::automatic && present && gpu_can_run && !w.inputs_on_gpu)
    ensure_calibrated();
  return choose_device_with(op, w, p, present, gpu_can_run, explain, cost_model(),
                            present ? std::string() : cuda.unavailable_reason());
}


// ---- chains (placement.h: the rule, written once) ---------------------------------------------

Placement choose_chain_device(std::span<const ChainBlock> blocks, const ExecutionPolicy& p,
                              bool inputs_on_gpu, bool host_data, const bool* gpu_present,
                              bool explain) {
  if (blocks.empty()) throw_value("chain", "a chain needs at least one block");
  // One block as a single op would be placed, with the chain's data location.
  auto place = [&](const ChainBlock& b) {
    WorkEstimate w = b.work;
    if (inputs_on_gpu) {
      w.inputs_on_gpu = true;
      w.host_bytes_in = 0;
    }
    if (!gpu_present) return choose_device(b.op, w, p, b.gpu_can_run, explain);
    const std::string absent = "assumed absent (gpu_available=False)";
    return choose_device_with(b.op, w, p, *gpu_present, b.gpu_can_run, explain, cost_model(),
                              *gpu_present ? std::string() : absent);
  };
  if (p.device != DeviceRequest::automatic) return place(blocks[0]);
  Placement pl;
  if (gpu_present && !*gpu_present) {
    if (explain) pl.reason = "auto: no GPU (assumed), so the whole chain runs on the CPU";
    return pl;
  }
  if (p.upload == UploadMode::never && host_data) {
    if (explain)
      pl.reason = "auto: policy upload=\"never\" and some of the chain's inputs are in host "
                  "memory, so the whole chain runs where the data is (cpu)";
    return pl;
  }
  for (const ChainBlock& b : blocks) {
    pl = place(b);
    if (pl.device != DeviceKind::cpu) return pl;
  }
  return pl;
}

DeviceRequest request_for(DeviceKind d) {
  switch (d) {
    case DeviceKind::cpu: return DeviceRequest::cpu;
    case DeviceKind::cuda: return DeviceRequest::cuda;
    case DeviceKind::metal: return DeviceRequest::metal;
  }
  return DeviceRequest::automatic;
}

ChainPolicies chain_policies(const ExecutionPolicy& base, DeviceRequest device) {
  ChainPolicies c;
  c.last = base;
  c.last.device = device;
  if (device == DeviceRequest::cpu) {
    // Nothing moves on the CPU: "never" and download=False (GPU-only promises) do not apply,
    // the CPU computes fp32.
    c.last.upload = UploadMode::always;
    c.last.download = true;
    c.last.sync = SyncMode::per_call;
    if (c.last.precision == Precision::bf16) c.last.precision = Precision::fp32;
    c.inner = c.last;
    return c;
  }
  c.inner = c.last;
  c.inner.download = false;
  c.inner.sync = SyncMode::none;
  return c;
}

}  // namespace lc
