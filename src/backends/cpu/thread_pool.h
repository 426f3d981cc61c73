// A small persistent worker pool for the CPU kernels.
//
// Created lazily on the first parallel_for that actually needs threads (never at static-init
// time, so importing the library spawns nothing). The caller thread always takes part in the
// work, so a pool of N threads has N-1 workers.
//
// Concurrency rules:
//   * One job at a time. A second user thread that calls parallel_for while the pool is busy
//     runs its range inline instead of queueing: it never blocks behind another caller's job.
//   * A nested parallel_for (called from inside a running task) runs inline, so it can never
//     deadlock waiting for workers that are busy running its parent.
//   * An exception thrown by a task is rethrown in the calling thread after all tasks finish.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace lc::cpu {

// Threads the pool uses (caller included): LC_NUM_THREADS if set and >= 1, else
// std::thread::hardware_concurrency(). Read once; cheap afterwards; does not start the pool.
int num_threads();

namespace detail {
using RangeFn = void (*)(void* ctx, std::int64_t lo, std::int64_t hi);
void parallel_for_impl(std::int64_t begin, std::int64_t end, std::int64_t grain, RangeFn fn,
                       void* ctx);
bool in_parallel_region();
}  // namespace detail

// Calls fn(lo, hi) over disjoint sub-ranges covering [begin, end), each at least `grain` long
// (except possibly the last). Type-erased through a plain function pointer so dispatch never
// allocates.
template <class F>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, F&& fn) {
  if (end <= begin) return;
  if (grain < 1) grain = 1;
  if (end - begin <= grain || num_threads() <= 1 || detail::in_parallel_region()) {
    fn(begin, end);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  detail::parallel_for_impl(
      begin, end, grain,
      [](void* ctx, std::int64_t lo, std::int64_t hi) { (*static_cast<Fn*>(ctx))(lo, hi); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace lc::cpu
