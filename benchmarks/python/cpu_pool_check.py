"""How LC's CPU paths scale on this host, next to numpy and torch CPU, in one process.

    PYTHONPATH=build/python python3 benchmarks/python/cpu_pool_check.py [--iters 200]

Run it once per setting of the pool's knobs to see what they do, e.g.
    for t in 16 8 4; do LC_NUM_THREADS=$t python3 benchmarks/python/cpu_pool_check.py; done
    LC_SPIN_US=500 python3 benchmarks/python/cpu_pool_check.py
Rows: elementwise add (into and returning), matrix_sub, layernorm and GEMM (returning and
_into) at the sizes where the ML / kernel suites showed LC's CPU side slower than torch CPU.
Each row: median us of --iters back-to-back calls after 20 warm-ups; every system of a row is
timed in its own block after a 150 ms idle gap (OpenBLAS and OpenMP workers spin ~0.1 s after
their last call and would tax the next system).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def timed(f, iters: int) -> float:
    time.sleep(0.15)
    for _ in range(20):
        f()
    ts = []
    pc = time.perf_counter_ns
    for _ in range(iters):
        t0 = pc()
        f()
        ts.append(pc() - t0)
    return float(np.median(ts)) / 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    import lightning_core as lc
    try:
        import torch
    except Exception:
        torch = None
    knobs = {k: os.environ.get(k, "") for k in ("LC_NUM_THREADS", "LC_SPIN_US")}
    print(f"cpu_pool_check: {lc.build_info().get('cpu_device', '')}; knobs {knobs}; "
          f"torch threads {torch.get_num_threads() if torch else 'n/a'}")
    rng = np.random.default_rng(0)
    rows = []

    def vec_row(n):
        a = rng.standard_normal(n, dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        o = np.empty_like(a)
        r = {"case": f"vector_add n={n}",
             "lc into": lambda: lc.vector_add_into(a, b, o, "cpu"),
             "lc ret": lambda: lc.vector_add(a, b, "cpu"),
             "numpy": lambda: np.add(a, b, out=o)}
        if torch:
            ta, tb, to = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(o)
            r["torch"] = lambda: torch.add(ta, tb, out=to)
        return r

    def ln_row(rws, cls):
        x = rng.standard_normal((rws, cls), dtype=np.float32)
        g = np.ones(cls, np.float32)
        bb = np.zeros(cls, np.float32)
        y = np.empty_like(x)
        r = {"case": f"layernorm {rws}x{cls}",
             "lc into": lambda: lc.layernorm_into(x, g, bb, y, 1e-5, "cpu"),
             "lc ret": lambda: lc.layernorm(x, g, bb, 1e-5, "cpu")}
        if torch:
            tx, tg, tbb = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(bb)
            r["torch"] = lambda: torch.nn.functional.layer_norm(tx, (cls,), tg, tbb)
        return r

    def gemm_row(m):
        A = rng.standard_normal((m, m), dtype=np.float32)
        B = rng.standard_normal((m, m), dtype=np.float32)
        C = np.empty((m, m), np.float32)
        r = {"case": f"gemm {m}^3",
             "lc into": lambda: lc.matmul2d_into(A, B, C, "cpu"),
             "lc ret": lambda: lc.matmul2d(A, B, "cpu"),
             "numpy": lambda: np.matmul(A, B, out=C)}
        if torch:
            tA, tB, tC = torch.from_numpy(A), torch.from_numpy(B), torch.from_numpy(C)
            r["torch"] = lambda: torch.matmul(tA, tB, out=tC)
        return r

    rows = [vec_row(n) for n in (65536, 262144, 1048576, 4194304)]
    rows += [ln_row(512, 1024), gemm_row(128), gemm_row(256), gemm_row(512)]
    cols = ["lc into", "lc ret", "numpy", "torch"]
    print(f"{'case':24s}" + "".join(f"{c:>12s}" for c in cols) + "   (median us)")
    with (torch.inference_mode() if torch else _Null()):
        for r in rows:
            vals = []
            for c in cols:
                f = r.get(c)
                vals.append(f"{timed(f, args.iters):12.1f}" if f else f"{'n/a':>12s}")
            print(f"{r['case']:24s}" + "".join(vals))
    return 0


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    sys.exit(main())
