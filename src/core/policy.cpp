// ExecutionPolicy parsing, validation and the thread-local scope stack.
#include "lightning_core/policy.h"

#include <mutex>
#include <vector>

#include "lightning_core/errors.h"

namespace lc {

const char* to_string(UploadMode m) {
  switch (m) {
    case UploadMode::always: return "always";
    case UploadMode::once: return "once";
    case UploadMode::never: return "never";
  }
  return "?";
}

const char* to_string(SyncMode m) {
  switch (m) {
    case SyncMode::per_call: return "per_call";
    case SyncMode::batch: return "batch";
    case SyncMode::none: return "none";
  }
  return "?";
}

UploadMode parse_upload(const std::string& s, const char* op) {
  if (s == "always") return UploadMode::always;
  if (s == "once") return UploadMode::once;
  if (s == "never") return UploadMode::never;
  throw_value(op, "unknown upload mode '" + s + "'; use \"always\", \"once\" or \"never\"");
}

SyncMode parse_sync(const std::string& s, const char* op) {
  if (s == "per_call" || s == "call") return SyncMode::per_call;
  if (s == "batch" || s == "batch_end") return SyncMode::batch;
  if (s == "none") return SyncMode::none;
  throw_value(op, "unknown sync mode '" + s + "'; use \"per_call\", \"batch\" or \"none\"");
}

Precision parse_precision(const std::string& s, const char* op) {
  if (s == "fp32" || s == "float32") return Precision::fp32;
  if (s == "tf32") return Precision::tf32;
  if (s == "bf16" || s == "bfloat16") return Precision::bf16;
  throw_value(op, "unknown precision '" + s + "'; use \"fp32\", \"tf32\" or \"bf16\"");
}

Activation parse_activation(const std::string& s, const char* op) {
  if (s == "none" || s.empty()) return Activation::none;
  if (s == "relu") return Activation::relu;
  if (s == "gelu") return Activation::gelu;
  throw_value(op, "unknown activation '" + s + "'; use \"none\", \"relu\" or \"gelu\"");
}

Activation parse_linear_activation(const std::string& s, const char* op) {
  if (s == "gelu_erf") return Activation::gelu_erf;
  if (s == "none" || s.empty() || s == "relu" || s == "gelu") return parse_activation(s, op);
  throw_value(op, "unknown activation '" + s +
                      "'; use \"none\", \"relu\", \"gelu\" (tanh form) or \"gelu_erf\" (exact)");
}

void ExecutionPolicy::validate(const char* op) const {
  if (device_index >= 0 && device == DeviceRequest::automatic)
    throw_value(op, "device=\"auto\" takes no device index; name the device (\"cuda:N\")");
  if (device_index > 0 && device == DeviceRequest::cpu)
    throw_value(op, "the CPU is device 0; use device=\"cpu\"");
  if (device == DeviceRequest::cpu && upload == UploadMode::never)
    throw_value(op, "policy upload=\"never\" only makes sense for a GPU placement; with "
                    "device=\"cpu\" leave upload at \"always\"");
  if (device == DeviceRequest::cpu && !download)
    throw_value(op, "policy download=False keeps results on the GPU, but device=\"cpu\" runs on "
                    "the CPU; use device=\"cuda\" or download=True");
  if (download && sync == SyncMode::none)
    throw_value(op, "policy download=True needs the work finished before the host reads it, "
                    "but sync=\"none\" never waits; use sync=\"per_call\" or \"batch\", or "
                    "download=False");
  if (device == DeviceRequest::cpu && precision == Precision::bf16)
    throw_value(op, "precision=\"bf16\" is a GPU precision; the CPU computes fp32 (use "
                    "precision=\"fp32\" or device=\"cuda\")");
}

std::string ExecutionPolicy::device_string() const {
  std::string s = lc::to_string(device);
  if (device_index >= 0 && device != DeviceRequest::automatic) s += ":" + std::to_string(device_index);
  return s;
}

std::string ExecutionPolicy::to_string() const {
  std::string s;
  s += "device=";
  s += device_string();
  s += " upload=";
  s += lc::to_string(upload);
  s += download ? " download=yes" : " download=no";
  s += " sync=";
  s += lc::to_string(sync);
  s += " precision=";
  s += lc::to_string(precision);
  s += fusion ? " fusion=on" : " fusion=off";
  s += autotune ? " autotune=on" : " autotune=off";
  return s;
}

namespace {
std::mutex g_default_mu;
ExecutionPolicy g_default;            // guarded by g_default_mu for writes
thread_local std::vector<ExecutionPolicy> t_stack;
}  // namespace

const ExecutionPolicy& current_policy() {
  if (!t_stack.empty()) return t_stack.back();
  return g_default;  // reads race only with set_default_policy, which callers serialise
}

ExecutionPolicy default_policy() {
  std::lock_guard<std::mutex> lk(g_default_mu);
  return g_default;
}

void set_default_policy(const ExecutionPolicy& p) {
  p.validate("set_default_policy");
  std::lock_guard<std::mutex> lk(g_default_mu);
  g_default = p;
}

void push_policy(const ExecutionPolicy& p) {
  p.validate("policy");
  t_stack.push_back(p);
}

void pop_policy() {
  if (!t_stack.empty()) t_stack.pop_back();
}

PolicyScope::PolicyScope(const ExecutionPolicy& p) : prev_(nullptr), p_(p) { push_policy(p_); }
PolicyScope::~PolicyScope() { pop_policy(); }

}  // namespace lc
