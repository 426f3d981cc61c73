// Runtime queries (runtime.h).
#include "lightning_core/runtime.h"

#include "backends/backend.h"
#include "lightning_core/errors.h"

namespace lc {

bool cuda_available() { return get_backend(DeviceKind::cuda).available(); }
bool metal_available() { return get_backend(DeviceKind::metal).available(); }

bool cuda_compiled() { return get_backend(DeviceKind::cuda).compiled(); }

std::string backend_name() { return cuda_available() ? "cuda" : "cpu"; }

std::vector<std::string> available_devices() {
  std::vector<std::string> d{"cpu"};
  if (cuda_available()) d.emplace_back("cuda");
  if (metal_available()) d.emplace_back("metal");
  return d;
}

std::vector<std::pair<std::string, std::string>> build_info() {
  std::vector<std::pair<std::string, std::string>> info;
  info.emplace_back("version", LC_VERSION);
  info.emplace_back("cuda_compiled", cuda_compiled() ? "yes" : "no");
#ifdef LC_CUDA_TARGETS
  info.emplace_back("cuda_targets", LC_CUDA_TARGETS);  // the GPUs this build has code for
#endif
#ifdef LC_CUDA_VERSION_STRING
  info.emplace_back("cuda_toolkit", LC_CUDA_VERSION_STRING);
#endif
  info.emplace_back("metal_compiled", "no");
#ifdef LC_HAVE_BLAS
  info.emplace_back("cpu_blas", LC_BLAS_NAME);
#else
  info.emplace_back("cpu_blas", "built-in");
#endif
  for (DeviceKind d : {DeviceKind::cpu, DeviceKind::cuda, DeviceKind::metal}) {
    Backend& be = get_backend(d);
    const std::string key = std::string(to_string(d));
    info.emplace_back(key + "_available", be.available() ? "yes" : "no");
    info.emplace_back(key + "_device", be.available() ? be.device_description() : be.unavailable_reason());
    for (auto& f : be.build_facts()) info.push_back(std::move(f));
  }
  return info;
}

DeviceKind require_device(DeviceRequest r, const char* op) {
  DeviceKind kind = DeviceKind::cpu;
  switch (r) {
    case DeviceRequest::cpu:
    case DeviceRequest::automatic: return DeviceKind::cpu;
    case DeviceRequest::cuda: kind = DeviceKind::cuda; break;
    case DeviceRequest::metal: kind = DeviceKind::metal; break;
  }
  Backend& be = get_backend(kind);
  if (be.available()) return kind;
  std::string avail;
  for (const auto& d : available_devices()) avail += (avail.empty() ? "\"" : ", \"") + d + "\"";
  throw Unavailable(std::string("[") + op + "] device \"" + to_string(kind) +
                    "\" is not available: " + be.unavailable_reason() + ". Available devices: " +
                    avail + " (or \"auto\").");
}

void empty_cache() {
  for (DeviceKind d : {DeviceKind::cuda, DeviceKind::metal}) {
    Backend& be = get_backend(d);
    if (be.available()) be.empty_cache();
  }
}

void synchronize() {
  for (DeviceKind d : {DeviceKind::cuda, DeviceKind::metal}) {
    Backend& be = get_backend(d);
    if (be.available()) be.synchronize_all();
  }
}

int device_count(DeviceKind kind) {
  if (kind == DeviceKind::cpu) return 1;
  Backend& be = get_backend(kind);
  return be.available() ? be.device_count() : 0;
}

void require_device_index(DeviceKind kind, int index, const char* op) {
  const int n = device_count(kind);
  if (index >= 0 && index < n) return;
  const std::string k = to_string(kind);
  std::string have;
  for (int i = 0; i < n && i < 8; ++i) have += (i ? ", " : "") + k + ":" + std::to_string(i);
  if (n > 8) have += ", ...";
  throw_value(op, "device " + k + ":" + std::to_string(index) + " does not exist: this process sees " +
                      std::to_string(n) + " " + k + " device" + (n == 1 ? "" : "s") +
                      (n ? " (" + have + ")" : std::string()) +
                      "; pick one of those (CUDA_VISIBLE_DEVICES decides which GPUs are visible)");
}

int current_device(DeviceKind kind) {
  if (kind == DeviceKind::cpu) return 0;
  return get_backend(kind).current_device();
}

void set_current_device(DeviceKind kind, int index) {
  if (kind == DeviceKind::cpu) {
    if (index != 0) throw_value("set_device", "the CPU is device 0");
    return;
  }
  require_device(kind == DeviceKind::cuda ? DeviceRequest::cuda : DeviceRequest::metal, "set_device");
  require_device_index(kind, index, "set_device");
  get_backend(kind).set_current_device(index);
}

}  // namespace lc
