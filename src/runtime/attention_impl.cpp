// The process-wide attention implementation choice (runtime.h: set_attention_impl; backend.h:
// attention_impl_choice). The environment's LC_ATTENTION_IMPL is read once, on first use.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

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

}  // namespace lc
