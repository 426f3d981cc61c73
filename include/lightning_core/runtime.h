// Runtime queries: which backends this build has and which devices are usable now.
#pragma once

#include <string>
#include <vector>

#include "lightning_core/types.h"

namespace lc {

// "cuda" when a CUDA device is usable, else "cpu" (the original returned "metal" on macOS).
std::string backend_name();
bool cuda_available();
bool metal_available();
bool cuda_compiled();
// Devices usable now, e.g. {"cpu", "cuda"}.
std::vector<std::string> available_devices();
// key=value facts: version, compiled backends, BLAS, CUDA/cuBLAS/cuDNN versions, device names.
std::vector<std::pair<std::string, std::string>> build_info();
// Resolves an explicit request to a device, throwing lc::Unavailable (a ValueError) naming the
// available devices when it cannot run here. "auto" is resolved by placement, not here.
DeviceKind require_device(DeviceRequest r, const char* op);
// Throws lc::ValueError when device `index` of `kind` does not exist ("cuda:3" on a machine with
// two GPUs), naming the devices there are.
void require_device_index(DeviceKind kind, int index, const char* op);
// How many devices of `kind` this process can use (0 when the backend is unavailable; 1 for the CPU).
int device_count(DeviceKind kind);
// The calling thread's current device of `kind` (what "cuda" without an index means) and its setter.
int current_device(DeviceKind kind);
void set_current_device(DeviceKind kind, int index);
// Waits for all queued device work (every backend, every device and stream this process used).
void synchronize();
// Returns the caching allocators' unused blocks to the devices (after a MemoryError, say).
void empty_cache();
// Which attention implementation the CUDA backend uses for float16 / bfloat16 (docs/attention.md):
// "auto" (cuDNN's fused flash attention where cuDNN supports the call and is expected to be the
// faster one, else our kernel), "cudnn" (cuDNN wherever it supports the call), "own" (our
// kernel always). Process-wide; initially the environment's LC_ATTENTION_IMPL (read once on
// first use), else "auto". Throws lc::ValueError for any other name.
void set_attention_impl(const std::string& impl);
std::string attention_impl();
// Tuning / testing hook: which compiled variant of a CUDA attention kernel runs ("tc": the
// tensor-core forward, attention_mha_tc.cu; "decode": flash decoding, attention_decode.cu);
// 0 is the default (docs/attention.md lists them). Process-wide; initially the environment's
// LC_ATTENTION_TC_VARIANT / LC_ATTENTION_DECODE_VARIANT (read once), else 0. Throws
// lc::ValueError for an unknown kernel name or a variant outside [0, count).
void set_attention_kernel_variant(const std::string& kernel, int variant);
int attention_kernel_variant(const std::string& kernel);
// One line per variant of the kernel ("tc" / "decode"), index = variant.
std::vector<std::string> attention_kernel_variant_names(const std::string& kernel);

}  // namespace lc
