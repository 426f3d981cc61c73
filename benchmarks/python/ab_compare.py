"""Same-host A/B of two builds: did the new tree slow a case down? (#12's no-regression check)

    python3 benchmarks/python/ab_compare.py AB_DIR [--threshold 0.05] [--markdown F]

AB_DIR holds the rounds that scripts/ab_suites.sh ran: old-1/, new-1/, old-2/, new-2/, ... each
with run_all.py's per-suite CSV files, the two builds timed by the same harness on the same host,
the old and new rounds interleaved so that a host's drift falls on both. compare_results.py
compares runs from different sessions (different hosts) through the ratio to torch and numpy,
which moves with the peers' own noise; here the LC milliseconds themselves are comparable.

Per case and per LC system (lc_auto, lc_cuda, lc_cuda_into, lc_cpu: the same column in both
builds), the median over rounds of each build. A case is `slower` when the new median is more
than `threshold` above the old one AND every new round is slower than every old round (with two
rounds each, a drift that hits one round of each cannot make a case `slower`); `faster` likewise;
otherwise `same`. Exit status: 0, or 1 with --fail when some case is slower.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from compare_results import _float  # a CSV cell as positive finite ms, or None

LC_COLUMNS = ("lc_auto_ms", "lc_cuda_ms", "lc_cuda_into_ms", "lc_cpu_ms")
Key = Tuple[str, str, str, str, str]  # suite, mode, family, case, LC column


def load_round(d: Path) -> Dict[Key, float]:
    """{(suite, mode, family, case, column): ms} for every LC column that has a time."""
    out: Dict[Key, float] = {}
    for p in sorted(d.glob("*.csv")):
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                if "case" not in r:
                    break
                for col in LC_COLUMNS:
                    v = _float(r.get(col))
                    if v is not None:
                        out[(r.get("suite", p.stem), r.get("mode", ""), r.get("family", ""), r["case"], col)] = v
    return out


def rounds(ab_dir: Path, side: str) -> List[Dict[Key, float]]:
    dirs = sorted((d for d in ab_dir.glob(f"{side}-*") if d.is_dir()), key=lambda d: d.name)
    return [load_round(d) for d in dirs]


def compare(old: List[Dict[Key, float]], new: List[Dict[Key, float]], threshold: float = 0.05):
    """[(key, verdict, old times, new times)] for keys timed in every round of both builds;
    keys missing from some round come back with verdict 'incomplete'."""
    keys = set().union(*old, *new) if old or new else set()
    res = []
    for k in sorted(keys):
        o = [r[k] for r in old if k in r]
        n = [r[k] for r in new if k in r]
        if len(o) != len(old) or len(n) != len(new) or not o or not n:
            res.append((k, "incomplete", o, n))
            continue
        mo, mn = statistics.median(o), statistics.median(n)
        if mn > mo * (1 + threshold) and min(n) > max(o):
            verdict = "slower"
        elif mn < mo * (1 - threshold) and max(n) < min(o):
            verdict = "faster"
        else:
            verdict = "same"
        res.append((k, verdict, o, n))
    return res


def markdown(res, ab_dir: Path, threshold: float) -> str:
    counts = {v: sum(1 for r in res if r[1] == v) for v in ("slower", "faster", "same", "incomplete")}
    lines = [f"# Same-host A/B: `{ab_dir}`", "",
             f"Median ms per build over interleaved rounds; slower / faster = beyond {threshold:.0%} "
             "with every round of one build beyond every round of the other.", "",
             "| verdict | cases |", "| --- | --- |"]
    lines += [f"| {v} | {c} |" for v, c in counts.items()]
    lines += ["", "| case | LC system | old ms (rounds) | new ms (rounds) | new / old | verdict |",
              "| --- | --- | --- | --- | --- | --- |"]
    order = {"slower": 0, "faster": 1, "same": 2, "incomplete": 3}
    for k, v, o, n in sorted(res, key=lambda r: (order[r[1]], r[0])):
        ratio = f"{statistics.median(n) / statistics.median(o):.3f}" if o and n else "n/a"
        fmt = lambda xs: ", ".join(f"{x:.4g}" for x in xs) or "-"  # noqa: E731
        lines.append(f"| {' / '.join(k[:4])} | {k[4][:-3]} | {fmt(o)} | {fmt(n)} | {ratio} | {v} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ab_dir", type=Path)
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--markdown", type=Path, help="also write the report there")
    ap.add_argument("--fail", action="store_true", help="exit 1 when a case is slower")
    a = ap.parse_args(argv)
    old, new = rounds(a.ab_dir, "old"), rounds(a.ab_dir, "new")
    if not old or not new:
        print(f"ab_compare: {a.ab_dir} needs old-N and new-N round folders", file=sys.stderr)
        return 2
    res = compare(old, new, a.threshold)
    text = markdown(res, a.ab_dir, a.threshold)
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
    return 1 if a.fail and any(r[1] == "slower" for r in res) else 0


if __name__ == "__main__":
    sys.exit(main())
