"""A short benchmark: one representative case per family (attention, conv, GEMM, FFN, LN->proj,
conv->attention, linear classifier, matrix sub, vector add), both modes, LC and every peer.

    PYTHONPATH=build/python python3 benchmarks/python/quick_bench.py --warmup 40 --iters 200 \
        --out benchmark_results/quick_bench.csv

Writes FILE (CSV) and FILE with .json (rows + context block).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kernel_bench  # noqa: E402
import ml_bench  # noqa: E402
import pipeline_bench  # noqa: E402
from common import MODES, TimingConfig, context_block, detect_env, write_results  # noqa: E402
from harness import run_cases  # noqa: E402


def quick_cases():
    k, pl = "quick", "quick"
    return [
        kernel_bench.attention_case(k, "attention micro", 8, 16),
        kernel_bench.attention_case(k, "attention", 512, 64),
        kernel_bench.conv_case(k, 1, 3, 32, 32, 16),
        kernel_bench.gemm_case(k, "gemm", 1024, 1024, 1024),
        _suite(pipeline_bench.ffn_case(512, 768, 3072), pl),
        _suite(pipeline_bench.ln_proj_case(1024, 1024, 1024), pl),
        _suite(pipeline_bench.conv_attn_case(96, 48), pl),
        _suite(ml_bench.linear_case(1024, 1024, 512), pl),
        _suite(ml_bench.matrix_sub_case(1024, 1024), pl),
        _suite(ml_bench.vector_add_case(1 << 20), pl),
    ]


def _suite(case, name):
    case.suite = name
    return case


def main() -> None:
    p = argparse.ArgumentParser(description="Short Lightning Core benchmark (one case per family)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--budget-s", type=float, default=1.0, help="per system and case time budget")
    p.add_argument("--out", type=Path, default=Path("benchmark_results/quick_bench.csv"))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    env = detect_env()
    cfg = TimingConfig(warmup=args.warmup, iters=args.iters, budget_s=args.budget_s, min_iters=3)
    modes = [m for m in args.modes.split(",") if m]
    t0 = time.perf_counter()
    rows = run_cases(quick_cases(), modes, env, cfg, desc="quick", progress=not args.no_progress)
    ctx = context_block({"warmup": cfg.warmup, "iters": cfg.iters, "budget_s": cfg.budget_s, "modes": modes,
                         "timing": "synchronised wall clock, median of timed calls"})
    ctx["suite_seconds"] = round(time.perf_counter() - t0, 2)
    out = args.out
    paths = write_results(out.parent, out.stem, rows, ctx)
    if paths["csv"] != out:  # honour a FILE whose name does not end in .csv
        paths["csv"].replace(out)
    print(f"quick_bench: {len(rows)} rows in {ctx['suite_seconds']}s -> {out}", file=sys.stderr)
    for r in rows:
        ratio = r.get("ours_vs_best_peer")
        print(f"  {r['mode']:8s} {r['family']:18s} {r['case']:44s} best LC {r.get('best_lc') or '-':14s} "
              f"{(r.get('best_lc_ms') or float('nan')):10.4f} ms | best peer {r.get('best_peer') or '-':16s} "
              f"{(r.get('best_peer_ms') or float('nan')):10.4f} ms | ours/peer "
              f"{('%.2fx' % ratio) if ratio else 'n/a'}", file=sys.stderr)


if __name__ == "__main__":
    main()
