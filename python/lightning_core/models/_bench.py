"""`lc-run bench`: all-MiniLM-L6-v2 end to end, LC against torch and onnxruntime in one run.

Each peer computes forward + masked mean pool + L2 normalise from token ids (ms per call,
synchronised, median of ``repeats`` after a warm-up). Peers (columns), each only where it can run
here; otherwise the column says why not:

- ``lc``: ``lightning_core.models.TransformerEncoder`` (eager; ids uploaded per call).
- ``torch eager``: transformers' ``BertModel`` (sdpa) when transformers is installed, else the same
  BERT written with torch ops; ids already on the device.
- ``torch cuda graph``: that module's forward captured once in a ``torch.cuda.CUDAGraph`` and
  replayed (GPU only).
- ``torch.compile``: ``torch.compile(mode="reduce-overhead")`` on the GPU, the default mode on
  the CPU.
- ``onnxruntime``: an ONNX export of the torch module (needs torch for the export; float32).

No peer package is a dependency: a missing one is a skipped column, never an error.
"""
from __future__ import annotations

import importlib.util
import io
import json
import math
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .. import _lightning_core as _C
from ._bert import BertConfig, TransformerEncoder

__all__ = ["MINILM_CONFIG", "PEERS", "minilm_weights", "run_bench", "format_table",
           "wordpiece_vocab", "bench_sentences", "write_sentence_transformers_dir"]

MINILM_CONFIG = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                     num_attention_heads=12, intermediate_size=1536, hidden_act="gelu",
                     layer_norm_eps=1e-12, max_position_embeddings=512, type_vocab_size=2,
                     pad_token_id=0)
PEERS = ("lc", "torch eager", "torch cuda graph", "torch.compile", "onnxruntime")


def minilm_weights(model: str, random_weights: bool) -> Tuple[dict, Dict[str, np.ndarray], str]:
    """(config dict, weights, description) of the model, or random weights of MiniLM's config.

    Parameters
    ----------
    model : str
        A model directory or installed package name (see ``resolve_model_dir``).
    random_weights : bool
        Skip loading: random weights of the all-MiniLM-L6-v2 config (speed does not depend on
        the values).

    Raises
    ------
    FileNotFoundError, ImportError
        The model or ``safetensors`` is missing (only when ``random_weights`` is False).
    """
    if not random_weights:
        from ._sentence import _need, resolve_model_dir

        d = resolve_model_dir(model)
        stn = _need("safetensors.numpy")
        with open(d / "config.json", encoding="utf-8") as f:
            cfg = json.load(f)
        return cfg, dict(stn.load_file(str(d / "model.safetensors"))), f"real weights ({d})"
    cfg = dict(MINILM_CONFIG)
    return cfg, random_bert_weights(cfg), "random weights of the all-MiniLM-L6-v2 config"


# ---- a sentence-transformers model directory from random weights (no hub, no network) -----------
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SUFFIXES = ("s", "ing", "ed", "er", "ly")
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cl", "dr", "gr", "pl", "sh", "st", "th", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "oo")


def _pseudo_words():
    """Deterministic pronounceable lowercase words (onset + vowel, two or three times), in a
    fixed order: 1-syllable first, so a small vocabulary still holds whole words."""
    syl = [o + v for o in _ONSETS for v in _VOWELS]
    yield from syl
    for a in syl:
        for b in syl:
            yield a + b


def wordpiece_vocab(size: int) -> List[str]:
    """A BERT-style WordPiece vocabulary of exactly ``size`` entries (id = position): the special
    tokens ([PAD] = 0, [UNK], [CLS], [SEP], [MASK]), the letters, digits and punctuation with
    their ``##`` continuations (any lowercase ASCII word tokenises), a few suffix pieces, then
    pseudo-words. ``size`` >= 128."""
    if size < 128:
        raise ValueError(f"wordpiece_vocab: size must be >= 128 (got {size})")
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,;:!?'-()")
    vocab = list(dict.fromkeys(list(_SPECIAL) + chars + ["##" + c for c in chars]
                               + ["##" + x for x in _SUFFIXES]))
    seen = set(vocab)
    for w in _pseudo_words():
        if len(vocab) >= size:
            break
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    return vocab[:size]


def bench_sentences(n: int, vocab_size: int = 30522, seed: int = 1) -> List[str]:
    """``n`` deterministic sentences of 5 to 60 words (pseudo-words of `wordpiece_vocab`, some
    with a suffix that tokenises as a ``##`` piece, a few spelled out letter by letter, commas
    and a final full stop): varied lengths, as a real corpus has."""
    rng = np.random.default_rng(seed)
    words = [w for w in wordpiece_vocab(max(128, min(vocab_size, 8000)))
             if w not in _SPECIAL and not w.startswith("##") and len(w) > 1]
    out = []
    for _ in range(n):
        k = int(rng.integers(5, 61))
        picks = rng.integers(0, len(words), size=k)
        toks = []
        for j, i in enumerate(picks):
            w = words[int(i)]
            r = rng.random()
            if r < 0.15:
                w += _SUFFIXES[int(rng.integers(0, len(_SUFFIXES)))]
            elif r < 0.18:
                w = "".join(chr(ord("a") + int(c)) for c in rng.integers(0, 26, size=7))
            if j and rng.random() < 0.08:
                toks[-1] += ","
            toks.append(w)
        s = " ".join(toks)
        out.append(s[:1].upper() + s[1:] + ".")
    return out


def write_sentence_transformers_dir(directory, cfg: dict, W: Dict[str, np.ndarray],
                                    max_seq_length: int = 256):
    """Writes a sentence-transformers model directory, laid out as all-MiniLM-L6-v2's, from a
    BERT config and weights (e.g. `random_bert_weights` of `MINILM_CONFIG`); returns its path.

    Files: ``config.json`` (a Hugging Face BertConfig: ``model_type`` "bert"),
    ``model.safetensors`` (float32, the classic BertModel names, metadata ``format: pt`` as
    transformers requires: the published checkpoints' format, so transformers reads it through
    its usual loading path), the tokenizer (``tokenizer.json``: a WordPiece tokenizer over
    `wordpiece_vocab` with BERT's normaliser, pre-tokeniser and [CLS] ... [SEP] template, built
    with ``tokenizers``; ``vocab.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``),
    and sentence-transformers' ``modules.json`` (Transformer, Pooling, Normalize),
    ``sentence_bert_config.json`` (``max_seq_length``) and ``1_Pooling/config.json`` (mean
    pooling). Both ``SentenceEncoder.from_pretrained`` and
    ``sentence_transformers.SentenceTransformer`` load it, offline (no hub access). Needs
    ``safetensors`` and ``tokenizers`` only.
    """
    from pathlib import Path

    from ._sentence import _need

    stn = _need("safetensors.numpy")
    tk = _need("tokenizers")
    d = Path(directory)
    (d / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (d / "2_Normalize").mkdir(exist_ok=True)
    c = BertConfig.from_dict(cfg)
    vocab = wordpiece_vocab(c.vocab_size)
    ids = {t: i for i, t in enumerate(vocab)}
    tok = tk.Tokenizer(tk.models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = tk.normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=None, lowercase=True)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tk.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tok.decoder = tk.decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(_SPECIAL))
    tok.save(str(d / "tokenizer.json"))
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
               "cls_token": "[CLS]", "mask_token": "[MASK]"}
    _write_json(d / "special_tokens_map.json", special)
    _write_json(d / "tokenizer_config.json", dict(
        special, do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None,
        tokenizer_class="BertTokenizer", model_max_length=c.max_position_embeddings))
    hf = dict(architectures=["BertModel"], model_type="bert", attention_probs_dropout_prob=0.1,
              hidden_dropout_prob=0.1, initializer_range=0.02, position_embedding_type="absolute",
              use_cache=True, **{f: getattr(c, f) for f in (
                  "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "hidden_act", "layer_norm_eps",
                  "max_position_embeddings", "type_vocab_size", "pad_token_id")})
    _write_json(d / "config.json", hf)
    stn.save_file({k: np.ascontiguousarray(v, np.float32) for k, v in W.items()},
                  str(d / "model.safetensors"), metadata={"format": "pt"})
    _write_json(d / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}])
    _write_json(d / "sentence_bert_config.json",
                {"max_seq_length": int(max_seq_length), "do_lower_case": False})
    _write_json(d / "1_Pooling" / "config.json", {
        "word_embedding_dimension": c.hidden_size, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False})
    return d


def _write_json(path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)


def random_bert_weights(cfg: dict, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random float32 weights of a BERT config under Hugging Face's names (matrices scaled by
    1/sqrt(fan-in), layernorm weights around 1): for speed runs, where values do not matter."""
    rng = np.random.default_rng(seed)
    h, it = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
              "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (cfg.get("type_vocab_size", 2), h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                  "attention.output.dense"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h, h), (h,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = (it, h), (it,)
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (h, it), (h,)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h,), (h,)
    W = {}
    for k, s in shapes.items():
        a = rng.standard_normal(s) * (1.0 / math.sqrt(s[-1]) if len(s) == 2 else 0.02)
        W[k] = (a + (1.0 if k.endswith("LayerNorm.weight") else 0.0)).astype(np.float32)
    return W


# ---- peers: each returns run(ids, mask) -> embeddings, after any one-time set-up -------------

def _lc_peer(cfg, W, device, dtype, mode="auto"):
    enc = TransformerEncoder(cfg, W, device=device, dtype=dtype, execution_mode=mode)
    resolved = enc._resolve_mode(None)
    if mode == "auto" and device == "cpu":
        resolved = "graph for unpadded batches, else eager"

    def run(ids, mask):
        e = enc.mean_pool(enc.forward(ids, mask), mask)   # downloads: synchronises
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return run, f"lightning_core {resolved} (TransformerEncoder, execution_mode={mode!r})"


def _torch_module(torch, cfg, W, hf=True):
    """BertModel (sdpa) from transformers when installed (and `hf`), else the same BERT in
    torch ops."""
    F = torch.nn.functional
    if hf and importlib.util.find_spec("transformers") is not None:
        import transformers

        conf = transformers.BertConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
        try:
            m = transformers.BertModel(conf, add_pooling_layer=False, attn_implementation="sdpa")
        except TypeError:
            m = transformers.BertModel(conf, add_pooling_layer=False)
        m.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in W.items()},
                          strict=False)

        class HF(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = m

            def forward(self, ids, mask):
                return self.m(input_ids=ids, attention_mask=mask).last_hidden_state
        return HF(), "transformers.BertModel (sdpa)"
    c = BertConfig.from_dict(cfg)

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterDict(
                {k.replace(".", "__"): torch.nn.Parameter(torch.from_numpy(np.asarray(v, np.float32)),
                                                          requires_grad=False)
                 for k, v in W.items() if k != "embeddings.position_ids"})

        def g(self, k):
            return self.p[k.replace(".", "__")]

        def forward(self, ids, mask):
            B, S = ids.shape
            h, H = c.hidden_size, c.num_attention_heads
            D, eps = h // H, c.layer_norm_eps
            x = (self.g("embeddings.word_embeddings.weight")[ids]
                 + self.g("embeddings.position_embeddings.weight")[:S]
                 + self.g("embeddings.token_type_embeddings.weight")[0])
            x = F.layer_norm(x, (h,), self.g("embeddings.LayerNorm.weight"),
                             self.g("embeddings.LayerNorm.bias"), eps)
            am = mask[:, None, None, :].bool()
            for i in range(c.num_hidden_layers):
                p = f"encoder.layer.{i}."

                def lin(t, n):
                    return F.linear(t, self.g(p + n + ".weight"), self.g(p + n + ".bias"))

                def heads(t):
                    return t.view(B, S, H, D).transpose(1, 2)
                a = F.scaled_dot_product_attention(heads(lin(x, "attention.self.query")),
                                                   heads(lin(x, "attention.self.key")),
                                                   heads(lin(x, "attention.self.value")),
                                                   attn_mask=am)
                a = a.transpose(1, 2).reshape(B, S, h)
                x = F.layer_norm(lin(a, "attention.output.dense") + x, (h,),
                                 self.g(p + "attention.output.LayerNorm.weight"),
                                 self.g(p + "attention.output.LayerNorm.bias"), eps)
                x = F.layer_norm(lin(F.gelu(lin(x, "intermediate.dense")), "output.dense") + x,
                                 (h,), self.g(p + "output.LayerNorm.weight"),
                                 self.g(p + "output.LayerNorm.bias"), eps)
            return x
    return Plain(), "torch ops (sdpa; transformers not installed)"


def _torch_embed_module(torch, cfg, W, device, dtype):
    """forward + masked mean pool + normalise as one torch module, on the device in the dtype."""
    mod, what = _torch_module(torch, cfg, W)

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mod

        def forward(self, ids, mask):
            x = self.m(ids, mask)
            m = mask.to(x.dtype).unsqueeze(-1)
            e = (x * m).sum(1) / m.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(e.float(), dim=1)
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    return Embed().to(device=device, dtype=tdt).eval(), what


def _torch_peers(cfg, W, device, dtype, want) -> Dict[str, Any]:
    """{column: (run, prepare, note) or a reason string} for the torch-based columns."""
    out: Dict[str, Any] = {}
    if importlib.util.find_spec("torch") is None:
        for name in want:
            out[name] = "torch not installed" + (" (needed for the ONNX export)"
                                                 if name == "onnxruntime" else "")
        return out
    try:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch has no usable CUDA device")
        mod, what = _torch_embed_module(torch, cfg, W, device, dtype)
    except Exception as e:  # noqa: BLE001 - a broken torch install is a skipped column too
        for name in want:
            out[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        return out
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def prepare(ids, mask):
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    def guarded(name, build):
        try:
            out[name] = build()
        except Exception as e:  # noqa: BLE001 - a peer that cannot run is a skipped column
            out[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"

    def eager():
        def run(ids, mask):
            with torch.inference_mode():
                e = mod(ids, mask)
            sync()
            return e
        return run, prepare, what

    def cuda_graph():
        if device != "cuda":
            raise RuntimeError("GPU only (--device cuda)")
        graphs: Dict[tuple, Any] = {}

        def run(ids, mask):
            key = tuple(ids.shape)
            if key not in graphs:   # capture once per shape on static input buffers
                s_ids, s_mask = ids.clone(), mask.clone()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.inference_mode(), torch.cuda.stream(side):
                    for _ in range(3):
                        mod(s_ids, s_mask)
                torch.cuda.current_stream().wait_stream(side)
                g = torch.cuda.CUDAGraph()
                with torch.inference_mode(), torch.cuda.graph(g):
                    s_out = mod(s_ids, s_mask)
                graphs[key] = (g, s_ids, s_mask, s_out)
            g, s_ids, s_mask, s_out = graphs[key]
            s_ids.copy_(ids)
            s_mask.copy_(mask)
            g.replay()
            sync()
            return s_out
        return run, prepare, f"{what}, one torch.cuda.CUDAGraph per shape"

    def compiled():
        mode = "reduce-overhead" if device == "cuda" else None
        cmod = torch.compile(mod, mode=mode)

        def run(ids, mask):
            with torch.inference_mode():
                e = cmod(ids, mask)
            sync()
            return e.clone() if device == "cuda" else e
        return run, prepare, f"{what}, torch.compile(mode={mode!r})"

    def ort():
        if importlib.util.find_spec("onnxruntime") is None:
            raise RuntimeError("onnxruntime not installed")
        if dtype != "float32":
            raise RuntimeError("float32 only (the export is float32)")
        import onnxruntime

        cpu_mod, _ = _torch_embed_module(torch, cfg, W, "cpu", "float32")
        buf = io.BytesIO()
        ex = torch.ones(2, 16, dtype=torch.int64)
        kw = dict(input_names=["ids", "mask"], output_names=["emb"], opset_version=17,
                  dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}})
        try:   # the TorchScript exporter (dynamic_axes); torch < 2.5 has no `dynamo` argument
            torch.onnx.export(cpu_mod, (ex, ex.clone()), buf, dynamo=False, **kw)
        except TypeError:
            torch.onnx.export(cpu_mod, (ex, ex.clone()), buf, **kw)
        prov = "CPUExecutionProvider"
        if device == "cuda":
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise RuntimeError("this onnxruntime build has no CUDAExecutionProvider")
            prov = "CUDAExecutionProvider"
        sess = onnxruntime.InferenceSession(buf.getvalue(), providers=[prov])

        def run(ids, mask):
            return sess.run(None, {"ids": ids, "mask": mask})[0]
        return run, (lambda i, m: (i, m)), f"onnxruntime {onnxruntime.__version__} {prov}"

    builders = {"torch eager": eager, "torch cuda graph": cuda_graph, "torch.compile": compiled,
                "onnxruntime": ort}
    for name in want:
        guarded(name, builders[name])
    return out


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts: List[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _to_numpy(e) -> np.ndarray:
    if hasattr(e, "detach"):
        e = e.detach().float().cpu().numpy()
    return np.asarray(e, np.float64)


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(1) / np.maximum(na, 1e-30)).min())


def run_bench(cfg: dict, W: Dict[str, np.ndarray], shapes: List[Tuple[int, int]], *,
              device: str = "cpu", dtype: str = "float32", repeats: int = 20,
              peers: Optional[List[str]] = None, log: Optional[Callable[[str], None]] = None,
              lc_mode: str = "auto"):
    """Time every peer on every (batch, seq) shape.

    Parameters
    ----------
    cfg : dict
        The model's ``config.json`` dict.
    W : dict of str to ndarray
        The weights by Hugging Face name.
    shapes : list of (int, int)
        (batch, seq) pairs.
    device : str
        ``"cpu"`` or ``"cuda"``.
    dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    repeats : int
        Timed calls per cell (the median is reported).
    peers : list of str, optional
        Columns to run (default every one of ``PEERS``).
    log : callable, optional
        Called with a line of progress text per cell (e.g. to stderr).
    lc_mode : {"auto", "eager", "graph"}
        The lc column's ``TransformerEncoder`` execution mode ("auto": graph on CUDA, eager on
        the CPU).

    Returns
    -------
    (rows, notes)
        rows: one dict per shape, ``{"batch", "seq", <peer>: ms or None}``; notes: per peer what
        ran (or why it was skipped) and its minimum cosine against LC's embeddings.
    """
    peers = list(PEERS if peers is None else peers)
    built: Dict[str, Any] = {}
    notes: Dict[str, str] = {}
    if "lc" in peers:
        run, what = _lc_peer(cfg, W, device, dtype, lc_mode)
        built["lc"] = (run, lambda i, m: (i, m))
        notes["lc"] = what
    for name, got in _torch_peers(cfg, W, device, dtype, [p for p in peers if p != "lc"]).items():
        if isinstance(got, str):
            notes[name] = f"skipped: {got}"
        else:
            built[name] = got[:2]
            notes[name] = got[2]
    cos: Dict[str, float] = {}
    rows = []
    rng = np.random.default_rng(1)
    vocab = int(cfg["vocab_size"])
    for B, S in shapes:
        ids = rng.integers(min(1000, vocab - 1), vocab, size=(B, S)).astype(np.int64)
        if vocab > 102 and S >= 2:
            ids[:, 0], ids[:, -1] = 101, 102          # [CLS] ... [SEP]
        mask = np.ones((B, S), np.int64)
        row: Dict[str, Any] = {"batch": B, "seq": S}
        ref = None
        for name in peers:
            row[name] = None
            if name not in built:
                continue
            run, prep = built[name]
            args = prep(ids, mask)
            try:
                emb = _to_numpy(run(*args))
                row[name] = _median_ms(lambda: run(*args), repeats)
            except Exception as e:  # noqa: BLE001 - e.g. torch.compile failing at the first call
                notes[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
                built.pop(name)
                continue
            if name == "lc":
                ref = emb
            elif ref is not None:
                cos[name] = min(cos.get(name, 1.0), _min_cos(emb, ref))
            if log:
                log(f"{device} {dtype} {B}x{S} {name}: {row[name]:.3f} ms")
        rows.append(row)
    for name, c in cos.items():
        notes[name] += f"; min cosine vs lc {c:.6f}"
    return rows, notes


def format_table(rows: List[dict], notes: Dict[str, str], peers: List[str], title: str) -> str:
    """The rows as a fixed-width text table (ms per call; ``-`` = skipped), notes below.

    Parameters
    ----------
    rows : list of dict
        `run_bench`'s rows.
    notes : dict of str to str
        `run_bench`'s notes.
    peers : list of str
        The columns, in order.
    title : str
        The first line.
    """
    head = ["batch x seq"] + [f"{p} ms" for p in peers]
    body = [[f"{r['batch']} x {r['seq']}"] + ["-" if r.get(p) is None else f"{r[p]:.3f}" for p in peers]
            for r in rows]
    widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]

    def fmt(line):
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
    out = [title, fmt(head), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
    out += [f"  {p}: {notes.get(p, 'not run')}" for p in peers]
    return "\n".join(out)
