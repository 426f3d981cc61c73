// ExecutionPolicy: the caller's per-call choice of where an op runs and what it may cost
// (upload, download, synchronisation, precision, fusion, auto-tuning). It is a plain value,
// passed per call, set as the process default, or scoped (PolicyScope / `with lc.policy(...)`).
#pragma once

#include <string>

#include "lightning_core/types.h"

namespace lc {

enum class UploadMode : std::uint8_t { always = 0, once = 1, never = 2 };
enum class SyncMode : std::uint8_t { per_call = 0, batch = 1, none = 2 };

struct ExecutionPolicy {
  DeviceRequest device = DeviceRequest::automatic;
  // always: host inputs are uploaded on every call. once: sessions upload at start only.
  // never: host inputs are an error on a GPU placement (the data must already be resident).
  UploadMode upload = UploadMode::always;
  // true: results land in host memory. false: results stay on the device (a device Tensor).
  bool download = true;
  // per_call: the call returns with its work complete. batch: the caller syncs at batch end
  // (lc.synchronize() / session.sync()). none: never implicitly synchronised.
  SyncMode sync = SyncMode::per_call;
  Precision precision = Precision::fp32;
  bool fusion = true;
  bool autotune = true;
  // The GPU to run on ("cuda:1" -> 1); -1: the device of the op's resident inputs, else this
  // thread's current device (lc.set_device; 0 unless changed). Ignored on the CPU.
  std::int8_t device_index = -1;

  // Throws lc::ValueError naming `op` for combinations that cannot be honoured.
  void validate(const char* op) const;
  std::string to_string() const;  // "device=auto upload=always download=yes sync=per_call ..."
  std::string device_string() const;  // "auto", "cpu", "cuda", "cuda:1"
  bool operator==(const ExecutionPolicy&) const = default;
};

const char* to_string(UploadMode m);
const char* to_string(SyncMode m);
UploadMode parse_upload(const std::string& s, const char* op);
SyncMode parse_sync(const std::string& s, const char* op);
Precision parse_precision(const std::string& s, const char* op);
Activation parse_activation(const std::string& s, const char* op);
// parse_activation plus "gelu_erf" (the exact GELU): linear's activation argument.
Activation parse_linear_activation(const std::string& s, const char* op);

// The policy an op uses when the caller passes none: the innermost PolicyScope of this thread,
// else the process default. (Python's `with lc.policy(...)` does not use this stack: it lives in
// a contextvars.ContextVar, per asyncio task, that the Python bindings read first; see
// python/src/convert.cpp resolve_policy.)
const ExecutionPolicy& current_policy();
ExecutionPolicy default_policy();
void set_default_policy(const ExecutionPolicy& p);

// RAII: makes `p` current on this thread until destroyed (nests).
class PolicyScope {
 public:
  explicit PolicyScope(const ExecutionPolicy& p);
  ~PolicyScope();
  PolicyScope(const PolicyScope&) = delete;
  PolicyScope& operator=(const PolicyScope&) = delete;

 private:
  const ExecutionPolicy* prev_;
  ExecutionPolicy p_;
};

// Push/pop without RAII (for callers that cannot scope a PolicyScope object).
void push_policy(const ExecutionPolicy& p);
void pop_policy();

}  // namespace lc
