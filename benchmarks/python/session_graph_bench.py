"""Resident-session graph replay (the backend's capture seam) side by side with torch.

Per case, the time per launch of a batch of N launches and one sync (median of repeats):
  lc_session          run_batch_sync_no_download_into(..., N), use_graph=False (launch replay only)
  lc_session_graph    the same with use_graph=True (one CapturedGraph replayed N times)
  lc_rebind_graph     upload="never", use_graph=True, alternating between two bound tensor sets
                      with n=1 per batch: each batch re-records the launch and updates the graph
                      in place (cudaGraphExecUpdate) before replaying it; the cost of a rebind
  torch_eager         the op N times on resident tensors, one synchronize
  torch_graph         a torch.cuda.CUDAGraph of the op replayed N times, one synchronize
Needs a usable CUDA device (and torch for the torch rows); otherwise says why and exits 0.

    PYTHONPATH=build/python python3 benchmarks/python/session_graph_bench.py [--n 200] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _median_us(fn, per: int, repeats: int = 15) -> float:
    fn()  # warm-up (captures, plans)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6 / per)
    return statistics.median(times)


def bench_case(lc, torch, name, make_session, torch_op, inputs, n):
    rows = {}
    out = np.zeros(make_session.out_shape, np.float32)
    for label, graph in (("lc_session", False), ("lc_session_graph", True)):
        with make_session(inputs, graph, "once") as s:
            s.start_into(*inputs, out)
            rows[label] = _median_us(lambda: s.run_batch_sync_no_download_into(*inputs, out, n), n)
    t1 = [lc.Tensor(x, device="cuda") for x in inputs]
    t2 = [lc.Tensor(x, device="cuda") for x in inputs]
    with make_session(t1, True, "never") as s:
        s.start_into(*t1, out)
        state = {"i": 0}

        def rebind():
            state["i"] ^= 1
            s.run_batch_sync_no_download_into(*(t2 if state["i"] else t1), out, 1)
        rows["lc_rebind_graph"] = _median_us(rebind, 1)
        rows["lc_rebind_records"] = s.stats["graph_records"]
    if torch is not None:
        tin = [torch.from_numpy(x).cuda() for x in inputs]

        def eager():
            for _ in range(n):
                torch_op(*tin)
            torch.cuda.synchronize()
        rows["torch_eager"] = _median_us(eager, n)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            torch_op(*tin)
        torch.cuda.current_stream().wait_stream(stream)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            torch_op(*tin)

        def replay():
            for _ in range(n):
                g.replay()
            torch.cuda.synchronize()
        rows["torch_graph"] = _median_us(replay, n)
    return {"case": name, **rows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import lightning_core as lc
    if not lc.cuda_available():
        print("session_graph_bench: no usable CUDA device:", lc.build_info().get("cuda_device"))
        return 0
    try:
        import torch
        if not torch.cuda.is_available():
            torch = None
    except Exception:
        torch = None
    rng = np.random.default_rng(0)
    results = []

    class MM:
        out_shape = (256, 256)

        def __call__(self, ins, graph, upload):
            pol = lc.ExecutionPolicy(device="cuda", upload=upload)
            return lc.matmul2d_resident_session(ins[0], ins[1], policy=pol, use_graph=graph)

    class ATT:
        out_shape = (128, 64)

        def __call__(self, ins, graph, upload):
            pol = lc.ExecutionPolicy(device="cuda", upload=upload)
            return lc.attention2d_resident_session(ins[0], ins[1], ins[2], policy=pol, use_graph=graph)

    mm_in = [rng.standard_normal((256, 256)).astype(np.float32) for _ in range(2)]
    results.append(bench_case(lc, torch, "matmul 256x256x256", MM(), lambda a, b: a @ b, mm_in, args.n))
    q = rng.standard_normal((128, 64)).astype(np.float32)
    sdpa = None
    if torch is not None:
        F = torch.nn.functional
        sdpa = lambda a, b, c: F.scaled_dot_product_attention(a[None], b[None], c[None])  # noqa: E731
    results.append(bench_case(lc, torch, "attention 128x64", ATT(), sdpa, [q, q.copy(), q.copy()], args.n))
    for r in results:
        print(r["case"] + ": " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in r.items() if k != "case"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
