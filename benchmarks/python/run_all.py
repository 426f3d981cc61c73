"""Runs every benchmark suite in one process and writes CSV/JSON per suite, then the summary.

    PYTHONPATH=build/python python3 benchmarks/python/run_all.py --quick
    PYTHONPATH=build/python python3 benchmarks/python/run_all.py --suites kernel,ml --out-dir benchmark_results/h100

Suites: kernel, pipeline, ml, dl, api_overhead, elementwise, graph (default: all). --native also runs the Google
Benchmark binaries of the C++ API that the build produced (JSON under <out-dir>/native/).
Without a GPU (or torch) everything still runs: CUDA and torch columns say why they are n/a.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_overhead_bench  # noqa: E402
import dl_bench  # noqa: E402
import elementwise_bench  # noqa: E402
import graph_bench  # noqa: E402
import kernel_bench  # noqa: E402
import ml_bench  # noqa: E402
import pipeline_bench  # noqa: E402
from common import REPO_ROOT, context_block, detect_env  # noqa: E402
from suite_main import add_common_args, run_suite  # noqa: E402

SUITES = {
    "kernel": (kernel_bench.build_cases, kernel_bench.run_kernel),  # + decode GB/s
    "pipeline": (pipeline_bench.build_cases, None),
    "ml": (ml_bench.build_cases, None),
    "dl": (dl_bench.build_cases, dl_bench.run_dl),
    "api_overhead": (api_overhead_bench.build_cases, api_overhead_bench.run_api),
    "elementwise": (elementwise_bench.build_cases, elementwise_bench.run_elementwise),
    "graph": (graph_bench.build_cases, None),
}
GBENCH = ["bench_matmul", "bench_attention", "bench_vector_add", "bench_matrix_ops", "bench_cnn_dnn",
          "bench_transformer", "bench_lstm_rnn"]


def run_native(out_dir: Path, quick: bool, build_dir: str | None) -> Dict[str, str]:
    """Runs the Google Benchmark binaries found in the build tree; JSON per binary."""
    import lightning_core as lc  # the build tree the module came from is the natural first choice

    dirs: List[Path] = []
    if build_dir:
        dirs.append(Path(build_dir) / "benchmarks" / "cpp")
    dirs.append(Path(lc.__file__).resolve().parents[2] / "benchmarks" / "cpp")
    dirs += sorted(REPO_ROOT.glob("build*/benchmarks/cpp"), key=lambda p: p.stat().st_mtime, reverse=True)
    status: Dict[str, str] = {}
    (out_dir / "native").mkdir(parents=True, exist_ok=True)
    for name in GBENCH:
        exe = next((d / name for d in dirs if (d / name).is_file() and os.access(d / name, os.X_OK)), None)
        if exe is None:
            status[name] = "not built (configure with -DLC_BUILD_BENCHMARKS=ON and Google Benchmark installed)"
            continue
        out = out_dir / "native" / f"{name}.json"
        cmd = [str(exe), f"--benchmark_out={out}", "--benchmark_out_format=json",
               "--benchmark_min_time=" + ("0.05" if quick else "0.5")]
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            status[name] = f"rc={r.returncode} in {time.perf_counter() - t0:.1f}s -> {out}"
        except subprocess.TimeoutExpired:
            status[name] = "timed out after 300 s"
        print(f"native {name}: {status[name]}", file=sys.stderr)
    return status


def main() -> None:
    p = argparse.ArgumentParser(description="Run every Lightning Core benchmark suite")
    add_common_args(p)
    p.add_argument("--suites", default=",".join(SUITES), help="comma list of " + ",".join(SUITES))
    p.add_argument("--native", action="store_true", help="also run the Google Benchmark binaries")
    p.add_argument("--native-bin", default=None, help="bench_api_overhead path (api_overhead suite)")
    p.add_argument("--build-dir", default=None, help="build tree holding benchmarks/cpp binaries")
    p.add_argument("--no-summary", action="store_true", help="do not write summary.md / plots")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="do not start another suite once this many seconds have passed")
    args = p.parse_args()
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise SystemExit(f"unknown suite(s) {unknown}; choose from {list(SUITES)}")
    if args.native_bin is None and args.build_dir:
        args.native_bin = str(Path(args.build_dir) / "benchmarks" / "cpp" / "bench_api_overhead")

    env = detect_env()
    out_dir = Path(args.out_dir)
    ctx = context_block()
    print(f"device: {ctx.get('device')} | LC {ctx.get('lightning_core')} (cuda={env.lc_cuda}) | "
          f"torch {ctx.get('torch')} (cuda={env.torch_cuda}) | numpy {ctx.get('numpy')}", file=sys.stderr)
    for k, why in env.reasons.items():
        print(f"  {k}: {why}", file=sys.stderr)
    t0 = time.perf_counter()
    for s in suites:
        if args.deadline_s is not None and time.perf_counter() - t0 > args.deadline_s:
            print(f"== {s} skipped: --deadline-s {args.deadline_s} reached", file=sys.stderr)
            continue
        build, runner = SUITES[s]
        t = time.perf_counter()
        run_suite(s, build, args, runner=runner)
        print(f"== {s} done in {time.perf_counter() - t:.1f}s (total {time.perf_counter() - t0:.1f}s)",
              file=sys.stderr)
    if args.native:
        run_native(out_dir, args.quick, args.build_dir)
    if not args.no_summary:
        import generate_summary

        generate_summary.generate(out_dir, readme=None)
    print(f"all suites done in {time.perf_counter() - t0:.1f}s; results in {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
