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

struct Job {
  detail::RangeFn fn = nullptr;
  void* ctx = nullptr;
  std::int64_t begin = 0, end = 0, chunk = 1;
  std::atomic<std::int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;

  // Chunks are claimed dynamically so uneven work (causal attention rows, edge tiles)
  // balances itself; returns when no chunk is left.
  void run_chunks() {
    for (;;) {
      const std::int64_t lo = next.fetch_add(chunk, std::memory_order_relaxed);
      if (lo >= end) return;
      const std::int64_t hi = std::min(end, lo + chunk);
      try {
        fn(ctx, lo, hi);
      } catch (...) {
        std::lock_guard<std::mutex> g(error_mu);
        if (!error) error = std::current_exception();
      }
    }
  }
};

// Workers that just finished a job spin for a short while (LC_SPIN_US, default 50 µs on
// machines with >= 4 hardware threads, 0 otherwise) before sleeping on the condition variable,
// so back-to-back parallel ops skip the futex wake-up of every worker (several µs each on a
// 16-thread host: the difference between a 1M-element add at 30 µs and at 70 µs). The caller
// likewise spins briefly while the last chunks finish. Sleepers are counted under the mutex,
// so a dispatch never misses one.
int spin_budget_us() {
  if (const char* s = std::getenv("LC_SPIN_US")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && v >= 0) return static_cast<int>(std::min<long>(v, 10000));
  }
  return std::thread::hardware_concurrency() >= 4 ? 50 : 0;
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

class Pool {
 public:
  explicit Pool(int threads) : spin_us_(spin_budget_us()) {
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 0; i < threads - 1; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
      published_.store(~std::uint64_t{0}, std::memory_order_release);
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
    job.begin = begin;
    job.end = end;
    job.next.store(begin, std::memory_order_relaxed);
    // ~4 chunks per thread: enough slack to balance uneven rows without paying an atomic
    // per grain on long, even ranges.
    const std::int64_t range = end - begin;
    const std::int64_t per = (range + 4 * threads() - 1) / (4 * threads());
    job.chunk = std::max(grain, per);
    const std::int64_t nchunks = (range + job.chunk - 1) / job.chunk;
    const int helpers = static_cast<int>(std::min<std::int64_t>(nchunks - 1, workers_.size()));

    bool wake = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &job;
      wanted_ = helpers;
      active_.store(helpers, std::memory_order_relaxed);
      ++generation_;
      published_.store(generation_, std::memory_order_release);
      wake = helpers > 0 && sleepers_ > 0;
    }
    if (wake) work_cv_.notify_all();

    t_in_parallel = true;
    job.run_chunks();
    t_in_parallel = false;

    if (!spin_until([&] { return active_.load(std::memory_order_acquire) == 0; }, spin_us_)) {
      std::unique_lock<std::mutex> g(mu_);
      done_cv_.wait(g, [&] { return active_.load(std::memory_order_acquire) == 0; });
    }
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = nullptr;
    }
    if (job.error) std::rethrow_exception(job.error);
    return true;
  }

 private:
  void worker_loop() {
    t_in_parallel = true;
    std::uint64_t seen = 0;
    for (;;) {
      const bool fresh =
          spin_until([&] { return published_.load(std::memory_order_acquire) != seen; }, spin_us_);
      Job* job = nullptr;
      {
        std::unique_lock<std::mutex> g(mu_);
        const auto ready = [&] { return stop_ || (generation_ != seen && wanted_ > 0); };
        if (!ready()) {
          // This generation needs no more helpers: skip it. Spin again if we only just saw it,
          // sleep once the spin budget ran out with nothing new.
          seen = generation_;
          if (fresh && spin_us_ > 0) continue;
          ++sleepers_;
          work_cv_.wait(g, ready);
          --sleepers_;
        }
        if (stop_) return;
        seen = generation_;
        --wanted_;
        job = job_;
      }
      job->run_chunks();
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> g(mu_);
        done_cv_.notify_one();
      }
    }
  }

  const int spin_us_;
  std::vector<std::thread> workers_;
  std::mutex dispatch_mu_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  Job* job_ = nullptr;
  std::uint64_t generation_ = 0;               // guarded by mu_
  std::atomic<std::uint64_t> published_{0};    // generation_, readable while spinning
  int wanted_ = 0;                             // workers still to pick up the current job
  std::atomic<int> active_{0};                 // helpers that have not finished the job
  int sleepers_ = 0;                           // workers waiting on work_cv_ (guarded by mu_)
  bool stop_ = false;
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
