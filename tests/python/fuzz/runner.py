"""The fuzz run: worker subprocesses (crash isolation), crash replay, summary and report.

    python tests/python/fuzz/runner.py [--examples N] [--seconds S] [--gpu] [--report PATH]
    LC_FUZZ_EXAMPLES=20000 python -m pytest tests/python/fuzz          # the same, through pytest

Environment knobs (the command-line flags win):
  LC_FUZZ_EXAMPLES      cases in total (default 3000 on the CPU: ~60-90 s on a 2-core machine)
  LC_FUZZ_GPU_EXAMPLES  cases of the GPU run (default 500; only when lc.cuda_available())
  LC_FUZZ_SECONDS       stop starting new cases after this many seconds (default: no limit)
  LC_FUZZ_WORKERS       worker processes (default: CPU count, at most 4)
  LC_FUZZ_OPS           comma-separated op names: the op cases draw only from these (default: all)
  LC_FUZZ_SEED          seed of the run (default: random; printed in the summary)
  LC_FUZZ_REPORT        write the JSON summary here
  LC_FUZZ_DB            hypothesis example database (default tests/python/fuzz/.hypothesis-db;
                        "none": no database)
  LC_FUZZ_HANG_S        a case running longer than this is a hang finding (default 120)
  LC_FUZZ_MEM_GB        address-space limit of a CPU worker (default 8; 0: none)

A worker that dies (segfault, abort, OOM kill) or hangs is reported as a crash with the case and
the calls it had made; the worker is restarted for the rest of its budget and skips cases of the
same crash key. Crashing cases are appended to crash-corpus.json (one per key) and replayed first
in every later run, like the hypothesis database's saved failures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "worker.py")
CORPUS = os.path.join(HERE, "crash-corpus.json")
DEFAULT_EXAMPLES = 3000
DEFAULT_GPU_EXAMPLES = 500


def _env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def _env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v.strip() else default


def _read_status(path):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return 0, None, []
    if not lines:
        return 0, None, []
    try:
        head = json.loads(lines[0])
    except ValueError:
        return 0, None, lines[1:]
    return head.get("tried", 0), head.get("case"), lines[1:]


def _read_results(path):
    out = []
    try:
        for line in open(path):
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


class Worker:
    """A worker subprocess with its budget; restarted after a crash until the budget is spent."""

    def __init__(self, wid, examples, seed, args, tmp, hang_s):
        self.wid, self.left, self.seed, self.base_args = wid, examples, seed, args
        self.tmp, self.hang_s = tmp, hang_s
        self.proc = None
        self.tried = 0
        self.findings, self.crashes = [], []
        self.avoid, self.known = set(), set()
        self.starts = 0

    def start(self, deadline):
        self.starts += 1
        self.status = os.path.join(self.tmp, f"w{self.wid}.{self.starts}.status")
        self.results = os.path.join(self.tmp, f"w{self.wid}.{self.starts}.jsonl")
        args = [sys.executable, WORKER, "--examples", str(self.left), "--seed", str(self.seed + 7919 * self.starts),
                "--status", self.status, "--results", self.results, *self.base_args]
        if deadline is not None:
            args += ["--seconds", str(max(1.0, deadline - time.monotonic()))]
        if self.avoid:
            args += ["--avoid", *sorted(self.avoid)]
        if self.known:
            args += ["--known", *sorted(self.known)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.t0 = time.monotonic()

    def poll(self, deadline, known_global):
        """True while running (or restarted)."""
        if self.proc is None:
            return False
        rc = self.proc.poll()
        if rc is None:
            try:
                age = time.monotonic() - os.path.getmtime(self.status) if os.path.exists(self.status) else 0
                age = min(age, time.monotonic() - self.t0)
            except OSError:
                age = 0
            if age <= self.hang_s:
                return True
            self.proc.kill()
            self.proc.wait()
            rc = "hang"
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        res = _read_results(self.results)
        done = [r for r in res if r.get("done")]
        for r in res:
            if "finding" in r and r["finding"]["sig"] not in known_global:
                known_global.add(r["finding"]["sig"])
                self.findings.append(r["finding"])
            if "finding" in r:
                self.known.add(r["finding"]["sig"])
        if done and rc == 0:
            self.tried += done[-1]["tried"]
            self.proc = None
            return False
        n, case, trace = _read_status(self.status)
        self.tried += n
        self.left -= n
        from worker import crash_key  # noqa: E402

        key = crash_key(case) if case else "unknown"
        self.avoid.add(key)
        what = "hang" if rc == "hang" else (f"signal {-rc}" if isinstance(rc, int) and rc < 0 else f"exit {rc}")
        self.crashes.append({"sig": f"crash:{key}", "problem": "crash" if rc != "hang" else "hang",
                             "detail": f"worker died ({what}) in the last call below; stderr tail: "
                                       f"{stderr[-800:]!r}", "repro": "\n".join(trace), "case": case})
        if self.left > 0 and (deadline is None or time.monotonic() < deadline) and self.starts < 50:
            self.start(deadline)
            return True
        self.proc = None
        return False


def _replay_corpus(tmp, base_args, hang_s):
    """Runs the saved crash cases first, each in a worker that may die."""
    try:
        saved = json.load(open(CORPUS))
    except (OSError, ValueError):
        return 0, [], []
    if not saved:
        return 0, [], []
    path = os.path.join(tmp, "corpus.json")
    json.dump([s["case"] for s in saved], open(path, "w"))
    start, tried, findings, crashes = 0, 0, [], []
    while start < len(saved):
        status, results = os.path.join(tmp, f"r{start}.status"), os.path.join(tmp, f"r{start}.jsonl")
        p = subprocess.run([sys.executable, WORKER, "--replay", path, "--start", str(start), "--status", status,
                            "--results", results, *base_args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, timeout=hang_s * (len(saved) - start) + 60)
        res = _read_results(results)
        findings += [dict(r["finding"], case=r.get("case")) for r in res if "finding" in r]
        if p.returncode == 0:
            tried += len(saved) - start
            break
        n, case, trace = _read_status(status)
        from worker import crash_key  # noqa: E402

        crashes.append({"sig": f"crash:{crash_key(case)}", "problem": "crash", "replayed": True,
                        "detail": f"worker died (rc {p.returncode}) replaying a saved crash; stderr tail: "
                                  f"{p.stderr[-800:]!r}", "repro": "\n".join(trace), "case": case})
        tried += n - start + 1
        start = n + 1
    return tried, findings, crashes


def _save_crashes(crashes):
    try:
        saved = json.load(open(CORPUS))
    except (OSError, ValueError):
        saved = []
    have = {s["sig"] for s in saved}
    new = [{"sig": c["sig"], "case": c["case"]} for c in crashes if c.get("case") and c["sig"] not in have]
    if new and os.environ.get("LC_FUZZ_SAVE_CRASHES", "1") != "0":
        with open(CORPUS, "w") as f:
            json.dump(saved + new, f, indent=1, sort_keys=True)
            f.write("\n")


def run(examples=None, seconds=None, gpu=False, workers=None, seed=None, report=None, verbose=True):
    """Runs the fuzz suite; returns the summary dict."""
    sys.path.insert(0, HERE)
    if examples is None:
        examples = _env_int("LC_FUZZ_GPU_EXAMPLES" if gpu else "LC_FUZZ_EXAMPLES",
                            DEFAULT_GPU_EXAMPLES if gpu else DEFAULT_EXAMPLES)
    seconds = _env_float("LC_FUZZ_SECONDS", 0) if seconds is None else seconds
    workers = workers or _env_int("LC_FUZZ_WORKERS", min(4, os.cpu_count() or 1))
    seed = seed if seed is not None else _env_int("LC_FUZZ_SEED", random.SystemRandom().randrange(2**31))
    report = report or os.environ.get("LC_FUZZ_REPORT") or None
    hang_s = _env_float("LC_FUZZ_HANG_S", 120)
    db = os.environ.get("LC_FUZZ_DB", os.path.join(HERE, ".hypothesis-db"))
    base = []
    if db and db != "none":
        base += ["--db", db]
    sanitized = os.environ.get("LC_SANITIZED") == "1"  # scripts/sanitize.sh
    if sanitized and "LC_FUZZ_EXAMPLES" not in os.environ and not gpu:
        examples = min(examples, 1000)  # every case is 2-10x slower under ASan
    if gpu:
        base += ["--gpu"]
    else:
        # ASan reserves terabytes of shadow address space: no address-space limit under it
        # (impossible allocations fail through allocator_may_return_null instead).
        base += ["--mem-gb", "0" if sanitized else str(_env_float("LC_FUZZ_MEM_GB", 8))]
    t0 = time.monotonic()
    deadline = t0 + seconds if seconds > 0 else None
    with tempfile.TemporaryDirectory(prefix="lc-fuzz-") as tmp:
        r_tried, r_findings, r_crashes = _replay_corpus(tmp, base, hang_s) if not gpu else (0, [], [])
        workers = max(1, min(workers, examples))
        per = [examples // workers + (1 if i < examples % workers else 0) for i in range(workers)]
        ws = [Worker(i, per[i], seed + 1000003 * i, base, tmp, hang_s) for i in range(workers)]
        known = {f["sig"] for f in r_findings}
        for w in ws:
            w.known |= known
            w.start(deadline)
        while any(w.poll(deadline, known) for w in ws):
            time.sleep(0.2)
    tried = r_tried + sum(w.tried for w in ws)
    crashes, seen = [], set()
    for c in r_crashes + [c for w in ws for c in w.crashes]:  # each worker meets a crash once
        if c["sig"] not in seen:
            seen.add(c["sig"])
            crashes.append(c)
    findings = r_findings + [f for w in ws for f in w.findings]
    _save_crashes(crashes)
    summary = {"device": "cuda" if gpu else "cpu", "seed": seed, "examples": examples, "tried": tried,
               "crashes": len(crashes), "findings": len(findings), "seconds": round(time.monotonic() - t0, 1),
               "workers": workers, "crash_list": crashes, "finding_list": findings}
    if report:
        with open(report, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    if verbose:
        print(format_summary(summary))
    return summary


def format_summary(s, details=True):
    line = (f"lc fuzz ({s['device']}): {s['tried']} cases tried, {s['crashes']} crashes, {s['findings']} findings "
            f"in {s['seconds']} s (seed {s['seed']}, {s['workers']} workers)")
    if not details:
        return line
    out = [line]
    for f in s["crash_list"] + s["finding_list"]:
        out.append(f"\n--- {f['sig']}\n{f['problem']}: {f['detail']}\nrepro:\n{f.get('repro', '')}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--report", default=None)
    a = ap.parse_args(argv)
    s = run(a.examples, a.seconds, a.gpu, a.workers, a.seed, a.report)
    return 1 if s["crashes"] or s["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
