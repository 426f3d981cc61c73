"""Where the time of a resident tiny op goes, from Python: LC vs torch, piece by piece.

    PYTHONPATH=build/python python3 benchmarks/python/tiny_op_latency.py [--n 65536] [--iters 3000]

The issue's target: vector add of n=65536 floats on device-resident tensors, one sync per call,
called from Python, at <= 0.6x torch's latency. Rows (median us over --iters calls, rounds of
all rows interleaved so drift hits every row alike):
  lc into + sync          lc.vector_add_into(a, b, out, "cuda"), sync per call (default policy)
  lc returning + sync     lc.vector_add(a, b, "cuda"): also allocates the result tensor
  lc into, sync=none      launch only (host time of the call), no wait
  lc into none + lc.sync  the same, then lc.synchronize(): the sync split out
  lc native no-op         lc.runtime_trace_enabled(): the cost of any native call from Python
  torch add out= + sync   torch.add(a, b, out=c); torch.cuda.synchronize()
  torch a+b + sync        a + b (allocating) + synchronize
Without a GPU (LC or torch) the rows that need one are skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    import lightning_core as lc
    try:
        import torch
        have_torch = torch.cuda.is_available()
    except Exception:
        torch, have_torch = None, False
    have_lc = lc.cuda_available() if hasattr(lc, "cuda_available") else False
    rows = {}
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal(args.n, dtype=np.float32)
    b_np = rng.standard_normal(args.n, dtype=np.float32)
    if have_lc:
        a = lc.Tensor(a_np, device="cuda")
        b = lc.Tensor(b_np, device="cuda")
        out = lc.Tensor.empty([args.n], device="cuda")
        nosync = lc.ExecutionPolicy(device="cuda", sync="none", download=False)
        rows["lc into + sync"] = lambda: lc.vector_add_into(a, b, out, "cuda")
        rows["lc returning + sync"] = lambda: lc.vector_add(a, b, "cuda")
        rows["lc into, sync=none (host)"] = lambda: lc.vector_add_into(a, b, out, policy=nosync)

        def none_then_sync():
            lc.vector_add_into(a, b, out, policy=nosync)
            lc.synchronize()

        rows["lc into none + lc.synchronize"] = none_then_sync
    rows["lc native no-op"] = lc.runtime_trace_enabled
    if have_torch:
        ta = torch.from_numpy(a_np).cuda()
        tb = torch.from_numpy(b_np).cuda()
        tc = torch.empty_like(ta)
        sync = torch.cuda.synchronize

        def t_out():
            torch.add(ta, tb, out=tc)
            sync()

        def t_alloc():
            _ = ta + tb
            sync()

        rows["torch add out= + sync"] = t_out
        rows["torch a+b + sync"] = t_alloc
    if have_lc and not have_torch:
        print("torch CUDA not available: torch rows skipped")
    if not have_lc:
        print("LC CUDA not available: LC GPU rows skipped")
    samples = {k: [] for k in rows}
    per_round = max(1, args.iters // args.rounds)
    for f in rows.values():
        for _ in range(200):
            f()
    if have_lc:
        lc.synchronize()
    pc = time.perf_counter_ns
    for r in range(args.rounds):
        names = list(rows)
        names = names[r % len(names):] + names[:r % len(names)]
        for k in names:
            f = rows[k]
            f()
            if have_lc:
                lc.synchronize()
            s = samples[k]
            for _ in range(per_round):
                t0 = pc()
                f()
                s.append(pc() - t0)
            if have_lc:
                lc.synchronize()
    print(f"resident tiny op latency, n={args.n}, median of {per_round * args.rounds} calls (us)")
    for k, s in samples.items():
        v = np.asarray(s) / 1e3
        print(f"  {k:34s} {np.median(v):8.2f}   p10 {np.percentile(v, 10):8.2f}   p90 {np.percentile(v, 90):8.2f}")
    if have_lc and have_torch:
        lcv = np.median(samples["lc into + sync"]) / 1e3
        tv = np.median(samples["torch add out= + sync"]) / 1e3
        print(f"lc into + sync / torch add out= + sync: {lcv / tv:.2f}x (target <= 0.6x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
