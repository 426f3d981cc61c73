// gemm_paths: CPU GEMM blas (one OpenBLAS-threaded call) vs pooled (one single-threaded sgemm
// per tile inside our pool) vs the default path, kernel level (lc::cpu::gemm_with on
// preallocated buffers; no Python, no auto-tune cache).
//
// Usage: gemm_paths [--samples N] [--min-ms T] [--block] [--only blas|pooled] [--hold-one-thread]
//                   [--tile TMxTN] [MxKxN ...]
//   Each sample times back-to-back calls for >= T ms (default 2) and reports the per-call time;
//   the median and p10/p90 of N samples (default 41) are printed. Paths are interleaved per
//   sample (blas, pooled, blas, ...) unless --block (all pooled samples, then all blas ones) or
//   --only (one path: run each in its own process for clean numbers). Why it matters: after an
//   OpenBLAS-threaded call its worker threads busy-wait ~0.1 s (OPENBLAS_THREAD_TIMEOUT,
//   default 2^28 cycles; measured: 103 ms of CPU per worker after one 256^3 call), so in an
//   interleaved run every pooled sample shares its cores with them. Threads: LC_NUM_THREADS.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/blas_threads.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"

namespace {

using i64 = std::int64_t;
using Clock = std::chrono::steady_clock;

struct Shape {
  i64 m, k, n;
};

struct Stats {
  double p10, med, p90;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[static_cast<std::size_t>(q * (v.size() - 1) + 0.5)]; };
  return {at(0.1), at(0.5), at(0.9)};
}

}  // namespace

int main(int argc, char** argv) {
  int samples = 41;
  double min_ms = 2.0;
  bool block = false;
  int only = -1;  // -1: both paths; 0: blas only; 1: pooled only
  bool hold = false;  // keep OpenBLAS at 1 thread for the whole run: no per-call toggling
  i64 tile_m = 0, tile_n = 0;  // --tile TMxTN: pooled with this tile size instead of its grid
  std::vector<Shape> shapes;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--samples") && i + 1 < argc) samples = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--min-ms") && i + 1 < argc) min_ms = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--block")) block = true;
    else if (!std::strcmp(argv[i], "--hold-one-thread")) hold = true;
    else if (!std::strcmp(argv[i], "--tile") && i + 1 < argc)
      std::sscanf(argv[++i], "%ldx%ld", &tile_m, &tile_n);
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = std::strcmp(argv[++i], "blas") ? 1 : 0;
    else {
      Shape s{};
      if (std::sscanf(argv[i], "%ldx%ldx%ld", &s.m, &s.k, &s.n) == 3) shapes.push_back(s);
      else {
        std::fprintf(stderr, "bad argument %s\n", argv[i]);
        return 2;
      }
    }
  }
  if (shapes.empty())
    for (i64 s : {64, 96, 128, 192, 256, 384, 512, 768, 1024}) shapes.push_back({s, s, s});
  if (!lc::cpu::have_blas()) {
    std::printf("built without BLAS: no blas / pooled paths to compare\n");
    return 0;
  }
  // --hold-one-thread: one BlasOneThread guard for the whole run, so the pooled path's own
  // guard never toggles OpenBLAS's thread count (1 <-> num_threads) per call. What that
  // toggling costs is the difference to a run without the flag.
#if defined(LC_HAVE_BLAS)
  std::optional<lc::cpu::BlasOneThread> held;
  if (hold) held.emplace();
#endif
  std::printf("threads=%d samples=%d min_ms=%.1f mode=%s%s\n", lc::cpu::num_threads(), samples,
              min_ms, block ? "block" : "interleaved", hold ? " hold-one-thread" : "");
  std::printf("%-16s %-6s %-12s %10s %10s %10s %8s\n", "shape", "path", "grid", "p10_us",
              "median_us", "p90_us", "GFLOP/s");
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Shape& s : shapes) {
    std::vector<float> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n);
    for (float& x : a) x = dist(gen);
    for (float& x : b) x = dist(gen);
    const lc::cpu::GemmPath paths[] = {lc::cpu::GemmPath::blas, lc::cpu::GemmPath::pooled};
    const char* names[] = {"blas", "pooled"};
    auto call = [&](lc::cpu::GemmPath p) {
      if (p == lc::cpu::GemmPath::pooled && tile_m > 0 && tile_n > 0)
        lc::cpu::gemm_pooled_with_tiles(tile_m, tile_n, s.m, s.n, s.k, a.data(), s.k, b.data(),
                                        s.n, false, c.data(), s.n);
      else
        lc::cpu::gemm_with(p, s.m, s.n, s.k, a.data(), s.k, b.data(), s.n, false, c.data(), s.n);
    };
    // Calls per sample: enough for min_ms, from one warm timing (of the slower path when
    // interleaved). Block / only: each path warmed and sized right before its own samples.
    auto calls_for = [&](int pi) {
      call(paths[pi]);
      const auto t0 = Clock::now();
      call(paths[pi]);
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      return static_cast<int>(min_ms * 1000.0 / std::max(us, 0.01)) + 1;
    };
    std::vector<double> t[2];
    auto sample = [&](int pi, int reps) {
      const auto t0 = Clock::now();
      for (int r = 0; r < reps; ++r) call(paths[pi]);
      t[pi].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / reps);
    };
    if (block || only >= 0) {
      for (int pi : {1, 0}) {  // pooled first: blas calls leave OpenBLAS's threads spinning
        if (only >= 0 && pi != only) continue;
        const int reps = calls_for(pi);
        for (int i = 0; i < samples; ++i) sample(pi, reps);
      }
    } else {
      const int reps = std::max(calls_for(1), calls_for(0));
      for (int i = 0; i < samples; ++i)
        for (int j = 0; j < 2; ++j) sample((i + j) % 2, reps);  // alternate which goes first
    }
    auto g = lc::cpu::gemm_pooled_grid(s.m, s.n, s.k, lc::cpu::num_threads());
    if (tile_m > 0 && tile_n > 0) {
      g.tile_m = std::min(tile_m, s.m);
      g.tile_n = std::min(tile_n, s.n);
      g.grid_m = (s.m + g.tile_m - 1) / g.tile_m;
      g.grid_n = (s.n + g.tile_n - 1) / g.tile_n;
    }
    const double flops = 2.0 * s.m * s.n * s.k;
    char shape[64], grid[64];
    std::snprintf(shape, sizeof shape, "%ldx%ldx%ld", s.m, s.k, s.n);
    for (int pi = 0; pi < 2; ++pi) {
      if (t[pi].empty()) continue;
      const Stats st = stats(t[pi]);
      if (pi == 1) std::snprintf(grid, sizeof grid, "%ldx%ld(%ldx%ld)", g.grid_m, g.grid_n, g.tile_m, g.tile_n);
      else std::snprintf(grid, sizeof grid, "-");
      std::printf("%-16s %-6s %-12s %10.1f %10.1f %10.1f %8.1f\n", shape, names[pi], grid, st.p10,
                  st.med, st.p90, flops / st.med * 1e-3);
    }
    if (only >= 0) continue;
    const double ratio = stats(t[0]).med / stats(t[1]).med;
    const char* def = lc::cpu::gemm_default_path(s.m, s.n, s.k) == lc::cpu::GemmPath::pooled ? "pooled" : "blas";
    std::printf("%-16s blas/pooled = %.2f  (default path: %s)\n", shape, ratio, def);
    std::fflush(stdout);
  }
  return 0;
}
