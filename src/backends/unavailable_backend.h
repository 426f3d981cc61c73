// A backend that is not compiled into this build (or has no device on this platform).
// Every op throws lc::Unavailable with the reason, so each build links and says clearly what
// is missing instead of failing at import.
#pragma once

#include <string>
#include <utility>

#include "backends/backend.h"
#include "lightning_core/errors.h"

namespace lc {

class UnavailableBackend final : public Backend {
 public:
  // `fingerprint`: the auto-tune fingerprint (default "<name>:unavailable").
  UnavailableBackend(DeviceKind kind, const char* name, std::string reason,
                     std::string fingerprint = {})
      : kind_(kind),
        name_(name),
        reason_(std::move(reason)),
        fingerprint_(fingerprint.empty() ? std::string(name) + ":unavailable"
                                         : std::move(fingerprint)) {}

  DeviceKind kind() const override { return kind_; }
  const char* name() const override { return name_; }
  bool available() const override { return false; }
  std::string unavailable_reason() const override { return reason_; }
  std::string device_description() const override { return std::string(name_) + " (unavailable)"; }

  bool compiled() const override { return false; }
  std::string fingerprint() override { return fingerprint_; }
  // Graph capture: the default DirectGraph, whose replays fail like every op here.

  void* alloc(std::size_t) override { fail(); }
  void free(void*) noexcept override {}
  void copy_from_host(void*, const void*, std::size_t) override { fail(); }
  void copy_to_host(void*, const void*, std::size_t) override { fail(); }
  void copy_within(void*, const void*, std::size_t) override { fail(); }
  void synchronize() override {}
  void matmul(const MatmulArgs&) override { fail(); }
  void attention(const AttentionArgs&) override { fail(); }
  void attention_mha(const MhaArgs&) override { fail(); }
  void conv2d(const Conv2dArgs&) override { fail(); }
  void layernorm(const LayerNormArgs&) override { fail(); }
  void softmax(const SoftmaxArgs&) override { fail(); }
  void elementwise(const ElementwiseArgs&) override { fail(); }
  void copy_strided(const StridedCopyArgs&) override { fail(); }
  void embedding(const EmbeddingArgs&) override { fail(); }
  void lstm(const LstmArgs&) override { fail(); }
  std::int64_t first_bad_index(const void*, DType, std::int64_t, std::int64_t) override { fail(); }
  double sum_squares(const void*, DType, std::int64_t) override { fail(); }

 private:
  [[noreturn]] void fail() const { throw Unavailable(std::string("[") + name_ + "] " + reason_); }
  DeviceKind kind_;
  const char* name_;
  std::string reason_;
  std::string fingerprint_;
};

}  // namespace lc
