"""A BERT-family transformer encoder built from Lightning Core ops (eager or as LC graphs).

`TransformerEncoder` holds the weights of a Hugging Face ``BertModel`` checkpoint (the
``embeddings.*`` / ``encoder.layer.N.*`` names) as ``lc.Tensor`` s on one device in one dtype and
runs the forward pass with LC ops only:

    x = layernorm(word[ids] + position[0:S] + token_type[type_ids])
    per layer:
        qkv  = linear(x, Wqkv, bqkv)                 # Q, K and V as one GEMM ([3h, h] weight)
        q, k, v = views [B, H, S, D] of qkv          # no copy: attention reads the strides
        a    = attention(q, k, v, mask=key_padding)  # softmax(q k^T / sqrt(D) + mask) v
                                                     # (written as [B, S, H, D] through a
                                                     # strided out: attention_into in eager
                                                     # mode, the graph's attention_out_proj rule)
        x    = layernorm(linear(a, Wo, bo, residual=x))
        x    = layernorm(linear(gelu_erf(linear(x, Wi, bi)), Wo2, bo2, residual=x))

Two execution modes (``forward(..., execution_mode=...)``): "eager" runs the ops one by one;
"graph" pads the batch to a (batch bucket, sequence bucket) shape (padded tokens get mask 0),
runs the embedding lookup eagerly and everything after it (position add, embedding layernorm,
every layer, with the views above as graph view nodes) as one planned LC graph per bucket
(``lc.compile``; on a GPU one captured CUDA graph, replayed), kept in an LRU on the encoder, and
slices the result back to ``[B, S, hidden]``. The default ("auto") is "graph" on CUDA; on the
CPU "graph" when the batch needs no padding (both sizes already bucket sizes), else "eager"
(docs/models.md, "Execution modes").

The config is the checkpoint's ``config.json`` (``hidden_size``, ``num_hidden_layers``,
``num_attention_heads``, ``intermediate_size``, ``hidden_act``, ``layer_norm_eps``,
``max_position_embeddings``, ``type_vocab_size``, ``vocab_size``).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
from typing import Any, Mapping

import numpy as np

from .. import _lightning_core as _C

__all__ = ["BertConfig", "TransformerEncoder", "bucket_size"]

_FLOAT_DTYPES = ("float32", "bfloat16", "float16")
_MODES = ("auto", "eager", "graph")


def bucket_size(n: int, minimum: int = 1, maximum: int | None = None) -> int:
    """The bucket a batch or sequence of size ``n`` is padded to in graph mode.

    Buckets are 1, 2, 4, 8 and then the powers of two and their midpoints (12, 16, 24, 32, 48,
    64, ...), so padding wastes at most a third of the work; never below ``minimum``, and
    ``maximum`` caps the result (at least ``n``).

    Parameters
    ----------
    n : int
        The real size (>= 1).
    minimum : int, optional
        The smallest bucket (default 1).
    maximum : int, optional
        The largest bucket (the model's position limit for sequences); None: no cap.

    Returns
    -------
    int
        The padded size, ``>= n``.
    """
    b = max(int(minimum), 1)
    while b < n:
        if b < 8:
            b *= 2                 # 1, 2, 4, 8
        elif b & (b - 1) == 0:
            b += b // 2            # 8 -> 12, 16 -> 24, ...
        else:
            b = b // 3 * 4         # 12 -> 16, 24 -> 32, ...
    if maximum is not None:
        b = min(b, max(int(maximum), n))
    return b


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The sizes of a BERT-family encoder (the fields of a Hugging Face ``config.json``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                               "num_attention_heads", "intermediate_size") if n not in d]
        if missing:
            raise ValueError(f"BertConfig: config is missing {missing}")
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size {cfg.hidden_size} is not a multiple of "
                             f"num_attention_heads {cfg.num_attention_heads}")
        if cfg.hidden_act not in ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu"):
            raise ValueError(f"BertConfig: hidden_act {cfg.hidden_act!r} is not supported "
                             "(gelu, gelu_new, gelu_pytorch_tanh, relu)")
        pet = d.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise ValueError(f"BertConfig: position_embedding_type {pet!r} is not supported "
                             "(only 'absolute')")
        return cfg

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def checkpoint_getter(weights: Mapping[str, np.ndarray], where: str):
    """get(name, shape) -> float32 array of a Hugging Face BERT checkpoint (a ``bert.`` prefix
    accepted), raising ValueError naming `where` for a missing tensor or a shape the config
    does not give. Shared by TransformerEncoder and TensorParallelEncoder."""
    w = {(k[5:] if k.startswith("bert.") else k): v for k, v in weights.items()}

    def get(name, shape):
        if name not in w:
            raise ValueError(f"{where}: the checkpoint has no tensor {name!r}")
        a = np.asarray(w[name], dtype=np.float32)
        if a.shape != tuple(shape):
            raise ValueError(f"{where}: {name} has shape {a.shape}, the config says "
                             f"{tuple(shape)}")
        return a
    return get


class TransformerEncoder:
    """A BERT encoder on one device, in one dtype, run eagerly with LC ops.

    Parameters
    ----------
    config : BertConfig or mapping
        The model sizes (a ``config.json`` dict is accepted).
    weights : mapping of str to numpy array
        The checkpoint's arrays by their Hugging Face names; a ``bert.`` prefix is accepted.
    device : str
        ``"cpu"`` or ``"cuda"``.
    dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``: the weights and activations.
    execution_mode : {"auto", "eager", "graph"}, optional
        The default of `forward`: "auto" (default) is "graph" on CUDA; on the CPU "graph" for
        batches that need no padding (batch and sequence already bucket sizes), else "eager".
    graph_cache_size : int, optional
        Graph mode: the number of (batch bucket, sequence bucket) graphs kept (least recently
        used dropped; default 16). The graphs share the encoder's weights (no copies).
    """

    def __init__(self, config, weights: Mapping[str, np.ndarray], device: str = "cpu",
                 dtype: str = "float32", execution_mode: str = "auto", graph_cache_size: int = 16):
        self.config = config if isinstance(config, BertConfig) else BertConfig.from_dict(config)
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"TransformerEncoder: dtype {dtype!r} is not one of {_FLOAT_DTYPES}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"TransformerEncoder: device {device!r} is not 'cpu' or 'cuda'")
        if execution_mode not in _MODES:
            raise ValueError(f"TransformerEncoder: execution_mode {execution_mode!r} is not one of "
                             f"{_MODES}")
        if not isinstance(graph_cache_size, int) or graph_cache_size < 1:
            raise ValueError(f"TransformerEncoder: graph_cache_size must be an int >= 1, got "
                             f"{graph_cache_size!r}")
        self.device = device
        self.dtype = dtype
        self.execution_mode = execution_mode
        c = self.config
        get = checkpoint_getter(weights, "TransformerEncoder")

        def put(a):
            return _C.Tensor(np.ascontiguousarray(a, dtype=np.float32), device, dtype)

        h, it = c.hidden_size, c.intermediate_size
        word = get("embeddings.word_embeddings.weight", (c.vocab_size, h))
        pos = get("embeddings.position_embeddings.weight", (c.max_position_embeddings, h))
        typ = get("embeddings.token_type_embeddings.weight", (c.type_vocab_size, h))
        self._word = put(word)
        self._pos = put(pos)
        # position + token type 0, summed once in float32: the common single-segment input
        # (every type id 0) then needs one add instead of two.
        self._pos_type0 = put(pos + typ[0])
        self._type = put(typ)
        self._ln_emb = (put(get("embeddings.LayerNorm.weight", (h,))),
                        put(get("embeddings.LayerNorm.bias", (h,))))
        self._layers = []
        for i in range(c.num_hidden_layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([get(p + f"attention.self.{n}.weight", (h, h))
                                    for n in ("query", "key", "value")], axis=0)
            qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias", (h,))
                                    for n in ("query", "key", "value")], axis=0)
            self._layers.append(dict(
                qkv_w=put(qkv_w), qkv_b=put(qkv_b),
                o_w=put(get(p + "attention.output.dense.weight", (h, h))),
                o_b=put(get(p + "attention.output.dense.bias", (h,))),
                ln1_g=put(get(p + "attention.output.LayerNorm.weight", (h,))),
                ln1_b=put(get(p + "attention.output.LayerNorm.bias", (h,))),
                i_w=put(get(p + "intermediate.dense.weight", (it, h))),
                i_b=put(get(p + "intermediate.dense.bias", (it,))),
                f_w=put(get(p + "output.dense.weight", (h, it))),
                f_b=put(get(p + "output.dense.bias", (h,))),
                ln2_g=put(get(p + "output.LayerNorm.weight", (h,))),
                ln2_b=put(get(p + "output.LayerNorm.bias", (h,))),
            ))
        self._eps = float(c.layer_norm_eps)
        self._scale = 1.0 / math.sqrt(c.head_dim)
        from ..graph import Compiled
        # Graph mode: one traced, planned graph per (batch bucket, seq bucket, position add);
        # the lock keeps concurrent forwards from tracing one signature twice.
        self._graphs = Compiled(self._graph_body, device=device, cache_size=graph_cache_size,
                                copy_constants=False)
        self._graph_lock = threading.Lock()
        # Per bucket: the graph's input buffers on the device (hidden [Bb, Sb, h], mask int32
        # [Bb, Sb]), written in place each call, so a captured graph sees the same addresses and
        # replays without recording again. Bounded like the graph cache.
        self._graph_inputs: collections.OrderedDict = collections.OrderedDict()
        self._graph_inputs_max = graph_cache_size

    @property
    def graph_traces(self) -> int:
        """How many bucket graphs graph mode has traced and planned (reuse keeps it flat)."""
        return self._graphs.traces

    def graph_buckets(self) -> list:
        """The (batch bucket, sequence bucket) shapes whose graphs are cached, least recent first.

        A bucket appears once per variant: with a mask input (padded), without (no padding),
        and with the position add outside the graph (nonzero token types)."""
        return [key[0][1][:2] for key in self._graphs._cache]

    def _resolve_mode(self, execution_mode) -> str:
        mode = self.execution_mode if execution_mode is None else execution_mode
        if mode not in _MODES:
            raise ValueError(f"TransformerEncoder: execution_mode {mode!r} is not one of {_MODES}")
        if mode == "auto":
            mode = "graph" if self.device == "cuda" else "eager"
        return mode

    def _ids_tensor(self, a, name: str, B: int, S: int):
        a = np.asarray(a)
        if a.shape != (B, S):
            raise ValueError(f"TransformerEncoder: {name} has shape {a.shape}, input_ids has "
                             f"{(B, S)}; pass one row per sequence")
        if a.dtype.kind not in "iub":
            raise TypeError(f"TransformerEncoder: {name} must be integer (got {a.dtype})")
        return a

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, execution_mode=None):
        """The last hidden state ``[B, S, hidden]`` (an ``lc.Tensor`` on the encoder's device).

        Parameters
        ----------
        input_ids : int array [B, S]
            Token ids.
        attention_mask : int array [B, S], optional
            Nonzero = a real token; None = every token real.
        token_type_ids : int array [B, S], optional
            Segment ids; None = all 0.
        execution_mode : {"eager", "graph", "auto"}, optional
            None: the encoder's default (``execution_mode`` of the constructor). "graph" pads
            to the (batch, sequence) bucket and replays that bucket's graph; the result is then
            a view of the padded output.

        Returns
        -------
        lc.Tensor
            ``[B, S, hidden]`` in the encoder's dtype, on its device.
        """
        mode = self._resolve_mode(execution_mode)
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"TransformerEncoder: input_ids must be [batch, seq] (got shape "
                             f"{ids.shape})")
        if ids.dtype.kind not in "iu":
            raise TypeError(f"TransformerEncoder: input_ids must be integer (got {ids.dtype})")
        B, S = ids.shape
        c = self.config
        if S > c.max_position_embeddings:
            raise ValueError(f"TransformerEncoder: sequence length {S} exceeds "
                             f"max_position_embeddings {c.max_position_embeddings}; truncate it")
        if ids.size and (ids.min() < 0 or ids.max() >= c.vocab_size):
            raise ValueError(f"TransformerEncoder: input_ids outside [0, {c.vocab_size})")
        dev, h, H, D = self.device, c.hidden_size, c.num_attention_heads, c.head_dim
        if B == 0 or S == 0:
            return _C.Tensor(np.zeros((B, S, h), np.float32), dev, self.dtype)
        requested = self.execution_mode if execution_mode is None else execution_mode
        if (requested == "auto" and dev == "cpu" and bucket_size(B) == B
                and bucket_size(S, 8, c.max_position_embeddings) == S):
            # No padding needed: the CPU plan measured faster than eager (session 15, 2-core
            # host: 1x128 15.0 against 16.3 ms, 32x16 44.5 against 48.8), with the same results.
            mode = "graph"
        if mode == "graph":
            return self._forward_graph(ids, attention_mask, token_type_ids)
        # The ops run on the model's device: under the default policy "auto" placement would
        # move big CPU ops to a GPU (uploading their operands per call), and a CPU model must
        # mean the CPU (the graph mode plans on `device` the same way).
        from ..policy import policy
        with policy(device=dev):
            return self._forward_eager(ids, attention_mask, token_type_ids)

    __call__ = forward

    def _forward_eager(self, ids, attention_mask, token_type_ids):
        c = self.config
        B, S = ids.shape
        dev, h, H, D = self.device, c.hidden_size, c.num_attention_heads, c.head_dim
        x = _C.embedding(_C.Tensor(ids.astype(np.int32, copy=False), dev), self._word)
        if token_type_ids is None or not np.any(token_type_ids):
            x = _C.add(x, self._pos_type0[0:S])
        else:
            tt = self._ids_tensor(token_type_ids, "token_type_ids", B, S)
            if tt.min() < 0 or tt.max() >= c.type_vocab_size:
                raise ValueError(f"TransformerEncoder: token_type_ids outside [0, "
                                 f"{c.type_vocab_size})")
            x = _C.add(x, self._pos[0:S])
            x = _C.add(x, _C.embedding(_C.Tensor(tt.astype(np.int32), dev), self._type))
        x = _C.layernorm(x, self._ln_emb[0], self._ln_emb[1], self._eps)
        mask = None
        if attention_mask is not None:
            m = self._ids_tensor(attention_mask, "attention_mask", B, S)
            if not m.all():
                mask = _C.Tensor((m != 0).astype(np.int32), dev)
        act = c.hidden_act
        for L in self._layers:
            qkv = _C.linear(x, L["qkv_w"], L["qkv_b"])                    # [B, S, 3h]
            qkv5 = qkv.view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)         # [3, B, H, S, D]
            # attention writes the merged-heads layout [B, S, H, D] through out's strides: no
            # [B, H, S, D] temporary and no permute copy
            a = _C.Tensor.empty([B, S, h], device=dev, dtype=self.dtype)
            _C.attention_into(qkv5[0], qkv5[1], qkv5[2], a.view(B, S, H, D).permute(0, 2, 1, 3),
                              mask=mask, scale=self._scale)
            x = _C.layernorm(_C.linear(a, L["o_w"], L["o_b"], residual=x),
                             L["ln1_g"], L["ln1_b"], self._eps)
            if act == "gelu":   # exact erf GELU (linear's fused "gelu" is the tanh form); the
                # CPU fuses it into the GEMM's tiles, other devices run it as a second step
                inter = _C.linear(x, L["i_w"], L["i_b"], activation="gelu_erf")
            elif act == "relu":
                inter = _C.linear(x, L["i_w"], L["i_b"], activation="relu")
            else:               # gelu_new / gelu_pytorch_tanh: the tanh form, fused
                inter = _C.linear(x, L["i_w"], L["i_b"], activation="gelu")
            x = _C.layernorm(_C.linear(inter, L["f_w"], L["f_b"], residual=x),
                             L["ln2_g"], L["ln2_b"], self._eps)
        return x

    # ---- graph mode ----------------------------------------------------------------------------
    def _graph_body(self, x, mask, add_pos: bool):
        """The traced part: [position add,] embedding layernorm and every layer, on proxies.

        ``mask`` is a graph input (int32 [B, S]) or None (no padding: a separate graph)."""
        import lightning_core as lc  # the tracer records lc.<op> calls

        c = self.config
        B, S, h = x.shape
        H, D = c.num_attention_heads, c.head_dim
        if add_pos:
            x = lc.add(x, self._pos_type0[0:S])
        x = lc.layernorm(x, self._ln_emb[0], self._ln_emb[1], self._eps)
        act = c.hidden_act
        for L in self._layers:
            qkv = lc.linear(x, L["qkv_w"], L["qkv_b"])                    # [B, S, 3h]
            qkv5 = qkv.view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)         # aliases
            a = lc.attention(qkv5[0], qkv5[1], qkv5[2], mask=mask, scale=self._scale)
            a = a.permute(0, 2, 1, 3).reshape(B, S, h)                    # the one copy
            x = lc.layernorm(lc.linear(a, L["o_w"], L["o_b"], residual=x),
                             L["ln1_g"], L["ln1_b"], self._eps)
            if act == "gelu":
                inter = lc.gelu(lc.linear(x, L["i_w"], L["i_b"]), approximate="none")
            elif act == "relu":
                inter = lc.linear(x, L["i_w"], L["i_b"], activation="relu")
            else:
                inter = lc.linear(x, L["i_w"], L["i_b"], activation="gelu")
            x = lc.layernorm(lc.linear(inter, L["f_w"], L["f_b"], residual=x),
                             L["ln2_g"], L["ln2_b"], self._eps)
        return x

    def _forward_graph(self, ids, attention_mask, token_type_ids):
        c = self.config
        dev = self.device
        B, S = ids.shape
        Bb = bucket_size(B)
        Sb = bucket_size(S, 8, c.max_position_embeddings)
        # Padded tokens: the pad id, mask 0 (no real token attends to them); a padded batch row
        # keeps its first token visible, so no row of the attention is fully masked.
        ids_p = np.full((Bb, Sb), c.pad_token_id, np.int32)
        ids_p[:B, :S] = ids
        mask_p = np.zeros((Bb, Sb), np.int32)
        if attention_mask is None:
            mask_p[:B, :S] = 1
        else:
            mask_p[:B, :S] = self._ids_tensor(attention_mask, "attention_mask", B, S) != 0
        mask_p[B:, 0] = 1
        typed = token_type_ids is not None and np.any(token_type_ids)
        tt_p = None
        if typed:
            tt = self._ids_tensor(token_type_ids, "token_type_ids", B, S)
            if tt.min() < 0 or tt.max() >= c.type_vocab_size:
                raise ValueError(f"TransformerEncoder: token_type_ids outside [0, "
                                 f"{c.type_vocab_size})")
            tt_p = np.zeros((Bb, Sb), np.int32)
            tt_p[:B, :S] = tt
        with self._graph_lock:
            bufs = self._graph_inputs.get((Bb, Sb))
            if bufs is None:
                bufs = (_C.Tensor.empty([Bb, Sb, c.hidden_size], device=dev, dtype=self.dtype),
                        _C.Tensor.empty([Bb, Sb], device=dev, dtype="int32"))
                self._graph_inputs[(Bb, Sb)] = bufs
                while len(self._graph_inputs) > self._graph_inputs_max:
                    self._graph_inputs.popitem(last=False)
            else:
                self._graph_inputs.move_to_end((Bb, Sb))
            x, mask_t = bufs
            _C.embedding_into(_C.Tensor(ids_p, dev), self._word, x)
            if typed:  # as eager: word + position + type, summed before the graph
                x.copy_(_C.add(_C.add(x, self._pos[0:Sb]), _C.embedding(_C.Tensor(tt_p, dev), self._type)))
            # No padding at all (the bucket fits and every token is real): the graph without a
            # mask, as eager mode drops an all-ones mask (the masked attention costs more on the
            # CPU); else the mask goes into its buffer.
            if mask_p.all():
                mask_t = None
            else:
                mask_t.copy_(_C.Tensor(mask_p))
            out = self._graphs(x, mask_t, not typed)
        return out if (B, S) == (Bb, Sb) else out[0:B, 0:S]

    def mean_pool(self, hidden, attention_mask):
        """Masked mean over the sequence: numpy float32 ``[B, hidden]``.

        The masked sum is one batched GEMM on the device (mask ``[B, 1, S]`` of 0/1, exact in
        every dtype, times ``hidden [B, S, h]``, accumulated in float32); the division by the
        token count is done in float32 on the host.
        """
        m = np.asarray(attention_mask)
        B, S = m.shape
        h = self.config.hidden_size
        if B == 0 or S == 0:
            return np.zeros((B, h), np.float32)
        w = _C.Tensor((m != 0).astype(np.float32).reshape(B, 1, S), self.device, self.dtype)
        s = np.asarray(_C.matmul(w, hidden).numpy(), dtype=np.float32).reshape(B, h)
        cnt = np.maximum((m != 0).sum(axis=1, keepdims=True), 1).astype(np.float32)
        return s / cnt

    def mean_pool_tensor(self, hidden, attention_mask):
        """Masked mean over the sequence as a float32 ``lc.Tensor [B, hidden]`` on the encoder's
        device (nothing is downloaded; `SentenceEncoder.encode(..., convert_to_tensor=True)`).

        The same arithmetic as `mean_pool`: the masked sum as one batched GEMM with 0/1 weights
        in the encoder's dtype (float32 accumulation), converted to float32, then divided by the
        token count in float32 (one broadcast elementwise pass)."""
        from ..policy import policy

        m = np.asarray(attention_mask)
        B, S = m.shape
        h = self.config.hidden_size
        if B == 0 or S == 0:
            return _C.Tensor(np.zeros((B, h), np.float32), self.device)
        real = m != 0
        cnt = np.maximum(real.sum(axis=1), 1).astype(np.float32).reshape(B, 1, 1)
        with policy(device=self.device):
            w = _C.Tensor(real.astype(np.float32).reshape(B, 1, S), self.device, self.dtype)
            s = _C.matmul(w, hidden)                                       # [B, 1, h]
            if s.dtype != "float32":
                s = s.astype("float32")
            pooled = _C.elementwise_program("div x0 x1", s, _C.Tensor(cnt, self.device))
        return pooled.reshape(B, h)
