"""Soak check: a long loop of mixed ops must keep process memory flat.

    python3 benchmarks/python/soak_check.py --calls 100000 [--device cpu|cuda|both] [--json F]

Cycles through every op family, their `_into` forms, resident sessions (created, used and
closed), views, device tensors and the error paths (bad calls that raise), and samples the
process RSS (/proc/self/statm) and, on CUDA, lc.memory_info() every --calls/20 calls. After a
warm-up (the first 20% of calls: caches, thread-local scratch and the CUDA graph cache fill up),
the RSS must not grow by more than --max-growth-mb and the device's allocated bytes must return
to the same figure. Exit status 1 on growth. tests/python/test_reliability.py runs a short
version on the CPU in CI; scripts/gpu_check.sh runs the full one on the GPU (LC_SOAK=1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import lightning_core as lc


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def device_bytes(dev: str) -> int | None:
    if dev != "cuda":
        return None
    info = lc.memory_info()
    for key in ("allocated_bytes", "in_use_bytes", "allocated"):
        if key in info:
            return int(info[key])
    return None


def make_steps(dev: str, rng):
    f32 = np.float32
    a = rng.standard_normal((33, 17)).astype(f32)
    b = rng.standard_normal((17, 29)).astype(f32)
    q = rng.standard_normal((19, 16)).astype(f32)
    x = rng.standard_normal((1, 3, 9, 9)).astype(f32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(f32)
    v = rng.standard_normal(257).astype(f32)
    out_mm = np.empty((33, 29), f32)
    on = (lambda t: lc.Tensor(t, device=dev)) if dev == "cuda" else (lambda t: t)
    ta, tb, tq = on(a), on(b), on(q)

    def bad():
        try:
            lc.matmul2d(a, a, dev)  # shape mismatch
        except ValueError:
            pass

    def session():
        with lc.matmul2d_resident_session(a, b, device=dev) as s:
            s.run_into(a, b, out_mm)

    def view():
        t = lc.Tensor(a)
        lc.TensorView(t, [17, 33], [1, 17]).numpy()

    return [
        lambda: lc.matmul2d(ta, tb, dev),
        lambda: lc.matmul2d_into(a, b, out_mm, dev),
        lambda: lc.linear(a, b.T.copy(), None, "gelu", dev),
        lambda: lc.attention2d(tq, tq, tq, True, dev),
        lambda: lc.conv2d_nchw(x, w, None, 1, 1, 1, 1, dev),
        lambda: lc.layernorm(a, None, None, 1e-5, dev),
        lambda: lc.softmax(ta, dev),
        lambda: lc.vector_add(v, v, dev),
        lambda: lc.relu(v, dev),
        lambda: lc.conv_attention_nchw(x, w, None, 8, 8, device=dev),
        lambda: lc.api.ffn(a, b.T.copy(), None, b, None, device=dev),
        session,
        view,
        bad,
    ]


def soak(dev: str, calls: int, max_growth_mb: float) -> dict:
    rng = np.random.default_rng(0)
    steps = make_steps(dev, rng)
    every = max(calls // 20, 1)
    samples = []
    for i in range(calls):
        steps[i % len(steps)]()
        if (i + 1) % every == 0:
            if dev == "cuda":
                lc.synchronize()
            samples.append((i + 1, rss_mb(), device_bytes(dev)))
    warm = [s for s in samples if s[0] > calls * 0.2] or samples
    growth = warm[-1][1] - warm[0][1]
    dev_growth = None
    if warm[0][2] is not None:
        dev_growth = warm[-1][2] - warm[0][2]
    ok = growth <= max_growth_mb and (dev_growth is None or dev_growth <= 0)
    return {
        "device": dev,
        "calls": calls,
        "rss_mb_first": round(warm[0][1], 2),
        "rss_mb_last": round(warm[-1][1], 2),
        "rss_growth_mb": round(growth, 2),
        "device_bytes_first": warm[0][2],
        "device_bytes_growth": dev_growth,
        "samples": [(n, round(r, 2), d) for n, r, d in samples],
        "ok": ok,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--device", default="both", choices=["cpu", "cuda", "both"])
    ap.add_argument("--max-growth-mb", type=float, default=8.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    devs = ["cpu", "cuda"] if args.device == "both" else [args.device]
    if "cuda" in devs and not lc.cuda_available():
        devs.remove("cuda")
    results = [soak(d, args.calls, args.max_growth_mb) for d in devs]
    for r in results:
        print(f"soak {r['device']}: {r['calls']} calls, RSS {r['rss_mb_first']} -> {r['rss_mb_last']} MB "
              f"(+{r['rss_growth_mb']} MB), device bytes growth {r['device_bytes_growth']}: "
              f"{'ok' if r['ok'] else 'GROWTH'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
