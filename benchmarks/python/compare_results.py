"""Compares two benchmark runs case by case: the no-regression check of issue #12.

    python3 benchmarks/python/compare_results.py OLD_DIR NEW_DIR [--threshold 0.05] [--markdown F]

Each directory holds run_all.py's per-suite CSV files (kernel.csv, ml.csv, ...). Cases are
matched on (suite, mode, family, case). What is compared is `ours_vs_best_peer` (best peer ms /
best LC ms, measured in the same run as its peers), not raw milliseconds: a ratio cancels most of
a machine's drift between the two runs, which raw times do not. A case regressed when
new ratio / old ratio < 1 - threshold (5% by default, the issue's bar).

Because a single --quick timing of a ~10 us case moves by several percent from run to run, each
regression is printed with both runs' LC and peer milliseconds so that a reader can tell a real
drop from noise; `--min-ms` leaves out cases whose best LC time is below it in both runs.

Exit status: 0 when nothing regressed, 1 when some case did (with --fail), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

Key = Tuple[str, str, str, str]


def _float(v: Optional[str]) -> Optional[float]:
    try:
        f = float(v) if v not in (None, "", "n/a") else None
    except ValueError:
        return None
    return f if f is not None and math.isfinite(f) and f > 0 else None


def load_dir(d: Path) -> Dict[Key, Dict[str, str]]:
    """Every row of every *.csv under d with an ours_vs_best_peer column, by case key."""
    rows: Dict[Key, Dict[str, str]] = {}
    for p in sorted(d.glob("*.csv")):
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                if "ours_vs_best_peer" not in r or "case" not in r:
                    break  # not a suite CSV
                rows[(r.get("suite", p.stem), r.get("mode", ""), r.get("family", ""), r["case"])] = r
    return rows


def compare(old: Dict[Key, Dict[str, str]], new: Dict[Key, Dict[str, str]],
            threshold: float = 0.05, min_ms: float = 0.0) -> Dict[str, list]:
    """Returns {"regressed", "improved", "same", "missing", "added", "unrated"} lists of
    (key, old ratio, new ratio, old row, new row) tuples (missing/added: keys only)."""
    out: Dict[str, list] = {k: [] for k in ("regressed", "improved", "same", "missing", "added",
                                            "unrated")}
    for k in sorted(old):
        if k not in new:
            out["missing"].append(k)
            continue
        o, n = old[k], new[k]
        ro, rn = _float(o.get("ours_vs_best_peer")), _float(n.get("ours_vs_best_peer"))
        if ro is None or rn is None:
            out["unrated"].append((k, ro, rn, o, n))
            continue
        lo, ln = _float(o.get("best_lc_ms")), _float(n.get("best_lc_ms"))
        if min_ms > 0 and lo is not None and ln is not None and max(lo, ln) < min_ms:
            out["same"].append((k, ro, rn, o, n))
            continue
        change = rn / ro
        bucket = "regressed" if change < 1 - threshold else "improved" if change > 1 + threshold else "same"
        out[bucket].append((k, ro, rn, o, n))
    out["added"] = [k for k in sorted(new) if k not in old]
    return out


def _case(k: Key) -> str:
    return f"{k[0]} / {k[1]} / {k[2]} / {k[3]}"


def _ms(r: Dict[str, str], col: str) -> str:
    v = _float(r.get(col))
    return f"{v:.4g}" if v is not None else "n/a"


def ab_filters(cases) -> List[Tuple[str, str]]:
    """(suite, --filter text) for each case, deduplicated: 'family case' with the case's ' / impl'
    tail dropped (the dl suite names its impl there; the filter matches every impl of the shape)."""
    seen, out = set(), []
    for t in cases:
        k = t[0]
        item = (k[0], f"{k[2]} {k[3].split(' / ')[0]}")
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def markdown(res: Dict[str, list], old_dir: Path, new_dir: Path, threshold: float) -> str:
    lines = [f"# Benchmark comparison: `{old_dir}` -> `{new_dir}`", "",
             f"ours_vs_best_peer per case; regressed = new/old < {1 - threshold:.2f}.", "",
             "| result | cases |", "| --- | --- |"]
    for b in ("regressed", "improved", "same", "unrated", "missing", "added"):
        lines.append(f"| {b} | {len(res[b])} |")
    for b in ("regressed", "improved"):
        if not res[b]:
            continue
        lines += ["", f"## {b}", "",
                  "| case | old ratio | new ratio | change | old LC / peer ms | new LC / peer ms |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for k, ro, rn, o, n in sorted(res[b], key=lambda t: t[2] / t[1]):
            lines.append(f"| {_case(k)} | {ro:.3f} | {rn:.3f} | {rn / ro:.3f}x | "
                         f"{_ms(o, 'best_lc_ms')} / {_ms(o, 'best_peer_ms')} | "
                         f"{_ms(n, 'best_lc_ms')} / {_ms(n, 'best_peer_ms')} |")
    if res["missing"]:
        lines += ["", "## in the old run only", ""] + [f"- {_case(k)}" for k in res["missing"]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--min-ms", type=float, default=0.0,
                    help="skip cases whose best LC time is below this in both runs")
    ap.add_argument("--markdown", type=Path, help="also write the report there")
    ap.add_argument("--fail", action="store_true", help="exit 1 when a case regressed")
    ap.add_argument("--filters-out", type=Path,
                    help="write the regressed cases as 'suite<TAB>filter' lines (scripts/ab_suites.sh "
                         "re-times them on one host, old and new build side by side)")
    a = ap.parse_args(argv)
    for d in (a.old, a.new):
        if not d.is_dir():
            print(f"compare_results: {d} is not a directory", file=sys.stderr)
            return 2
    old, new = load_dir(a.old), load_dir(a.new)
    if not old or not new:
        print(f"compare_results: no suite CSV in {a.old if not old else a.new}", file=sys.stderr)
        return 2
    res = compare(old, new, a.threshold, a.min_ms)
    text = markdown(res, a.old, a.new, a.threshold)
    print(text, end="")
    if a.markdown:
        a.markdown.write_text(text)
    if a.filters_out:
        a.filters_out.write_text("".join(f"{s}\t{f}\n" for s, f in ab_filters(res["regressed"])))
    return 1 if a.fail and res["regressed"] else 0


if __name__ == "__main__":
    sys.exit(main())
