"""Elementwise bandwidth suite (issue #12): resident add in bfloat16 / float32, same-shape and
broadcast, against torch and against a device-to-device copy of the same bytes.

    python benchmarks/python/elementwise_bench.py [--quick] [--out-dir DIR]

Per case and system the row reports the median time of one call (each timed sample runs
REPS calls back to back, then synchronises, so the ~10 us sync round trip does not dilute the
bandwidth) and the achieved bandwidth: bytes the op must move at least (read a, read b, write
out) per second. `lc_d2d_copy` / `torch_d2d_copy` copy a buffer of the result's size on the
device (read + write); `lc_vs_copy` = lc's add bandwidth / lc's copy bandwidth. The goal of
issue #12 is lc_vs_copy >= 0.9 for the large same-shape bfloat16 add.

Family "chain6" (issue #14, rule elementwise_chain): out = relu(gelu(x * y + x) - y) * 0.5 on
1M elements, float32 and bfloat16, resident on the device: LC fused (one elementwise_program
kernel, `lc_fused`; the same through lc.compile with the rule on, `lc_graph_fused`), LC unfused
(the 6 ops one by one, `lc_unfused`), torch eager (`torch_cuda`), torch's CUDA-graph replay of
the eager chain (`torch_cuda_graph`), and on the CPU: LC fused / unfused (`lc_cpu_fused`,
`lc_cpu_unfused`) and numpy (float32). Memory traffic: fused reads x, y once and writes once
(12 bytes per float32 element); unfused moves 8 + 12 + 8 + 12 + 8 + 8 = 56. Predicted on the
H200: fused ~0.008-0.010 ms (traffic ~3 us + launch) against ~0.04 ms unfused.
Without a usable GPU every cell says why it was skipped.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from common import Progress, free_memory, measure
from suite_main import matches_filter, suite_main

REPS = 10  # calls per timed sample

# (family, name, shape of a, shape of b, dtype)
CASES = [
    ("add bf16", "n=64M", (64 << 20,), (64 << 20,), "bfloat16"),
    ("add f32", "n=32M (same bytes as 64M bf16)", (32 << 20,), (32 << 20,), "float32"),
    ("add f32", "n=1M", (1 << 20,), (1 << 20,), "float32"),
    ("broadcast add", "[8192,8192]+[8192] bf16", (8192, 8192), (8192,), "bfloat16"),
    ("broadcast add", "[8192,8192]+[8192,1] bf16", (8192, 8192), (8192, 1), "bfloat16"),
    ("broadcast add", "[64,1,4096]+[1,512,4096] bf16", (64, 1, 4096), (1, 512, 4096), "bfloat16"),
    ("broadcast add", "[4096,4096]+[4096] f32", (4096, 4096), (4096,), "float32"),
    ("broadcast add", "[4096,4096]+[4096,1] f32", (4096, 4096), (4096, 1), "float32"),
]
QUICK_SCALE = 16  # --quick divides the first dimension by this


def _np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return ml_dtypes.bfloat16
    return np.dtype(name)


def _scaled(shape, quick):
    if not quick:
        return tuple(shape)
    return (max(1, shape[0] // QUICK_SCALE),) + tuple(shape[1:])


def _batch(fn):
    def run():
        for _ in range(REPS):
            r = fn()
        return r
    return run


def run_elementwise(args, env, cfg, modes) -> List[Dict[str, Any]]:
    lc, torch = env.lc, env.torch
    rows: List[Dict[str, Any]] = []
    todo = [c for c in CASES if matches_filter(args.filter, f"{c[0]} {c[1]}")]
    bar = Progress(len(todo), "elementwise", enabled=not args.no_progress)
    for family, name, sa, sb, dt in todo:
        sa, sb = _scaled(sa, args.quick), _scaled(sb, args.quick) if len(sb) == len(sa) else tuple(sb)
        out_shape = np.broadcast_shapes(sa, sb)
        esz = 2 if dt == "bfloat16" else 4
        traffic = esz * (int(np.prod(sa)) + int(np.prod(sb)) + int(np.prod(out_shape)))
        copy_bytes = 2 * esz * int(np.prod(out_shape))
        cells: Dict[str, Dict[str, Any]] = {}
        notes = [f"resident CUDA tensors, {REPS} calls per timed sample; GB/s = (|a| + |b| + |out|) "
                 "bytes per call; the copies move |out| bytes (read + write)"]
        if lc is None or not env.lc_cuda:
            why = env.reasons.get("lc_cuda", env.reasons.get("lc", "no usable GPU"))
            for s in ("lc_cuda_into", "lc_d2d_copy"):
                cells[s] = {"status": f"skipped: {why}", "ms": None}
        else:
            try:
                rng = np.random.default_rng(0)
                a = lc.Tensor(rng.standard_normal(sa, dtype=np.float32).astype(_np_dtype(dt)), device="cuda", dtype=dt)
                b = lc.Tensor(rng.standard_normal(sb, dtype=np.float32).astype(_np_dtype(dt)), device="cuda", dtype=dt)
                out = lc.Tensor.empty(list(out_shape), device="cuda", dtype=dt)
                src = lc.Tensor.empty(list(out_shape), device="cuda", dtype=dt)
                dst = lc.Tensor.empty(list(out_shape), device="cuda", dtype=dt)
                r = measure(_batch(lambda: lc.add_into(a, b, out, "cuda")), env.lc_sync, cfg)
                r.pop("first")
                cells["lc_cuda_into"] = {"status": "ok", **r, "ms": r["ms"] / REPS}
                r = measure(_batch(lambda: dst.copy_(src)), env.lc_sync, cfg)
                r.pop("first")
                cells["lc_d2d_copy"] = {"status": "ok", **r, "ms": r["ms"] / REPS}
                ref = np.asarray(a.numpy()).astype(np.float64) + np.asarray(b.numpy()).astype(np.float64)
                got = np.asarray(out.numpy()).astype(np.float64)
                err = float(np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref))))
                cells["lc_cuda_into"]["rel_err"] = err
                cells["lc_cuda_into"]["check"] = "ok" if err <= (1e-2 if dt == "bfloat16" else 1e-5) else "MISMATCH"
                del a, b, out, src, dst
            except Exception as e:  # noqa: BLE001 (report, keep going)
                for s in ("lc_cuda_into", "lc_d2d_copy"):
                    cells.setdefault(s, {"status": f"error: {type(e).__name__}: {e}", "ms": None})
        if torch is None or not env.torch_cuda:
            why = env.reasons.get("torch_cuda", env.reasons.get("torch", "no torch CUDA"))
            for s in ("torch_cuda", "torch_d2d_copy"):
                cells[s] = {"status": f"skipped: {why}", "ms": None}
        else:
            try:
                tdt = torch.bfloat16 if dt == "bfloat16" else torch.float32
                ta = torch.randn(sa, dtype=tdt, device="cuda")
                tb = torch.randn(sb, dtype=tdt, device="cuda")
                tout = torch.empty(out_shape, dtype=tdt, device="cuda")
                tsrc = torch.empty(out_shape, dtype=tdt, device="cuda")
                with torch.inference_mode():
                    r = measure(_batch(lambda: torch.add(ta, tb, out=tout)), env.torch_sync, cfg)
                    r.pop("first")
                    cells["torch_cuda"] = {"status": "ok", **r, "ms": r["ms"] / REPS}
                    r = measure(_batch(lambda: tout.copy_(tsrc)), env.torch_sync, cfg)
                    r.pop("first")
                    cells["torch_d2d_copy"] = {"status": "ok", **r, "ms": r["ms"] / REPS}
                del ta, tb, tout, tsrc
            except Exception as e:  # noqa: BLE001
                for s in ("torch_cuda", "torch_d2d_copy"):
                    cells.setdefault(s, {"status": f"error: {type(e).__name__}: {e}", "ms": None})
        gbps = {}
        for s, c in cells.items():
            if c.get("ms"):
                c["gbps"] = (copy_bytes if s.endswith("copy") else traffic) / (c["ms"] * 1e-3) / 1e9
                gbps[s] = c["gbps"]
            elif c["status"] != "ok":
                notes.append(f"{s}: {c['status']}")
        lc_ms = cells.get("lc_cuda_into", {}).get("ms")
        t_ms = cells.get("torch_cuda", {}).get("ms")
        row = {"suite": "elementwise", "mode": "resident", "family": family, "case": name,
               "impl": f"lc.add_into vs torch.add(out=) ({dt})", "precision": dt, "device": "cuda",
               "params": {"a": list(sa), "b": list(sb), "dtype": dt, "bytes_per_call": traffic},
               "systems": cells, "notes": notes,
               "gbps": gbps,
               "lc_vs_copy": (gbps["lc_cuda_into"] / gbps["lc_d2d_copy"])
               if "lc_cuda_into" in gbps and "lc_d2d_copy" in gbps else None,
               "torch_vs_copy": (gbps["torch_cuda"] / gbps["torch_d2d_copy"])
               if "torch_cuda" in gbps and "torch_d2d_copy" in gbps else None,
               "best_lc": "lc_cuda_into" if lc_ms else None, "best_lc_ms": lc_ms,
               "best_peer": "torch_cuda" if t_ms else None, "best_peer_ms": t_ms,
               "ours_vs_best_peer": (t_ms / lc_ms) if (lc_ms and t_ms) else None}
        ok = {s: c["ms"] for s, c in cells.items() if c.get("ms") and not s.endswith("copy")}
        row["winner"] = min(ok, key=ok.get) if ok else None
        if row["lc_vs_copy"] is not None:
            notes.append(f"lc add {gbps['lc_cuda_into']:.0f} GB/s = {row['lc_vs_copy']:.2f}x lc's D2D copy "
                         f"({gbps['lc_d2d_copy']:.0f} GB/s)")
        if row["torch_vs_copy"] is not None:
            notes.append(f"torch add {gbps['torch_cuda']:.0f} GB/s = {row['torch_vs_copy']:.2f}x torch's copy")
        rows.append(row)
        free_memory(env)
        bar.step(f"{family} {name}")
    bar.close()
    return rows + run_chain6(args, env, cfg)


# ---- chain6: a chain of 6 elementwise ops, fused vs unfused ------------------------------------
CHAIN6_N = 1 << 20
CHAIN6_PROGRAM = "mul x0 x1; add t0 x0; gelu t1; sub t2 x1; relu t3; mul t4 0.5"


def _chain6_lc(lc, x, y):
    return lc.vector_scale(lc.relu(lc.sub(lc.gelu(lc.add(lc.mul(x, y), x)), y)), 0.5)


def _chain6_torch(torch, x, y):
    return torch.relu(torch.nn.functional.gelu(x * y + x, approximate="tanh") - y) * 0.5


def _chain6_ref(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    u = x * y + x
    g = 0.5 * u * (1.0 + np.tanh(0.7978845608028654 * (u + 0.044715 * u ** 3)))
    return np.maximum(g - y, 0.0) * 0.5


def _chain6_numpy(x, y):
    u = x * y + x
    g = np.float32(0.5) * u * (np.float32(1) + np.tanh(np.float32(0.7978845608028654) * (u + np.float32(0.044715) * u * u * u)))
    return np.maximum(g - y, np.float32(0)) * np.float32(0.5)


def run_chain6(args, env, cfg) -> List[Dict[str, Any]]:
    lc, torch = env.lc, env.torch
    rows: List[Dict[str, Any]] = []
    n = max(1, CHAIN6_N // (QUICK_SCALE if args.quick else 1))
    for dt in ("float32", "bfloat16"):
        name = f"chain6 {n / 2**20:g}M {dt}"
        if not matches_filter(args.filter, f"chain6 {name}"):
            continue
        esz = 2 if dt == "bfloat16" else 4
        rng = np.random.default_rng(1)
        xh = rng.standard_normal(n, dtype=np.float32).astype(_np_dtype(dt))
        yh = rng.standard_normal(n, dtype=np.float32).astype(_np_dtype(dt))
        ref = _chain6_ref(xh, yh)
        tol = 1e-2 if dt == "bfloat16" else 1e-5
        cells: Dict[str, Dict[str, Any]] = {}
        notes = [f"relu(gelu(x*y + x) - y) * 0.5, {REPS} calls per timed sample; program '{CHAIN6_PROGRAM}'",
                 "traffic: fused 3 x |x| bytes, unfused 14 x |x|"]

        def timed(key, fn, sync, check_fn=None):
            try:
                r = measure(_batch(fn), sync, cfg)
                first = r.pop("first")
                cells[key] = {"status": "ok", **r, "ms": r["ms"] / REPS}
                got = np.asarray(check_fn(first) if check_fn else first, dtype=np.float64)
                err = float(np.max(np.abs(got - ref) / (1.0 + np.abs(ref))))
                cells[key]["rel_err"] = err
                cells[key]["check"] = "ok" if err <= tol else "MISMATCH"
            except Exception as e:  # noqa: BLE001 (report, keep going)
                cells[key] = {"status": f"error: {type(e).__name__}: {str(e)[:160]}", "ms": None}

        def lc_host(t):
            return np.asarray(t.numpy()).astype(np.float64)

        if lc is not None:
            # CPU: LC fused / unfused, numpy (float32 math).
            cx, cy = lc.Tensor(xh, dtype=dt), lc.Tensor(yh, dtype=dt)
            cout = lc.Tensor.empty([n], dtype=dt)

            def cpu_fused():
                lc.elementwise_program_into(CHAIN6_PROGRAM, cx, cout, cy)
                return cout

            timed("lc_cpu_fused", cpu_fused, lambda: None, lc_host)
            timed("lc_cpu_unfused", lambda: _chain6_lc(lc, cx, cy), lambda: None, lc_host)
        else:
            for s_ in ("lc_cpu_fused", "lc_cpu_unfused"):
                cells[s_] = {"status": f"skipped: {env.reasons.get('lc', 'no lc')}", "ms": None}
        xf, yf = xh.astype(np.float32), yh.astype(np.float32)
        timed("numpy", lambda: _chain6_numpy(xf, yf), lambda: None)
        if lc is None or not env.lc_cuda:
            why = env.reasons.get("lc_cuda", env.reasons.get("lc", "no usable GPU"))
            for s_ in ("lc_fused", "lc_graph_fused", "lc_unfused"):
                cells[s_] = {"status": f"skipped: {why}", "ms": None}
        else:
            gx = lc.Tensor(xh, device="cuda", dtype=dt)
            gy = lc.Tensor(yh, device="cuda", dtype=dt)
            gout = lc.Tensor.empty([n], device="cuda", dtype=dt)

            def fused():
                lc.elementwise_program_into(CHAIN6_PROGRAM, gx, gout, gy)
                return gout

            timed("lc_fused", fused, env.lc_sync, lc_host)
            try:
                g = lc.compile(lambda x, y: _chain6_lc(lc, x, y), device="cuda", execution_mode="graph",
                               fusion={"elementwise_chain": True})
                timed("lc_graph_fused", lambda: g(gx, gy), env.lc_sync, lc_host)
                if hasattr(g, "explain"):
                    notes.append("graph: " + " ".join(str(g.explain()).split())[:300])
            except Exception as e:  # noqa: BLE001
                cells["lc_graph_fused"] = {"status": f"error: {type(e).__name__}: {str(e)[:160]}", "ms": None}
            timed("lc_unfused", lambda: _chain6_lc(lc, gx, gy), env.lc_sync, lc_host)
        if torch is None or not env.torch_cuda:
            why = env.reasons.get("torch_cuda", env.reasons.get("torch", "no torch CUDA"))
            for s_ in ("torch_cuda", "torch_cuda_graph"):
                cells[s_] = {"status": f"skipped: {why}", "ms": None}
        else:
            tdt = torch.bfloat16 if dt == "bfloat16" else torch.float32
            tx = torch.from_numpy(xh.astype(np.float32)).to("cuda", tdt)
            ty = torch.from_numpy(yh.astype(np.float32)).to("cuda", tdt)
            th = lambda t: t.float().cpu().numpy()  # noqa: E731
            with torch.inference_mode():
                timed("torch_cuda", lambda: _chain6_torch(torch, tx, ty), env.torch_sync, th)
                try:
                    s_ = torch.cuda.Stream()
                    s_.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s_):
                        for _ in range(3):
                            _chain6_torch(torch, tx, ty)
                    torch.cuda.current_stream().wait_stream(s_)
                    torch.cuda.synchronize()
                    cg = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(cg):
                        tout = _chain6_torch(torch, tx, ty)

                    def replay():
                        cg.replay()
                        return tout

                    timed("torch_cuda_graph", replay, env.torch_sync, th)
                except Exception as e:  # noqa: BLE001
                    cells["torch_cuda_graph"] = {"status": f"error: {type(e).__name__}: {str(e)[:160]}", "ms": None}
        for s_, c in cells.items():
            if c.get("ms"):
                c["gbps"] = 3 * esz * n / (c["ms"] * 1e-3) / 1e9  # the fused minimum traffic
            elif c["status"] != "ok":
                notes.append(f"{s_}: {c['status']}")
        gpu = {k: c["ms"] for k, c in cells.items() if c.get("ms") and k in ("lc_fused", "lc_graph_fused", "lc_unfused", "torch_cuda", "torch_cuda_graph")}
        best_lc = min((k for k in gpu if k.startswith("lc_")), key=gpu.get, default=None)
        best_peer = min((k for k in gpu if k.startswith("torch")), key=gpu.get, default=None)
        f_ms, u_ms = cells.get("lc_fused", {}).get("ms"), cells.get("lc_unfused", {}).get("ms")
        if f_ms and u_ms:
            notes.append(f"GPU fused {f_ms:.4f} ms vs unfused {u_ms:.4f} ms ({u_ms / f_ms:.2f}x)")
        cf, cu = cells.get("lc_cpu_fused", {}).get("ms"), cells.get("lc_cpu_unfused", {}).get("ms")
        if cf and cu:
            notes.append(f"CPU fused {cf:.3f} ms vs unfused {cu:.3f} ms ({cu / cf:.2f}x), numpy "
                         f"{cells.get('numpy', {}).get('ms') or float('nan'):.3f} ms")
        rows.append({"suite": "elementwise", "mode": "resident", "family": "chain6", "case": name,
                     "impl": "lc.elementwise_program vs 6 LC ops vs torch", "precision": dt,
                     "device": "cuda", "params": {"n": n, "dtype": dt, "program": CHAIN6_PROGRAM},
                     "systems": cells, "notes": notes,
                     "best_lc": best_lc, "best_lc_ms": gpu.get(best_lc) if best_lc else None,
                     "best_peer": best_peer, "best_peer_ms": gpu.get(best_peer) if best_peer else None,
                     "ours_vs_best_peer": (gpu[best_peer] / gpu[best_lc]) if best_lc and best_peer else None,
                     "winner": min(gpu, key=gpu.get) if gpu else None})
        free_memory(env)
    return rows


def build_cases(quick: bool = False):  # run_elementwise drives the suite
    return []


if __name__ == "__main__":
    suite_main("elementwise", build_cases, runner=run_elementwise)
