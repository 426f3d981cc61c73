// Devices, streams and per-thread state of the CUDA backend (see context.h).
//
// Nothing here touches CUDA at static-init or import time. probe_available() asks the driver
// once (cudaGetDeviceCount, then whether this build's GPU code (LC_CUDA_TARGETS) loads on
// device 0) and caches the answer; a device's state (properties, default stream) is created on
// the first use of that device. cudart is linked statically, so a machine without a driver
// just reports "unavailable".
#include "backends/cuda/context.h"

#ifndef LC_CUDA_TARGETS  // set by CMake from the -gencode list (LC_CUDA_ARCHS)
#define LC_CUDA_TARGETS "sm_90a"
#endif

#include <algorithm>
#include <memory>
#include <mutex>

#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/kernels.h"
#include "lightning_core/errors.h"

namespace lc::cuda {

namespace {

struct Probe {
  std::once_flag once;
  bool ok = false;
  int count = 0;
  std::string reason;
};
Probe& probe() {
  static Probe p;
  return p;
}

void run_probe(Probe& p) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = std::string("no usable CUDA driver/device: cudaGetDeviceCount failed with ") +
               cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
               "). Install the NVIDIA driver / run on a machine with an NVIDIA GPU, or use "
               "device=\"cpu\" / \"auto\"";
    return;
  }
  if (n == 0) {
    p.reason = "no CUDA device found (the driver reports 0 devices); use device=\"cpu\" / \"auto\"";
    return;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = "cudaGetDeviceProperties(0) failed; the CUDA device is not usable";
    return;
  }
  const cudaError_t k = probe_kernel_image();
  if (k != cudaSuccess) {
    (void)cudaGetLastError();
    p.reason = std::string("this build's GPU code does not run on ") + prop.name + " (sm_" +
               std::to_string(prop.major) + std::to_string(prop.minor) + "): " +
               cudaGetErrorName(k) + ". lightning_core was compiled for " LC_CUDA_TARGETS "; "
               "rebuild with -DLC_CUDA_ARCHS=all, or -DLC_CUDA_GENCODE=\"-gencode=arch=compute_XY,"
               "code=sm_XY\" for this GPU";
    return;
  }
  p.count = std::min(n, kMaxDevices);
  p.ok = true;
}

// Process-wide state of one device. Never destroyed: streams and handles must outlive static
// destructors.
struct DeviceState {
  std::once_flag once;
  DeviceInfo info;
  StreamState def;
  std::mutex mu;                     // guards `extra`
  std::vector<StreamState*> extra;   // streams made by stream_create
};

std::mutex g_devices_mu;
std::atomic<DeviceState*> g_devices[kMaxDevices];

void init_device(DeviceState& d, int index) {
  // Create the device's objects with it current, then give the thread its device back.
  int prev = 0;
  LC_CUDA_CHECK(cudaGetDevice(&prev));
  LC_CUDA_CHECK(cudaSetDevice(index));
  struct Restore {
    int prev;
    ~Restore() {
      if (cudaSetDevice(prev) != cudaSuccess) (void)cudaGetLastError();
    }
  } restore{prev};
  cudaDeviceProp prop{};
  LC_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  d.info.device = index;
  d.info.name = prop.name;
  d.info.sm_count = prop.multiProcessorCount;
  d.info.cc_major = prop.major;
  d.info.cc_minor = prop.minor;
  d.info.total_mem = prop.totalGlobalMem;
  d.info.smem_optin = prop.sharedMemPerBlockOptin;
  d.def.device = index;
  d.def.is_default = true;
  LC_CUDA_CHECK(cudaStreamCreateWithFlags(&d.def.stream, cudaStreamNonBlocking));
}

[[noreturn]] void no_such_device(int index, const char* op) {
  const int n = device_count();
  throw_value(op, "device cuda:" + std::to_string(index) + " does not exist: this process sees " +
                      std::to_string(n) + " CUDA device" + (n == 1 ? "" : "s") +
                      " (cuda:0 to cuda:" + std::to_string(n - 1) +
                      "; CUDA_VISIBLE_DEVICES decides which GPUs are visible)");
}

// The state of device `index`, initialised on first use (the caller checked the index).
DeviceState& device_state(int index) {
  DeviceState* d = g_devices[index].load(std::memory_order_acquire);
  if (!d) {
    std::lock_guard<std::mutex> lock(g_devices_mu);
    d = g_devices[index].load(std::memory_order_relaxed);
    if (!d) {
      d = new DeviceState();
      g_devices[index].store(d, std::memory_order_release);
    }
  }
  // If init throws, call_once lets the next call try again.
  std::call_once(d->once, [&] { init_device(*d, index); });
  return *d;
}

// The calling thread's state: its current device and its view of each device it used.
struct ThreadState {
  int device = 0;
  Context* cur = nullptr;  // per[device] once set up: the fast path of ctx()
  std::unique_ptr<Context> per[kMaxDevices];
};
thread_local ThreadState t_state;

Context& ctx_slow(ThreadState& t) {
  std::string reason;
  if (!probe_available(&reason)) throw Unavailable("[cuda] " + reason);
  if (t.device >= probe().count) no_such_device(t.device, "cuda");
  DeviceState& d = device_state(t.device);
  if (!t.per[t.device]) {
    auto c = std::make_unique<Context>();
    c->info = d.info;
    c->ss = &d.def;
    c->stream = d.def.stream;
    t.per[t.device] = std::move(c);
  }
  // The CUDA runtime's current device of this thread follows ours (kernels, cudaMalloc and
  // the libraries' handles use it).
  LC_CUDA_CHECK(cudaSetDevice(t.device));
  t.cur = t.per[t.device].get();
  return *t.cur;
}

}  // namespace

bool probe_available(std::string* reason) {
  Probe& p = probe();
  std::call_once(p.once, [&] { run_probe(p); });
  if (reason) *reason = p.reason;
  return p.ok;
}

int device_count() { return probe_available(nullptr) ? probe().count : 0; }

Context& ctx() {
  ThreadState& t = t_state;
  if (t.cur) [[likely]] return *t.cur;
  return ctx_slow(t);
}

int current_device() noexcept { return t_state.device; }

void set_current_device(int index) {
  ThreadState& t = t_state;
  if (index == t.device && t.cur) return;
  if (index < 0 || index >= device_count()) {
    std::string reason;
    if (!probe_available(&reason)) throw Unavailable("[cuda] " + reason);
    no_such_device(index, "set_device");
  }
  t.device = index;
  t.cur = nullptr;
  (void)ctx_slow(t);  // initialises the device if needed and calls cudaSetDevice
}

StreamState* default_stream(int index) {
  if (index < 0 || index >= device_count()) no_such_device(index, "Stream");
  return &device_state(index).def;
}

StreamState* stream_create(int index) {
  if (index < 0 || index >= device_count()) no_such_device(index, "Stream");
  DeviceState& d = device_state(index);
  DeviceGuard guard(index);
  auto s = std::make_unique<StreamState>();
  s->device = index;
  LC_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
  std::lock_guard<std::mutex> lock(d.mu);
  d.extra.push_back(s.get());
  return s.release();
}

void stream_destroy(StreamState* s) noexcept {
  if (!s || s->is_default) return;
  DeviceState* d = g_devices[s->device].load(std::memory_order_acquire);
  if (d) {
    std::lock_guard<std::mutex> lock(d->mu);
    d->extra.erase(std::remove(d->extra.begin(), d->extra.end(), s), d->extra.end());
  }
  // This thread stops using it; other threads must not hold it as current (lc.Stream's
  // context manager keeps the Python object alive while it is current).
  ThreadState& t = t_state;
  if (t.per[s->device] && t.per[s->device]->ss == s) {
    t.per[s->device]->ss = d ? &d->def : nullptr;
    t.per[s->device]->stream = d ? d->def.stream : nullptr;
  }
  // Wait for its work first: allocator blocks of this stream may then be handed to any later
  // stream (even one that gets this StreamState's address) without a race.
  if (cudaStreamSynchronize(s->stream) != cudaSuccess) (void)cudaGetLastError();
  CachingAllocator::forget_stream(s);  // no block may point at it any more
  if (cudaStreamDestroy(s->stream) != cudaSuccess) (void)cudaGetLastError();
  delete s;
}

void set_current_stream(StreamState* s) {
  Context& c = ctx();
  const int dev = current_device();
  if (!s) s = &device_state(dev).def;
  if (s->device != dev)
    throw_value("Stream", "this stream belongs to cuda:" + std::to_string(s->device) +
                              " but cuda:" + std::to_string(dev) +
                              " is the current device; make its device current first "
                              "(lc.set_device(\"cuda:" + std::to_string(s->device) +
                              "\")), or use a stream of cuda:" + std::to_string(dev));
  c.ss = s;
  c.stream = s->stream;
}

std::vector<StreamState*> streams_of(int index) {
  std::vector<StreamState*> out;
  if (index < 0 || index >= kMaxDevices) return out;
  DeviceState* d = g_devices[index].load(std::memory_order_acquire);
  if (!d || !d->def.stream) return out;
  out.push_back(&d->def);
  std::lock_guard<std::mutex> lock(d->mu);
  out.insert(out.end(), d->extra.begin(), d->extra.end());
  return out;
}

std::vector<int> initialised_devices() {
  std::vector<int> out;
  for (int i = 0; i < kMaxDevices; ++i) {
    DeviceState* d = g_devices[i].load(std::memory_order_acquire);
    if (d && d->def.stream) out.push_back(i);
  }
  return out;
}

void note_enqueued() {
  // noexcept in effect: EnqueueScope calls this from a destructor, also when ctx() threw.
  if (Context* c = t_state.cur) c->ss->enqueued.fetch_add(1, std::memory_order_release);
}

void synchronize_stream(StreamState* s) {
  const std::uint64_t target = s->enqueued.load(std::memory_order_acquire);
  if (s->synced.load(std::memory_order_acquire) >= target) return;
  LC_CUDA_CHECK(cudaStreamSynchronize(s->stream));
  std::uint64_t cur = s->synced.load(std::memory_order_relaxed);
  while (cur < target && !s->synced.compare_exchange_weak(cur, target, std::memory_order_release)) {
  }
}

void synchronize_stream() { synchronize_stream(ctx().ss); }

void synchronize_all_streams() {
  // No allocation on the common path (lc.synchronize() after a tiny op: one device, no extra
  // streams): a scan of the devices this process can use and one skip-or-sync per stream.
  const int n = device_count();
  for (int i = 0; i < n; ++i) {
    DeviceState* d = g_devices[i].load(std::memory_order_acquire);
    if (!d || !d->def.stream) continue;
    synchronize_stream(&d->def);
    std::vector<StreamState*> extra;
    {
      std::lock_guard<std::mutex> lock(d->mu);
      if (d->extra.empty()) continue;
      extra = d->extra;
    }
    for (StreamState* s : extra) synchronize_stream(s);
  }
}

}  // namespace lc::cuda
