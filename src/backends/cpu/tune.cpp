// The CPU backend's tuners (Backend::tune_matmul / tune_conv2d): choices measured once per shape
// on the real arguments and persisted in the auto-tune cache (autotune.h): the conv2d path
// (direct loops vs im2col + GEMM) and the float32 GEMM path (one cblas_sgemm with OpenBLAS's own
// threads vs single-threaded sgemm tiles in our pool). docs/autotune.md has the measurements.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "backends/cpu/blas_threads.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "lightning_core/autotune.h"

namespace lc {
namespace cpu {

// ---- CPU conv2d tuner -------------------------------------------------------------------------

namespace {
double time_us(const std::function<void()>& f, int reps) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return best;
}

// In-process memo of the tuners' choices (cpu_gemm, conv2d_nchw.cpu_path), in front of the
// cache: a hit costs one uncontended mutex and a hash lookup. Dropped whenever the cache's
// generation moves (store, clear, reload, another cache file), so it never outlives what it
// mirrors.
struct GemmMemoKey {
  std::int64_t m, k, n;
  bool trans_b;
  bool operator==(const GemmMemoKey&) const = default;
};
struct GemmMemoHash {
  std::size_t operator()(const GemmMemoKey& x) const {
    std::uint64_t h = static_cast<std::uint64_t>(x.m) * 0x9E3779B97F4A7C15ull;
    h ^= static_cast<std::uint64_t>(x.k) + 0x7F4A7C159E3779B9ull + (h << 6) + (h >> 2);
    h ^= static_cast<std::uint64_t>(x.n) + 0x94D049BB133111EBull + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h ^ static_cast<std::uint64_t>(x.trans_b));
  }
};
// One memo per (key, choice) type: the GEMM path by GEMM shape, the conv path by conv geometry.
template <class Key, class Path, class Hash>
struct ChoiceMemo {
  std::mutex mu;
  std::uint64_t generation = ~std::uint64_t{0};
  std::unordered_map<Key, Path, Hash> map;
};
template <class Key, class Path, class Hash>
ChoiceMemo<Key, Path, Hash>& choice_memo() {
  // Never destroyed: usable during static destruction.
  static auto* m = new ChoiceMemo<Key, Path, Hash>();
  return *m;
}
constexpr std::size_t kGemmMemoMax = 4096;  // distinct shapes kept; beyond that it restarts

template <class Key, class Path, class Hash>
bool memo_get(const Key& key, Path& out) {
  auto& memo = choice_memo<Key, Path, Hash>();
  const std::uint64_t gen = autotune::generation();
  std::lock_guard<std::mutex> g(memo.mu);
  if (memo.generation != gen) {
    memo.map.clear();
    memo.generation = gen;
    return false;
  }
  auto it = memo.map.find(key);
  if (it == memo.map.end()) return false;
  out = it->second;
  return true;
}

template <class Key, class Path, class Hash>
void memo_put(const Key& key, Path path) {
  auto& memo = choice_memo<Key, Path, Hash>();
  const std::uint64_t gen = autotune::generation();
  std::lock_guard<std::mutex> g(memo.mu);
  if (memo.generation != gen || memo.map.size() >= kGemmMemoMax) {
    memo.map.clear();
    memo.generation = gen;
  }
  memo.map[key] = path;
}

// The conv geometry a conv2d_nchw.cpu_path entry is keyed by.
struct ConvMemoKey {
  std::int64_t n, c, h, w, oc, kh, kw;
  int sh, sw, ph, pw;
  bool operator==(const ConvMemoKey&) const = default;
};
struct ConvMemoHash {
  std::size_t operator()(const ConvMemoKey& x) const {
    std::uint64_t h = 0x9E3779B97F4A7C15ull;
    for (std::int64_t v : {x.n, x.c, x.h, x.w, x.oc, x.kh, x.kw, std::int64_t{x.sh},
                           std::int64_t{x.sw}, std::int64_t{x.ph}, std::int64_t{x.pw}})
      h ^= static_cast<std::uint64_t>(v) + 0x7F4A7C159E3779B9ull + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h);
  }
};
}  // namespace

ConvPath tuned_conv_path(const Conv2dArgs& a, bool tune) {
  if (!tune || !autotune::enabled()) return ConvPath::automatic;
  // Every conv2d_nchw call asks (Backend::tune_conv2d): a repeated shape is answered from the
  // in-process memo, without building the cache key.
  const ConvMemoKey key{a.n, a.c, a.h, a.w_in, a.oc, a.kh, a.kw,
                        a.stride_h, a.stride_w, a.pad_h, a.pad_w};
  ConvPath memo_path;
  if (memo_get<ConvMemoKey, ConvPath, ConvMemoHash>(key, memo_path)) return memo_path;
  using std::to_string;
  const std::string shapes = "x=[" + to_string(a.n) + "," + to_string(a.c) + "," + to_string(a.h) +
                             "," + to_string(a.w_in) + "] w=[" + to_string(a.oc) + "," +
                             to_string(a.c) + "," + to_string(a.kh) + "," + to_string(a.kw) +
                             "] s=" + to_string(a.stride_h) + "," + to_string(a.stride_w) +
                             " p=" + to_string(a.pad_h) + "," + to_string(a.pad_w);
  if (auto f = autotune::lookup("conv2d_nchw.cpu_path", shapes, "float32", DeviceKind::cpu)) {
    const std::string& ch = (*f)["choice"];
    if (ch == "direct" || ch == "im2col") {
      const ConvPath path = ch == "direct" ? ConvPath::direct : ConvPath::im2col;
      memo_put<ConvMemoKey, ConvPath, ConvMemoHash>(key, path);
      return path;
    }
  }
  autotune::note_measurement();
  // One warm-up each (page faults, thread-pool start), then the best of two.
  const double macs = static_cast<double>(a.n) * a.oc * a.oh * a.ow * a.c * a.kh * a.kw;
  const int reps = macs > 5e8 ? 1 : 2;
  conv2d_with(ConvPath::direct, a);
  const double t_direct = time_us([&] { conv2d_with(ConvPath::direct, a); }, reps);
  conv2d_with(ConvPath::im2col, a);
  const double t_gemm = time_us([&] { conv2d_with(ConvPath::im2col, a); }, reps);
  const std::string choice = t_direct <= t_gemm ? "direct" : "im2col";
  autotune::store("conv2d_nchw.cpu_path", shapes, "float32", DeviceKind::cpu,
        {{"choice", choice},
         {"direct_us", std::to_string(t_direct)},
         {"im2col_us", std::to_string(t_gemm)}});
  const ConvPath path = t_direct <= t_gemm ? ConvPath::direct : ConvPath::im2col;
  memo_put<ConvMemoKey, ConvPath, ConvMemoHash>(key, path);
  return path;
}


// ---- CPU GEMM tuner ----------------------------------------------------------------------------

namespace {

const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::blas: return "blas";
    case GemmPath::pooled: return "pooled";
    default: return "auto";
  }
}

}  // namespace

GemmPath tuned_gemm_path(const MatmulArgs& a, bool tune) {
  // Cheapest tests first: tiny and huge GEMMs leave after a multiply and a compare.
  if (!tune || a.dtype != DType::f32 || !gemm_tunable(a.m, a.n, a.k) || !autotune::enabled() ||
      gemm_skinny_fits(a.m, a.n, a.k, a.trans_b))  // the skinny kernel has nothing to tune
    return GemmPath::automatic;
  const GemmMemoKey key{a.m, a.k, a.n, a.trans_b};
  GemmPath path;
  if (memo_get<GemmMemoKey, GemmPath, GemmMemoHash>(key, path)) return path;

  using std::to_string;
  const int threads = num_threads();
  const std::string shapes = to_string(a.m) + "x" + to_string(a.k) + "x" + to_string(a.n) +
                             " trans_b=" + (a.trans_b ? "1" : "0") +
                             " threads=" + to_string(threads);
  if (auto f = autotune::lookup("cpu_gemm", shapes, "float32", DeviceKind::cpu)) {
    const std::string& ch = (*f)["choice"];
    if (ch == "blas" || ch == "pooled") {
      path = ch == "blas" ? GemmPath::blas : GemmPath::pooled;
      memo_put<GemmMemoKey, GemmPath, GemmMemoHash>(key, path);
      return path;
    }
  }
  autotune::note_measurement();
  // Each path: a warm-up call, then timings of `batch` back-to-back calls (>= ~2^24
  // multiply-adds each, so small shapes are not timed at clock resolution) until there are
  // >= 3 of them and >= 20 ms went by; the best timing counts.
  // Pooled goes first, on free cores: after an OpenBLAS-threaded call OpenBLAS's workers
  // busy-wait ~0.1 s (blas_threads.h), so if this library made one within that window (say the
  // previous shape's tuning) the tuner sleeps out the rest of it first; a pooled loop in steady
  // state does not run next to spinning OpenBLAS workers either. Switching between OpenBLAS's
  // threads and ours also costs a few ms of slow calls while the scheduler re-places them
  // (measured on the 2-core VM), hence the minimum time per path. Cost per shape: ~45 ms of
  // calls (~8 calls at 2^31), plus up to ~135 ms asleep when a threaded sgemm just ran.
  const std::int64_t ldb = a.trans_b ? a.k : a.n;
  auto gemm = [&](GemmPath p) {
    gemm_with(p, a.m, a.n, a.k, static_cast<const float*>(a.a), a.k,
                  static_cast<const float*>(a.b), ldb, a.trans_b, static_cast<float*>(a.out), a.n);
  };
  const std::int64_t work = a.m * a.n * a.k;
  const int batch = static_cast<int>(std::max<std::int64_t>(1, (std::int64_t{1} << 24) / work));
  auto best_us = [&](GemmPath p, double min_ms) {
    gemm(p);
    double best = 1e300;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < 1000; ++r) {
      best = std::min(best, time_us([&] { for (int i = 0; i < batch; ++i) gemm(p); }, 1) / batch);
      const double spent = std::chrono::duration<double, std::milli>(
                               std::chrono::steady_clock::now() - start).count();
      if (r >= 2 && spent >= min_ms) break;
    }
    return best;
  };
#if defined(LC_HAVE_BLAS)
  if (const double ms = blas_spin_remaining_ms(); ms > 0)
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1e3)));
#endif
  double t_pooled = best_us(GemmPath::pooled, 20.0);
  double t_blas = best_us(GemmPath::blas, 20.0);
  // Within 5% the built-in rule's path stays: where the paths tie (large shapes) measurement
  // noise must not flip the default; where pooled matters it wins by far more (docs).
  const GemmPath def = gemm_default_path(a.m, a.n, a.k);
  const GemmPath other = def == GemmPath::pooled ? GemmPath::blas : GemmPath::pooled;
  double t_def = def == GemmPath::pooled ? t_pooled : t_blas;
  const double t_other = def == GemmPath::pooled ? t_blas : t_pooled;
  if (t_other < 0.95 * t_def) {
    // Overturning the built-in rule needs a second look on quiet cores: another library's
    // threaded call just before (numpy's own OpenBLAS, torch's OpenMP) leaves its workers
    // busy-waiting ~0.1 s, which this library cannot see, and a pooled loop measured next to
    // them is several times slower. Seen on the GPU host (2026-11-22): a 256^3 GEMM tuned right
    // after numpy's im2col conv picked BLAS (0.13-0.2 ms per call) over pooled (0.04 ms).
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    t_def = std::min(t_def, best_us(def, 20.0));
  }
  path = t_other < 0.95 * t_def ? other : def;
  if (def == GemmPath::pooled) t_pooled = std::min(t_pooled, t_def);
  else t_blas = std::min(t_blas, t_def);
  const GemmGrid grid = gemm_pooled_grid(a.m, a.n, a.k, threads);
  autotune::store("cpu_gemm", shapes, "float32", DeviceKind::cpu,
        {{"choice", gemm_path_name(path)},
         {"blas_us", std::to_string(t_blas)},
         {"pooled_us", std::to_string(t_pooled)},
         {"pooled_grid", to_string(grid.grid_m) + "x" + to_string(grid.grid_n) + " tiles of " +
                             to_string(grid.tile_m) + "x" + to_string(grid.tile_n)},
         {"default", gemm_path_name(def)}});
  memo_put<GemmMemoKey, GemmPath, GemmMemoHash>(key, path);
  return path;
}


}  // namespace cpu

bool autotune::cpu_gemm_tunable(std::int64_t m, std::int64_t k, std::int64_t n) {
  return cpu::gemm_tunable(m, n, k);
}

}  // namespace lc
