"""Tensor parallel (issue #17): `TensorParallelEncoder`, Megatron-style column / row splits of
every layer of a BERT encoder across devices, one all-reduce per block (see its docstring).
Data parallel (several replicas, one per device) is `_parallel.py`'s.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .. import _lightning_core as _C
from ..devices import Device
from ._bert import BertConfig, TransformerEncoder, checkpoint_getter
from ._parallel import device_context, parse_device
from ._sentence import SentenceEncoder

__all__ = ["TensorParallelEncoder"]


def _encoder_weights(enc: TransformerEncoder) -> dict:
    """The Hugging Face arrays (float32 numpy) of an encoder, read back from its tensors."""
    def a(t):
        return np.asarray(t.numpy(), dtype=np.float32)

    c = enc.config
    h = c.hidden_size
    pos = a(enc._pos)
    typ = a(enc._type)
    w = {"embeddings.word_embeddings.weight": a(enc._word),
         "embeddings.position_embeddings.weight": pos,
         "embeddings.token_type_embeddings.weight": typ,
         "embeddings.LayerNorm.weight": a(enc._ln_emb[0]),
         "embeddings.LayerNorm.bias": a(enc._ln_emb[1])}
    for i, L in enumerate(enc._layers):
        p = f"encoder.layer.{i}."
        qkv_w, qkv_b = a(L["qkv_w"]), a(L["qkv_b"])
        for j, n in enumerate(("query", "key", "value")):
            w[p + f"attention.self.{n}.weight"] = qkv_w[j * h:(j + 1) * h]
            w[p + f"attention.self.{n}.bias"] = qkv_b[j * h:(j + 1) * h]
        for k, n in (("o_w", "attention.output.dense.weight"), ("o_b", "attention.output.dense.bias"),
                     ("ln1_g", "attention.output.LayerNorm.weight"),
                     ("ln1_b", "attention.output.LayerNorm.bias"),
                     ("i_w", "intermediate.dense.weight"), ("i_b", "intermediate.dense.bias"),
                     ("f_w", "output.dense.weight"), ("f_b", "output.dense.bias"),
                     ("ln2_g", "output.LayerNorm.weight"), ("ln2_b", "output.LayerNorm.bias")):
            w[p + n] = a(L[k])
    return w


def _split(n: int, parts: int) -> list:
    """``parts`` contiguous [start, stop) ranges covering range(n), sizes differing by <= 1."""
    q, r = divmod(n, parts)
    out, s = [], 0
    for p in range(parts):
        e = s + q + (1 if p < r else 0)
        out.append((s, e))
        s = e
    return out


class TensorParallelEncoder:
    """A BERT encoder split across devices, Megatron style, one all-reduce per block.

    Per layer and shard p (of P = ``len(devices)``):

    * attention block: the Q, K and V weights by output rows = by heads (shard p holds heads
      ``heads_p``: ``[3 * |heads_p| * D, h]``, one GEMM), attention on those heads, then the
      output projection by input columns (``Wo[:, heads_p]``); shard 0 adds the bias and the
      residual ``x``; **one all-reduce** (sum) of the ``[B, S, h]`` partials, then layernorm;
    * MLP block: the FFN-up weight by output rows (``intermediate / P`` each) + its GELU, the
      FFN-down weight by input columns; shard 0 adds the bias and the residual; **one
      all-reduce**, layernorm.

    The embeddings and layernorms are replicated (each device computes them; they are small).
    The heads and the FFN width are split as evenly as possible (sizes differ by at most one
    when they are not divisible), so P may be any number up to the head count.

    CUDA devices must be distinct GPUs ("cuda:0", "cuda:1", ...): the all-reduce is NCCL
    through a communicator made with ``ncclCommInitAll`` over those GPUs (the native
    single-process communicator of ``lc.distributed.init_all``; the encoder makes its own on
    the first forward, independent of the process group), queued on each GPU's current
    stream; the forward waits for the last one (with ``lc.distributed``'s timeout and error
    check). "cpu" shards (any number, repeats meant) sum the partials on the host, so the
    split arithmetic is testable without a GPU. CPU and CUDA shards do not mix.

    Parameters
    ----------
    encoder : SentenceEncoder or TransformerEncoder
        The model to split (its host float32 weights, or a TransformerEncoder's tensors read
        back once).
    devices : sequence of str
        One device per shard.
    dtype : str, optional
        Default: the TransformerEncoder's dtype, "float32" for a SentenceEncoder.
    timeout : float, optional
        Seconds a CUDA all-reduce may take (default ``lc.distributed``'s,
        ``LC_DISTRIBUTED_TIMEOUT`` or 300).

    Raises
    ------
    ValueError
        Fewer than one or more shards than heads, CPU and CUDA mixed, a GPU named twice, an
        unknown device or dtype.
    TypeError
        ``encoder`` is neither a SentenceEncoder nor a TransformerEncoder.
    """

    def __init__(self, encoder: Any, devices: Sequence[Any], dtype: str | None = None,
                 timeout: float | None = None):
        where = "TensorParallelEncoder"
        self._sentence = None
        if isinstance(encoder, SentenceEncoder):
            config, weights = encoder.config, encoder._weights
            self._sentence = encoder
            dtype = dtype or "float32"
        elif isinstance(encoder, TransformerEncoder):
            config, weights = encoder.config, _encoder_weights(encoder)
            dtype = dtype or encoder.dtype
        else:
            raise TypeError(f"{where}: encoder must be a SentenceEncoder or a TransformerEncoder, "
                            f"got {type(encoder).__name__}")
        if isinstance(devices, (str, Device)) or not isinstance(devices, Sequence):
            raise TypeError(f"{where}: devices must be a list of devices, e.g. "
                            f"[\"cuda:0\", \"cuda:1\"], got {devices!r}")
        locs = [parse_device(d, where) for d in devices]
        if not locs:
            raise ValueError(f"{where}: devices is empty; name at least one device")
        kinds = {loc.split(":")[0] for loc in locs}
        if len(kinds) > 1:
            raise ValueError(f"{where}: devices {locs} mix the CPU and GPUs; a split model "
                             f"runs on GPUs only or (for checks) on \"cpu\" shards only")
        if "cuda" in kinds:
            seen = set()
            for loc in locs:
                if loc in seen:
                    raise ValueError(f"{where}: {loc} is named twice in devices {locs}; NCCL "
                                     f"refuses one GPU twice in one communicator; name distinct "
                                     f"GPUs (or use \"cpu\" shards to check the split)")
                seen.add(loc)
        c = config if isinstance(config, BertConfig) else BertConfig.from_dict(config)
        P = len(locs)
        if P > c.num_attention_heads:
            raise ValueError(f"{where}: {P} shards but the model has {c.num_attention_heads} "
                             f"heads; use at most one shard per head")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"{where}: dtype {dtype!r} is not float32, bfloat16 or float16")
        self.config = c
        self.dtype = dtype
        self.devices = locs
        self.cuda = "cuda" in kinds
        self._timeout = timeout
        self._comms: list | None = None
        self._uniq = list(dict.fromkeys(locs))
        # The replicated parts per distinct device: embeddings, layernorms.
        h, it, H, D = c.hidden_size, c.intermediate_size, c.num_attention_heads, c.head_dim
        get = checkpoint_getter(weights, where)

        def put(a, loc):
            return _C.Tensor(np.ascontiguousarray(a, dtype=np.float32), loc, dtype)

        word = get("embeddings.word_embeddings.weight", (c.vocab_size, h))
        pos = get("embeddings.position_embeddings.weight", (c.max_position_embeddings, h))
        typ = get("embeddings.token_type_embeddings.weight", (c.type_vocab_size, h))
        ln_g, ln_b = get("embeddings.LayerNorm.weight", (h,)), get("embeddings.LayerNorm.bias", (h,))
        self._rep = {}
        for loc in self._uniq:
            self._rep[loc] = dict(word=put(word, loc), pos=put(pos, loc),
                                  pos_type0=put(pos + typ[0], loc), type=put(typ, loc),
                                  ln=(put(ln_g, loc), put(ln_b, loc)), layers=[])
        self.head_split = _split(H, P)       # [start, stop) heads per shard
        self.ffn_split = _split(it, P)       # [start, stop) FFN columns per shard
        self._shards: list[list] = [[] for _ in range(P)]  # per shard: per layer a dict of tensors
        for i in range(c.num_hidden_layers):
            p_ = f"encoder.layer.{i}."
            q, k, v = (get(p_ + f"attention.self.{n}.weight", (h, h)) for n in ("query", "key", "value"))
            qb, kb, vb = (get(p_ + f"attention.self.{n}.bias", (h,)) for n in ("query", "key", "value"))
            o_w, o_b = get(p_ + "attention.output.dense.weight", (h, h)), get(p_ + "attention.output.dense.bias", (h,))
            i_w, i_b = get(p_ + "intermediate.dense.weight", (it, h)), get(p_ + "intermediate.dense.bias", (it,))
            f_w, f_b = get(p_ + "output.dense.weight", (h, it)), get(p_ + "output.dense.bias", (h,))
            ln1 = (get(p_ + "attention.output.LayerNorm.weight", (h,)), get(p_ + "attention.output.LayerNorm.bias", (h,)))
            ln2 = (get(p_ + "output.LayerNorm.weight", (h,)), get(p_ + "output.LayerNorm.bias", (h,)))
            for loc in self._uniq:
                self._rep[loc]["layers"].append(dict(ln1=(put(ln1[0], loc), put(ln1[1], loc)),
                                                     ln2=(put(ln2[0], loc), put(ln2[1], loc))))
            for p, loc in enumerate(locs):
                (h0, h1), (c0, c1) = self.head_split[p], self.ffn_split[p]
                r0, r1 = h0 * D, h1 * D
                self._shards[p].append(dict(
                    heads=h1 - h0,
                    qkv_w=put(np.concatenate([q[r0:r1], k[r0:r1], v[r0:r1]], axis=0), loc),
                    qkv_b=put(np.concatenate([qb[r0:r1], kb[r0:r1], vb[r0:r1]]), loc),
                    o_w=put(o_w[:, r0:r1], loc),
                    o_b=put(o_b, loc) if p == 0 else None,
                    i_w=put(i_w[c0:c1], loc), i_b=put(i_b[c0:c1], loc),
                    f_w=put(f_w[:, c0:c1], loc),
                    f_b=put(f_b, loc) if p == 0 else None))
        self._eps = float(c.layer_norm_eps)
        self._scale = 1.0 / math.sqrt(D)

    def __repr__(self) -> str:
        return (f"TensorParallelEncoder({len(self.devices)} shards on {self.devices}, "
                f"heads {[b - a for a, b in self.head_split]}, dtype={self.dtype!r})")

    # ---- the all-reduce ----------------------------------------------------------------------
    def _communicators(self) -> list:
        if self._comms is None:
            lib = _C._dist_library_info(True)
            if not lib["loaded"]:
                raise _C.BackendError(f"TensorParallelEncoder: {lib['error'] or 'no NCCL'}")
            self._comms = _C._dist_init_all([int(loc[5:]) for loc in self.devices])
        return self._comms

    def _all_reduce(self, partials: list) -> list:
        """Sum of the shards' partials, one tensor per shard (the same one for "cpu" shards)."""
        if not self.cuda:
            s = partials[0]
            for t in partials[1:]:
                s = _C.add(s, t)
            return [s] * len(partials)
        comms = self._communicators()
        _C._dist_group_start()
        try:
            for cm, t in zip(comms, partials):
                cm.all_reduce(t, t, "sum")
        finally:
            _C._dist_group_end()
        self._pending = [cm.record("all_reduce") for cm in comms]
        return partials

    def _wait(self) -> None:
        pending, self._pending = getattr(self, "_pending", []), []
        if pending:
            from ..distributed import _timeout_value
            t = _timeout_value(self._timeout)
            for n in pending:
                n.wait(t)

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """The last hidden state ``[B, S, hidden]``, an ``lc.Tensor`` on ``devices[0]``.

        Parameters
        ----------
        input_ids : int array [B, S]
            Token ids.
        attention_mask : int array [B, S], optional
            Nonzero = a real token; None = every token real.
        token_type_ids : int array [B, S], optional
            Segment ids; None = all 0.

        Returns
        -------
        lc.Tensor
            ``[B, S, hidden]`` in the encoder's dtype.
        """
        c = self.config
        ids = np.asarray(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"TensorParallelEncoder: input_ids must be [batch, seq] (got shape "
                             f"{ids.shape})")
        if ids.dtype.kind not in "iu":
            raise TypeError(f"TensorParallelEncoder: input_ids must be integer (got {ids.dtype})")
        B, S = ids.shape
        if S > c.max_position_embeddings:
            raise ValueError(f"TensorParallelEncoder: sequence length {S} exceeds "
                             f"max_position_embeddings {c.max_position_embeddings}; truncate it")
        if ids.size and (ids.min() < 0 or ids.max() >= c.vocab_size):
            raise ValueError(f"TensorParallelEncoder: input_ids outside [0, {c.vocab_size})")

        def int_array(a, name):
            a = np.asarray(a)
            if a.shape != (B, S):
                raise ValueError(f"TensorParallelEncoder: {name} has shape {a.shape}, input_ids "
                                 f"has {(B, S)}; pass one row per sequence")
            if a.dtype.kind not in "iub":
                raise TypeError(f"TensorParallelEncoder: {name} must be integer (got {a.dtype})")
            return a

        mask_np = None
        if attention_mask is not None:
            m = int_array(attention_mask, "attention_mask")
            if not m.all():
                mask_np = (m != 0).astype(np.int32)
        tt = None
        if token_type_ids is not None and np.any(token_type_ids):
            tt = int_array(token_type_ids, "token_type_ids")
            if tt.min() < 0 or tt.max() >= c.type_vocab_size:
                raise ValueError(f"TensorParallelEncoder: token_type_ids outside [0, "
                                 f"{c.type_vocab_size})")
            tt = tt.astype(np.int32)
        h, D = c.hidden_size, c.head_dim
        first = self.devices[0]
        if B == 0 or S == 0:
            return _C.Tensor(np.zeros((B, S, h), np.float32), first, self.dtype)
        ids32 = ids.astype(np.int32, copy=False)
        xs, masks = {}, {}
        for loc in self._uniq:               # the replicated embeddings
            R = self._rep[loc]
            with device_context(loc):
                x = _C.embedding(_C.Tensor(ids32, loc), R["word"])
                if tt is None:
                    x = _C.add(x, R["pos_type0"][0:S])
                else:
                    x = _C.add(_C.add(x, R["pos"][0:S]), _C.embedding(_C.Tensor(tt, loc), R["type"]))
                xs[loc] = _C.layernorm(x, R["ln"][0], R["ln"][1], self._eps)
                masks[loc] = None if mask_np is None else _C.Tensor(mask_np, loc)
        act = c.hidden_act
        try:
            for li in range(c.num_hidden_layers):
                # attention block: heads split, out-proj by rows, one all-reduce
                parts = []
                for p, loc in enumerate(self.devices):
                    L, x = self._shards[p][li], xs[loc]
                    Hp = L["heads"]
                    with device_context(loc):
                        qkv = _C.linear(x, L["qkv_w"], L["qkv_b"])
                        qkv5 = qkv.view(B, S, 3, Hp, D).permute(2, 0, 3, 1, 4)
                        a = _C.attention(qkv5[0], qkv5[1], qkv5[2], mask=masks[loc], scale=self._scale)
                        a = a.permute(0, 2, 1, 3).reshape(B, S, Hp * D)
                        if p == 0:
                            parts.append(_C.linear(a, L["o_w"], L["o_b"], residual=x))
                        else:
                            parts.append(_C.linear(a, L["o_w"]))
                sums = self._all_reduce(parts)
                xs = self._layernorm(sums, li, "ln1")
                # MLP block: FFN-up by columns, FFN-down by rows, one all-reduce
                parts = []
                for p, loc in enumerate(self.devices):
                    L, x = self._shards[p][li], xs[loc]
                    with device_context(loc):
                        if act == "gelu":
                            inter = _C.gelu(_C.linear(x, L["i_w"], L["i_b"]), approximate="none")
                        elif act == "relu":
                            inter = _C.linear(x, L["i_w"], L["i_b"], activation="relu")
                        else:
                            inter = _C.linear(x, L["i_w"], L["i_b"], activation="gelu")
                        if p == 0:
                            parts.append(_C.linear(inter, L["f_w"], L["f_b"], residual=x))
                        else:
                            parts.append(_C.linear(inter, L["f_w"]))
                sums = self._all_reduce(parts)
                xs = self._layernorm(sums, li, "ln2")
        finally:
            self._wait()
        return xs[first]

    __call__ = forward

    def _layernorm(self, sums: list, li: int, which: str) -> dict:
        out = {}
        for loc, s in zip(self.devices, sums):
            if loc in out:
                continue
            g, b = self._rep[loc]["layers"][li][which]
            with device_context(loc):
                out[loc] = _C.layernorm(s, g, b, self._eps)
        return out

    def mean_pool(self, hidden, attention_mask) -> np.ndarray:
        """Masked mean over the sequence, numpy float32 ``[B, hidden]`` (as TransformerEncoder's)."""
        m = np.asarray(attention_mask)
        B, S = m.shape
        h = self.config.hidden_size
        if B == 0 or S == 0:
            return np.zeros((B, h), np.float32)
        loc = self.devices[0]
        with device_context(loc):
            w = _C.Tensor((m != 0).astype(np.float32).reshape(B, 1, S), loc, self.dtype)
            s = np.asarray(_C.matmul(w, hidden).numpy(), dtype=np.float32).reshape(B, h)
        cnt = np.maximum((m != 0).sum(axis=1, keepdims=True), 1).astype(np.float32)
        return s / cnt

    def encode(self, sentences, batch_size: int = 32, normalize: bool = True) -> np.ndarray:
        """Sentence embeddings as ``SentenceEncoder.encode`` computes them, on the split model.

        Only for an encoder built from a `SentenceEncoder` (its tokenizer is used).

        Parameters
        ----------
        sentences : str or sequence of str
            The text(s).
        batch_size : int, optional
            Sentences per forward pass.
        normalize : bool, optional
            L2-normalise each row.

        Returns
        -------
        numpy.ndarray
            float32 ``[N, dim]`` (``[dim]`` for a single str).
        """
        if self._sentence is None:
            raise ValueError("TensorParallelEncoder.encode: built from a TransformerEncoder, "
                             "which has no tokenizer; build it from a SentenceEncoder, or call "
                             "forward() and mean_pool() with token ids")

        def run(ids, mask, types):
            return self.mean_pool(self.forward(ids, mask, types), mask)

        return self._sentence._encode_with(sentences, batch_size, normalize, run,
                                           "TensorParallelEncoder.encode")
