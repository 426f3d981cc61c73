"""Where a pipeline's graph mode spends its time per call, against its eager form (issue #14:
"graph mode is never slower than eager"; session 16 measured lc.ffn graph 0.113 against eager
0.102 ms and lc.layernorm_linear 0.056 against 0.049 on the H200, resident inputs).

For one pipeline (ffn or layernorm_linear) on resident inputs it times, interleaved round by
round (median of many calls, each followed by lc.synchronize()):

  eager          the pipeline, execution_mode="eager"
  graph          the pipeline, execution_mode="graph"
  execute        the pipeline's cached GraphIR alone: g.execute(feed) with the feed built once
  compiled       the same computation as an lc.compile'd function of x (weights as constants,
                 shared with the others: copy_constants=False)
  python         graph minus execute: the Python layer of the graph mode (key, placement, feed)

and the host time of one graph call without the sync (the time the CPU spends before the GPU
can start, when the GPU is idle). The difference graph - eager splits into python (CPU-side,
before the launch) and execute - eager (the executor's own share, replay and sync included).

    python3 benchmarks/python/pipeline_graph_diag.py [--device cuda] [--op ffn|layernorm_linear]
        [--batch 256] [--calls 400]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import lightning_core as lc
from lightning_core import api


def _inputs(op, b, device, rng):
    def t(*shape, scale=1.0):
        return lc.Tensor((rng.standard_normal(shape) * scale).astype(np.float32), device=device)
    if op == "ffn":
        d, f = 768, 3072
        return {"x": t(b, d), "w1": t(f, d, scale=d ** -0.5), "b1": t(f, scale=0.1),
                "w2": t(d, f, scale=f ** -0.5), "b2": t(d, scale=0.1)}
    d, o = 1024, 1024
    return {"x": t(b, d), "gamma": t(d, scale=0.1), "beta": t(d, scale=0.1),
            "w": t(o, d, scale=d ** -0.5), "b": t(o, scale=0.1)}


def _calls(op, i, device):
    if op == "ffn":
        def run(mode):
            return lc.api.ffn(i["x"], i["w1"], i["b1"], i["w2"], i["b2"], "gelu", device,
                              execution_mode=mode)

        def fn(x):
            return lc.linear(lc.linear(x, i["w1"], i["b1"], "gelu"), i["w2"], i["b2"])
    else:
        def run(mode):
            return lc.api.layernorm_linear(i["x"], i["gamma"], i["beta"], i["w"], i["b"], 1e-5,
                                           "none", device, execution_mode=mode)

        def fn(x):
            return lc.linear(lc.layernorm(x, i["gamma"], i["beta"], 1e-5), i["w"], i["b"])
    return run, fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if lc.cuda_available() else "cpu")
    p.add_argument("--op", default="layernorm_linear", choices=["ffn", "layernorm_linear"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--calls", type=int, default=400)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    i = _inputs(a.op, a.batch, a.device, rng)
    run, fn = _calls(a.op, i, a.device)
    # copy_constants=False: the weights are the same memory as the other systems' (a copy would
    # be colder in the caches when the systems take turns: on the CPU that alone cost 1.5x).
    compiled = lc.compile(fn, device=a.device, copy_constants=False)
    for _ in range(5):  # warm: plans, recordings, the ring's output sets
        run("eager"), run("graph"), compiled(i["x"])
    lc.synchronize()
    g = next(reversed(api._pipeline_graphs.values()))  # the graph the last graph call used
    names = ("x", "w1", "b1", "w2", "b2") if a.op == "ffn" else ("x", "gamma", "beta", "w", "b")
    feed = {n: i[n] for n in names}
    systems = {
        "eager": lambda: run("eager"),
        "graph": lambda: run("graph"),
        "execute": lambda: g.execute(feed)["y"],
        "compiled": lambda: compiled(i["x"]),
    }
    samples = {k: [] for k in systems}
    host = []
    pc = time.perf_counter_ns
    for r in range(a.calls):
        for k, f in (list(systems.items())[r % 4:] + list(systems.items())[:r % 4]):
            t0 = pc()
            y = f()
            t1 = pc()
            lc.synchronize()
            samples[k].append((pc() - t0) / 1e3)
            if k == "graph":
                host.append((t1 - t0) / 1e3)
            del y
    med = {k: float(np.median(v)) for k, v in samples.items()}
    print(f"{a.op} batch {a.batch} on {a.device}, {a.calls} calls each, us per call with the sync (median)")
    for k, v in med.items():
        print(f"  {k:9} {v:9.1f}")
    print(f"  {'python':9} {med['graph'] - med['execute']:9.1f}   (graph - execute)")
    print(f"  graph host time before the sync: {np.median(host):.1f} us")
    print(f"  graph - eager: {med['graph'] - med['eager']:+.1f} us "
          f"(python {med['graph'] - med['execute']:+.1f}, executor vs eager {med['execute'] - med['eager']:+.1f})")
    print("  graph stats:", g.stats())


if __name__ == "__main__":
    main()
