"""A ViT-style image encoder built from Lightning Core ops (eager or as one LC graph per batch).

`VisionEncoder` holds the weights of a Hugging Face ``ViTModel`` checkpoint (the
``embeddings.*`` / ``encoder.layer.N.*`` / ``layernorm.*`` names) as ``lc.Tensor`` s on one
device in one dtype and runs, with LC ops only:

    P      = unfold(images)                 # [B, 1 + N, C*p*p]: row 0 zeros, row 1 + i patch i
    x      = P Wp^T + E                     # patch embedding GEMM; E[0] = cls + pos[0],
                                            #   E[i] = pos[i] + patch bias
    per layer (pre-LN):
        x  = x + Wo attention(split_heads(Wqkv LN1(x)))
        x  = x + W2 act(W1 LN2(x))
    x      = LN(x)                          # tokens [B, 1 + N, hidden]
    pooled = proj(x[:, 0])                  # pooling "cls"; "mean": the mean of the N patch
                                            #   tokens; proj only with projection_dim (CLIP)

Patchify is an unfold + GEMM, not ``conv2d_nchw``: with kernel = stride = patch the convolution
is exactly a GEMM over non-overlapping patches, and the unfold (one strided copy on the
device) writes the patches straight into token order behind a zero row, so the GEMM's result is
already ``[B, 1 + N, hidden]`` with the CLS slot in place (the zero row's product is 0, the
additive table supplies cls + pos[0]). A convolution would produce ``[B, hidden, gh, gw]`` and
need a transpose copy and a concatenation (LC has no concat op) after it. docs/models.md,
"Vision", has the measurements.

Two execution modes (``forward(..., execution_mode=...)``): "eager" runs the ops one by one;
"graph" runs everything after the unfold (the unfold is a ``copy_`` into the per-batch-size input
buffer, which the tracer does not record) as one planned LC graph per batch size (on a GPU one
captured CUDA graph, replayed), kept in an LRU on the encoder. The layer body is one function
for both modes (the ``ops`` argument of `_blocks`). The default ("auto") is graph mode on both
devices (docs/models.md, "Vision", has the CPU measurement).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import threading
from typing import Any, Mapping, Optional

import numpy as np

from .. import _lightning_core as _C
from ._blocks import MLP_ACTIVATIONS, mlp_up, self_attention

__all__ = ["VisionConfig", "VisionEncoder", "random_vit_state_dict", "vit_key_scheme",
           "convert_vit_state_dict", "VIT_KEY_SCHEMES"]

_FLOAT_DTYPES = ("float32", "bfloat16", "float16")
_MODES = ("auto", "eager", "graph")
_POOLING = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The sizes of a ViT-style encoder (the fields of Hugging Face's ``ViTConfig``).

    ``pooling`` ("cls": the CLS token; "mean": the mean of the patch tokens) and
    ``projection_dim`` (a bias-free linear map of the pooled vector, CLIP's vision tower's
    ``visual_projection``; None: no projection) are ours. Defaults: ViT-B/16 at 224 x 224.
    """

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    qkv_bias: bool = True
    pooling: str = "cls"
    projection_dim: Optional[int] = None

    def __post_init__(self):
        for n in ("image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
                  "num_attention_heads", "intermediate_size"):
            v = getattr(self, n)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"VisionConfig: {n} must be a positive int, got {v!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"VisionConfig: image_size {self.image_size} is not divisible by "
                             f"patch_size {self.patch_size}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"VisionConfig: hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in MLP_ACTIVATIONS:
            raise ValueError(f"VisionConfig: hidden_act {self.hidden_act!r} is not supported "
                             f"{MLP_ACTIVATIONS}")
        if self.pooling not in _POOLING:
            raise ValueError(f"VisionConfig: pooling {self.pooling!r} is not one of {_POOLING}")
        if self.projection_dim is not None and (isinstance(self.projection_dim, bool) or
                                                not isinstance(self.projection_dim, (int, np.integer))
                                                or self.projection_dim < 1):
            raise ValueError(f"VisionConfig: projection_dim must be None or a positive int, got "
                             f"{self.projection_dim!r}")
        if not (float(self.layer_norm_eps) > 0):
            raise ValueError(f"VisionConfig: layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VisionConfig":
        """From a ``config.json`` dict (unknown keys such as ``model_type`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("image_size", "patch_size"):   # some configs write [224, 224]
            v = kw.get(k)
            if isinstance(v, (list, tuple)):
                if len(v) != 2 or v[0] != v[1]:
                    raise ValueError(f"VisionConfig: {k} {v!r} is not square; only square images "
                                     "and patches are supported")
                kw[k] = int(v[0])
        return cls(**kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def grid(self) -> int:
        """Patches per side (``image_size // patch_size``)."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def seq_len(self) -> int:
        """Tokens per image: the CLS token and the patches."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def pooled_dim(self) -> int:
        return self.projection_dim if self.projection_dim is not None else self.hidden_size


def _as_config(config) -> VisionConfig:
    if isinstance(config, VisionConfig):
        return config
    if isinstance(config, Mapping):
        return VisionConfig.from_dict(config)
    if hasattr(config, "to_dict"):          # a transformers ViTConfig
        return VisionConfig.from_dict(config.to_dict())
    raise TypeError(f"VisionEncoder: config must be a VisionConfig, a dict or a ViTConfig, got "
                    f"{type(config).__name__}")


def _hf_shapes(c: VisionConfig) -> dict:
    """Every tensor name of the model (Hugging Face ViTModel's, projection ours) and its shape."""
    h, it, p = c.hidden_size, c.intermediate_size, c.patch_size
    s = {"embeddings.cls_token": (1, 1, h),
         "embeddings.position_embeddings": (1, c.seq_len, h),
         "embeddings.patch_embeddings.projection.weight": (h, c.num_channels, p, p),
         "embeddings.patch_embeddings.projection.bias": (h,)}
    for i in range(c.num_hidden_layers):
        q = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            s[q + f"attention.attention.{n}.weight"] = (h, h)
            if c.qkv_bias:
                s[q + f"attention.attention.{n}.bias"] = (h,)
        s[q + "attention.output.dense.weight"], s[q + "attention.output.dense.bias"] = (h, h), (h,)
        s[q + "intermediate.dense.weight"], s[q + "intermediate.dense.bias"] = (it, h), (it,)
        s[q + "output.dense.weight"], s[q + "output.dense.bias"] = (h, it), (h,)
        for n in ("layernorm_before", "layernorm_after"):
            s[q + n + ".weight"], s[q + n + ".bias"] = (h,), (h,)
    s["layernorm.weight"], s["layernorm.bias"] = (h,), (h,)
    if c.projection_dim is not None:
        s["projection.weight"] = (c.projection_dim, h)
    return s


# ---- the two naming schemes of Hugging Face's ViTModel ------------------------------------------
#: "classic": ``encoder.layer.N.attention.attention.query.weight`` ... (published checkpoints and
#: transformers 4.x); "layers": ``layers.N.attention.q_proj.weight`` ... (ViTModel's own names
#: in transformers 5.x, seen with 5.17 on the H200). The embeddings, the final ``layernorm.*``
#: and ``pooler.dense.*`` are named alike in both.
VIT_KEY_SCHEMES = ("classic", "layers")

# Per encoder layer: (classic name, "layers" name), after the "encoder.layer.N." / "layers.N."
# prefix; the ".weight" / ".bias" suffix is kept.
_VIT_LAYER_NAMES = (
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
    ("layernorm_before", "layernorm_before"),
    ("layernorm_after", "layernorm_after"),
)
_VIT_LAYER_PREFIX = {"classic": "encoder.layer.", "layers": "layers."}
_VIT_TO = {"classic": {b: a for a, b in _VIT_LAYER_NAMES},
           "layers": {a: b for a, b in _VIT_LAYER_NAMES}}


def _vit_split(key: str):
    """(outer prefix such as "vit.", scheme, layer index, inner name, suffix) of a layer key, or
    None for a key outside the encoder layers."""
    for outer in ("", "vit."):
        if outer and not key.startswith(outer):
            continue
        rest = key[len(outer):]
        for scheme, pre in _VIT_LAYER_PREFIX.items():
            if not rest.startswith(pre):
                continue
            idx, dot, tail = rest[len(pre):].partition(".")
            if not (dot and idx.isdigit()):
                continue
            inner, dot, suffix = tail.rpartition(".")
            src = (_VIT_TO["layers"] if scheme == "classic" else _VIT_TO["classic"])
            if dot and inner in src:
                return outer, scheme, idx, inner, suffix
    return None


def vit_key_scheme(keys) -> Optional[str]:
    """Which naming scheme ViT state dict keys use: "classic", "layers" or None (no encoder
    layer keys, e.g. a zero-layer model, where both schemes agree).

    ``keys``: an iterable of names (a state dict or its ``.keys()``). Raises ValueError when
    the keys mix both schemes.
    """
    seen = {parts[1] for parts in map(_vit_split, keys) if parts is not None}
    if len(seen) > 1:
        raise ValueError("vit_key_scheme: the state dict mixes the classic ViTModel names "
                         "(encoder.layer.N.attention.attention.query...) and the transformers 5 "
                         "names (layers.N.attention.q_proj...); use one scheme")
    return seen.pop() if seen else None


def convert_vit_state_dict(state_dict: Mapping[str, Any], to: str) -> dict:
    """The same tensors under scheme ``to`` ("classic" or "layers"; see `VIT_KEY_SCHEMES`).

    The source scheme is detected (`vit_key_scheme`); an outer ``vit.`` prefix is kept; keys
    outside the encoder layers (embeddings, ``layernorm.*``, ``pooler.*``, ``classifier.*``,
    ``projection.weight``) are passed through; values are not copied. Used by
    `VisionEncoder.from_hf_state_dict` (to read either scheme), `VisionEncoder.state_dict`
    (``scheme=``) and benchmarks/python/vit_bench.py (to load our weights into whichever
    ViTModel is installed: ``to=vit_key_scheme(model.state_dict())``).
    """
    if to not in VIT_KEY_SCHEMES:
        raise ValueError(f"convert_vit_state_dict: to={to!r} is not one of {VIT_KEY_SCHEMES}")
    src = vit_key_scheme(state_dict.keys())
    if src is None or src == to:
        return dict(state_dict)
    names, pre = _VIT_TO[to], _VIT_LAYER_PREFIX[to]
    out = {}
    for k, v in state_dict.items():
        parts = _vit_split(k)
        if parts is None:
            out[k] = v
        else:
            outer, _, idx, inner, suffix = parts
            out[f"{outer}{pre}{idx}.{names[inner]}.{suffix}"] = v
    return out


def random_vit_state_dict(config, seed: int = 0) -> dict:
    """Random float32 weights of ``config`` by their Hugging Face ViTModel names.

    Matrices are normal with std ``1/sqrt(fan_in)`` (activations stay O(1) through the layers),
    biases, the CLS token and the position table normal with std 0.02, layer-norm weights
    ``1 + N(0, 0.02)``. Deterministic in ``seed``.
    """
    c = _as_config(config)
    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in _hf_shapes(c).items():
        a = rng.standard_normal(shape)
        if k.endswith(".weight") and len(shape) >= 2:
            a *= 1.0 / math.sqrt(int(np.prod(shape[1:])))
        else:
            a *= 0.02
            if "layernorm" in k and k.endswith(".weight"):
                a += 1.0
        out[k] = a.astype(np.float32)
    return out


class VisionEncoder:
    """A ViT-style image encoder on one device, in one dtype.

    Parameters
    ----------
    config : VisionConfig, mapping or transformers ViTConfig
        The model sizes.
    weights : mapping of str to numpy array
        The arrays by their Hugging Face ViTModel names (`from_hf_state_dict` accepts prefixes
        and ignores the pooler); ``projection.weight`` ``[projection_dim, hidden]`` when the
        config has a projection.
    device : str
        ``"cpu"`` or ``"cuda"``.
    dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``: the weights and activations.
    execution_mode : {"auto", "eager", "graph"}, optional
        The default of `forward`: "auto" (default) is "graph" on both devices (on the CPU the
        planned graph's reused buffers measured 5-15% faster than eager; docs/models.md).
    graph_cache_size : int, optional
        Graph mode: the number of batch sizes whose graphs (and input buffers) are kept (least
        recently used dropped; default 8). The graphs share the encoder's weights.
    """

    def __init__(self, config, weights: Mapping[str, np.ndarray], device: str = "cpu",
                 dtype: str = "float32", execution_mode: str = "auto", graph_cache_size: int = 8):
        self.config = c = _as_config(config)
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"VisionEncoder: dtype {dtype!r} is not one of {_FLOAT_DTYPES}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"VisionEncoder: device {device!r} is not 'cpu' or 'cuda'")
        if device == "cuda" and not _C.cuda_available():
            raise ValueError("VisionEncoder: device 'cuda' requested but no CUDA device is usable")
        if execution_mode not in _MODES:
            raise ValueError(f"VisionEncoder: execution_mode {execution_mode!r} is not one of "
                             f"{_MODES}")
        if isinstance(graph_cache_size, bool) or not isinstance(graph_cache_size, int) \
                or graph_cache_size < 1:
            raise ValueError(f"VisionEncoder: graph_cache_size must be an int >= 1, got "
                             f"{graph_cache_size!r}")
        self.device, self.dtype, self.execution_mode = device, dtype, execution_mode
        shapes = _hf_shapes(c)
        missing = [k for k in shapes if k not in weights]
        if missing:
            raise ValueError(f"VisionEncoder: the weights lack {len(missing)} tensor(s) the config "
                             f"needs, e.g. {missing[:3]}")

        def get(name):
            a = np.asarray(weights[name])
            if not (a.dtype.kind == "f" or a.dtype.name == "bfloat16"):
                raise TypeError(f"VisionEncoder: {name} must be a float array (got {a.dtype})")
            a = a.astype(np.float32)
            if a.shape != shapes[name]:
                raise ValueError(f"VisionEncoder: {name} has shape {a.shape}, the config says "
                                 f"{shapes[name]}")
            return a

        def put(a):
            return _C.Tensor(np.ascontiguousarray(a, dtype=np.float32), device, dtype)

        h, N = c.hidden_size, c.num_patches
        pw = get("embeddings.patch_embeddings.projection.weight")
        self._patch_w = put(pw.reshape(h, -1))        # [h, C*p*p]: the unfold's (c, i, j) order
        pos = get("embeddings.position_embeddings")[0]
        table = pos.copy()                            # summed once in float32
        table[0] += get("embeddings.cls_token")[0, 0]
        table[1:] += get("embeddings.patch_embeddings.projection.bias")
        self._embed = put(table)                      # [1 + N, h], broadcast over the batch
        # The three parts in float32 on the host (a few KB), for state_dict.
        self._embed_parts = (get("embeddings.cls_token")[0, 0], pos,
                             get("embeddings.patch_embeddings.projection.bias"))
        self._layers = []
        for i in range(c.num_hidden_layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([get(p + f"attention.attention.{n}.weight")
                                    for n in ("query", "key", "value")], axis=0)
            qkv_b = (put(np.concatenate([get(p + f"attention.attention.{n}.bias")
                                         for n in ("query", "key", "value")], axis=0))
                     if c.qkv_bias else None)
            self._layers.append(dict(
                ln1_g=put(get(p + "layernorm_before.weight")),
                ln1_b=put(get(p + "layernorm_before.bias")),
                qkv_w=put(qkv_w), qkv_b=qkv_b,
                o_w=put(get(p + "attention.output.dense.weight")),
                o_b=put(get(p + "attention.output.dense.bias")),
                ln2_g=put(get(p + "layernorm_after.weight")),
                ln2_b=put(get(p + "layernorm_after.bias")),
                i_w=put(get(p + "intermediate.dense.weight")),
                i_b=put(get(p + "intermediate.dense.bias")),
                f_w=put(get(p + "output.dense.weight")),
                f_b=put(get(p + "output.dense.bias"))))
        self._ln = (put(get("layernorm.weight")), put(get("layernorm.bias")))
        self._proj = put(get("projection.weight")) if c.projection_dim is not None else None
        # Mean pooling: a 0/1 row (exact in every dtype) times the tokens, one batched GEMM
        # accumulated in float32, then a scale by 1/N (in float32 inside the op).
        self._mean_w = (put(np.concatenate([[0.0], np.ones(N)]).reshape(1, N + 1))
                        if c.pooling == "mean" else None)
        self._eps = float(c.layer_norm_eps)
        self._scale = 1.0 / math.sqrt(c.head_dim)
        from ..graph import Compiled
        self._graphs = Compiled(self._graph_body, device=device, cache_size=graph_cache_size,
                                copy_constants=False)
        # Per batch size: the patch buffer P [B, 1 + N, C*p*p] (row 0 zeroed once), written in
        # place each call, so a captured graph sees the same input address and replays. The
        # lock keeps two threads from sharing a buffer (or tracing one batch size twice).
        self._buffers: collections.OrderedDict = collections.OrderedDict()
        self._buffers_max = graph_cache_size
        self._lock = threading.Lock()

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def random(cls, config, seed: int = 0, device: str = "cpu", dtype: str = "float32",
               **kwargs) -> "VisionEncoder":
        """An encoder with random weights (`random_vit_state_dict`), deterministic in ``seed``."""
        c = _as_config(config)
        return cls(c, random_vit_state_dict(c, seed), device=device, dtype=dtype, **kwargs)

    @classmethod
    def from_hf_state_dict(cls, state_dict: Mapping[str, Any], config, device: str = "cpu",
                           dtype: str = "float32", **kwargs) -> "VisionEncoder":
        """From a Hugging Face ``ViTModel`` state dict (numpy arrays, or torch tensors on the CPU).

        A ``vit.`` prefix (``ViTForImageClassification``) is removed; the pooler
        (``pooler.dense.*``: HF's dense + tanh head), ``classifier.*`` and
        ``embeddings.mask_token`` are not part of this model and are ignored. CLIP's
        ``visual_projection.weight`` is accepted as ``projection.weight``. Either naming scheme
        of the encoder layers is read (`vit_key_scheme`: the classic
        ``encoder.layer.N.attention.attention.query.weight`` ... or transformers 5's
        ``layers.N.attention.q_proj.weight`` ...; `convert_vit_state_dict`).
        """
        state_dict = convert_vit_state_dict(state_dict, "classic")
        w = {}
        for k, v in state_dict.items():
            k = k[4:] if k.startswith("vit.") else k
            if k == "visual_projection.weight":
                k = "projection.weight"
            if hasattr(v, "detach"):            # a torch tensor
                v = v.detach().float().cpu().numpy()
            w[k] = v
        return cls(config, w, device=device, dtype=dtype, **kwargs)

    def state_dict(self, scheme: str = "classic") -> dict:
        """The weights by their Hugging Face names: numpy arrays in the encoder's dtype (the CLS
        token, position table and patch bias in float32, as given). ``scheme``: "classic"
        (``encoder.layer.N.attention.attention.query.weight``, published checkpoints) or
        "layers" (transformers 5's ``layers.N.attention.q_proj.weight``); `VIT_KEY_SCHEMES`."""
        if scheme not in VIT_KEY_SCHEMES:
            raise ValueError(f"VisionEncoder.state_dict: scheme {scheme!r} is not one of "
                             f"{VIT_KEY_SCHEMES}")
        c = self.config
        h, N = c.hidden_size, c.num_patches

        def get(t):
            return np.asarray(t.numpy())

        cls_tok, pos, bias = self._embed_parts
        sd = {"embeddings.cls_token": cls_tok.reshape(1, 1, h),
              "embeddings.position_embeddings": pos.reshape(1, N + 1, h),
              "embeddings.patch_embeddings.projection.bias": bias}
        sd["embeddings.patch_embeddings.projection.weight"] = get(self._patch_w).reshape(
            h, c.num_channels, c.patch_size, c.patch_size)
        for i, L in enumerate(self._layers):
            p = f"encoder.layer.{i}."
            qkv_w = get(L["qkv_w"])
            for j, n in enumerate(("query", "key", "value")):
                sd[p + f"attention.attention.{n}.weight"] = qkv_w[j * h:(j + 1) * h]
                if L["qkv_b"] is not None:
                    sd[p + f"attention.attention.{n}.bias"] = get(L["qkv_b"])[j * h:(j + 1) * h]
            for key, hf in (("o_w", "attention.output.dense.weight"),
                            ("o_b", "attention.output.dense.bias"),
                            ("i_w", "intermediate.dense.weight"), ("i_b", "intermediate.dense.bias"),
                            ("f_w", "output.dense.weight"), ("f_b", "output.dense.bias"),
                            ("ln1_g", "layernorm_before.weight"), ("ln1_b", "layernorm_before.bias"),
                            ("ln2_g", "layernorm_after.weight"), ("ln2_b", "layernorm_after.bias")):
                sd[p + hf] = get(L[key])
        sd["layernorm.weight"], sd["layernorm.bias"] = get(self._ln[0]), get(self._ln[1])
        if self._proj is not None:
            sd["projection.weight"] = get(self._proj)
        # The encoder's dtype (ml_dtypes.bfloat16 for bf16), except the CLS token, the position
        # table and the patch bias: float32 as given (a few KB), since the encoder sums them in
        # float32 once; so a save / load round trip is bit-identical in every dtype.
        dt = get(self._ln[0]).dtype
        keep = ("embeddings.cls_token", "embeddings.position_embeddings",
                "embeddings.patch_embeddings.projection.bias")
        sd = {k: np.ascontiguousarray(v if k in keep else v.astype(dt)) for k, v in sd.items()}
        return convert_vit_state_dict(sd, scheme)

    def save_safetensors(self, path: str | os.PathLike) -> None:
        """Write `state_dict` (the encoder's dtype) and the config (metadata ``vit_config``)."""
        from ._sentence import _need

        stn = _need("safetensors.numpy")
        stn.save_file(self.state_dict(), str(path),
                      metadata={"vit_config": json.dumps(self.config.to_dict())})

    @classmethod
    def from_safetensors(cls, path: str | os.PathLike, config=None, device: str = "cpu",
                         dtype: str = "float32", **kwargs) -> "VisionEncoder":
        """Load a safetensors file of HF ViTModel names; the config from ``config`` or the
        file's ``vit_config`` metadata (written by `save_safetensors`)."""
        from ._sentence import _need

        stn = _need("safetensors.numpy")
        safetensors = _need("safetensors")
        if config is None:
            with safetensors.safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
            if "vit_config" not in meta:
                raise ValueError(f"VisionEncoder: {os.fspath(path)!r} has no 'vit_config' metadata; "
                                 "pass config=")
            config = json.loads(meta["vit_config"])
        return cls.from_hf_state_dict(stn.load_file(str(path)), config, device=device,
                                      dtype=dtype, **kwargs)

    # ---- forward --------------------------------------------------------------------------------
    @property
    def graph_traces(self) -> int:
        """How many batch-size graphs graph mode has traced and planned."""
        return self._graphs.traces

    def _resolve_mode(self, execution_mode) -> str:
        mode = self.execution_mode if execution_mode is None else execution_mode
        if mode not in _MODES:
            raise ValueError(f"VisionEncoder: execution_mode {mode!r} is not one of {_MODES}")
        if mode == "auto":
            # Graph on both devices: on CUDA one replay instead of ~115 launches; on the CPU
            # the plan's arena (buffers reused call to call) beat eager's fresh intermediates by
            # 5-15% (docs/models.md, "Vision"); no padding to lose it, unlike BERT's buckets.
            mode = "graph"
        return mode

    def _images(self, images):
        """(the images as a contiguous lc.Tensor [B, C, H, W] on the device in the dtype, B);
        None for an empty numpy batch."""
        c = self.config
        is_lc = isinstance(images, _C.Tensor)
        if not is_lc:
            images = np.asarray(images)
            if not (images.dtype.kind == "f" or images.dtype.name == "bfloat16"):
                raise TypeError(f"VisionEncoder: images must be floating point (got {images.dtype} "
                                f"of shape {images.shape})")
        shape = tuple(images.shape)
        want = (c.num_channels, c.image_size, c.image_size)
        if len(shape) != 4:
            raise ValueError(f"VisionEncoder: images must be [batch, channels, height, width] = "
                             f"[B, {want[0]}, {want[1]}, {want[2]}] (got shape {shape})")
        if shape[1] != c.num_channels:
            raise ValueError(f"VisionEncoder: images have {shape[1]} channels (shape {shape}), the "
                             f"model takes {c.num_channels}: [B, {want[0]}, {want[1]}, {want[2]}]")
        if shape[2:] != want[1:]:
            hint = (f"{shape[2]} x {shape[3]} is not divisible by patch_size {c.patch_size}"
                    if shape[2] % c.patch_size or shape[3] % c.patch_size
                    else "the position embeddings are for that size only")
            raise ValueError(f"VisionEncoder: images are {shape[2]} x {shape[3]} (shape {shape}), "
                             f"the model takes {c.image_size} x {c.image_size} ({hint}); resize them")
        if is_lc:
            if images.dtype != self.dtype:
                raise TypeError(f"VisionEncoder: images are {images.dtype} (shape {shape}), the "
                                f"encoder runs in {self.dtype}; convert with .astype({self.dtype!r})")
            if images.device.split(":")[0] != self.device:
                raise ValueError(f"VisionEncoder: images are on {images.device} (shape {shape}), the "
                                 f"encoder on {self.device}; move them with .to({self.device!r})")
            return images if images.is_contiguous() else images.contiguous(), shape[0]
        if shape[0] == 0:
            return None, 0
        return (_C.Tensor(np.ascontiguousarray(images, dtype=np.float32), self.device, self.dtype),
                shape[0])

    def _patch_buffer(self, B: int):
        """(P, dst) of batch size B: the patch buffer P [B, 1 + N, C*p*p] (row 0 zero) and the
        view of its rows 1..N as [B, gh, gw, C, p, p] that the unfold writes. Under the lock."""
        bufs = self._buffers.get(B)
        if bufs is not None:
            self._buffers.move_to_end(B)
            return bufs
        c = self.config
        C, p, g, S = c.num_channels, c.patch_size, c.grid, c.seq_len
        K = C * p * p
        P = _C.Tensor.empty([B, S, K], device=self.device, dtype=self.dtype)
        P[:, 0].copy_(_C.Tensor(np.zeros((B, K), np.float32), self.device, self.dtype))
        dst = P._view([B, g, g, C, p, p], [S * K, g * K, K, p * p, p, 1], K)
        self._buffers[B] = bufs = (P, dst)
        while len(self._buffers) > self._buffers_max:
            self._buffers.popitem(last=False)
        return bufs

    def _unfold_into(self, img, dst) -> None:
        """dst (P's rows 1..N) = the patches of img in raster order, each (c, i, j): one strided
        copy."""
        c = self.config
        p, g = c.patch_size, c.grid
        src = img.view(img.shape[0], c.num_channels, g, p, g, p).permute(0, 2, 4, 1, 3, 5)
        dst.copy_(src)                                                   # [B, gh, gw, C, p, p]

    def _body(self, ops, P):
        """Everything after the unfold: (tokens [B, 1 + N, h], pooled [B, pooled_dim])."""
        c = self.config
        H, eps, act = c.num_attention_heads, self._eps, c.hidden_act
        x = ops.add(ops.linear(P, self._patch_w), self._embed)
        for L in self._layers:
            a = self_attention(ops, ops.layernorm(x, L["ln1_g"], L["ln1_b"], eps),
                               L["qkv_w"], L["qkv_b"], H, self._scale)
            x = ops.linear(a, L["o_w"], L["o_b"], residual=x)
            m = mlp_up(ops, ops.layernorm(x, L["ln2_g"], L["ln2_b"], eps), L["i_w"], L["i_b"], act)
            x = ops.linear(m, L["f_w"], L["f_b"], residual=x)
        x = ops.layernorm(x, self._ln[0], self._ln[1], eps)
        B = x.shape[0]
        if self._mean_w is not None:
            pooled = ops.vector_scale(ops.matmul(self._mean_w, x), 1.0 / c.num_patches)
            pooled = pooled.reshape(B, c.hidden_size)
        else:
            pooled = x[:, 0]                                              # a strided view
        if self._proj is not None:
            pooled = ops.linear(pooled, self._proj)
        elif self._mean_w is None:
            pooled = pooled.contiguous()
        return x, pooled

    def _graph_body(self, P):
        import lightning_core as lc  # the tracer records lc.<op> calls

        return self._body(lc, P)

    def forward(self, images, execution_mode: Optional[str] = None):
        """Encode a batch of images: ``(tokens, pooled)`` as ``lc.Tensor`` s on the device.

        Parameters
        ----------
        images : array-like or lc.Tensor, [B, num_channels, image_size, image_size]
            A numpy array (or nested lists) of any float dtype (converted to the encoder's dtype
            and uploaded), or an ``lc.Tensor`` in the encoder's dtype on its device (any strides).
        execution_mode : {"eager", "graph", "auto"}, optional
            None: the encoder's default. "graph" replays the batch size's graph (traced and
            planned on its first call; on CUDA recorded on its second); the results are new
            tensors either way.

        Returns
        -------
        tokens : lc.Tensor
            ``[B, 1 + num_patches, hidden]``, the final layer-normed tokens (CLS first), as
            HF ViTModel's ``last_hidden_state``.
        pooled : lc.Tensor
            ``[B, projection_dim or hidden]``.

        Raises
        ------
        ValueError
            Not ``[B, C, H, W]``, the wrong channel count or image size, an lc.Tensor on another
            device, an unknown mode.
        TypeError
            Integer images, an lc.Tensor of another dtype.
        """
        mode = self._resolve_mode(execution_mode)
        img, B = self._images(images)
        c = self.config
        if B == 0:
            z = _C.Tensor(np.zeros((0, c.seq_len, c.hidden_size), np.float32), self.device, self.dtype)
            return z, _C.Tensor(np.zeros((0, c.pooled_dim), np.float32), self.device, self.dtype)
        with self._lock:
            P, dst = self._patch_buffer(B)
            self._unfold_into(img, dst)
            if mode == "eager":
                return self._body(_C, P)
            return self._graphs(P)

    __call__ = forward

    def explain(self, batch: int = 1) -> str:
        """The graph plan of one batch size (traced if new): steps, fusions, memory."""
        with self._lock:
            return self._graphs.explain(self._patch_buffer(int(batch))[0])
