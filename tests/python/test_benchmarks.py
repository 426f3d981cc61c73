"""The benchmark tooling the README's numbers come from: the round-robin timer, a short real run
of the case runner on this machine (CUDA skipped without a GPU), and the summary generator on
the result files it writes. No timing assertions: only structure and bookkeeping."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lightning_core as lc

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "python"
sys.path.insert(0, str(BENCH))

common = pytest.importorskip("common")
harness = pytest.importorskip("harness")
summary = pytest.importorskip("generate_summary")


def test_measure_interleaved_rotates_and_respects_limits():
    order = []

    def make(name):
        return lambda: order.append(name)

    cfg = common.TimingConfig(warmup=1, iters=12, budget_s=10.0, min_iters=3, settle_s=0.0)
    cs = [common.Contender(n, make(n), lambda: None, contextlib.nullcontext) for n in "abc"]
    res = common.measure_interleaved(cs, cfg, rounds=4)
    assert set(res) == {"a", "b", "c"}
    for name, r in res.items():
        assert r["n"] == 12, name  # iters reached, never exceeded
        assert r["ms"] >= 0 and r["p10_ms"] <= r["p90_ms"]
    # Blocks: one untimed call + 3 timed per round; the first system of a round rotates.
    firsts = [order[i * 12] for i in range(4)]
    assert firsts == ["a", "b", "c", "a"]


def test_measure_interleaved_budget_stops_slow_system_after_min_iters():
    import time

    cfg = common.TimingConfig(warmup=1, iters=50, budget_s=0.02, min_iters=3, settle_s=0.0)
    slow = common.Contender("slow", lambda: time.sleep(0.01), lambda: None, contextlib.nullcontext)
    fast = common.Contender("fast", lambda: None, lambda: None, contextlib.nullcontext)
    res = common.measure_interleaved([slow, fast], cfg, rounds=5)
    assert 3 <= res["slow"]["n"] < 50
    assert res["fast"]["n"] == 50


def test_measure_cpu_rounds_takes_turns_and_pools_samples():
    order = []
    entered = []

    def make(name):
        def fn():
            order.append(name)
            return name + "!"
        return fn

    @contextlib.contextmanager
    def scope():
        entered.append(1)
        yield

    cfg = common.TimingConfig(warmup=1, iters=9, budget_s=10.0, min_iters=3, settle_s=0.0,
                              warm_min_s=0.0)
    cs = [common.Contender(n, make(n), lambda: None, scope) for n in "xyz"]
    res = common.measure_cpu_rounds(cs, cfg, rounds=3)
    assert set(res) == {"x", "y", "z"}
    for name, r in res.items():
        assert r["n"] == 9, name          # 3 blocks of 3 timed calls
        assert r["first"] == name + "!"   # the first warm-up result, for the correctness check
    # After the warm-ups (3 calls each, one system after another), the rounds: one untimed and
    # three timed calls per block, the first system of a round rotating.
    rounds = order[9:]
    assert len(rounds) == 3 * 3 * 4
    assert [rounds[i * 12] for i in range(3)] == ["x", "y", "z"]
    assert all(rounds[i * 4:(i + 1) * 4] == [rounds[i * 4]] * 4 for i in range(9))
    assert len(entered) == 3 + 9          # a scope per warm-up and per block, not per call


def test_measure_cpu_rounds_budget_stops_slow_system_after_min_iters():
    import time

    cfg = common.TimingConfig(warmup=1, iters=30, budget_s=0.02, min_iters=3, settle_s=0.0,
                              warm_min_s=0.0)
    slow = common.Contender("slow", lambda: time.sleep(0.01), lambda: None, contextlib.nullcontext)
    fast = common.Contender("fast", lambda: None, lambda: None, contextlib.nullcontext)
    res = common.measure_cpu_rounds([slow, fast], cfg, rounds=3)
    assert 3 <= res["slow"]["n"] < 30
    assert res["fast"]["n"] == 30


def _tiny_case():
    rng_shape = (64, 64)
    return harness.Case(
        suite="test", family="gemm", name="m=64,k=64,n=64",
        make_inputs=lambda rng: {"a": harness.randn(rng, *rng_shape), "b": harness.randn(rng, *rng_shape)},
        numpy_fn=lambda i: i["a"] @ i["b"],
        lc_fn=lambda lc_, i, dev: lc_.matmul2d(i["a"], i["b"], dev),
        torch_fn=lambda torch, i: torch.matmul(i["a"], i["b"]),
        lc_into=lambda lc_, i, out, dev: lc_.matmul2d_into(i["a"], i["b"], out, dev),
        out_shape=(64, 64),
    )


@pytest.mark.parametrize("mode", ["oneshot", "resident"])
def test_run_case_rows_are_complete_and_checked(mode):
    env = common.detect_env()
    cfg = common.TimingConfig(warmup=1, iters=4, budget_s=0.05, min_iters=2, settle_s=0.0,
                              cpu_settle_s=0.0, warm_min_s=0.0)
    row = harness.run_case(_tiny_case(), mode, env, cfg)
    assert list(row["systems"]) == list(common.SYSTEMS[mode])  # every system, in order
    for s, cell in row["systems"].items():
        if cell["status"] == "ok":
            assert cell["ms"] > 0 and cell["n"] >= 2, s
            assert cell.get("check") == "ok", (s, cell)
        else:
            assert cell["status"].startswith(("skipped", "error")), (s, cell)
    lc_cells = [c for s, c in row["systems"].items() if s.startswith("lc_")]
    assert any(c["status"] == "ok" for c in lc_cells)
    assert row["systems"]["numpy"]["status"] == "ok"
    if not lc.cuda_available():
        assert "CUDA skipped" in row["systems"]["lc_cuda"]["status"]
    if mode == "oneshot":
        # Where auto ran, from the trace: matmul2d on some device.
        assert row.get("lc_auto_placed", "").startswith("matmul2d:")


@pytest.mark.not_sanitized("a timing harness: ~90 s under ASan (2 cores), most of the stage's "
                           "pytest time, and it measures nothing the sanitizer checks that "
                           "test_ops_parity.py does not run directly")
def test_quick_bench_and_summary_end_to_end(tmp_path):
    out = tmp_path / "quick.csv"
    r = subprocess.run([sys.executable, str(BENCH / "quick_bench.py"), "--iters", "2", "--warmup", "1",
                        "--budget-s", "0.02", "--modes", "oneshot", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    header = out.read_text().splitlines()[0].split(",")
    assert "lc_auto_ms" in header and "numpy_ms" in header and "lc_auto_placed" in header
    data = json.loads((tmp_path / "quick.json").read_text())
    ctx = data["context"]
    for key in ("date_utc", "numpy", "lightning_core", "git_commit", "device", "settings"):
        assert key in ctx, key
    if not lc.cuda_available():
        assert ctx["cuda_skipped"]
    assert len(data["rows"]) >= 5


def test_summary_sections_from_synthetic_results(tmp_path):
    ctx = {"date_utc": "2026-01-01T00:00:00Z", "settings": {}, "lightning_core": "0", "device": {}}

    def row(suite, case, auto, np_ms, tc_ms, placed):
        cells = {"lc_auto": {"status": "ok", "ms": auto}, "numpy": {"status": "ok", "ms": np_ms},
                 "torch_cuda": {"status": "ok", "ms": tc_ms}}
        r = {"suite": suite, "mode": "oneshot", "family": "f", "case": case, "impl": "op",
             "precision": "fp32", "systems": cells, "notes": [], "lc_auto_placed": placed}
        common.summarize_row(r, list(cells))
        return r

    kernel = [row("kernel", "win", 1.0, 2.0, 3.0, "matmul2d:cpu"),
              row("kernel", "loss", 2.0, 1.0, 3.0, "matmul2d:cuda")]
    (tmp_path / "kernel.json").write_text(json.dumps({"suite": "kernel", "context": ctx, "rows": kernel}))
    (tmp_path / "tiny_op_latency.txt").write_text(
        "resident tiny op latency, n=65536, median of 3000 calls (us)\n"
        "  lc into + sync                         8.00   p10     7.80   p90     9.10\n"
        "  torch add out= + sync                 16.00   p10    15.00   p90    20.00\n"
        "lc into + sync / torch add out= + sync: 0.50x (target <= 0.6x)\n")
    (tmp_path / "native").mkdir()
    (tmp_path / "native" / "bench_x.json").write_text(json.dumps(
        {"context": {"date": "d"}, "benchmarks": [{"name": "x/cpu/n:1", "real_time": 1.5, "time_unit": "us"}]}))
    text = summary.generate(tmp_path, None).read_text()
    assert "auto at least as fast in 1 of 2 cases" in text
    assert "| kernel | f | loss | 2.0000 | 1.0000 | matmul2d:cuda |" in text
    assert "0.50x (8.0 vs 16.0 us; vs torch's p10 15.0 us: 0.53x) | met" in text
    assert "D. Native Google Benchmark binaries" in text and "x/cpu/n:1" in text
    assert summary.load_tiny_op(tmp_path) == (8.0, 16.0, 15.0)
    assert np.isfinite(summary.load_tiny_op(tmp_path)[0])


def _suite_csv(path: Path, rows, cols=("suite", "mode", "family", "case", "best_lc_ms", "best_peer_ms",
                                       "ours_vs_best_peer")):
    with open(path, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join(f'"{v}"' if "," in str(v) else str(v) for v in r) + "\n")


def test_compare_results_flags_only_ratio_drops_beyond_threshold(tmp_path, capsys):
    compare = pytest.importorskip("compare_results")
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    # ratio = peer / LC. a: 1.00 -> 0.90 (regressed 10%); b: 2.0 -> 1.92 (4%: within 5%);
    # c: 0.5 -> 0.6 (improved); d: only old; e: only new; f: unrated in the new run.
    _suite_csv(old / "kernel.csv", [
        ("kernel", "resident", "gemm", "m=1,n=2", 1.0, 1.0, 1.0),
        ("kernel", "resident", "gemm", "b", 1.0, 2.0, 2.0),
        ("kernel", "resident", "ew", "c", 2.0, 1.0, 0.5),
        ("kernel", "resident", "ew", "d", 1.0, 1.0, 1.0),
        ("kernel", "resident", "ew", "f", 1.0, 1.0, 1.0)])
    _suite_csv(new / "kernel.csv", [
        ("kernel", "resident", "gemm", "m=1,n=2", 1.0, 0.9, 0.9),
        ("kernel", "resident", "gemm", "b", 1.0, 1.92, 1.92),
        ("kernel", "resident", "ew", "c", 1.0, 0.6, 0.6),
        ("kernel", "resident", "ew", "e", 1.0, 1.0, 1.0),
        ("kernel", "resident", "ew", "f", 1.0, "n/a", "n/a")])
    res = compare.compare(compare.load_dir(old), compare.load_dir(new), threshold=0.05)
    assert [k[3] for k, *_ in res["regressed"]] == ["m=1,n=2"]
    assert [k[3] for k, *_ in res["improved"]] == ["c"]
    assert [k[3] for k, *_ in res["same"]] == ["b"]
    assert [k[3] for k in res["missing"]] == ["d"]
    assert [k[3] for k in res["added"]] == ["e"]
    assert [k[3] for k, *_ in res["unrated"]] == ["f"]
    # --min-ms leaves tiny cases out of the verdict; --fail turns a regression into exit 1.
    res2 = compare.compare(compare.load_dir(old), compare.load_dir(new), 0.05, min_ms=5.0)
    assert not res2["regressed"] and not res2["improved"]
    assert compare.main([str(old), str(new), "--fail"]) == 1
    assert "| regressed | 1 |" in capsys.readouterr().out
    assert compare.main([str(old), str(old), "--fail", "--markdown", str(tmp_path / "r.md")]) == 0
    assert "| regressed | 0 |" in (tmp_path / "r.md").read_text()
    assert compare.main([str(old), str(tmp_path / "nope")]) == 2
    # --filters-out: the regressed cases as 'suite<TAB>family case' lines for scripts/ab_suites.sh
    assert compare.main([str(old), str(new), "--filters-out", str(tmp_path / "f.txt")]) == 0
    assert (tmp_path / "f.txt").read_text() == "kernel\tgemm m=1,n=2\n"


def test_filter_alternatives():
    suite_main = pytest.importorskip("suite_main")
    assert suite_main.matches_filter("", "anything")
    assert suite_main.matches_filter("GEMM m=256", "gemm m=256,k=256,n=256")
    assert suite_main.matches_filter("conv batch=9|gemm m=256", "gemm m=256,k=256,n=256")
    assert not suite_main.matches_filter("conv batch=9|attention", "gemm m=256,k=256,n=256")
    assert suite_main.matches_filter(" | ", "x")  # only empty alternatives: everything
    # '!x' leaves out what contains x, alone or beside alternatives
    assert suite_main.matches_filter("MiniLM|!bf16", "MiniLM encoder graph: 1x128")
    assert not suite_main.matches_filter("MiniLM|!bf16", "MiniLM encoder graph: 1x128 bf16")
    assert not suite_main.matches_filter("MiniLM|!bf16", "ffn graph batch=256")
    assert suite_main.matches_filter("!bf16", "ffn graph batch=256")


def test_ab_compare_needs_every_round_beyond_the_other_build(tmp_path, capsys):
    ab = pytest.importorskip("ab_compare")
    # per round: (case, lc_cpu_ms, lc_cuda_ms). a: new slower in both rounds by > 5% -> slower;
    # b: new slower on median but one new round beats an old one -> same; c: faster; d: within
    # 5% -> same; e: missing from one round -> incomplete.
    rounds = {
        "old-1": [("a", 1.0, "n/a"), ("b", 1.0, 2.0), ("c", 2.0, "n/a"), ("d", 1.0, "n/a"), ("e", 1.0, "n/a")],
        "old-2": [("a", 1.02, "n/a"), ("b", 1.3, 2.0), ("c", 2.1, "n/a"), ("d", 1.0, "n/a")],
        "new-1": [("a", 1.2, "n/a"), ("b", 1.2, 2.01), ("c", 1.0, "n/a"), ("d", 1.03, "n/a"), ("e", 1.0, "n/a")],
        "new-2": [("a", 1.25, "n/a"), ("b", 1.5, 2.0), ("c", 1.1, "n/a"), ("d", 1.02, "n/a"), ("e", 1.0, "n/a")],
    }
    for name, rows in rounds.items():
        (tmp_path / name).mkdir()
        _suite_csv(tmp_path / name / "kernel.csv", [("kernel", "resident", "ew", c, cpu, cuda) for c, cpu, cuda in rows],
                   cols=("suite", "mode", "family", "case", "lc_cpu_ms", "lc_cuda_ms"))
    res = {(k[3], k[4]): v for k, v, *_ in ab.compare(ab.rounds(tmp_path, "old"), ab.rounds(tmp_path, "new"))}
    assert res == {("a", "lc_cpu_ms"): "slower", ("b", "lc_cpu_ms"): "same", ("b", "lc_cuda_ms"): "same",
                   ("c", "lc_cpu_ms"): "faster", ("d", "lc_cpu_ms"): "same", ("e", "lc_cpu_ms"): "incomplete"}
    assert ab.main([str(tmp_path), "--fail", "--markdown", str(tmp_path / "ab.md")]) == 1
    assert "| slower | 1 |" in (tmp_path / "ab.md").read_text()
    assert ab.main([str(tmp_path / "old-1")]) == 2


_MINI_SUITE = '''
import os, sys
sys.path.insert(0, {bench!r})
import numpy as np
from harness import Case
from suite_main import suite_main


def die(i):
    os._exit(3)  # what a device-side assert does to the process, in effect


def build_cases(quick=False):
    def case(name, numpy_fn, isolate):
        return Case(suite="mini", family="mini", name=name,
                    make_inputs=lambda rng: {{"x": np.arange(4, dtype=np.float32)}},
                    numpy_fn=numpy_fn, lc_fn=None, torch_fn=None, isolate=isolate)
    return [case("plain", lambda i: i["x"] + 1, ()),
            case("alone", lambda i: i["x"] * 2, ("oneshot",)),
            case("dies", die, ("oneshot",)),
            case("after", lambda i: i["x"] - 1, ())]


if __name__ == "__main__":
    suite_main("mini", build_cases)
'''


def test_isolated_cases_run_in_their_own_process(tmp_path):
    """Case.isolate: the case is measured by a child process of the suite's script; a child that
    dies costs only its own row (an error in every cell) and the suite goes on."""
    script = tmp_path / "mini_suite.py"
    script.write_text(_MINI_SUITE.format(bench=str(BENCH)))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(script), "--modes", "oneshot", "--out-dir", str(out),
                        "--quick", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["case"]: row for row in json.loads((out / "mini.json").read_text())["rows"]}
    assert list(rows) == ["plain", "alone", "dies", "after"]
    assert rows["plain"]["systems"]["numpy"]["status"] == "ok"
    assert rows["after"]["systems"]["numpy"]["status"] == "ok"
    assert rows["alone"]["systems"]["numpy"]["status"] == "ok"
    assert rows["alone"]["systems"]["numpy"]["ms"] is not None
    assert "measured in a process of its own" in rows["alone"]["notes"]
    assert rows["plain"]["notes"] == [] or "process of its own" not in " ".join(rows["plain"]["notes"])
    dead = rows["dies"]["systems"]
    assert all(c["status"].startswith("error: its process ended (rc 3") for c in dead.values()), dead
    # the child ran only its own case
    assert not (out / "mini.partial.json").exists()
