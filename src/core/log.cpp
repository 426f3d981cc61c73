#include "lightning_core/log.h"

#include <atomic>
#include <iostream>
#include <memory>
#include <mutex>

namespace lc::log {

namespace {
std::mutex g_mu;
std::shared_ptr<const Handler> g_handler;  // replaced whole: a running handler keeps its copy
std::atomic<int> g_threshold{static_cast<int>(Level::warning)};

std::shared_ptr<const Handler> handler() {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_handler;
}

void to_stderr(Level lv, const std::string& text) {
  const char* tag = lv >= Level::error ? "error" : lv >= Level::warning ? "warning"
                  : lv >= Level::info ? "info" : "debug";
  std::cerr << "lightning_core: " << tag << ": " << text << std::endl;
}
}  // namespace

void set_handler(Handler h) {
  auto p = h ? std::make_shared<const Handler>(std::move(h)) : nullptr;
  std::lock_guard<std::mutex> lk(g_mu);
  g_handler = std::move(p);
}

void set_threshold(Level lv) { g_threshold.store(static_cast<int>(lv), std::memory_order_relaxed); }

bool enabled(Level lv) {
  return static_cast<int>(lv) >= g_threshold.load(std::memory_order_relaxed);
}

void message(Level lv, const std::string& text) {
  // Warnings always reach the handler (Python's warning filters decide); other levels only
  // from the threshold up.
  if (lv < Level::warning && !enabled(lv)) return;
  if (auto h = handler()) {
    (*h)(lv, text);
    return;
  }
  to_stderr(lv, text);
}

void message_noexcept(Level lv, const std::string& text) noexcept {
  try {
    message(lv, text);
  } catch (...) {
    try {
      to_stderr(lv, text);
    } catch (...) {
    }
  }
}

}  // namespace lc::log
