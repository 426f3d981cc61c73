// The auto-tune cache and the GEMM modes: lc.autotune_cache_path(), autotune_cache_clear(),
// autotune_cache_entries(), autotune_lookup/record, device_fingerprint, gemm_prepare, ...
// Cache warnings (corrupt / unwritable file) go through lc::log: Python RuntimeWarnings
// (bind_logging.cpp).
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>


#include "bindings.h"
#include "lightning_core/autotune.h"
#include "lightning_core/policy.h"
#include "lightning_core/errors.h"

namespace lcpy {

namespace {

lc::DeviceKind device_arg(const std::string& s, const char* op) {
  if (s == "cpu") return lc::DeviceKind::cpu;
  if (s == "cuda") return lc::DeviceKind::cuda;
  lc::throw_value(op, "device must be \"cpu\" or \"cuda\", got \"" + s + "\"");
}

nb::dict fields_dict(const lc::autotune::Fields& f) {
  nb::dict d;
  for (const auto& [k, v] : f) d[k.c_str()] = v;
  return d;
}

}  // namespace

void register_autotune(nb::module_& m) {
  m.def("autotune_enabled", &lc::autotune::enabled, "False when LC_AUTOTUNE=0.");
  m.def("autotune_cache_dir", &lc::autotune::cache_dir);
  m.def("autotune_cache_path", &lc::autotune::cache_path,
        "The auto-tune cache file ($LIGHTNING_CORE_CACHE_DIR, $XDG_CACHE_HOME/lightning-core or "
        "~/.cache/lightning-core, + /autotune.json).");
  m.def("autotune_cache_clear", &lc::autotune::clear, "Deletes every cached choice (and the file).");
  m.def("autotune_cache_entries", [] {
    nb::list out;
    for (const auto& e : lc::autotune::entries()) {
      nb::dict d = fields_dict(e.fields);
      d["key"] = e.key;
      out.append(d);
    }
    return out;
  }, "The valid entries of the cache file (this library version), each a dict with its key.");
  m.def("_autotune_reload", &lc::autotune::reload,
        "Forgets the in-memory copy of the cache; the next access re-reads the file.");
  m.def("_cpu_gemm_tunable", &lc::autotune::cpu_gemm_tunable, nb::arg("m"), nb::arg("k"),
        nb::arg("n"),
        "True when a CPU matmul of [m,k]x[k,n] is auto-tuned (op \"cpu_gemm\": blas vs pooled).");
  m.def("autotune_measurement_count", &lc::autotune::measurement_count,
        "How many tuning / calibration measurements this process has run (not cache hits).");
  m.def("device_fingerprint", [](const std::string& device) {
    return lc::device_fingerprint(device_arg(device, "device_fingerprint"));
  }, nb::arg("device") = "cpu");
  m.def("autotune_lookup", [](const std::string& op, const std::string& shapes,
                              const std::string& device, const std::string& dtype) -> nb::object {
    auto f = lc::autotune::lookup(op, shapes, dtype, device_arg(device, "autotune_lookup"));
    if (!f) return nb::none();
    return fields_dict(*f);
  }, nb::arg("op"), nb::arg("shapes"), nb::arg("device") = "cpu", nb::arg("dtype") = "float32",
  "The cached entry for (op, shapes, dtype) on this device and library version, or None.");
  m.def("autotune_record", [](const std::string& op, const std::string& shapes,
                              const std::string& choice, const std::string& device,
                              const std::string& dtype, nb::kwargs extra) {
    lc::autotune::Fields f;
    for (auto [k, v] : extra) f[nb::cast<std::string>(k)] = nb::cast<std::string>(nb::str(v));
    f["choice"] = choice;
    lc::autotune::store(op, shapes, dtype, device_arg(device, "autotune_record"), f);
  }, nb::arg("op"), nb::arg("shapes"), nb::arg("choice"), nb::arg("device") = "cpu",
  nb::arg("dtype") = "float32", nb::arg("extra"),
  "Stores a choice (e.g. a sweep's winner); extra keyword fields are stored as strings.");

  m.def("gemm_modes", [] {
    return std::vector<std::string>{"heuristic", "autotuned", "tf32_fast"};
  }, "The named GEMM modes (docs/autotune.md).");
  m.def("gemm_mode_precision", [](const std::string& mode) {
    return std::string(lc::to_string(
        lc::autotune::gemm_mode_precision(lc::autotune::parse_gemm_mode(mode, "gemm_mode_precision"))));
  }, nb::arg("mode"));
  m.def("gemm_prepare", [](std::int64_t mm, std::int64_t k, std::int64_t n, const std::string& mode,
                           bool trans_b, const std::string& dtype) {
    const auto md = lc::autotune::parse_gemm_mode(mode, "gemm_prepare");
    const lc::DType dt = lc::parse_dtype(dtype, "gemm_prepare");
    lc::autotune::GemmTuneResult r;
    {
      nb::gil_scoped_release nogil;
      r = lc::autotune::prepare_gemm(mm, k, n, md, trans_b, dt);
    }
    nb::dict d;
    d["mode"] = r.mode;
    d["precision"] = lc::to_string(lc::autotune::gemm_mode_precision(md));
    d["algo_index"] = r.algo_index;
    d["candidates"] = r.candidates;
    d["best_us"] = r.best_us;
    d["from_cache"] = r.from_cache;
    d["detail"] = r.detail;
    return d;
  }, nb::arg("m"), nb::arg("k"), nb::arg("n"), nb::arg("mode") = "autotuned",
  nb::arg("trans_b") = false, nb::arg("dtype") = "float32",
  "Makes later CUDA matmuls of this shape and storage dtype (float32, float16, bfloat16) use the "
  "mode's cuBLASLt algorithm (autotuned: timed once per shape and dtype, cached). Use the mode's "
  "precision (gemm_mode_precision) in the policy; 16-bit storage computes the same whatever it is.");
  m.def("gemm_recorded_mode", [](std::int64_t mm, std::int64_t k, std::int64_t n,
                                 const std::string& precision) -> nb::object {
    auto r = lc::autotune::recorded_gemm_mode(mm, k, n, lc::parse_precision(precision, "gemm_recorded_mode"));
    if (!r) return nb::none();
    return nb::str(r->c_str());
  }, nb::arg("m"), nb::arg("k"), nb::arg("n"), nb::arg("precision") = "fp32");
}

}  // namespace lcpy
