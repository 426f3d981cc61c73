// Runtime queries: backend_name, cuda_available, metal_available, build_info, synchronize,
// and the placement report of the last op (explain).
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "backends/backend.h"
#include "runtime/op_runner.h"
#include "lightning_core/ops.h"
#include "lightning_core/runtime.h"

namespace lcpy {

void register_runtime(nb::module_& m) {
  m.def("backend_name", &lc::backend_name,
        "\"cuda\" when a CUDA GPU is usable, else \"cpu\".");
  m.def("cuda_available", &lc::cuda_available);
  m.def("metal_available", &lc::metal_available,
        "Always False on this platform (the Metal backend exists only on macOS).");
  m.def("available_devices", &lc::available_devices);
  m.def("build_info", [] {
    nb::dict d;
    for (const auto& [k, v] : lc::build_info()) d[k.c_str()] = v;
    return d;
  }, "Compiled backends, versions and device descriptions.");
  m.def("synchronize", [] {
    nb::gil_scoped_release nogil;
    lc::synchronize();
  }, "Waits for all queued device work: every stream of every GPU this process used.");
  m.def("empty_cache", [] {
    nb::gil_scoped_release nogil;
    lc::empty_cache();
  }, "Returns cached, unused device memory to the driver.");
  m.def("memory_info", [](const std::string& device) {
    int index = -1;
    const lc::DeviceKind kind =
        lc::require_device(lc::parse_device_index(device, "memory_info", &index), "memory_info");
    if (index >= 0 && kind != lc::DeviceKind::cpu) lc::require_device_index(kind, index, "memory_info");
    lc::DeviceScope scope(kind, index);
    const lc::MemoryInfo mi = lc::get_backend(kind).memory_info();
    nb::dict d;
    d["device"] = lc::to_string(kind);
    d["device_index"] = kind == lc::DeviceKind::cpu ? 0 : lc::current_device(kind);
    d["known"] = mi.known;
    d["free_bytes"] = mi.free;
    d["total_bytes"] = mi.total;
    d["in_use_bytes"] = mi.in_use;
    d["cached_bytes"] = mi.cached;
    return d;
  }, nb::arg("device") = "cuda",
     "Device memory of one GPU (\"cuda\" = the current one, or \"cuda:N\"): free/total, bytes "
     "in live tensors and in its allocator's cache.");
  m.def("_set_vendor_lib_dirs", [](const std::vector<std::string>& dirs) {
    lc::get_backend(lc::DeviceKind::cuda).set_library_dirs(dirs);
  }, nb::arg("dirs"),
     "Directories searched for cuBLASLt / cuDNN / the CUDA runtime after the loader's own "
     "search (python/lightning_core/_vendor_dirs.py passes NVIDIA's pip wheels' lib folders).");
  m.def("_set_explain", &lc::set_explain);
  m.def("last_op_report", [] {
    const lc::OpReport& r = lc::last_op_report();
    nb::dict d;
    d["op"] = r.op;
    d["device"] = lc::to_string(r.device);
    d["path"] = r.path;
    d["reason"] = r.reason;
    d["impl"] = r.impl;
    return d;
  }, "Where the last op on this thread ran, (with explain on) why, and which implementation "
     "the backend chose where it has several (\"impl\": CUDA attention \"cudnn\" / \"own\").");
  m.def("set_attention_impl", &lc::set_attention_impl, nb::arg("impl"),
        "Which implementation CUDA attention uses for float16/bfloat16: \"auto\" (cuDNN's fused "
        "flash attention where supported and expected to be faster, else our kernel), \"cudnn\" "
        "(cuDNN wherever it supports the call), \"own\" (our kernel). Process-wide; the "
        "initial value is the environment's LC_ATTENTION_IMPL, else \"auto\". See "
        "docs/attention.md.");
  m.def("attention_impl", &lc::attention_impl,
        "The current attention implementation choice (set_attention_impl).");
  // Tuning / testing hooks (benchmarks/python/attention_sweep.py, the variant tests): which
  // compiled variant of the CUDA attention kernels runs ("tc" / "decode"; 0 = default).
  m.def("_set_attention_kernel_variant", &lc::set_attention_kernel_variant, nb::arg("kernel"),
        nb::arg("variant"));
  m.def("_attention_kernel_variant", &lc::attention_kernel_variant, nb::arg("kernel"));
  m.def("_attention_kernel_variant_names", &lc::attention_kernel_variant_names, nb::arg("kernel"));
}

}  // namespace lcpy
