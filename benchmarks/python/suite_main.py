"""Command line shared by the suite scripts and run_all.py."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from common import MODES, REPO_ROOT, TimingConfig, context_block, detect_env, write_results

DEFAULT_OUT = REPO_ROOT / "benchmark_results"

# --quick: enough calls for a stable median on the GPU, short on slow CPU peers.
QUICK = dict(warmup=5, iters=30, budget_s=0.3, min_iters=3)
FULL = dict(warmup=20, iters=200, budget_s=3.0, min_iters=5)


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="short run (fewer calls, smaller time budget)")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="where CSV/JSON go (default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES), help="oneshot,resident (default: both)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per system and case")
    p.add_argument("--iters", type=int, default=None, help="timed calls per system and case (at most)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop timing a system after this many seconds (but not before --min-iters calls)")
    p.add_argument("--min-iters", type=int, default=None)
    p.add_argument("--filter", default="",
                   help="only cases whose 'family case' contains this text ('a|b': any of them; '!x': none containing x)")
    p.add_argument("--no-check", action="store_true", help="skip the correctness check against numpy")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--exact-case", default=None,
                   help="only the case whose 'family case' is exactly this text, measured in this "
                        "process (how a case marked `isolate` runs in a process of its own)")


def matches_filter(filt: str, text: str) -> bool:
    """--filter's rule: empty matches everything; otherwise 'a|b|c' matches a text that contains
    any of the alternatives (case-insensitive). The same-host A/B script passes the cases to
    re-time this way, one suite process for many cases."""
    alts = [a.strip().lower() for a in (filt or "").split("|") if a.strip()]
    # '!x' alternatives exclude: 'MiniLM|!bf16' is the MiniLM cases other than the bf16 ones.
    excl = [a[1:] for a in alts if a.startswith("!")]
    alts = [a for a in alts if not a.startswith("!")]
    t = text.lower()
    if any(e and e in t for e in excl):
        return False
    return not alts or any(a in t for a in alts)


def timing_config(args: argparse.Namespace) -> TimingConfig:
    base = dict(QUICK if args.quick else FULL)
    for k in ("warmup", "iters", "budget_s", "min_iters"):
        v = getattr(args, k, None)
        if v is not None:
            base[k] = v
    return TimingConfig(check=not args.no_check, **base)


def parse_modes(s: str) -> List[str]:
    modes = [m.strip() for m in s.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"unknown mode(s) {bad}; choose from {list(MODES)}")
    return modes


def settings_of(args: argparse.Namespace, cfg: TimingConfig) -> Dict[str, Any]:
    return {"quick": bool(args.quick), "warmup": cfg.warmup, "iters": cfg.iters,
            "budget_s": cfg.budget_s, "min_iters": cfg.min_iters, "modes": parse_modes(args.modes),
            "timing": "synchronised wall clock (perf_counter_ns around call + device sync), median of timed calls",
            "filter": args.filter or None, "argv": sys.argv[1:]}


def run_suite(name: str, build_cases: Callable[..., Sequence[Any]], args: argparse.Namespace,
              runner: Optional[Callable[..., List[Dict[str, Any]]]] = None) -> Dict[str, Path]:
    """Runs one suite with the parsed arguments; writes <out-dir>/<name>.{json,csv}."""
    from harness import run_cases

    env = detect_env()
    cfg = timing_config(args)
    modes = parse_modes(args.modes)
    t0 = time.perf_counter()
    if runner is not None:
        rows = runner(args=args, env=env, cfg=cfg, modes=modes)
    else:
        exact = getattr(args, "exact_case", None)
        cases = [c for c in build_cases(quick=args.quick)
                 if (f"{c.family} {c.name}" == exact if exact is not None
                     else matches_filter(args.filter, f"{c.family} {c.name}"))]
        # <name>.partial.{csv,json} after every case: a run killed by a time limit (the device
        # tool's 600 s per call) keeps the cases it finished; replaced by <name>.csv at the end.
        partial_ctx = dict(context_block(settings_of(args, cfg)), partial=True)

        def save_partial(rows_so_far):
            write_results(Path(args.out_dir), f"{name}.partial", rows_so_far, partial_ctx)

        isolated = None if exact is not None else _isolated_runner(name, build_cases, args)
        rows = run_cases(cases, modes, env, cfg, desc=name, progress=not args.no_progress,
                         on_row=save_partial, isolated=isolated)
    ctx = context_block(settings_of(args, cfg))
    ctx["suite_seconds"] = round(time.perf_counter() - t0, 2)
    paths = write_results(Path(args.out_dir), name, rows, ctx)
    for ext in ("csv", "json"):
        (Path(args.out_dir) / f"{name}.partial.{ext}").unlink(missing_ok=True)
    print(f"{name}: {len(rows)} rows in {ctx['suite_seconds']}s -> {paths['csv']}", file=sys.stderr)
    if ctx.get("cuda_skipped"):
        print(f"{name}: CUDA skipped (no usable GPU): CPU peers only", file=sys.stderr)
    return paths


def _isolated_runner(name: str, build_cases: Callable[..., Sequence[Any]],
                     args: argparse.Namespace) -> Callable[[Any, str], Dict[str, Any]]:
    """(case, mode) -> row, measured by the suite's own script in a child process (--exact-case,
    the parent's timing options, a scratch --out-dir); a child that ends without its results
    (a device-side assert, a crash, LC_ISOLATE_TIMEOUT seconds, default 300) gives an error row."""
    import json
    import os
    import subprocess
    import tempfile

    from harness import failed_row

    script = Path(sys.modules[build_cases.__module__].__file__).resolve()

    def run(case: Any, mode: str) -> Dict[str, Any]:
        text = f"{case.family} {case.name}"
        with tempfile.TemporaryDirectory(prefix="lc-isolated-") as tmp:
            cmd = [sys.executable, str(script), "--exact-case", text, "--modes", mode,
                   "--out-dir", tmp, "--no-progress"]
            if args.quick:
                cmd.append("--quick")
            if args.no_check:
                cmd.append("--no-check")
            for opt in ("warmup", "iters", "budget_s", "min_iters"):
                v = getattr(args, opt, None)
                if v is not None:
                    cmd += [f"--{opt.replace('_', '-')}", str(v)]
            why = ""
            try:
                p = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=float(os.environ.get("LC_ISOLATE_TIMEOUT", "300")))
                out = Path(tmp) / f"{name}.json"
                if p.returncode == 0 and out.exists():
                    rows = json.loads(out.read_text())["rows"]
                    if len(rows) == 1:
                        rows[0]["notes"] = list(rows[0].get("notes", [])) + ["measured in a process of its own"]
                        return rows[0]
                    why = f"{len(rows)} rows"
                else:
                    lines = [ln for ln in (p.stderr or "").splitlines() if ln.strip()]
                    why = f"rc {p.returncode}: {lines[-1][:160] if lines else 'no output'}"
            except subprocess.TimeoutExpired:
                why = "timed out"
        return failed_row(case, mode, f"error: its process ended ({why})",
                          f"measured in a process of its own, which ended without results ({why})")

    return run


def suite_main(name: str, build_cases: Callable[..., Sequence[Any]], runner=None,
               extra_args: Optional[Callable[[argparse.ArgumentParser], None]] = None) -> None:
    p = argparse.ArgumentParser(description=f"Lightning Core {name} benchmark suite")
    add_common_args(p)
    if extra_args:
        extra_args(p)
    args = p.parse_args()
    run_suite(name, build_cases, args, runner=runner)
