"""The case runner: turns one case description into per-system measurements for each mode.

A case says how to make its inputs (numpy, seeded) and how each framework computes the result:
  numpy_fn(ins)            the numpy peer, and the reference the other systems are checked against
  lc_fn(lc, ins, device)   LC; `ins` values are numpy arrays (oneshot) or lc.Tensor (resident)
  lc_into(lc, ins, out, device)   optional `_into` form (resident mode, preallocated output)
  torch_fn(torch, ins)     torch; `ins` values are torch tensors on the case's device
The runner builds the systems of SYSTEMS[mode] from these, skipping (with a reason) what cannot
run here, times each with common.measure and checks its first result against the reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from common import (ONESHOT, SYSTEMS, Contender, Env, Progress, Skip, TimingConfig, _noop, free_memory,
                    measure, measure_cpu_rounds, measure_interleaved, rel_error, restore_torch_tf32,
                    set_torch_tf32,
                    summarize_row, torch_tf32_state, warm_up)

# CPU-side systems: timed one at a time after the interleaved GPU-side group (see run_case).
CPU_SYSTEMS = ("lc_cpu", "numpy", "torch_cpu")

Inputs = Dict[str, np.ndarray]


@dataclass
class Case:
    suite: str
    family: str
    name: str
    make_inputs: Callable[[np.random.Generator], Inputs]
    numpy_fn: Optional[Callable[[Inputs], np.ndarray]]
    lc_fn: Optional[Callable[[Any, Dict[str, Any], str], Any]]
    torch_fn: Optional[Callable[[Any, Dict[str, Any]], Any]]
    lc_into: Optional[Callable[[Any, Dict[str, Any], Any, str], Any]] = None
    out_shape: Optional[Tuple[int, ...]] = None
    impl: str = "op"
    precision: str = "fp32"
    tol: float = 1e-3
    numpy_peer: bool = True          # False: numpy computes the reference but is no peer row
    numpy_note: str = ""            # why numpy is not a peer (when numpy_peer is False)
    graph_ok: bool = True            # torch CUDA-graph capture applies
    notes: List[str] = field(default_factory=list)
    params: Dict[str, Any] = field(default_factory=dict)
    # torch peer precision: "fp32" (default) or "tf32" (allow_tf32 during the call)
    torch_precision: str = "fp32"
    # storage dtype of the result (inputs come from make_inputs in their own dtype, e.g.
    # ml_dtypes.bfloat16 arrays): sizes the preallocated `_into` output
    dtype: str = "float32"
    # False: the CPU systems (lc_cpu, numpy, torch_cpu) are skipped (a 4096^3 bfloat16 GEMM takes
    # seconds per call there and says nothing about the GPU comparison the case is for)
    cpu_peers: bool = True
    # The modes ("oneshot", "resident") in which the suite measures the case in a process of its
    # own (suite_main.run_suite): a case whose systems can end the process (a device-side assert
    # poisons the CUDA context) then costs only its own row, reported as an error, and cannot
    # take the rest of the suite along.
    isolate: Tuple[str, ...] = ()


@contextlib.contextmanager
def torch_scope(env: Env, prec: str):
    """Around a torch system's build and measurement: inference mode (no autograd bookkeeping)
    and the TF32 switches set for the peer's precision. Set once per system, not per call, so the
    timed calls carry no context-manager cost."""
    if env.torch is None:
        yield
        return
    old = torch_tf32_state(env.torch)
    set_torch_tf32(env.torch, prec == "tf32")
    try:
        with env.torch.inference_mode():
            yield
    finally:
        restore_torch_tf32(env.torch, old)


def _lc_dtype(v: np.ndarray) -> str:
    """lc's name for a numpy array's dtype (ml_dtypes.bfloat16 -> "bfloat16"): lc.Tensor(v)
    alone stores float32, so resident inputs name their dtype."""
    return "bfloat16" if v.dtype.name == "bfloat16" else v.dtype.name


def _torch_in(torch: Any, v: np.ndarray) -> Any:
    """numpy -> torch (host), bfloat16 included (ml_dtypes arrays, which torch cannot wrap:
    the bits are reinterpreted)."""
    if v.dtype.name == "bfloat16":
        return torch.from_numpy(v.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(v)


def _torch_host(t: Any) -> np.ndarray:
    """torch -> numpy on the host (bfloat16 as float32: numpy has no native bfloat16)."""
    t = t.cpu()
    return (t.float() if "bfloat16" in str(t.dtype) else t).numpy()


def _lc_host(x: Any) -> np.ndarray:
    """The oneshot contract: the result ends in host memory as numpy."""
    if isinstance(x, np.ndarray):
        return x
    return np.asarray(x.numpy())


# ---- system builders: each returns (fn, sync) or raises Skip ---------------------------------
def build_system(system: str, mode: str, case: Case, env: Env, ins: Inputs):
    lc, torch = env.lc, env.torch
    if not case.cpu_peers and (system in CPU_SYSTEMS or (system == "lc_auto" and not env.lc_cuda)):
        raise Skip("GPU-only case: the CPU systems are not timed")
    if system.startswith("lc_"):
        if lc is None or case.lc_fn is None:
            raise Skip(env.reasons.get("lc", "no LC implementation for this case"))
        if system == "lc_auto":
            return (lambda: _lc_host(case.lc_fn(lc, ins, "auto"))), env.lc_sync
        if system == "lc_cpu":
            cpu = {k: lc.Tensor(v, device="cpu", dtype=_lc_dtype(v)) for k, v in ins.items()}
            return (lambda: case.lc_fn(lc, cpu, "cpu")), _noop
        if not env.lc_cuda:
            raise Skip(env.reasons["lc_cuda"])
        if system == "lc_cuda" and mode == ONESHOT:
            return (lambda: _lc_host(case.lc_fn(lc, ins, "cuda"))), env.lc_sync
        dev = {k: lc.Tensor(v, device="cuda", dtype=_lc_dtype(v)) for k, v in ins.items()}
        if system == "lc_cuda":
            return (lambda: case.lc_fn(lc, dev, "cuda")), env.lc_sync
        if system == "lc_cuda_into":
            if case.lc_into is None or case.out_shape is None:
                raise Skip("no _into form for this case")
            out = lc.Tensor.empty(list(case.out_shape), dtype=case.dtype, device="cuda")

            def into():
                case.lc_into(lc, dev, out, "cuda")
                return out

            return into, env.lc_sync
        raise Skip(f"unknown system {system}")
    if system == "numpy":
        if case.numpy_fn is None or not case.numpy_peer:
            raise Skip(case.numpy_note or "no numpy implementation")
        return (lambda: case.numpy_fn(ins)), _noop
    # torch systems
    if torch is None or case.torch_fn is None:
        raise Skip(env.reasons.get("torch", "no torch implementation for this case"))
    if system == "torch_cpu":
        tin = {k: _torch_in(torch, v) for k, v in ins.items()}

        return (lambda: _torch_host(case.torch_fn(torch, tin))), _noop
    if not env.torch_cuda:
        raise Skip(env.reasons["torch_cuda"])
    if system == "torch_cuda":
        if mode == ONESHOT:
            def t1():
                tin = {k: _torch_in(torch, v).cuda() for k, v in ins.items()}
                return _torch_host(case.torch_fn(torch, tin))

            return t1, env.torch_sync
        tin = {k: _torch_in(torch, v).cuda() for k, v in ins.items()}

        return (lambda: case.torch_fn(torch, tin)), env.torch_sync
    if system == "torch_cuda_graph":
        if not case.graph_ok:
            raise Skip("op does not fit a CUDA graph")
        static = {k: _torch_in(torch, v).cuda() for k, v in ins.items()}
        # Warm up on a side stream (as torch documents), then capture one call.
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                case.torch_fn(torch, static)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(g):
                static_out = case.torch_fn(torch, static)
        except Exception as e:  # capture-unsafe op: say so
            raise Skip(f"CUDA graph capture failed ({type(e).__name__}: {str(e)[:80]})")
        if mode == ONESHOT:
            host = {k: _torch_in(torch, v) for k, v in ins.items()}

            def g1():
                for k, v in host.items():
                    static[k].copy_(v)
                g.replay()
                return _torch_host(static_out)

            return g1, env.torch_sync

        def g2():
            g.replay()
            return static_out

        return g2, env.torch_sync
    raise Skip(f"unknown system {system}")


def run_case(case: Case, mode: str, env: Env, cfg: TimingConfig,
             systems: Optional[Sequence[str]] = None, seed: int = 0,
             reference: Optional[np.ndarray] = None,
             cached: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Measures every system of `mode` for `case`; returns one result row.
    `cached` holds cells measured already (the DL sweep reuses peer cells across LC modes)."""
    rng = np.random.default_rng(seed)
    ins = case.make_inputs(rng)
    ref = reference
    if ref is None and case.numpy_fn is not None and cfg.check:
        ref = np.asarray(case.numpy_fn(ins), dtype=np.float64)
    systems = list(systems or SYSTEMS[mode])
    cells: Dict[str, Dict[str, Any]] = {}
    notes: List[str] = list(case.notes)

    def scope_of(s: str):
        return ((lambda: torch_scope(env, case.torch_precision)) if s.startswith("torch")
                else contextlib.nullcontext)

    def check(s: str, cell: Dict[str, Any], first: Any) -> None:
        if ref is None:
            return
        err = rel_error(first, ref)
        cell["rel_err"] = err
        if not err <= case.tol:
            cell["check"] = "MISMATCH"
            notes.append(f"{s}: result differs from the numpy reference (rel err {err:.2e})")
        else:
            cell["check"] = "ok"

    def failed(e: Exception) -> Dict[str, Any]:
        if isinstance(e, Skip):
            return {"status": f"skipped: {e}", "ms": None}
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        return {"status": f"error: {type(e).__name__}: {msg}", "ms": None}

    # Two groups. GPU-side systems (LC cuda/auto-on-GPU, torch CUDA eager/graph) are built and
    # warmed up one by one, then timed round-robin (common.measure_interleaved): none is favoured
    # by its place in the order (the first GPU system timed after a stretch of CPU work used to
    # pay the GPU's clock / PCIe ramp-up). CPU-side systems (numpy, LC cpu, LC auto when it placed
    # every op on the CPU, torch CPU) are timed after them (common.measure_cpu_rounds): three
    # blocks each, taking turns, every block after an idle gap (TimingConfig.cpu_settle_s): their
    # worker threads (OpenBLAS, OpenMP, LC's pool) keep spinning after the last call and would
    # tax whichever system ran next in a round-robin without one.
    contenders: List[Contender] = []
    cpu_side: List[Tuple[str, Any]] = []  # (system, prebuilt (fn, sync) or None)
    for s in systems:
        if cached is not None and s in cached:
            cells[s] = cached[s]
            continue
        if s in CPU_SYSTEMS:
            cpu_side.append((s, None))
            continue
        try:
            if cfg.settle_s > 0:
                time.sleep(cfg.settle_s)
            with scope_of(s)():
                fn, sync = build_system(s, mode, case, env, ins)
                first = warm_up(fn, sync, cfg)
            cell: Dict[str, Any] = {"status": "ok", "ms": None}
            check(s, cell, first)
            del first
            cells[s] = cell
            if s == "lc_auto":
                cell["placed"] = _placement_of(env, fn)
                if ":cpu" in cell["placed"] and ":cuda" not in cell["placed"]:
                    cpu_side.insert(0, (s, (fn, sync)))
                    continue
            contenders.append(Contender(s, fn, sync, scope_of(s)))
        except Exception as e:  # a failing system is reported, never fatal
            cells[s] = failed(e)
    if contenders:
        try:
            for name, r in measure_interleaved(contenders, cfg).items():
                cells[name].update(r)
        except Exception as e:
            for c in contenders:
                cells[c.name] = failed(e)
    contenders.clear()
    free_memory(env)
    cpu_cfg = dataclasses.replace(cfg, settle_s=max(cfg.settle_s, cfg.cpu_settle_s))
    cpu_contenders: List[Contender] = []
    prebuilt: Dict[str, bool] = {}
    for s, built in cpu_side:
        try:
            with scope_of(s)():
                fn, sync = built if built is not None else build_system(s, mode, case, env, ins)
            cpu_contenders.append(Contender(s, fn, sync, scope_of(s)))
            prebuilt[s] = built is not None
        except Exception as e:
            cells[s] = failed(e)
    results: Dict[str, Dict[str, Any]] = {}
    try:
        results = measure_cpu_rounds(cpu_contenders, cpu_cfg)
    except Exception:  # one failing system must not cost the others their numbers
        for c in cpu_contenders:
            try:
                with c.scope():
                    results[c.name] = measure(c.fn, c.sync, cpu_cfg)
            except Exception as e:
                cells[c.name] = failed(e)
    for c in cpu_contenders:
        if c.name not in results:
            continue
        r = results[c.name]
        first = r.pop("first")
        cell = cells.get(c.name) or {"status": "ok", "ms": None}
        cell.update(r)
        if not prebuilt[c.name]:
            check(c.name, cell, first)
        cells[c.name] = cell
        del first
    del results
    cpu_contenders.clear()
    free_memory(env)
    cells = {s: cells[s] for s in systems if s in cells}
    # one note per distinct skip reason, so a reader sees why a column is n/a
    reasons: Dict[str, List[str]] = {}
    for s, c in cells.items():
        if c["status"] != "ok":
            reasons.setdefault(c["status"], []).append(s)
    for why, who in reasons.items():
        notes.append(f"{', '.join(who)}: {why}")
    row = {
        "suite": case.suite, "mode": mode, "family": case.family, "case": case.name,
        "impl": case.impl, "precision": case.precision, "params": case.params,
        "systems": cells, "notes": notes,
    }
    placed = (cells.get("lc_auto") or {}).get("placed")
    if placed:
        row["lc_auto_placed"] = placed
    summarize_row(row, systems)
    return row


def failed_row(case: Case, mode: str, status: str, note: str) -> Dict[str, Any]:
    """The row of a case none of whose systems could be measured (every cell `status`)."""
    systems = list(SYSTEMS[mode])
    row = {
        "suite": case.suite, "mode": mode, "family": case.family, "case": case.name,
        "impl": case.impl, "precision": case.precision, "params": case.params,
        "systems": {s: {"status": status, "ms": None} for s in systems},
        "notes": list(case.notes) + [note],
    }
    summarize_row(row, systems)
    return row


def _placement_of(env: Env, fn: Callable[[], Any]) -> str:
    """Where LC's "auto" ran each op of one call, from the runtime trace: "matmul2d:cuda" or
    "conv2d_nchw:cpu+attention2d:cpu". Empty when the trace is unavailable."""
    lc = env.lc
    try:
        was = lc.runtime_trace_enabled()
        lc.runtime_trace_clear()
        lc.runtime_trace_enable(True)
        try:
            fn()
            env.lc_sync()
        finally:
            lc.runtime_trace_enable(was)
        seen: List[str] = []
        for e in lc.runtime_trace_events():
            if e.get("kind") != "op":
                continue
            tag = f"{e['op']}:{e['device']}"
            if tag not in seen:
                seen.append(tag)
        lc.runtime_trace_clear()
        return "+".join(seen)
    except Exception:
        return ""


def run_cases(cases: Sequence[Case], modes: Sequence[str], env: Env, cfg: TimingConfig,
              desc: str, progress: bool = True,
              on_row: Optional[Callable[[List[Dict[str, Any]]], None]] = None,
              isolated: Optional[Callable[[Case, str], Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Every case in every mode; on_row(rows so far) after each (suite_main saves a partial
    CSV with it, so a run cut short by a time limit keeps what it measured). A case whose
    `isolate` names the mode goes to `isolated(case, mode)` when given (a process of its own)."""
    rows: List[Dict[str, Any]] = []
    bar = Progress(len(cases) * len(modes), desc, enabled=progress)
    for mode in modes:
        for c in cases:
            if mode in c.isolate and isolated is not None:
                rows.append(isolated(c, mode))
            else:
                rows.append(run_case(c, mode, env, cfg))
            if on_row is not None:
                on_row(rows)
            bar.step(f"{mode} {c.family} {c.name}")
    bar.close()
    return rows


# ---- shared numpy / torch building blocks --------------------------------------------------------
def np_gelu_tanh(x: np.ndarray) -> np.ndarray:
    c = np.float32(np.sqrt(2.0 / np.pi))
    return (0.5 * x * (1.0 + np.tanh(c * (x + np.float32(0.044715) * x * x * x)))).astype(np.float32)


def np_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = False) -> np.ndarray:
    s = (q @ k.T) * np.float32(1.0 / np.sqrt(q.shape[1]))
    if causal:
        s = np.where(np.tril(np.ones(s.shape, dtype=bool)), s, np.float32(-np.inf))
    s = s - s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return (s @ v).astype(np.float32)


def np_conv2d_nchw(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], pad: int) -> np.ndarray:
    """im2col + one GEMM (stride 1)."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))  # n,c,oh,ow,kh,kw
    oh, ow = win.shape[2], win.shape[3]
    cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, c * kh * kw)
    y = cols @ w.reshape(oc, -1).T
    if b is not None:
        y += b
    return np.ascontiguousarray(y.reshape(n, oh, ow, oc).transpose(0, 3, 1, 2))


def np_layernorm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(axis=1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=1, keepdims=True)
    return ((x - mu) / np.sqrt(var + np.float32(eps)) * g + b).astype(np.float32)


def torch_attention(torch, q, k, v, causal: bool = False):
    """torch's best single-head path: scaled_dot_product_attention on [1, seq, d]."""
    F = torch.nn.functional
    return F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                          is_causal=causal).squeeze(0)


def randn(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))
