// The native half of lc.distributed (python/lightning_core/distributed.py holds the API, the
// environment parsing, the TCP rendezvous and the argument checks): NCCL's group id, the
// communicators of the backend seam (src/backends/collective.h) and the work handles that wait
// with a timeout (src/runtime/distributed.h). Everything is private (underscore names); the
// tensors arrive validated, and are re-checked here only for what would crash a kernel.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "bindings.h"
#include "lightning_core/errors.h"
#include "lightning_core/tensor.h"
#include "runtime/distributed.h"

namespace lcpy {

namespace {

struct PyComm {
  std::shared_ptr<lc::Communicator> comm;
};

// A tensor a collective may read or write on this communicator's device, as a raw pointer.
void* buffer(const PyComm& c, const lc::Tensor& t, const char* op, const char* name,
             bool write) {
  const int dev = c.comm->device();
  if (t.device() != lc::DeviceKind::cuda || t.device_index() != dev)
    lc::throw_value(op, std::string(name) + " is on " + lc::to_string(t.device()) + ":" +
                            std::to_string(t.device_index()) + ", this rank's communicator on cuda:" +
                            std::to_string(dev) + "; move it there (t.to(\"cuda:" +
                            std::to_string(dev) + "\"))");
  if (!t.is_contiguous())
    lc::throw_value(op, std::string(name) + " " + t.shape_str() +
                            " is not contiguous; pass t.contiguous()");
  if (write && !t.writable())
    lc::throw_value(op, std::string(name) + " is read-only; pass a writable tensor");
  return t.data();
}

lc::ReduceOp reduce_op(const std::string& s, const char* op) {
  if (s == "sum") return lc::ReduceOp::sum;
  if (s == "avg") return lc::ReduceOp::avg;
  if (s == "max") return lc::ReduceOp::max;
  if (s == "min") return lc::ReduceOp::min;
  lc::throw_value(op, "op=\"" + s + "\" is not a reduction; use \"sum\", \"avg\", \"max\" or \"min\"");
}

lc::Backend& cuda() { return lc::get_backend(lc::DeviceKind::cuda); }

}  // namespace

void register_distributed(nb::module_& m) {
  m.def("_dist_unique_id", [] {
    const std::string id = cuda().collective_unique_id();
    return nb::bytes(id.data(), id.size());
  }, "A fresh NCCL unique id (128 bytes) for distributed.init's rendezvous (loads NCCL).");

  m.def("_dist_library_info", [](bool load) {
    const lc::CollectiveLibraryInfo i = cuda().collective_library_info(load);
    nb::dict d;
    d["name"] = i.name;
    d["loaded"] = i.loaded;
    d["path"] = i.path;
    d["error"] = i.error;
    d["version"] = i.version;
    return d;
  }, nb::arg("load") = false,
     "NCCL: loaded?, path, version (major*10000 + minor*100 + patch) or why not (load=False: "
     "report without loading it).");

  nb::class_<lc::CollectiveWork>(m, "_CollectiveWork",
                                 "The event after one collective: is_completed() / wait(timeout).")
      .def("is_completed", [](lc::CollectiveWork& w) {
        nb::gil_scoped_release nogil;
        return w.is_completed();
      })
      .def("wait", [](lc::CollectiveWork& w, double timeout_s) {
        nb::gil_scoped_release nogil;
        w.wait(timeout_s);
      }, nb::arg("timeout_s"));

  nb::class_<PyComm>(m, "_Communicator", "One rank of an NCCL communicator (lc.distributed).")
      .def_prop_ro("rank", [](const PyComm& c) { return c.comm->rank(); })
      .def_prop_ro("size", [](const PyComm& c) { return c.comm->size(); })
      .def_prop_ro("device", [](const PyComm& c) { return c.comm->device(); })
      .def("all_reduce", [](PyComm& c, const lc::Tensor& in, lc::Tensor& out, const std::string& op) {
        const lc::ReduceOp r = reduce_op(op, "all_reduce");
        const void* s = buffer(c, in, "all_reduce", "tensor", false);
        void* d = buffer(c, out, "all_reduce", "out", true);
        nb::gil_scoped_release nogil;
        c.comm->all_reduce(s, d, in.numel(), in.dtype(), r);
      }, nb::arg("tensor"), nb::arg("out"), nb::arg("op"))
      .def("all_gather", [](PyComm& c, const lc::Tensor& in, lc::Tensor& out) {
        const void* s = buffer(c, in, "all_gather", "tensor", false);
        void* d = buffer(c, out, "all_gather", "out", true);
        nb::gil_scoped_release nogil;
        c.comm->all_gather(s, d, in.numel(), in.dtype());
      }, nb::arg("tensor"), nb::arg("out"))
      .def("reduce_scatter", [](PyComm& c, const lc::Tensor& in, lc::Tensor& out, const std::string& op) {
        const lc::ReduceOp r = reduce_op(op, "reduce_scatter");
        const void* s = buffer(c, in, "reduce_scatter", "tensor", false);
        void* d = buffer(c, out, "reduce_scatter", "out", true);
        nb::gil_scoped_release nogil;
        c.comm->reduce_scatter(s, d, out.numel(), in.dtype(), r);
      }, nb::arg("tensor"), nb::arg("out"), nb::arg("op"))
      .def("broadcast", [](PyComm& c, const lc::Tensor& in, lc::Tensor& out, int root) {
        const void* s = buffer(c, in, "broadcast", "tensor", false);
        void* d = buffer(c, out, "broadcast", "out", true);
        nb::gil_scoped_release nogil;
        c.comm->broadcast(s, d, out.numel(), out.dtype(), root);
      }, nb::arg("tensor"), nb::arg("out"), nb::arg("root"))
      .def("send", [](PyComm& c, const lc::Tensor& t, int peer) {
        const void* s = buffer(c, t, "send", "tensor", false);
        nb::gil_scoped_release nogil;
        c.comm->send(s, t.numel(), t.dtype(), peer);
      }, nb::arg("tensor"), nb::arg("peer"))
      .def("recv", [](PyComm& c, lc::Tensor& t, int peer) {
        void* d = buffer(c, t, "recv", "tensor", true);
        nb::gil_scoped_release nogil;
        c.comm->recv(d, t.numel(), t.dtype(), peer);
      }, nb::arg("tensor"), nb::arg("peer"))
      .def("record", [](PyComm& c, const std::string& op) {
        // The name outlives the handle: ops are a fixed set of literals.
        static const char* const kNames[] = {"all_reduce", "all_gather", "reduce_scatter",
                                             "broadcast", "send", "recv", "barrier"};
        const char* name = "collective";
        for (const char* n : kNames)
          if (op == n) name = n;
        return new lc::CollectiveWork(lc::DeviceKind::cuda, c.comm, name);
      }, nb::arg("op"), nb::rv_policy::take_ownership,
         "A work handle for everything enqueued so far on this device's current stream.")
      .def("async_error", [](PyComm& c) { return c.comm->async_error(); })
      .def("abort", [](PyComm& c) {
        nb::gil_scoped_release nogil;
        c.comm->abort();
      })
      .def_prop_ro("aborted", [](const PyComm& c) { return c.comm->aborted(); });

  m.def("_dist_init_rank", [](nb::bytes id, int nranks, int rank, int device) {
    const std::string s(id.c_str(), id.size());
    std::unique_ptr<lc::Communicator> c;
    {
      nb::gil_scoped_release nogil;
      c = cuda().collective_init(s, nranks, rank, device);
    }
    return PyComm{std::shared_ptr<lc::Communicator>(std::move(c))};
  }, nb::arg("id"), nb::arg("nranks"), nb::arg("rank"), nb::arg("device"));

  m.def("_dist_init_all", [](const std::vector<int>& devices) {
    std::vector<std::unique_ptr<lc::Communicator>> cs;
    {
      nb::gil_scoped_release nogil;
      cs = cuda().collective_init_all(devices);
    }
    std::vector<PyComm> out;
    for (auto& c : cs) out.push_back(PyComm{std::shared_ptr<lc::Communicator>(std::move(c))});
    return out;
  }, nb::arg("devices"));

  m.def("_dist_group_start", [] { cuda().collective_group_start(); });
  m.def("_dist_group_end", [] {
    nb::gil_scoped_release nogil;
    cuda().collective_group_end();
  });
}

}  // namespace lcpy
