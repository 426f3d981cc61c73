// Devices and streams: lc._device_count / _current_device / _set_device (python/lightning_core/
// devices.py builds lc.Device, lc.set_device ... on them), lc.Stream, lc.Event, lc.current_stream,
// lc.default_stream and Tensor.record_stream. Everything goes through the backend seam's
// device/stream calls (backend.h), so the CPU answers too: one device, in-order "streams".
#include <nanobind/stl/string.h>

#include <utility>
#include <vector>

#include "backends/backend.h"
#include "bindings.h"
#include "convert.h"
#include "lightning_core/errors.h"
#include "lightning_core/runtime.h"
#include "lightning_core/tensor.h"

namespace lcpy {

namespace {

struct Place {
  lc::DeviceKind kind;
  int index;  // resolved: never -1
};

// "cuda" -> the current CUDA device; "cuda:1"; "cpu". "auto" is not a place here.
Place resolve(const std::string& s, const char* op) {
  int index = -1;
  const lc::DeviceRequest r = lc::parse_device_index(s, op, &index);
  if (r == lc::DeviceRequest::automatic)
    lc::throw_value(op, "name a device (\"cuda\", \"cuda:N\" or \"cpu\"), not \"auto\"");
  const lc::DeviceKind kind = lc::require_device(r, op);
  if (kind == lc::DeviceKind::cpu) return {kind, 0};
  if (index < 0) index = lc::current_device(kind);
  lc::require_device_index(kind, index, op);
  return {kind, index};
}

std::string place_str(lc::DeviceKind k, int index) {
  if (k == lc::DeviceKind::cpu) return "cpu";
  return std::string(lc::to_string(k)) + ":" + std::to_string(index);
}

// A stream of one device. Owned streams are destroyed with the object; the default stream
// (handle nullptr) and streams looked up with current_stream() are borrowed.
struct PyStream {
  lc::DeviceKind kind = lc::DeviceKind::cpu;
  int device = 0;
  void* handle = nullptr;
  bool owned = false;
  // What __enter__ replaced, restored by __exit__ (a stack: a stream may be entered nested).
  std::vector<std::pair<int, void*>> saved;

  PyStream() = default;
  PyStream(const PyStream&) = delete;
  PyStream& operator=(const PyStream&) = delete;
  ~PyStream() {
    if (owned && handle) lc::get_backend(kind).stream_destroy(handle);
  }
  lc::Backend& be() const { return lc::get_backend(kind); }
};

void init_stream(PyStream* self, const std::string& device) {
  const Place p = resolve(device, "Stream");
  auto* s = new (self) PyStream();
  s->kind = p.kind;
  s->device = p.index;
  if (p.kind != lc::DeviceKind::cpu) {
    s->handle = s->be().stream_create(p.index);
    s->owned = s->handle != nullptr;
  }
}

PyStream* borrowed(lc::DeviceKind kind, int device, void* handle) {
  auto* s = new PyStream();
  s->kind = kind;
  s->device = device;
  s->handle = handle;
  return s;
}

struct PyEvent {
  lc::DeviceKind kind = lc::DeviceKind::cpu;
  int device = 0;
  void* handle = nullptr;
  PyEvent() = default;
  PyEvent(const PyEvent&) = delete;
  PyEvent& operator=(const PyEvent&) = delete;
  ~PyEvent() {
    if (handle) lc::get_backend(kind).event_destroy(handle);
  }
};

void init_event(PyEvent* self, bool enable_timing, const std::string& device) {
  const Place p = resolve(device, "Event");
  auto* e = new (self) PyEvent();
  e->kind = p.kind;
  e->device = p.index;
  lc::DeviceScope scope(p.kind, p.index);
  e->handle = lc::get_backend(p.kind).event_create(enable_timing);
}

// The stream an event call means: the given one, else the current stream of the event's device.
void* stream_for(const PyEvent& e, PyStream* s, const char* op) {
  if (!s) return lc::get_backend(e.kind).current_stream();
  if (s->kind != e.kind || s->device != e.device)
    lc::throw_value(op, "the event belongs to " + place_str(e.kind, e.device) +
                            " and the stream to " + place_str(s->kind, s->device) +
                            "; events and streams must share a device");
  return s->handle;
}

}  // namespace

void register_devices(nb::module_& m) {
  m.def("_device_count", [](const std::string& kind) {
    int index = -1;
    const lc::DeviceRequest r = lc::parse_device_index(kind, "device_count", &index);
    switch (r) {
      case lc::DeviceRequest::cpu: return 1;
      case lc::DeviceRequest::cuda: return lc::device_count(lc::DeviceKind::cuda);
      case lc::DeviceRequest::metal: return lc::device_count(lc::DeviceKind::metal);
      case lc::DeviceRequest::automatic: break;
    }
    lc::throw_value("device_count", "name a device type (\"cuda\", \"cpu\"), not \"auto\"");
  }, nb::arg("kind") = "cuda");
  m.def("_current_device", [](const std::string& kind) {
    int index = -1;
    const lc::DeviceRequest r = lc::parse_device_index(kind, "current_device", &index);
    if (r == lc::DeviceRequest::cpu) return 0;
    if (r == lc::DeviceRequest::automatic)
      lc::throw_value("current_device", "name a device type (\"cuda\"), not \"auto\"");
    return lc::current_device(r == lc::DeviceRequest::cuda ? lc::DeviceKind::cuda : lc::DeviceKind::metal);
  }, nb::arg("kind") = "cuda");
  m.def("_set_device", [](const std::string& device) {
    const Place p = resolve(device, "set_device");
    lc::set_current_device(p.kind, p.index);
  }, nb::arg("device"));

  nb::class_<PyStream>(m, "Stream",
      "A queue of device work (a CUDA stream). Ops run on the calling thread's current stream of "
      "their device; `with lc.Stream() as s:` (or lc.set_stream) makes `s` current, so work on "
      "several streams can overlap. Order streams with events (Event.record / Stream.wait_event) "
      "or Stream.wait_stream. Memory freed by a stream's work is reused only by that stream: "
      "call tensor.record_stream(s) when another stream also uses a tensor.\n\n"
      "On the CPU a stream is a token (work completes when its call returns).")
      .def("__init__", &init_stream, nb::arg("device") = "cuda",
           "A new stream on `device` (\"cuda\" = the current GPU, \"cuda:N\", \"cpu\").")
      .def_prop_ro("device", [](const PyStream& s) { return place_str(s.kind, s.device); })
      .def_prop_ro("cuda_stream", [](const PyStream& s) {
        lc::DeviceScope scope(s.kind, s.device);
        return s.be().native_stream(s.handle);
      }, "The native cudaStream_t as an integer (torch.cuda.ExternalStream, CuPy); 0 on the CPU.")
      .def("synchronize", [](PyStream& s) {
        nb::gil_scoped_release nogil;
        lc::DeviceScope scope(s.kind, s.device);
        s.be().stream_synchronize(s.handle);
      }, "Waits until all work queued on this stream has finished.")
      .def("query", [](PyStream& s) {
        lc::DeviceScope scope(s.kind, s.device);
        return s.be().stream_query(s.handle);
      }, "True when all work queued on this stream has finished.")
      .def("wait_event", [](PyStream& s, PyEvent& e) {
        if (e.kind != s.kind || e.device != s.device)
          lc::throw_value("Stream.wait_event", "the event belongs to " + place_str(e.kind, e.device) +
                                                   " and the stream to " + place_str(s.kind, s.device));
        lc::DeviceScope scope(s.kind, s.device);
        s.be().stream_wait_event(s.handle, e.handle);
      }, nb::arg("event"), "Work queued on this stream from now on waits for `event`.")
      .def("wait_stream", [](PyStream& s, PyStream& other) {
        if (other.kind != s.kind)
          lc::throw_value("Stream.wait_stream", "streams of different device types");
        lc::Backend& be = s.be();
        void* ev = nullptr;
        {
          lc::DeviceScope scope(other.kind, other.device);
          ev = be.event_create(false);
        }
        try {
          lc::DeviceScope scope(other.kind, other.device);
          be.event_record(ev, other.handle);
          if (other.device != s.device) {
            // An event can only be waited for on its own device's streams: wait on the host.
            be.event_synchronize(ev);
          } else {
            be.stream_wait_event(s.handle, ev);
          }
        } catch (...) {
          be.event_destroy(ev);
          throw;
        }
        be.event_destroy(ev);
      }, nb::arg("stream"), "Work queued on this stream from now on waits for the work queued "
                            "on `stream` so far.")
      .def("__enter__", [](nb::handle self) {
        PyStream& s = nb::cast<PyStream&>(self);
        lc::Backend& be = s.be();
        const int prev_dev = s.kind == lc::DeviceKind::cpu ? 0 : be.current_device();
        if (s.kind != lc::DeviceKind::cpu && prev_dev != s.device) be.set_current_device(s.device);
        void* prev_stream = be.current_stream();
        be.set_current_stream(s.handle);
        s.saved.emplace_back(prev_dev, prev_stream);
        return nb::borrow(self);
      })
      .def("__exit__", [](PyStream& s, nb::handle, nb::handle, nb::handle) {
        if (s.saved.empty()) return false;
        const auto [prev_dev, prev_stream] = s.saved.back();
        s.saved.pop_back();
        lc::Backend& be = s.be();
        be.set_current_stream(prev_stream);
        if (s.kind != lc::DeviceKind::cpu && be.current_device() != prev_dev)
          be.set_current_device(prev_dev);
        return false;
      }, nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
      .def("__eq__", [](const PyStream& a, nb::handle b) -> nb::object {
        PyStream* o = nullptr;
        if (!nb::try_cast<PyStream*>(b, o) || !o) return nb::borrow(Py_NotImplemented);
        return nb::bool_(a.kind == o->kind && a.device == o->device && a.handle == o->handle);
      }, nb::arg("other").none())
      .def("__hash__", [](const PyStream& s) {
        return std::hash<const void*>{}(s.handle) ^ static_cast<std::size_t>(s.device);
      })
      .def("__repr__", [](const PyStream& s) {
        return std::string("lc.Stream(device=\"") + place_str(s.kind, s.device) + "\"" +
               (s.owned ? "" : ", borrowed") + ")";
      });

  m.def("current_stream", [](const std::string& device) {
    const Place p = resolve(device, "current_stream");
    lc::DeviceScope scope(p.kind, p.index);
    return borrowed(p.kind, p.index, lc::get_backend(p.kind).current_stream());
  }, nb::arg("device") = "cuda", nb::rv_policy::take_ownership,
     "The calling thread's current stream on `device` (the default stream unless a `with "
     "stream:` block or set_stream changed it).");
  m.def("default_stream", [](const std::string& device) {
    const Place p = resolve(device, "default_stream");
    return borrowed(p.kind, p.index, lc::get_backend(p.kind).default_stream(p.index));
  }, nb::arg("device") = "cuda", nb::rv_policy::take_ownership,
     "The default stream of `device`: where ops run unless another stream is current.");
  m.def("set_stream", [](PyStream& s) {
    lc::Backend& be = s.be();
    if (s.kind != lc::DeviceKind::cpu && be.current_device() != s.device) be.set_current_device(s.device);
    be.set_current_stream(s.handle);
  }, nb::arg("stream"), "Makes `stream` (and its device) current for the calling thread. "
                        "Prefer `with stream:`, which restores the previous one.");

  nb::class_<PyEvent>(m, "Event",
      "A point in a stream's work: record() it on a stream, then wait for it on the host "
      "(synchronize), on another stream (wait / Stream.wait_event), or time the work between "
      "two events (elapsed_time, with enable_timing=True).")
      .def("__init__", &init_event, nb::arg("enable_timing") = false, nb::arg("device") = "cuda")
      .def_prop_ro("device", [](const PyEvent& e) { return place_str(e.kind, e.device); })
      .def("record", [](PyEvent& e, PyStream* s) {
        void* st = stream_for(e, s, "Event.record");
        lc::DeviceScope scope(e.kind, e.device);
        lc::get_backend(e.kind).event_record(e.handle, st);
      }, nb::arg("stream").none() = nb::none(),
         "Marks the work queued so far on `stream` (default: the current stream of the event's device).")
      .def("wait", [](PyEvent& e, PyStream* s) {
        void* st = stream_for(e, s, "Event.wait");
        lc::DeviceScope scope(e.kind, e.device);
        lc::get_backend(e.kind).stream_wait_event(st, e.handle);
      }, nb::arg("stream").none() = nb::none(),
         "Work queued on `stream` (default: the current stream) from now on waits for this event.")
      .def("query", [](PyEvent& e) {
        lc::DeviceScope scope(e.kind, e.device);
        return lc::get_backend(e.kind).event_query(e.handle);
      }, "True when the recorded work has finished (True for an event never recorded).")
      .def("synchronize", [](PyEvent& e) {
        nb::gil_scoped_release nogil;
        lc::DeviceScope scope(e.kind, e.device);
        lc::get_backend(e.kind).event_synchronize(e.handle);
      }, "Waits on the host until the recorded work has finished.")
      .def("elapsed_time", [](PyEvent& e, PyEvent& end) {
        if (end.kind != e.kind || end.device != e.device)
          lc::throw_value("Event.elapsed_time", "both events must belong to one device");
        nb::gil_scoped_release nogil;
        lc::DeviceScope scope(e.kind, e.device);
        return lc::get_backend(e.kind).event_elapsed_ms(e.handle, end.handle);
      }, nb::arg("end"), "Milliseconds between this event and `end` (both recorded, both made "
                         "with enable_timing=True); waits for `end`.")
      .def("__repr__", [](const PyEvent& e) {
        return std::string("lc.Event(device=\"") + place_str(e.kind, e.device) + "\")";
      });

  nb::handle tensor_cls = nb::type<lc::Tensor>();
  nb::setattr(tensor_cls, "record_stream", nb::cpp_function(
      [](const lc::Tensor& t, PyStream& s) {
        if (t.device() == lc::DeviceKind::cpu) return;  // host memory: nothing to track
        if (s.kind != t.device())
          lc::throw_value("Tensor.record_stream", "the stream is on " + place_str(s.kind, s.device) +
                                                      " and the tensor on " +
                                                      place_str(t.device(), t.device_index()));
        if (t.numel() == 0 || !t.owner()) return;  // nothing allocated / borrowed memory
        lc::DeviceScope scope(s.kind, s.device);
        lc::get_backend(t.device()).record_stream(t.owner().get(), s.handle);
      },
      nb::scope(tensor_cls), nb::name("record_stream"), nb::is_method(), nb::arg("stream"),
      "Declares that work on `stream` also uses this tensor: when the tensor is freed, its "
      "memory is reused only after that work has finished (needed when a tensor made on one "
      "stream is used on another)."));
}

}  // namespace lcpy
