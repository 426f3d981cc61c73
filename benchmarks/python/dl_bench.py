"""DL suite: large GEMM sweep over LC's GEMM modes.

Modes: when this build of lightning_core names its GEMM modes (lc.gemm_modes():
heuristic, autotuned, tf32_fast; see docs/autotune.md and lc_gemm_modes below), every named mode
is a row. Otherwise the rows are LC's default fp32 GEMM and
precision="tf32" through lc.ExecutionPolicy, and the row says so. torch peers run at the row's
precision (torch.backends.cuda.matmul.allow_tf32 follows it), so a TF32 row is never compared
with an fp32 peer or the other way round. CPU peers (torch CPU, numpy) are fp32 and measured once
per shape and mode.

    python benchmarks/python/dl_bench.py [--quick] [--out-dir DIR]
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from common import SYSTEMS, Progress, TimingConfig
from harness import Case, randn, run_case
from suite_main import matches_filter, suite_main

SHAPES = [(1024, 1024, 1024), (1536, 1536, 1536), (2048, 2048, 2048), (3072, 3072, 3072),
          (4096, 1024, 4096), (4096, 4096, 4096)]
TOL = {"fp32": 1e-3, "tf32": 1e-2, "bf16": 3e-2}


def _precision_of(name: str) -> str:
    n = name.lower()
    return "bf16" if "bf16" in n else "tf32" if "tf32" in n else "fp32"


def lc_gemm_modes(lc: Any) -> Tuple[List[Dict[str, Any]], str]:
    """[{name, precision, fn(lc, a, b, device), prepare(m, k, n) or None, note}] and where the list
    came from.

    The GEMM policy work exposes lc.gemm_modes() (names), lc.gemm_mode_precision(name) and
    lc.gemm_prepare(m, k, n, name), which makes later CUDA matmuls of that shape use the mode's
    cuBLASLt algorithm; the op then runs with ExecutionPolicy(precision=<the mode's precision>).
    The prepare step runs once per shape and mode, before the mode's warm-up, outside the timing.
    """
    if all(hasattr(lc, a) for a in ("gemm_modes", "gemm_mode_precision", "gemm_prepare")):
        modes: List[Dict[str, Any]] = []
        for name in lc.gemm_modes():
            prec = str(lc.gemm_mode_precision(name))
            pol = lc.ExecutionPolicy(precision=prec)
            modes.append({
                "name": name, "precision": prec,
                "fn": (lambda lc_, a, b, dev, pol=pol: lc_.matmul2d(a, b, dev, policy=pol)),
                "prepare": (lambda m, k, n, name=name: lc.gemm_prepare(m, k, n, name)),
                "note": f"LC GEMM mode '{name}' (lc.gemm_prepare, precision {prec})"})
        if modes:
            return modes, "named GEMM modes (lc.gemm_modes)"
    modes = []
    pol32 = lc.ExecutionPolicy(precision="fp32")
    modes.append({"name": "default_fp32", "precision": "fp32", "prepare": None,
                  "fn": lambda lc_, a, b, dev: lc_.matmul2d(a, b, dev, policy=pol32),
                  "note": "LC default GEMM (fp32); this build names no GEMM modes"})
    try:
        pol_tf = lc.ExecutionPolicy(precision="tf32")
        modes.append({"name": "policy_tf32", "precision": "tf32", "prepare": None,
                      "fn": lambda lc_, a, b, dev: lc_.matmul2d(a, b, dev, policy=pol_tf),
                      "note": "LC precision='tf32' via ExecutionPolicy; this build names no GEMM modes"})
    except Exception:
        pass
    return modes, "fallback: default fp32 + ExecutionPolicy(precision='tf32')"


def gemm_mode_case(m: int, k: int, n: int, mode: Dict[str, Any]) -> Case:
    fn: Callable = mode["fn"]
    prec = mode["precision"]
    return Case(
        suite="dl", family="large gemm", name=f"m={m},k={k},n={n} / {mode['name']}",
        params={"m": m, "k": k, "n": n, "lc_mode": mode["name"]},
        make_inputs=lambda rng: {"a": randn(rng, m, k), "b": randn(rng, k, n)},
        numpy_fn=lambda i: i["a"] @ i["b"],
        lc_fn=lambda lc, i, dev: fn(lc, i["a"], i["b"], dev),
        lc_into=None,
        out_shape=(m, n),
        torch_fn=lambda torch, i: torch.mm(i["a"], i["b"]),
        precision=prec, torch_precision="tf32" if prec == "tf32" else "fp32",
        tol=TOL.get(prec, 1e-2), impl=mode["name"], notes=[mode["note"]],
    )


def run_dl(args, env, cfg: TimingConfig, modes: List[str]) -> List[Dict[str, Any]]:
    shapes = [s for s in SHAPES if matches_filter(args.filter, f"large gemm m={s[0]},k={s[1]},n={s[2]}")]
    if env.lc is None:
        lc_modes = [{"name": "default_fp32", "precision": "fp32", "fn": None, "prepare": None,
                     "note": "LC missing"}]
        source = "LC missing"
    else:
        lc_modes, source = lc_gemm_modes(env.lc)
    rows: List[Dict[str, Any]] = []
    bar = Progress(len(shapes) * len(modes) * len(lc_modes), "dl", enabled=not args.no_progress)
    for (m, k, n) in shapes:
        ref = None
        if cfg.check:
            rng = np.random.default_rng(0)
            a, b = randn(rng, m, k), randn(rng, k, n)
            ref = (a @ b).astype(np.float64)
            del a, b
        for mode in modes:
            cache: Dict[str, Dict[str, Any]] = {}  # peer cells shared across LC modes
            for lm in lc_modes:
                case = gemm_mode_case(m, k, n, lm)
                if lm["fn"] is None:
                    case.lc_fn = None
                if lm.get("prepare") is not None:
                    try:
                        prep = lm["prepare"](m, k, n)
                        if isinstance(prep, dict):
                            case.notes.append(f"gemm_prepare: algo {prep.get('algo_index')} of "
                                              f"{prep.get('candidates')}, from_cache={prep.get('from_cache')}")
                    except Exception as e:  # CPU-only machine: the mode's algorithm choice is moot
                        case.notes.append(f"gemm_prepare skipped ({type(e).__name__}: {str(e)[:80]})")
                systems = [s for s in SYSTEMS[mode] if s != "lc_cuda_into"]
                reuse = {}
                for s in systems:
                    key = f"{s}@{case.torch_precision}" if s.startswith("torch_cuda") else s
                    if not s.startswith("lc_") and key in cache:
                        reuse[s] = cache[key]
                row = run_case(case, mode, env, cfg, systems=systems, reference=ref, cached=reuse)
                for s, cell in row["systems"].items():
                    if not s.startswith("lc_"):
                        key = f"{s}@{case.torch_precision}" if s.startswith("torch_cuda") else s
                        cache.setdefault(key, cell)
                row["notes"].append(f"modes: {source}")
                if case.torch_precision == "tf32":
                    row["notes"].append("torch CUDA peers with allow_tf32=True; CPU peers fp32")
                rows.append(row)
                bar.step(f"{mode} {case.name}")
    bar.close()
    return rows


def build_cases(quick: bool = False) -> List[Case]:  # for listing only; run_dl drives the suite
    return []


if __name__ == "__main__":
    suite_main("dl", build_cases, runner=run_dl)
