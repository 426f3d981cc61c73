"""The main job: show which backends this machine has and time a few ops against numpy.

Runs on the CPU alone; with a CUDA GPU it adds device="cuda" (one-shot: numpy in, numpy out)
and resident rows (lc.Tensor on the GPU, sync per call). Medians of many runs.
    python3 examples/demo.py [--iters N]
For the full side-by-side suites against torch see benchmarks/python/ (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lightning_core as lc


def median_us(fn, iters: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e3


def np_attention(q, k, v):
    s = (q @ k.T) / np.sqrt(q.shape[1])
    s = np.exp(s - s.max(axis=1, keepdims=True))
    return (s / s.sum(axis=1, keepdims=True)) @ v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()

    info = lc.build_info()
    print(f"lightning_core {lc.__version__}: backend_name()={lc.backend_name()!r}, "
          f"devices={lc.available_devices()}")
    for key in ("cuda_compiled", "cpu_blas", "cpu_device", "cuda_device"):
        print(f"  {key:14s} {info.get(key, '')}")

    rng = np.random.default_rng()
    f32 = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    a, b = f32(1024, 1024), f32(1024, 1024)
    q8, k8, v8 = f32(8, 16), f32(8, 16), f32(8, 16)
    q4, k4, v4 = f32(4096, 64), f32(4096, 64), f32(4096, 64)
    x1m, y1m = f32(1 << 20), f32(1 << 20)
    cx, cw, cb = f32(8, 64, 56, 56), f32(64, 64, 3, 3), f32(64)

    cases = [
        ("matmul 1024^3", lambda d: lc.matmul2d(a, b, d), lambda: a @ b, (a, b)),
        ("attention seq=8 d=16", lambda d: lc.attention2d(q8, k8, v8, False, d),
         lambda: np_attention(q8, k8, v8), (q8, k8, v8)),
        ("attention seq=4096 d=64", lambda d: lc.attention2d(q4, k4, v4, False, d),
         lambda: np_attention(q4, k4, v4), (q4, k4, v4)),
        ("vector_add 1M", lambda d: lc.vector_add(x1m, y1m, d), lambda: x1m + y1m, (x1m, y1m)),
        ("conv 8x64x56x56 k3", lambda d: lc.conv2d_nchw(cx, cw, cb, 1, 1, 1, 1, d), None, None),
    ]
    devices = ["cpu", "auto"] + (["cuda"] if lc.cuda_available() else [])
    header = f"{'case':26s} {'numpy us':>10s}" + "".join(f" {('lc ' + d + ' us'):>13s}" for d in devices)
    if lc.cuda_available():
        header += f" {'lc resident us':>15s}"
    print("\n" + header)
    for name, lc_fn, np_fn, resident_inputs in cases:
        iters = max(5, args.iters // (20 if "4096" in name or "conv" in name or "1024^3" in name else 1))
        row = f"{name:26s} "
        row += f"{median_us(np_fn, iters):10.1f}" if np_fn else f"{'n/a':>10s}"
        for d in devices:
            row += f" {median_us(lambda: lc_fn(d), iters):13.1f}"
        if lc.cuda_available():
            if resident_inputs is not None:
                dev = [lc.Tensor(t, device="cuda") for t in resident_inputs]
                fn = {"matmul 1024^3": lambda: lc.matmul2d(*dev),
                      "vector_add 1M": lambda: lc.vector_add(*dev)}.get(
                    name, lambda: lc.attention2d(*dev))

                def resident():
                    fn()
                    lc.synchronize()
                row += f" {median_us(resident, iters):15.1f}"
            else:
                row += f" {'':>15s}"
        print(row)
    if not lc.cuda_available():
        print("\nCUDA skipped: no usable GPU here (" + info.get("cuda_device", "") + ")")


if __name__ == "__main__":
    main()
