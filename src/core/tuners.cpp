// The tuners that persist their choices in the auto-tune cache (autotune.h, tuners.h): the CPU
// conv2d path (direct vs im2col), the CPU GEMM path (OpenBLAS-threaded vs pooled tiles) and the
// GEMM modes (cuBLASLt heuristic / autotuned algorithm / TF32).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/blas_threads.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "core/tuners.h"
#include "lightning_core/autotune.h"
#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"

#ifdef LC_HAVE_CUDA
#include "backends/cuda/matmul.h"
#endif

namespace lc {
namespace autotune {

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
}  // namespace

std::string cpu_conv2d_choice(const Conv2dArgs& a, bool tune) {
  if (!tune || !enabled()) return "auto";
  using std::to_string;
  const std::string shapes = "x=[" + to_string(a.n) + "," + to_string(a.c) + "," + to_string(a.h) +
                             "," + to_string(a.w_in) + "] w=[" + to_string(a.oc) + "," +
                             to_string(a.c) + "," + to_string(a.kh) + "," + to_string(a.kw) +
                             "] s=" + to_string(a.stride_h) + "," + to_string(a.stride_w) +
                             " p=" + to_string(a.pad_h) + "," + to_string(a.pad_w);
  if (auto f = lookup("conv2d_nchw.cpu_path", shapes, "float32", DeviceKind::cpu)) {
    const std::string& ch = (*f)["choice"];
    if (ch == "direct" || ch == "im2col") return ch;
  }
  note_measurement();
  // One warm-up each (page faults, thread-pool start), then the best of two.
  const double macs = static_cast<double>(a.n) * a.oc * a.oh * a.ow * a.c * a.kh * a.kw;
  const int reps = macs > 5e8 ? 1 : 2;
  cpu::conv2d_with(cpu::ConvPath::direct, a);
  const double t_direct = time_us([&] { cpu::conv2d_with(cpu::ConvPath::direct, a); }, reps);
  cpu::conv2d_with(cpu::ConvPath::im2col, a);
  const double t_gemm = time_us([&] { cpu::conv2d_with(cpu::ConvPath::im2col, a); }, reps);
  const std::string choice = t_direct <= t_gemm ? "direct" : "im2col";
  store("conv2d_nchw.cpu_path", shapes, "float32", DeviceKind::cpu,
        {{"choice", choice},
         {"direct_us", std::to_string(t_direct)},
         {"im2col_us", std::to_string(t_gemm)}});
  return choice;
}

void run_cpu_conv2d(const Conv2dArgs& a, const std::string& choice) {
  if (choice == "direct") cpu::conv2d_with(cpu::ConvPath::direct, a);
  else if (choice == "im2col") cpu::conv2d_with(cpu::ConvPath::im2col, a);
  else cpu::conv2d(a);
}

// ---- CPU GEMM tuner ----------------------------------------------------------------------------

namespace {

const char* gemm_path_name(cpu::GemmPath p) {
  switch (p) {
    case cpu::GemmPath::blas: return "blas";
    case cpu::GemmPath::pooled: return "pooled";
    default: return "auto";
  }
}

// In-process memo of the cpu_gemm choices, in front of the cache: a hit costs one uncontended
// mutex and a hash lookup. Dropped whenever the cache's generation moves (store, clear,
// reload, another cache file), so it never outlives what it mirrors.
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
struct GemmMemo {
  std::mutex mu;
  std::uint64_t generation = ~std::uint64_t{0};
  std::unordered_map<GemmMemoKey, cpu::GemmPath, GemmMemoHash> map;
};
GemmMemo& gemm_memo() {
  static GemmMemo* m = new GemmMemo();  // never destroyed: usable during static destruction
  return *m;
}
constexpr std::size_t kGemmMemoMax = 4096;  // distinct shapes kept; beyond that it restarts

bool memo_get(const GemmMemoKey& key, cpu::GemmPath& out) {
  GemmMemo& memo = gemm_memo();
  const std::uint64_t gen = generation();
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

void memo_put(const GemmMemoKey& key, cpu::GemmPath path) {
  GemmMemo& memo = gemm_memo();
  const std::uint64_t gen = generation();
  std::lock_guard<std::mutex> g(memo.mu);
  if (memo.generation != gen || memo.map.size() >= kGemmMemoMax) {
    memo.map.clear();
    memo.generation = gen;
  }
  memo.map[key] = path;
}

}  // namespace

cpu::GemmPath cpu_gemm_choice(const MatmulArgs& a, bool tune) {
  // Cheapest tests first: tiny and huge GEMMs leave after a multiply and a compare.
  if (!tune || !cpu::gemm_tunable(a.m, a.n, a.k) || !enabled())
    return cpu::GemmPath::automatic;
  const GemmMemoKey key{a.m, a.k, a.n, a.trans_b};
  cpu::GemmPath path;
  if (memo_get(key, path)) return path;

  using std::to_string;
  const int threads = cpu::num_threads();
  const std::string shapes = to_string(a.m) + "x" + to_string(a.k) + "x" + to_string(a.n) +
                             " trans_b=" + (a.trans_b ? "1" : "0") +
                             " threads=" + to_string(threads);
  if (auto f = lookup("cpu_gemm", shapes, "float32", DeviceKind::cpu)) {
    const std::string& ch = (*f)["choice"];
    if (ch == "blas" || ch == "pooled") {
      path = ch == "blas" ? cpu::GemmPath::blas : cpu::GemmPath::pooled;
      memo_put(key, path);
      return path;
    }
  }
  note_measurement();
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
  auto gemm = [&](cpu::GemmPath p) {
    cpu::gemm_with(p, a.m, a.n, a.k, static_cast<const float*>(a.a), a.k,
                  static_cast<const float*>(a.b), ldb, a.trans_b, static_cast<float*>(a.out), a.n);
  };
  const std::int64_t work = a.m * a.n * a.k;
  const int batch = static_cast<int>(std::max<std::int64_t>(1, (std::int64_t{1} << 24) / work));
  auto best_us = [&](cpu::GemmPath p, double min_ms) {
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
  if (const double ms = cpu::blas_spin_remaining_ms(); ms > 0)
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(ms * 1e3)));
#endif
  double t_pooled = best_us(cpu::GemmPath::pooled, 20.0);
  double t_blas = best_us(cpu::GemmPath::blas, 20.0);
  // Within 5% the built-in rule's path stays: where the paths tie (large shapes) measurement
  // noise must not flip the default; where pooled matters it wins by far more (docs).
  const cpu::GemmPath def = cpu::gemm_default_path(a.m, a.n, a.k);
  const cpu::GemmPath other = def == cpu::GemmPath::pooled ? cpu::GemmPath::blas : cpu::GemmPath::pooled;
  double t_def = def == cpu::GemmPath::pooled ? t_pooled : t_blas;
  const double t_other = def == cpu::GemmPath::pooled ? t_blas : t_pooled;
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
  if (def == cpu::GemmPath::pooled) t_pooled = std::min(t_pooled, t_def);
  else t_blas = std::min(t_blas, t_def);
  const cpu::GemmGrid grid = cpu::gemm_pooled_grid(a.m, a.n, a.k, threads);
  store("cpu_gemm", shapes, "float32", DeviceKind::cpu,
        {{"choice", gemm_path_name(path)},
         {"blas_us", std::to_string(t_blas)},
         {"pooled_us", std::to_string(t_pooled)},
         {"pooled_grid", to_string(grid.grid_m) + "x" + to_string(grid.grid_n) + " tiles of " +
                             to_string(grid.tile_m) + "x" + to_string(grid.tile_n)},
         {"default", gemm_path_name(def)}});
  memo_put(key, path);
  return path;
}

void run_cpu_matmul(const MatmulArgs& a, cpu::GemmPath choice) { cpu::matmul_with(choice, a); }

// ---- GEMM modes --------------------------------------------------------------------------------

const char* to_string(GemmMode m) {
  switch (m) {
    case GemmMode::heuristic: return "heuristic";
    case GemmMode::autotuned: return "autotuned";
    case GemmMode::tf32_fast: return "tf32_fast";
  }
  return "?";
}

GemmMode parse_gemm_mode(const std::string& s, const char* op) {
  if (s == "heuristic") return GemmMode::heuristic;
  if (s == "autotuned") return GemmMode::autotuned;
  if (s == "tf32_fast") return GemmMode::tf32_fast;
  throw_value(op, "unknown GEMM mode '" + s + "'; use \"heuristic\", \"autotuned\" or \"tf32_fast\"");
}

Precision gemm_mode_precision(GemmMode m) {
  return m == GemmMode::tf32_fast ? Precision::tf32 : Precision::fp32;
}

std::optional<std::string> recorded_gemm_mode(std::int64_t m, std::int64_t k, std::int64_t n,
                                              Precision p) {
  const std::string shapes = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n);
  auto f = lookup(std::string("large_gemm_mode.") + lc::to_string(p), shapes, "float32",
                  DeviceKind::cuda);
  if (!f) return std::nullopt;
  return (*f)["choice"];
}

GemmTuneResult prepare_gemm(std::int64_t m, std::int64_t k, std::int64_t n, GemmMode mode,
                            bool trans_b, DType dtype) {
  static constexpr const char* op = "gemm_prepare";
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16)
    throw_type(op, std::string("dtype must be float32, float16 or bfloat16 (the CUDA GEMM's "
                               "storage dtypes), got ") + lc::to_string(dtype));
  if (m <= 0 || k <= 0 || n <= 0)
    throw_value(op, "m, k and n must be positive, got " + std::to_string(m) + ", " +
                        std::to_string(k) + ", " + std::to_string(n));
  Backend& be = get_backend(DeviceKind::cuda);
  if (!be.available())
    throw Unavailable(std::string("[") + op + "] GEMM modes are cuBLASLt modes and need the CUDA "
                      "backend: " + be.unavailable_reason());
#ifndef LC_HAVE_CUDA
  (void)mode;
  (void)trans_b;
  (void)dtype;
  throw Unavailable(std::string("[") + op + "] this build has no CUDA backend");
#else
  GemmTuneResult res;
  res.mode = to_string(mode);
  MatmulArgs args;
  args.m = m;
  args.k = k;
  args.n = n;
  args.trans_b = trans_b;
  args.precision = gemm_mode_precision(mode);
  args.dtype = dtype;
  const char* dt = lc::to_string(dtype);  // the cache entries are per storage dtype
  const auto algos = cuda::matmul_list_algos(args, 8);
  res.candidates = static_cast<int>(algos.size());
  if (algos.empty()) throw_backend(op, "cuBLASLt returned no algorithm for this shape");
  auto describe = [&](int idx) {
    const auto& a = algos[static_cast<std::size_t>(idx)];
    return "algo=" + std::to_string(a.algo_id) + " tile=" + std::to_string(a.tile) +
           " stages=" + std::to_string(a.stages) + " splitk=" + std::to_string(a.splitk) +
           " workspace=" + std::to_string(a.workspace_bytes);
  };
  if (mode == GemmMode::heuristic) {
    cuda::matmul_set_algo(args, 0);
    res.algo_index = 0;
    res.detail = describe(0);
    return res;
  }
  const std::string shapes = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) +
                             (trans_b ? " trans_b" : "") + " " + lc::to_string(args.precision);
  if (auto f = lookup("matmul2d.cublaslt_algo", shapes, dt, DeviceKind::cuda)) {
    const int idx = std::atoi((*f)["choice"].c_str());
    if (idx >= 0 && idx < res.candidates) {
      cuda::matmul_set_algo(args, idx);
      res.algo_index = idx;
      res.from_cache = true;
      res.detail = describe(idx);
      return res;
    }
  }
  // Measure: device buffers of the real sizes, each candidate warmed once then timed.
  note_measurement();
  Tensor A = Tensor::empty({m, k}, dtype, DeviceKind::cuda);
  Tensor B = Tensor::empty(trans_b ? std::vector<std::int64_t>{n, k} : std::vector<std::int64_t>{k, n},
                           dtype, DeviceKind::cuda);
  Tensor C = Tensor::empty({m, n}, dtype, DeviceKind::cuda);
  {
    // Defined contents (timings of NaN-free data): 0.01 in the storage dtype, via a host buffer
    // of the largest size.
    const std::int64_t most = std::max({m * k, k * n, m * n});
    std::vector<float> host(static_cast<std::size_t>(most), 0.01f);
    std::vector<unsigned char> stored(static_cast<std::size_t>(most) * dtype_size(dtype));
    convert_elements(DType::f32, host.data(), dtype, stored.data(), most);
    be.copy_from_host(A.data(), stored.data(), A.nbytes());
    be.copy_from_host(B.data(), stored.data(), B.nbytes());
  }
  args.a = A.data();
  args.b = B.data();
  args.out = C.data();
  const double flops = 2.0 * m * k * n;
  const int reps = flops > 1e11 ? 3 : 10;
  double best = 1e300;
  int best_idx = 0;
  for (int i = 0; i < res.candidates; ++i) {
    try {
      cuda::matmul_with_algo(args, i);
      be.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) cuda::matmul_with_algo(args, i);
      be.synchronize();
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
          reps;
      if (us < best) {
        best = us;
        best_idx = i;
      }
    } catch (const BackendError&) {
      // A candidate that fails to run (workspace, unsupported config) is skipped.
    }
  }
  cuda::matmul_set_algo(args, best_idx);
  res.algo_index = best_idx;
  res.best_us = best;
  res.detail = describe(best_idx);
  store("matmul2d.cublaslt_algo", shapes, dt, DeviceKind::cuda,
        {{"choice", std::to_string(best_idx)},
         {"us", std::to_string(best)},
         {"detail", res.detail},
         {"candidates", std::to_string(res.candidates)}});
  return res;
#endif
}

}  // namespace autotune

bool autotune::cpu_gemm_tunable(std::int64_t m, std::int64_t k, std::int64_t n) {
  return cpu::gemm_tunable(m, n, k);
}

}  // namespace lc
