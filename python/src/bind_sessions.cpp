// Resident sessions and the integrated conv -> attention op:
//   matmul2d_resident_session(a, b, device=None, *, policy=None, upload=None, use_graph=False)
//   attention2d_resident_session(q, k, v, causal=False, device=None, *, scale=None, ...)
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

namespace lcpy {

namespace {

lc::ExecutionPolicy session_policy(nb::handle device, nb::handle policy, nb::handle upload,
                                   const char* op) {
  lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  if (!upload.is_none()) p.upload = lc::parse_upload(nb::cast<std::string>(upload), op);
  else if (policy.is_none() && p.upload == lc::UploadMode::always) p.upload = lc::UploadMode::once;
  p.validate(op);
  return p;
}

float scale_value(nb::handle scale, const char* op) {
  if (scale.is_none()) return 0.0f;
  const float s = nb::cast<float>(scale);
  if (!(s > 0.0f)) lc::throw_value(op, "scale must be > 0 (or None for 1/sqrt(head_dim))");
  return s;
}

// Converts the per-call inputs and `out`, then runs `f(inputs, out)` without the GIL.
template <class F>
void with_args(std::initializer_list<std::pair<nb::handle, const char*>> in, nb::handle out_obj,
               const char* op, F&& f) {
  Arg args[4];
  std::vector<const lc::Tensor*> ptrs;
  int i = 0;
  for (const auto& [h, name] : in) {
    to_arg(h, op, name, args[i]);
    ptrs.push_back(&args[i].t);
    ++i;
  }
  Arg out;
  to_arg(out_obj, op, "out", out);
  nb::gil_scoped_release nogil;
  f(ptrs, out.t);
}

nb::dict stats_dict(const lc::ResidentSession& s) {
  const lc::SessionStats st = s.stats();
  nb::dict d;
  d["uploads"] = st.uploads;
  d["launches"] = st.launches;
  d["syncs"] = st.syncs;
  d["downloads"] = st.downloads;
  d["graph_replays"] = st.graph_replays;
  return d;
}

lc::ConvAttentionParams conv_attn_params(std::int64_t seq_len, std::int64_t head_dim, int sh,
                                         int sw, int ph, int pw, const std::string& activation,
                                         bool causal, nb::handle scale, const char* op) {
  lc::ConvAttentionParams prm;
  prm.seq_len = seq_len;
  prm.head_dim = head_dim;
  prm.stride_h = sh;
  prm.stride_w = sw;
  prm.pad_h = ph;
  prm.pad_w = pw;
  prm.act = lc::parse_activation(activation, op);
  prm.causal = causal;
  prm.scale = scale_value(scale, op);
  return prm;
}

nb::object py_conv_attention(nb::handle x_, nb::handle w_, nb::handle b_, std::int64_t seq_len,
                             std::int64_t head_dim, int sh, int sw, int ph, int pw,
                             nb::handle device, const std::string& activation, bool causal,
                             nb::handle scale, bool graph, nb::handle policy) {
  static constexpr const char* op = "conv_attention_nchw";
  Arg x, w, b;
  to_arg(x_, op, "x", x);
  to_arg(w_, op, "weight", w);
  const bool has_b = to_opt_arg(b_, op, "bias", b);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  lc::ConvAttentionParams prm =
      conv_attn_params(seq_len, head_dim, sh, sw, ph, pw, activation, causal, scale, op);
  prm.graph = graph;
  const lc::Tensor* bias = has_b ? &b.t : nullptr;
  if (!x.from_lc && !w.from_lc && !(has_b && b.from_lc) && p.download) {
    lc::Tensor view;
    nb::object arr = new_numpy(lc::conv_attention_nchw_out_shape(x.t, w.t, bias, prm), view);
    nb::gil_scoped_release nogil;
    lc::conv_attention_nchw_into(x.t, w.t, bias, prm, view, p);
    return arr;
  }
  lc::Tensor r;
  {
    nb::gil_scoped_release nogil;
    r = lc::conv_attention_nchw(x.t, w.t, bias, prm, p);
  }
  return wrap_tensor(std::move(r));
}

nb::object py_conv_attention_into(nb::handle x_, nb::handle w_, nb::handle b_, nb::handle out_,
                                  std::int64_t seq_len, std::int64_t head_dim, int sh, int sw,
                                  int ph, int pw, nb::handle device, const std::string& activation,
                                  bool causal, nb::handle scale, bool graph, nb::handle policy) {
  static constexpr const char* op = "conv_attention_nchw";
  Arg x, w, b, out;
  to_arg(x_, op, "x", x);
  to_arg(w_, op, "weight", w);
  const bool has_b = to_opt_arg(b_, op, "bias", b);
  to_arg(out_, op, "out", out);
  const lc::ExecutionPolicy p = resolve_policy(device, policy, op);
  lc::ConvAttentionParams prm =
      conv_attn_params(seq_len, head_dim, sh, sw, ph, pw, activation, causal, scale, op);
  prm.graph = graph;
  {
    nb::gil_scoped_release nogil;
    lc::conv_attention_nchw_into(x.t, w.t, has_b ? &b.t : nullptr, prm, out.t, p);
  }
  return nb::borrow(out_);
}

}  // namespace

void register_sessions(nb::module_& m) {
  using lc::ResidentSession;
  nb::class_<ResidentSession>(m, "ResidentSession",
      "A resident session: inputs uploaded once, launches only, sync/download on request. "
      "Use as a context manager or call close().")
      .def("sync", [](ResidentSession& s) {
        nb::gil_scoped_release nogil;
        s.sync();
      }, "Waits for the queued launches.")
      .def("download_into", [](ResidentSession& s, nb::handle out_obj) {
        Arg out;
        to_arg(out_obj, s.op(), "out", out);
        {
          nb::gil_scoped_release nogil;
          s.download_into(out.t);
        }
        return nb::borrow(out_obj);
      }, nb::arg("out"), "Synchronises and copies the last result into out.")
      .def("close", [](ResidentSession& s) { s.close(); },
           "Frees the session's device memory; later calls raise ValueError.")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def("__exit__", [](ResidentSession& s, nb::handle, nb::handle, nb::handle) {
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
      .def("start_into", [](lc::Matmul2dSession& s, nb::handle a, nb::handle b, nb::handle out) {
        with_args({{a, "a"}, {b, "b"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o) { s.start_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("a"), nb::arg("b"), nb::arg("out"))
      .def("run_into", [](lc::Matmul2dSession& s, nb::handle a, nb::handle b, nb::handle out) {
        with_args({{a, "a"}, {b, "b"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o) { s.run_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("a"), nb::arg("b"), nb::arg("out"))
      .def("run_batch_sync_no_download_into",
           [](lc::Matmul2dSession& s, nb::handle a, nb::handle b, nb::handle out, std::int64_t n) {
             with_args({{a, "a"}, {b, "b"}}, out, s.op(), [&](const auto& in, lc::Tensor& o) {
               s.run_batch_sync_no_download_into(in, o, n);
             });
           }, nb::arg("a"), nb::arg("b"), nb::arg("out"), nb::arg("n"))
      .def_prop_ro("gemm_mode", &lc::Matmul2dSession::gemm_mode);

  m.def("matmul2d_resident_session",
        [](nb::handle a_, nb::handle b_, nb::handle device, nb::handle policy, nb::handle upload,
           bool use_graph) {
          static constexpr const char* op = "matmul2d_resident_session";
          Arg a, b;
          to_arg(a_, op, "a", a);
          to_arg(b_, op, "b", b);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          nb::gil_scoped_release nogil;
          return std::make_unique<lc::Matmul2dSession>(a.t, b.t, p, use_graph);
        },
        nb::arg("a"), nb::arg("b"), nb::arg("device") = nb::none(), nb::kw_only(),
        nb::arg("policy") = nb::none(), nb::arg("upload") = nb::none(),
        nb::arg("use_graph") = false,
        "A resident matmul2d session for a[m,k] @ b[k,n] (see ResidentSession).");

  // ---- attention ----
  nb::class_<lc::Attention2dSession, ResidentSession>(m, "Attention2dResidentSession")
      .def("start_into", [](lc::Attention2dSession& s, nb::handle q, nb::handle k, nb::handle v,
                            nb::handle out) {
        with_args({{q, "q"}, {k, "k"}, {v, "v"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o) { s.start_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"))
      .def("run_into", [](lc::Attention2dSession& s, nb::handle q, nb::handle k, nb::handle v,
                          nb::handle out) {
        with_args({{q, "q"}, {k, "k"}, {v, "v"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o) { s.run_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"))
      .def("run_batch_sync_no_download_into",
           [](lc::Attention2dSession& s, nb::handle q, nb::handle k, nb::handle v, nb::handle out,
              std::int64_t n) {
             with_args({{q, "q"}, {k, "k"}, {v, "v"}}, out, s.op(),
                       [&](const auto& in, lc::Tensor& o) {
                         s.run_batch_sync_no_download_into(in, o, n);
                       });
           }, nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("out"), nb::arg("n"));

  m.def("attention2d_resident_session",
        [](nb::handle q_, nb::handle k_, nb::handle v_, bool causal, nb::handle device,
           nb::handle scale, nb::handle policy, nb::handle upload, bool use_graph) {
          static constexpr const char* op = "attention2d_resident_session";
          Arg q, k, v;
          to_arg(q_, op, "q", q);
          to_arg(k_, op, "k", k);
          to_arg(v_, op, "v", v);
          const float sc = scale_value(scale, op);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          nb::gil_scoped_release nogil;
          return std::make_unique<lc::Attention2dSession>(q.t, k.t, v.t, causal, sc, p, use_graph);
        },
        nb::arg("q"), nb::arg("k"), nb::arg("v"), nb::arg("causal") = false,
        nb::arg("device") = nb::none(), nb::kw_only(), nb::arg("scale") = nb::none(),
        nb::arg("policy") = nb::none(), nb::arg("upload") = nb::none(),
        nb::arg("use_graph") = false,
        "A resident attention2d session for q[sq,d], k[sk,d], v[sk,dv].");

  // ---- conv -> attention ----
  nb::class_<lc::ConvAttentionSession, ResidentSession>(m, "ConvAttentionResidentSession")
      .def("start_into", [](lc::ConvAttentionSession& s, nb::handle x, nb::handle out) {
        with_args({{x, "x"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o) { s.start_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("x"), nb::arg("out"))
      .def("run_into", [](lc::ConvAttentionSession& s, nb::handle x, nb::handle out) {
        with_args({{x, "x"}}, out, s.op(),
                  [&](const auto& in, lc::Tensor& o) { s.run_into(in, o); });
        return nb::borrow(out);
      }, nb::arg("x"), nb::arg("out"))
      .def("run_batch_sync_no_download_into",
           [](lc::ConvAttentionSession& s, nb::handle x, nb::handle out, std::int64_t n) {
             with_args({{x, "x"}}, out, s.op(), [&](const auto& in, lc::Tensor& o) {
               s.run_batch_sync_no_download_into(in, o, n);
             });
           }, nb::arg("x"), nb::arg("out"), nb::arg("n"));

  m.def("conv_attention_resident_session",
        [](nb::handle x_, nb::handle w_, nb::handle b_, std::int64_t seq_len, std::int64_t head_dim,
           int sh, int sw, int ph, int pw, nb::handle device, const std::string& activation,
           bool causal, nb::handle scale, nb::handle policy, nb::handle upload, bool use_graph) {
          static constexpr const char* op = "conv_attention_resident_session";
          Arg x, w, b;
          to_arg(x_, op, "x", x);
          to_arg(w_, op, "weight", w);
          const bool has_b = to_opt_arg(b_, op, "bias", b);
          const lc::ConvAttentionParams prm =
              conv_attn_params(seq_len, head_dim, sh, sw, ph, pw, activation, causal, scale, op);
          const lc::ExecutionPolicy p = session_policy(device, policy, upload, op);
          nb::gil_scoped_release nogil;
          return std::make_unique<lc::ConvAttentionSession>(x.t, w.t, has_b ? &b.t : nullptr, prm,
                                                            p, use_graph);
        },
        nb::arg("x"), nb::arg("w"), nb::arg("b").none(), nb::arg("seq_len"), nb::arg("head_dim"),
        nb::arg("stride_h") = 1, nb::arg("stride_w") = 1, nb::arg("pad_h") = 0,
        nb::arg("pad_w") = 0, nb::arg("device") = nb::none(), nb::kw_only(),
        nb::arg("activation") = "relu", nb::arg("causal") = false, nb::arg("scale") = nb::none(),
        nb::arg("policy") = nb::none(), nb::arg("upload") = nb::none(),
        nb::arg("use_graph") = false,
        "A resident conv->attention session: weight and bias resident, x per call; methods "
        "take (x, out).");

  m.def("conv_attention_nchw", &py_conv_attention, nb::arg("x"), nb::arg("w"), nb::arg("b").none(),
        nb::arg("seq_len"), nb::arg("head_dim"), nb::arg("stride_h") = 1, nb::arg("stride_w") = 1,
        nb::arg("pad_h") = 0, nb::arg("pad_w") = 0, nb::arg("device") = nb::none(), nb::kw_only(),
        nb::arg("activation") = "relu", nb::arg("causal") = false, nb::arg("scale") = nb::none(),
        nb::arg("graph") = false, nb::arg("policy") = nb::none(),
        "conv2d_nchw(+activation) -> the flattened output read cyclically into [seq_len, "
        "head_dim] (api.qkv_arrange) -> self-attention (q=k=v), on one device; x must be one "
        "image. graph=True replays the chain as one cached CUDA graph (CUDA only).");
  m.def("conv_attention_nchw_into", &py_conv_attention_into, nb::arg("x"), nb::arg("w"),
        nb::arg("b").none(), nb::arg("out"), nb::arg("seq_len"), nb::arg("head_dim"),
        nb::arg("stride_h") = 1, nb::arg("stride_w") = 1, nb::arg("pad_h") = 0,
        nb::arg("pad_w") = 0, nb::arg("device") = nb::none(), nb::kw_only(),
        nb::arg("activation") = "relu", nb::arg("causal") = false, nb::arg("scale") = nb::none(),
        nb::arg("graph") = false, nb::arg("policy") = nb::none());
  m.def("_session_live_bytes", &lc::session_live_bytes,
        "Bytes held by all open resident sessions of the process.");
}

}  // namespace lcpy
