"""lc.distributed on GPUs (skipped without one): world size 1 through a one-rank NCCL
communicator for every collective x dtype x size against numpy, async handles, stream ordering,
single-process mode; with two or more GPUs, two processes through the rendezvous (every op
against numpy) and a killed rank (the survivor errors within 30 s). The CPU half is
tests/python/test_distributed.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import ml_dtypes
import numpy as np
import pytest

import lightning_core as lc
from lightning_core import distributed as dist

pytestmark = pytest.mark.gpu

WORKER = os.path.join(os.path.dirname(__file__), "_dist_worker.py")
DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
          "bfloat16": ml_dtypes.bfloat16, "int32": np.int32, "int64": np.int64}
SIZES = [1, 7919, (1 << 22) + 3]
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "LC_DISTRIBUTED_TIMEOUT", "LC_DISTRIBUTED_DEBUG")


def two_gpus() -> bool:
    return lc.device_count("cuda") >= 2


@pytest.fixture
def ws1(monkeypatch):
    for v in TORCHRUN_VARS:
        monkeypatch.delenv(v, raising=False)
    dist.destroy()
    dist.init(rank=0, world_size=1, timeout=60)
    yield dist
    dist.destroy()


def T(x: np.ndarray, device: str = "cuda:0") -> lc.Tensor:
    """An lc.Tensor of x's own dtype (lc.Tensor(x) alone makes float64 data float32)."""
    return lc.Tensor(x, device=device, dtype=str(x.dtype))


def rand(rng, n, dt):
    if np.issubdtype(np.dtype(dt), np.integer):
        return rng.integers(-1000, 1000, size=n).astype(dt)
    return rng.standard_normal(n).astype(np.float32).astype(dt)


def poison(shape, dt):
    fill = -12345 if np.issubdtype(np.dtype(dt), np.integer) else np.nan
    return T(np.full(shape, fill).astype(dt))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n", SIZES)
def test_world_size_1_every_collective(ws1, rng, dtype, n):
    dt = DTYPES[dtype]
    x = rand(rng, n, dt)
    ops = ["sum", "max", "min"] + ([] if dtype.startswith("int") else ["avg"])
    for op in ops:
        t = T(x)
        ws1.all_reduce(t, op=op)
        np.testing.assert_array_equal(t.numpy(), x, err_msg=op)
    t = T(x)
    ws1.broadcast(t, src=0)
    np.testing.assert_array_equal(t.numpy(), x)
    out = poison((n,), dt)
    assert ws1.all_gather(T(x), out=out) is out
    np.testing.assert_array_equal(out.numpy(), x)
    out = ws1.all_gather(T(x))
    assert out.device == "cuda" and out.shape == (n,)
    np.testing.assert_array_equal(out.numpy(), x)
    out = poison((n,), dt)
    ws1.reduce_scatter(T(x), out=out, op=ops[-1])
    np.testing.assert_array_equal(out.numpy(), x)
    ws1.barrier()


def test_world_size_1_shapes_and_views(ws1, rng):
    x = rand(rng, (6, 10), np.float32)
    g = ws1.all_gather(T(x).t())  # non-contiguous input
    np.testing.assert_array_equal(g.numpy(), x.T)
    o = poison((1, 10, 6), np.float32)  # the stacked out shape
    ws1.all_gather(T(x.T.copy()), out=o)
    np.testing.assert_array_equal(o.numpy()[0], x.T)
    z = lc.Tensor(np.zeros((0, 3), np.float32), device="cuda:0")
    ws1.all_reduce(z)
    assert ws1.all_gather(z).shape == (0, 3)
    o = poison((5,), np.float32)
    with pytest.raises(ValueError, match=r"\[all_gather\] rank 0: out has shape \(5,\)"):
        ws1.all_gather(T(x[0]), out=o)
    assert np.isnan(o.numpy()).all()  # a refused call writes nothing
    if lc.device_count("cuda") >= 2:  # this rank drives cuda:0
        with pytest.raises(ValueError, match=r"\[all_reduce\] rank 0: tensor is on cuda:1"):
            ws1.all_reduce(lc.Tensor(x, device="cuda:1"))


def test_world_size_1_async_handle(ws1, rng):
    x = rand(rng, 1 << 20, np.float32)
    t = T(x)
    w = ws1.all_reduce(t, op="sum", async_op=True)
    assert isinstance(w, dist.Work)
    assert w.wait() is None
    assert w.is_completed()
    np.testing.assert_array_equal(t.numpy(), x)
    w = ws1.all_gather(t, async_op=True)
    np.testing.assert_array_equal(w.wait(timeout=30).numpy(), x)
    assert w.is_completed()


def test_collective_is_ordered_on_the_current_stream(ws1, rng):
    # lc.add on a side stream writes t; the all-gather queued after it on the same stream must
    # see the sum (no host sync between them).
    a = rand(rng, 1 << 22, np.float32)
    b = rand(rng, 1 << 22, np.float32)
    with lc.Stream("cuda:0"):
        ta, tb = T(a), T(b)
        s = lc.add(ta, tb)
        w = ws1.all_gather(s, async_op=True)
        out = w.wait()
    np.testing.assert_allclose(out.numpy(), a + b, rtol=1e-6)


def test_world_size_1_debug_check_passes_matching_calls(monkeypatch, rng):
    for v in TORCHRUN_VARS:
        monkeypatch.delenv(v, raising=False)
    dist.destroy()
    dist.init(rank=0, world_size=1, debug=True)
    try:
        t = lc.Tensor(rand(rng, 5, np.float32), device="cuda:0")
        dist.all_reduce(t)
        dist.broadcast(t, src=0)
    finally:
        dist.destroy()


def test_single_process_mode(monkeypatch, rng):
    dist.destroy()
    n = lc.device_count("cuda")
    dist.init_all()
    try:
        assert dist.get_world_size() == n and dist.get_rank() == 0
        xs = [rand(rng, 1001, np.float32) for _ in range(n)]
        ts = [lc.Tensor(x, device=f"cuda:{i}") for i, x in enumerate(xs)]
        dist.all_reduce(ts, op="sum")
        want = np.sum(np.stack(xs).astype(np.float64), 0)
        for t in ts:
            np.testing.assert_allclose(t.numpy(), want, rtol=1e-5, atol=1e-5)
        outs = dist.all_gather([lc.Tensor(x, device=f"cuda:{i}") for i, x in enumerate(xs)])
        for o in outs:
            np.testing.assert_array_equal(o.numpy(), np.concatenate(xs))
        big = [rand(rng, 1001 * n, np.float32) for _ in range(n)]
        rs = dist.reduce_scatter([lc.Tensor(x, device=f"cuda:{i}") for i, x in enumerate(big)])
        full = np.sum(np.stack(big).astype(np.float64), 0)
        for i, o in enumerate(rs):
            np.testing.assert_allclose(o.numpy(), full[i * 1001:(i + 1) * 1001], rtol=1e-5,
                                       atol=1e-5)
        bs = [lc.Tensor(x, device=f"cuda:{i}") for i, x in enumerate(xs)]
        dist.broadcast(bs, src=n - 1)
        for b in bs:
            np.testing.assert_array_equal(b.numpy(), xs[n - 1])
        dist.barrier()
        with pytest.raises(ValueError, match="point-to-point"):
            dist.send(ts[0], 0)
        with pytest.raises(ValueError, match=f"list of {n} tensors"):
            dist.all_reduce(ts[0])
    finally:
        dist.destroy()


# ---- several processes ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def launch(mode: str, world: int, args: dict) -> list[subprocess.Popen]:
    port = free_port()
    procs = []
    for r in range(world):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, WORKER, mode, json.dumps(args)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env))
    return procs


def collect(p: subprocess.Popen, limit: float) -> dict:
    try:
        out, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"worker hung: {out!r} {err[-2000:]!r}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"worker printed no result (rc {p.returncode}): {out!r} {err[-2000:]!r}"
    return json.loads(lines[-1])


@pytest.mark.skipif(not two_gpus(), reason="needs two GPUs")
def test_two_processes_every_collective_against_numpy():
    world = min(lc.device_count("cuda"), 4)
    procs = launch("gpu-ops", world, {"seed": 11})
    res = [collect(p, 600) for p in procs]
    for r in res:
        assert "ok" in r, r
        assert r["ok"]["checked"] > 100
        assert r["ok"]["mismatch"] and "ranks disagree" in r["ok"]["mismatch"], r


@pytest.mark.skipif(not two_gpus(), reason="needs two GPUs")
def test_killed_rank_makes_the_other_fail_within_30s():
    t0 = time.monotonic()
    procs = launch("gpu-kill", 2, {"timeout": 10})
    r0 = collect(procs[0], 120)
    procs[1].wait(60)
    assert "ok" in r0, r0
    assert r0["ok"]["error_after"] is not None, "the survivor did not notice the dead rank"
    assert r0["ok"]["error_after"] < 30, r0
    assert "rank 0" in r0["ok"]["msg"], r0
    assert time.monotonic() - t0 < 120
