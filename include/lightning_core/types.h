// Small value types shared by the public API, the core and every backend.
#pragma once

#include <cstdint>
#include <string>

#include "lightning_core/dtype.h"  // DType, dtype_size, the dtype table

namespace lc {

// Where data lives or an op runs. "auto" is a request (DeviceRequest), never a place.
enum class DeviceKind : std::uint8_t { cpu = 0, cuda = 1, metal = 2 };
enum class DeviceRequest : std::uint8_t { automatic = 0, cpu = 1, cuda = 2, metal = 3 };


// Arithmetic precision of matrix products. fp32 is exact IEEE float32 accumulation;
// tf32 lets tensor cores round operands to 10 mantissa bits (CUDA only; the CPU computes fp32).
enum class Precision : std::uint8_t { fp32 = 0, tf32 = 1, bf16 = 2 };

// Fused epilogue of linear / conv. gelu is the tanh approximation everywhere (CPU and CUDA),
// the same function cuBLASLt's fused GELU epilogue computes, so both backends agree.
// gelu_erf is the exact form 0.5 x (1 + erf(x / sqrt 2)) (torch's approximate="none", BERT's
// "gelu"); only linear takes it (parse_linear_activation): the CPU fuses it into the GEMM's
// epilogue, other devices run the product and then the elementwise gelu_erf (src/ops/matmul.cpp).
enum class Activation : std::uint8_t { none = 0, relu = 1, gelu = 2, gelu_erf = 3 };

const char* to_string(DeviceKind d);
const char* to_string(DeviceRequest d);
inline const char* to_string(DType t) { return dtype_info(t).name; }
const char* to_string(Precision p);
const char* to_string(Activation a);

// Parses "cpu" | "cuda" | "metal" | "auto". Unknown strings raise lc::ValueError naming the
// accepted ones. Availability is not checked here (see runtime.h: require_device).
// A device index ("cuda:1") is rejected here; use parse_device_index where one is allowed.
DeviceRequest parse_device(const std::string& s, const char* op);

// The largest device index a string may name ("cuda:63").
constexpr int kMaxDeviceIndex = 63;

// parse_device plus an optional index: "cuda:1" -> cuda, *index = 1; "cuda" -> cuda,
// *index = -1 (none given: the thread's current device). "cpu:0" is accepted (the CPU is
// device 0); "auto" takes no index. Whether the device exists is checked where it is used.
DeviceRequest parse_device_index(const std::string& s, const char* op, int* index);


}  // namespace lc
