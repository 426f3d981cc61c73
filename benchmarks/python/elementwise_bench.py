"""Elementwise bandwidth suite (issue #12): resident add in bfloat16 / float32, same-shape and
broadcast, against torch and against a device-to-device copy of the same bytes.

    python benchmarks/python/elementwise_bench.py [--quick] [--out-dir DIR]

Per case and system the row reports the median time of one call (each timed sample runs
REPS calls back to back, then synchronises, so the ~10 us sync round trip does not dilute the
bandwidth) and the achieved bandwidth: bytes the op must move at least (read a, read b, write
out) per second. `lc_d2d_copy` / `torch_d2d_copy` copy a buffer of the result's size on the
device (read + write); `lc_vs_copy` = lc's add bandwidth / lc's copy bandwidth. The goal of
issue #12 is lc_vs_copy >= 0.9 for the large same-shape bfloat16 add.
Without a usable GPU every cell says why it was skipped.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from common import Progress, free_memory, measure
from suite_main import suite_main

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
    todo = [c for c in CASES if args.filter.lower() in f"{c[0]} {c[1]}".lower()]
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
    return rows


def build_cases(quick: bool = False):  # run_elementwise drives the suite
    return []


if __name__ == "__main__":
    suite_main("elementwise", build_cases, runner=run_elementwise)
