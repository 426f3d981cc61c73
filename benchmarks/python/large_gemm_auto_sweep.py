#!/usr/bin/env python3
"""Large-GEMM mode sweep: times each named GEMM mode per shape and records the winner.

Modes (docs/autotune.md): "heuristic" (cuBLASLt's top heuristic, fp32 exact), "autotuned"
(top-N candidates timed once per shape, winner cached, fp32 exact), "tf32_fast" (autotuned with
TF32 tensor cores; not bit-exact fp32). They replace the original's runtime_default_promoted /
aggressive_mps_no_bucket / kernel_favor_no_bucket.

For each shape the fp32 winner (heuristic vs autotuned) is written to the auto-tune cache as
"large_gemm_mode.fp32" and the tf32 one as "large_gemm_mode.tf32"; resident matmul sessions
with autotune on use the recorded mode. torch.matmul (same precision settings) is timed
alongside when torch with CUDA is importable.

Outputs <out-dir>/large_gemm_auto_sweep.{csv,json}; the JSON has a "context" block (library
build info, device fingerprint, torch version, time). Without a usable GPU it prints that
CUDA was skipped and exits 0.

    python3 benchmarks/python/large_gemm_auto_sweep.py [--shapes 1024x1024x1024,...]
        [--modes heuristic,autotuned,tf32_fast] [--iters 20] [--warmup 3] [--out-dir .]
        [--no-torch] [--no-record]
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import sys
import time

import numpy as np

import lightning_core as lc

DEFAULT_SHAPES = ["1024x1024x1024", "1536x1536x1536", "2048x2048x2048", "3072x3072x3072",
                  "4096x1024x4096", "4096x4096x4096"]


def parse_shape(s: str) -> tuple[int, int, int]:
    parts = s.lower().replace(",", "x").split("x")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN, got {s!r}")
    m, k, n = (int(p) for p in parts)
    return m, k, n


def context() -> dict:
    ctx = {
        "script": "large_gemm_auto_sweep.py",
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "build_info": lc.build_info(),
        "cuda_fingerprint": lc.device_fingerprint("cuda"),
        "cpu_fingerprint": lc.device_fingerprint("cpu"),
        "autotune_cache": lc.autotune_cache_path(),
        "autotune_enabled": bool(lc.autotune_enabled()),
        "numpy": np.__version__,
    }
    return ctx


def torch_cuda():
    try:
        import torch  # noqa: PLC0415
    except Exception:  # noqa: BLE001 -- any import failure means "no torch"
        return None
    return torch if torch.cuda.is_available() else None


def time_lc(a, b, out, pol, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        lc.matmul2d_into(a, b, out, policy=pol)
    lc.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        lc.matmul2d_into(a, b, out, policy=pol)
    lc.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def time_torch(torch, a_np, b_np, tf32: bool, iters: int, warmup: int) -> float:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.from_numpy(a_np).cuda()
    b = torch.from_numpy(b_np).cuda()
    for _ in range(warmup):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        torch.matmul(a, b)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / iters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(DEFAULT_SHAPES),
                    help="comma-separated MxKxN list")
    ap.add_argument("--modes", default=",".join(lc.gemm_modes()))
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out-dir", default=".")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not write winners to the cache")
    args = ap.parse_args(argv)
    shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        lc.gemm_mode_precision(m)  # validates the name (ValueError for unknown modes)

    if not lc.cuda_available():
        info = lc.build_info()
        print(f"large_gemm_auto_sweep: CUDA not available ({info.get('cuda_device', 'no device')}); "
              "CUDA sweep skipped.")
        return 0

    torch = None if args.no_torch else torch_cuda()
    os.makedirs(args.out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, winners = [], {}
    for (m, k, n) in shapes:
        a_np = rng.standard_normal((m, k), dtype=np.float32)
        b_np = rng.standard_normal((k, n), dtype=np.float32)
        ref = a_np[:8].astype(np.float64) @ b_np.astype(np.float64)
        a = lc.Tensor(a_np, device="cuda")
        b = lc.Tensor(b_np, device="cuda")
        out = lc.Tensor(np.zeros((m, n), np.float32), device="cuda")
        shape_rows = []
        for mode in modes:
            prec = lc.gemm_mode_precision(mode)
            prep = lc.gemm_prepare(m, k, n, mode)
            pol = lc.ExecutionPolicy(device="cuda", precision=prec, download=False, sync="batch",
                                     upload="never")
            ms = time_lc(a, b, out, pol, args.iters, args.warmup)
            got = out.numpy()[:8].astype(np.float64)
            rel = float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))
            t_ms = time_torch(torch, a_np, b_np, prec == "tf32", args.iters, args.warmup) if torch else None
            row = dict(m=m, k=k, n=n, mode=mode, precision=prec, lc_ms=ms,
                       lc_tflops=2.0 * m * k * n / (ms * 1e-3) / 1e12,
                       torch_ms=t_ms, speedup_vs_torch=(t_ms / ms) if t_ms else None,
                       algo_index=prep["algo_index"], candidates=prep["candidates"],
                       from_cache=prep["from_cache"], algo=prep["detail"], max_rel_err=rel)
            shape_rows.append(row)
            print(f"{m}x{k}x{n} {mode:10s} {prec}: {ms:8.3f} ms  {row['lc_tflops']:6.1f} TFLOP/s"
                  + (f"  torch {t_ms:8.3f} ms ({t_ms / ms:4.2f}x)" if t_ms else "")
                  + f"  rel.err {rel:.1e}  [{prep['detail']}]")
        rows += shape_rows
        key = f"{m}x{k}x{n}"
        for prec in ("fp32", "tf32"):
            cands = [r for r in shape_rows if r["precision"] == prec]
            if not cands:
                continue
            best = min(cands, key=lambda r: r["lc_ms"])
            winners[f"{key}/{prec}"] = best["mode"]
            if not args.no_record:
                lc.autotune_record(f"large_gemm_mode.{prec}", key, best["mode"], device="cuda",
                                   ms=f"{best['lc_ms']:.6f}")
        del a, b, out

    csv_path = os.path.join(args.out_dir, "large_gemm_auto_sweep.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    json_path = os.path.join(args.out_dir, "large_gemm_auto_sweep.json")
    ctx = context()
    ctx["torch"] = getattr(torch, "__version__", None)
    ctx["iters"], ctx["warmup"] = args.iters, args.warmup
    with open(json_path, "w") as f:
        json.dump({"context": ctx, "results": rows, "winners": winners}, f, indent=2)
    print(f"wrote {csv_path} and {json_path}; winners: {winners}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
