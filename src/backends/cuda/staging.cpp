// Pinned, multi-buffered, multi-threaded host<->device copies (see staging.h).
//
// A staged copy is a Job: chunks c = 0..chunks-1 cycle through the kSlots pinned buffers
// (slot b = c % kSlots, round r = c / kSlots), each chunk cut into `slices` work items. Items are
// handed out in order through one atomic counter to the caller and the helper threads. Per slot:
//   enq[b]    DMAs of this job enqueued through slot b (bumped by whoever enqueued one);
//   left[b]   slices of the slot's current chunk still to copy (the thread taking it to 0 is the
//             chunk's finisher: it enqueues the next DMA through the slot);
//   synced[b] 1 + number of this job's DMAs through slot b known to be complete (saves repeated
//             cudaEventSynchronize calls by the other slices of a chunk).
// to_device, item of chunk c: wait until DMA(c - kSlots) (or, in round 0, an earlier call's DMA)
//   has read buf[b], memcpy the slice in; the finisher enqueues DMA(c) and records done[b].
// to_host: the caller enqueues DMA(0..kSlots-1) up front; item of chunk c: wait until DMA(c) has
//   landed, memcpy the slice out; the finisher enqueues DMA(c + kSlots) into the freed buffer.
// Every wait is on a lower-numbered chunk, and items are taken in order, so the lowest unfinished
// item can always proceed: no deadlock with any number of threads, including one.
// Errors never throw on a helper thread: the first one is recorded, every waiter is released,
// remaining items are skipped, and the caller throws after all items are accounted for.
#include "backends/cuda/staging.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/cuda/check.h"
#include "backends/cuda/context.h"

namespace lc::cuda {

namespace {

// ---- thread count ----------------------------------------------------------------------------

int default_copy_threads() {
  if (const char* e = std::getenv("LC_COPY_THREADS"); e && *e) {
    char* end = nullptr;
    const long v = std::strtol(e, &end, 10);
    if (end != e && v >= 1) return static_cast<int>(std::min<long>(v, kMaxCopyThreads));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return std::clamp(static_cast<int>(hw / 2), 1, 8);
}

std::atomic<int> g_threads{0};  // 0: not resolved yet

// ---- pinned buffers --------------------------------------------------------------------------

struct Staging {
  std::mutex mu;  // one staged copy at a time
  char* buf[kSlots] = {};
  cudaEvent_t done[kSlots] = {};  // recorded after the last DMA that used buf[b]

  void ensure() {
    if (buf[kSlots - 1]) return;
    for (int b = 0; b < kSlots; ++b) {
      if (!buf[b]) {
        void* p = nullptr;
        LC_CUDA_CHECK(cudaHostAlloc(&p, kSlotBytes, cudaHostAllocPortable));
        buf[b] = static_cast<char*>(p);
      }
      if (!done[b]) LC_CUDA_CHECK(cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming));
    }
  }
};

// One set per device (its events record that device's streams), made on the device's first
// staged copy.
Staging& staging() {
  static Staging* s = new Staging[kMaxDevices];  // leaked on purpose: pinned memory dies with the process
  return s[current_device()];
}

// ---- one staged copy -------------------------------------------------------------------------

std::size_t round_up(std::size_t v, std::size_t m) { return (v + m - 1) / m * m; }

struct Job {
  bool to_device = false;
  char* host = nullptr;  // source (to_device) or destination (to_host)
  char* dev = nullptr;
  std::size_t bytes = 0, chunk = 0, slice = 0;
  std::uint32_t slices = 0, chunks = 0, items = 0;
  Staging* st = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;  // the stream's device: helper threads make it current before their DMAs

  std::atomic<std::uint32_t> next{0}, finished{0};
  std::atomic<std::uint32_t> enq[kSlots], left[kSlots], synced[kSlots];
  std::atomic<bool> failed{false};
  std::mutex err_mu;
  cudaError_t err = cudaSuccess;
  const char* err_call = nullptr;
  int err_line = 0;

  void init_slots() {
    for (int b = 0; b < kSlots; ++b) {
      enq[b].store(0, std::memory_order_relaxed);
      left[b].store(slices, std::memory_order_relaxed);
      synced[b].store(0, std::memory_order_relaxed);
    }
  }

  std::size_t chunk_len(std::uint32_t c) const {
    return std::min(chunk, bytes - static_cast<std::size_t>(c) * chunk);
  }

  void fail(cudaError_t e, const char* call, int line) {
    (void)cudaGetLastError();  // clear this thread's (non-sticky) error state
    {
      std::lock_guard<std::mutex> lock(err_mu);
      if (err == cudaSuccess) {
        err = e;
        err_call = call;
        err_line = line;
      }
    }
    failed.store(true);
    for (auto& e2 : enq) {  // release every waiter; they see `failed` and skip
      e2.fetch_add(1u << 30);
      e2.notify_all();
    }
  }

  // Enqueue chunk c's DMA through its slot and record the slot's event.
  bool dma(std::uint32_t c) {
    const int b = static_cast<int>(c % kSlots);
    const std::size_t off = static_cast<std::size_t>(c) * chunk, n = chunk_len(c);
    cudaError_t e = to_device
                        ? cudaMemcpyAsync(dev + off, st->buf[b], n, cudaMemcpyHostToDevice, stream)
                        : cudaMemcpyAsync(st->buf[b], dev + off, n, cudaMemcpyDeviceToHost, stream);
    if (e != cudaSuccess) {
      fail(e, "cudaMemcpyAsync (staged chunk)", __LINE__);
      return false;
    }
    e = cudaEventRecord(st->done[b], stream);
    if (e != cudaSuccess) {
      fail(e, "cudaEventRecord (staging slot)", __LINE__);
      return false;
    }
    enq[b].fetch_add(1, std::memory_order_release);
    enq[b].notify_all();
    return true;
  }

  // Wait until `need` DMAs of this job went through slot b and the last of them (or, for need 0,
  // the last DMA of an earlier call) has completed.
  bool wait_slot(int b, std::uint32_t need) {
    std::uint32_t v = enq[b].load(std::memory_order_acquire);
    while (v < need) {
      enq[b].wait(v, std::memory_order_acquire);
      v = enq[b].load(std::memory_order_acquire);
    }
    if (failed.load(std::memory_order_acquire)) return false;
    if (synced[b].load(std::memory_order_acquire) > need) return true;
    const cudaError_t e = cudaEventSynchronize(st->done[b]);
    if (e != cudaSuccess) {
      fail(e, "cudaEventSynchronize (staging slot)", __LINE__);
      return false;
    }
    std::uint32_t cur = synced[b].load(std::memory_order_relaxed);
    while (cur < need + 1 &&
           !synced[b].compare_exchange_weak(cur, need + 1, std::memory_order_release,
                                            std::memory_order_relaxed)) {
    }
    return true;
  }

  void run_item(std::uint32_t i) {
    const std::uint32_t c = i / slices, s = i % slices;
    const int b = static_cast<int>(c % kSlots);
    const std::uint32_t r = c / kSlots;
    const std::size_t clen = chunk_len(c), off = static_cast<std::size_t>(s) * slice;
    const std::size_t n = off < clen ? std::min(slice, clen - off) : 0;
    char* pinned = st->buf[b] + off;
    char* h = host + static_cast<std::size_t>(c) * chunk + off;
    if (to_device) {
      if (!wait_slot(b, r)) return;  // buf[b] no longer read by DMA(c - kSlots)
      if (n) std::memcpy(pinned, h, n);
      if (left[b].fetch_sub(1, std::memory_order_acq_rel) == 1) {  // last slice of chunk c
        left[b].store(slices, std::memory_order_relaxed);          // published by dma()'s release
        dma(c);
      }
    } else {
      if (!wait_slot(b, r + 1)) return;  // DMA(c) has landed in buf[b]
      if (n) std::memcpy(h, pinned, n);
      if (left[b].fetch_sub(1, std::memory_order_acq_rel) == 1) {
        left[b].store(slices, std::memory_order_relaxed);
        if (c + kSlots < chunks) dma(c + kSlots);
      }
    }
  }

  // Take items until none are left. Run by the caller and by every helper woken for this job.
  void work() {
    // A helper thread's CUDA runtime device may be another one (a multi-GPU process).
    int cur = 0;
    if (cudaGetDevice(&cur) != cudaSuccess || (cur != device && cudaSetDevice(device) != cudaSuccess)) {
      fail(cudaGetLastError(), "cudaSetDevice (staging helper)", __LINE__);
    }
    for (;;) {
      const std::uint32_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= items) return;
      if (!failed.load(std::memory_order_relaxed)) run_item(i);
      if (finished.fetch_add(1, std::memory_order_acq_rel) + 1 == items) finished.notify_all();
    }
  }

  void wait_finished() {
    std::uint32_t f = finished.load(std::memory_order_acquire);
    while (f < items) {
      finished.wait(f, std::memory_order_acquire);
      f = finished.load(std::memory_order_acquire);
    }
  }
};

// ---- helper threads --------------------------------------------------------------------------

// Helper threads, created on the first copy that wants them and never destroyed (like the pinned
// buffers). Each sleeps on its own ticket; dispatch() bumps the tickets of the helpers it wants,
// so a copy wakes exactly as many threads as it can use. A helper that wakes late joins whatever
// job is current (or none); the job is shared-owned, so a late helper never sees freed state.
class CopyPool {
 public:
  static CopyPool& instance() {
    static CopyPool* p = new CopyPool();  // leaked on purpose: threads live as long as the process
    return *p;
  }

  // Publish `job` and wake up to `helpers` threads; returns how many were woken.
  int dispatch(const std::shared_ptr<Job>& job, int helpers, int device) {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = job;
    while (static_cast<int>(workers_.size()) < helpers) {
      auto w = std::make_unique<Worker>();
      try {
        std::thread(&CopyPool::loop, this, w.get(), device).detach();
      } catch (...) {
        break;  // could not start a thread: use the ones there are
      }
      workers_.push_back(std::move(w));
    }
    const int n = std::min(helpers, static_cast<int>(workers_.size()));
    for (int k = 0; k < n; ++k) {
      workers_[static_cast<std::size_t>(k)]->ticket.fetch_add(1, std::memory_order_release);
      workers_[static_cast<std::size_t>(k)]->ticket.notify_one();
    }
    return n;
  }

  void retire(const std::shared_ptr<Job>& job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_ == job) current_.reset();
  }

 private:
  struct Worker {
    std::atomic<std::uint32_t> ticket{0};
  };

  void loop(Worker* w, int device) {
    (void)cudaSetDevice(device);  // a failure here resurfaces in the first CUDA call of an item
    (void)cudaGetLastError();
    std::uint32_t seen = 0;
    for (;;) {
      w->ticket.wait(seen, std::memory_order_acquire);
      seen = w->ticket.load(std::memory_order_acquire);
      std::shared_ptr<Job> job;
      {
        std::lock_guard<std::mutex> lock(mu_);
        job = current_;
      }
      if (job) job->work();
    }
  }

  std::mutex mu_;
  std::shared_ptr<Job> current_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

void staged_copy(bool to_device, char* host, char* dev, std::size_t bytes) {
  Context& c = ctx();
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mu);
  s.ensure();

  auto job = std::make_shared<Job>();
  Job& j = *job;
  j.to_device = to_device;
  j.host = host;
  j.dev = dev;
  j.bytes = bytes;
  j.st = &s;
  j.stream = c.stream;
  j.device = c.info.device;
  // ~8 chunks per copy (pipeline fill/drain ~1/8 of the time), 256 KiB .. kSlotBytes each.
  j.chunk = std::clamp(round_up((bytes + 7) / 8, 64 * 1024), kMinChunkBytes, kSlotBytes);
  j.chunks = static_cast<std::uint32_t>((bytes + j.chunk - 1) / j.chunk);
  const std::size_t want = std::max<std::size_t>(1, bytes / kMinThreadBytes);
  const int threads = static_cast<int>(std::min<std::size_t>(want, static_cast<std::size_t>(copy_threads())));
  // Slices of >= 256 KiB, one per thread at most; enough that kSlots chunks in flight keep every
  // thread busy (then slices may shrink to 128 KiB).
  std::uint32_t slices = static_cast<std::uint32_t>(
      std::clamp<std::size_t>(j.chunk / kMinThreadBytes, 1, static_cast<std::size_t>(threads)));
  while (slices * static_cast<std::uint32_t>(kSlots) < static_cast<std::uint32_t>(threads)) ++slices;
  j.slices = slices;
  j.slice = round_up((j.chunk + slices - 1) / slices, 64);
  j.items = j.chunks * j.slices;
  j.init_slots();

  if (!to_device) {  // fill the pipeline: the first kSlots chunks' DMAs
    for (std::uint32_t k = 0; k < std::min<std::uint32_t>(j.chunks, kSlots); ++k)
      if (!j.dma(k)) break;
  }
  const int helpers = static_cast<int>(std::min<std::uint32_t>(
      static_cast<std::uint32_t>(threads - 1), j.items - 1));
  if (helpers > 0 && !j.failed.load()) CopyPool::instance().dispatch(job, helpers, c.info.device);
  j.work();
  j.wait_finished();
  if (helpers > 0) CopyPool::instance().retire(job);
  if (j.err != cudaSuccess) detail::throw_cuda(j.err, j.err_call, __FILE__, j.err_line);
}

}  // namespace

int copy_threads() {
  int t = g_threads.load(std::memory_order_relaxed);
  if (t == 0) {
    const int d = default_copy_threads();
    g_threads.compare_exchange_strong(t, d);  // on failure t holds the value another thread set
    if (t == 0) t = d;
  }
  return t;
}

void set_copy_threads(int n) {
  g_threads.store(n <= 0 ? default_copy_threads() : std::min(n, kMaxCopyThreads));
}

void staged_copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  Context& c = ctx();
  if (bytes <= kDirectBytes) {
    LC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.stream));
    return;
  }
  staged_copy(true, const_cast<char*>(static_cast<const char*>(src)), static_cast<char*>(dst), bytes);
}

void staged_copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  Context& c = ctx();
  if (bytes <= kDirectBytes) {
    LC_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.stream));
    LC_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    return;
  }
  staged_copy(false, static_cast<char*>(dst), const_cast<char*>(static_cast<const char*>(src)), bytes);
}

}  // namespace lc::cuda
