// Persistent worker pool behind lc::cpu::parallel_for (see thread_pool.h for the rules).
#include "backends/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace lc::cpu {

namespace {

thread_local bool t_in_parallel = false;

int configured_threads() {
  if (const char* s = std::getenv("LC_NUM_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    // A malformed value falls back to the hardware count rather than failing every op.
    if (end != s && v >= 1) return static_cast<int>(std::min<long>(v, 1024));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// A job's chunks are split into `groups` contiguous home ranges, one per pool thread (the
// caller is thread 0, worker i is thread i + 1; thread t's home is range t % groups). Each thread
// first claims the chunks of its own range, in order, then steals from the other ranges. With
// every worker joining (back-to-back calls: they are still spinning), a thread works on the
// same slice of the data call after call, so an op repeated on the same arrays finds its slice
// in that core's L2: a 1M-float add on the 16-thread GPU host took ~50 us with chunks handed out
// first come, first served (every call moved the data between cores) against torch CPU's ~25
// us, whose OpenMP static schedule keeps the slices in place; with home ranges 25-27 us
// (2026-11-22). Stealing keeps uneven work (causal attention rows, edge tiles) balanced as
// before. Jobs with fewer chunks than threads keep one shared range (see plan()).
struct Job {
  static constexpr int kMaxGroups = 64;
  struct alignas(64) Range {
    std::atomic<std::int64_t> next{0};
    std::int64_t end = 0;
  };

  detail::RangeFn fn = nullptr;
  void* ctx = nullptr;
  std::int64_t chunk = 1;
  int groups = 1;
  Range home[kMaxGroups];
  std::exception_ptr error;
  std::mutex error_mu;

  // Splits [begin, end) into nchunks chunks of `chunk` elements and those into `groups` ranges:
  // one per thread when every thread gets a chunk, else one shared range (first come, first
  // served). With fewer chunks than threads only some workers join, a different set each call,
  // so home ranges buy no affinity; on the GPU host a 256K add (8 chunks) measured 20 us first
  // come, first served and 40-55 us with home ranges (2026-11-22, cpu_pool_check.py).
  void plan(std::int64_t begin, std::int64_t end, std::int64_t nchunks, int threads) {
    groups = nchunks >= threads ? std::min(threads, kMaxGroups) : 1;
    for (int g = 0; g < groups; ++g) {
      const std::int64_t c0 = nchunks * g / groups, c1 = nchunks * (g + 1) / groups;
      home[g].next.store(begin + c0 * chunk, std::memory_order_relaxed);
      home[g].end = std::min(end, begin + c1 * chunk);
    }
  }

  // Runs chunks until none is left anywhere: the own range first, then the others in turn.
  void run_chunks(int thread) {
    for (int k = 0; k < groups; ++k) {
      Range& r = home[(thread + k) % groups];
      for (;;) {
        const std::int64_t lo = r.next.fetch_add(chunk, std::memory_order_relaxed);
        if (lo >= r.end) break;
        const std::int64_t hi = std::min(r.end, lo + chunk);
        try {
          fn(ctx, lo, hi);
        } catch (...) {
          std::lock_guard<std::mutex> g(error_mu);
          if (!error) error = std::current_exception();
        }
      }
    }
  }
};

// Workers that just finished a job spin for a short while (LC_SPIN_US, default 500 µs on
// machines with >= 2 hardware threads, 0 on one) before sleeping on the condition variable,
// so back-to-back parallel ops skip the futex wake-up of every worker. The caller likewise spins
// briefly while helpers finish. Measured on the 16-thread GPU host (cpu_pool_check.py,
// 2026-11-22): 1M-float add 99 us with 50 µs of spin, 42 us with 500 µs (torch CPU: 25-44 us),
// 256K add 23.5 -> 19 us; layernorm 512x1024 28 us either way. torch's OpenMP workers spin for a
// comparable time after each op. On the 2-vCPU VM (2026-12-01) the spin used to be off: every
// parallel op then woke its helper through a futex (~40-50 us there), a 1M-float add ran at one
// thread's speed (0.434 ms; 0.217 spinning) and a MiniLM 1x16 forward took 4.9-5.4 ms (2.8-3.2
// spinning, with matmul.cpp's two-core rule keeping OpenBLAS's own threads out of the way).
int spin_budget_us() {
  if (const char* s = std::getenv("LC_SPIN_US")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && v >= 0) return static_cast<int>(std::min<long>(v, 10000));
  }
  return std::thread::hardware_concurrency() >= 2 ? 500 : 0;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

template <class Pred>
bool spin_until(Pred&& done, int budget_us) {
  if (budget_us <= 0) return done();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  for (int i = 0;; ++i) {
    if (done()) return true;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
    cpu_relax();
  }
}

// The dispatch path takes no mutex (the first version did: 15 workers leaving their spin at
// once queued on it, and a 1M-element add took 430 us on the 16-thread GPU host against torch's
// 37 us). One atomic word, slots_, holds the job's generation (high bits) and the number of
// helper slots still open (low 16 bits): workers spin on it, claim a slot with a CAS that only
// succeeds for the generation they saw, and a late worker can never join a finished job. When
// the caller has run out of chunks it closes the open slots, so it waits only for helpers that
// actually joined, never for a sleeping worker's wake-up.
// Sleeping and waking use the mutex + condition variables, with the usual store-then-check on
// both sides (sleepers_ / caller_waiting_, all seq_cst) so no wake-up is lost.
class Pool {
 public:
  explicit Pool(int threads) : spin_us_(spin_budget_us()) {
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 0; i < threads - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
  }
  ~Pool() {
    stop_.store(true);
    slots_.fetch_add(kGenOne);  // a new generation: spinners look, sleepers' predicate sees stop_
    {
      std::lock_guard<std::mutex> g(mu_);
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // False when another caller holds the pool; the caller then runs inline.
  bool try_run(std::int64_t begin, std::int64_t end, std::int64_t grain, detail::RangeFn fn,
               void* ctx) {
    std::unique_lock<std::mutex> dispatch(dispatch_mu_, std::try_to_lock);
    if (!dispatch.owns_lock()) return false;

    Job job;
    job.fn = fn;
    job.ctx = ctx;
    // ~4 chunks per thread: enough slack to balance uneven rows without paying an atomic
    // per grain on long, even ranges.
    const std::int64_t range = end - begin;
    const std::int64_t per = (range + 4 * threads() - 1) / (4 * threads());
    job.chunk = std::max(grain, per);
    const std::int64_t nchunks = (range + job.chunk - 1) / job.chunk;
    job.plan(begin, end, nchunks, threads());
    const int helpers = static_cast<int>(std::min<std::int64_t>(
        {nchunks - 1, static_cast<std::int64_t>(workers_.size()), kSlotMask}));

    job_.store(&job, std::memory_order_relaxed);
    active_.store(helpers, std::memory_order_relaxed);
    // Publish: a new generation with `helpers` open slots (seq_cst: pairs with sleepers_).
    const std::uint64_t gen = (slots_.load(std::memory_order_relaxed) >> kGenShift) + 1;
    slots_.store((gen << kGenShift) | static_cast<std::uint64_t>(helpers));
    if (helpers > 0 && sleepers_.load() > 0) {
      {
        std::lock_guard<std::mutex> g(mu_);
      }
      work_cv_.notify_all();
    }

    t_in_parallel = true;
    job.run_chunks(0);
    t_in_parallel = false;

    // No chunk is left: close the slots nobody claimed (those helpers are not needed).
    std::uint64_t cur = slots_.load(std::memory_order_acquire);
    while ((cur & kSlotMask) != 0 &&
           !slots_.compare_exchange_weak(cur, cur & ~kSlotMask, std::memory_order_acq_rel)) {
    }
    const int unclaimed = static_cast<int>(cur & kSlotMask);
    if (unclaimed > 0) active_.fetch_sub(unclaimed, std::memory_order_acq_rel);

    if (!spin_until([&] { return active_.load(std::memory_order_acquire) == 0; }, spin_us_)) {
      std::unique_lock<std::mutex> g(mu_);
      caller_waiting_.store(true);
      done_cv_.wait(g, [&] { return active_.load() == 0; });
      caller_waiting_.store(false);
    }
    job_.store(nullptr, std::memory_order_relaxed);
    if (job.error) std::rethrow_exception(job.error);
    return true;
  }

 private:
  static constexpr int kGenShift = 16;
  static constexpr std::uint64_t kGenOne = std::uint64_t{1} << kGenShift;
  static constexpr std::uint64_t kSlotMask = kGenOne - 1;

  std::uint64_t generation() const { return slots_.load(std::memory_order_acquire) >> kGenShift; }

  void worker_loop(int index) {
    t_in_parallel = true;
    std::uint64_t seen = 0;
    for (;;) {
      if (!spin_until([&] { return generation() != seen; }, spin_us_)) {
        std::unique_lock<std::mutex> g(mu_);
        sleepers_.fetch_add(1);
        work_cv_.wait(g, [&] { return stop_.load() || (slots_.load() >> kGenShift) != seen; });
        sleepers_.fetch_sub(1);
      }
      if (stop_.load()) return;
      std::uint64_t s = slots_.load(std::memory_order_acquire);
      seen = s >> kGenShift;
      bool claimed = false;
      while ((s >> kGenShift) == seen && (s & kSlotMask) != 0) {
        if (slots_.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel)) {
          claimed = true;
          break;
        }
      }
      if (!claimed) continue;  // every slot taken (or closed): wait for the next job
      job_.load(std::memory_order_relaxed)->run_chunks(index);  // ordered by the CAS's acquire
      if (active_.fetch_sub(1) == 1 && caller_waiting_.load()) {
        {
          std::lock_guard<std::mutex> g(mu_);
        }
        done_cv_.notify_one();
      }
    }
  }

  const int spin_us_;
  std::vector<std::thread> workers_;
  std::mutex dispatch_mu_;                      // one job at a time
  std::mutex mu_;                               // sleeping / waking only
  std::condition_variable work_cv_, done_cv_;
  std::atomic<Job*> job_{nullptr};
  alignas(64) std::atomic<std::uint64_t> slots_{0};  // generation << 16 | open helper slots
  alignas(64) std::atomic<int> active_{0};           // helpers that joined and are not done
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};
  std::atomic<bool> stop_{false};
};

Pool& pool() {
  static Pool p(num_threads());
  return p;
}

}  // namespace

int num_threads() {
  static const int n = configured_threads();
  return n;
}

namespace detail {

bool in_parallel_region() { return t_in_parallel; }

void parallel_for_impl(std::int64_t begin, std::int64_t end, std::int64_t grain, RangeFn fn,
                       void* ctx) {
  if (!pool().try_run(begin, end, grain, fn, ctx)) fn(ctx, begin, end);
}

}  // namespace detail
}  // namespace lc::cpu
