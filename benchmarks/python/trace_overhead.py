"""Per-op cost of the runtime trace from Python: a tiny op called with tracing off and on.

    PYTHONPATH=build/python python3 benchmarks/python/trace_overhead.py [--device cpu|cuda]

Each configuration runs --repeats timed loops of --iters calls (after a warm-up) and reports
the median ns/op; the difference is what tracing adds per op. The ring buffer is kept small
so the enabled runs measure the steady state (the ring wraps, nothing grows). The timeline
and the Chrome export of the last enabled run are timed too (they are off the hot path).
The Python call itself costs far more than the trace; benchmarks/cpp/trace_overhead.cpp
measures the C++ side without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import lightning_core as lc


def per_op_ns(fn, iters, repeats):
    for _ in range(max(1, iters // 10)):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(iters):
            fn()
        runs.append((time.perf_counter_ns() - t0) / iters)
    return statistics.median(runs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=50000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--capacity", type=int, default=4096)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not lc.cuda_available():
        print("no usable CUDA device", file=sys.stderr)
        return 1

    # Resident inputs and output: no numpy conversion or allocation in the loop.
    x = lc.Tensor(np.ones(16, dtype=np.float32), device=args.device)
    out = lc.Tensor(np.zeros(16, dtype=np.float32), device=args.device)
    policy = lc.ExecutionPolicy(device=args.device)

    def op():
        lc.relu_into(x, out, args.device, policy=policy)

    old_cap = lc.runtime_trace_capacity()
    lc.runtime_trace_set_capacity(args.capacity)
    lc.runtime_trace_enable(False)
    lc.runtime_trace_clear()
    # Interleave off/on so drift on a shared machine hits both alike.
    off, on = [], []
    for _ in range(3):
        lc.runtime_trace_enable(False)
        off.append(per_op_ns(op, args.iters, args.repeats))
        lc.runtime_trace_enable(True)
        on.append(per_op_ns(op, args.iters, args.repeats))
    lc.runtime_trace_enable(False)
    t_off, t_on = min(off), min(on)

    t0 = time.perf_counter_ns()
    rep = lc.runtime_trace_timeline(group_by="op_path", group_sort_by="total_delta_next_ns")
    t_timeline = (time.perf_counter_ns() - t0) / 1e6
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter_ns()
        n = lc.runtime_trace_export_chrome(os.path.join(d, "trace.json"))
        t_export = (time.perf_counter_ns() - t0) / 1e6

    print(f"relu_into [16] on {args.device}, from Python ({args.iters} calls x {args.repeats}, "
          f"best of 3 medians)")
    print(f"  trace disabled : {t_off:8.1f} ns/op")
    print(f"  trace enabled  : {t_on:8.1f} ns/op   (+{t_on - t_off:.1f} ns/op)")
    print(f"  timeline of {rep['event_count']} events: {t_timeline:.2f} ms; "
          f"chrome export of {n} events: {t_export:.2f} ms")
    lc.runtime_trace_set_capacity(old_cap)
    lc.runtime_trace_clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
