// Tuners that take backend argument structs (internal; the public side is autotune.h).
#pragma once

#include <string>

#include "backends/backend.h"

namespace lc::autotune {

// CPU conv2d: direct loops vs im2col + GEMM. With `tune` true and LC_AUTOTUNE not 0, the first
// call of a shape times both paths on the real arguments (they write a.out; the caller runs the
// op afterwards anyway) and persists the winner; later calls read it from the cache.
// Returns "direct" or "im2col", or "auto" (the backend's size rule) when tuning is off.
std::string cpu_conv2d_choice(const Conv2dArgs& a, bool tune);
// Runs the conv on the CPU with that choice.
void run_cpu_conv2d(const Conv2dArgs& a, const std::string& choice);

}  // namespace lc::autotune
