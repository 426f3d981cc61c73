"""Cost-based ``device="auto"`` for the encoders: CPU or GPU per (batch bucket, seq bucket, dtype).

A forward of a small model on a few tokens is dominated by fixed costs (kernel launches or a
graph replay, the id upload, the result download) on the GPU and by arithmetic on the CPU, so
a single short query can be faster on the CPU while any real batch is faster on the GPU. Where
the crossover lies depends on the machine (CPU cores and ISA, the GPU, the link), the model's
sizes and the dtype, so it is measured, never assumed:

* the key is ``(bucket_size(B), bucket_size(S, 8, max_positions), dtype)`` (the buckets graph
  mode pads to; `bucket_size`), plus the model's sizes and the execution mode;
* the first time a key is seen under ``device="auto"`` (or on ``SentenceEncoder.calibrate``),
  the batch at hand runs on both sides: one untimed warm-up each (the GPU captures its graph,
  the CPU pays its one-time costs), then up to ``repeats`` timed runs each, alternating; a side
  that is more than 3x slower than the other's best stops being timed early. The faster side's
  best time wins; its result of the batch is returned, so nothing is computed twice for waste.
  A side that raises while deciding loses (the other runs; not persisted); both raising
  re-raises the GPU's error. A bucket with at least the rows and tokens of one where the CPU
  measured >= 3x slower takes the GPU without measuring ("inferred", in-process only), which
  spares the slow CPU runs of big batches;
* the choice is remembered in the process and persisted in LC's auto-tune cache
  (``lc.autotune_record``, op ``models.encoder_placement``; keyed by the GPU's device
  fingerprint, the library version, the dtype, and in the shapes field the model sizes, the
  bucket and a digest of the CPU fingerprint), so the next process reads it instead of
  measuring. ``LC_AUTOTUNE=0`` disables the cache (each process measures once per key);
* without a usable GPU, ``auto`` is ``cpu`` with no lookup and no measurement.

The timer is injectable (``timer=``) and so is the GPU's presence (``has_gpu=``), so the
decision logic is tested in CI without a GPU (tests/python/test_models_placement.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from typing import Any, Callable

from .. import _lightning_core as _C
from ._bert import bucket_size

__all__ = ["PlacementDecision", "AutoPlacement", "PLACEMENT_OP"]

#: The auto-tune cache's op name of the placement entries.
PLACEMENT_OP = "models.encoder_placement"
_SIDES = ("cuda", "cpu")
_EARLY_STOP = 3.0  # a side this many times slower than the other's best stops being timed


@dataclasses.dataclass(frozen=True)
class PlacementDecision:
    """Where a batch ran and why (``SentenceEncoder.last_placement``).

    Attributes
    ----------
    device : str
        "cpu" or "cuda" (or the replica's name, e.g. "cuda:1", in data-parallel runs).
    bucket : tuple of int
        (batch bucket, sequence bucket) of the batch.
    dtype : str
        The encoder's dtype.
    source : str
        "measured" (timed now), "cache" (read from the auto-tune cache), "memo" (decided
        earlier in this process), "no-gpu" (auto without a GPU), "explicit" (device given),
        "data-parallel", "<side> failed: <error type>" (that side raised while deciding:
        the other one runs; remembered in the process, not persisted), or "inferred from BxS"
        (the GPU, because a bucket with no more rows and tokens measured it >= 3x faster).
    cpu_us, cuda_us : float or None
        The measured best times of the two sides in microseconds (None when not measured).
    """

    device: str
    bucket: tuple
    dtype: str
    source: str
    cpu_us: float | None = None
    cuda_us: float | None = None

    def __str__(self) -> str:
        t = ""
        if self.cpu_us is not None or self.cuda_us is not None:
            def f(v):
                return "-" if v is None else f"{v:.0f} us"
            t = f" (cpu {f(self.cpu_us)}, cuda {f(self.cuda_us)})"
        return (f"{self.bucket[0]}x{self.bucket[1]} {self.dtype}: {self.device} "
                f"[{self.source}]{t}")


def _cpu_digest() -> str:
    try:
        fp = _C.device_fingerprint("cpu")
    except Exception:  # noqa: BLE001 - a fingerprint is a cache key detail, never fatal
        fp = "cpu"
    return hashlib.sha1(fp.encode()).hexdigest()[:10]


class AutoPlacement:
    """The CPU-or-GPU choice per (batch bucket, seq bucket, dtype) of one model (see module doc).

    Parameters
    ----------
    model_key : str
        The model's sizes and execution mode, part of the cache key (two models of one
        architecture share their decisions: speed does not depend on the weights' values).
    max_positions : int
        The sequence bucket's cap (the model's ``max_position_embeddings``).
    has_gpu : bool, optional
        Whether a GPU is usable (default ``lc.cuda_available()``, asked once).
    timer : callable, optional
        Seconds as a float (default ``time.perf_counter``); tests pass a fake clock.
    repeats : int, optional
        Timed runs per side after the warm-up (default 3); the best counts.
    persist : bool, optional
        Read and write the auto-tune cache (default True).
    """

    def __init__(self, model_key: str, max_positions: int, has_gpu: bool | None = None,
                 timer: Callable[[], float] = time.perf_counter, repeats: int = 3,
                 persist: bool = True):
        if not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"AutoPlacement: repeats must be an int >= 1, got {repeats!r}")
        self.model_key = str(model_key)
        self.max_positions = int(max_positions)
        self.has_gpu = bool(_C.cuda_available()) if has_gpu is None else bool(has_gpu)
        self.timer = timer
        self.repeats = repeats
        self.persist = bool(persist)
        self._memo: dict = {}      # (Bb, Sb, dtype) -> PlacementDecision
        self._seen: dict = {}      # the same as source="memo" (what later calls return)
        self._lock = threading.Lock()
        self._cpu: str | None = None  # the CPU fingerprint's digest, on first persisted use
        #: How many times a bucket was measured (both sides run) by this placement.
        self.measurements = 0
        #: Called as ``on_measure(bucket, dtype)`` before each measurement (tests count them).
        self.on_measure: Callable[[tuple, str], None] | None = None

    # ---- keys --------------------------------------------------------------------------------
    def bucket(self, B: int, S: int) -> tuple:
        """(batch bucket, sequence bucket) of a ``[B, S]`` batch, as graph mode pads it."""
        return bucket_size(max(B, 1)), bucket_size(max(S, 1), 8, self.max_positions)

    def cache_shapes(self, bucket: tuple) -> str:
        """The ``shapes`` field of the bucket's auto-tune cache entry."""
        if self._cpu is None:
            self._cpu = _cpu_digest()
        return f"{self.model_key} B={bucket[0]} S={bucket[1]} cpu={self._cpu}"

    def decisions(self) -> list:
        """Every decision of this process so far (list of `PlacementDecision`), by bucket."""
        with self._lock:
            return [self._memo[k] for k in sorted(self._memo, key=lambda k: (k[2], k[0], k[1]))]

    def forget(self) -> None:
        """Drops the in-process decisions (the auto-tune cache keeps its entries)."""
        with self._lock:
            self._memo.clear()
            self._seen.clear()

    # ---- the decision ------------------------------------------------------------------------
    def decide(self, B: int, S: int, dtype: str, run: Callable[[str], Any],
               force: bool = False, infer: bool = True) -> tuple:
        """Where a ``[B, S]`` batch in ``dtype`` runs, and its result if deciding ran it.

        Parameters
        ----------
        B, S : int
            The batch's rows and tokens.
        dtype : str
            The encoder's dtype.
        run : callable
            ``run(side)`` computes the batch on "cpu" or "cuda" and returns the result,
            synchronised (a numpy array: the timing must include the device's work).
        force : bool, optional
            Measure even when the choice is known (``calibrate(force=True)``).
        infer : bool, optional
            Allow choosing the GPU without measuring when a bucket with no more rows and no
            more tokens (same dtype) measured the CPU at least 3x slower (see `_dominated`).

        Returns
        -------
        (PlacementDecision, result or None)
            ``result`` is the chosen side's output when the batch was run while measuring,
            else None (the caller runs it on ``decision.device``).
        """
        bucket = self.bucket(B, S)
        if not self.has_gpu:
            return PlacementDecision("cpu", bucket, dtype, "no-gpu"), None
        key = (bucket[0], bucket[1], dtype)
        with self._lock:
            d = self._memo.get(key)
            if d is not None and not force and (infer or not d.source.startswith("inferred")):
                m = self._seen.get(key)
                if m is None:      # made once per key: the hot path only looks it up
                    m = self._seen[key] = dataclasses.replace(d, source="memo")
                return m, None
            if not force and self.persist:
                e = _C.autotune_lookup(PLACEMENT_OP, self.cache_shapes(bucket), device="cuda",
                                       dtype=dtype)
                if e is not None and e.get("choice") in _SIDES:
                    d = PlacementDecision(e["choice"], bucket, dtype, "cache",
                                          _float_or_none(e.get("cpu_us")),
                                          _float_or_none(e.get("cuda_us")))
                    self._memo[key] = d
                    self._seen.pop(key, None)
                    return d, None
            if infer and not force:
                d = self._dominated(bucket, dtype)
                if d is not None:
                    self._memo[key] = d
                    self._seen.pop(key, None)
                    return d, None
            d, result = self._measure(bucket, dtype, run)
            self._memo[key] = d
            self._seen.pop(key, None)
            if self.persist and d.source == "measured":
                _C.autotune_record(PLACEMENT_OP, self.cache_shapes(bucket), d.device,
                                   device="cuda", dtype=dtype, cpu_us=f"{d.cpu_us:.1f}",
                                   cuda_us=f"{d.cuda_us:.1f}")
            return d, result

    def _dominated(self, bucket: tuple, dtype: str) -> PlacementDecision | None:
        """The GPU, when a measured bucket with <= rows and <= tokens chose it by >= 3x.

        The CPU's time grows at least in proportion to the work while the GPU's fixed costs
        are shared by more of it, so a bigger batch keeps (and widens) a clear GPU lead; this
        spares the slow CPU runs of big buckets. Not persisted (``calibrate`` measures)."""
        for (b, s, dt), d in self._memo.items():
            if (dt == dtype and b <= bucket[0] and s <= bucket[1] and d.device == "cuda"
                    and d.source in ("measured", "cache") and d.cpu_us is not None
                    and d.cuda_us is not None and d.cpu_us >= _EARLY_STOP * d.cuda_us):
                return PlacementDecision("cuda", bucket, dtype, f"inferred from {b}x{s}",
                                         None, None)
        return None

    def _measure(self, bucket: tuple, dtype: str, run: Callable[[str], Any]) -> tuple:
        self.measurements += 1
        if self.on_measure is not None:
            self.on_measure(bucket, dtype)
        results = {}
        failed = {}
        for side in _SIDES:            # warm-up: graph capture, lazy uploads, one-time costs
            try:
                results[side] = run(side)
            except Exception as e:     # noqa: BLE001 - a side that cannot run loses
                failed[side] = e
        if len(failed) == len(_SIDES):
            raise failed["cuda"]
        if failed:                     # the other side, unmeasured: not persisted as a choice
            (bad, err), = failed.items()
            good = "cpu" if bad == "cuda" else "cuda"
            return PlacementDecision(good, bucket, dtype, f"{bad} failed: {type(err).__name__}"), \
                results[good]
        best = {side: float("inf") for side in _SIDES}
        for _ in range(self.repeats):
            for side in _SIDES:
                other = best[_SIDES[1] if side == _SIDES[0] else _SIDES[0]]
                if best[side] != float("inf") and best[side] > _EARLY_STOP * other:
                    continue           # clearly the slower side: no more runs of it
                t0 = self.timer()
                results[side] = run(side)
                best[side] = min(best[side], self.timer() - t0)
        choice = "cpu" if best["cpu"] < best["cuda"] else "cuda"
        d = PlacementDecision(choice, bucket, dtype, "measured", best["cpu"] * 1e6,
                              best["cuda"] * 1e6)
        return d, results[choice]


def _float_or_none(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
