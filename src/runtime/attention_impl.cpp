// The process-wide attention implementation choice (runtime.h: set_attention_impl; backend.h:
// attention_impl_choice) and the CUDA attention kernels' compiled variant choice
// (set_attention_kernel_variant; attention_kernel_variant_choice). The environment's
// LC_ATTENTION_IMPL, LC_ATTENTION_TC_VARIANT and LC_ATTENTION_DECODE_VARIANT are read once, on
// first use.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "lightning_core/errors.h"
#include "lightning_core/log.h"
#include "lightning_core/runtime.h"

namespace lc {

namespace {

std::atomic<int> g_impl{-1};  // -1: not read yet; else an AttentionImpl
std::once_flag g_env_once;

bool parse(const std::string& s, AttentionImpl* out) {
  if (s == "auto") *out = AttentionImpl::automatic;
  else if (s == "cudnn") *out = AttentionImpl::cudnn;
  else if (s == "own") *out = AttentionImpl::own;
  else return false;
  return true;
}

void read_env() {
  std::call_once(g_env_once, [] {
    AttentionImpl v = AttentionImpl::automatic;
    const char* e = std::getenv("LC_ATTENTION_IMPL");
    if (e && *e && !parse(e, &v))
      log::message_noexcept(log::Level::warning, std::string("LC_ATTENTION_IMPL=\"") + e +
                                 "\" is not one of auto, cudnn, own; using auto");
    int expected = -1;  // a set_attention_impl() that ran first wins
    g_impl.compare_exchange_strong(expected, static_cast<int>(v));
  });
}

}  // namespace

AttentionImpl attention_impl_choice() noexcept {
  int v = g_impl.load(std::memory_order_relaxed);
  if (v < 0) {
    try {
      read_env();
    } catch (...) {
    }
    v = g_impl.load(std::memory_order_relaxed);
  }
  return v < 0 ? AttentionImpl::automatic : static_cast<AttentionImpl>(v);
}

void set_attention_impl(const std::string& impl) {
  AttentionImpl v;
  if (!parse(impl, &v))
    throw_value("set_attention_impl", "impl must be \"auto\", \"cudnn\" or \"own\", got \"" +
                                          impl + "\"");
  read_env();  // the environment is read (and forgotten) first, so it cannot override this later
  g_impl.store(static_cast<int>(v), std::memory_order_relaxed);
}

std::string attention_impl() {
  switch (attention_impl_choice()) {
    case AttentionImpl::cudnn: return "cudnn";
    case AttentionImpl::own: return "own";
    case AttentionImpl::automatic: break;
  }
  return "auto";
}

// ---- compiled kernel variants (backend.h: attention_kernel_variant_choice) ----

namespace {

std::atomic<int> g_variant[2] = {-1, -1};  // per AttentionKernel; -1: environment not read yet
std::once_flag g_variant_env_once[2];

constexpr const char* kVariantEnv[2] = {"LC_ATTENTION_TC_VARIANT", "LC_ATTENTION_DECODE_VARIANT"};
constexpr int kVariantCount[2] = {kAttentionTcVariants, kAttentionDecodeVariants};

// What each index means (attention_mha_tc.cu's kTcVariants and attention_decode.cu's
// kDecodeVariants implement them, in this order; docs/attention.md explains them).
const char* const kTcVariantNames[kAttentionTcVariants] = {
    "bq64 w4 bk64 stages2, sk<=128 and d<=64: bk128 stages1 (default)",
    "bq64 w4 bk64 stages2 launch_bounds(128,4) (d<=64)",
    "bq128 w8 bk64 stages2 launch_bounds(256,1)",
    "bq64 w4 bk64 stages3",
    "bq64 w4 bk32 stages2 launch_bounds(128,1)",
    "bq128 w8 bk128 stages1 launch_bounds(256,1) (whole K/V of S<=128 in one tile; d<=64)",
    "bq64 w4 bk128 stages1 (d<=64)",
};
const char* const kDecodeVariantNames[kAttentionDecodeVariants] = {
    "default: tensor cores w4 bk64 stages3 for 16-bit calls they take, else variant 7",
    "w4 u1 launch_bounds(128) splits x1 (the kernel before the variants: 168 regs)",
    "w4 u1 splits x2",
    "w4 u/4 launch_bounds(128,4) splits x1 (<=8 blocks/SM)",
    "w8 u/4 launch_bounds(256,2) splits x1",
    "w4 u1 splits x1 min chunk 256 keys",
    "w4 u1 splits x4",
    "cuda cores w4 u1 launch_bounds(128,1) splits x1 (the default before the tensor-core kernel)",
    "tensor cores w4 bk64 stages3, <= 1 block per SM (fewer, longer key chunks)",
    "tensor cores w4 bk64 stages3, a tile's K rows requested before its V rows",
    "tensor cores w8 bk128 stages2",
    "tensor cores w4 bk64 stages3, cp.async with an L2::256B prefetch hint",
    "tensor cores w4 bk64 stages3, K rows before V rows and the L2::256B hint",
};

int kernel_index(const std::string& kernel, const char* op) {
  if (kernel == "tc") return 0;
  if (kernel == "decode") return 1;
  throw_value(op, "kernel must be \"tc\" or \"decode\", got \"" + kernel + "\"");
}

void read_variant_env(int k) {
  std::call_once(g_variant_env_once[k], [k] {
    int v = 0;
    const char* e = std::getenv(kVariantEnv[k]);
    if (e && *e) {
      char* end = nullptr;
      const long x = std::strtol(e, &end, 10);
      if (end && *end == '\0' && x >= 0 && x < kVariantCount[k]) {
        v = static_cast<int>(x);
      } else {
        log::message_noexcept(log::Level::warning,
                              std::string(kVariantEnv[k]) + "=\"" + e + "\" is not a variant in [0, " +
                                  std::to_string(kVariantCount[k]) + "); using 0");
      }
    }
    int expected = -1;  // a set_attention_kernel_variant() that ran first wins
    g_variant[k].compare_exchange_strong(expected, v);
  });
}

}  // namespace

int attention_kernel_variant_choice(AttentionKernel kernel) noexcept {
  const int k = kernel == AttentionKernel::tc ? 0 : 1;
  int v = g_variant[k].load(std::memory_order_relaxed);
  if (v < 0) {
    try {
      read_variant_env(k);
    } catch (...) {
    }
    v = g_variant[k].load(std::memory_order_relaxed);
  }
  return v < 0 ? 0 : v;
}

void set_attention_kernel_variant(const std::string& kernel, int variant) {
  const int k = kernel_index(kernel, "set_attention_kernel_variant");
  if (variant < 0 || variant >= kVariantCount[k])
    throw_value("set_attention_kernel_variant",
                "variant of \"" + kernel + "\" must be in [0, " + std::to_string(kVariantCount[k]) +
                    "), got " + std::to_string(variant));
  read_variant_env(k);  // the environment is read (and forgotten) first
  g_variant[k].store(variant, std::memory_order_relaxed);
}

int attention_kernel_variant(const std::string& kernel) {
  const int k = kernel_index(kernel, "attention_kernel_variant");
  return attention_kernel_variant_choice(k == 0 ? AttentionKernel::tc : AttentionKernel::decode);
}

std::vector<std::string> attention_kernel_variant_names(const std::string& kernel) {
  const int k = kernel_index(kernel, "attention_kernel_variant_names");
  std::vector<std::string> out;
  for (int i = 0; i < kVariantCount[k]; ++i)
    out.emplace_back(k == 0 ? kTcVariantNames[i] : kDecodeVariantNames[i]);
  return out;
}

}  // namespace lc
