"""Several devices for one model (issue #17): data-parallel encode, and the device helpers the
tensor-parallel encoder (`_tensor_parallel.py`) shares.

**Data parallel** (`run_data_parallel`, behind ``SentenceEncoder.encode(..., devices=[...])``):
one model replica per distinct device (weights uploaded once per device and dtype, cached on
the `SentenceEncoder`), one Python thread per entry of ``devices``, which pull the batches
(sorted longest first) from one shared queue, so a faster device takes more of them; each
thread makes its GPU current and runs forward + mean pool; the rows are written straight into
the result at their input positions. The LC ops release the GIL for work above ~2e5 flops
(python/src/op_binding.h, ``call_maybe_nogil``) and a planned graph's execute always releases
it (python/src/bind_graph.cpp), so the devices' forwards overlap; the small host steps
(tokenised arrays, the id upload, the pooled download) run under the GIL. ``Tensor.numpy()`` of
a GPU tensor waits for the device holding the GIL (python/src/bind_tensor.cpp, ``to_numpy``), so
each GPU thread first waits for its forward with ``Stream.synchronize()``, which releases it. A device named twice
shares its replica; in graph mode its calls are serialised (a bucket's graph writes one output
buffer), in eager mode they overlap.

**Tensor parallel** (`TensorParallelEncoder`) lives in `_tensor_parallel.py`.
"""
from __future__ import annotations

import collections
import contextlib
import threading
from typing import Any, Callable, Sequence

import numpy as np

from .. import _lightning_core as _C
from ..devices import Device
from ._bert import TransformerEncoder

__all__ = ["parse_device", "run_data_parallel", "device_context"]


def parse_device(d: Any, where: str, allow_auto: bool = False) -> str:
    """The canonical location of a device name: "cpu" or "cuda:N" ("cuda" = the current GPU).

    Parameters
    ----------
    d : str or Device
        "cpu", "cuda", "cuda:N" (or "auto" when ``allow_auto``).
    where : str
        The caller's name for messages.
    allow_auto : bool, optional
        Pass "auto" through unchanged.

    Raises
    ------
    TypeError
        Not a str or Device.
    ValueError
        An unknown device, a GPU without a usable GPU, an index this process does not see.
    """
    if allow_auto and d == "auto":
        return "auto"
    if not isinstance(d, (str, Device)):
        raise TypeError(f"{where}: a device must be a str such as \"cuda:0\" or an lc.Device, "
                        f"got {type(d).__name__}")
    if d == "auto":
        raise ValueError(f"{where}: \"auto\" cannot be one of several devices; name each "
                         f"device (\"cpu\", \"cuda:0\", ...)")
    try:
        dev = Device(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: device {str(d)!r} is not valid ({e})") from None
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ValueError(f"{where}: device {str(d)!r}: only \"cpu\" and \"cuda[:N]\" run models")
    n = int(_C._device_count("cuda"))
    if n == 0:
        raise ValueError(f"{where}: device {str(d)!r} needs a GPU and this process sees none "
                         f"(lc.cuda_available() is False); use \"cpu\"")
    idx = dev.index if dev.index is not None else int(_C._current_device("cuda"))
    if idx >= n:
        raise ValueError(f"{where}: device cuda:{idx} does not exist: this process sees {n} "
                         f"CUDA device(s) (cuda:0..cuda:{n - 1})")
    return f"cuda:{idx}"


def device_context(loc: str):
    """A context that makes ``loc``'s GPU the thread's current device (nothing for "cpu")."""
    return contextlib.nullcontext() if loc == "cpu" else Device(loc)


def run_data_parallel(batches: Sequence[tuple], locations: Sequence[str],
                      replica: Callable[[str], TransformerEncoder], out: np.ndarray,
                      execution_mode: str | None) -> dict:
    """Runs ``batches`` on ``locations`` concurrently; writes each batch's pooled rows into out.

    Parameters
    ----------
    batches : sequence of (idx, ids, mask, types)
        Row indices into ``out`` and the batch's int arrays, longest first.
    locations : sequence of str
        Canonical devices ("cpu", "cuda:N"), one worker thread each (repeats allowed).
    replica : callable
        ``replica(location)`` -> the `TransformerEncoder` there (built once, in this thread,
        before the workers start).
    out : numpy.ndarray
        float32 ``[N, dim]``; rows are written in place.
    execution_mode : str or None
        Passed to ``forward``.

    Returns
    -------
    dict
        Batches run per location.
    """
    encs = {loc: replica(loc) for loc in dict.fromkeys(locations)}
    locks = {loc: threading.Lock() for loc in encs}
    serial = {loc: encs[loc]._resolve_mode(execution_mode) == "graph" for loc in encs}
    queue = collections.deque(batches)
    qlock = threading.Lock()
    counts: collections.Counter = collections.Counter()
    errors: list = []
    stop = threading.Event()

    def work(loc: str) -> None:
        enc = encs[loc]
        try:
            with device_context(loc):
                # A GPU thread waits for its forward on its own stream with the GIL released
                # (Stream.synchronize) before mean_pool's download, which waits holding the GIL
                # (Tensor.numpy): otherwise one GPU's wait would stall the other threads' launches.
                wait = None if loc == "cpu" else _C.current_stream(loc).synchronize
                while not stop.is_set():
                    with qlock:
                        if not queue:
                            return
                        idx, ids, mask, types = queue.popleft()
                    with (locks[loc] if serial[loc] else contextlib.nullcontext()):
                        hidden = enc.forward(ids, mask, types, execution_mode=execution_mode)
                        if wait is not None:
                            wait()
                        pooled = enc.mean_pool(hidden, mask)
                    out[idx] = pooled
                    with qlock:
                        counts[loc] += 1
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            with qlock:
                errors.append((loc, e))
            stop.set()

    if len(locations) == 1:
        work(locations[0])
    else:
        threads = [threading.Thread(target=work, args=(loc,), name=f"lc-encode-{loc}-{i}",
                                    daemon=True) for i, loc in enumerate(locations)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        loc, e = errors[0]
        if isinstance(e, Exception) and hasattr(e, "add_note"):
            e.add_note(f"(raised by the data-parallel worker on {loc})")
        raise e
    return dict(counts)
