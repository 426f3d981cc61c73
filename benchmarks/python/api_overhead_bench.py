"""API overhead suite: the same op through the C++ API and through Python.

C++ side: the native timer bench_api_overhead (benchmarks/cpp, built with -DLC_BUILD_BENCHMARKS=ON)
runs the op through lc::*_into on resident tensors. Python side: lc.*_into and the returning form
on resident lc.Tensor inputs. Both time each call as wall clock around (call + synchronize), with
the same warm-up, call count and budget, on the same device (CUDA when usable, else the CPU).

Columns: lc_cpp_ms, lc_py_into_ms, lc_py_ms, and py_into_over_cpp = lc_py_into / lc_cpp (the
binding's cost per call, as a ratio; > 1 means Python adds time).

    python benchmarks/python/api_overhead_bench.py [--quick] [--native-bin PATH]
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

from common import REPO_ROOT, Progress, Skip, TimingConfig, free_memory, measure
from suite_main import matches_filter, suite_main

# (family, op for the native timer, shape, description)
CASES = [
    ("attention", "attention", (256, 64), "seq=256,head_dim=64"),
    ("attention", "attention", (512, 64), "seq=512,head_dim=64"),
    ("conv", "conv", (1, 3, 32, 32, 16), "batch=1,in_ch=3,h=32,w=32,out_ch=16,k=3"),
    ("conv", "conv", (2, 3, 32, 32, 16), "batch=2,in_ch=3,h=32,w=32,out_ch=16,k=3"),
    ("gemm", "matmul", (256, 256, 256), "m=256,k=256,n=256"),
    ("linear", "linear", (1024, 1024, 512), "batch=1024,in=1024,out=512"),
    ("vector add", "vector_add", (65536,), "n=65536"),
]

SYSTEMS = ["lc_cpp", "lc_py_into", "lc_py"]


def find_native_bin(explicit: Optional[str], lc: Any) -> Optional[Path]:
    """--native-bin, $LC_BENCH_API_BIN, the build tree the imported module came from, any build*/."""
    cands: List[Path] = []
    for p in (explicit, os.environ.get("LC_BENCH_API_BIN")):
        if p:
            cands.append(Path(p))
    if lc is not None and getattr(lc, "__file__", None):
        build = Path(lc.__file__).resolve().parents[2]  # <build>/python/lightning_core/__init__.py
        cands.append(build / "benchmarks" / "cpp" / "bench_api_overhead")
    found = sorted(REPO_ROOT.glob("build*/benchmarks/cpp/bench_api_overhead"),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    cands += found
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def _inputs(lc, op: str, shape, dev: str):
    import numpy as np

    rng = np.random.default_rng(0)

    def r(*s, scale=1.0):
        return lc.Tensor((rng.standard_normal(s, dtype=np.float32) * np.float32(scale)), device=dev)

    if op == "attention":
        s, d = shape
        ins = (r(s, d), r(s, d), r(s, d))
        out = lc.Tensor.empty([s, d], device=dev)
        return (lambda: lc.attention2d_into(*ins, out, False, dev)), (lambda: lc.attention2d(*ins, False, dev))
    if op == "conv":
        n, c, h, w, oc = shape
        x, wt, b = r(n, c, h, w), r(oc, c, 3, 3, scale=0.2), r(oc)
        out = lc.Tensor.empty([n, oc, h, w], device=dev)
        return ((lambda: lc.conv2d_nchw_into(x, wt, b, out, 1, 1, 1, 1, dev)),
                (lambda: lc.conv2d_nchw(x, wt, b, 1, 1, 1, 1, dev)))
    if op == "matmul":
        m, k, n = shape
        a, b = r(m, k), r(k, n)
        out = lc.Tensor.empty([m, n], device=dev)
        return (lambda: lc.matmul2d_into(a, b, out, dev)), (lambda: lc.matmul2d(a, b, dev))
    if op == "linear":
        m, i, o = shape
        x, w, b = r(m, i), r(o, i, scale=0.03), r(o)
        out = lc.Tensor.empty([m, o], device=dev)
        return (lambda: lc.linear_into(x, w, b, out, "none", dev)), (lambda: lc.linear(x, w, b, "none", dev))
    if op == "vector_add":
        (n,) = shape
        a, b = r(n), r(n)
        out = lc.Tensor.empty([n], device=dev)
        return (lambda: lc.vector_add_into(a, b, out, dev)), (lambda: lc.vector_add(a, b, dev))
    raise Skip(f"unknown op {op}")


def _native(bin_path: Optional[Path], op: str, shape, dev: str, cfg: TimingConfig) -> Dict[str, Any]:
    if bin_path is None:
        return {"status": "skipped: bench_api_overhead not built (configure with -DLC_BUILD_BENCHMARKS=ON "
                          "or pass --native-bin)", "ms": None}
    cmd = [str(bin_path), "--op", op, "--device", dev, "--shape", ",".join(map(str, shape)),
           "--warmup", str(cfg.warmup), "--iters", str(cfg.iters), "--budget-s", str(cfg.budget_s),
           "--min-iters", str(cfg.min_iters)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1]
        cell = json.loads(line)
    except Exception as e:
        return {"status": f"error: native timer failed ({type(e).__name__})", "ms": None}
    if cell.get("status") != "ok":
        return {"status": cell.get("status", "error"), "ms": None}
    cell["binary"] = str(bin_path)
    return cell


def run_api(args, env, cfg: TimingConfig, modes: List[str]) -> List[Dict[str, Any]]:
    lc = env.lc
    dev = "cuda" if env.lc_cuda else "cpu"
    bin_path = find_native_bin(getattr(args, "native_bin", None), lc)
    rows: List[Dict[str, Any]] = []
    todo = [c for c in CASES if matches_filter(args.filter, f"{c[0]} {c[3]}")]
    bar = Progress(len(todo), "api_overhead", enabled=not args.no_progress)
    for family, op, shape, desc in todo:
        cells: Dict[str, Dict[str, Any]] = {}
        notes = [f"resident {dev} tensors, preallocated output for _into; call + synchronize per timed call"]
        if dev == "cpu":
            notes.append("CUDA skipped: no usable CUDA device, both sides run on the CPU")
        if lc is None:
            for s in SYSTEMS:
                cells[s] = {"status": f"skipped: {env.reasons.get('lc')}", "ms": None}
        else:
            cells["lc_cpp"] = _native(bin_path, op, shape, dev, cfg)
            try:
                into, ret = _inputs(lc, op, shape, dev)
                for name, fn in (("lc_py_into", into), ("lc_py", ret)):
                    r = measure(fn, env.lc_sync, cfg)
                    r.pop("first")
                    cells[name] = {"status": "ok", **r}
            except Exception as e:
                for name in ("lc_py_into", "lc_py"):
                    cells.setdefault(name, {"status": f"error: {type(e).__name__}: {e}", "ms": None})
        for s, c in cells.items():
            if c["status"] != "ok":
                notes.append(f"{s}: {c['status']}")
        cpp = cells.get("lc_cpp", {}).get("ms")
        py = cells.get("lc_py_into", {}).get("ms")
        row = {"suite": "api_overhead", "mode": "resident", "family": family, "case": desc,
               "impl": f"C++ lc::{op} vs Python lc.{op}", "precision": "fp32", "device": dev,
               "params": {"op": op, "shape": list(shape), "device": dev}, "systems": cells, "notes": notes,
               "py_into_over_cpp": (py / cpp) if (py and cpp) else None,
               "best_lc": None, "best_lc_ms": None, "best_peer": None, "best_peer_ms": None,
               "ours_vs_best_peer": None, "winner": None}
        ok = {s: c["ms"] for s, c in cells.items() if c.get("status") == "ok"}
        row["winner"] = min(ok, key=ok.get) if ok else None
        rows.append(row)
        free_memory(env)
        bar.step(f"{family} {desc}")
    bar.close()
    return rows


def _extra(p) -> None:
    p.add_argument("--native-bin", default=None, help="path to bench_api_overhead (default: search build*/)")


def build_cases(quick: bool = False):  # run_api drives the suite
    return []


if __name__ == "__main__":
    suite_main("api_overhead", build_cases, runner=run_api, extra_args=_extra)
