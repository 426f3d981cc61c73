"""lightning_core.api: the integrated (pipeline) APIs with clean names.

Each pipeline runs its ops back to back on one device; on the GPU the intermediates stay in device
memory (no host round trip between blocks) and only the final result is downloaded, as the policy
asks. Where a block has a fused kernel it is used: linear's bias + activation run in the GEMM's
epilogue (cuBLASLt on CUDA), conv + ReLU in one kernel.

    conv_relu_nchw(x, w, b, stride_h=1, stride_w=1, pad_h=0, pad_w=0, device=None)
    conv_attention_torchstrong_nchw(x, w, b, seq_len, head_dim, ...)   conv -> QKV arrange -> attention
    ffn(x, w1, b1, w2, b2, activation="gelu")                           linear+act -> linear
    layernorm_linear(x, gamma, beta, w, b)                              LN -> projection

execution_mode="graph" (conv_attention_torchstrong_nchw, ffn, layernorm_linear) runs the pipeline as a
GraphIR (docs/graph.md), planned once per (shapes, dtypes, devices, device, policy) and cached,
replayed by the graph executor (one captured CUDA graph on a GPU, DirectGraph on the CPU); the
default "eager" runs the ops one by one.
    attention_train_step(q, k, v, target, lr, causal=..., mask=...)     attention + MSE + backward + SGD
"""

from __future__ import annotations

import collections
import functools
import numbers
import threading
import time
from typing import Any

import numpy as np

from . import _lightning_core as _lc

__all__ = [
    "conv_relu_nchw",
    "conv_attention_torchstrong_nchw",
    "conv_attention_torchstrong_nchw_ab_report",
    "qkv_arrange",
    "ffn",
    "layernorm_linear",
    "attention_train_step",
]


_chain_query = _lc._chain_device  # the native chain decision (tests replace it to fake a GPU)


def _named_errors(fn):
    """Argument errors of a pipeline (a keyword typo, a missing argument) name it like the ops'
    errors do: "[ffn] ffn() got an unexpected keyword argument ...". Only errors raised by the
    call itself are renamed; errors from inside the pipeline pass through unchanged."""
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TypeError as e:
            tb = e.__traceback__
            if tb is not None and tb.tb_next is None and not str(e).startswith("["):
                raise TypeError(f"[{name}] {e}") from None
            raise

    return wrapper


def _on_gpu(x) -> bool:
    return isinstance(x, _lc.Tensor) and x.device != "cpu"


def _rows_by(x, w):
    """Shape of linear(x, w)'s result as a matrix (rows = x's leading dimensions; for placement
    queries), or None when x/w are odd."""
    try:
        rows = 1
        for d in x.shape[:-1]:
            rows *= int(d)
        return (rows, int(w.shape[0]))
    except Exception:
        return None


def _chain_device(blocks, base, data=(), device=None) -> str:
    """Where a chain runs: "cpu" or "cuda" (or the request itself when a block's shapes cannot
    be read: each op then decides and raises its own error). The rule is C++'s, written once
    (src/runtime/placement.h, choose_chain_device; docs/architecture.md, "Chains"): an explicit
    request is the first block's op-level decision; under "auto" no GPU or upload="never" with
    host data keeps the chain on the CPU, else the first block the op rule sends off the CPU
    decides for the whole chain. blocks: (op, tensors or shapes) pairs; data: every input of the
    chain (None for absent ones); device: the request (None: base.device). One native call
    (lc._chain_device): pipelines pay it on every call, except under an explicit "cpu",
    which the rule honours without reading the blocks (choose_device never second-guesses it)."""
    if (device if device is not None else base.device) == "cpu":
        return "cpu"
    on_gpu = host = False
    for t in data:  # plain loops: this runs on every pipeline call
        if t is None:
            continue
        if isinstance(t, _lc.Tensor) and t.device != "cpu":
            on_gpu = True
        else:
            host = True
    ops, shapes = [], []
    for op, ts in blocks:
        ops.append(op)
        s = []
        for t in ts:
            if t is None:
                continue
            if isinstance(t, _lc.Tensor):
                on_gpu = on_gpu or t.device != "cpu"
            s.append(t.shape if hasattr(t, "shape") else t)
        shapes.append(s)
    try:
        return _chain_query(ops, shapes, base, on_gpu, None, host, device)
    except TypeError:  # odd shapes surface from the op itself, with its own message
        return device if device is not None else base.device


# (device, upload, download, sync, precision, fusion, autotune) -> (inner, last) policies.
# ExecutionPolicy is immutable from Python, so the pair can be shared between calls.
_chain_policies: dict = {}


def _chain_base_device(op, device, policy, blocks=None, data=()) -> tuple[Any, str]:
    """(the base policy, the chain's device): the checks of device= and policy= and
    _chain_device's decision, for _chain_policy and the pipelines' graph mode."""
    if policy is not None and not isinstance(policy, _lc.ExecutionPolicy):
        raise TypeError(f"[{op}] policy must be an lc.ExecutionPolicy (or None for the current "
                        f"policy), got {type(policy).__name__}")
    if device is not None and not isinstance(device, str):
        raise TypeError(f"[{op}] device must be a string: \"auto\", \"cpu\", \"cuda\" or "
                        f"\"metal\", got {type(device).__name__}")
    base = policy if policy is not None else _lc.current_policy()
    return base, _chain_device(blocks or (), base, data, device)


def _chain_policy(op, device, policy, blocks=None, data=()) -> tuple[Any, Any]:
    """(policy for intermediate blocks, policy for the last block), from the chain rule of
    src/runtime/placement.h (lc._chain_device for the device, lc._chain_policies for the step
    policies; the same functions the C++ pipelines use).

    Intermediates keep results where they were computed (download=False), so a GPU chain never
    round-trips through the host; the last block follows the caller's policy. The whole chain
    gets one device (see _chain_device); on the CPU nothing moves (upload="always",
    download=True, fp32).
    """
    base, dev = _chain_base_device(op, device, policy, blocks, data)
    key = (dev, base.upload, base.download, base.sync, base.precision, base.fusion, base.autotune)
    pair = _chain_policies.get(key)
    if pair is None:
        pair = _chain_policies.setdefault(key, _lc._chain_policies(base, dev))
    return pair


def _host_result(out, inputs) -> Any:
    """numpy in -> numpy out: a host lc.Tensor result becomes a numpy array."""
    if isinstance(out, _lc.Tensor) and out.device == "cpu" and not any(isinstance(t, _lc.Tensor) for t in inputs):
        return out.numpy()
    return out


def _check_mode(op, execution_mode) -> bool:
    """True for "graph", False for "eager"; anything else is a ValueError naming the op."""
    if execution_mode == "eager":
        return False
    if execution_mode == "graph":
        return True
    raise ValueError(f"[{op}] execution_mode must be \"eager\" or \"graph\", got {execution_mode!r}")


# The pipelines' graphs (execution_mode="graph"): key -> a planned lc.GraphIR. Bounded, least
# recently used dropped. A GraphIR runs one call at a time (its own lock); the dict is touched
# under the GIL, and a miss builds and plans under _pipeline_lock.
_PIPELINE_GRAPHS_MAX = 16
_pipeline_graphs: collections.OrderedDict = collections.OrderedDict()
_pipeline_lock = threading.Lock()


def _run_pipeline_graph(op, attrs, names, data, dev, base, add_nodes):
    """Runs a pipeline as a cached GraphIR.

    names/data: the graph inputs (None: an absent optional input; array-likes other than numpy
    arrays and lc.Tensor go through np.asarray, which decides their dtype as for the ops);
    attrs: the pipeline's hashable parameters, passed to add_nodes; dev: the chain's device
    ("cpu" / "cuda"), the plan's placement; add_nodes(g, present, attrs): adds the nodes
    (present: the names of the given inputs) and names the output "y". Returns the result as
    the graph's execute gives it (numpy for numpy inputs). One pass per call builds the key and
    the feed; a miss builds and plans the graph.
    """
    # cuda:N of the policy (device="cuda:1"): the plan's GPU, so it keys the cache too.
    if dev == "cuda" and base.device.startswith("cuda:"):
        dev = base.device
    feed = {}
    items = []
    for n, t in zip(names, data):
        if t is not None:
            if type(t) is not np.ndarray and not isinstance(t, _lc.Tensor):
                t = np.asarray(t)
            feed[n] = t
        items.append(t)
    # The inputs' kinds, dtypes and shapes in one native call (where they live is not part of
    # the key: the graph plans per residency itself).
    key = (op, dev, base.precision, attrs, _lc._signature(items))
    g = _pipeline_graphs.get(key)
    if g is not None:
        try:
            _pipeline_graphs.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile: it still serves this call
            pass
    else:
        with _pipeline_lock:
            g = _pipeline_graphs.get(key)
            if g is None:
                g = _lc.GraphIR()
                for n, t in feed.items():
                    dtype = t.dtype if isinstance(t, _lc.Tensor) else np.dtype(t.dtype).name
                    g.add_tensor(tuple(t.shape), dtype, n)
                add_nodes(g, feed, attrs)
                g.set_outputs(["y"])
                g.plan(dev if isinstance(dev, str) and (dev == "cpu" or dev.startswith("cuda")) else None,
                       precision=base.precision)
                _pipeline_graphs[key] = g
                while len(_pipeline_graphs) > _PIPELINE_GRAPHS_MAX:
                    _pipeline_graphs.popitem(last=False)
    return g.execute(feed)["y"]


def _ffn_nodes(g, present, activation):
    g.add_node("linear", ["x", "w1", "b1" if "b1" in present else None], ["h"],
               {"activation": activation}, name="fc1")
    g.add_node("linear", ["h", "w2", "b2" if "b2" in present else None], ["y"], name="fc2")


def _layernorm_linear_nodes(g, present, attrs):
    eps, activation = attrs
    g.add_node("layernorm", ["x", "gamma" if "gamma" in present else None,
                             "beta" if "beta" in present else None, None], ["h"],
               {"eps": eps}, name="ln")
    g.add_node("linear", ["h", "w", "b" if "b" in present else None], ["y"],
               {"activation": activation}, name="proj")


@_named_errors
def conv_relu_nchw(x, w, b=None, stride_h: int = 1, stride_w: int = 1, pad_h: int = 0, pad_w: int = 0,
                   device: str | None = None, *, policy=None):
    """conv2d_nchw with the ReLU fused into the convolution kernel.

    Parameters
    ----------
    x : array_like or Tensor
        Images ``[n, c, h, w]`` (float32).
    w : array_like or Tensor
        Filters ``[oc, c, kh, kw]`` (float32).
    b : array_like or Tensor or None
        Bias ``[oc]`` (None: no bias).
    stride_h, stride_w : int, optional
        Strides (>= 1).
    pad_h, pad_w : int, optional
        Zero padding (>= 0).
    device : str or None, optional
        "auto", "cpu" or "cuda" (None: the policy's device).
    policy : ExecutionPolicy or None, optional
        Policy for this call.

    Returns
    -------
    ndarray or Tensor
        ``relu(conv2d(x, w) + b)``, ``[n, oc, oh, ow]``; numpy for numpy inputs.

    Raises
    ------
    TypeError
        An unsupported dtype or argument type.
    ValueError
        Wrong shapes, device or policy.
    """
    return _lc.conv2d_nchw(x, w, b, stride_h, stride_w, pad_h, pad_w, device, activation="relu", policy=policy)


def qkv_arrange(features, seq_len: int, head_dim: int):
    """The [seq_len, head_dim] attention input built from conv features (numpy reference).

    The conv output is flattened in NCHW order and read cyclically until seq_len * head_dim
    values are filled (repeating the feature map when the attention block is larger than it,
    truncating when smaller). The same arrangement runs on the device in the fused path.

    Parameters
    ----------
    features : array_like
        Conv features (any shape).
    seq_len, head_dim : int
        The attention input's shape.

    Returns
    -------
    ndarray
        float32 ``[seq_len, head_dim]``.
    """
    flat = np.asarray(features, dtype=np.float32).reshape(-1)
    need = seq_len * head_dim
    reps = -(-need // flat.size)
    return np.tile(flat, reps)[:need].reshape(seq_len, head_dim)


@_named_errors
def conv_attention_torchstrong_nchw(x, w, b, seq_len: int, head_dim: int, stride_h: int = 1, stride_w: int = 1,
                                    pad_h: int = 1, pad_w: int = 1, device: str | None = None, *,
                                    causal: bool = False, execution_mode: str = "eager", policy=None):
    """conv2d(+ReLU) -> QKV arrange (see qkv_arrange) -> single-head attention (q = k = v).

    Runs as one native op (lc.conv_attention_nchw): the intermediate stays on the device it was
    computed on. execution_mode: "eager" launches the blocks one by one; "graph" runs the chain
    as a GraphIR (conv2d_nchw -> view nodes -> attention2d, built and cached in C++ per shapes,
    parameters, device and precision), replayed as one captured CUDA graph on a GPU and through
    the executor's DirectGraph on the CPU (docs/graph.md).

    Parameters
    ----------
    x : array_like or Tensor
        Images ``[n, c, h, w]`` (float32).
    w : array_like or Tensor
        Filters ``[oc, c, kh, kw]`` (float32).
    b : array_like or Tensor or None
        Bias ``[oc]`` (None: no bias).
    seq_len, head_dim : int
        The attention input's shape.
    stride_h, stride_w : int, optional
        Strides (>= 1).
    pad_h, pad_w : int, optional
        Zero padding (>= 0).
    device : str or None, optional
        "auto", "cpu" or "cuda" (None: the policy's device).
    causal : bool, optional
        Causal attention mask.
    execution_mode : str, optional
        "eager" or "graph".
    policy : ExecutionPolicy or None, optional
        Policy for this call.

    Returns
    -------
    ndarray or Tensor
        The attention output ``[seq_len, head_dim]``.

    Raises
    ------
    TypeError
        An unsupported dtype or argument type.
    ValueError
        Wrong shapes, device or policy.
    """
    graph = _check_mode("conv_attention_torchstrong_nchw", execution_mode)
    return _lc.conv_attention_nchw(x, w, b, int(seq_len), int(head_dim), stride_h, stride_w, pad_h, pad_w,
                                   device, causal=causal, graph=graph, policy=policy)


@_named_errors
def conv_attention_torchstrong_nchw_ab_report(x, w, b, seq_len: int, head_dim: int, stride_h: int = 1,
                                              stride_w: int = 1, pad_h: int = 1, pad_w: int = 1,
                                              device: str | None = None, *, iters: int = 20, warmup: int = 3,
                                              causal: bool = False) -> dict:
    """Runs the eager and graph modes on the same inputs: parity and median speed.

    Parameters
    ----------
    x, w, b, seq_len, head_dim, stride_h, stride_w, pad_h, pad_w, device, causal
        As in :func:`conv_attention_torchstrong_nchw`.
    iters, warmup : int, optional
        Timed and untimed runs per mode.

    Returns
    -------
    dict
        eager_ms, graph_ms, graph_over_eager, winner, max_abs_diff, iters.
    """
    def run(mode):
        return conv_attention_torchstrong_nchw(x, w, b, seq_len, head_dim, stride_h, stride_w, pad_h, pad_w,
                                               device, causal=causal, execution_mode=mode)

    def median_ms(mode):
        for _ in range(warmup):
            run(mode)
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter_ns()
            run(mode)
            ts.append(time.perf_counter_ns() - t0)
        ts.sort()
        return ts[len(ts) // 2] / 1e6

    eager = np.asarray(run("eager"))
    graph = np.asarray(run("graph"))
    eager_ms, graph_ms = median_ms("eager"), median_ms("graph")
    return {
        "eager_ms": eager_ms,
        "graph_ms": graph_ms,
        "graph_over_eager": eager_ms / graph_ms if graph_ms > 0 else float("nan"),
        "winner": "graph" if graph_ms < eager_ms else "eager",
        "max_abs_diff": float(np.max(np.abs(eager - graph))),
        "iters": iters,
    }


@_named_errors
def ffn(x, w1, b1, w2, b2, activation: str = "gelu", device: str | None = None, *, policy=None,
        execution_mode: str = "eager"):
    """Transformer feed-forward block: linear(x, w1, b1) + activation -> linear(., w2, b2).

    Weights use the torch nn.Linear layout ([out_features, in_features]); the activation runs in
    the first GEMM's epilogue.

    Parameters
    ----------
    x : array_like or Tensor
        Input ``[..., d]``.
    w1, b1 : array_like or Tensor
        First projection ``[h, d]`` and its bias ``[h]`` (b1 may be None).
    w2, b2 : array_like or Tensor
        Second projection ``[d, h]`` and its bias ``[d]`` (b2 may be None).
    activation : str, optional
        "gelu" (default), "relu" or "none".
    device : str or None, optional
        "auto", "cpu" or "cuda" for the whole block (None: the policy's device).
    policy : ExecutionPolicy or None, optional
        Policy for this call.
    execution_mode : str, optional
        "eager" (default): the two linears one by one. "graph": the block as a GraphIR
        (linear -> linear), cached per (shapes, dtypes, devices, device, precision) and replayed
        by the graph executor (one CUDA graph on a GPU); same results.

    Returns
    -------
    ndarray or Tensor
        ``[..., d]``; numpy for numpy inputs.

    Raises
    ------
    TypeError
        An unsupported dtype or argument type.
    ValueError
        Wrong shapes, device or policy.
    """
    blocks = [("linear", (x, w1)), ("linear", (_rows_by(x, w1), w2))]
    if _check_mode("ffn", execution_mode):
        if not isinstance(activation, str):
            raise TypeError(f"[ffn] activation must be a string, got {type(activation).__name__}")
        data = (x, w1, b1, w2, b2)
        base, dev = _chain_base_device("ffn", device, policy, blocks, data)
        return _run_pipeline_graph("ffn", activation, ("x", "w1", "b1", "w2", "b2"), data, dev, base,
                                   _ffn_nodes)
    inner, last = _chain_policy("ffn", device, policy, blocks, (x, w1, b1, w2, b2))
    h = _lc.linear(x, w1, b1, activation, None, policy=inner)
    out = _lc.linear(h, w2, b2, "none", None, policy=last)
    return _host_result(out, (x, w1, b1, w2, b2))


@_named_errors
def layernorm_linear(x, gamma, beta, w, b=None, eps: float = 1e-5, activation: str = "none",
                     device: str | None = None, *, policy=None, execution_mode: str = "eager"):
    """LayerNorm over the last dimension, then a projection linear(., w, b).

    Parameters
    ----------
    x : array_like or Tensor
        Input ``[..., d]``.
    gamma, beta : array_like or Tensor or None
        LayerNorm scale and shift ``[d]``.
    w : array_like or Tensor
        Projection ``[out, d]``.
    b : array_like or Tensor or None, optional
        Projection bias ``[out]``.
    eps : float, optional
        LayerNorm epsilon.
    activation : str, optional
        "none", "relu" or "gelu" after the projection.
    device : str or None, optional
        "auto", "cpu" or "cuda" for the whole block (None: the policy's device).
    policy : ExecutionPolicy or None, optional
        Policy for this call.
    execution_mode : str, optional
        "eager" (default): layernorm, then linear. "graph": the block as a GraphIR
        (layernorm -> linear), cached per (shapes, dtypes, devices, device, precision) and
        replayed by the graph executor (one CUDA graph on a GPU); same results.

    Returns
    -------
    ndarray or Tensor
        ``[..., out]``; numpy for numpy inputs.

    Raises
    ------
    TypeError
        An unsupported dtype or argument type.
    ValueError
        Wrong shapes, device or policy.
    """
    blocks = [("layernorm", (x,)), ("linear", (x, w))]
    if _check_mode("layernorm_linear", execution_mode):
        if not isinstance(activation, str):
            raise TypeError(f"[layernorm_linear] activation must be a string, got {type(activation).__name__}")
        # A float passes at once (numbers.Real's ABC check costs ~0.5 us a call).
        if type(eps) is not float and (isinstance(eps, bool) or not isinstance(eps, numbers.Real)):
            raise TypeError(f"[layernorm_linear] eps must be a float, got {type(eps).__name__}")
        data = (x, gamma, beta, w, b)
        base, dev = _chain_base_device("layernorm_linear", device, policy, blocks, data)
        return _run_pipeline_graph("layernorm_linear", (float(eps), activation),
                                   ("x", "gamma", "beta", "w", "b"), data, dev, base,
                                   _layernorm_linear_nodes)
    inner, last = _chain_policy("layernorm_linear", device, policy, blocks, (x, gamma, beta, w, b))
    h = _lc.layernorm(x, gamma, beta, eps, None, policy=inner)
    out = _lc.linear(h, w, b, activation, None, policy=last)
    return _host_result(out, (x, gamma, beta, w, b))


def attention_train_step(q: Any, k: Any, v: Any, target: Any, lr: float, *, causal: bool = False,
                         mask: Any = None, scale: float | None = None, device: str | None = None,
                         policy: Any = None) -> tuple[Any, float]:
    """One training step of attention, in place: forward, MSE loss, full backward, SGD.

    ``out = attention(q, k, v, ...)``, ``loss = mean((out - target) ** 2)``, the backward
    (``attention_backward`` with ``dout = 2 (out - target) / out.size``) and ``x -= lr * dx`` for
    q, k and v. Everything is checked before anything is written.

    Parameters
    ----------
    q, k, v : ndarray or Tensor
        As ``lc.attention`` (shapes, dtypes, grouped-query heads); updated in place, so each must
        be writable and C-contiguous, and they must not share memory.
    target : array_like or Tensor
        The wanted output: out's shape (q's shape with v's last dimension) and q's dtype.
    lr : float
        SGD learning rate.
    causal, mask, scale : optional
        As ``lc.attention``.
    device, policy : optional
        As ``lc.attention``; the backward runs on the CPU or CUDA alike.

    Returns
    -------
    tuple
        ``(out, loss)``: the forward's output before the update (numpy when q, k, v and target
        are numpy arrays, else an lc.Tensor on q's device), and the loss as a float (summed in
        float64).

    Raises
    ------
    TypeError
        q, k or v is not an array / Tensor, or dtypes differ (target included).
    ValueError
        A non-contiguous or read-only q / k / v, q / k / v sharing memory, a target of the wrong
        shape, or the shape errors of ``lc.attention``.
    """
    # One implementation in C++ (lightning_core/train.h), shared with the attention sessions'
    # train_step: every check runs before anything is written.
    return _lc._attention_train_step(q, k, v, target, lr, causal=causal, mask=mask, scale=scale,
                                     device=device, policy=policy)
