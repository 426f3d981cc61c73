// OpenBLAS thread-count control (see blas_threads.h).
#include "backends/cpu/blas_threads.h"

#if defined(LC_HAVE_BLAS)

#include "backends/cpu/blas.h"

#include <cstdint>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>

#include "backends/cpu/thread_pool.h"

namespace lc::cpu {

namespace {
std::mutex g_blas_mu;
int g_blas_users = 0;  // guarded by g_blas_mu
}  // namespace

void blas_configure_once() {
  static const bool configured = [] {
    openblas_set_num_threads(num_threads());
    return true;
  }();
  (void)configured;
}

BlasOneThread::BlasOneThread() {
  blas_configure_once();
  std::lock_guard<std::mutex> g(g_blas_mu);
  if (g_blas_users++ == 0) openblas_set_num_threads(1);
}

BlasOneThread::~BlasOneThread() {
  std::lock_guard<std::mutex> g(g_blas_mu);
  if (--g_blas_users == 0) openblas_set_num_threads(num_threads());
}

namespace {
std::atomic<std::int64_t> g_last_threaded_ns{0};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// OpenBLAS's busy-wait window in ms: 2^e TSC ticks, e from OPENBLAS_THREAD_TIMEOUT (clamped to
// 4..30 like OpenBLAS does; 28 when unset), at an assumed >= 2 GHz TSC; at most 250 ms.
double spin_window_ms() {
  static const double ms = [] {
    int e = 28;
    if (const char* s = std::getenv("OPENBLAS_THREAD_TIMEOUT")) {
      const int v = std::atoi(s);
      if (v > 0) e = std::clamp(v, 4, 30);
    }
    return std::min(250.0, static_cast<double>(std::int64_t{1} << e) / 2.0e9 * 1e3);
  }();
  return ms;
}
}  // namespace

void note_threaded_blas_call() { g_last_threaded_ns.store(now_ns(), std::memory_order_relaxed); }

double blas_spin_remaining_ms() {
  const std::int64_t last = g_last_threaded_ns.load(std::memory_order_relaxed);
  if (last == 0) return 0.0;
  const double since = static_cast<double>(now_ns() - last) * 1e-6;
  return std::max(0.0, spin_window_ms() - since);
}

int blas_one_thread_users() {
  std::lock_guard<std::mutex> g(g_blas_mu);
  return g_blas_users;
}

}  // namespace lc::cpu

#endif  // LC_HAVE_BLAS
