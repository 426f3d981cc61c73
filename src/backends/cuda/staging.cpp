// Pinned double-buffered host<->device copies (see staging.h).
#include "backends/cuda/staging.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "backends/cuda/check.h"
#include "backends/cuda/context.h"

namespace lc::cuda {

namespace {

struct Staging {
  std::mutex mu;
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};  // last DMA that used buf[i]
  bool pending[2] = {false, false};

  void ensure() {
    if (buf[0]) return;
    for (int i = 0; i < 2; ++i) {
      LC_CUDA_CHECK(cudaHostAlloc(&buf[i], kChunkBytes, cudaHostAllocDefault));
      LC_CUDA_CHECK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
    }
  }
  void wait(int i) {
    if (pending[i]) {
      LC_CUDA_CHECK(cudaEventSynchronize(done[i]));
      pending[i] = false;
    }
  }
};

Staging& staging() {
  static Staging* s = new Staging();  // leaked on purpose: pinned memory dies with the process
  return *s;
}

}  // namespace

void staged_copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  Context& c = ctx();
  if (bytes <= kDirectBytes) {
    LC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.stream));
    return;
  }
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  s.ensure();
  auto* d = static_cast<char*>(dst);
  auto* h = static_cast<const char*>(src);
  int i = 0;
  for (std::size_t off = 0; off < bytes; off += kChunkBytes, i ^= 1) {
    const std::size_t n = std::min(kChunkBytes, bytes - off);
    s.wait(i);  // the DMA that last read buf[i] (two chunks ago) must be done
    std::memcpy(s.buf[i], h + off, n);
    LC_CUDA_CHECK(cudaMemcpyAsync(d + off, s.buf[i], n, cudaMemcpyHostToDevice, c.stream));
    LC_CUDA_CHECK(cudaEventRecord(s.done[i], c.stream));
    s.pending[i] = true;
  }
}

void staged_copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  Context& c = ctx();
  if (bytes <= kDirectBytes) {
    LC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.stream));
    LC_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    return;
  }
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  s.ensure();
  auto* h = static_cast<char*>(dst);
  auto* d = static_cast<const char*>(src);
  const std::size_t chunks = (bytes + kChunkBytes - 1) / kChunkBytes;
  auto issue = [&](std::size_t ci) {
    const int b = static_cast<int>(ci & 1);
    const std::size_t off = ci * kChunkBytes;
    const std::size_t n = std::min(kChunkBytes, bytes - off);
    s.wait(b);  // an earlier to_device chunk may still be reading this buffer
    LC_CUDA_CHECK(cudaMemcpyAsync(s.buf[b], d + off, n, cudaMemcpyDeviceToHost, c.stream));
    LC_CUDA_CHECK(cudaEventRecord(s.done[b], c.stream));
    s.pending[b] = true;
  };
  issue(0);
  for (std::size_t ci = 0; ci < chunks; ++ci) {
    if (ci + 1 < chunks) issue(ci + 1);  // DMA of chunk ci+1 overlaps the memcpy of chunk ci
    const int b = static_cast<int>(ci & 1);
    const std::size_t off = ci * kChunkBytes;
    const std::size_t n = std::min(kChunkBytes, bytes - off);
    s.wait(b);
    std::memcpy(h + off, s.buf[b], n);
  }
}

}  // namespace lc::cuda
