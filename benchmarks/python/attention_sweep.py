"""Sweep of the CUDA attention kernels' compiled variants (docs/attention.md, "Kernel
variants") against cuDNN and torch SDPA, in one process, to pick the defaults.

For each shape: every variant of our tensor-core forward (16-bit prefill shapes) or of our
flash-decoding kernels (decode shapes), selected through the private hook
``lc._set_attention_kernel_variant`` with ``set_attention_impl("own")``; then LC through
cuDNN (``set_attention_impl("cudnn")``), torch SDPA eager and torch SDPA replayed from a CUDA
graph. Each row is checked against a float64 reference (torch float64 math on the GPU, else
numpy) and timed as the median over rounds of the per-call time of a burst of back-to-back
calls (``--calls`` calls in all, at least 200; synchronised around each burst, so host-bound
calls count with their gaps, as an eager user sees them). LC writes into a preallocated output
(``attention_into``), torch eager allocates as usual. LC rows are timed twice: with the default
policy (``sync="per_call"``: every call returns with its work done, a launch + wait round trip
each, column ``ms``) and with ``sync="batch"`` (calls queue back to back as torch's eager calls
do, column ``batch``); the ratios use the ``batch`` column where there is one.

    python benchmarks/python/attention_sweep.py [--quick] [--calls 400] [--only tc|decode|fp32]
                                                [--profile] [--json out.json]

Prints one table per shape: ms per call, max abs error, relative error, and the speed of each row
relative to torch's CUDA graph and to cuDNN. ``--profile`` adds two columns that say which side
bounds a row: the GPU time per call (kernels and copies, summed from torch's profiler, CUPTI,
which sees LC's kernels in the same process) and the host time per call (issuing a burst of
calls, no synchronisation inside it), plus the longest kernel's name. Rows whose check fails are marked FAIL (and the
exit code is 1). Needs a CUDA device; torch is optional (no torch: no torch rows, numpy
references, the largest shape's check skipped).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import lightning_core as lc

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

try:
    import torch
    import torch.nn.functional as F

    HAVE_TORCH = torch.cuda.is_available()
except Exception:  # pragma: no cover - torch missing or broken
    torch = None
    HAVE_TORCH = False

# (label, B, H, Hk, Sq, Sk, D, causal, dtype)
TC_SHAPES = [
    ("MiniLM bf16", 32, 12, 12, 128, 128, 32, False, "bfloat16"),
    ("MiniLM fp16", 32, 12, 12, 128, 128, 32, False, "float16"),
    ("MiniLM B1 bf16", 1, 12, 12, 128, 128, 32, False, "bfloat16"),
    ("B8 H16 S512 D64 bf16", 8, 16, 16, 512, 512, 64, False, "bfloat16"),
    ("B4 H32 S2048 D128 causal bf16", 4, 32, 32, 2048, 2048, 128, True, "bfloat16"),
]
DECODE_SHAPES = [
    ("decode B8 H32 Hk8 Sk4096 D128 bf16", 8, 32, 8, 1, 4096, 128, False, "bfloat16"),
    ("decode B1 H32 Hk8 Sk8192 D128 bf16", 1, 32, 8, 1, 8192, 128, False, "bfloat16"),
    ("decode B32 H32 Hk8 Sk1024 D128 bf16", 32, 32, 8, 1, 1024, 128, False, "bfloat16"),
]
FP32_SHAPES = [
    ("fp32 B4 H12 S512 D64", 4, 12, 12, 512, 512, 64, False, "float32"),
]
TOL = {"bfloat16": 2e-2, "float16": 1e-2, "float32": 1e-5}
NUMPY_REF_LIMIT = 2e9  # multiply-adds above which a numpy float64 reference is skipped


def np_dtype(name: str):
    if name == "bfloat16":
        if ml_dtypes is None:
            raise SystemExit("bfloat16 needs ml_dtypes")
        return ml_dtypes.bfloat16
    return np.dtype(name)


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> Optional[np.ndarray]:
    """float64 attention; causal bottom-right (LC's convention; top-left = bottom-right when
    Sq == Sk, the only causal shapes here)."""
    b, h, sq, d = q.shape
    hk, sk = k.shape[1], k.shape[2]
    if HAVE_TORCH:
        tq, tk, tv = (torch.from_numpy(x.astype(np.float64)).cuda() for x in (q, k, v))
        tk = tk.repeat_interleave(h // hk, dim=1)
        tv = tv.repeat_interleave(h // hk, dim=1)
        s = (tq @ tk.transpose(-1, -2)) / math.sqrt(d)
        if causal:
            vis = torch.arange(sk, device="cuda")[None, :] <= torch.arange(sq, device="cuda")[:, None] + (sk - sq)
            s = s.masked_fill(~vis, float("-inf"))
        out = torch.softmax(s, dim=-1) @ tv
        r = out.cpu().numpy()
        del tq, tk, tv, s, out
        torch.cuda.empty_cache()
        return r
    if b * h * sq * sk * d > NUMPY_REF_LIMIT:
        return None
    qd, kd, vd = (x.astype(np.float64) for x in (q, k, v))
    kd = np.repeat(kd, h // hk, axis=1)
    vd = np.repeat(vd, h // hk, axis=1)
    s = np.matmul(qd, kd.transpose(0, 1, 3, 2)) / math.sqrt(d)
    if causal:
        vis = np.arange(sk)[None, :] <= np.arange(sq)[:, None] + (sk - sq)
        s = np.where(vis, s, -np.inf)
    s = np.exp(s - s.max(axis=-1, keepdims=True))
    return np.matmul(s / s.sum(axis=-1, keepdims=True), vd)


def errors(got: np.ndarray, ref: Optional[np.ndarray]) -> tuple:
    if ref is None:
        return float("nan"), float("nan")
    g = got.astype(np.float64)
    if np.isnan(g).any():
        return float("inf"), float("inf")
    diff = g - ref
    return float(np.abs(diff).max()), float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-30))


def time_calls(fn: Callable[[], Any], sync: Callable[[], None], calls: int, rounds: int = 8) -> float:
    """Median over `rounds` bursts of the mean ms per call (calls / rounds calls per burst)."""
    per = max(1, calls // rounds)
    fn()
    sync()
    # a short warm-up burst (clocks, caches, allocator)
    for _ in range(min(per, 20)):
        fn()
    sync()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3 / per)
    return float(np.median(samples))


PROFILE = False  # --profile: add gpu_us / host_us / kernel to each row


def profile_call(fn: Callable[[], Any], sync: Callable[[], None], n: int = 50) -> Dict[str, Any]:
    """GPU time per call (CUPTI through torch.profiler: every kernel and copy of `n` calls,
    summed), the longest kernel's name, and the host time per call of a burst of `n` calls
    with no synchronisation inside it."""
    res: Dict[str, Any] = {}
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    res["host_us"] = (time.perf_counter() - t0) * 1e6 / n
    sync()
    if not HAVE_TORCH:
        return res
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        sync()
        torch.cuda.synchronize()
    per_kernel: Dict[str, float] = {}
    for ev in prof.events():
        if "CUDA" not in str(getattr(ev, "device_type", "")):
            continue
        us = ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
        if us > 0:
            per_kernel[ev.name] = per_kernel.get(ev.name, 0.0) + us
    if per_kernel:
        res["gpu_us"] = sum(per_kernel.values()) / n

        def short(name: str) -> str:  # "void ns::(anonymous namespace)::k<T, ...>(...)" -> "k"
            return name.split("<")[0].split("::")[-1].split("(")[0].replace("void ", "")[-48:]

        res["kernels"] = {short(k): round(v / n, 2) for k, v in sorted(per_kernel.items(), key=lambda kv: -kv[1])}
        res["kernel"] = " + ".join(f"{k} {v:.1f}" for k, v in list(res["kernels"].items())[:3])
    return res


def lc_row(name: str, q, k, v, out, causal: bool, dtype: str, ref, calls: int, expect_impl: str) -> Dict[str, Any]:
    row: Dict[str, Any] = {"system": name}
    try:
        lc.attention_into(q, k, v, out, causal=causal)
        lc.synchronize()
        impl = lc.last_op_report().get("impl", "")
        row["impl"] = impl
        got = out.numpy()
        row["max_err"], row["rel_err"] = errors(np.asarray(got), ref)
        row["ok"] = bool(row["rel_err"] <= TOL[dtype] or math.isnan(row["rel_err"]))
        if expect_impl and impl != expect_impl:
            row["note"] = f"ran {impl!r}, not {expect_impl!r}"
        row["ms"] = time_calls(lambda: lc.attention_into(q, k, v, out, causal=causal), lc.synchronize, calls)
        # sync="batch": calls queue back to back as torch's eager calls do (the default,
        # "per_call", returns with each call's work complete: a launch + wait round trip each)
        batch = lc.ExecutionPolicy(device="cuda", sync="batch")
        call_batch = lambda: lc.attention_into(q, k, v, out, causal=causal, policy=batch)  # noqa: E731
        row["ms_batch"] = time_calls(call_batch, lc.synchronize, calls)
        if PROFILE:
            row.update(profile_call(call_batch, lc.synchronize))
    except Exception as e:  # report and go on: one broken row must not end the sweep
        row.update(ok=False, ms=float("nan"), note=f"{type(e).__name__}: {e}"[:120])
    return row


def torch_rows(qn, kn, vn, causal: bool, dtype: str, ref, calls: int) -> List[Dict[str, Any]]:
    if not HAVE_TORCH:
        return []
    tdt = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    tq, tk, tv = (torch.from_numpy(x.astype(np.float32)).to("cuda", tdt) for x in (qn, kn, vn))
    gqa = tq.shape[1] != tk.shape[1]

    def call():
        return F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal, enable_gqa=gqa)

    rows = []
    sync = torch.cuda.synchronize
    got = call().float().cpu().numpy()
    mx, rel = errors(got, ref)
    rows.append({"system": "torch eager", "ms": time_calls(call, sync, calls), "max_err": mx,
                 "rel_err": rel, "ok": bool(rel <= TOL[dtype] or math.isnan(rel))})
    if PROFILE:
        rows[-1].update(profile_call(call, sync))
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                call()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static_out = call()
        g.replay()
        sync()
        got = static_out.float().cpu().numpy()
        mx, rel = errors(got, ref)
        rows.append({"system": "torch graph", "ms": time_calls(g.replay, sync, calls), "max_err": mx,
                     "rel_err": rel, "ok": bool(rel <= TOL[dtype] or math.isnan(rel))})
        if PROFILE:
            rows[-1].update(profile_call(g.replay, sync))
    except Exception as e:
        rows.append({"system": "torch graph", "ms": float("nan"), "ok": True,
                     "note": f"{type(e).__name__}: {e}"[:120]})
    return rows


def run_shape(shape, kernel: Optional[str], calls: int, rng) -> List[Dict[str, Any]]:
    label, b, h, hk, sq, sk, d, causal, dtype = shape
    nd = np_dtype(dtype)
    qn = rng.standard_normal((b, h, sq, d)).astype(nd)
    kn = rng.standard_normal((b, hk, sk, d)).astype(nd)
    vn = rng.standard_normal((b, hk, sk, d)).astype(nd)
    ref = reference(qn, kn, vn, causal)
    q, k, v = (lc.Tensor(x, device="cuda") for x in (qn, kn, vn))
    out = lc.Tensor(np.full((b, h, sq, d), np.nan, nd), device="cuda")
    rows: List[Dict[str, Any]] = []
    lc.set_attention_impl("own")
    if kernel is not None:
        names = lc._attention_kernel_variant_names(kernel)
        before = lc._attention_kernel_variant(kernel)
        try:
            for i, nm in enumerate(names):
                lc._set_attention_kernel_variant(kernel, i)
                rows.append(lc_row(f"lc {kernel} v{i}: {nm}", q, k, v, out, causal, dtype, ref, calls, "own"))
        finally:
            lc._set_attention_kernel_variant(kernel, before)
    else:
        rows.append(lc_row("lc own", q, k, v, out, causal, dtype, ref, calls, "own"))
    if dtype != "float32":
        lc.set_attention_impl("cudnn")
        rows.append(lc_row("lc cudnn", q, k, v, out, causal, dtype, ref, calls, "cudnn"))
    lc.set_attention_impl("auto")
    rows.append(lc_row("lc auto", q, k, v, out, causal, dtype, ref, calls, ""))
    rows.extend(torch_rows(qn, kn, vn, causal, dtype, ref, calls))
    for r in rows:
        r["shape"] = label
    if kernel == "decode":  # K/V bytes per call / time: the bandwidth-bound figure
        kv_bytes = 2 * b * hk * sk * d * np.dtype(nd).itemsize
        for r in rows:
            ms = r.get("ms_batch", r.get("ms"))
            if ms and math.isfinite(ms) and kv_bytes:
                r["tb_s"] = kv_bytes / (ms * 1e-3) / 1e12
    return rows


def print_table(rows: List[Dict[str, Any]]) -> None:
    if not rows:
        return
    label = rows[0]["shape"]
    def best(r):  # the batch column where there is one
        return r.get("ms_batch", r.get("ms", float("nan")))

    ref_graph = next((r["ms"] for r in rows if r["system"] == "torch graph" and math.isfinite(r.get("ms", float("nan")))), None)
    ref_cudnn = next((best(r) for r in rows if r["system"] == "lc cudnn" and math.isfinite(best(r))), None)
    print(f"\n== {label}")
    print(f"{'system':<72} {'ms':>8} {'batch':>8} {'vs graph':>8} {'vs cudnn':>8} {'max err':>9} {'rel err':>9}  {'TB/s':>5} check")
    for r in rows:
        ms = r.get("ms_batch", r.get("ms", float("nan")))
        per_call = r.get("ms", float("nan"))
        batch_s = f"{r['ms_batch']:8.4f}" if "ms_batch" in r else f"{'-':>8}"
        vg = f"{ref_graph / ms:.2f}x" if ref_graph and ms and math.isfinite(ms) else "-"
        vc = f"{ref_cudnn / ms:.2f}x" if ref_cudnn and ms and math.isfinite(ms) else "-"
        tb = f"{r['tb_s']:.2f}" if "tb_s" in r else ""
        mx = r.get("max_err", float("nan"))
        rel = r.get("rel_err", float("nan"))
        ok = "ok" if r.get("ok") else "FAIL"
        note = f"  ({r['note']})" if r.get("note") else ""
        prof = ""
        if "host_us" in r:
            prof = f"  gpu {r.get('gpu_us', float('nan')):7.2f} us  host {r['host_us']:6.2f} us  {r.get('kernel', '')}"
        print(f"{r['system'][:72]:<72} {per_call:8.4f} {batch_s} {vg:>8} {vc:>8} {mx:9.2e} {rel:9.2e}  {tb:>5} {ok}{note}{prof}")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=400, help="timed calls per row (>= 200)")
    ap.add_argument("--quick", action="store_true", help="200 calls per row, the first shape of each kind")
    ap.add_argument("--only", choices=["tc", "decode", "fp32"], default=None)
    ap.add_argument("--json", default=None, help="write every row here as JSON")
    ap.add_argument("--profile", action="store_true",
                    help="add each row's GPU time and host time per call (torch.profiler / CUPTI)")
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.profile
    if not lc.cuda_available():
        print("attention_sweep: no usable CUDA device", file=sys.stderr)
        return 2
    calls = 200 if args.quick else max(200, args.calls)
    plan = []
    if args.only in (None, "tc"):
        plan += [(s, "tc") for s in (TC_SHAPES[:1] if args.quick else TC_SHAPES)]
    if args.only in (None, "decode"):
        plan += [(s, "decode") for s in (DECODE_SHAPES[:1] if args.quick else DECODE_SHAPES)]
    if args.only in (None, "fp32"):
        plan += [(s, None) for s in FP32_SHAPES]
    print(f"lightning_core {lc.__version__ if hasattr(lc, '__version__') else ''} build "
          f"{lc.build_info().get('cuda_targets', '')}; torch {torch.__version__ if torch else 'absent'}; "
          f"{calls} calls per row; LC_ATTENTION_* variants: tc {lc._attention_kernel_variant('tc')}, "
          f"decode {lc._attention_kernel_variant('decode')}")
    rng = np.random.default_rng(0)
    impl_before = lc.attention_impl()
    all_rows: List[Dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for shape, kernel in plan:
            rows = run_shape(shape, kernel, calls, rng)
            print_table(rows)
            all_rows.extend(rows)
    finally:
        lc.set_attention_impl(impl_before)
    print(f"\nsweep took {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_rows, f, indent=1, default=str)
    return 0 if all(r.get("ok") for r in all_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
