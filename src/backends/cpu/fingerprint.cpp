// Device fingerprint of the CPU for auto-tune cache keys (Backend::fingerprint, behind
// autotune.h's cpu_fingerprint / device_fingerprint): the CPU model, the worker thread count,
// the GEMM engine and the SIMD level. Any of these changing invalidates the CPU choices.
#include <cstdio>
#include <cstring>
#include <string>

#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"

namespace lc::cpu {

std::string fingerprint() {
  // C stdio rather than iostreams: this runs inside processes that also load other C++
  // runtimes (torch), where as little shared C++ library state as possible is touched.
  static const std::string fp = [] {
    std::string model = "unknown-cpu";
    if (std::FILE* f = std::fopen("/proc/cpuinfo", "r")) {
      char buf[512];
      while (std::fgets(buf, sizeof buf, f)) {
        if (std::strncmp(buf, "model name", 10) != 0) continue;
        const char* c = std::strchr(buf, ':');
        if (c) {
          ++c;
          while (*c == ' ' || *c == '\t') ++c;
          std::size_t n = std::strlen(c);
          while (n > 0 && (c[n - 1] == '\n' || c[n - 1] == '\r' || c[n - 1] == ' ')) --n;
          if (n > 0) model.assign(c, n);
        }
        break;
      }
      std::fclose(f);
    }
    return "cpu:" + model + ";threads=" + std::to_string(num_threads()) +
           ";gemm=" + gemm_engine() + ";isa=" + std::to_string(gemm_isa_count());
  }();
  return fp;
}

}  // namespace lc::cpu
