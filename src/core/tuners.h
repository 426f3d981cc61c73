// Tuners that take backend argument structs (internal; the public side is autotune.h).
#pragma once

#include <string>

#include "backends/backend.h"
#include "backends/cpu/cpu_ops.h"

namespace lc::autotune {

// CPU conv2d: direct loops vs im2col + GEMM. With `tune` true and LC_AUTOTUNE not 0, the first
// call of a shape times both paths on the real arguments (they write a.out; the caller runs the
// op afterwards anyway) and persists the winner; later calls read it from the cache.
// Returns "direct" or "im2col", or "auto" (the backend's size rule) when tuning is off.
std::string cpu_conv2d_choice(const Conv2dArgs& a, bool tune);
// Runs the conv on the CPU with that choice.
void run_cpu_conv2d(const Conv2dArgs& a, const std::string& choice);

// CPU GEMM (matmul2d / linear on the CPU): `blas` (one cblas_sgemm with OpenBLAS's own
// threads) vs `pooled` (single-threaded sgemm tiles in our pool). With `tune` true, LC_AUTOTUNE
// not 0 and the shape in cpu::gemm_tunable() (BLAS, >= 2 threads, 2^19 <= m*n*k <= 2^31),
// the first call of a shape times both on the real arguments (they write a.out; the
// caller runs the op afterwards anyway) and persists the winner as op "cpu_gemm"; later calls
// are answered from an in-process memo (no string building, no file access), then from the
// cache. Returns GemmPath::blas / pooled, or GemmPath::automatic (cpu::gemm_default_path, the
// built-in rule) when not tuned: outside the window (tiny shapes cost one multiply and compare
// here), tuning off, or policy autotune=false.
cpu::GemmPath cpu_gemm_choice(const MatmulArgs& a, bool tune);
// Runs the matmul (GEMM + bias/activation epilogue) on the CPU with that choice.
void run_cpu_matmul(const MatmulArgs& a, cpu::GemmPath choice);

}  // namespace lc::autotune
