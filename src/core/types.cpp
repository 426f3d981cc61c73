// String forms of the shared enums, and device-string parsing.
#include "lightning_core/types.h"

#include "lightning_core/errors.h"

namespace lc {

const char* to_string(DeviceKind d) {
  switch (d) {
    case DeviceKind::cpu: return "cpu";
    case DeviceKind::cuda: return "cuda";
    case DeviceKind::metal: return "metal";
  }
  return "?";
}

const char* to_string(DeviceRequest d) {
  switch (d) {
    case DeviceRequest::automatic: return "auto";
    case DeviceRequest::cpu: return "cpu";
    case DeviceRequest::cuda: return "cuda";
    case DeviceRequest::metal: return "metal";
  }
  return "?";
}


const char* to_string(Precision p) {
  switch (p) {
    case Precision::fp32: return "fp32";
    case Precision::tf32: return "tf32";
    case Precision::bf16: return "bf16";
  }
  return "?";
}

const char* to_string(Activation a) {
  switch (a) {
    case Activation::none: return "none";
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_erf: return "gelu_erf";
  }
  return "?";
}

DeviceRequest parse_device(const std::string& s, const char* op) {
  if (s == "auto") return DeviceRequest::automatic;
  if (s == "cpu") return DeviceRequest::cpu;
  if (s == "cuda" || s == "gpu") return DeviceRequest::cuda;
  if (s == "metal" || s == "mps") return DeviceRequest::metal;
  if (s.find(':') != std::string::npos)
    throw_value(op, "device '" + s + "' names a device index, which is not accepted here; use \"" +
                        s.substr(0, s.find(':')) + "\"");
  throw_value(op, "unknown device '" + s + "'; use one of \"auto\", \"cpu\", \"cuda\", \"cuda:N\", \"metal\"");
}

DeviceRequest parse_device_index(const std::string& s, const char* op, int* index) {
  *index = -1;
  const std::size_t colon = s.find(':');
  if (colon == std::string::npos) return parse_device(s, op);
  const std::string kind = s.substr(0, colon), num = s.substr(colon + 1);
  const DeviceRequest r = parse_device(kind, op);
  const auto bad = [&](const std::string& why) {
    throw_value(op, "device '" + s + "': " + why + "; write \"cuda\" (the current device) or \"cuda:N\" with N = 0, 1, ...");
  };
  if (r == DeviceRequest::automatic) bad("\"auto\" takes no device index");
  if (num.empty() || num.size() > 2) bad("the index must be a number from 0 to " + std::to_string(kMaxDeviceIndex));
  int v = 0;
  for (char c : num) {
    if (c < '0' || c > '9') bad("the index must be a number from 0 to " + std::to_string(kMaxDeviceIndex));
    v = v * 10 + (c - '0');
  }
  if (v > kMaxDeviceIndex) bad("the index must be a number from 0 to " + std::to_string(kMaxDeviceIndex));
  if (r == DeviceRequest::cpu && v != 0) bad("the CPU is device 0 (\"cpu\" or \"cpu:0\")");
  *index = v;
  return r;
}

}  // namespace lc
