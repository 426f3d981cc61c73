// What every CUDA test file shares: the CUDA backend, and a skip (not a failure) when it is not
// usable here (no driver/GPU, or a build without CUDA), so one test binary runs everywhere.
#pragma once

#include <gtest/gtest.h>

#include "backends/backend.h"

namespace lc::test {
inline lc::Backend& gpu() { return lc::get_backend(lc::DeviceKind::cuda); }
}  // namespace lc::test

#define LC_REQUIRE_CUDA()                                                         \
  do {                                                                            \
    if (!lc::get_backend(lc::DeviceKind::cuda).available())                       \
      GTEST_SKIP() << lc::get_backend(lc::DeviceKind::cuda).unavailable_reason(); \
  } while (0)
