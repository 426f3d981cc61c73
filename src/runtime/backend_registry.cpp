// The one table of compute backends. Each backend folder defines its *_backend_instance();
// a backend that is not compiled in links a stub whose available() is false.
#include "backends/backend.h"

#include <chrono>

namespace lc {

Backend& cpu_backend_instance();
Backend& cuda_backend_instance();   // src/backends/cuda/ or src/backends/no_cuda/
Backend& metal_backend_instance();  // src/backends/metal/ (a stub on Linux)

Backend& get_backend(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::cuda: return cuda_backend_instance();
    case DeviceKind::metal: return metal_backend_instance();
    case DeviceKind::cpu: break;
  }
  return cpu_backend_instance();
}

}  // namespace lc

// ---- Events of in-order backends (the defaults of backend.h) ----------------------------------
// Work on such a backend is complete when its call returns, so an event is a host time stamp
// taken when it is recorded.
namespace lc {
namespace {
struct HostEvent {
  bool timing = false;
  bool recorded = false;
  std::chrono::steady_clock::time_point at;
};
}  // namespace

void* Backend::event_create(bool timing) {
  auto* e = new HostEvent();
  e->timing = timing;
  return e;
}

void Backend::event_destroy(void* event) noexcept { delete static_cast<HostEvent*>(event); }

void Backend::event_record(void* event, void* /*stream*/) {
  auto* e = static_cast<HostEvent*>(event);
  e->recorded = true;
  e->at = std::chrono::steady_clock::now();
}

double Backend::event_elapsed_ms(void* begin, void* end) {
  const auto* b = static_cast<HostEvent*>(begin);
  const auto* e = static_cast<HostEvent*>(end);
  if (!b->timing || !e->timing)
    throw_value("Event.elapsed_time", "both events must be created with enable_timing=True");
  if (!b->recorded || !e->recorded)
    throw_value("Event.elapsed_time", "both events must be recorded first (event.record())");
  return std::chrono::duration<double, std::milli>(e->at - b->at).count();
}

}  // namespace lc
