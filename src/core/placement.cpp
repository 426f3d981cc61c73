// choose_device: policy + data location + cost model -> device. See placement.h.
#include "core/placement.h"

#include <atomic>
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

double CostModel::cpu_us(const WorkEstimate& w) const {
  return cpu_overhead_us + w.flops / (cpu_gflops[static_cast<int>(w.family)] * 1e3);
}

double CostModel::gpu_us(const WorkEstimate& w) const {
  const double transfer = w.host_bytes_in / (h2d_gbps * 1e3) + w.host_bytes_out / (d2h_gbps * 1e3);
  return gpu_launch_us + transfer + w.flops / (gpu_gflops[static_cast<int>(w.family)] * 1e3);
}

namespace {

double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const double d = std::strtod(v, &end);
  return (end && *end == '\0') ? d : fallback;
}

CostModel model_from_env() {
  CostModel m;
  m.conv_cpu_crossover_macs = env_double("CJ_CONV2D_CPU_CROSSOVER_MACS", m.conv_cpu_crossover_macs);
  m.conv_cpu_crossover_macs = env_double("LC_CONV2D_CPU_CROSSOVER_MACS", m.conv_cpu_crossover_macs);
  m.gpu_launch_us = env_double("LC_GPU_LAUNCH_US", m.gpu_launch_us);
  m.h2d_gbps = env_double("LC_H2D_GBPS", m.h2d_gbps);
  m.d2h_gbps = env_double("LC_D2H_GBPS", m.d2h_gbps);
  m.cpu_overhead_us = env_double("LC_CPU_OVERHEAD_US", m.cpu_overhead_us);
  static const char* cpu_knobs[] = {"LC_CPU_GFLOPS_MATMUL", "LC_CPU_GFLOPS_ATTENTION",
                                    "LC_CPU_GFLOPS_CONV2D", "LC_CPU_GFLOPS_NORM",
                                    "LC_CPU_GFLOPS_ELEMENTWISE"};
  static const char* gpu_knobs[] = {"LC_GPU_GFLOPS_MATMUL", "LC_GPU_GFLOPS_ATTENTION",
                                    "LC_GPU_GFLOPS_CONV2D", "LC_GPU_GFLOPS_NORM",
                                    "LC_GPU_GFLOPS_ELEMENTWISE"};
  for (int i = 0; i < static_cast<int>(OpFamily::count); ++i) {
    m.cpu_gflops[i] = env_double(cpu_knobs[i], m.cpu_gflops[i]);
    m.gpu_gflops[i] = env_double(gpu_knobs[i], m.gpu_gflops[i]);
  }
  return m;
}

std::mutex g_model_mu;
std::shared_ptr<const CostModel> g_model;

}  // namespace

const CostModel& cost_model() {
  // The shared_ptr keeps a replaced model alive for readers on other threads; models are
  // replaced rarely (tests, calibration), so a leaked old copy per replacement is acceptable.
  static thread_local std::shared_ptr<const CostModel> t_hold;
  std::lock_guard<std::mutex> lk(g_model_mu);
  if (!g_model) g_model = std::make_shared<CostModel>(model_from_env());
  t_hold = g_model;
  return *t_hold;
}

void set_cost_model(const CostModel& m) {
  std::lock_guard<std::mutex> lk(g_model_mu);
  g_model = std::make_shared<CostModel>(m);
}

void reset_cost_model() {
  std::lock_guard<std::mutex> lk(g_model_mu);
  g_model = std::make_shared<CostModel>(model_from_env());
}

Placement choose_device(const char* op, const WorkEstimate& w, const ExecutionPolicy& p,
                        bool gpu_can_run, bool explain) {
  Placement pl;
  switch (p.device) {
    case DeviceRequest::cpu:
      pl.device = DeviceKind::cpu;
      if (explain) pl.reason = "policy requests device=\"cpu\"";
      return pl;
    case DeviceRequest::metal:
      pl.device = require_device(p.device, op);  // throws: no Metal backend on this platform
      return pl;
    case DeviceRequest::cuda:
      require_device(p.device, op);  // throws lc::Unavailable when absent
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
  const bool gpu = gpu_can_run && get_backend(DeviceKind::cuda).available();
  if (w.inputs_on_gpu && gpu) {
    pl.device = DeviceKind::cuda;
    if (explain) pl.reason = "auto: inputs already live on the GPU, so the op stays there";
    return pl;
  }
  if (!gpu) {
    pl.device = DeviceKind::cpu;
    if (explain)
      pl.reason = get_backend(DeviceKind::cuda).available()
                      ? "auto: the CUDA backend does not support this op at these sizes"
                      : "auto: no usable GPU (" + get_backend(DeviceKind::cuda).unavailable_reason() + ")";
    return pl;
  }
  const CostModel& m = cost_model();
  if (w.family == OpFamily::conv2d && !w.inputs_on_gpu && w.conv_macs < m.conv_cpu_crossover_macs) {
    pl.device = DeviceKind::cpu;
    if (explain) {
      std::ostringstream os;
      os << "auto: conv2d with " << w.conv_macs << " MACs is below the CPU crossover ("
         << m.conv_cpu_crossover_macs << " MACs, CJ_CONV2D_CPU_CROSSOVER_MACS)";
      pl.reason = os.str();
    }
    return pl;
  }
  const double cpu = m.cpu_us(w), gpu_t = m.gpu_us(w);
  pl.device = gpu_t < cpu ? DeviceKind::cuda : DeviceKind::cpu;
  if (explain) {
    std::ostringstream os;
    os << "auto: estimated CPU " << cpu << " us vs GPU " << gpu_t << " us (launch "
       << m.gpu_launch_us << " us + transfers " << (w.host_bytes_in + w.host_bytes_out) / 1e6
       << " MB) for " << w.flops / 1e6 << " MFLOP of " << to_string(w.family)
       << (m.calibrated ? " [calibrated]" : " [default model]") << " -> "
       << (pl.device == DeviceKind::cuda ? "cuda" : "cpu");
    pl.reason = os.str();
  }
  return pl;
}

}  // namespace lc
