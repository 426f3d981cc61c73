// Registration functions of the binding files; module.cpp calls them in order.
#pragma once

#include <nanobind/nanobind.h>

namespace nb = nanobind;

namespace lcpy {
void register_errors(nb::module_& m);
void register_tensor(nb::module_& m);
void register_runtime(nb::module_& m);
// bind_devices.cpp: device index queries, lc.Stream, lc.Event, Tensor.record_stream.
void register_devices(nb::module_& m);
void register_policy(nb::module_& m);
void register_ops(nb::module_& m);
// bind_attention.cpp: attention / attention_into (batched multi-head, grouped-query).
void register_attention(nb::module_& m);
// bind_lstm.cpp: lstm / lstm_into (one LSTM layer, three results).
void register_lstm(nb::module_& m);
void register_trace(nb::module_& m);
void register_sessions(nb::module_& m);
struct Arg;
// bind_attention.cpp: the attention mask argument: None (false), an lc.Tensor / array of int32 /
// int64 / float, or a numpy boolean array (converted to int32; `hold` keeps the conversion).
bool mask_arg(nb::handle obj, const char* op, Arg& out, nb::object& hold);
void register_autotune(nb::module_& m);
// bind_graph.cpp: lc.GraphIR (the Graph IR, include/lightning_core/graph.h).
void register_graph(nb::module_& m);
// lc._set_doc: the numpydoc docstrings of python/lightning_core/_docs.py (bind_docs.cpp).
void register_docs(nb::module_& m);
// Library messages -> RuntimeWarning / the "lightning_core" logger (bind_logging.cpp).
void register_logging(nb::module_& m);
// bind_distributed.cpp: the native half of lc.distributed (NCCL communicators, work handles).
void register_distributed(nb::module_& m);
// Last: an error overload for every public op (wrong arity or keyword -> TypeError "[op] ...").
void register_argument_errors(nb::module_& m);
}  // namespace lcpy
