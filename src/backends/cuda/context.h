// Devices, streams and the per-thread state of the CUDA backend (context.cpp).
//
// The backend drives every GPU the runtime sees (cuda:0, cuda:1, ...). Each device has its own
// lazily created state: properties, a default non-blocking stream, a caching allocator
// (allocator.h), cuBLASLt / cuDNN handles (matmul.cpp, conv2d.cu). Like the CUDA runtime itself,
// each host thread has a current device (0 until set_current_device) and, per device, a current
// stream (the device's default stream until set_current_stream: lc.Stream). ctx() is the calling
// thread's view of its current device: its facts and the stream work goes to. Nothing here runs
// at static-init time.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lc::cuda {

// Devices a process may address ("cuda:63" at most, as parse_device_index allows).
constexpr int kMaxDevices = 64;

struct DeviceInfo {
  int device = 0;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  std::size_t total_mem = 0;
  std::size_t smem_optin = 0;  // max dynamic shared memory per block after opt-in
  std::string name;
};

// One stream of one device, with the enqueue bookkeeping that lets synchronize_stream() skip a
// cudaStreamSynchronize when nothing was queued since the last one (an op with sync="per_call"
// followed by lc.synchronize() pays one sync, not two). Default streams live as long as the
// process; streams made by stream_create() until stream_destroy().
struct StreamState {
  cudaStream_t stream = nullptr;
  int device = 0;
  bool is_default = false;
  std::atomic<std::uint64_t> enqueued{1};  // ahead of synced: the first sync is real
  std::atomic<std::uint64_t> synced{0};
};

// The calling thread's view of one device.
struct Context {
  DeviceInfo info;
  cudaStream_t stream = nullptr;  // the thread's current stream on this device
  StreamState* ss = nullptr;      // its bookkeeping
};

// Probes the driver once (cached): true when a device is present and our kernels can run on it.
bool probe_available(std::string* reason);
// GPUs the runtime sees (0 when unavailable).
int device_count();
// The calling thread's context of its current device; initialises that device on first use.
// Throws lc::Unavailable when there is no usable device.
Context& ctx();
// The calling thread's current device: a thread-local read, no CUDA call.
int current_device() noexcept;
// Makes `index` current for the calling thread (cudaSetDevice). lc::ValueError for a device
// that does not exist.
void set_current_device(int index);
// The default stream of device `index` (initialising the device).
StreamState* default_stream(int index);
// A new non-blocking stream on device `index`, and its end (waits for its work first).
StreamState* stream_create(int index);
void stream_destroy(StreamState* s) noexcept;
// Makes `s` (a stream of the current device; nullptr = its default stream) the calling thread's
// current stream there. lc::ValueError when `s` belongs to another device.
void set_current_stream(StreamState* s);
// Every stream of device `index` that exists now (default first).
std::vector<StreamState*> streams_of(int index);
// Devices initialised so far (their state exists), in index order.
std::vector<int> initialised_devices();

// Every function that enqueues work on the current stream calls note_enqueued() AFTER
// enqueueing; synchronize_stream() waits for the current stream unless nothing was queued
// since its last wait (the counter is read before the sync starts, so work enqueued
// concurrently is never skipped).
void note_enqueued();
void synchronize_stream();
void synchronize_stream(StreamState* s);
// Every stream of every initialised device (lc.synchronize()).
void synchronize_all_streams();
// Calls note_enqueued() when the enqueuing scope ends, on return or exception alike.
struct EnqueueScope {
  EnqueueScope() = default;
  EnqueueScope(const EnqueueScope&) = delete;
  EnqueueScope& operator=(const EnqueueScope&) = delete;
  ~EnqueueScope() { note_enqueued(); }
};

// RAII within the backend: device `index` current for the scope (no-op when it already is).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index) : prev_(current_device()) {
    if (index != prev_) {
      set_current_device(index);
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) {
      try {
        set_current_device(prev_);
      } catch (...) {
      }
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_;
  bool changed_ = false;
};

}  // namespace lc::cuda
