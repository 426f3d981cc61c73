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

__all__ = ["MINILM_CONFIG", "PEERS", "minilm_weights", "run_bench", "format_table"]

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

    def run(ids, mask):
        e = enc.mean_pool(enc.forward(ids, mask), mask)   # downloads: synchronises
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return run, f"lightning_core {resolved} (TransformerEncoder, execution_mode={mode!r})"


def _torch_module(torch, cfg, W):
    """BertModel (sdpa) from transformers when installed, else the same BERT in torch ops."""
    F = torch.nn.functional
    if importlib.util.find_spec("transformers") is not None:
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
