"""Turns benchmark result files into markdown tables and PNG plots.

    python3 benchmarks/python/generate_summary.py [--results benchmark_results] [--update-readme README.md]

Reads <results>/{kernel,pipeline,ml,dl,api_overhead}.json, writes <results>/summary.md and
<results>/plots/*.png (speedup per case, log scale; needs matplotlib, else the plots are skipped
with a note). --update-readme replaces the text between `<!-- BENCH:BEGIN -->` and
`<!-- BENCH:END -->` in that file with the summary (image links made relative to it), so the
README's benchmark section is always generated from a run, never edited by hand.

ours_vs_best_peer = best peer ms / best LC ms (> 1: Lightning Core is faster).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SYSTEM_LABELS, SYSTEMS, fmt_ms, fmt_ratio  # noqa: E402

SUITE_ORDER = ["kernel", "pipeline", "ml", "dl", "api_overhead"]
SUITE_TITLES = {"kernel": "Kernel", "pipeline": "Pipeline", "ml": "ML", "dl": "DL Large GEMM Sweep",
                "api_overhead": "API overhead (C++ API vs Python)"}
MODE_TITLES = {"oneshot": "one-shot (numpy in, numpy out, transfers counted)",
               "resident": "resident (data on the device, sync per call)"}
BEGIN, END = "<!-- BENCH:BEGIN -->", "<!-- BENCH:END -->"


def load(results: Path) -> Dict[str, Dict[str, Any]]:
    data = {}
    for s in SUITE_ORDER:
        p = results / f"{s}.json"
        if p.is_file():
            with open(p) as f:
                data[s] = json.load(f)
    return data


def _stats(vals: List[float]) -> Dict[str, Optional[float]]:
    if not vals:
        return {"n": 0, "win": None, "median": None, "geomean": None, "min": None, "max": None}
    return {"n": len(vals), "win": 100.0 * sum(v > 1.0 for v in vals) / len(vals),
            "median": statistics.median(vals),
            "geomean": math.exp(sum(math.log(v) for v in vals) / len(vals)),
            "min": min(vals), "max": max(vals)}


def _ratios(rows: List[Dict[str, Any]]) -> List[float]:
    return [r["ours_vs_best_peer"] for r in rows if r.get("ours_vs_best_peer")]


def context_lines(data: Dict[str, Dict[str, Any]]) -> List[str]:
    ctx = next(iter(data.values()))["context"]
    bi = ctx.get("lc_build_info", {})
    settings = ctx.get("settings", {})
    commit = ctx.get("git_commit", "unknown")
    lines = [
        f"Measured {ctx.get('date_utc')} on **{ctx.get('device')}**"
        + (f" (driver {ctx['driver']}, CUDA {ctx.get('cuda_driver_api', '?')})" if ctx.get("driver") else ""),
        "",
        "| Item | Value |", "| --- | --- |",
        f"| Lightning Core | {ctx.get('lightning_core')} (CUDA backend compiled: {bi.get('cuda_compiled', '?')}, "
        f"usable: {'yes' if ctx.get('lc_cuda_available') else 'no'}) |",
    ]
    lines += [f"| LC {k} | {v} |" for k, v in bi.items()
              if ("version" in k and k != "version") or k in ("cuda_device", "cpu_blas")]
    lines += [
        f"| torch | {ctx.get('torch') or 'not installed'}"
        + (f" (CUDA {ctx.get('torch_cuda_runtime')})" if ctx.get("torch") else "") + " |",
        f"| numpy | {ctx.get('numpy')} |",
        f"| Python | {ctx.get('python')} |",
        f"| CPU | {ctx.get('cpu')} ({ctx.get('cpu_count')} threads) |",
        f"| git commit | `{commit[:12]}`{' (uncommitted changes)' if ctx.get('git_dirty') else ''} |",
        f"| settings | {'--quick, ' if settings.get('quick') else ''}warm-up {settings.get('warmup')}, "
        f"up to {settings.get('iters')} timed calls (budget {settings.get('budget_s')} s per system), "
        f"median |",
    ]
    if ctx.get("cuda_skipped"):
        lines += ["", "**CUDA skipped**: no usable GPU on this machine; only CPU systems ran."]
    missing = ctx.get("missing") or {}
    if missing:
        lines += ["", "Missing here: " + "; ".join(f"{k}: {v}" for k, v in missing.items())]
    return lines


def suite_summary(data) -> List[str]:
    out = ["**A. Suite summary** (ours_vs_best_peer = best peer ms / best LC ms; > 1: LC faster)", "",
           "| Suite | Mode | Rows | Win rate (>1) | Median | Geomean | Min | Max |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in SUITE_ORDER:
        if s not in data or s == "api_overhead":
            continue
        rows = data[s]["rows"]
        for mode in ("oneshot", "resident"):
            st = _stats(_ratios([r for r in rows if r["mode"] == mode]))
            n = len([r for r in rows if r["mode"] == mode])
            if not n:
                continue
            out.append(f"| {SUITE_TITLES[s]} | {mode} | {n} | "
                       + (f"{st['win']:.1f}% | {fmt_ratio(st['median'])} | {fmt_ratio(st['geomean'])} | "
                          f"{fmt_ratio(st['min'])} | {fmt_ratio(st['max'])} |" if st["n"] else
                          "n/a | n/a | n/a | n/a | n/a |"))
    return out


def family_summary(data) -> List[str]:
    out = ["**B. Family summary**", "",
           "| Suite | Mode | Family | Rows | Median | Geomean | Min | Max |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in SUITE_ORDER:
        if s not in data or s == "api_overhead":
            continue
        rows = data[s]["rows"]
        fams: List[str] = []
        for r in rows:
            if r["family"] not in fams:
                fams.append(r["family"])
        for mode in ("oneshot", "resident"):
            for fam in fams:
                sel = [r for r in rows if r["mode"] == mode and r["family"] == fam]
                if not sel:
                    continue
                st = _stats(_ratios(sel))
                out.append(f"| {SUITE_TITLES[s]} | {mode} | {fam} | {len(sel)} | {fmt_ratio(st['median'])} | "
                           f"{fmt_ratio(st['geomean'])} | {fmt_ratio(st['min'])} | {fmt_ratio(st['max'])} |")
    return out


def _short_notes(r: Dict[str, Any]) -> str:
    n = "; ".join(r.get("notes", []))
    return n.replace("|", "/")


def case_tables(data) -> List[str]:
    out = ["**C. Full case tables** (ms, median; n/a = system not available here, see notes)", ""]
    for s in SUITE_ORDER:
        if s not in data:
            continue
        rows = data[s]["rows"]
        if s == "api_overhead":
            out += ["<details>", f"<summary>{SUITE_TITLES[s]} ({len(rows)} rows)</summary>", "",
                    "| Case | Device | C++ API ms | Python _into ms | Python ms | Python _into / C++ | Notes |",
                    "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
            for r in rows:
                c = r["systems"]
                out.append(f"| {r['family']} / {r['case']} | {r.get('device', '')} | "
                           f"{fmt_ms(c.get('lc_cpp', {}).get('ms'))} | {fmt_ms(c.get('lc_py_into', {}).get('ms'))} | "
                           f"{fmt_ms(c.get('lc_py', {}).get('ms'))} | {fmt_ratio(r.get('py_into_over_cpp'))} | "
                           f"{_short_notes(r)} |")
            out += ["", "</details>", ""]
            continue
        for mode in ("oneshot", "resident"):
            sel = [r for r in rows if r["mode"] == mode]
            if not sel:
                continue
            present = [x for x in SYSTEMS[mode] if any(x in r["systems"] for r in sel)]
            head = "| Case | LC impl | " + " | ".join(f"{SYSTEM_LABELS[x]} ms" for x in present) + \
                   " | Ours vs best peer | Winner | Notes |"
            out += ["<details>", f"<summary>{SUITE_TITLES[s]}: {MODE_TITLES[mode]} ({len(sel)} rows)</summary>",
                    "", head, "| --- | --- | " + " | ".join("---:" for _ in present) + " | ---: | --- | --- |"]
            for r in sel:
                cells = []
                for x in present:
                    c = r["systems"].get(x) or {}
                    v = fmt_ms(c.get("ms")) if c.get("status") == "ok" else "n/a"
                    if c.get("check") == "MISMATCH":
                        v += " (!)"
                    cells.append(v)
                win = SYSTEM_LABELS.get(r.get("winner"), r.get("winner") or "n/a")
                out.append(f"| {r['family']} / {r['case']} | {r.get('impl', '')} | " + " | ".join(cells)
                           + f" | {fmt_ratio(r.get('ours_vs_best_peer'))} | {win} | {_short_notes(r)} |")
            out += ["", "</details>", ""]
    out.append("(!) = the system's result differed from the numpy reference beyond the case tolerance.")
    return out


def make_plots(data, plot_dir: Path) -> List[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return []
    plot_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for s in SUITE_ORDER:
        if s not in data or s == "api_overhead":
            continue
        for mode in ("oneshot", "resident"):
            sel = [r for r in data[s]["rows"] if r["mode"] == mode and r.get("ours_vs_best_peer")]
            if not sel:
                continue
            labels = [f"{r['family']} / {r['case']}" for r in sel]
            vals = [r["ours_vs_best_peer"] for r in sel]
            fig, ax = plt.subplots(figsize=(9, 0.32 * len(sel) + 1.4))
            colors = ["tab:green" if v > 1 else "tab:red" for v in vals]
            # bars grow from 1.0 (parity) to the ratio, right for LC faster, left for a peer faster
            ax.barh(range(len(sel)), [v - 1.0 for v in vals], left=1.0, color=colors)
            ax.set_yticks(range(len(sel)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xlabel("best peer ms / best LC ms (log scale; > 1: Lightning Core faster)")
            ax.set_title(f"{SUITE_TITLES[s]}: {mode}", fontsize=10)
            fig.tight_layout()
            p = plot_dir / f"{s}_{mode}_speedup.png"
            fig.savefig(p, dpi=110)
            plt.close(fig)
            made.append(p)
    return made


def _row(data, suite: str, mode: str, case_prefix: str) -> Optional[Dict[str, Any]]:
    for r in data.get(suite, {}).get("rows", []):
        if r.get("mode") == mode and r.get("case", "").startswith(case_prefix):
            return r
    return None


def _ms(row: Optional[Dict[str, Any]], system: str) -> Optional[float]:
    if not row:
        return None
    cell = row.get("systems", {}).get(system, {})
    return cell.get("ms") if cell.get("status") == "ok" else None


def load_micro(results: Path) -> Dict[str, float]:
    """cuda_micro.txt (benchmarks/cpp/cuda_micro.cpp): 'name  value unit  extra' per line."""
    out: Dict[str, float] = {}
    p = results / "cuda_micro.txt"
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        parts = line.split()
        for i, tok in enumerate(parts):
            try:
                val = float(tok)
            except ValueError:
                continue
            if i > 0:
                out[" ".join(parts[:i])] = val
            break
    return out


def target_lines(data, results: Path) -> List[str]:
    """The CUDA backend's speed targets (issue: 'CUDA backend on Hopper'), checked against this
    run: ratios come from the Python suites (same process as torch), rates from cuda_micro."""
    micro = load_micro(results)
    rows: List[List[str]] = []

    def add(what: str, target: str, measured: Optional[str], ok: Optional[bool]) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "**not met**")
        rows.append([what, target, measured or "n/a", verdict])

    for n in (1024, 2048, 4096):
        r = _row(data, "dl", "resident", f"m={n},k={n},n={n} / heuristic")
        lc_ms, t_ms = _ms(r, "lc_cuda"), _ms(r, "torch_cuda")
        ratio = t_ms / lc_ms if lc_ms and t_ms else None
        add(f"GEMM fp32 {n}^3 resident, vs torch CUDA", ">= 0.95x",
            f"{ratio:.2f}x ({lc_ms:.3f} vs {t_ms:.3f} ms)" if ratio else None,
            None if ratio is None else ratio >= 0.95)
    tf = micro.get("gemm 8192^3 tf32")
    add("GEMM tf32 8192^3 (cuda_micro)", ">= 380 TFLOP/s", f"{tf:.0f} TFLOP/s" if tf else None,
        None if tf is None else tf >= 380)
    va = micro.get("vector add 64M")
    add("vector add 64M floats resident (cuda_micro)", ">= 2.8 TB/s", f"{va:.2f} TB/s" if va else None,
        None if va is None else va >= 2.8)
    r = _row(data, "kernel", "resident", "seq=4096,head_dim=64")
    lc_ms, t_ms = _ms(r, "lc_cuda"), _ms(r, "torch_cuda")
    ratio = t_ms / lc_ms if lc_ms and t_ms else None
    add("attention fp32 seq=4096 d=64 resident, vs torch SDPA", ">= 1.5x",
        f"{ratio:.2f}x ({lc_ms:.3f} vs {t_ms:.3f} ms)" if ratio else None,
        None if ratio is None else ratio >= 1.5)
    r = _row(data, "ml", "resident", "n=65536")
    lc_ms, t_ms = _ms(r, "lc_cuda"), _ms(r, "torch_cuda")
    ratio = lc_ms / t_ms if lc_ms and t_ms else None
    add("resident vector add n=65536 + sync per call, latency vs torch", "<= 0.6x",
        f"{ratio:.2f}x ({lc_ms * 1e3:.1f} vs {t_ms * 1e3:.1f} us)" if ratio else None,
        None if ratio is None else ratio <= 0.6)
    tiny = load_tiny_op(results)
    if tiny:
        lc_us, t_us, t_p10 = tiny
        add("same, from tiny_op_latency.py (interleaved rounds, 3000 calls)", "<= 0.6x",
            f"{lc_us / t_us:.2f}x ({lc_us:.1f} vs {t_us:.1f} us; vs torch's p10 {t_p10:.1f} us: "
            f"{lc_us / t_p10:.2f}x)", lc_us / t_us <= 0.6)
    lines = ["**CUDA backend targets in this run**", "",
             "| Target | Goal | Measured | Verdict |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    for name, title in (("cuda_micro.txt", "cuda_micro (CUDA events / synchronized host clock, median)"),
                        ("sync_latency.txt", "sync_latency (raw CUDA launch + wait floor, no LC code)"),
                        ("tiny_op_latency.txt", "tiny_op_latency (resident tiny op from Python, piece by piece)")):
        p = results / name
        if p.is_file():
            lines += ["", "<details>", f"<summary>{title}</summary>", "", "```text",
                      p.read_text().rstrip(), "```", "", "</details>"]
    return lines


def load_tiny_op(results: Path) -> Optional[tuple]:
    """(LC into + sync, torch add out= + sync medians, torch p10) in us from tiny_op_latency.txt."""
    p = results / "tiny_op_latency.txt"
    if not p.is_file():
        return None
    vals: Dict[str, List[float]] = {}
    for line in p.read_text().splitlines():
        for key in ("lc into + sync", "torch add out= + sync"):
            if line.strip().startswith(key) and key not in vals:
                nums = [float(t) for t in line.replace(key, "").split() if _is_float(t)]
                if len(nums) >= 2:
                    vals[key] = nums
    if "lc into + sync" not in vals or "torch add out= + sync" not in vals:
        return None
    lc, t = vals["lc into + sync"], vals["torch add out= + sync"]
    return lc[0], t[0], t[1]


def _is_float(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def placement_goal_lines(data) -> List[str]:
    """The policy issue's goal: LC with device="auto" on numpy inputs at least as fast as the
    faster of numpy and torch-CUDA one-shot, for every case of the kernel and ML suites."""
    rows = []
    for suite in ("kernel", "ml"):
        for r in data.get(suite, {}).get("rows", []):
            if r.get("mode") != "oneshot":
                continue
            auto = _ms(r, "lc_auto")
            peers = [v for v in (_ms(r, "numpy"), _ms(r, "torch_cuda")) if v]
            if auto is None or not peers:
                continue
            rows.append((suite, r.get("family", ""), r.get("case", ""), auto, min(peers),
                         r.get("lc_auto_placed", "")))
    if not rows:
        return []
    losses = [x for x in rows if x[3] > x[4]]
    out = [f"**device=\"auto\" vs the faster of numpy and torch-CUDA one-shot** (kernel + ML suites): "
           f"auto at least as fast in {len(rows) - len(losses)} of {len(rows)} cases."]
    if losses:
        out += ["", "| Suite | Family | Case | LC auto ms | best of numpy / torch CUDA ms | auto ran |",
                "| --- | --- | --- | ---: | ---: | --- |"]
        out += [f"| {s} | {f} | {c} | {a:.4f} | {b:.4f} | {pl} |" for s, f, c, a, b, pl in losses]
    return out


def native_lines(results: Path) -> List[str]:
    """Google Benchmark JSON of the native bench_* binaries (results/native/*.json)."""
    files = sorted((results / "native").glob("bench_*.json")) if (results / "native").is_dir() else []
    out: List[str] = []
    for f in files:
        try:
            d = json.loads(f.read_text())
        except Exception:
            continue
        bms = [b for b in d.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
        if not bms:
            continue
        out += [f"`{f.stem}` ({d.get('context', {}).get('date', '')})", "",
                "| Benchmark | Time | Unit |", "| --- | ---: | --- |"]
        out += [f"| {b['name']} | {b.get('real_time', float('nan')):.3f} | {b.get('time_unit', '')} |"
                for b in bms]
        out.append("")
    if not out:
        return []
    return (["<details>", "<summary>D. Native Google Benchmark binaries (C++ API; CUDA rows timed "
             "with CUDA events, manual time)</summary>", ""] + out + ["</details>"])


def elementwise_lines(results: Path) -> List[str]:
    """The elementwise suite (elementwise_bench.py): achieved GB/s next to a D2D copy's."""
    p = results / "elementwise.json"
    if not p.is_file():
        return []
    rows = json.loads(p.read_text()).get("rows", [])
    if not rows:
        return []

    def gb(r, s):
        v = r.get("gbps", {}).get(s)
        return f"{v:.0f}" if v else "n/a"

    def ratio(v):
        return f"{v:.2f}" if v else "n/a"

    lines = ["### Elementwise bandwidth (resident CUDA, GB/s; goal: lc add >= 0.9x a D2D copy)", "",
             "| case | lc add | lc copy | lc/copy | torch add | torch copy | torch/copy | torch ms / lc ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['family']}: {r['case']} | {gb(r, 'lc_cuda_into')} | {gb(r, 'lc_d2d_copy')} | "
                     f"{ratio(r.get('lc_vs_copy'))} | {gb(r, 'torch_cuda')} | {gb(r, 'torch_d2d_copy')} | "
                     f"{ratio(r.get('torch_vs_copy'))} | {ratio(r.get('ours_vs_best_peer'))} |")
    return lines


def render(data, results: Path, link_base: Path) -> str:
    if not data:
        return "No benchmark results found."
    plots = make_plots(data, results / "plots")
    lines = context_lines(data) + [""] + target_lines(data, results) + [""]
    goal = placement_goal_lines(data)
    if goal:
        lines += goal + [""]
    lines += suite_summary(data) + [""] + family_summary(data) + [""]
    if plots:
        lines += ["**Speedup per case** (log scale)", ""]
        for p in plots:
            rel = os.path.relpath(p, link_base)
            lines.append(f"![{p.stem}]({rel})")
        lines.append("")
    else:
        lines += ["(plots skipped: matplotlib not installed)", ""]
    lines += case_tables(data)
    ew = elementwise_lines(results)
    if ew:
        lines += [""] + ew
    nat = native_lines(results)
    if nat:
        lines += [""] + nat
    lines += ["", "Generated by `benchmarks/python/generate_summary.py` from the result files in "
              f"`{os.path.relpath(results, link_base)}/`; see docs/benchmarks.md for the method."]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, body: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + BEGIN + "\n" + body + END + tail)


def generate(results: Path, readme: Optional[Path]) -> Path:
    results = Path(results)
    data = load(results)
    out = results / "summary.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Benchmark summary\n\n" + render(data, results, results))
    print(f"summary: {out}", file=sys.stderr)
    if readme is not None:
        update_readme(Path(readme), render(data, results, Path(readme).resolve().parent))
        print(f"README block regenerated: {readme}", file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=Path("benchmark_results"))
    p.add_argument("--update-readme", type=Path, default=None, metavar="README.md")
    args = p.parse_args()
    generate(args.results.resolve(), args.update_readme)


if __name__ == "__main__":
    main()
