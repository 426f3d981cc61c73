// OpenBLAS thread-count control shared by every CPU kernel that calls cblas_sgemm from inside
// our own thread pool (attention's gemm path, the pooled GEMM path in matmul.cpp).
//
// The pthread OpenBLAS keeps ONE process-global thread count. Our pool already runs one task
// per core, so an sgemm issued from a pool task must run single-threaded, or every task would
// fan out to OpenBLAS's own threads and oversubscribe the machine. BlasOneThread is a scope
// guard the *dispatching* thread holds around the whole parallel_for:
//   * the first guard in flight sets OpenBLAS to 1 thread, the last one to leave restores
//     num_threads() (a mutex-guarded user count, so overlapping calls from several user
//     threads never restore it under each other);
//   * nothing global changes while pool tasks run;
//   * a plain (OpenBLAS-threaded) sgemm from another user thread that overlaps a guarded call
//     runs single-threaded meanwhile: correct, just slower.
// blas_configure_once() is the one-time openblas_set_num_threads(num_threads()) that makes
// LC_NUM_THREADS govern OpenBLAS too; the guard runs it first, so it can never fire mid-flight.
//
// Only with LC_HAVE_BLAS; without BLAS there is nothing to control and this header is empty.
#pragma once

#if defined(LC_HAVE_BLAS)

namespace lc::cpu {

// openblas_set_num_threads(num_threads()), exactly once per process (thread-safe).
void blas_configure_once();

class BlasOneThread {
 public:
  BlasOneThread();
  ~BlasOneThread();
  BlasOneThread(const BlasOneThread&) = delete;
  BlasOneThread& operator=(const BlasOneThread&) = delete;
};

// Guards currently alive (tests: 0 when no guarded call is in flight).
int blas_one_thread_users();

// After an OpenBLAS-threaded sgemm, OpenBLAS's workers busy-wait for the next job for
// 2^OPENBLAS_THREAD_TIMEOUT TSC ticks (default 2^28, ~0.1 s; measured 103 ms of CPU per worker
// after one 256^3 call) before sleeping, and anything our pool runs meanwhile shares the cores
// with them. note_threaded_blas_call() records such a call (gemm_blas does, for sizes
// OpenBLAS threads); blas_spin_remaining_ms() is how much of that window is left.
void note_threaded_blas_call();
double blas_spin_remaining_ms();

}  // namespace lc::cpu

#endif  // LC_HAVE_BLAS
