"""numpydoc docstrings of the native (C++) functions and classes, applied at import.

The bindings give each op a one-line description; this module turns it into a numpydoc
docstring (summary, Parameters, Returns, Raises) from the function's real signature and the
tables below, and installs it with ``_lightning_core._set_doc`` (nanobind function objects have
a read-only ``__doc__``). Parameters are described once by name (``PARAMS``); a function whose
parameter means something else overrides it in ``DOCS``. A parameter found in no table is
described as "see the summary"; tests/python/test_docstrings.py fails on that, naming the
function, so a new op gets real text.

Costs nothing on the call path: runs once, at ``import lightning_core``.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Callable

from . import _lightning_core as _C

_ARRAY = "array_like or Tensor"

# name -> (type, description)
PARAMS: dict[str, tuple[str, str]] = {
    "a": (_ARRAY, "First operand (numpy array, lc.Tensor, nested list or scalar)."),
    "b": (_ARRAY, "Second operand (numpy array, lc.Tensor, nested list or scalar)."),
    "x": (_ARRAY, "Input."),
    "q": (_ARRAY, "Queries ``[sq, d]`` (float32, float16 or bfloat16)."),
    "k": (_ARRAY, "Keys ``[sk, d]``, q's dtype."),
    "v": (_ARRAY, "Values ``[sk, dv]``, q's dtype."),
    "weight": (_ARRAY, "Weight, the input's dtype."),
    "w": (_ARRAY, "Convolution weight ``[oc, c, kh, kw]`` (float32)."),
    "bias": (_ARRAY + " or None", "Bias added to the result (None: no bias)."),
    "gamma": (_ARRAY + " or None", "Scale ``[C]`` in x's dtype (None: ones)."),
    "beta": (_ARRAY + " or None", "Shift ``[C]`` in x's dtype (None: zeros)."),
    "ids": (_ARRAY, "Row indices, int32 or int64, any shape; each in ``[0, V)``."),
    "residual": (_ARRAY + " or None", "Added to the product before the activation, the "
                 "result's shape (None: nothing added)."),
    "out": ("ndarray or Tensor", "Output buffer: exactly the result's shape and dtype, "
            "C-contiguous and writable. Left untouched when the call raises."),
    "device": ("str or None", 'Where to run: "auto" (the runtime decides by size and '
               'where the data is), "cpu", "cuda" (the current GPU, or the GPU the inputs are on), '
               '"cuda:N" or "metal". None: the policy\'s device.'),
    "policy": ("ExecutionPolicy or None", "Policy for this call (None: the innermost "
               "``with lc.policy(...)``, else the process default)."),
    "eps": ("float", "Added to the variance before the square root."),
    "causal": ("bool", "Mask keys after each query's position (query i sees keys 0..i)."),
    "scale": ("float or None", "Multiplier of q k^T (None: 1/sqrt(head_dim))."),
    "activation": ("str", 'Activation applied to the result: "none", "relu" or "gelu" (the tanh '
                   'form); linear also takes "gelu_erf" (the exact erf form).'),
    "approximate": ("str", '"tanh" (the default) or "none" (the exact erf form).'),
    "alpha": ("float", "Scalar multiplier."),
    "stride_h": ("int", "Vertical stride (>= 1)."),
    "stride_w": ("int", "Horizontal stride (>= 1)."),
    "pad_h": ("int", "Zero padding above and below (>= 0)."),
    "pad_w": ("int", "Zero padding left and right (>= 0)."),
    "seq_len": ("int", "Rows of the attention input read from the conv output."),
    "head_dim": ("int", "Columns (head dimension) of the attention input."),
    "graph": ("bool", "Replay the chain as one cached CUDA graph (CUDA only)."),
    "upload": ("str or None", 'Override of the policy\'s upload rule: "always", "once" '
               'or "never" (None: the policy\'s).'),
    "use_graph": ("bool", "Capture the launches in a CUDA graph and replay it per run."),
    "force": ("bool", "Measure again even when the auto-tune cache holds a calibration."),
    "enabled": ("bool", "On (True) or off (False)."),
    "events": ("int", "Ring-buffer capacity in events (> 0); older events are dropped first."),
    "path": ("str", "File to write."),
    "group_by": ("str", '"op", "op_path" (op|selected_device|direct_or_fallback) or '
                 '"device".'),
    "group_sort_by": ("str", "A numeric group field: count, total_ns, mean_ns, min_ns, max_ns, "
                      "total_delta_next_ns, mean_delta_next_ns, device_count, device_total_ns, "
                      "device_mean_ns, bytes or share."),
    "group_descending": ("bool", "Sort the groups largest first."),
    "hotspot_top_k": ("int", "How many single slowest events to list."),
    "fields": ("dict", "Cost-model fields to set (see ``cost_model()`` for the names)."),
    "op": ("str", 'Op name, e.g. "matmul2d".'),
    "shapes": ("str", 'Shape key of the entry, e.g. "64x64x64".'),
    "choice": ("str", "The chosen variant to store."),
    "dtype": ("str", 'Storage dtype: "float32", "float16" or "bfloat16".'),
    "extra": ("str", "Further fields stored with the entry (as strings)."),
    "m": ("int", "Rows of a (and of the result)."),
    "n": ("int", "Columns of b (and of the result)."),
    "mode": ("str", "A GEMM mode of ``gemm_modes()``."),
    "trans_b": ("bool", "b is given transposed (``[n, k]``)."),
    "precision": ("str", '"fp32", "tf32" or "bf16".'),
}

_OP_RAISES = [
    ("TypeError", "An input's dtype is not supported by the op, the inputs' dtypes differ, or "
                  "an argument has the wrong type."),
    ("ValueError", "Wrong shape, ndim, device or policy (the message names the op, the shapes "
                   "and how to fix the call), or an explicit device that is not available."),
    ("MemoryError", "The device or host is out of memory."),
    ("BackendError", "CUDA, cuBLAS or cuDNN failed (the runtime stays usable)."),
]
_INTO_RAISES = _OP_RAISES + [
    ("OutDTypeError", "``out`` has the wrong dtype (a TypeError and a ValueError).")]

_RESULT = ("ndarray or Tensor",
           "A new numpy array (in the dtype of the first array input) when every array input "
           "is a numpy array and the policy downloads results; else an lc.Tensor on the device "
           "the op ran on.")
_INTO_RESULT = ("ndarray or Tensor", "``out``, written in place.")


def _binary(sym: str, same_shape: bool) -> str:
    rule = "same shapes" if same_shape else "numpy broadcasting"
    return (f"Elementwise ``a {sym} b`` ({rule}; float32, float16, bfloat16, and float64 on "
            "the CPU).")


# Per-function entries: summary (when the binding has none or a better one is wanted),
# params (overrides of PARAMS), returns ((type, text) or None for no result), raises.
DOCS: dict[str, dict[str, Any]] = {
    "add": {"summary": _binary("+", False)},
    "sub": {"summary": _binary("-", False)},
    "mul": {"summary": _binary("*", False)},
    "div": {"summary": _binary("/", False) + " Division by zero follows IEEE (inf, nan)."},
    "vector_add": {"summary": _binary("+", True)},
    "vector_sub": {"summary": _binary("-", True)},
    "vector_mul": {"summary": _binary("*", True)},
    "matrix_sub": {"summary": _binary("-", True) + " The original's 2-D name."},
    "vector_scale": {"summary": "Elementwise ``alpha * a``."},
    "relu": {"summary": "Elementwise ``max(a, 0)`` (NaN stays NaN)."},
    "conv2d_nchw": {"params": {
        "x": (_ARRAY, "Images ``[n, c, h, w]`` (float32)."),
        "weight": (_ARRAY, "Filters ``[oc, c, kh, kw]`` (float32)."),
        "bias": (_ARRAY + " or None", "Per output channel ``[oc]`` (None: no bias).")}},
    "conv_attention_nchw": {"params": {
        "x": (_ARRAY, "One image ``[1, c, h, w]`` (float32)."),
        "b": (_ARRAY + " or None", "Conv bias ``[oc]`` (None: no bias).")}},
    "conv_attention_resident_session": {"summary": "A resident conv2d -> attention session "
                                        "(see conv_attention_nchw and ResidentSession)."},
    "linear": {"params": {
        "x": (_ARRAY, "Input ``[..., in]``."),
        "weight": (_ARRAY, "Weight ``[out, in]`` (torch's layout), x's dtype."),
        "bias": (_ARRAY + " or None", "Bias ``[out]`` (None: no bias).")}},
    "layernorm": {"params": {
        "x": (_ARRAY, "Input ``[..., C]``, normalised over C."),
        "residual": (_ARRAY + " or None", "Added to x before normalising (the fused residual "
                     "add: y = layernorm(x + residual), summed in float32 for 16-bit storage); "
                     "exactly x's shape and dtype, any strides (None: nothing added).")}},
    "softmax": {"params": {
        "x": (_ARRAY, "Input ``[..., C]``; softmax over C of x * scale + mask."),
        "scale": ("float or None", "Multiplier of x, finite and > 0, applied as the row is read "
                  "(the fused attention-score scale; None: 1)."),
        "mask": (_ARRAY + " or None", "Additive mask that broadcasts against x (numpy rules): its "
                 "last dimension is x's, the others x's sizes or 1 in at most two runs of x's "
                 "sizes, e.g. ``[S, S]``, ``[S]``, ``[B, 1, 1, S]`` (a key-padding mask), "
                 "``[B, 1, S, S]`` or ``[1, H, 1, S]`` for scores ``[B, H, S, S]``, read in place "
                 "(never expanded); x's dtype, any strides; -inf entries weigh 0 (None: nothing "
                 "added).")}},
    "gelu": {"params": {"a": (_ARRAY, "Input.")}},
    "elementwise_program": {
        "summary": "One kernel evaluating a small program per element of the numpy broadcast of "
                   "up to six inputs (docs/graph.md, \"Elementwise programs\"): e.g. "
                   "``elementwise_program('sigmoid x0; mul x0 t0; add t1 x1', x, b)`` is "
                   "``x * sigmoid(x) + b`` in one pass over memory. The result has x0's dtype; "
                   "computed in float32 (float64 for float64, CPU only).",
        "params": {
            "program": ("str", "Instructions ``op operand [operand]`` separated by ``;`` or "
                        "newlines, at most 16; operands ``x<k>`` (input k), ``t<i>`` (the result "
                        "of instruction i) or numbers (at most 8 distinct). Unary: neg abs exp "
                        "log sqrt rsqrt tanh sigmoid relu gelu gelu_erf silu; binary: add sub mul "
                        "div max min. The result is the last instruction's. A malformed program "
                        "is a ValueError naming the instruction."),
            "x0": (_ARRAY, "Input 0 (its dtype is the result's); any shape that broadcasts."),
            "x1": (_ARRAY + " or None", "Input 1 (None: not given)."),
            "x2": (_ARRAY + " or None", "Input 2 (None: not given)."),
            "x3": (_ARRAY + " or None", "Input 3 (None: not given)."),
            "x4": (_ARRAY + " or None", "Input 4 (None: not given)."),
            "x5": (_ARRAY + " or None", "Input 5 (None: not given)."),
        }},
    "embedding": {"params": {"weight": (_ARRAY, "Table ``[V, D]`` (float32, float16 or "
                                        "bfloat16); the result has its dtype.")}},
    "matmul2d": {"params": {"a": (_ARRAY, "Left matrix ``[m, k]``."),
                            "b": (_ARRAY, "Right matrix ``[k, n]``, a's dtype.")}},
    "matmul": {"params": {"a": (_ARRAY, "Left operand (1-D or [..., m, k])."),
                          "b": (_ARRAY, "Right operand (1-D or [..., k, n]), a's dtype.")}},
    "backend_name": {"returns": ("str", '"cuda" or "cpu".')},
    "cuda_available": {"summary": "Whether a CUDA device is usable (a driver and a GPU this "
                                  "build supports).", "returns": ("bool", "")},
    "metal_available": {"returns": ("bool", "False.")},
    "available_devices": {"summary": "Device strings usable here.",
                          "returns": ("list of str", '"cpu", plus "cuda" when a GPU is usable.')},
    "build_info": {"returns": ("dict", "String fields: version, cuda_compiled, cuda_device, "
                                       "cpu_blas, ...")},
    "memory_info": {"params": {"device": ("str", 'The device, "cuda" (the current GPU) or "cuda:N".')},
                    "returns": ("dict", "free, total, live_bytes, cached_bytes (bytes).")},
    "last_op_report": {"returns": ("dict", "op, device, path, reason (filled when explain is on), "
                                           "impl (the backend's implementation where it has "
                                           "several: CUDA attention \"cudnn\" / \"own\").")},
    "set_attention_impl": {"params": {"impl": ("str", '"auto", "cudnn" or "own".')}},
    "attention_impl": {"returns": ("str", '"auto", "cudnn" or "own".')},
    "get_default_policy": {"returns": ("ExecutionPolicy", "")},
    "set_default_policy": {"params": {"policy": ("ExecutionPolicy", "The new default.")}},
    "current_policy": {"returns": ("ExecutionPolicy", "")},
    "cost_model": {"returns": ("dict", "Field name -> value.")},
    "cost_model_fixed": {"summary": "Whether set_cost_model() fixed the cost model (until "
                                    "reset_cost_model()).", "returns": ("bool", "")},
    "calibrate": {"returns": ("dict", "The measured (or loaded) rates.")},
    "calibration_enabled": {"summary": "Whether the cost model calibrates itself on first use "
                                       "(LC_CALIBRATE).", "returns": ("bool", "")},
    "autotune_enabled": {"returns": ("bool", "")},
    "autotune_cache_dir": {"summary": "The directory of the auto-tune cache.",
                           "returns": ("str", "")},
    "autotune_cache_path": {"returns": ("str", "")},
    "autotune_cache_entries": {"returns": ("list of dict", "One dict of fields per entry.")},
    "autotune_measurement_count": {"returns": ("int", "")},
    "autotune_lookup": {"params": {"device": ("str", '"cpu" or "cuda".')},
                        "returns": ("dict or None", "The entry's fields, or None.")},
    "autotune_record": {"params": {"device": ("str", '"cpu" or "cuda".')}},
    "device_fingerprint": {"summary": "The identity of a device the auto-tune cache keys its "
                                      "entries by.",
                           "params": {"device": ("str", '"cpu" or "cuda".')},
                           "returns": ("str", "")},
    "gemm_modes": {"returns": ("list of str", "")},
    "gemm_mode_precision": {"summary": "The policy precision that goes with a GEMM mode.",
                            "returns": ("str", '"fp32", "tf32" or "bf16".')},
    "gemm_prepare": {"params": {"k": ("int", "Inner dimension.")},
                     "returns": ("dict", "The chosen algorithm and its timing.")},
    "gemm_recorded_mode": {"summary": "The GEMM mode recorded for this shape and precision by "
                                      "gemm_prepare, or None.",
                           "params": {"k": ("int", "Inner dimension.")},
                           "returns": ("str or None", "")},
    "runtime_trace_enabled": {"summary": "Whether op tracing is on.", "returns": ("bool", "")},
    "runtime_trace_capacity": {"summary": "The trace ring buffer's capacity in events.",
                               "returns": ("int", "")},
    "runtime_trace_device_timing": {"summary": "Whether traced CUDA ops record device time "
                                               "(CUDA events).", "returns": ("bool", "")},
    "runtime_trace_dropped": {"returns": ("int", "")},
    "runtime_trace_size": {"returns": ("int", "")},
    "runtime_trace_events": {"returns": ("list of dict", "One dict per event, oldest first.")},
    "runtime_trace_timeline": {"returns": ("dict", "groups, hotspots, event_count, dropped, "
                                                   "span_ns, ...")},
    "runtime_trace_export_chrome": {"returns": ("int", "The number of events written.")},
    "runtime_trace_chrome_json": {"returns": ("str", "")},
    "runtime_trace_group_fields": {"returns": ("list of str", "")},
    "attention": {"params": {
        "q": (_ARRAY, "Queries ``[B, H, Sq, D]`` (or ``[H, Sq, D]``, ``[Sq, D]``)."),
        "k": (_ARRAY, "Keys ``[B, Hk, Sk, D]``, q's dtype (Hk divides H: grouped-query)."),
        "v": (_ARRAY, "Values ``[B, Hk, Sk, Dv]``, q's dtype."),
        "causal": ("bool", "Causal mask, bottom-right aligned."),
        "mask": (_ARRAY + " or None", "Boolean ``[B, Sk]`` key padding (True = attend) or an "
                 "additive mask broadcastable to ``[B, H, Sq, Sk]`` (None: no mask)."),
        "return_lse": ("bool", "Also return the log-sum-exp ``[B, H, Sq]`` (float32): the "
                       "result is then ``(out, lse)``.")},
        "returns": ("ndarray or Tensor, or (out, lse)", _RESULT[1] + " With return_lse=True, "
                    "the tuple (out, lse).")},
    "attention_backward": {"params": {
        "dout": (_ARRAY, "Gradient of the loss with respect to the forward's output "
                 "(out's shape, q's dtype)."),
        "q": (_ARRAY, "The forward's queries ``[B, H, Sq, D]`` (or ``[H, Sq, D]``, ``[Sq, D]``)."),
        "k": (_ARRAY, "The forward's keys ``[B, Hk, Sk, D]``, q's dtype."),
        "v": (_ARRAY, "The forward's values ``[B, Hk, Sk, Dv]``, q's dtype."),
        "out": (_ARRAY, "The forward's output ``[B, H, Sq, Dv]``."),
        "lse": (_ARRAY, "The forward's log-sum-exp ``[B, H, Sq]`` (float32, "
                "``attention(..., return_lse=True)``)."),
        "causal": ("bool", "The forward's causal flag (bottom-right aligned)."),
        "mask": (_ARRAY + " or None", "The forward's mask (boolean ``[B, Sk]`` key padding "
                 "or additive, broadcastable to ``[B, H, Sq, Sk]``; None: no mask)."),
        "scale": ("float or None", "The forward's scale (None: 1/sqrt(head_dim))."),
        "device": ("str or None", '"cpu", "cuda" (float32 / float16 / bfloat16, head dims up '
                   'to 256) or "auto". None: the policy\'s device.'),
        "dq": ("ndarray or Tensor", "Output for dq: q's shape and dtype, C-contiguous, "
               "writable. Left untouched when the call raises."),
        "dk": ("ndarray or Tensor", "Output for dk: k's shape, q's dtype."),
        "dv": ("ndarray or Tensor", "Output for dv: v's shape, q's dtype.")},
        "returns": ("tuple", "(dq, dk, dv): numpy arrays when every input is one, else "
                    "lc.Tensors; the ``_into`` form returns its dq, dk, dv."),
        "raises": [("TypeError", "A non-float dtype, mixed dtypes, or an lse that is not "
                    "float32."),
                   ("ValueError", "Shapes that do not match the forward's (the message names "
                    "the op and the shapes).")]},
    "lstm": {
        "summary": "One LSTM layer over a sequence, torch.nn.LSTM's layout and gate order "
                   "(i, f, g, o): ``(y, h_n, c_n)``. One GEMM ``x w_ih^T`` for every step, then "
                   "per step one GEMM ``h w_hh^T`` and one fused pointwise pass (float32 "
                   "accumulation and cell state); on CUDA the step loop replays as one captured "
                   "CUDA graph (docs/lstm.md).",
        "params": {
            "x": (_ARRAY, "Input sequence ``[T, B, I]`` (``[B, T, I]`` with batch_first); "
                  "float32, float16 or bfloat16, the dtype of every other input."),
            "h0": (_ARRAY, "Initial hidden state ``[B, H]`` or ``[1, B, H]`` (torch's "
                   "``[num_layers, B, H]`` for one layer), x's dtype."),
            "c0": (_ARRAY, "Initial cell state, h0's shape and x's dtype."),
            "w_ih": (_ARRAY, "Input weights ``[4*H, I]`` (torch's ``weight_ih_l0``; rows "
                     "i, f, g, o)."),
            "w_hh": (_ARRAY, "Recurrent weights ``[4*H, H]`` (torch's ``weight_hh_l0``)."),
            "b_ih": (_ARRAY + " or None", "Input bias ``[4*H]`` (None: none)."),
            "b_hh": (_ARRAY + " or None", "Recurrent bias ``[4*H]`` (None: none)."),
            "batch_first": ("bool", "x is ``[B, T, I]`` and y ``[B, T, H]`` (torch's "
                            "batch_first=True)."),
            "y": ("ndarray or Tensor", "Output for y: ``[T, B, H]`` (``[B, T, H]`` with "
                  "batch_first), x's dtype, C-contiguous, writable. Left untouched when the "
                  "call raises."),
            "h_n": ("ndarray or Tensor", "Output for the final hidden state: h0's shape, x's "
                    "dtype."),
            "c_n": ("ndarray or Tensor", "Output for the final cell state: h0's shape, x's "
                    "dtype.")},
        "returns": ("tuple", "(y, h_n, c_n): every h_t ``[T, B, H]``, then h_T and c_T in h0's "
                    "shape (T == 0: y is empty and h_n / c_n are h0 / c0). numpy arrays when "
                    "every input is one and the policy downloads, else lc.Tensors where the op "
                    "ran; the ``_into`` form returns its y, h_n, c_n."),
        "raises": [("TypeError", "A non-float dtype, or inputs of different dtypes."),
                   ("ValueError", "Shapes that do not fit together (the message names the op, "
                    "every shape and the expected one), outputs that share memory, or an "
                    "explicit device that is not available.")]},
    "lstm_into": {
        "returns": ("tuple", "(y, h_n, c_n): the three output arguments, written in place."),
        "raises": [("TypeError", "A non-float dtype, inputs of different dtypes, or an output "
                    "of another dtype (OutDTypeError)."),
                   ("ValueError", "Shapes that do not fit together, outputs of the wrong shape, "
                    "not C-contiguous or sharing memory (nothing is written).")]},
    "attention_resident_session": {
        "summary": "A resident batched attention session (lc.attention on resident q, k, v) "
                   "with the training surface forward / forward_into / train_step / "
                   "parameters (see AttentionTrainableSession).",
        "params": {
            "q": (_ARRAY, "Queries ``[B, H, Sq, D]`` (or ``[H, Sq, D]``, ``[Sq, D]``); its dtype "
                  "(float32, float16, bfloat16, float64 on the CPU) is the session's."),
            "k": (_ARRAY, "Keys ``[B, Hk, Sk, D]``, q's dtype (Hk divides H)."),
            "v": (_ARRAY, "Values ``[B, Hk, Sk, Dv]``, q's dtype."),
            "causal": ("bool", "Causal mask, bottom-right aligned."),
            "mask": (_ARRAY + " or None", "As lc.attention's mask; resident from creation "
                     "(None: no mask).")}},
    "ops": {"returns": ("list of str", "Op names, e.g. \"matmul2d\".")},
    "op_info": {"params": {"name": ("str", 'An op name of ``ops()``, e.g. "matmul2d".')},
                "returns": ("dict", "family, inputs, outputs, attributes (with defaults), "
                                    "dtypes per backend."),
                "raises": [("ValueError", "An unknown op name.")]},
    "op_infer": {"params": {
        "name": ("str", 'An op name of ``ops()``, e.g. "matmul2d".'),
        "shapes": ("sequence of sequence of int", "The input shapes, in "
                   "``op_info(name)['inputs']`` order (optional trailing inputs may be left "
                   "out)."),
        "dtype": ("str", 'Storage dtype, e.g. "float32".'),
        "batch_first": ("bool", "lstm: x is ``[B, T, I]`` and the result ``[B, T, H]``.")},
        "returns": ("tuple", "(result shape, dtype name)."),
        "raises": [("ValueError", "An unknown op, or shapes the op rejects.")]},
    "from_dlpack": {"summary": "A tensor over any DLPack producer's memory, no copy (numpy, "
                               "torch, CuPy, JAX; ``lc.from_dlpack(obj)``).",
                    "params": {"obj": ("object", "An object with ``__dlpack__`` / "
                                       "``__dlpack_device__``.")},
                    "returns": ("Tensor", "Shares obj's memory and keeps it alive."),
                    "raises": [("TypeError", "obj is no DLPack producer or has a dtype lc "
                                             "does not hold."),
                               ("ValueError", "A device lc cannot address.")]},
    "Stream": {"params": {"device": ("str", 'The device: "cuda" (the current GPU), "cuda:N" '
                                            'or "cpu" (a token: CPU work is in order).')},
               "raises": [("ValueError", "A device that does not exist or is unavailable.")]},
    "Event": {"params": {
        "enable_timing": ("bool", "Record times, so ``elapsed_time`` can be asked."),
        "device": ("str", 'The device whose streams it marks: "cuda", "cuda:N" or "cpu".')},
        "raises": [("ValueError", "A device that does not exist or is unavailable.")]},
    "current_stream": {"params": {"device": ("str", '"cuda" (the current GPU), "cuda:N" or "cpu".')},
                       "returns": ("Stream", "The calling thread's current stream there.")},
    "default_stream": {"params": {"device": ("str", '"cuda" (the current GPU), "cuda:N" or "cpu".')},
                       "returns": ("Stream", "The device's default stream.")},
    "set_stream": {"params": {"stream": ("Stream", "The stream to make current (its device "
                                                   "becomes the current device too).")}},
    "Tensor": {"params": {
        "data": (_ARRAY, "Data to copy (numpy array, lc.Tensor, DLPack producer, nested list "
                         "or scalar)."),
        "device": ("str", '"cpu", "cuda" (the current GPU) or "cuda:N".'),
        "dtype": ("str, numpy dtype or None", "float32, float64, float16, bfloat16 "
                  "(ml_dtypes.bfloat16), int32 or int64. None: float16 / bfloat16 / int32 / "
                  "int64 data keep their dtype, anything else becomes float32."),
        "share": ("bool", "Alias ``data`` (an lc.Tensor) instead of copying it.")},
        "raises": [("TypeError", "A dtype lc does not hold."),
                   ("ValueError", "An unknown or unavailable device.")]},
    "ExecutionPolicy": {"params": {
        "device": ("str", '"auto", "cpu", "cuda" or "cuda:N" (a GPU by number).'),
        "upload": ("str", '"always", "once" or "never": whether host inputs may be copied to '
                          "the GPU."),
        "download": ("bool", "Return results in host memory (numpy in, numpy out); False keeps "
                             "them on the device as lc.Tensor."),
        "sync": ("str", '"per_call", "batch" or "none": when the host waits for the GPU.'),
        "precision": ("str", '"fp32", "tf32" or "bf16": compute mode of float32 GEMMs.'),
        "fusion": ("bool", "Allow fused kernels (bias, activation, residual)."),
        "autotune": ("bool", "Allow measured kernel choices (cached per machine).")},
        "raises": [("ValueError", "An invalid value or combination (the message says which).")]},
}


def _signature(fn: Any) -> tuple[list[tuple[str, bool]], str | None]:
    """[(parameter, has_default)] and the return annotation of a native function's first
    overload that is not the ``(*args, **kwargs)`` error catcher."""
    for sig, _doc, _defaults in fn.__nb_signature__:
        if "(*args, **kwargs)" in sig:
            continue
        tree = ast.parse(re.sub(r"\\\d+", "...", sig) + ": ...")
        f = tree.body[0]
        assert isinstance(f, ast.FunctionDef)
        a = f.args
        pos = a.posonlyargs + a.args
        out = [(p.arg, i >= len(pos) - len(a.defaults)) for i, p in enumerate(pos)]
        out += [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
        if a.kwarg is not None:
            out.append((a.kwarg.arg, True))
        out = [p for p in out if p[0] != "self"]
        return out, (ast.unparse(f.returns) if f.returns is not None else None)
    return [], None


def _native_summary(fn: Any) -> str:
    for _sig, doc, _d in fn.__nb_signature__:
        if doc:
            return doc.strip()
    return ""


def _section(title: str, items: list[str]) -> list[str]:
    return ["", title, "-" * len(title)] + items


def compose(name: str, fn: Any, summary: str = "") -> str:
    """The numpydoc text for native function (or class constructor) ``fn`` named ``name``."""
    entry = DOCS.get(name, {})
    params, ret = _signature(fn)
    summary = entry.get("summary") or summary or _native_summary(fn)
    base = name[: -len("_into")] if name.endswith("_into") else None
    if not summary and base and hasattr(_C, base):
        summary = f"``{base}`` written into ``out`` (see ``{base}``)."
    lines = [summary or name]
    table = {**PARAMS, **DOCS.get(base or "", {}).get("params", {}), **entry.get("params", {})}
    if params:
        items = []
        for p, has_default in params:
            typ, text = table.get(p, ("object", "See the summary."))
            if p == "extra":
                p = "**extra"
            items.append(f"{p} : {typ}" + (", optional" if has_default and p != "**extra" else ""))
            items.append(f"    {text}")
        lines += _section("Parameters", items)
    is_op = any(p in ("a", "x", "q", "ids") for p, _ in params)
    returns = entry.get("returns")
    if returns is None and ret not in (None, "None"):
        if name.endswith("_into") and is_op:
            returns = _INTO_RESULT
        elif name.endswith("_resident_session"):
            cls = "".join(w.capitalize() for w in name[: -len("_resident_session")].split("_"))
            cls = cls.replace("2D", "2d") + "ResidentSession"
            returns = (cls if hasattr(_C, cls) else "ResidentSession",
                       "The session (use it as a context manager, or close() it).")
        elif is_op:
            returns = _RESULT
        else:
            returns = (ret, "")
    if returns is not None:
        typ, text = returns
        lines += _section("Returns", [typ] + ([f"    {text}"] if text else []))
    raises = entry.get("raises")
    if raises is None and is_op:
        raises = _INTO_RAISES if name.endswith("_into") else _OP_RAISES
    if raises:
        items = []
        for exc, text in raises:
            items += [exc, f"    {text}"]
        lines += _section("Raises", items)
    return "\n".join(lines) + "\n"


def apply(namespace: dict[str, Any]) -> None:
    """Installs the docstrings on the native functions and classes found in ``namespace``."""
    for name, obj in list(namespace.items()):
        if name.startswith("_"):
            continue
        tp = type(obj).__name__
        if tp in ("nb_func", "nb_method"):
            _C._set_doc(obj, compose(name, obj))
    for cls_name, factory in (("Matmul2dResidentSession", "matmul2d_resident_session"),
                              ("Attention2dResidentSession", "attention2d_resident_session"),
                              ("ConvAttentionResidentSession", "conv_attention_resident_session"),
                              ("AttentionResidentSession", "attention_resident_session")):
        if cls_name in namespace and not namespace[cls_name].__doc__:
            namespace[cls_name].__doc__ = (
                f"The session ``lc.{factory}(...)`` returns (not constructed directly): a "
                "ResidentSession with start_into / run_into / run_batch_sync_no_download_into "
                "for its op's inputs.")
    for cls_name in ("Tensor", "ExecutionPolicy", "Stream", "Event"):
        cls = namespace[cls_name]
        init = cls.__dict__["__init__"]
        summary = (cls.__doc__ or "").strip()
        cls.__doc__ = compose(cls_name, init, summary)
        _C._set_doc(init, compose(cls_name, init, "Initialise; see the class docstring."))

