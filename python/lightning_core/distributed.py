"""Collectives across GPUs and processes: ``lc.distributed`` (NCCL).

Launch one process per GPU (``torchrun --nproc-per-node=N script.py``), call :func:`init` in
each, then the collectives on ``lc.Tensor`` objects of any dtype (float32, float64, float16,
bfloat16, int32, int64)::

    import lightning_core as lc
    lc.distributed.init()                       # reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*
    t = lc.Tensor(x, device="cuda")             # on cuda:LOCAL_RANK (init made it current)
    lc.distributed.all_reduce(t, op="sum")      # in place, on every rank
    lc.distributed.destroy()

:func:`init_all` instead drives every local GPU from one process (``ncclCommInitAll``); the
collectives then take one tensor per GPU. NCCL is loaded on first use (the system's
``libnccl.so.2`` or the ``nvidia-nccl-cu13`` wheel): importing lightning_core never needs it.

Ordering and waiting: a collective is enqueued on the tensor's device's current stream (the
thread's ``lc.Stream``), after the work queued there before it. With ``async_op=False`` (the
default) the call then waits on the host until it finished; with ``async_op=True`` it returns a
:class:`Work` at once (``wait()`` / ``is_completed()``). Every wait polls NCCL's asynchronous
error and has a timeout (``init(timeout=)``): a dead or failing peer ends it with
``lc.BackendError`` naming the rank, and the communicator is aborted (``ncclCommAbort``)
instead of hanging. See docs/distributed.md.

World size 1 needs no socket and no GPU: CPU tensors get identity semantics (every collective
copies its input to its output), GPU tensors go through a one-rank NCCL communicator. With more
than one rank, CPU tensors raise ValueError: NCCL moves GPU memory only.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Sequence

from . import _lightning_core as _C
from ._lightning_core import BackendError, Tensor
from ._rendezvous import Config, rendezvous, resolve_config

__all__ = [
    "init", "init_all", "destroy", "is_initialized", "get_rank", "get_world_size",
    "get_local_rank", "all_reduce", "all_gather", "reduce_scatter", "broadcast", "send", "recv",
    "barrier", "Work", "nccl_info", "DEFAULT_TIMEOUT",
]

#: Seconds a rendezvous or a collective waits for the other ranks by default
#: (``LC_DISTRIBUTED_TIMEOUT`` overrides it).
DEFAULT_TIMEOUT = 300.0

_REDUCE_OPS = ("sum", "avg", "max", "min")
_INT_DTYPES = ("int32", "int64")
_DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3, "int32": 4, "int64": 5}
_OP_CODES = {"all_reduce": 1, "all_gather": 2, "reduce_scatter": 3, "broadcast": 4}
_SIG_LEN = 12  # op, dtype, ndim, up to 8 dims, extra


class _State:
    """The process's group: one rank (process mode) or all local GPUs (single-process mode)."""

    def __init__(self, mode: str, cfg: Config, device: int | None, timeout: float, debug: bool,
                 comm: Any = None, comms: list | None = None, devices: list[int] | None = None):
        self.mode = mode  # "process" | "single"
        self.cfg = cfg
        self.device = device  # process mode: the GPU of this rank (None: no GPU, world size 1)
        self.timeout = timeout
        self.debug = debug
        self.comm = comm
        self.comms = comms or []
        self.devices = devices or []


_state: _State | None = None


# ---- setup -----------------------------------------------------------------------------------

def _timeout_value(timeout: float | None) -> float:
    if timeout is None:
        raw = os.environ.get("LC_DISTRIBUTED_TIMEOUT")
        if raw is None:
            return DEFAULT_TIMEOUT
        try:
            timeout = float(raw)
        except ValueError:
            raise ValueError(f"[distributed.init] LC_DISTRIBUTED_TIMEOUT={raw!r} is not a "
                             f"number of seconds") from None
        if not timeout > 0:
            raise ValueError(f"[distributed.init] LC_DISTRIBUTED_TIMEOUT={raw!r} must be a "
                             f"positive number of seconds")
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"[distributed.init] timeout={timeout!r} must be a positive number of "
                         f"seconds")
    return float(timeout)


def _debug_value(debug: bool | None) -> bool:
    if debug is not None:
        return bool(debug)
    return os.environ.get("LC_DISTRIBUTED_DEBUG", "0").strip() not in ("", "0", "false", "no")


def init(backend: str = "nccl", *, rank: int | None = None, world_size: int | None = None,
         local_rank: int | None = None, master_addr: str | None = None,
         master_port: int | None = None, timeout: float | None = None,
         debug: bool | None = None) -> None:
    """Joins the process group: one process per GPU, launched by torchrun or by hand.

    Each argument left out is read from the variable torchrun sets: ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. Without ``RANK`` and ``WORLD_SIZE`` the
    process is rank 0 of 1. With more ranks, rank 0 creates an NCCL unique id and hands it to
    the others over a TCP rendezvous at ``MASTER_ADDR:MASTER_PORT``; then every rank creates
    its NCCL communicator on ``cuda:LOCAL_RANK`` and makes that GPU its current device. World
    size 1 opens no socket, and creates the (one-rank) NCCL communicator only when a GPU
    tensor first needs it, so it also works without a GPU.

    Parameters
    ----------
    backend : str, optional
        "nccl" (the only backend).
    rank : int, optional
        This process's rank (``RANK``).
    world_size : int, optional
        The number of processes (``WORLD_SIZE``).
    local_rank : int, optional
        The rank on this host, which GPU to use (``LOCAL_RANK``; default: the rank).
    master_addr : str, optional
        Rank 0's host name or address (``MASTER_ADDR``).
    master_port : int, optional
        The rendezvous TCP port on rank 0's host (``MASTER_PORT``).
    timeout : float, optional
        Seconds to wait for the other ranks, at the rendezvous and in every collective
        (default ``LC_DISTRIBUTED_TIMEOUT`` or 300).
    debug : bool, optional
        Check before every collective that all ranks call it with the same shape and dtype (an
        extra small all-gather; default ``LC_DISTRIBUTED_DEBUG=1``).

    Raises
    ------
    ValueError
        A bad, missing or inconsistent rank, world size, local rank, address or port (the
        message names the variable and the rank), an unknown backend, no GPU for the local
        rank, or a second init without :func:`destroy`.
    lightning_core.BackendError
        A rank missing at the rendezvous within ``timeout``, the port in use, NCCL missing
        (the message lists where it was searched) or failing."""
    global _state
    if backend != "nccl":
        raise ValueError(f"[distributed.init] backend={backend!r} is not supported; use "
                         f"\"nccl\"")
    if _state is not None:
        raise ValueError("[distributed.init] the process group is already initialised; call "
                         "lc.distributed.destroy() first")
    t = _timeout_value(timeout)
    cfg = resolve_config(rank, world_size, local_rank, master_addr, master_port)
    dbg = _debug_value(debug)
    ngpu = _C._device_count("cuda")
    if cfg.world_size == 1:
        device = cfg.local_rank if cfg.local_rank < ngpu else None
        _state = _State("process", cfg, device, t, dbg)
        return
    if ngpu == 0:
        raise BackendError(f"[distributed.init] rank {cfg.rank}: WORLD_SIZE={cfg.world_size} "
                           f"needs a GPU per rank (NCCL is GPU-only) and this process sees none")
    if cfg.local_rank >= ngpu:
        raise ValueError(f"[distributed.init] rank {cfg.rank}: LOCAL_RANK={cfg.local_rank} but "
                         f"this process sees {ngpu} GPU(s) (cuda:0..cuda:{ngpu - 1}); start at "
                         f"most {ngpu} processes per host or check CUDA_VISIBLE_DEVICES")
    lib = _C._dist_library_info(True)  # every rank, before the rendezvous: fail fast and alike
    if not lib["loaded"]:
        raise BackendError(f"[distributed.init] rank {cfg.rank}: {lib['error'] or 'no NCCL'}")
    uid = _C._dist_unique_id() if cfg.rank == 0 else None
    uid = rendezvous(cfg.rank, cfg.world_size, cfg.master_addr, cfg.master_port, t, uid)
    comm = _C._dist_init_rank(uid, cfg.world_size, cfg.rank, cfg.local_rank)
    _C._set_device(f"cuda:{cfg.local_rank}")
    _state = _State("process", cfg, cfg.local_rank, t, dbg, comm=comm)


def init_all(devices: Sequence[int | str] | None = None, *, timeout: float | None = None,
             debug: bool | None = None) -> None:
    """Single-process mode: this process drives several local GPUs (``ncclCommInitAll``).

    The collectives then take a list of tensors, one per device in ``devices`` order (rank i
    is ``devices[i]``), and run as one NCCL group; :func:`send` / :func:`recv` are not
    available in this mode.

    Parameters
    ----------
    devices : sequence of int or str, optional
        GPU indices or "cuda:N" strings, each once; default every GPU this process sees.
    timeout : float, optional
        Seconds a collective waits, as in :func:`init`.
    debug : bool, optional
        As in :func:`init`.

    Raises
    ------
    ValueError
        No GPU, a device given twice or absent, or the group already initialised.
    lightning_core.BackendError
        NCCL missing or failing."""
    global _state
    if _state is not None:
        raise ValueError("[distributed.init_all] the process group is already initialised; "
                         "call lc.distributed.destroy() first")
    t = _timeout_value(timeout)
    ngpu = _C._device_count("cuda")
    if devices is None:
        devs = list(range(ngpu))
    else:
        devs = []
        for d in devices:
            if isinstance(d, str):
                if not d.startswith("cuda:") or not d[5:].isdigit():
                    raise ValueError(f"[distributed.init_all] device {d!r} is not \"cuda:N\"")
                d = int(d[5:])
            if isinstance(d, bool) or not isinstance(d, int):
                raise ValueError(f"[distributed.init_all] device {d!r} is not a GPU index")
            devs.append(d)
    if not devs:
        raise ValueError("[distributed.init_all] no GPU: single-process mode drives local GPUs "
                         "(NCCL is GPU-only)")
    if len(set(devs)) != len(devs):
        raise ValueError(f"[distributed.init_all] devices {devs} name a GPU twice")
    bad = [d for d in devs if not 0 <= d < ngpu]
    if bad:
        raise ValueError(f"[distributed.init_all] device(s) {bad} do not exist: this process "
                         f"sees {ngpu} GPU(s)")
    comms = _C._dist_init_all(devs)
    cfg = Config(0, len(devs), 0, None, None)
    _state = _State("single", cfg, None, t, _debug_value(debug), comms=comms, devices=devs)


def destroy() -> None:
    """Leaves the process group and frees its communicators (no-op when not initialised)."""
    global _state
    st, _state = _state, None
    if st is None:
        return
    st.comm = None
    st.comms = []


atexit.register(destroy)


def is_initialized() -> bool:
    """Whether :func:`init` or :func:`init_all` ran (and :func:`destroy` did not)."""
    return _state is not None


def _require(op: str) -> _State:
    if _state is None:
        raise ValueError(f"[{op}] the process group is not initialised; call "
                         f"lc.distributed.init() (or init_all()) first")
    return _state


def get_rank() -> int:
    """This process's rank (0 in single-process mode)."""
    return _require("get_rank").cfg.rank


def get_world_size() -> int:
    """The number of ranks (single-process mode: the number of GPUs)."""
    return _require("get_world_size").cfg.world_size


def get_local_rank() -> int:
    """This process's rank on its host (the GPU it drives)."""
    return _require("get_local_rank").cfg.local_rank


def nccl_info(load: bool = False) -> dict:
    """NCCL as this process sees it: loaded, path, version, or why it cannot be loaded.

    Parameters
    ----------
    load : bool, optional
        Try to load NCCL now (default: report without loading).

    Returns
    -------
    dict
        ``name``, ``loaded``, ``path``, ``version`` (major*10000 + minor*100 + patch),
        ``error``."""
    return dict(_C._dist_library_info(bool(load)))


# ---- work handles ----------------------------------------------------------------------------

class Work:
    """The handle of an asynchronous collective (``async_op=True``).

    Parameters
    ----------
    natives : list
        The native event handles (one per device), empty when the work is already complete.
    timeout : float
        Seconds :meth:`wait` waits by default.
    result : object, optional
        What :meth:`wait` returns (the output tensor of all_gather / reduce_scatter).
    keep : tuple, optional
        Tensors kept alive until the work completed."""

    __slots__ = ("_natives", "_timeout", "_result", "_keep")

    def __init__(self, natives: list, timeout: float, result: Any = None, keep: tuple = ()):
        self._natives = natives
        self._timeout = timeout
        self._result = result
        self._keep = keep

    def wait(self, timeout: float | None = None) -> Any:
        """Blocks until the collective finished; returns its result (or None).

        Parameters
        ----------
        timeout : float, optional
            Seconds, default the group's timeout (``init(timeout=)``).

        Raises
        ------
        lightning_core.BackendError
            NCCL reported an error or the timeout passed; the communicator is aborted.
        """
        t = self._timeout if timeout is None else float(timeout)
        for n in self._natives:
            n.wait(t)
        self._natives = []
        self._keep = ()
        return self._result

    def is_completed(self) -> bool:
        """True once the collective finished (never blocks).

        Raises
        ------
        lightning_core.BackendError
            NCCL reported an asynchronous error; the communicator is aborted.
        """
        if all(n.is_completed() for n in self._natives):
            self._natives = []
            self._keep = ()
            return True
        return False

    def result(self) -> Any:
        """The collective's output tensor (all_gather / reduce_scatter) or None; wait first."""
        return self._result

    def __repr__(self) -> str:
        return f"Work(completed={not self._natives})"


def _finish(st: _State, natives: list, async_op: bool, result: Any, keep: tuple) -> Any:
    w = Work(natives, st.timeout, result, keep)
    if async_op:
        return w
    w.wait()
    return result


# ---- argument checks -------------------------------------------------------------------------

def _tensor(op: str, name: str, t: Any, st: _State) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"[{op}] {name} must be an lc.Tensor (collectives work in place on "
                        f"device memory), got {type(t).__name__}; wrap arrays with "
                        f"lc.Tensor(x, device=\"cuda\")")
    return t


def _reduce_op(op_name: str, op: Any, dtype: str) -> str:
    if op not in _REDUCE_OPS:
        raise ValueError(f"[{op_name}] op={op!r} is not a reduction; use one of "
                         f"{', '.join(repr(o) for o in _REDUCE_OPS)}")
    if op == "avg" and dtype in _INT_DTYPES:
        raise TypeError(f"[{op_name}] op=\"avg\" needs a floating dtype, got {dtype}; reduce "
                        f"with op=\"sum\" and divide, or convert with t.astype(\"float32\")")
    return op


def _where(t: Tensor) -> str:
    return "cpu" if t.device == "cpu" else f"{t.device}:{t.device_index}"


def _on_rank_device(op: str, name: str, t: Tensor, st: _State) -> bool:
    """True for the CPU identity path (world size 1); checks the device otherwise."""
    r = st.cfg.rank
    if t.device == "cpu":
        if st.cfg.world_size == 1:
            return True
        raise ValueError(f"[{op}] rank {r}: {name} is a CPU tensor; NCCL moves GPU memory only, "
                         f"so with WORLD_SIZE={st.cfg.world_size} put it on this rank's GPU "
                         f"(t.to(\"cuda:{st.device}\"))")
    if t.device != "cuda":
        raise ValueError(f"[{op}] rank {r}: {name} is on {_where(t)}; collectives run on CUDA "
                         f"tensors (or CPU tensors at world size 1)")
    if st.cfg.world_size == 1 and st.device is None:
        st.device = t.device_index
    if t.device_index != st.device:
        raise ValueError(f"[{op}] rank {r}: {name} is on {_where(t)} but this rank drives "
                         f"cuda:{st.device}; move it there (t.to(\"cuda:{st.device}\"))")
    return False


def _writable(op: str, name: str, t: Tensor, r: int) -> None:
    if not t.is_contiguous():
        raise ValueError(f"[{op}] rank {r}: {name} {tuple(t.shape)} is not contiguous; "
                         f"collectives write in place into contiguous memory: pass "
                         f"t.contiguous() (and copy the result back)")


def _comm(st: _State) -> Any:
    if st.comm is None:  # world size 1 on a GPU: a one-rank communicator, made on first use
        assert st.device is not None
        st.comm = _C._dist_init_rank(_C._dist_unique_id(), 1, 0, st.device)
    return st.comm


def _check_same(op: str, st: _State, t: Tensor, comm: Any, extra: int = 0) -> None:
    """Debug mode: every rank calls `op` with the same shape and dtype (an all-gather of them)."""
    if not st.debug:
        return
    import numpy as np

    shape = tuple(t.shape)
    sig = np.zeros(_SIG_LEN, dtype=np.int64)
    sig[0], sig[1], sig[2] = _OP_CODES.get(op, 0), _DTYPE_CODES.get(t.dtype, -1), len(shape)
    sig[3:3 + len(shape)] = shape
    sig[_SIG_LEN - 1] = extra
    dev = f"cuda:{comm.device}"
    src = Tensor(sig, device=dev)
    out = Tensor.empty([comm.size * _SIG_LEN], device=dev, dtype="int64")
    comm.all_gather(src, out)
    comm.record("all_gather").wait(st.timeout)
    allsig = out.numpy().reshape(comm.size, _SIG_LEN)
    bad = [i for i in range(comm.size) if not np.array_equal(allsig[i], allsig[0])]
    if bad:
        def desc(s: Any) -> str:
            names = {v: k for k, v in _OP_CODES.items()}
            dts = {v: k for k, v in _DTYPE_CODES.items()}
            return (f"{names.get(int(s[0]), '?')} {tuple(int(x) for x in s[3:3 + int(s[2])])} "
                    f"{dts.get(int(s[1]), '?')}" + (f" root {int(s[-1])}" if s[-1] else ""))
        raise ValueError(f"[{op}] ranks disagree (LC_DISTRIBUTED_DEBUG): rank 0 calls "
                         f"{desc(allsig[0])}, " + ", ".join(f"rank {i} calls {desc(allsig[i])}"
                                                           for i in bad))


def _group(st: _State, tensors: Any, op: str) -> list:
    if not isinstance(tensors, (list, tuple)) or len(tensors) != len(st.comms):
        raise ValueError(f"[{op}] single-process mode (init_all) takes a list of "
                         f"{len(st.comms)} tensors, one per device {st.devices}")
    out = []
    for i, (t, dev) in enumerate(zip(tensors, st.devices)):
        t = _tensor(op, f"tensors[{i}]", t, st)
        if t.device != "cuda" or t.device_index != dev:
            raise ValueError(f"[{op}] tensors[{i}] is on {_where(t)}, expected cuda:{dev} "
                             f"(devices {st.devices})")
        out.append(t)
    shapes = {(tuple(t.shape), t.dtype) for t in out}
    if len(shapes) != 1:
        raise ValueError(f"[{op}] the tensors differ in shape or dtype: "
                         f"{[(tuple(t.shape), t.dtype) for t in out]}")
    return out


def _run_group(st: _State, op: str, calls: list, async_op: bool, result: Any, keep: tuple) -> Any:
    _C._dist_group_start()
    try:
        for c in calls:
            c()
    finally:
        _C._dist_group_end()
    natives = [comm.record(op) for comm in st.comms]
    return _finish(st, natives, async_op, result, keep)


def _gather_shape(op: str, shape: tuple, world: int) -> tuple:
    return (world * shape[0],) + shape[1:] if shape else (world,)


def _check_out(op: str, out: Any, shape: tuple, dtype: str, src: Tensor, st: _State,
               alt: tuple | None = None) -> Tensor:
    r = st.cfg.rank
    out = _tensor(op, "out", out, st)
    if out.dtype != dtype:
        raise TypeError(f"[{op}] rank {r}: out has dtype {out.dtype}, the input {dtype}; pass "
                        f"an out of dtype {dtype}")
    if tuple(out.shape) != shape and (alt is None or tuple(out.shape) != alt):
        want = f"{shape}" + (f" or {alt}" if alt else "")
        raise ValueError(f"[{op}] rank {r}: out has shape {tuple(out.shape)} but the input "
                         f"{tuple(src.shape)} at world size {st.cfg.world_size} needs {want}")
    if out.device != src.device or (out.device != "cpu" and out.device_index != src.device_index):
        raise ValueError(f"[{op}] rank {r}: out is on {_where(out)}, the input on {_where(src)}; "
                         f"put both on one device")
    _writable(op, "out", out, r)
    return out


def _empty_like(shape: tuple, like: Tensor) -> Tensor:
    return Tensor.empty(list(shape), device=_where(like), dtype=like.dtype)


def _done(st: _State, async_op: bool, result: Any = None) -> Any:
    """The CPU identity path's return value."""
    return Work([], st.timeout, result) if async_op else result


def _copy_flat(dst: Tensor, src: Tensor) -> None:
    """dst (contiguous, src.size elements of src's dtype) = src's elements in row-major order."""
    n = src.size
    dst.reshape(n).copy_(src.contiguous().reshape(n))


# ---- collectives -----------------------------------------------------------------------------

def all_reduce(tensor: Any, op: str = "sum", *, async_op: bool = False) -> Work | None:
    """Reduces ``tensor`` over all ranks, in place: every rank gets the result.

    Parameters
    ----------
    tensor : lc.Tensor or list of lc.Tensor
        Contiguous, this rank's GPU (a list of one per device in single-process mode).
    op : str, optional
        "sum" (default), "avg" (floating dtypes), "max" or "min".
    async_op : bool, optional
        Return a :class:`Work` instead of waiting.

    Returns
    -------
    Work or None
        The handle with ``async_op=True``.

    Raises
    ------
    TypeError
        Not an lc.Tensor, or "avg" on an integer dtype.
    ValueError
        A non-contiguous tensor, a tensor on another device, a CPU tensor with more than one
        rank, an unknown op; with debug on, ranks that disagree on the shape.
    lightning_core.BackendError
        NCCL failed, a peer died or the timeout passed (the communicator is aborted)."""
    st = _require("all_reduce")
    if st.mode == "single":
        ts = _group(st, tensor, "all_reduce")
        _reduce_op("all_reduce", op, ts[0].dtype)
        for t in ts:
            _writable("all_reduce", "tensor", t, 0)
        calls = [lambda c=c, t=t: c.all_reduce(t, t, op) for c, t in zip(st.comms, ts)]
        return _run_group(st, "all_reduce", calls, async_op, None, tuple(ts))
    t = _tensor("all_reduce", "tensor", tensor, st)
    _reduce_op("all_reduce", op, t.dtype)
    cpu = _on_rank_device("all_reduce", "tensor", t, st)
    _writable("all_reduce", "tensor", t, st.cfg.rank)
    if cpu:
        return _done(st, async_op)
    comm = _comm(st)
    _check_same("all_reduce", st, t, comm)
    comm.all_reduce(t, t, op)
    return _finish(st, [comm.record("all_reduce")], async_op, None, (t,))


def all_gather(tensor: Any, out: Any = None, *, async_op: bool = False) -> Any:
    """Concatenates every rank's ``tensor`` along dimension 0, in rank order, on every rank.

    Parameters
    ----------
    tensor : lc.Tensor or list of lc.Tensor
        This rank's part (same shape and dtype on every rank).
    out : lc.Tensor or list of lc.Tensor, optional
        The result, shape ``(world_size * n, ...)`` for a ``(n, ...)`` input (``(world_size,)``
        for a 0-d one) or ``(world_size, n, ...)``; allocated when omitted.
    async_op : bool, optional
        Return a :class:`Work` (``wait()`` returns ``out``) instead of waiting.

    Returns
    -------
    lc.Tensor, list of lc.Tensor or Work
        ``out``, or the handle with ``async_op=True``.

    Raises
    ------
    TypeError
        Not an lc.Tensor, or ``out`` of another dtype.
    ValueError
        ``out`` of the wrong shape (naming both shapes and the rank) or device, a non-contiguous
        ``out``, a CPU tensor with more than one rank.
    lightning_core.BackendError
        NCCL failed, a peer died or the timeout passed."""
    st = _require("all_gather")
    w = st.cfg.world_size
    if st.mode == "single":
        ts = _group(st, tensor, "all_gather")
        shape = _gather_shape("all_gather", tuple(ts[0].shape), w)
        alt = (w,) + tuple(ts[0].shape)
        if out is None:
            outs = [_empty_like(shape, t) for t in ts]
        else:
            if not isinstance(out, (list, tuple)) or len(out) != len(ts):
                raise ValueError(f"[all_gather] out must be a list of {len(ts)} tensors")
            outs = [_check_out("all_gather", o, shape, t.dtype, t, st, alt) for o, t in zip(out, ts)]
        ins = [t.contiguous() for t in ts]
        calls = [lambda c=c, i=i, o=o: c.all_gather(i, o) for c, i, o in zip(st.comms, ins, outs)]
        return _run_group(st, "all_gather", calls, async_op, outs, tuple(ins) + tuple(outs))
    t = _tensor("all_gather", "tensor", tensor, st)
    cpu = _on_rank_device("all_gather", "tensor", t, st)
    shape = _gather_shape("all_gather", tuple(t.shape), w)
    alt = (w,) + tuple(t.shape)
    out = _empty_like(shape, t) if out is None else _check_out("all_gather", out, shape, t.dtype,
                                                               t, st, alt)
    if cpu:
        _copy_flat(out, t)
        return _done(st, async_op, out)
    comm = _comm(st)
    _check_same("all_gather", st, t, comm)
    src = t.contiguous()
    comm.all_gather(src, out)
    return _finish(st, [comm.record("all_gather")], async_op, out, (src, out))


def reduce_scatter(tensor: Any, out: Any = None, op: str = "sum", *,
                   async_op: bool = False) -> Any:
    """Reduces ``tensor`` over all ranks and gives rank r the r-th block along dimension 0.

    Parameters
    ----------
    tensor : lc.Tensor or list of lc.Tensor
        Shape ``(world_size * n, ...)`` (same on every rank).
    out : lc.Tensor or list of lc.Tensor, optional
        The result, shape ``(n, ...)``; allocated when omitted.
    op : str, optional
        "sum" (default), "avg" (floating dtypes), "max" or "min".
    async_op : bool, optional
        Return a :class:`Work` (``wait()`` returns ``out``) instead of waiting.

    Returns
    -------
    lc.Tensor, list of lc.Tensor or Work
        ``out``, or the handle with ``async_op=True``.

    Raises
    ------
    TypeError
        Not an lc.Tensor, ``out`` of another dtype, or "avg" on an integer dtype.
    ValueError
        A 0-d input or a first dimension not divisible by the world size, ``out`` of the wrong
        shape or device, a CPU tensor with more than one rank.
    lightning_core.BackendError
        NCCL failed, a peer died or the timeout passed."""
    st = _require("reduce_scatter")
    w = st.cfg.world_size

    def out_shape(t: Tensor) -> tuple:
        shape = tuple(t.shape)
        if not shape or shape[0] % w:
            raise ValueError(f"[reduce_scatter] rank {st.cfg.rank}: the input shape {shape} "
                             f"needs a first dimension divisible by the world size {w}")
        return (shape[0] // w,) + shape[1:]

    if st.mode == "single":
        ts = _group(st, tensor, "reduce_scatter")
        _reduce_op("reduce_scatter", op, ts[0].dtype)
        shape = out_shape(ts[0])
        if out is None:
            outs = [_empty_like(shape, t) for t in ts]
        else:
            if not isinstance(out, (list, tuple)) or len(out) != len(ts):
                raise ValueError(f"[reduce_scatter] out must be a list of {len(ts)} tensors")
            outs = [_check_out("reduce_scatter", o, shape, t.dtype, t, st) for o, t in zip(out, ts)]
        ins = [t.contiguous() for t in ts]
        calls = [lambda c=c, i=i, o=o: c.reduce_scatter(i, o, op)
                 for c, i, o in zip(st.comms, ins, outs)]
        return _run_group(st, "reduce_scatter", calls, async_op, outs, tuple(ins) + tuple(outs))
    t = _tensor("reduce_scatter", "tensor", tensor, st)
    _reduce_op("reduce_scatter", op, t.dtype)
    cpu = _on_rank_device("reduce_scatter", "tensor", t, st)
    shape = out_shape(t)
    out = _empty_like(shape, t) if out is None else _check_out("reduce_scatter", out, shape,
                                                               t.dtype, t, st)
    if cpu:
        _copy_flat(out, t)
        return _done(st, async_op, out)
    comm = _comm(st)
    _check_same("reduce_scatter", st, t, comm)
    src = t.contiguous()
    comm.reduce_scatter(src, out, op)
    return _finish(st, [comm.record("reduce_scatter")], async_op, out, (src, out))


def _peer(op: str, name: str, value: Any, st: _State, allow_self: bool = False) -> int:
    w, r = st.cfg.world_size, st.cfg.rank
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"[{op}] {name}={value!r} must be an int rank")
    if not 0 <= value < w:
        raise ValueError(f"[{op}] rank {r}: {name}={value} is out of range for world size {w} "
                         f"(0..{w - 1})")
    if value == r and not allow_self:
        raise ValueError(f"[{op}] rank {r}: {name}={value} is this rank itself; name another "
                         f"rank")
    return value


def broadcast(tensor: Any, src: int = 0, *, async_op: bool = False) -> Work | None:
    """Copies rank ``src``'s ``tensor`` into ``tensor`` on every other rank, in place.

    Parameters
    ----------
    tensor : lc.Tensor or list of lc.Tensor
        Contiguous, same shape and dtype on every rank.
    src : int, optional
        The source rank (single-process mode: the index into the device list), default 0.
    async_op : bool, optional
        Return a :class:`Work` instead of waiting.

    Returns
    -------
    Work or None
        The handle with ``async_op=True``.

    Raises
    ------
    TypeError
        Not an lc.Tensor, or ``src`` not an int.
    ValueError
        ``src`` out of range, a non-contiguous tensor, a tensor on another device, a CPU tensor
        with more than one rank.
    lightning_core.BackendError
        NCCL failed, a peer died or the timeout passed."""
    st = _require("broadcast")
    root = _peer("broadcast", "src", src, st, allow_self=True)
    if st.mode == "single":
        ts = _group(st, tensor, "broadcast")
        for t in ts:
            _writable("broadcast", "tensor", t, 0)
        calls = [lambda c=c, t=t: c.broadcast(t, t, root) for c, t in zip(st.comms, ts)]
        return _run_group(st, "broadcast", calls, async_op, None, tuple(ts))
    t = _tensor("broadcast", "tensor", tensor, st)
    cpu = _on_rank_device("broadcast", "tensor", t, st)
    _writable("broadcast", "tensor", t, st.cfg.rank)
    if cpu:
        return _done(st, async_op)
    comm = _comm(st)
    _check_same("broadcast", st, t, comm, extra=root)
    comm.broadcast(t, t, root)
    return _finish(st, [comm.record("broadcast")], async_op, None, (t,))


def _p2p_state(op: str) -> _State:
    st = _require(op)
    if st.mode == "single":
        raise ValueError(f"[{op}] point-to-point calls need one process per GPU (init); "
                         f"single-process mode (init_all) has broadcast / all_reduce / "
                         f"all_gather / reduce_scatter")
    return st


def send(tensor: Any, dst: int, *, async_op: bool = False) -> Work | None:
    """Sends ``tensor`` to rank ``dst``, which must call :func:`recv` with ``src`` = this rank.

    Parameters
    ----------
    tensor : lc.Tensor
        On this rank's GPU.
    dst : int
        The receiving rank (not this one).
    async_op : bool, optional
        Return a :class:`Work` instead of waiting.

    Returns
    -------
    Work or None
        The handle with ``async_op=True``.

    Raises
    ------
    TypeError
        Not an lc.Tensor, or ``dst`` not an int.
    ValueError
        ``dst`` out of range or this rank, a tensor on another device, a CPU tensor, or
        single-process mode.
    lightning_core.BackendError
        NCCL failed, the peer died or the timeout passed."""
    st = _p2p_state("send")
    t = _tensor("send", "tensor", tensor, st)
    peer = _peer("send", "dst", dst, st)
    _on_rank_device("send", "tensor", t, st)
    comm = _comm(st)
    src = t.contiguous()
    comm.send(src, peer)
    return _finish(st, [comm.record("send")], async_op, None, (src,))


def recv(tensor: Any, src: int, *, async_op: bool = False) -> Work | None:
    """Receives into ``tensor`` what rank ``src`` sends with :func:`send` (same size, dtype).

    Parameters
    ----------
    tensor : lc.Tensor
        Contiguous, on this rank's GPU; overwritten.
    src : int
        The sending rank (not this one).
    async_op : bool, optional
        Return a :class:`Work` instead of waiting.

    Returns
    -------
    Work or None
        The handle with ``async_op=True``.

    Raises
    ------
    TypeError
        Not an lc.Tensor, or ``src`` not an int.
    ValueError
        ``src`` out of range or this rank, a non-contiguous tensor, a tensor on another device,
        a CPU tensor, or single-process mode.
    lightning_core.BackendError
        NCCL failed, the peer died or the timeout passed."""
    st = _p2p_state("recv")
    t = _tensor("recv", "tensor", tensor, st)
    peer = _peer("recv", "src", src, st)
    _on_rank_device("recv", "tensor", t, st)
    _writable("recv", "tensor", t, st.cfg.rank)
    comm = _comm(st)
    comm.recv(t, peer)
    return _finish(st, [comm.record("recv")], async_op, None, (t,))


def barrier(*, async_op: bool = False) -> Work | None:
    """Waits until every rank reached the barrier (a one-element all-reduce on the GPU).

    World size 1 returns at once (no other rank to wait for).

    Parameters
    ----------
    async_op : bool, optional
        Return a :class:`Work` instead of waiting.

    Returns
    -------
    Work or None
        The handle with ``async_op=True``.

    Raises
    ------
    lightning_core.BackendError
        A peer died or the timeout passed."""
    st = _require("barrier")
    if st.mode == "single":
        ts = [Tensor.empty([1], device=f"cuda:{d}", dtype="int32") for d in st.devices]
        calls = [lambda c=c, t=t: c.all_reduce(t, t, "sum") for c, t in zip(st.comms, ts)]
        return _run_group(st, "barrier", calls, async_op, None, tuple(ts))
    if st.cfg.world_size == 1:  # no other rank to wait for
        return _done(st, async_op)
    comm = _comm(st)
    t = Tensor.empty([1], device=f"cuda:{st.device}", dtype="int32")
    comm.all_reduce(t, t, "sum")
    return _finish(st, [comm.record("barrier")], async_op, None, (t,))

