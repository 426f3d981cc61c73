"""The original's model runner surface: a tiny transformer, eager vs graph, and a checkpoint.

    python3 examples/tiny_runner.py [--device cpu|cuda] [--dtype float32|bfloat16|float16]
                                    [--batch 8] [--seq 128] [--checkpoint tiny.safetensors]

Builds a TinyTransformerRunner, runs the same input with mode="eager" and mode="graph", prints
their agreement and per-call time (median of 20), shows the graph plan, and (with safetensors
installed: pip install 'lightning-core[models]') saves a checkpoint, loads it into a second
runner and checks the outputs are identical.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import lightning_core as lc
from lightning_core.models import TinyTransformerConfig, TinyTransformerRunner


def median_ms(fn, n: int = 20) -> float:
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if lc.cuda_available() else "cpu",
                    choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--checkpoint", default=None, help="where to save (default: a temp file)")
    args = ap.parse_args()

    cfg = TinyTransformerConfig(layers=4, hidden=256, heads=4, ffn=1024, seq=args.seq,
                                dtype=args.dtype, device=args.device, activation="gelu_tanh")
    runner = TinyTransformerRunner(cfg)
    x = np.random.default_rng(0).standard_normal((args.batch, args.seq, cfg.hidden)).astype(np.float32)
    x_dev = lc.Tensor(x, args.device, args.dtype)      # resident input: times the model, not IO

    y_eager = runner.run(x_dev, mode="eager").numpy().astype(np.float32)
    y_graph = runner.run(x_dev, mode="graph").numpy().astype(np.float32)
    print(f"{runner}\n  max |eager - graph| = {np.abs(y_eager - y_graph).max():.3g}")
    print(f"  graph form: {runner.last_run['reason']}")
    sync = lc.synchronize if args.device == "cuda" else (lambda: None)
    for mode in ("eager", "graph"):
        ms = median_ms(lambda: (runner.run(x_dev, mode=mode), sync()))
        print(f"  {mode:5s}: {ms:8.3f} ms per call ({args.batch} x {args.seq})")
    print(runner.explain(x_dev).split("steps:")[0].rstrip())

    try:
        import safetensors  # noqa: F401
    except ImportError:
        print("checkpoint: skipped (pip install 'lightning-core[models]' for safetensors)")
        return
    path = args.checkpoint or os.path.join(tempfile.mkdtemp(), "tiny.safetensors")
    runner.save_checkpoint(path)
    again = TinyTransformerRunner.from_checkpoint(path)
    same = np.array_equal(again.run(x, mode="graph"), runner.run(x, mode="graph"))
    print(f"checkpoint: {path} ({os.path.getsize(path) / 1e6:.1f} MB), reloaded outputs identical: {same}")


if __name__ == "__main__":
    main()
