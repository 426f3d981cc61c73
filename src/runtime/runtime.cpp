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
    if (be.available()) be.synchronize();
  }
}

}  // namespace lc
