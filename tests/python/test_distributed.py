"""lc.distributed without a GPU: the environment parsing, the TCP rendezvous (several local
processes exchanging a fake 128-byte id, a rank that never shows up, a wrong world size, a port
in use), the world-size-1 collectives on CPU tensors and the argument errors. The GPU half is
tests/python/test_distributed_gpu.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import ml_dtypes
import numpy as np
import pytest

import lightning_core as lc
from lightning_core import _rendezvous as rv
from lightning_core import distributed as dist

WORKER = os.path.join(os.path.dirname(__file__), "_dist_worker.py")
DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
          "bfloat16": ml_dtypes.bfloat16, "int32": np.int32, "int64": np.int64}
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT", "LC_DISTRIBUTED_TIMEOUT", "LC_DISTRIBUTED_DEBUG")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def fake_id(seed: int) -> bytes:
    return bytes((seed + i) % 256 for i in range(128))


@pytest.fixture
def clean_env(monkeypatch):
    for v in TORCHRUN_VARS:
        monkeypatch.delenv(v, raising=False)
    dist.destroy()
    yield monkeypatch
    dist.destroy()


# ---- environment -----------------------------------------------------------------------------

def env(**kw) -> dict:
    return {k: str(v) for k, v in kw.items()}


def test_no_variables_is_rank_0_of_1():
    c = rv.resolve_config(env={})
    assert (c.rank, c.world_size, c.local_rank, c.master_addr, c.master_port) == (0, 1, 0, None,
                                                                                  None)


def test_torchrun_variables_are_read():
    c = rv.resolve_config(env=env(RANK=3, WORLD_SIZE=4, LOCAL_RANK=1, MASTER_ADDR=" node0 ",
                                  MASTER_PORT=29500))
    assert (c.rank, c.world_size, c.local_rank, c.master_addr, c.master_port) == (3, 4, 1, "node0",
                                                                                  29500)


def test_arguments_override_variables():
    c = rv.resolve_config(rank=1, world_size=2, local_rank=0, master_addr="h", master_port=7,
                          env=env(RANK=5, WORLD_SIZE=9, LOCAL_RANK=3, MASTER_ADDR="x",
                                  MASTER_PORT=1))
    assert (c.rank, c.world_size, c.local_rank, c.master_addr, c.master_port) == (1, 2, 0, "h", 7)


def test_local_rank_defaults_to_rank():
    c = rv.resolve_config(env=env(RANK=2, WORLD_SIZE=3, MASTER_ADDR="a", MASTER_PORT=5))
    assert c.local_rank == 2


@pytest.mark.parametrize("e, words", [
    (dict(RANK="x", WORLD_SIZE=2), ["RANK", "'x'", "integer"]),
    (dict(RANK=0, WORLD_SIZE="two"), ["WORLD_SIZE", "rank 0", "integer"]),
    (dict(RANK=1), ["rank 1", "WORLD_SIZE is not"]),
    (dict(WORLD_SIZE=2), ["RANK is not", "WORLD_SIZE=2"]),
    (dict(RANK=0, WORLD_SIZE=0), ["WORLD_SIZE=0", "at least 1"]),
    (dict(RANK=4, WORLD_SIZE=4), ["RANK=4", "out of range", "WORLD_SIZE=4"]),
    (dict(RANK=-1, WORLD_SIZE=4), ["RANK=-1", "out of range"]),
    (dict(RANK=1, WORLD_SIZE=2, LOCAL_RANK=2, MASTER_ADDR="a", MASTER_PORT=1),
     ["rank 1", "LOCAL_RANK=2"]),
    (dict(RANK=1, WORLD_SIZE=4, LOCAL_RANK=2, LOCAL_WORLD_SIZE=2, MASTER_ADDR="a",
          MASTER_PORT=1), ["rank 1", "LOCAL_RANK=2", "LOCAL_WORLD_SIZE=2"]),
    (dict(RANK=1, WORLD_SIZE=2, MASTER_PORT=1), ["rank 1", "MASTER_ADDR"]),
    (dict(RANK=1, WORLD_SIZE=2, MASTER_ADDR=" ", MASTER_PORT=1), ["rank 1", "MASTER_ADDR"]),
    (dict(RANK=1, WORLD_SIZE=2, MASTER_ADDR="a"), ["rank 1", "MASTER_PORT"]),
    (dict(RANK=1, WORLD_SIZE=2, MASTER_ADDR="a", MASTER_PORT="http"), ["rank 1", "MASTER_PORT",
                                                                        "'http'"]),
    (dict(RANK=1, WORLD_SIZE=2, MASTER_ADDR="a", MASTER_PORT=70000), ["rank 1",
                                                                       "MASTER_PORT=70000"]),
])
def test_bad_variables_name_the_variable_and_rank(e, words):
    with pytest.raises(ValueError) as ei:
        rv.resolve_config(env=env(**e))
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))
    assert str(ei.value).startswith("[distributed.init]")


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank=1.5"):
        rv.resolve_config(rank=1.5, world_size=2, env={})
    with pytest.raises(ValueError, match="world_size=True"):
        rv.resolve_config(rank=0, world_size=True, env={})
    with pytest.raises(ValueError, match="master_addr"):
        rv.resolve_config(rank=0, world_size=2, master_addr=5, master_port=1, env={})


def test_init_validates_before_anything(clean_env):
    clean_env.setenv("RANK", "0")
    clean_env.setenv("WORLD_SIZE", "abc")
    with pytest.raises(ValueError, match="WORLD_SIZE='abc'"):
        dist.init()
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="backend='gloo'"):
        dist.init("gloo")
    with pytest.raises(ValueError, match="timeout"):
        dist.init(rank=0, world_size=1, timeout=0)
    clean_env.setenv("LC_DISTRIBUTED_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LC_DISTRIBUTED_TIMEOUT"):
        dist.init(rank=0, world_size=1)


@pytest.mark.skipif(lc.device_count("cuda") > 0, reason="checks the no-GPU message")
def test_world_size_2_without_gpu_is_a_clear_error(clean_env):
    with pytest.raises(lc.BackendError, match=r"rank 1: WORLD_SIZE=2 needs a GPU"):
        dist.init(rank=1, world_size=2, master_addr="127.0.0.1", master_port=free_port(),
                  timeout=1)
    assert not dist.is_initialized()


# ---- rendezvous ------------------------------------------------------------------------------

def spawn(rank: int, world: int, port: int, timeout: float, seed: int = 7) -> subprocess.Popen:
    args = json.dumps({"rank": rank, "world": world, "port": port, "timeout": timeout,
                       "seed": seed})
    return subprocess.Popen([sys.executable, WORKER, "rdv", args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def result(p: subprocess.Popen, limit: float = 60) -> dict:
    out, err = p.communicate(timeout=limit)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"worker printed no result: {out!r} {err!r}"
    return json.loads(lines[-1])


@pytest.mark.parametrize("world", [2, 4])
def test_rendezvous_hands_rank0s_id_to_every_process(world):
    port = free_port()
    # the others first: they retry until rank 0 listens
    procs = [spawn(r, world, port, 30) for r in range(world - 1, -1, -1)]
    results = [result(p) for p in procs]
    for r in results:
        assert r.get("ok") == fake_id(7).hex(), r


def test_rendezvous_missing_rank_times_out_naming_it():
    port = free_port()
    t0 = time.monotonic()
    procs = [spawn(0, 3, port, 2.0), spawn(1, 3, port, 2.0)]  # rank 2 never shows up
    r0, r1 = result(procs[0]), result(procs[1])
    assert time.monotonic() - t0 < 25
    assert r0["error"] == "BackendError", r0
    assert "rank(s) [2] did not join" in r0["msg"] and f":{port}" in r0["msg"]
    assert "2 s" in r0["msg"]
    # rank 1 gets rank 0's account of it (naming the missing rank), not a vaguer timeout
    assert r1["error"] == "BackendError" and "[2]" in r1["msg"], r1
    assert r0["seconds"] < 10 and r1["seconds"] < 10


def test_rendezvous_without_rank0_times_out_naming_rank_address_and_timeout():
    port = free_port()
    r1 = result(spawn(1, 2, port, 1.5))
    assert r1["error"] == "BackendError", r1
    for w in ("rank 1", f"127.0.0.1:{port}", "1.5 s", "rank 0"):
        assert w in r1["msg"], (w, r1["msg"])
    assert r1["seconds"] < 8


def test_rendezvous_wrong_world_size_is_a_value_error_on_both_sides():
    port = free_port()
    p0 = spawn(0, 2, port, 10)
    p1 = spawn(1, 3, port, 10)  # thinks the world has 3 ranks
    r0, r1 = result(p0), result(p1)
    for r in (r0, r1):
        assert r["error"] == "ValueError", r
        assert "rank 1 has WORLD_SIZE=3" in r["msg"] and "WORLD_SIZE=2" in r["msg"]


def test_rendezvous_duplicate_rank_is_a_value_error():
    port = free_port()
    procs = [spawn(0, 3, port, 10), spawn(1, 3, port, 10), spawn(1, 3, port, 10)]
    res = [result(p) for p in procs]
    assert res[0]["error"] == "ValueError" and "rank 1 joined twice" in res[0]["msg"], res[0]


def test_rendezvous_port_in_use_is_a_backend_error():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(lc.BackendError, match=rf"rank 0: .*port {port} .*in use"):
            rv.rendezvous(0, 2, "127.0.0.1", port, 5.0, fake_id(1))
        assert time.monotonic() - t0 < 2  # at once, not after the timeout


def test_rendezvous_ignores_stray_connections():
    port = free_port()
    got = {}

    def rank0():
        got["r0"] = rv.rendezvous(0, 2, "127.0.0.1", port, 10.0, fake_id(3))

    th = threading.Thread(target=rank0)
    th.start()
    deadline = time.monotonic() + 10
    while True:  # a health check that connects and leaves
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    got["r1"] = rv.rendezvous(1, 2, "127.0.0.1", port, 10.0)
    th.join(15)
    assert got["r0"] == got["r1"] == fake_id(3)


def test_rendezvous_world_size_1_needs_no_socket():
    assert rv.rendezvous(0, 1, None, None, 1.0, fake_id(9)) == fake_id(9)
    with pytest.raises(ValueError, match="timeout"):
        rv.rendezvous(0, 1, None, None, 0, fake_id(9))


# ---- world size 1 on the CPU -----------------------------------------------------------------

@pytest.fixture
def ws1(clean_env):
    dist.init(rank=0, world_size=1, timeout=5)
    return dist


def test_world_size_1_state(ws1):
    assert ws1.is_initialized()
    assert (ws1.get_rank(), ws1.get_world_size(), ws1.get_local_rank()) == (0, 1, 0)
    with pytest.raises(ValueError, match="already initialised"):
        ws1.init()
    ws1.destroy()
    assert not ws1.is_initialized()
    with pytest.raises(ValueError, match="not initialised"):
        ws1.get_rank()
    with pytest.raises(ValueError, match=r"\[all_reduce\].*not initialised"):
        ws1.all_reduce(lc.Tensor(np.ones(3, np.float32)))


def T(x: np.ndarray, device: str = "cpu") -> lc.Tensor:
    """An lc.Tensor of x's own dtype (T(x) alone makes float64 data float32)."""
    return lc.Tensor(x, device=device, dtype=str(x.dtype))


def rand(rng, shape, dt):
    if np.issubdtype(np.dtype(dt), np.integer):
        return rng.integers(-100, 100, size=shape).astype(dt)
    return rng.standard_normal(shape).astype(np.float32).astype(dt)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape", [(), (1,), (0,), (7,), (13, 5), (2, 3, 4)])
def test_world_size_1_collectives_are_identity_on_cpu(ws1, rng, dtype, shape):
    dt = DTYPES[dtype]
    x = rand(rng, shape, dt)
    ops = ["sum", "max", "min"] + ([] if dtype.startswith("int") else ["avg"])
    for op in ops:
        t = T(x.copy())
        assert ws1.all_reduce(t, op=op) is None
        np.testing.assert_array_equal(t.numpy(), x)
    t = T(x.copy())
    ws1.broadcast(t, src=0)
    np.testing.assert_array_equal(t.numpy(), x)
    # all_gather: fresh out, and a poisoned caller's out of both accepted shapes
    out = ws1.all_gather(T(x))
    assert out.shape == ((shape[0],) + shape[1:] if shape else (1,)) and out.dtype == dtype
    np.testing.assert_array_equal(out.numpy().reshape(shape), x)
    for oshape in {out.shape, (1,) + shape}:
        poison = np.full(oshape, -7 if dtype.startswith("int") else np.nan).astype(dt)
        o = T(poison)
        assert ws1.all_gather(T(x), out=o) is o
        np.testing.assert_array_equal(o.numpy().reshape(shape), x)
    if shape:
        rs = ws1.reduce_scatter(T(x), op=ops[-1])
        assert rs.shape == shape
        np.testing.assert_array_equal(rs.numpy(), x)
    ws1.barrier()


def test_world_size_1_non_contiguous_input_is_gathered(ws1, rng):
    x = rand(rng, (6, 8), np.float32)
    view = T(x).t()  # (8, 6), not contiguous
    out = ws1.all_gather(view)
    np.testing.assert_array_equal(out.numpy(), x.T)
    rs = ws1.reduce_scatter(view)
    np.testing.assert_array_equal(rs.numpy(), x.T)


def test_world_size_1_async_handles(ws1, rng):
    x = rand(rng, (5,), np.float32)
    w = ws1.all_reduce(T(x.copy()), async_op=True)
    assert isinstance(w, ws1.Work) and w.is_completed() and w.wait() is None
    w = ws1.all_gather(T(x), async_op=True)
    assert w.is_completed()
    np.testing.assert_array_equal(w.wait().numpy(), x)
    np.testing.assert_array_equal(w.result().numpy(), x)
    assert ws1.barrier(async_op=True).wait() is None
    assert "completed=True" in repr(w)


def test_world_size_1_errors(ws1):
    t = lc.Tensor(np.ones(4, np.float32))
    with pytest.raises(TypeError, match=r"\[all_reduce\] tensor must be an lc.Tensor"):
        ws1.all_reduce(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"\[all_reduce\] op='prod'"):
        ws1.all_reduce(t, op="prod")
    with pytest.raises(TypeError, match=r"\[all_reduce\] op=\"avg\" needs a floating dtype"):
        ws1.all_reduce(lc.Tensor(np.ones(4, np.int32)), op="avg")
    with pytest.raises(ValueError, match=r"\[all_reduce\] rank 0: tensor .* not contiguous"):
        ws1.all_reduce(lc.Tensor(np.ones((3, 4), np.float32)).t())
    with pytest.raises(ValueError, match=r"\[all_gather\] rank 0: out has shape \(5,\) but the "
                                         r"input \(4,\) at world size 1 needs \(4,\) or \(1, 4\)"):
        ws1.all_gather(t, out=lc.Tensor(np.zeros(5, np.float32)))
    with pytest.raises(TypeError, match=r"\[all_gather\] rank 0: out has dtype float64"):
        ws1.all_gather(t, out=T(np.zeros(4, np.float64)))
    with pytest.raises(ValueError, match=r"\[reduce_scatter\] rank 0: out has shape \(2,\)"):
        ws1.reduce_scatter(t, out=lc.Tensor(np.zeros(2, np.float32)))
    with pytest.raises(ValueError, match=r"\[reduce_scatter\] .*shape \(\) needs a first dim"):
        ws1.reduce_scatter(lc.Tensor(np.array(1, np.float32)))
    with pytest.raises(ValueError, match=r"\[broadcast\] rank 0: src=1 is out of range"):
        ws1.broadcast(t, src=1)
    with pytest.raises(TypeError, match=r"\[broadcast\] src='0'"):
        ws1.broadcast(t, src="0")
    with pytest.raises(ValueError, match=r"\[send\] rank 0: dst=0 is this rank itself"):
        ws1.send(t, dst=0)
    with pytest.raises(ValueError, match=r"\[recv\] rank 0: src=1 is out of range"):
        ws1.recv(t, src=1)
    # nothing was written into a caller's out by a refused call
    o = lc.Tensor(np.full(5, 3.0, np.float32))
    with pytest.raises(ValueError):
        ws1.all_gather(t, out=o)
    np.testing.assert_array_equal(o.numpy(), np.full(5, 3.0, np.float32))


def test_cpu_tensors_with_more_ranks_are_refused(clean_env):
    # The state a 2-rank init leaves (the NCCL part needs GPUs): CPU tensors are refused
    # before anything reaches NCCL.
    cfg = rv.Config(1, 2, 1, "127.0.0.1", 1)
    clean_env.setattr(dist, "_state", dist._State("process", cfg, 1, 5.0, False))
    t = lc.Tensor(np.ones(4, np.float32))
    for call in (lambda: dist.all_reduce(t), lambda: dist.all_gather(t),
                 lambda: dist.broadcast(t), lambda: dist.send(t, 0), lambda: dist.recv(t, 0),
                 lambda: dist.reduce_scatter(lc.Tensor(np.ones(4, np.float32)))):
        with pytest.raises(ValueError, match=r"rank 1: .*CPU tensor; NCCL moves GPU memory only"):
            call()
    assert dist.get_world_size() == 2 and dist.get_rank() == 1


def test_importing_never_loads_nccl():
    code = ("import lightning_core as lc; i = lc.distributed.nccl_info(); "
            "assert i['name'] in ('nccl', ''), i; assert not i['loaded'], i; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_missing_nccl_names_what_was_searched(tmp_path):
    # ld.so.cache cannot be hidden from the loader, so this checks whichever case holds here:
    # loaded (with its path and version) or the message naming what was searched.
    info = dist.nccl_info(load=True)
    if info["name"] == "":
        pytest.skip("this build has no CUDA backend")
    if info["loaded"]:
        assert "nccl" in info["path"] and info["version"] >= 21000
    else:
        assert "libnccl.so.2" in info["error"] and "nvidia-nccl-cu13" in info["error"]


def test_init_all_without_gpu_is_a_value_error(clean_env):
    if lc.device_count("cuda") > 0:
        pytest.skip("checks the no-GPU message")
    with pytest.raises(ValueError, match=r"\[distributed.init_all\] no GPU"):
        dist.init_all()
    with pytest.raises(ValueError, match=r"device\(s\) \[0\] do not exist"):
        dist.init_all([0])


def test_nccl_that_cannot_be_loaded_is_a_backend_error_naming_the_search():
    # LC_NCCL_LIBRARY replaces the search with one file: a missing one shows the error path.
    code = ("import lightning_core as lc\n"
            "i = lc.distributed.nccl_info(load=True)\n"
            "if i['name'] == '': print('no-cuda'); raise SystemExit\n"
            "assert not i['loaded'] and '/nonexistent/libnccl.so.2' in i['error'], i\n"
            "assert 'nvidia-nccl-cu13' in i['error'] and 'LD_LIBRARY_PATH' in i['error'], i\n"
            "try:\n"
            "    lc._lightning_core._dist_unique_id()\n"
            "except lc.BackendError as e:\n"
            "    assert str(e).startswith('[distributed.init]') and 'NCCL could not be loaded' in str(e), e\n"
            "    print('ok')\n")
    envv = dict(os.environ, LC_NCCL_LIBRARY="/nonexistent/libnccl.so.2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=envv)
    if out.stdout.strip() == "no-cuda":
        pytest.skip("this build has no CUDA backend")
    assert out.stdout.strip() == "ok", out.stderr


def test_distributed_bench_skips_cleanly_without_gpu(tmp_path):
    if lc.device_count("cuda") > 0:
        pytest.skip("the GPU run is the lead's (benchmarks/python/distributed_bench.py)")
    bench = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "python",
                         "distributed_bench.py")
    out = subprocess.run([sys.executable, bench, "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "distributed_bench.json").read_text())
    assert doc == {"skipped": "no usable CUDA device"}
