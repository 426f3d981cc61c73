"""Where the time of one model call goes on the GPU: a kernel table from torch's profiler (CUPTI).

Runs the MiniLM-config TransformerEncoder (random weights) in LC's graph and eager modes, and
the same model in torch (HF-free module from lightning_core.models._bench) eagerly, under
``torch.profiler`` and prints, per run, the kernels grouped by name with their count, total and
share of GPU time, plus the wall time per call. CUPTI sees LC's kernels because they run in the
same process; kernels replayed inside a CUDA graph are reported one by one.

Usage (on the GPU machine)::

    python3 benchmarks/python/profile_model.py --batch 1,32 --seq 128 --dtype bfloat16 float32

``--device cpu`` instead prints LC's own runtime trace of the CPU forward grouped by op (host
time per op, float32), and ``--gemm M,N,K ...`` times single CPU GEMMs of those shapes (LC,
numpy, torch) to compare the engines behind them.
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext as _nullcontext
from collections import defaultdict

import numpy as np


def _table(prof, calls, top):
    agg = defaultdict(lambda: [0, 0.0])
    total = 0.0
    for ev in prof.events():
        if getattr(ev, "device_type", None) is None or "CUDA" not in str(ev.device_type):
            continue
        us = ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
        if us <= 0:
            continue
        a = agg[ev.name[:160]]
        a[0] += 1
        a[1] += us
        total += us
    rows = sorted(agg.items(), key=lambda kv: -kv[1][1])
    out = [f"  GPU busy per call: {total / calls:.1f} us over {sum(v[0] for v in agg.values()) / calls:.0f} kernels/copies"]
    for name, (n, us) in rows[:top]:
        out.append(f"  {us / calls:8.2f} us  {n / calls:5.1f}x  {100 * us / max(total, 1e-9):5.1f}%  {name}")
    return "\n".join(out)


def _median_ms(fn, n):
    time.sleep(0.15)   # other libraries' BLAS / OpenMP workers spin ~0.1 s after their last call
    for _ in range(3):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def _cpu(args, cfg, W, rng):
    import lightning_core as lc
    from lightning_core.models import TransformerEncoder

    for spec in args.gemm:
        m, n, k = (int(x) for x in spec.split(","))
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        row = {"lc": _median_ms(lambda: lc.matmul(a, b, device="cpu"), args.calls),
               "numpy": _median_ms(lambda: a @ b, args.calls)}
        try:
            import torch
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            row["torch"] = _median_ms(lambda: ta @ tb, args.calls)
        except ImportError:
            pass
        gf = 2.0 * m * n * k / 1e6
        print(f"== CPU GEMM {m}x{n}x{k}: " + ", ".join(f"{k_} {v:.3f} ms ({gf / v:.0f} GFLOP/s)"
                                                     for k_, v in row.items()), flush=True)
        for e in lc.autotune_cache_entries():
            if e.get("op") == "cpu_gemm" and e.get("shapes", "").startswith(f"{m}x{k}x{n} "):
                print("   tuned:", {k_: v for k_, v in e.items() if k_ in ("choice", "blas_us", "pooled_us", "pooled_grid", "default")})
    if not args.batch:
        return
    enc = TransformerEncoder(cfg, W, device="cpu", dtype="float32", execution_mode="eager")
    for b in (int(x) for x in args.batch.split(",")):
        ids = rng.integers(1000, 30000, size=(b, args.seq)).astype(np.int64)
        mask = np.ones((b, args.seq), np.int64)
        with lc.policy(device=args.pin) if args.pin else _nullcontext():
            wall = _median_ms(lambda: enc.forward(ids, mask).numpy(), args.calls)
            with lc.runtime_trace(capacity=200_000) as tr:
                for _ in range(args.calls):
                    enc.forward(ids, mask).numpy()
        print(f"== LC cpu eager float32 {b}x{args.seq} (policy device {args.pin or 'default'}): "
              f"{wall:.3f} ms per forward (median, untraced)")
        print(lc.format_timeline(tr.timeline(group_by="op", group_sort_by="total_ns",
                                             group_descending=True, hotspot_top_k=0),
                                 max_groups=args.top), flush=True)


def main():
    from lightning_core.models import TransformerEncoder
    from lightning_core.models._bench import minilm_weights

    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--dtype", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--modes", default="graph,eager")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--pin", default="", help="--device cpu: run the ops under lc.policy(device=PIN)")
    ap.add_argument("--gemm", nargs="*", default=[], help="CPU GEMM shapes M,N,K to time")
    args = ap.parse_args()
    from lightning_core.models import TransformerEncoder
    from lightning_core.models._bench import minilm_weights

    cfg, W, _ = minilm_weights("", True)
    rng = np.random.default_rng(0)
    if args.device == "cpu":
        return _cpu(args, cfg, W, rng)
    import torch
    from torch.profiler import ProfilerActivity, profile
    for dt in args.dtype:
        for mode in args.modes.split(","):
            enc = TransformerEncoder(cfg, W, device="cuda", dtype=dt, execution_mode=mode)
            for b in (int(x) for x in args.batch.split(",")):
                ids = rng.integers(1000, 30000, size=(b, args.seq)).astype(np.int64)
                mask = np.ones((b, args.seq), np.int64)
                mask[b // 2:, args.seq // 2:] = 0          # ragged half: the padding-mask path
                for _ in range(3):
                    enc.forward(ids, mask).numpy()
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    enc.forward(ids, mask).numpy()
                wall = (time.perf_counter() - t0) / args.calls * 1e3
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    for _ in range(args.calls):
                        enc.forward(ids, mask).numpy()
                    torch.cuda.synchronize()
                print(f"== LC {mode} {dt} {b}x{args.seq}: {wall:.3f} ms per forward+download (unprofiled)")
                print(_table(prof, args.calls, args.top), flush=True)


if __name__ == "__main__":
    main()
