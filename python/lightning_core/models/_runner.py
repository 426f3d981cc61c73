"""The original's model runner surface: a tiny pre-LN transformer, eager or as one LC graph.

``TinyTransformerRunner(config).run(x, mode="eager" | "graph")`` runs ``config.layers`` blocks
on hidden states ``x [B, S, hidden]`` (or ``[S, hidden]``)::

    x = x + pos[0:S]                                   # learned positions, seq rows
    per layer:
        a = attention(split_heads(linear(layernorm(x), Wqkv, bqkv)))   # softmax(q k^T / sqrt(D)) v
        x = linear(merge_heads(a), Wo, bo, residual=x)
        x = linear(act(linear(layernorm(x), Wup, bup)), Wdown, bdown, residual=x)
    y = layernorm(x)

``mode="eager"`` calls the LC ops one by one (Q, K, V as one GEMM; the heads are strided views
that ``attention`` reads in place). ``mode="graph"`` traces the very same block once per input
shape with ``lc.compile`` (docs/graph.md: the tracer records the views, the head merge is the
one copy) and replays the plan, one captured CUDA graph on a GPU. ``runner.last_run`` says which
ran and why.

Checkpoints are safetensors files (``save_checkpoint`` / ``load_checkpoint``; the optional
dependency ``safetensors``, ``pip install 'lightning-core[models]'``) holding every parameter in
the runner's dtype and the config as metadata.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, Mapping, Optional

import numpy as np

from .. import _lightning_core as _C

__all__ = ["TinyTransformerConfig", "TinyTransformerRunner"]

_DTYPES = ("float32", "bfloat16", "float16")
_ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
_MODES = ("eager", "graph")
_FORMAT = "lightning_core.TinyTransformerRunner"
_GRAPH_FORM = ("the eager block traced once per input shape (one QKV GEMM, the heads as "
               "views, the weights shared with the graph), planned and replayed")


def _np_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes  # a dependency of bfloat16 arrays in lightning_core (the [bf16] extra)

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _is_float(dt: np.dtype) -> bool:
    """numpy floats and ml_dtypes' bfloat16 (whose numpy kind is 'V')."""
    return dt.kind == "f" or dt.name == "bfloat16"


def _need_safetensors():
    try:
        import safetensors.numpy as stn
    except ImportError as e:
        raise ImportError("TinyTransformerRunner checkpoints need the optional dependency "
                          "'safetensors': pip install 'lightning-core[models]'") from e
    return stn


@dataclasses.dataclass(frozen=True)
class TinyTransformerConfig:
    """The sizes and settings of a `TinyTransformerRunner`.

    Parameters
    ----------
    layers : int
        Number of transformer blocks.
    hidden : int
        Model width (the last dimension of the input); a multiple of ``heads``.
    heads : int
        Attention heads (head size ``hidden // heads``).
    ffn : int
        Width of the feed-forward layer.
    seq : int
        Maximum sequence length (rows of the learned position table).
    dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``: weights and activations.
    device : str
        ``"cpu"`` or ``"cuda"``.
    activation : str
        Feed-forward activation: ``"gelu"`` (exact erf form), ``"gelu_tanh"`` or ``"relu"``.
    eps : float
        Layer-norm epsilon.
    seed : int
        Seed of the random initial weights (numpy ``default_rng``).
    causal : bool
        Causal attention (query i sees keys j <= i).
    """

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    ffn: int = 256
    seq: int = 128
    dtype: str = "float32"
    device: str = "cpu"
    activation: str = "gelu"
    eps: float = 1e-5
    seed: int = 0
    causal: bool = False

    def __post_init__(self):
        for name in ("layers", "hidden", "heads", "ffn", "seq"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TinyTransformerConfig: {name} must be a positive int, got {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"TinyTransformerConfig: hidden {self.hidden} is not a multiple of "
                             f"heads {self.heads}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"TinyTransformerConfig: dtype {self.dtype!r} is not one of {_DTYPES}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"TinyTransformerConfig: device {self.device!r} is not 'cpu' or 'cuda'")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"TinyTransformerConfig: activation {self.activation!r} is not one "
                             f"of {_ACTIVATIONS}")
        if not isinstance(self.eps, (int, float)) or not self.eps > 0:
            raise ValueError(f"TinyTransformerConfig: eps must be a positive float, got {self.eps!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"TinyTransformerConfig: seed must be an int, got {self.seed!r}")

    @property
    def head_dim(self) -> int:
        """``hidden // heads``."""
        return self.hidden // self.heads

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TinyTransformerConfig":
        """A config from a dict of its fields (unknown keys are a ValueError).

        Parameters
        ----------
        d : mapping
            Field names to values; absent fields take their defaults.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TinyTransformerConfig: unknown fields {unknown}; the fields are "
                             f"{sorted(names)}")
        return cls(**dict(d))


def _param_shapes(c: TinyTransformerConfig) -> Dict[str, tuple]:
    """Every parameter's name and shape, in checkpoint order."""
    h, f = c.hidden, c.ffn
    shapes: Dict[str, tuple] = {"pos": (c.seq, h)}
    for i in range(c.layers):
        p = f"layers.{i}."
        shapes[p + "ln1.weight"], shapes[p + "ln1.bias"] = (h,), (h,)
        for n in ("q", "k", "v", "out"):
            shapes[p + f"attn.{n}.weight"], shapes[p + f"attn.{n}.bias"] = (h, h), (h,)
        shapes[p + "ln2.weight"], shapes[p + "ln2.bias"] = (h,), (h,)
        shapes[p + "ffn.up.weight"], shapes[p + "ffn.up.bias"] = (f, h), (f,)
        shapes[p + "ffn.down.weight"], shapes[p + "ffn.down.bias"] = (h, f), (h,)
    shapes["final_ln.weight"], shapes["final_ln.bias"] = (h,), (h,)
    return shapes


def _init_params(c: TinyTransformerConfig) -> Dict[str, np.ndarray]:
    """Random weights from ``c.seed``: linear weights N(0, 1/in), biases and positions small,
    layer-norm scales near 1 (nonzero everywhere, so every parameter matters in the tests)."""
    rng = np.random.default_rng(c.seed)
    out = {}
    for name, shape in _param_shapes(c).items():
        if name.endswith(".weight") and len(shape) == 2:
            a = rng.standard_normal(shape) / math.sqrt(shape[1])
        elif name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "final_ln.weight":
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = 0.1 * rng.standard_normal(shape)
        out[name] = a.astype(np.float32)
    return out


class TinyTransformerRunner:
    """A tiny pre-LN transformer on LC ops, run eagerly or as one compiled LC graph.

    Parameters
    ----------
    config : TinyTransformerConfig or mapping, optional
        The model (a dict of its fields is accepted); default ``TinyTransformerConfig()``.
        The weights start random from ``config.seed`` (or come from `load_checkpoint`).

    Examples
    --------
    >>> r = TinyTransformerRunner(TinyTransformerConfig(layers=2, hidden=32, heads=4, ffn=64))
    >>> x = np.random.default_rng(0).standard_normal((2, 7, 32)).astype(np.float32)
    >>> y = r.run(x, mode="graph")            # numpy in, numpy out: [2, 7, 32]
    """

    def __init__(self, config: Optional[TinyTransformerConfig | Mapping[str, Any]] = None):
        if config is None:
            config = TinyTransformerConfig()
        elif not isinstance(config, TinyTransformerConfig):
            if not isinstance(config, Mapping):
                raise TypeError(f"TinyTransformerRunner: config must be a TinyTransformerConfig "
                                f"or a dict of its fields, got {type(config).__name__}")
            config = TinyTransformerConfig.from_dict(config)
        if config.device == "cuda" and not _C.cuda_available():
            raise ValueError("TinyTransformerRunner: device 'cuda' is not available here "
                             "(lc.cuda_available() is False); use device='cpu'")
        self.config = config
        self._np_dtype = _np_dtype(config.dtype)
        self._params: Dict[str, np.ndarray] = {}
        self.last_run: Dict[str, str] = {}
        self._set_params({k: v.astype(self._np_dtype) for k, v in _init_params(config).items()})

    # ---- parameters -------------------------------------------------------------------------

    def _set_params(self, params: Dict[str, np.ndarray]) -> None:
        """Take host arrays (already in the runner's dtype), upload the device copies and drop
        every compiled graph (its plans hold the old weight tensors)."""
        c = self.config
        self._params = params
        dev, dt = c.device, c.dtype

        def put(a):
            return _C.Tensor(np.ascontiguousarray(a), dev, dt)

        P = params
        self._pos = put(P["pos"])
        self._layers = []
        for i in range(c.layers):
            p = f"layers.{i}."
            self._layers.append(dict(
                ln1=(put(P[p + "ln1.weight"]), put(P[p + "ln1.bias"])),
                qkv_w=put(np.concatenate([P[p + f"attn.{n}.weight"] for n in "qkv"], axis=0)),
                qkv_b=put(np.concatenate([P[p + f"attn.{n}.bias"] for n in "qkv"], axis=0)),
                o_w=put(P[p + "attn.out.weight"]), o_b=put(P[p + "attn.out.bias"]),
                ln2=(put(P[p + "ln2.weight"]), put(P[p + "ln2.bias"])),
                up_w=put(P[p + "ffn.up.weight"]), up_b=put(P[p + "ffn.up.bias"]),
                down_w=put(P[p + "ffn.down.weight"]), down_b=put(P[p + "ffn.down.bias"]),
            ))
        self._final_ln = (put(P["final_ln.weight"]), put(P["final_ln.bias"]))
        self._compiled = None  # rebuilt (and traced again) on the next graph run

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of every parameter (numpy, in the runner's dtype), by checkpoint name."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace every parameter; the arrays are checked before anything changes.

        Parameters
        ----------
        state : mapping of str to array
            One array per parameter name of `state_dict` with that shape. Floating arrays of
            another dtype are converted to the runner's dtype.

        Raises
        ------
        ValueError
            A missing or unexpected key, or a wrong shape (the message names the key).
        TypeError
            A non-floating array (the message names the key).
        """
        shapes = _param_shapes(self.config)
        missing = [k for k in shapes if k not in state]
        if missing:
            raise ValueError(f"TinyTransformerRunner: the checkpoint has no {missing[0]!r}"
                             + (f" (and {len(missing) - 1} more missing: {missing[1:4]}...)"
                                if len(missing) > 1 else "")
                             + f"; expected the {len(shapes)} keys of state_dict() for "
                             f"{self.config}")
        unexpected = sorted(k for k in state if k not in shapes)
        if unexpected:
            raise ValueError(f"TinyTransformerRunner: unexpected key {unexpected[0]!r} in the "
                             f"checkpoint ({len(unexpected)} unexpected: {unexpected[:4]}); it "
                             "was saved from another model")
        new = {}
        for k, shape in shapes.items():
            a = np.asarray(state[k])
            if a.shape != shape:
                raise ValueError(f"TinyTransformerRunner: {k!r} has shape {a.shape}, the config "
                                 f"needs {shape} ({self.config})")
            if not _is_float(a.dtype):
                raise TypeError(f"TinyTransformerRunner: {k!r} has dtype {a.dtype}, expected a "
                                f"floating array ({self.config.dtype})")
            new[k] = np.array(a, dtype=self._np_dtype, copy=True)
        self._set_params(new)

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write every parameter (in the runner's dtype) and the config to a safetensors file.

        Parameters
        ----------
        path : str or PathLike
            The file to write (``.safetensors`` by convention); replaced if it exists.

        Raises
        ------
        ImportError
            ``safetensors`` is not installed (``pip install 'lightning-core[models]'``).
        """
        stn = _need_safetensors()
        meta = {"format": _FORMAT, "config": json.dumps(self.config.to_dict(), sort_keys=True)}
        stn.save_file({k: np.ascontiguousarray(v) for k, v in self._params.items()},
                      os.fspath(path), metadata=meta)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Load parameters written by `save_checkpoint` into this runner.

        The file's tensors must match this runner's config (names and shapes, see
        `load_state_dict`); the config stored in the file is not applied (use
        `from_checkpoint` to build a runner from it).

        Parameters
        ----------
        path : str or PathLike
            A safetensors file.

        Raises
        ------
        ImportError
            ``safetensors`` is not installed (``pip install 'lightning-core[models]'``).
        FileNotFoundError
            No such file.
        ValueError
            A missing or unexpected key or a wrong shape (naming the key); a file that is not
            safetensors.
        """
        stn = _need_safetensors()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"TinyTransformerRunner.load_checkpoint: no file {path!r}")
        try:
            state = stn.load_file(path)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(f"TinyTransformerRunner.load_checkpoint: {path!r} is not a readable "
                             f"safetensors file ({type(e).__name__}: {e})") from None
        self.load_state_dict(state)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: Optional[str] = None,
                        dtype: Optional[str] = None) -> "TinyTransformerRunner":
        """A runner built from the config stored in a checkpoint, with its weights.

        Parameters
        ----------
        path : str or PathLike
            A file written by `save_checkpoint`.
        device : str, optional
            Override the stored device (``"cpu"`` or ``"cuda"``).
        dtype : str, optional
            Override the stored dtype (the weights are converted).
        """
        _need_safetensors()
        from safetensors import safe_open

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"TinyTransformerRunner.from_checkpoint: no file {path!r}")
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
        if meta.get("format") != _FORMAT or "config" not in meta:
            raise ValueError(f"TinyTransformerRunner.from_checkpoint: {path!r} has no runner "
                             "config in its metadata (not written by save_checkpoint); build the "
                             "runner from a config and call load_checkpoint")
        cfg = json.loads(meta["config"])
        if device is not None:
            cfg["device"] = device
        if dtype is not None:
            cfg["dtype"] = dtype
        r = cls(TinyTransformerConfig.from_dict(cfg))
        r.load_checkpoint(path)
        return r

    # ---- running ----------------------------------------------------------------------------

    def _check_input(self, x):
        """(x as [B, S, hidden] on the device in the dtype, was_2d, as_numpy)."""
        c = self.config
        if isinstance(x, _C.Tensor):
            if x.dtype != c.dtype:
                raise TypeError(f"TinyTransformerRunner.run: x is an lc.Tensor of dtype {x.dtype}, "
                                f"the runner's dtype is {c.dtype}; convert it (x.astype) or pass "
                                "a numpy array")
            if x.device.split(":")[0] != c.device:
                raise ValueError(f"TinyTransformerRunner.run: x lives on {x.device!r}, the runner "
                                 f"on {c.device!r}; move it with x.to({c.device!r})")
            shape, as_numpy = tuple(x.shape), False
        else:
            x = np.asarray(x)
            if not _is_float(x.dtype):
                raise TypeError(f"TinyTransformerRunner.run: x must be a floating array, got "
                                f"dtype {x.dtype}")
            shape, as_numpy = x.shape, True
        if len(shape) not in (2, 3) or shape[-1] != c.hidden:
            raise ValueError(f"TinyTransformerRunner.run: x has shape {shape}; expected "
                             f"[batch, seq, {c.hidden}] or [seq, {c.hidden}] (hidden={c.hidden})")
        S = shape[-2]
        if S > c.seq:
            raise ValueError(f"TinyTransformerRunner.run: sequence length {S} exceeds the "
                             f"config's seq {c.seq}; truncate x or build the runner with a larger "
                             "seq")
        was_2d = len(shape) == 2
        if as_numpy:
            x3 = x.reshape((1,) + shape) if was_2d else x
            if x3.size == 0:
                return x3, was_2d, True
            return _C.Tensor(np.ascontiguousarray(x3, dtype=self._np_dtype), c.device,
                             c.dtype), was_2d, True
        if 0 in shape:
            return np.zeros(shape, self._np_dtype).reshape(((1,) if was_2d else ()) + shape), \
                was_2d, False
        return (x.reshape(1, *shape) if was_2d else x), was_2d, False

    def run(self, x, mode: str = "eager"):
        """The model's output for hidden states ``x``.

        Parameters
        ----------
        x : array_like or Tensor
            ``[batch, seq, hidden]`` or ``[seq, hidden]`` (seq <= ``config.seq``). A numpy array
            of any float dtype is converted to the runner's dtype; an lc.Tensor must be in the
            runner's dtype on its device.
        mode : {"eager", "graph"}
            ``"eager"``: the LC ops one by one. ``"graph"``: the block traced with
            ``lc.compile`` once per input shape, then the planned graph replayed (one captured
            CUDA graph on a GPU).

        Returns
        -------
        ndarray or Tensor
            x's shape: a numpy array in the runner's dtype for a numpy ``x``, else an
            ``lc.Tensor`` on the runner's device. ``self.last_run`` records what ran and why.

        Raises
        ------
        ValueError
            An unknown mode, a wrong shape, seq over ``config.seq``, a tensor on another device.
        TypeError
            A non-floating input, or an lc.Tensor of another dtype.
        """
        if mode not in _MODES:
            raise ValueError(f"TinyTransformerRunner.run: mode must be 'eager' or 'graph', got "
                             f"{mode!r}")
        x3, was_2d, as_numpy = self._check_input(x)
        if 0 in tuple(x3.shape):
            self.last_run = {"mode": mode, "executed": "none",
                             "reason": f"empty input {tuple(x3.shape)}: nothing to compute"}
            y = np.zeros(tuple(x3.shape), self._np_dtype)
            y = y.reshape(y.shape[1:]) if was_2d else y
            return y if as_numpy else _C.Tensor(y, self.config.device, self.config.dtype)
        if mode == "eager":
            y = self._eager(x3)
            self.last_run = {"mode": "eager", "executed": "eager",
                             "reason": "LC ops one by one (Q, K, V as one GEMM, heads as views)"}
        else:
            y = self._graph()(x3)
            self.last_run = {"mode": "graph", "executed": "graph", "reason": _GRAPH_FORM}
        if was_2d:
            y = y.reshape(*tuple(y.shape)[1:])
        return y.numpy() if as_numpy else y

    __call__ = run

    def _eager(self, x):
        return self._block(_C, x)

    def _block(self, ops, x):
        """The model on x [B, S, hidden] through ``ops``: the extension's functions (eager) or
        the ``lightning_core`` module while ``lc.compile`` traces (graph)."""
        c = self.config
        B, S, h = (int(d) for d in x.shape)
        H, D = c.heads, c.head_dim
        scale = 1.0 / math.sqrt(D)
        eps = float(c.eps)
        x = ops.add(x, self._pos[0:S])
        for L in self._layers:
            t = ops.layernorm(x, L["ln1"][0], L["ln1"][1], eps)
            qkv = ops.linear(t, L["qkv_w"], L["qkv_b"])                     # [B, S, 3h]
            qkv5 = qkv.view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)           # [3, B, H, S, D]
            a = ops.attention(qkv5[0], qkv5[1], qkv5[2], causal=c.causal, scale=scale)
            a = a.permute(0, 2, 1, 3).reshape(B, S, h)                      # one copy
            x = ops.linear(a, L["o_w"], L["o_b"], residual=x)
            t = ops.layernorm(x, L["ln2"][0], L["ln2"][1], eps)
            x = ops.linear(self._ffn_up(ops, t, L["up_w"], L["up_b"]), L["down_w"], L["down_b"],
                           residual=x)
        return ops.layernorm(x, self._final_ln[0], self._final_ln[1], eps)

    def _ffn_up(self, ops, t, w, b):
        act = self.config.activation
        if act == "gelu":  # exact erf GELU (linear's fused "gelu" is the tanh form)
            return ops.gelu(ops.linear(t, w, b), approximate="none")
        return ops.linear(t, w, b, activation="gelu" if act == "gelu_tanh" else "relu")

    def _graph(self):
        """The compiled block (traced per input shape), built on first use after a weight change
        (the graph shares the weight tensors: ``_set_params`` drops it when they change)."""
        if self._compiled is None:
            import lightning_core as lc

            def tiny_transformer_block(x):
                return self._block(lc, x)
            self._compiled = lc.compile(tiny_transformer_block, device=self.config.device,
                                        copy_constants=False)
        return self._compiled

    def explain(self, x=None) -> str:
        """The graph mode's plan for inputs shaped like ``x`` (steps, devices, fusions, memory).

        Parameters
        ----------
        x : array_like or Tensor, optional
            An input (traced if its shape is new); None: the most recently run shape.
        """
        comp = self._graph()
        head = f"TinyTransformerRunner graph form: {_GRAPH_FORM}\n"
        if x is None:
            return head + comp.explain()
        x3, _, _ = self._check_input(x)
        if 0 in tuple(x3.shape):
            return head + f"empty input {tuple(x3.shape)}: nothing to compute"
        return head + comp.explain(x3)

    def __repr__(self) -> str:
        return f"TinyTransformerRunner({self.config})"
