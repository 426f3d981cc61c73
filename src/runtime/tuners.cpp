// The GEMM modes (autotune.h: cuBLASLt heuristic / autotuned algorithm / TF32): the measuring
// and the cache entries, over the backend's own candidates (Backend::gemm_algorithms). The CPU
// tuners (GEMM path, conv path) are the CPU backend's (src/backends/cpu/tune.cpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/autotune.h"
#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"

namespace lc {
namespace autotune {

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
  // The candidates and the runs are the backend's (Backend::gemm_algorithms: cuBLASLt's
  // heuristic list on CUDA); the measuring and the cache entries are the tuner's.
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
  const std::vector<GemmAlgorithm> algos = be.gemm_algorithms(args, 8);
  res.candidates = static_cast<int>(algos.size());
  if (algos.empty()) throw_backend(op, "cuBLASLt returned no algorithm for this shape");
  auto describe = [&](int idx) { return algos[static_cast<std::size_t>(idx)].detail; };
  if (mode == GemmMode::heuristic) {
    be.set_gemm_algorithm(args, 0);
    res.algo_index = 0;
    res.detail = describe(0);
    return res;
  }
  const std::string shapes = std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n) +
                             (trans_b ? " trans_b" : "") + " " + lc::to_string(args.precision);
  if (auto f = lookup("matmul2d.cublaslt_algo", shapes, dt, DeviceKind::cuda)) {
    const int idx = std::atoi((*f)["choice"].c_str());
    if (idx >= 0 && idx < res.candidates) {
      be.set_gemm_algorithm(args, idx);
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
      be.matmul_with_algorithm(args, i);
      be.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) be.matmul_with_algorithm(args, i);
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
  be.set_gemm_algorithm(args, best_idx);
  res.algo_index = best_idx;
  res.best_us = best;
  res.detail = describe(best_idx);
  store("matmul2d.cublaslt_algo", shapes, dt, DeviceKind::cuda,
        {{"choice", std::to_string(best_idx)},
         {"us", std::to_string(best)},
         {"detail", res.detail},
         {"candidates", std::to_string(res.candidates)}});
  return res;
}

}  // namespace autotune
}  // namespace lc
