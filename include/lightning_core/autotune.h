// The auto-tune cache: per-shape choices (kernel, algorithm, mode, CPU/GPU calibration) measured
// once and persisted as versioned JSON (docs/autotune.md).
//
// File: $LIGHTNING_CORE_CACHE_DIR/autotune.json, else $XDG_CACHE_HOME/lightning-core/autotune.json,
// else ~/.cache/lightning-core/autotune.json. Every store is a read-merge-write under an
// exclusive flock on autotune.json.lock (entries of other processes survive; the writer's own
// key wins), written atomically (temp file + rename; readers take no lock). A corrupt,
// unreadable, wrong-schema or unwritable file produces a warning (never an exception) and the
// cache is rebuilt from scratch on the next store. LC_AUTOTUNE=0 disables lookups, stores and
// measurements (defaults are used).
//
// Every entry is keyed by op, shapes, dtype, the device fingerprint (device name, compute
// capability, SM count, driver, CUDA runtime, cuBLASLt/cuDNN versions; or CPU model, threads
// and BLAS) and the library version, so a new driver, GPU or release never reuses stale choices.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lightning_core/types.h"

namespace lc {

// A stable description of the device an entry was measured on (see above). The CUDA one is
// implemented in src/backends/cuda/fingerprint.cpp (src/backends/no_cuda/ without CUDA).
std::string device_fingerprint(DeviceKind d);
std::string cpu_fingerprint();
std::string cuda_fingerprint();  // "cuda:unavailable (...)" when no device is usable

namespace autotune {

constexpr int kSchemaVersion = 1;

using Fields = std::map<std::string, std::string>;

struct Entry {
  std::string key;
  Fields fields;  // always: op, shapes, dtype, device, library_version, choice
};

// False when LC_AUTOTUNE=0 (read on every call, so tests may flip it).
bool enabled();
std::string cache_dir();
std::string cache_path();

// "op|shapes|dtype|fingerprint|library_version".
std::string make_key(const std::string& op, const std::string& shapes, const std::string& dtype,
                     const std::string& fingerprint);

// Lookup / store under the full key. store() merges with the file under the lock and rewrites
// it atomically; failures warn.
std::optional<Fields> lookup(const std::string& key);
void store(const std::string& key, const std::string& op, const std::string& shapes,
           const std::string& dtype, const std::string& fingerprint, const Fields& extra);
// Convenience: key built from the parts, device fingerprint from `device`.
std::optional<Fields> lookup(const std::string& op, const std::string& shapes,
                             const std::string& dtype, DeviceKind device);
void store(const std::string& op, const std::string& shapes, const std::string& dtype,
           DeviceKind device, const Fields& extra);

std::vector<Entry> entries();  // valid entries of the current file (this library version)
void clear();                  // empties the cache and deletes the file
void reload();                 // forgets the in-memory copy; the next access re-reads the file

// Warnings (corrupt/unwritable file) go to this handler; the default prints to std::cerr.
// Handlers are called without any cache lock held.
void set_warning_handler(std::function<void(const std::string&)> h);

// Changes whenever the in-memory cache may answer differently: store(), clear(), reload(), or a
// different file loaded (the cache directory changed). Tuners that keep a faster in-process
// memo of their choices (the CPU GEMM tuner) drop it when this moves.
std::uint64_t generation();

// Counters for tests: how many measurements (tuning runs) this process has performed.
std::uint64_t measurement_count();
void note_measurement();

// ---- tuners --------------------------------------------------------------------------------

// The CPU conv2d tuner (direct vs im2col) and the CPU GEMM tuner (op "cpu_gemm": one
// OpenBLAS-threaded sgemm vs single-threaded sgemm tiles in our pool) are the CPU backend's
// (src/backends/cpu/tune.cpp, reached through Backend::tune_conv2d / tune_matmul).
// True when matmul2d / linear of this shape on the CPU is tuned (measured once, persisted):
// BLAS present, >= 2 threads and 2^19 <= m*k*n <= 2^31 (docs/autotune.md).
bool cpu_gemm_tunable(std::int64_t m, std::int64_t k, std::int64_t n);

// GEMM modes for large matrix products on CUDA (docs/autotune.md):
//   heuristic  cuBLASLt's top heuristic candidate, fp32 exact
//   autotuned  times the top-N heuristic candidates once per shape, persists the winner, fp32
//   tf32_fast  like autotuned with TF32 tensor cores (precision="tf32"; not bit-exact fp32)
enum class GemmMode : std::uint8_t { heuristic = 0, autotuned = 1, tf32_fast = 2 };
const char* to_string(GemmMode m);
GemmMode parse_gemm_mode(const std::string& s, const char* op);
Precision gemm_mode_precision(GemmMode m);

struct GemmTuneResult {
  std::string mode;
  int algo_index = 0;       // index into cuBLASLt's heuristic list (what matmul() now uses)
  int candidates = 0;       // how many were listed (timed for autotuned/tf32_fast)
  double best_us = -1;      // measured time of the winner (-1 when not measured here)
  bool from_cache = false;  // the winner came from the cache file
  std::string detail;       // algo id / tile / stages / split-K of the winner
};
// Prepares the CUDA backend so that later matmul2d calls of [m,k]x[k,n] (trans_b for linear's
// layout) at the mode's precision and in storage `dtype` (float32, float16, bfloat16; the
// cuBLASLt plans and the cache entries are per dtype) use the mode's algorithm. Throws
// lc::Unavailable without CUDA, lc::TypeError for another dtype.
GemmTuneResult prepare_gemm(std::int64_t m, std::int64_t k, std::int64_t n, GemmMode mode,
                            bool trans_b = false, DType dtype = DType::f32);
// The mode recorded by large_gemm_auto_sweep.py for this shape and precision, if any.
std::optional<std::string> recorded_gemm_mode(std::int64_t m, std::int64_t k, std::int64_t n,
                                              Precision p);

}  // namespace autotune
}  // namespace lc
