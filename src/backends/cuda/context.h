// Internal state shared by the files of the CUDA backend: the device, the stream and device
// properties, created lazily on first use (never at static-init time). The vendor libraries'
// handles live with their users (matmul.cpp: cuBLASLt, conv2d.cu: cuDNN) and are created on the
// first op that needs them (vendor_libs.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

namespace lc::cuda {

struct DeviceInfo {
  int device = 0;
  int sm_count = 0;
  int cc_major = 0, cc_minor = 0;
  std::size_t total_mem = 0;
  std::size_t smem_optin = 0;  // max dynamic shared memory per block after opt-in
  std::string name;
};

struct Context {
  DeviceInfo info;
  cudaStream_t stream = nullptr;
};

// Probes the driver once (cached): true when a device is present and our kernels can run on it.
bool probe_available(std::string* reason);
// The context; initialises it on first use. Throws lc::Unavailable when there is no device.
Context& ctx();

// Enqueue bookkeeping that lets synchronize() skip a stream sync when nothing was enqueued since
// the last one (an op with sync="per_call" followed by lc.synchronize() pays one sync, not two).
// Every function that enqueues work on the stream calls note_enqueued() AFTER enqueueing; the
// counter is read before the sync starts, so work enqueued concurrently is never skipped.
void note_enqueued();
void synchronize_stream();
// Calls note_enqueued() when the enqueuing scope ends, on return or exception alike.
struct EnqueueScope {
  EnqueueScope() = default;
  EnqueueScope(const EnqueueScope&) = delete;
  EnqueueScope& operator=(const EnqueueScope&) = delete;
  ~EnqueueScope() { note_enqueued(); }
};

}  // namespace lc::cuda
