"""Shared machinery of the Python benchmark suites.

Every case is measured for Lightning Core (LC) and its peers in one process, in two modes that
are reported separately:

  oneshot   numpy in, numpy out: every host->device and device->host transfer is counted.
  resident  inputs already live on the device (lc.Tensor / torch tensors); one sync per call.

Timing: synchronised wall clock. Each timed call is `perf_counter_ns(); fn(); sync();
perf_counter_ns()`, where sync is lc.synchronize() / torch.cuda.synchronize() (a no-op for host
systems). Warm-up calls come first; the statistics are the median and p10/p90 of the timed calls.
A per-system time budget bounds slow systems (the row records how many calls were timed).

A peer that is missing (no torch, no GPU, an op it cannot run) never fails a run: its cell is
"n/a" and the row says why.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gc
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]

ONESHOT = "oneshot"
RESIDENT = "resident"
MODES = (ONESHOT, RESIDENT)

# Column order of the systems per mode. Names starting with "lc_" are ours; the rest are peers.
SYSTEMS = {
    ONESHOT: ["lc_auto", "lc_cuda", "torch_cuda", "torch_cuda_graph", "torch_cpu", "numpy"],
    RESIDENT: ["lc_cuda", "lc_cuda_into", "lc_cpu", "torch_cuda", "torch_cuda_graph", "torch_cpu",
               "numpy"],
}
SYSTEM_LABELS = {
    "lc_auto": "LC auto",
    "lc_cuda": "LC cuda",
    "lc_cuda_into": "LC cuda _into",
    "lc_cpu": "LC cpu",
    "torch_cuda": "torch CUDA",
    "torch_cuda_graph": "torch CUDA graph",
    "torch_cpu": "torch CPU",
    "numpy": "numpy",
}


def is_ours(system: str) -> bool:
    return system.startswith("lc_")


class Skip(Exception):
    """Raised by a system builder when the system cannot run this case here (with the reason)."""


# ---- environment -------------------------------------------------------------------------------
@dataclass
class Env:
    lc: Any = None
    torch: Any = None
    lc_cuda: bool = False
    torch_cuda: bool = False
    reasons: Dict[str, str] = field(default_factory=dict)  # why a family of systems is missing

    def lc_sync(self) -> None:
        if self.lc is not None:
            self.lc.synchronize()

    def torch_sync(self) -> None:
        if self.torch_cuda:
            self.torch.cuda.synchronize()


_ENV: Optional[Env] = None


def detect_env() -> Env:
    """Imports LC and torch if they are there and probes CUDA for each (cached)."""
    global _ENV
    if _ENV is not None:
        return _ENV
    env = Env()
    try:
        import lightning_core as lc  # noqa: WPS433

        env.lc = lc
        env.lc_cuda = bool(lc.cuda_available())
        if not env.lc_cuda:
            env.reasons["lc_cuda"] = "no usable CUDA device in LC (CUDA skipped)"
    except Exception as e:  # pragma: no cover - a benchmark without LC still runs its peers
        env.reasons["lc"] = f"lightning_core not importable ({type(e).__name__}: {e})"
        env.reasons["lc_cuda"] = env.reasons["lc"]
    try:
        import torch  # noqa: WPS433

        env.torch = torch
        env.torch_cuda = bool(torch.cuda.is_available())
        # fp32 means fp32 for the peers too (TF32 peers are opt-in, per case).
        set_torch_tf32(torch, False)
        if not env.torch_cuda:
            env.reasons["torch_cuda"] = "torch sees no CUDA device (CUDA skipped)"
    except Exception as e:
        env.reasons["torch"] = f"torch not installed ({type(e).__name__})"
        env.reasons["torch_cuda"] = env.reasons["torch"]
    _ENV = env
    return env


def _new_tf32_api(torch) -> bool:
    return hasattr(getattr(torch.backends.cuda, "matmul", None), "fp32_precision")


def torch_tf32_state(torch):
    """A snapshot of torch's TF32 switches (the fp32_precision API where torch has it, which
    torch >= 2.9 prefers; the allow_tf32 flags otherwise)."""
    be = torch.backends
    if _new_tf32_api(torch):
        return ("new", be.cuda.matmul.fp32_precision, be.cudnn.conv.fp32_precision,
                _rnn_precision(be))
    return ("old", be.cuda.matmul.allow_tf32, be.cudnn.allow_tf32)


def _rnn_precision(be):
    rnn = getattr(be.cudnn, "rnn", None)
    return getattr(rnn, "fp32_precision", None)


def restore_torch_tf32(torch, state) -> None:
    be = torch.backends
    if state[0] == "new":
        be.cuda.matmul.fp32_precision, be.cudnn.conv.fp32_precision = state[1], state[2]
        if state[3] is not None:
            be.cudnn.rnn.fp32_precision = state[3]
    else:
        be.cuda.matmul.allow_tf32, be.cudnn.allow_tf32 = state[1], state[2]


def set_torch_tf32(torch, enabled: bool) -> None:
    """TF32 on or off for every torch float32 path a peer takes: cuBLAS, cuDNN convolutions and
    cuDNN RNNs (torch >= 2.9 keeps the three apart, and cudnn.rnn defaults to "tf32": without it
    an "fp32" torch.nn.LSTM row ran on TF32 tensor cores; sessions 10-14's LSTM ratios)."""
    be = torch.backends
    try:
        if _new_tf32_api(torch):
            mode = "tf32" if enabled else "ieee"
            be.cuda.matmul.fp32_precision = mode
            be.cudnn.conv.fp32_precision = mode
            if _rnn_precision(be) is not None:
                be.cudnn.rnn.fp32_precision = mode
        else:
            be.cuda.matmul.allow_tf32 = enabled
            be.cudnn.allow_tf32 = enabled
    except Exception:  # a torch without these switches: leave its defaults
        pass


def _run(cmd: Sequence[str], timeout: float = 10.0) -> str:
    try:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                           cwd=str(REPO_ROOT))
        return r.stdout.strip() if r.returncode == 0 else ""
    except Exception:
        return ""


def context_block(settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Where and with what a result was measured: device, driver, CUDA, library versions, commit."""
    env = detect_env()
    ctx: Dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    # The GPU machine runs a copy of the working tree whose .git (if any) is stale: the caller
    # names the commit through LC_GIT_COMMIT, which wins over git.
    given = os.environ.get("LC_GIT_COMMIT")
    ctx["git_commit"] = given or _run(["git", "rev-parse", "HEAD"]) or "unknown"
    ctx["git_dirty"] = (False if given else
                        bool(_run(["git", "status", "--porcelain", "--untracked-files=no"])))
    if env.lc is not None:
        info = {}
        try:
            info = dict(env.lc.build_info())
        except Exception:
            pass
        ctx["lightning_core"] = getattr(env.lc, "__version__", info.get("version", "unknown"))
        ctx["lc_build_info"] = {str(k): str(v) for k, v in info.items()}
        ctx["lc_cuda_available"] = env.lc_cuda
    else:
        ctx["lightning_core"] = None
    if env.torch is not None:
        ctx["torch"] = env.torch.__version__
        ctx["torch_cuda_runtime"] = env.torch.version.cuda
        ctx["torch_cuda_available"] = env.torch_cuda
        if env.torch_cuda:
            ctx["device"] = env.torch.cuda.get_device_name(0)
            try:
                ctx["cudnn"] = env.torch.backends.cudnn.version()
            except Exception:
                pass
    else:
        ctx["torch"] = None
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader"])
    if smi:
        first = smi.splitlines()[0].split(",")
        ctx.setdefault("device", first[0].strip())
        if len(first) > 1:
            ctx["driver"] = first[1].strip()
        if len(first) > 2:
            ctx["gpu_memory"] = first[2].strip()
        m = _run(["nvidia-smi"])
        for line in m.splitlines():
            if "CUDA Version" in line:
                ctx["cuda_driver_api"] = line.split("CUDA Version:")[1].split()[0]
                break
    if "device" not in ctx:
        ctx["device"] = f"CPU only ({ctx['cpu']})"
    ctx["cuda_skipped"] = not (env.lc_cuda or env.torch_cuda)
    ctx["missing"] = dict(env.reasons)
    if settings:
        ctx["settings"] = settings
    return ctx


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---- timing ------------------------------------------------------------------------------------
@dataclass
class TimingConfig:
    warmup: int = 10
    iters: int = 50
    budget_s: float = 2.0    # per system and case: stop timing once this much wall time is spent
    min_iters: int = 3       # ... but never before this many timed calls
    check: bool = True       # compare each system's output with the numpy reference
    # Idle gap before each system is measured: the previous system's CPU threads (OpenMP/MKL
    # workers of torch CPU, OpenBLAS, our pool) spin for a while after their last call and would
    # otherwise steal cores from whichever system runs next (its host copies, its Python thread).
    settle_s: float = 0.03
    # ... and before each CPU-side system (numpy, LC cpu, torch CPU): OpenBLAS workers busy-wait
    # ~0.1 s after a threaded call (2^28 cycles), which 30 ms did not cover.
    cpu_settle_s: float = 0.12
    warm_min_s: float = 0.05  # warm-up lasts at least this long (GPU clock / PCIe link ramp-up)


def _noop() -> None:
    return None


def measure(fn: Callable[[], Any], sync: Callable[[], None], cfg: TimingConfig) -> Dict[str, Any]:
    """Warm-up, then timed calls (each followed by `sync`). Returns ms statistics and the first
    warm-up result (for the correctness check)."""
    if cfg.settle_s > 0:
        time.sleep(cfg.settle_s)
    first = warm_up(fn, sync, cfg)
    samples: List[int] = []
    t_loop = time.perf_counter()
    pc = time.perf_counter_ns
    while len(samples) < cfg.iters:
        t0 = pc()
        fn()
        sync()
        samples.append(pc() - t0)
        if len(samples) >= cfg.min_iters and time.perf_counter() - t_loop > cfg.budget_s:
            break
    out = _stats(samples)
    out["first"] = first
    return out


def measure_cpu_rounds(contenders: Sequence["Contender"], cfg: TimingConfig,
                       rounds: int = 3) -> Dict[str, Dict[str, Any]]:
    """CPU-side systems: each warmed up after an idle gap, then timed in `rounds` blocks, the
    systems taking turns (order rotated every round), every block after an idle gap of
    cfg.settle_s (the previous system's worker threads stop spinning) and one untimed call.
    Reported: the median of all of a system's samples. Why blocks: this host has short spells
    (milliseconds) in which every CPU thread runs several times slower; timed in one block, a
    system whose block fell into one reported a median 3-10x its usual (2026-11-22: a 1x3x16x16
    conv at 0.13 ms instead of 0.01 ms, a 256^3 GEMM at 0.19 ms instead of 0.04 ms, torch CPU's
    256K add at 6 ms). Split over three blocks, one bad block moves the median by a few percent
    at most. Returns per system the _stats of its samples plus "first" (its first result)."""
    firsts: Dict[str, Any] = {}
    for c in contenders:
        if cfg.settle_s > 0:
            time.sleep(cfg.settle_s)
        with c.scope():
            firsts[c.name] = warm_up(c.fn, c.sync, cfg)
    rounds = max(1, min(rounds, cfg.iters))
    per_block = max(1, -(-cfg.iters // rounds))
    order = list(contenders)
    for r in range(rounds):
        k = r % max(1, len(order))
        for c in order[k:] + order[:k]:
            if len(c.samples) >= cfg.iters or (len(c.samples) >= cfg.min_iters
                                               and c.spent_s > cfg.budget_s):
                continue
            if cfg.settle_s > 0:
                time.sleep(cfg.settle_s)
            _time_block(c, cfg, per_block, cfg.budget_s * (r + 1) / rounds, switch_call=True)
    out: Dict[str, Dict[str, Any]] = {}
    for c in contenders:
        st = _stats(c.samples)
        st["first"] = firsts[c.name]
        out[c.name] = st
    return out


def _stats(samples_ns: Sequence[int]) -> Dict[str, Any]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "min_ms": float(ms.min()),
        "n": int(ms.size),
    }


def warm_up(fn: Callable[[], Any], sync: Callable[[], None], cfg: TimingConfig) -> Any:
    """Warm-up calls; returns the first result (for the correctness check).
    At least 3 calls whatever the budget: the first call of a shape pays one-time costs
    (plan/algorithm selection, allocator growth, first touch of buffers) that must not leak into
    the timed calls of whichever system happens to run first for a case. And at least
    warm_min_s of them: after a stretch of CPU-only systems the GPU's clocks and the PCIe link
    have powered down, and the first GPU system measured would otherwise pay their ramp-up
    (seen: the first LC GPU column of a case 1.5x slower than the next one)."""
    t_start = time.perf_counter()
    first = fn()
    sync()
    i = 0
    while True:
        elapsed = time.perf_counter() - t_start
        if i >= max(cfg.warmup - 1, 2) and elapsed >= cfg.warm_min_s:
            break
        if i >= 2 and elapsed > max(cfg.budget_s * 0.25, cfg.warm_min_s):
            break
        fn()
        sync()
        i += 1
    return first


@dataclass
class Contender:
    """One system of an interleaved measurement: its call, its sync and the context it must run
    in (torch systems set inference mode and their TF32 switches), entered per block of calls."""
    name: str
    fn: Callable[[], Any]
    sync: Callable[[], None]
    scope: Callable[[], Any]
    samples: List[int] = field(default_factory=list)
    spent_s: float = 0.0


def measure_interleaved(contenders: Sequence[Contender], cfg: TimingConfig,
                        rounds: int = 6) -> Dict[str, Dict[str, Any]]:
    """Times already warmed-up systems round-robin: `rounds` rounds, each a short block of calls
    per system, the order rotated every round. Whatever drifts during a case (GPU clocks and PCIe
    link power states, other processes, the CPU threads a previous system left spinning) then
    lands on every system alike instead of on whichever one happened to be timed first. Meant for
    GPU-side systems: CPU-heavy ones leave worker threads spinning that would tax the next block
    (harness.run_case times those with measure_cpu_rounds instead).
    Each block starts with one untimed call (the switch from the previous system: its spinning
    worker threads, cold caches) unless a call takes long enough (> 5 ms) for that not to matter.
    Per system: at most cfg.iters timed calls and about cfg.budget_s of timed wall time, never
    fewer than cfg.min_iters."""
    rounds = max(1, min(rounds, cfg.iters))
    per_block = max(1, -(-cfg.iters // rounds))
    for r in range(rounds * 4):  # extra rounds only for systems still short of min_iters
        live = [c for c in contenders
                if len(c.samples) < cfg.iters
                and (r < rounds or len(c.samples) < cfg.min_iters)
                and not (len(c.samples) >= cfg.min_iters and c.spent_s > cfg.budget_s)]
        if not live:
            break
        k = r % len(live)
        for c in live[k:] + live[:k]:
            slow = bool(c.samples) and np.median(c.samples) > 5e6
            _time_block(c, cfg, per_block, cfg.budget_s / rounds * (r + 1), switch_call=not slow)
    return {c.name: _stats(c.samples) for c in contenders}


def _time_block(c: Contender, cfg: TimingConfig, per_block: int, spend_until_s: float,
                switch_call: bool) -> None:
    """One block of a contender's calls, inside its scope: an untimed call first when
    switch_call (the switch from the previous system: its spinning threads, cold caches), then
    up to per_block timed calls. Stops at cfg.iters samples, or once the contender's timed wall
    time in all blocks passes spend_until_s and it has cfg.min_iters samples."""
    pc = time.perf_counter_ns
    with c.scope():
        if switch_call:
            c.fn()
            c.sync()
        t_block = time.perf_counter()
        for _ in range(per_block):
            t0 = pc()
            c.fn()
            c.sync()
            c.samples.append(pc() - t0)
            if len(c.samples) >= cfg.iters:
                break
            if (len(c.samples) >= cfg.min_iters
                    and c.spent_s + time.perf_counter() - t_block > spend_until_s):
                break
        c.spent_s += time.perf_counter() - t_block


def to_numpy(x: Any) -> np.ndarray:
    """Host copy of an LC tensor, torch tensor or numpy array (for the correctness check)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # torch (bfloat16 as float32: numpy has no native bfloat16)
        t = x.detach().cpu()
        return (t.float() if "bfloat16" in str(t.dtype) else t).numpy()
    if hasattr(x, "numpy"):  # lc.Tensor
        return np.asarray(x.numpy())
    return np.asarray(x)


def rel_error(y: Any, ref: np.ndarray) -> float:
    y = to_numpy(y).astype(np.float64, copy=False)
    if y.shape != ref.shape:
        return float("inf")
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    return float(np.max(np.abs(y - ref)) / max(scale, 1e-12)) if ref.size else 0.0


# ---- results -----------------------------------------------------------------------------------
def summarize_row(row: Dict[str, Any], systems: Sequence[str]) -> None:
    """Adds best_lc / best_peer / ours_vs_best_peer / winner to a row from its per-system cells.
    ours_vs_best_peer = best peer ms / best LC ms: > 1 means LC is faster."""
    cells = row["systems"]
    ok = {s: c["ms"] for s, c in cells.items() if c.get("status") == "ok" and c.get("ms") is not None
          and s in systems}
    ours = {s: v for s, v in ok.items() if is_ours(s)}
    peers = {s: v for s, v in ok.items() if not is_ours(s)}
    bl = min(ours, key=ours.get) if ours else None
    bp = min(peers, key=peers.get) if peers else None
    row["best_lc"] = bl
    row["best_lc_ms"] = ours.get(bl) if bl else None
    row["best_peer"] = bp
    row["best_peer_ms"] = peers.get(bp) if bp else None
    row["ours_vs_best_peer"] = (peers[bp] / ours[bl]) if (bl and bp and ours[bl] > 0) else None
    row["winner"] = min(ok, key=ok.get) if ok else None


def fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if v >= 0.01 else f"{v:.6f}"


def fmt_ratio(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


CSV_FIXED = ["suite", "mode", "family", "case", "impl", "precision"]
CSV_TAIL = ["best_lc", "best_lc_ms", "best_peer", "best_peer_ms", "ours_vs_best_peer", "winner",
            "notes"]
CSV_OPTIONAL = ["device", "py_into_over_cpp", "lc_auto_placed"]  # written when some row has them


def write_results(out_dir: Path, suite: str, rows: List[Dict[str, Any]], ctx: Dict[str, Any]) -> Dict[str, Path]:
    """<out_dir>/<suite>.json (context + full rows) and <suite>.csv (one line per case and mode)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath = out_dir / f"{suite}.json"
    cpath = out_dir / f"{suite}.csv"
    with open(jpath, "w") as f:
        json.dump({"suite": suite, "context": ctx, "rows": rows}, f, indent=1, default=_json_default)
    systems: List[str] = []
    for r in rows:
        for s in r["systems"]:
            if s not in systems:
                systems.append(s)
    order = {s: i for i, s in enumerate(SYSTEMS[ONESHOT] + SYSTEMS[RESIDENT])}
    systems.sort(key=lambda s: order.get(s, len(order)))
    optional = [k for k in CSV_OPTIONAL if any(k in r for r in rows)]
    header = (CSV_FIXED + [f"{s}_ms" for s in systems] + [f"{s}_status" for s in systems] + optional
              + CSV_TAIL)
    with open(cpath, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            line = [r.get(k, "") for k in CSV_FIXED]
            line += [_csv_ms(r["systems"].get(s)) for s in systems]
            line += [(r["systems"].get(s) or {}).get("status", "") for s in systems]
            line += [_csv_val(r.get(k)) for k in optional + CSV_TAIL[:-1]]
            line.append("; ".join(r.get("notes", [])))
            w.writerow(line)
    return {"json": jpath, "csv": cpath}


def _csv_val(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _csv_ms(cell: Optional[Dict[str, Any]]) -> str:
    if not cell or cell.get("status") != "ok":
        return "n/a"
    return f"{cell['ms']:.6f}"


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


# ---- progress ----------------------------------------------------------------------------------
class Progress:
    """tqdm on a terminal when importable, else one line per step on stderr."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.total, self.desc, self.n, self.enabled = total, desc, 0, enabled
        self._bar = None
        if enabled and sys.stderr.isatty():  # a log file gets one plain line per step instead
            try:
                from tqdm import tqdm  # noqa: WPS433

                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=True,
                                 dynamic_ncols=True)
            except Exception:
                self._bar = None
        self._t0 = time.perf_counter()

    def step(self, label: str = "") -> None:
        self.n += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(label[:60], refresh=False)
            self._bar.update(1)
        else:
            dt = time.perf_counter() - self._t0
            print(f"[{self.desc}] {self.n}/{self.total} {dt:6.1f}s {label}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def free_memory(env: Env) -> None:
    gc.collect()
    if env.torch_cuda:
        env.torch.cuda.empty_cache()
