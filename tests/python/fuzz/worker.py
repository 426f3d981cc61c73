"""One fuzz worker process: runs hypothesis over cases.any_case and reports as JSON lines.

    python tests/python/fuzz/worker.py --examples N [--seconds S] [--seed X] [--gpu]
        --status FILE --results FILE [--db DIR] [--avoid KEY ...] [--known SIG ...]
    python tests/python/fuzz/worker.py --replay CASES.json --start I --status FILE --results FILE

It runs in its own process (runner.py starts it) so that a segfault kills only the worker: before
each case it writes the case (JSON, first line) to --status and then every source line of the
calls as they are made, so the parent can report the exact reproducing call of a crash.
Results: one JSON object per line in --results: {"finding": {...}} as found (a new signature
stops hypothesis, which shrinks it to a minimal case and saves it in the example database),
and {"done": true, "tried": N} at the end. Cases whose crash key is in --avoid (they crashed a
worker earlier in this run) are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def crash_key(case) -> str:
    """Crash keys: which cases to skip after one of them crashed a worker."""
    fam = case["family"]
    if fam == "op":
        return f"op:{case['op']}:{case['form']}:{case['fault']}"
    if fam == "session":
        return f"session:{case['kind']}"
    if fam == "graph":
        return f"graph:{case['fault']}"
    return f"tensor:{case['action']}"


class Status(list):
    """The trace list of the running case, mirrored to a file as it grows."""

    def __init__(self, path):
        super().__init__()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def begin(self, case, tried):
        self.clear()
        os.ftruncate(self.fd, 0)
        os.write(self.fd, (json.dumps({"tried": tried, "case": case}) + "\n").encode())

    def append(self, line):
        super().append(line)
        os.write(self.fd, (line + "\n").encode())

    def extend(self, lines):
        for line in lines:
            self.append(line)


class Reported(Exception):
    def __init__(self, finding):
        super().__init__(finding["sig"])
        self.finding = finding


def find_reported(e):
    if isinstance(e, Reported):
        return e
    for sub in getattr(e, "exceptions", ()) or ():
        r = find_reported(sub)
        if r:
            return r
    for sub in (e.__cause__, e.__context__):
        if sub is not None and sub is not e:
            r = find_reported(sub)
            if r:
                return r
    return None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--status", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--db", default="")
    ap.add_argument("--avoid", nargs="*", default=[])
    ap.add_argument("--known", nargs="*", default=[])
    ap.add_argument("--replay", default="")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--mem-gb", type=float, default=0)
    a = ap.parse_args(argv)

    if a.mem_gb > 0:  # a case that slips past the size checks fails with MemoryError, not the machine
        import resource

        lim = int(a.mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    import cases  # noqa: E402  (imports lightning_core after the limit is set)

    status = Status(a.status)
    results = open(a.results, "a", buffering=1)
    tried = 0

    def emit(obj):
        results.write(json.dumps(obj) + "\n")

    if a.replay:
        saved = json.load(open(a.replay))
        for i in range(a.start, len(saved)):
            status.begin(saved[i], i)
            f = cases.run_case(saved[i], status)
            tried += 1
            if f:
                f["replayed"] = True
                emit({"finding": f, "case": saved[i]})
        emit({"done": True, "tried": tried})
        return 0

    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    known = set(a.known)
    avoid = set(a.avoid)
    class FailuresOnly(DirectoryBasedExampleDatabase):
        """Keeps only the shrunk failures (hypothesis's primary key): the secondary and pareto
        corpora of every shrink would grow the committed database by hundreds of files a run."""

        @staticmethod
        def _kept(key):
            return not (key.endswith(b".secondary") or key.endswith(b".pareto"))

        def save(self, key, value):
            if self._kept(key):
                super().save(key, value)

        def move(self, src, dest, value):
            if self._kept(dest):
                super().move(src, dest, value)
            else:
                self.delete(src, value)

    db = FailuresOnly(a.db) if a.db else None
    deadline = time.monotonic() + a.seconds if a.seconds > 0 else float("inf")
    rnd = random.Random(a.seed)

    def fuzz_case(case):
        # The hypothesis test body. Its source is part of the example database's key: keep it
        # unchanged, or the saved failures are no longer replayed.
        nonlocal tried
        if crash_key(case) in avoid:
            return
        tried += 1
        status.begin(case, tried)
        f = cases.run_case(case, status)
        if f is not None and f["sig"] not in known:
            f["case"] = case
            raise Reported(f)

    strategy = cases.any_case(gpu=a.gpu)
    chunk = 200
    rounds = 0
    while tried < a.examples and time.monotonic() < deadline and rounds < 10 * (a.examples // chunk + 10):
        rounds += 1
        n = max(1, min(chunk, a.examples - tried))
        test = settings(max_examples=n, database=db, deadline=None, verbosity=Verbosity.quiet,
                        suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                        phases=[Phase.reuse, Phase.generate, Phase.shrink] if rounds == 1 else
                        [Phase.generate, Phase.shrink])(given(strategy)(fuzz_case))
        random.seed(rnd.getrandbits(64))  # hypothesis draws its seed from here (@seed would turn
        try:                               # the example database off)
            test()
        except Exception as e:  # noqa: BLE001
            r = find_reported(e)
            if r is None:
                emit({"finding": {"sig": "harness:hypothesis", "problem": "harness-error",
                                  "detail": f"{type(e).__name__}: {e}"[:2000], "repro": ""}})
                break
            known.add(r.finding["sig"])
            emit({"finding": r.finding})
    emit({"done": True, "tried": tried})
    return 0


if __name__ == "__main__":
    sys.exit(main())
