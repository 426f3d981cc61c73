// Resident sessions and the integrated conv -> attention op:
//   matmul2d_resident_session(a, b, device=None, *, policy=None, upload=None, use_graph=False)
//   attention2d_resident_session(q, k, v, causal=False, device=None, *, scale=None, ...)
//   attention_resident_session(q, k, v, causal=False, device=None, *, mask=None, scale=None, ...)
//     (both attention sessions: forward(), forward_into(out), train_step(target, lr), parameters())
//   conv_attention_resident_session(x, w, b, seq_len, head_dim, stride_h=1, ..., device=None, *,
//                                   activation="relu", causal=False, scale=None, ...)
//   conv_attention_nchw(x, w, b, seq_len, head_dim, stride_h=1, ..., device=None, *, ...)
// Sessions are context managers; close() (or garbage collection) frees their memory.
// Without an explicit policy a session uses the current policy with upload="once".
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "convert.h"
#include "lightning_core/errors.h"
#include "lightning_core/fused.h"
#include "lightning_core/session.h"
#include "op_binding.h"

namespace lcpy {

namespace {

lc::ExecutionPolicy session_policy(nb::handle device, nb::handle policy, nb::handle upload,
                                   const char* op) {
  lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  if (!upload.is_none()) p.upload = lc::parse_upload(str_param(upload, op, "upload"), op);
  else if (policy.is_none() && p.upload == lc::UploadMode::always) p.upload = lc::UploadMode::once;
  p.validate(op);
  return p;
}

// The Python objects a session's inputs were last uploaded from live in the session's
// `_lc_bound` attribute (a tuple, which also keeps them alive so their identity cannot be
// reused). An argument that is not that very object is flagged stale, and the session uploads
// it again instead of computing with the old data (upload="once"/"never").
// The attribute name, interned once (every session call reads it).
nb::handle bound_key() {
  static PyObject* key = PyUnicode_InternFromString("_lc_bound");
  return key;
}

std::uint32_t stale_mask(nb::handle self, std::initializer_list<std::pair<nb::handle, const char*>> in) {
  nb::object bound = nb::steal(PyObject_GetAttr(self.ptr(), bound_key().ptr()));
  if (!bound.is_valid()) {
    PyErr_Clear();
    bound = nb::none();
  }
  const bool have = PyTuple_Check(bound.ptr());
  std::uint32_t mask = 0;
  std::size_t i = 0;
  for (const auto& entry : in) {
    if (!have || i >= static_cast<std::size_t>(PyTuple_Size(bound.ptr())) ||
        PyTuple_GetItem(bound.ptr(), static_cast<Py_ssize_t>(i)) != entry.first.ptr())
      mask |= 1u << i;
    ++i;
  }
  return mask;
}

void set_bound(nb::handle self, std::initializer_list<std::pair<nb::handle, const char*>> in) {
  nb::list l;
  for (const auto& entry : in) l.append(entry.first);
  if (PyObject_SetAttr(self.ptr(), bound_key().ptr(), nb::tuple(l).ptr()) != 0) throw nb::python_error();
}

// Converts the per-call inputs and `out`, then runs `f(inputs, out, stale)` without the GIL;
// afterwards the arguments are the session's bound objects.
template <class F>
void with_args(nb::handle self, std::initializer_list<std::pair<nb::handle, const char*>> in,
               nb::handle out_obj, const char* op, F&& f) {
  Arg args[4];
  std::vector<const lc::Tensor*> ptrs;
  int i = 0;
  for (const auto& [h, name] : in) {
    to_arg(h, op, name, args[i]);
    ptrs.push_back(&args[i].t);
    ++i;
  }
  Arg out;
  to_out_arg(out_obj, op, out);
  const std::uint32_t stale = stale_mask(self, in);
  {
    nb::gil_scoped_release nogil;
    f(ptrs, out.t, stale);
  }
  if (stale) set_bound(self, in);  // else the bound objects are these very ones already
}

// Wraps a new session and records its creation inputs as the bound objects.
template <class S>
nb::object new_session(std::unique_ptr<S> s,
                       std::initializer_list<std::pair<nb::handle, const char*>> in) {
  nb::object o = nb::cast(std::move(s));
  set_bound(o, in);
  return o;
}

nb::dict stats_dict(const lc::ResidentSession& s) {
  const lc::SessionStats st = s.stats();
  nb::dict d;
  d["uploads"] = st.uploads;
  d["launches"] = st.launches;
  d["syncs"] = st.syncs;
  d["downloads"] = st.downloads;
  d["graph_replays"] = st.graph_replays;
  d["graph_records"] = st.graph_records;
  return d;
}

// The conv -> attention parameters, each checked with a message naming it.
lc::ConvAttentionParams conv_attn_params(nb::handle seq_len, nb::handle head_dim, nb::handle sh,
                                         nb::handle sw, nb::handle ph, nb::handle pw,
                                         nb::handle activation, nb::handle causal,
                                         nb::handle scale, const char* op) {
  constexpr std::int64_t kIntMax = 2147483647, kI64Max = INT64_MAX;
  lc::ConvAttentionParams prm;
  prm.seq_len = int_param(seq_len, op, "seq_len", 1, kI64Max);
  prm.head_dim = int_param(head_dim, op, "head_dim", 1, kI64Max);
  prm.stride_h = static_cast<int>(int_param(sh, op, "stride_h", 1, kIntMax));
  prm.stride_w = static_cast<int>(int_param(sw, op, "stride_w", 1, kIntMax));
  prm.pad_h = static_cast<int>(int_param(ph, op, "pad_h", 0, kIntMax));
  prm.pad_w = static_cast<int>(int_param(pw, op, "pad_w", 0, kIntMax));
  prm.act = lc::parse_activation(str_param(activation, op, "activation"), op);
  prm.causal = bool_param(causal, op, "causal");
  prm.scale = scale_param(scale, op);
  return prm;
}

// conv_attention_nchw(x, w, b, seq_len, head_dim, stride_h, stride_w, pad_h, pad_w, device, *,
// activation, causal, scale, graph, policy): one implementation of both forms (def_op below).
nb::object conv_attention_impl(const lc::OpDef& d, const Handles<15>& h, nb::handle out) {
  const char* op = d.name;
  Arg x, w, b;
  to_arg(h[0], op, "x", x);
  to_arg(h[1], op, "weight", w);
  const bool has_b = to_opt_arg(h[2], op, "bias", b);
  const lc::ExecutionPolicy p = resolve_policy(h[9], h[14], op);
  lc::ConvAttentionParams prm =
      conv_attn_params(h[3], h[4], h[5], h[6], h[7], h[8], h[10], h[11], h[12], op);
  prm.graph = bool_param(h[13], op, "graph");
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  // The OpDef's flops (conv + attention stage) decide whether the GIL is released.
  lc::OpArgs args{&x.t, &w.t, bias};
  args.stride_h = prm.stride_h;
  args.stride_w = prm.stride_w;
  args.pad_h = prm.pad_h;
  args.pad_w = prm.pad_w;
  args.seq_len = prm.seq_len;
  args.head_dim = prm.head_dim;
  return run_op(
      out, op, {&x, &w, has_b ? &b : nullptr}, p, d.flops_hint(args),
      [&] { return lc::conv_attention_nchw_out_shape(x.t, w.t, bias, prm); },
      [&](lc::Tensor& o) { lc::conv_attention_nchw_into(x.t, w.t, bias, prm, o, p); },
      [&] { return lc::conv_attention_nchw(x.t, w.t, bias, prm, p); });
}

}  // namespace

void register_sessions(nb::module_& m) {
  using lc::ResidentSession;
  nb::class_<ResidentSession>(m, "ResidentSession", nb::dynamic_attr(),
      "A resident session: inputs uploaded once, launches only, sync/download on request. "
      "Use as a context manager or call close().")
      .def("sync", [](ResidentSession& s) {
        nb::gil_scoped_release nogil;
        s.sync();
      }, "Waits for the queued launches.")
      .def("download_into", [](ResidentSession& s, nb::handle out_obj) {
        Arg out;
        to_out_arg(out_obj, s.op(), out);
        {
          nb::gil_scoped_release nogil;
          s.download_into(out.t);
        }
        return nb::borrow(out_obj);
      }, nb::arg("out").none(), "Synchronises and copies the last result into out.")
      .def("close", [](ResidentSession& s) {
        nb::gil_scoped_release nogil;  // waits for a call in flight on another thread
        s.close();
      },
           "Frees the session's device memory; later calls raise ValueError.")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def("__exit__", [](ResidentSession& s, nb::handle, nb::handle, nb::handle) {
        nb::gil_scoped_release nogil;
        s.close();
        return false;
      }, nb::arg("exc_type").none(), nb::arg("exc").none(), nb::arg("tb").none())
      .def_prop_ro("closed", &ResidentSession::closed)
      .def_prop_ro("device", [](const ResidentSession& s) { return std::string(lc::to_string(s.device())); })
      .def_prop_ro("op", [](const ResidentSession& s) { return std::string(s.op()); })
      .def_prop_ro("placement_reason", &ResidentSession::placement_reason)
      .def_prop_ro("policy", &ResidentSession::policy)
      .def_prop_ro("out_shape", [](const ResidentSession& s) {
        nb::list l;
        for (auto d : s.out_shape()) l.append(d);
        return nb::tuple(l);
      })
      .def_prop_ro("input_shapes", [](const ResidentSession& s) {
        nb::dict d;
        for (std::size_t i = 0; i < s.input_names().size(); ++i) {
          nb::list l;
          for (auto v : s.input_shapes()[i]) l.append(v);
          d[s.input_names()[i].c_str()] = nb::tuple(l);
        }
        return d;
      })
      .def_prop_ro("resident_bytes", &ResidentSession::resident_bytes)
      .def_prop_ro("uses_graph", &ResidentSession::uses_graph)
      .def_prop_ro("stats", &stats_dict)
      .def("__repr__", [](const ResidentSession& s) {
        return std::string("<") + s.op() + " on " + lc::to_string(s.device()) +
               (s.closed() ? " (closed)>" : ">");
      });

  // ---- matmul ----
  nb::class_<lc::Matmul2dSession, ResidentSession>(m, "Matmul2dResidentSession")
      .def("start_into", [](nb::handle self, nb::handle a, nb::handle b, nb::handle out) {
        auto& s = nb::cast<lc::Matmul2dSession&>(self);
        with_args(self, {{a, "a"}, {b, "b"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o, std::uint32_t) { s.start_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("a").none(), nb::arg("b").none(), nb::arg("out").none())
      .def("run_into", [](nb::handle self, nb::handle a, nb::handle b, nb::handle out) {
        auto& s = nb::cast<lc::Matmul2dSession&>(self);
        with_args(self, {{a, "a"}, {b, "b"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o, std::uint32_t st) { s.run_into(in, o, st); });
        return nb::borrow(out);
      }, nb::arg("a").none(), nb::arg("b").none(), nb::arg("out").none())
      .def("run_batch_sync_no_download_into",
           [](nb::handle self, nb::handle a, nb::handle b, nb::handle out, nb::handle n_) {
             auto& s = nb::cast<lc::Matmul2dSession&>(self);
             const std::int64_t n = int_param(n_, s.op(), "n", INT64_MIN, INT64_MAX);  // >= 1: checked after out
             with_args(self, {{a, "a"}, {b, "b"}}, out, s.op(),
                       [&](const auto& in, lc::Tensor& o, std::uint32_t st) {
                         s.run_batch_sync_no_download_into(in, o, n, st);
                       });
           }, nb::arg("a").none(), nb::arg("b").none(), nb::arg("out").none(), nb::arg("n").none())
      .def_prop_ro("gemm_mode", &lc::Matmul2dSession::gemm_mode);

  m.def("matmul2d_resident_session",
        [](nb::handle a_, nb::handle b_, nb::handle device, nb::handle policy, nb::handle upload,
           nb::handle use_graph_) {
          static constexpr const char* op = "matmul2d_resident_session";
          const bool use_graph = bool_param(use_graph_, op, "use_graph");
          Arg a, b;
          to_arg(a_, op, "a", a);
          to_arg(b_, op, "b", b);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          std::unique_ptr<lc::Matmul2dSession> s;
          {
            nb::gil_scoped_release nogil;
            s = std::make_unique<lc::Matmul2dSession>(a.t, b.t, p, use_graph);
          }
          return new_session(std::move(s), {{a_, "a"}, {b_, "b"}});
        },
        nb::arg("a").none(), nb::arg("b").none(), nb::arg("device") = nb::none(), nb::kw_only(),
        nb::arg("policy") = nb::none(), nb::arg("upload") = nb::none(),
        nb::arg("use_graph").none() = false,
        "A resident matmul2d session for a[m,k] @ b[k,n] (see ResidentSession).");

  // ---- attention: the training surface both attention sessions share ----
  using lc::AttentionTrainableSession;
  nb::class_<AttentionTrainableSession, ResidentSession>(m, "AttentionTrainableSession",
      "An attention session with the original's training surface: forward(), forward_into(out), "
      "train_step(target, lr) -> (out, loss) and parameters() -> (q, k, v).")
      .def("forward", [](AttentionTrainableSession& s) {
        lc::Tensor view;
        nb::object arr = new_numpy(s.out_shape(), view, s.op(), s.dtype());
        {
          nb::gil_scoped_release nogil;
          s.forward_into(view);
        }
        return arr;
      }, "Runs on the resident q, k, v and returns the result (a new numpy array).")
      .def("forward_into", [](AttentionTrainableSession& s, nb::handle out_obj) {
        Arg out;
        to_out_arg(out_obj, s.op(), out);
        {
          nb::gil_scoped_release nogil;
          s.forward_into(out.t);
        }
        return nb::borrow(out_obj);
      }, nb::arg("out").none(), "Runs on the resident q, k, v and writes the result into out.")
      .def("train_step", [](AttentionTrainableSession& s, nb::handle target, nb::handle lr_,
                            nb::handle out_obj) {
        const std::string what = std::string(s.op()) + ".train_step";
        Arg t;
        to_arg(target, what.c_str(), "target", t);
        const double lr = float_param(lr_, what.c_str(), "lr");
        lc::AttentionTrainResult r;
        if (!out_obj.is_none()) {  // into the caller's array / lc.Tensor (a device one: no download)
          Arg out;
          to_out_arg(out_obj, s.op(), out);
          {
            nb::gil_scoped_release nogil;
            r = s.train_step_into(t.t, lr, out.t);
          }
          return nb::make_tuple(nb::borrow(out_obj), r.loss);
        }
        lc::Tensor view;
        nb::object arr = new_numpy(s.out_shape(), view, s.op(), s.dtype());
        {
          nb::gil_scoped_release nogil;
          r = s.train_step_into(t.t, lr, view);
        }
        return nb::make_tuple(arr, r.loss);
      }, nb::arg("target").none(), nb::arg("lr").none(), nb::kw_only(),
           nb::arg("out").none() = nb::none(),
           "One SGD step on mean((out - target)^2): forward, backward, q/k/v -= lr * grad on the "
           "resident q, k, v. Returns (out before the update, loss); with out= (a numpy array or "
           "an lc.Tensor of out's shape and dtype, on any device) the result is written there.")
      .def("parameters", [](AttentionTrainableSession& s) {
        nb::list l;
        for (int i = 0; i < 3; ++i) {
          lc::Tensor t;
          {
            nb::gil_scoped_release nogil;
            t = s.parameter(i);
          }
          lc::Tensor view;
          nb::object arr = new_numpy(t.shape(), view, s.op(), t.dtype());
          t.copy_to(view);
          l.append(arr);
        }
        return nb::tuple(l);
      }, "Copies of the resident (q, k, v) as numpy arrays (after train_step: the updated ones).")
      .def_prop_ro("causal", &AttentionTrainableSession::causal)
      .def_prop_ro("dtype", [](const AttentionTrainableSession& s) {
        return std::string(lc::dtype_info(s.dtype()).name);
      })
      // The q / k / v forms of the ResidentSession calls, shared by both attention sessions.
      .def("start_into", [](nb::handle self, nb::handle q, nb::handle k, nb::handle v,
                            nb::handle out) {
        auto& s = nb::cast<AttentionTrainableSession&>(self);
        with_args(self, {{q, "q"}, {k, "k"}, {v, "v"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o, std::uint32_t) { s.start_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("out").none())
      .def("run_into", [](nb::handle self, nb::handle q, nb::handle k, nb::handle v,
                          nb::handle out) {
        auto& s = nb::cast<AttentionTrainableSession&>(self);
        with_args(self, {{q, "q"}, {k, "k"}, {v, "v"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o, std::uint32_t st) { s.run_into(in, o, st); });
        return nb::borrow(out);
      }, nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("out").none())
      .def("run_batch_sync_no_download_into",
           [](nb::handle self, nb::handle q, nb::handle k, nb::handle v, nb::handle out,
              nb::handle n_) {
             auto& s = nb::cast<AttentionTrainableSession&>(self);
             const std::int64_t n = int_param(n_, s.op(), "n", INT64_MIN, INT64_MAX);  // >= 1: checked after out
             with_args(self, {{q, "q"}, {k, "k"}, {v, "v"}}, out, s.op(),
                       [&](const auto& in, lc::Tensor& o, std::uint32_t st) {
                         s.run_batch_sync_no_download_into(in, o, n, st);
                       });
           }, nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("out").none(), nb::arg("n").none());

  nb::class_<lc::Attention2dSession, AttentionTrainableSession>(m, "Attention2dResidentSession");

  m.def("attention2d_resident_session",
        [](nb::handle q_, nb::handle k_, nb::handle v_, nb::handle causal_, nb::handle device,
           nb::handle scale, nb::handle policy, nb::handle upload, nb::handle use_graph_) {
          static constexpr const char* op = "attention2d_resident_session";
          const bool causal = bool_param(causal_, op, "causal");
          const bool use_graph = bool_param(use_graph_, op, "use_graph");
          Arg q, k, v;
          to_arg(q_, op, "q", q);
          to_arg(k_, op, "k", k);
          to_arg(v_, op, "v", v);
          const float sc = scale_param(scale, op);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          std::unique_ptr<lc::Attention2dSession> s;
          {
            nb::gil_scoped_release nogil;
            s = std::make_unique<lc::Attention2dSession>(q.t, k.t, v.t, causal, sc, p, use_graph);
          }
          return new_session(std::move(s), {{q_, "q"}, {k_, "k"}, {v_, "v"}});
        },
        nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("causal").none() = false,
        nb::arg("device") = nb::none(), nb::kw_only(), nb::arg("scale") = nb::none(),
        nb::arg("policy") = nb::none(), nb::arg("upload") = nb::none(),
        nb::arg("use_graph").none() = false,
        "A resident attention2d session for q[sq,d], k[sk,d], v[sk,dv].");

  nb::class_<lc::AttentionSession, AttentionTrainableSession>(m, "AttentionResidentSession")
      .def_prop_ro("has_mask", &lc::AttentionSession::has_mask);

  m.def("attention_resident_session",
        [](nb::handle q_, nb::handle k_, nb::handle v_, nb::handle causal_, nb::handle device,
           nb::handle mask_, nb::handle scale, nb::handle policy, nb::handle upload,
           nb::handle use_graph_) {
          static constexpr const char* op = "attention_resident_session";
          const bool causal = bool_param(causal_, op, "causal");
          const bool use_graph = bool_param(use_graph_, op, "use_graph");
          Arg q, k, v, mask;
          nb::object mask_hold;
          to_arg(q_, op, "q", q);
          to_arg(k_, op, "k", k);
          to_arg(v_, op, "v", v);
          const bool has_mask = mask_arg(mask_, op, mask, mask_hold);
          const float sc = scale_param(scale, op);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          std::unique_ptr<lc::AttentionSession> s;
          {
            nb::gil_scoped_release nogil;
            s = std::make_unique<lc::AttentionSession>(q.t, k.t, v.t, causal,
                                                       has_mask ? &mask.t : nullptr, sc, p,
                                                       use_graph);
          }
          return new_session(std::move(s), {{q_, "q"}, {k_, "k"}, {v_, "v"}});
        },
        nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(), nb::arg("causal").none() = false,
        nb::arg("device") = nb::none(), nb::kw_only(), nb::arg("mask").none() = nb::none(),
        nb::arg("scale") = nb::none(), nb::arg("policy") = nb::none(),
        nb::arg("upload") = nb::none(), nb::arg("use_graph").none() = false,
        "A resident batched attention session (lc.attention) for q [B, H, Sq, D], k [B, Hk, Sk, "
        "D], v [B, Hk, Sk, Dv] (grouped-query heads; 2-D / 3-D forms too) in q's dtype, with an "
        "optional mask resident from creation: start_into / run_into / "
        "run_batch_sync_no_download_into (q, k, v, out), forward(), forward_into(out), "
        "train_step(target, lr) -> (out, loss), parameters().");

  // ---- conv -> attention ----
  nb::class_<lc::ConvAttentionSession, ResidentSession>(m, "ConvAttentionResidentSession")
      .def("start_into", [](nb::handle self, nb::handle x, nb::handle out) {
        auto& s = nb::cast<lc::ConvAttentionSession&>(self);
        with_args(self, {{x, "x"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o, std::uint32_t) { s.start_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("x").none(), nb::arg("out").none())
      .def("run_into", [](nb::handle self, nb::handle x, nb::handle out) {
        auto& s = nb::cast<lc::ConvAttentionSession&>(self);
        with_args(self, {{x, "x"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o, std::uint32_t st) { s.run_into(in, o, st); });
        return nb::borrow(out);
      }, nb::arg("x").none(), nb::arg("out").none())
      .def("run_batch_sync_no_download_into",
           [](nb::handle self, nb::handle x, nb::handle out, nb::handle n_) {
             auto& s = nb::cast<lc::ConvAttentionSession&>(self);
             const std::int64_t n = int_param(n_, s.op(), "n", INT64_MIN, INT64_MAX);  // >= 1: checked after out
             with_args(self, {{x, "x"}}, out, s.op(),
                       [&](const auto& in, lc::Tensor& o, std::uint32_t st) {
                         s.run_batch_sync_no_download_into(in, o, n, st);
                       });
           }, nb::arg("x").none(), nb::arg("out").none(), nb::arg("n").none());

  m.def("conv_attention_resident_session",
        [](nb::handle x_, nb::handle w_, nb::handle b_, nb::handle seq_len, nb::handle head_dim,
           nb::handle sh, nb::handle sw, nb::handle ph, nb::handle pw, nb::handle device,
           nb::handle activation, nb::handle causal, nb::handle scale, nb::handle policy,
           nb::handle upload, nb::handle use_graph_) {
          static constexpr const char* op = "conv_attention_resident_session";
          const bool use_graph = bool_param(use_graph_, op, "use_graph");
          Arg x, w, b;
          to_arg(x_, op, "x", x);
          to_arg(w_, op, "weight", w);
          const bool has_b = to_opt_arg(b_, op, "bias", b);
          const lc::ConvAttentionParams prm =
              conv_attn_params(seq_len, head_dim, sh, sw, ph, pw, activation, causal, scale, op);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          std::unique_ptr<lc::ConvAttentionSession> s;
          {
            nb::gil_scoped_release nogil;
            s = std::make_unique<lc::ConvAttentionSession>(x.t, w.t, has_b ? &b.t : nullptr, prm,
                                                           p, use_graph);
          }
          return new_session(std::move(s), {{x_, "x"}});
        },
        nb::arg("x").none(), nb::arg("w").none(), nb::arg("b").none(), nb::arg("seq_len").none(), nb::arg("head_dim").none(),
        nb::arg("stride_h").none() = 1, nb::arg("stride_w").none() = 1, nb::arg("pad_h").none() = 0,
        nb::arg("pad_w").none() = 0, nb::arg("device") = nb::none(), nb::kw_only(),
        nb::arg("activation").none() = "relu", nb::arg("causal").none() = false, nb::arg("scale") = nb::none(),
        nb::arg("policy") = nb::none(), nb::arg("upload") = nb::none(),
        nb::arg("use_graph").none() = false,
        "A resident conv->attention session: weight and bias resident, x per call; methods "
        "take (x, out).");

  // Both forms from one definition (op_binding.h); the `_into` form takes `out` after b.
  const nb::none none;
  def_op<&lc::opdefs::conv_attention_nchw, 3, &conv_attention_impl>(
      m, nb::arg("x").none(), nb::arg("w").none(), nb::arg("b").none(), nb::arg("seq_len").none(),
      nb::arg("head_dim").none(), nb::arg("stride_h").none() = 1, nb::arg("stride_w").none() = 1,
      nb::arg("pad_h").none() = 0, nb::arg("pad_w").none() = 0, nb::arg("device") = none,
      nb::kw_only(), nb::arg("activation").none() = "relu", nb::arg("causal").none() = false,
      nb::arg("scale") = none, nb::arg("graph").none() = false, nb::arg("policy") = none);
  m.def("_session_live_bytes", &lc::session_live_bytes,
        "Bytes held by all open resident sessions of the process.");
}

}  // namespace lcpy
