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
  }
  return "?";
}

DeviceRequest parse_device(const std::string& s, const char* op) {
  if (s == "auto") return DeviceRequest::automatic;
  if (s == "cpu") return DeviceRequest::cpu;
  if (s == "cuda" || s == "gpu") return DeviceRequest::cuda;
  if (s == "metal" || s == "mps") return DeviceRequest::metal;
  throw_value(op, "unknown device '" + s + "'; use one of \"auto\", \"cpu\", \"cuda\", \"metal\"");
}

}  // namespace lc
