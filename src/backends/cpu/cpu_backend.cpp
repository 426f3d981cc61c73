// The CPU backend object: host memory, memcpy transfers, and the kernels in this folder.
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/backend.h"
#include "backends/cpu/cpu_ops.h"
#include "backends/cpu/thread_pool.h"
#include "lightning_core/errors.h"
#include "lightning_core/sizes.h"

namespace lc {
namespace {

// 64 B: a cache line, and the widest vector load (AVX-512), so kernels never straddle lines.
constexpr std::size_t kAlignment = 64;

const char* arch_name() {
#if defined(__x86_64__) || defined(_M_X64)
  return "x86_64";
#elif defined(__aarch64__) || defined(_M_ARM64)
  return "aarch64";
#else
  return "unknown-arch";
#endif
}

const char* isa_name() {
  switch (cpu::gemm_isa_count()) {
    case 3: return "AVX-512";
    case 2: return "AVX2+FMA";
    default: return "baseline SIMD";
  }
}

class CpuBackend final : public Backend {
 public:
  DeviceKind kind() const override { return DeviceKind::cpu; }
  const char* name() const override { return "cpu"; }
  bool available() const override { return true; }
  std::string unavailable_reason() const override { return {}; }
  std::string device_description() const override {
    return std::string(arch_name()) + " CPU (" + isa_name() + "), " +
           std::to_string(cpu::num_threads()) + " threads, GEMM: " + cpu::gemm_engine();
  }

  std::string fingerprint() override { return cpu::fingerprint(); }
  // Graph capture: the default DirectGraph (replays run the work; nothing to record on a CPU).

  void* alloc(std::size_t bytes) override {
    // posix_memalign accepts any size (aligned_alloc wants a multiple of the alignment) and
    // returns a unique, freeable pointer for 0 bytes too; rounding 0 up to one line keeps
    // the result non-null everywhere so callers can tell success from failure.
    // More than the machine's RAM + swap can never be used: refuse it here. With memory
    // overcommit on (containers, VMs) the allocation would succeed and the process would be
    // killed when the pages are touched, instead of raising MemoryError.
    static const std::size_t limit = [] {
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      struct sysinfo si {};
      std::size_t swap = 0;
      if (sysinfo(&si) == 0) swap = static_cast<std::size_t>(si.totalswap) * si.mem_unit;
      if (pages <= 0 || page <= 0) return static_cast<std::size_t>(-1);
      return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) + swap;
    }();
    if (bytes > limit)
      throw_oom("cpu.alloc", "cannot allocate " + std::to_string(bytes) + " bytes of host memory: "
                             "more than this machine has (" + std::to_string(limit) + " bytes "
                             "of RAM + swap); use smaller shapes");
    check_host_alloc("cpu.alloc", bytes);  // large requests: what can be backed now
    void* p = nullptr;
    const std::size_t n = bytes == 0 ? kAlignment : bytes;
    if (posix_memalign(&p, kAlignment, n) != 0 || p == nullptr) {
      throw_oom("cpu.alloc", "could not allocate " + std::to_string(bytes) +
                                 " bytes of host memory; free some tensors or use smaller "
                                 "shapes");
    }
    return p;
  }
  void free(void* p) noexcept override { std::free(p); }

  void copy_from_host(void* dst, const void* src, std::size_t bytes) override {
    copy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    copy(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, std::size_t bytes) override {
    copy(dst, src, bytes);
  }
  void synchronize() override {}  // every CPU op completes before it returns

  void matmul(const MatmulArgs& a) override { cpu::matmul(a); }
  void attention(const AttentionArgs& a) override { cpu::attention(a); }
  void attention_mha(const MhaArgs& a) override { cpu::attention_mha(a); }
  void attention_mha_backward(const MhaBackwardArgs& a) override {
    cpu::attention_mha_backward(a);
  }
  void conv2d(const Conv2dArgs& a) override { cpu::conv2d(a); }
  // Tuned execution (tune.cpp): choice = the cpu::GemmPath / cpu::ConvPath value, 0 = automatic.
  int tune_matmul(const MatmulArgs& a, bool tune) override {
    return static_cast<int>(cpu::tuned_gemm_path(a, tune));
  }
  void matmul_tuned(const MatmulArgs& a, int choice) override {
    cpu::matmul_with(static_cast<cpu::GemmPath>(choice), a);
  }
  int tune_conv2d(const Conv2dArgs& a, bool tune) override {
    return static_cast<int>(cpu::tuned_conv_path(a, tune));
  }
  void conv2d_tuned(const Conv2dArgs& a, int choice) override {
    cpu::conv2d_with(static_cast<cpu::ConvPath>(choice), a);
  }
  void layernorm(const LayerNormArgs& a) override { cpu::layernorm(a); }
  void softmax(const SoftmaxArgs& a) override { cpu::softmax(a); }
  void elementwise(const ElementwiseArgs& a) override { cpu::elementwise(a); }
  void elementwise_program(const EwProgramArgs& a) override { cpu::elementwise_program(a); }
  void copy_strided(const StridedCopyArgs& a) override { cpu::copy_strided(a); }
  void embedding(const EmbeddingArgs& a) override { cpu::embedding(a); }
  void lstm(const LstmArgs& a) override { cpu::lstm(a); }
  std::int64_t first_bad_index(const void* ids, DType t, std::int64_t n, std::int64_t v) override {
    return cpu::first_bad_index(ids, t, n, v);
  }
  double sum_squares(const void* x, DType t, std::int64_t n) override {
    return cpu::sum_squares(x, t, n);
  }

 private:
  static void copy(void* dst, const void* src, std::size_t bytes) {
    // memmove: the core may copy between views of one buffer, and bytes==0 with null
    // pointers must be a no-op (memcpy with null is UB even for 0 bytes).
    if (bytes != 0 && dst != src) std::memmove(dst, src, bytes);
  }
};

}  // namespace

Backend& cpu_backend_instance() {
  static CpuBackend instance;
  return instance;
}

}  // namespace lc
