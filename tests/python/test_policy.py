"""ExecutionPolicy parsing/validation, scoping, the process default and placement decisions.

Placement decisions use a fake cost model (lc.set_cost_model) and an injected GPU presence
(gpu_available=True/False), so they are deterministic on any machine.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import lightning_core as lc


@pytest.fixture(autouse=True)
def _restore_policy_and_model():
    default = lc.get_default_policy()
    yield
    lc.set_default_policy(default)
    lc.reset_cost_model()


# ---- parsing and validation ------------------------------------------------------------------

def test_defaults():
    p = lc.ExecutionPolicy()
    assert lc.policy_fields(p) == dict(device="auto", upload="always", download=True,
                                       sync="per_call", precision="fp32", fusion=True,
                                       autotune=True)


@pytest.mark.parametrize("kw", [
    dict(device="tpu"), dict(upload="sometimes"), dict(sync="later"), dict(precision="fp16"),
    dict(download="maybe"),
])
def test_unknown_values_raise_value_error(kw):
    with pytest.raises(ValueError):
        lc.ExecutionPolicy(**kw)


@pytest.mark.parametrize("kw, words", [
    (dict(device="cpu", upload="never"), "upload"),
    (dict(device="cpu", download=False), "download"),
    (dict(download=True, sync="none"), "sync"),
    (dict(device="cpu", precision="bf16"), "bf16"),
])
def test_invalid_combinations_raise_value_error(kw, words):
    with pytest.raises(ValueError, match=words):
        lc.ExecutionPolicy(**kw)


def test_aliases_and_string_download():
    p = lc.ExecutionPolicy(sync="batch_end", download="no", precision="float32")
    assert p.sync == "batch" and p.download is False and p.precision == "fp32"


def test_equality_and_repr():
    a = lc.ExecutionPolicy(device="cpu", precision="tf32")
    assert a == lc.ExecutionPolicy(device="cpu", precision="tf32")
    assert not (a == lc.ExecutionPolicy(device="cpu"))
    assert "precision='tf32'" in repr(a)


# ---- scoping -----------------------------------------------------------------------------------

def test_context_manager_scopes_and_restores():
    before = lc.current_policy()
    with lc.policy(device="cpu", autotune=False) as p:
        assert p.device == "cpu" and p.autotune is False
        assert lc.current_policy() == p
    assert lc.current_policy() == before


def test_nested_scopes_inherit_from_enclosing():
    with lc.policy(device="cpu"):
        with lc.policy(precision="tf32") as inner:
            assert inner.device == "cpu" and inner.precision == "tf32"
        assert lc.current_policy().precision == "fp32"
    assert lc.current_policy().device == lc.get_default_policy().device


def test_invalid_scope_raises_before_entering():
    with pytest.raises(ValueError):
        lc.policy(device="cpu", download=False)
    with pytest.raises(TypeError):
        lc.policy(devcie="cpu")


def test_scope_is_popped_on_exception():
    before = lc.current_policy()
    with pytest.raises(RuntimeError):
        with lc.policy(device="cpu", fusion=False):
            raise RuntimeError("boom")
    assert lc.current_policy() == before


def test_policy_as_decorator():
    @lc.policy(device="cpu", precision="tf32")
    def inside():
        return lc.current_policy()

    p = inside()
    assert p.device == "cpu" and p.precision == "tf32"
    assert lc.current_policy().precision == "fp32"


def test_policy_object_argument():
    given = lc.ExecutionPolicy(device="cpu", sync="batch")
    with lc.policy(given) as p:
        assert p == given


def test_scopes_are_per_thread():
    seen = {}

    def worker():
        seen["device"] = lc.current_policy().device

    with lc.policy(device="cpu"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen["device"] == lc.get_default_policy().device


def test_scopes_are_per_thread_while_both_are_open():
    """Two threads inside different scopes at the same time each see (and run under) their own."""
    a = np.ones(16, np.float32)
    both_in = threading.Barrier(2)
    seen = {}

    def worker(name, device, precision):
        with lc.policy(device=device, precision=precision):
            both_in.wait()
            seen[name] = (lc.current_policy().device, lc.current_policy().precision,
                          lc.explain(lc.vector_add, a, a))
            both_in.wait()
        seen[name + "_after"] = lc.current_policy() == lc.get_default_policy()

    ts = [threading.Thread(target=worker, args=("t1", "cpu", "tf32")),
          threading.Thread(target=worker, args=("t2", "auto", "fp32"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen["t1"][:2] == ("cpu", "tf32") and 'device="cpu"' in seen["t1"][2]
    assert seen["t2"][:2] == ("auto", "fp32") and seen["t2"][2].startswith("auto")
    assert seen["t1_after"] and seen["t2_after"]


# ---- asyncio: scopes live in a ContextVar, so tasks on one thread do not see each other's -------

def _run(coro):
    return asyncio.run(coro)


def test_scopes_do_not_leak_between_asyncio_tasks():
    a = np.ones(16, np.float32)
    log = []

    async def task(name, fields, mine, other):
        with lc.policy(**fields) as p:
            mine.set()
            await other.wait()  # the other task is inside its own scope now
            for _ in range(3):
                cur = lc.current_policy()
                reason = lc.explain(lc.vector_add, a, a)  # the op's actual placement decision
                log.append((name, cur == p, cur.device, cur.precision, reason))
                await asyncio.sleep(0)  # let the other task run in between
            with lc.policy(fusion=False) as inner:  # nesting inside a task
                await asyncio.sleep(0)
                assert lc.current_policy() == inner and inner.device == fields["device"]
            assert lc.current_policy() == p
        log.append((name, "after", lc.current_policy() == lc.get_default_policy()))

    async def main():
        ev = {"A": asyncio.Event(), "B": asyncio.Event()}
        await asyncio.gather(
            task("A", dict(device="cpu", precision="tf32"), ev["A"], ev["B"]),
            task("B", dict(device="auto", precision="fp32"), ev["B"], ev["A"]),
        )
        # The event loop's own context never saw either scope.
        assert lc.current_policy() == lc.get_default_policy()

    _run(main())
    rows = [r for r in log if r[1] != "after"]
    names = [r[0] for r in rows]
    assert len(rows) == 6 and all(x != y for x, y in zip(names, names[1:]))  # interleaved
    for name, same, device, precision, reason in rows:
        assert same, name
        if name == "A":
            assert (device, precision) == ("cpu", "tf32") and 'device="cpu"' in reason
        else:
            assert (device, precision) == ("auto", "fp32") and reason.startswith("auto")
    assert sorted(r for r in log if r[1] == "after") == [("A", "after", True), ("B", "after", True)]


def test_asyncio_task_device_scope_decides_placement():
    """A device="cuda" scope in one task makes that task's ops go to CUDA (raising without a
    GPU) while a device="cpu" task interleaved with it keeps running on the CPU."""
    a = np.ones(16, np.float32)
    out = {}

    async def on(device, key, start, other, done, other_done):
        with lc.policy(device=device):
            start.set()
            await other.wait()
            try:
                lc.vector_add(a, a)
                out[key] = lc.last_op_report()["device"]
            except ValueError as e:
                out[key] = "raised: " + str(e)
            done.set()
            await other_done.wait()  # both ops ran while both scopes were open

    async def main():
        e1, e2, d1, d2 = (asyncio.Event() for _ in range(4))
        await asyncio.gather(on("cuda", "gpu_task", e1, e2, d1, d2),
                             on("cpu", "cpu_task", e2, e1, d2, d1))

    _run(main())
    assert out["cpu_task"] == "cpu"
    if lc.cuda_available():
        assert out["gpu_task"] == "cuda"
    else:
        assert out["gpu_task"].startswith("raised: [vector_add]") and "cuda" in out["gpu_task"]


def test_asyncio_child_task_inherits_but_does_not_leak_back():
    async def child():
        inherited = lc.current_policy().device
        with lc.policy(precision="tf32"):
            await asyncio.sleep(0)
            return inherited, lc.current_policy().precision

    async def main():
        with lc.policy(device="cpu"):
            t = asyncio.create_task(child())  # copies this context: sees device="cpu"
            await asyncio.sleep(0)
            assert lc.current_policy().precision == "fp32"  # the child's scope stays in it
            return await t

    assert _run(main()) == ("cpu", "tf32")
    assert lc.current_policy() == lc.get_default_policy()


def test_policy_decorator_on_async_function():
    @lc.policy(device="cpu", precision="tf32")
    async def scoped():
        await asyncio.sleep(0)
        return lc.current_policy()

    async def main():
        other = asyncio.create_task(unscoped())
        p = await scoped()
        return p, await other

    async def unscoped():
        await asyncio.sleep(0)
        return lc.current_policy()

    p, q = _run(main())
    assert (p.device, p.precision) == ("cpu", "tf32")
    assert q == lc.get_default_policy()


def test_default_policy_applies_outside_every_scope_in_tasks():
    async def main():
        with lc.policy(device="cpu"):
            pass
        return lc.current_policy()

    lc.set_default_policy(precision="tf32")
    assert _run(main()).precision == "tf32"


def test_set_default_policy_by_fields_and_object():
    p = lc.set_default_policy(device="cpu", autotune=False)
    assert lc.get_default_policy() == p and p.autotune is False
    lc.set_default_policy(lc.ExecutionPolicy(precision="tf32"))
    assert lc.get_default_policy().precision == "tf32"
    with pytest.raises(ValueError):
        lc.set_default_policy(device="cpu", upload="never")
    with pytest.raises(TypeError):
        lc.set_default_policy(lc.ExecutionPolicy(), device="cpu")


def test_scoped_policy_reaches_ops():
    a = np.ones((4, 4), np.float32)
    with lc.policy(device="cpu"):
        lc.matmul2d(a, a)
        assert lc.last_op_report()["device"] == "cpu"
        reason = lc.explain(lc.matmul2d, a, a)
    assert "device=\"cpu\"" in reason


def test_explain_restores_switch():
    a = np.ones((2, 2), np.float32)
    lc.explain(lc.matmul2d, a, a, device="cpu")
    assert lc._lightning_core._explain_enabled() is False


# ---- placement (fake cost model, injected GPU presence) ------------------------------------

FAKE = dict(
    cpu_gflops=dict(matmul=100.0, attention=50.0, conv2d=50.0, norm=10.0, elementwise=10.0),
    gpu_gflops=dict(matmul=10000.0, attention=5000.0, conv2d=5000.0, norm=500.0, elementwise=500.0),
    cpu_family_overhead_us=dict(matmul=0.0, attention=0.0, conv2d=0.0, norm=0.0, elementwise=0.0),
    gpu_family_overhead_us=dict(matmul=0.0, attention=0.0, conv2d=0.0, norm=0.0, elementwise=0.0),
    cpu_overhead_us=1.0, gpu_launch_us=12.0, h2d_gbps=10.0, d2h_gbps=10.0,
    h2d_latency_us=0.0, d2h_latency_us=0.0,
    conv_cpu_crossover_macs=260000.0,
)

# A fitted (calibrated) model shaped like the H100 machine of the benchmark report: a 16-core
# host whose multi-threaded GEMM reaches ~500 GFLOP/s, a slow CPU conv at small sizes, pageable
# one-shot transfers at ~10 GB/s with a few µs latency per copy.
H100_LIKE = dict(
    cpu_gflops=dict(matmul=500.0, attention=40.0, conv2d=3.0, norm=10.0, elementwise=30.0),
    gpu_gflops=dict(matmul=30000.0, attention=8000.0, conv2d=10000.0, norm=800.0, elementwise=600.0),
    cpu_family_overhead_us=dict(matmul=8.0, attention=1.0, conv2d=10.0, norm=2.0, elementwise=3.0),
    gpu_family_overhead_us=dict(matmul=6.0, attention=2.0, conv2d=2.0, norm=0.0, elementwise=0.0),
    cpu_overhead_us=0.5, gpu_launch_us=8.0, h2d_gbps=10.0, d2h_gbps=10.0,
    h2d_latency_us=3.0, d2h_latency_us=4.0,
    # One bandwidth for every copy size: set, so a model calibrated on a GPU machine (which
    # measures a separate small-copy bandwidth) does not leak into these fixed numbers.
    h2d_small_gbps=0.0, d2h_small_gbps=0.0,
    conv_crossover_explicit=False, calibrated=True, gpu_calibrated=True,
)


@pytest.fixture
def fake_model():
    lc.set_cost_model(FAKE)
    assert lc.cost_model_fixed()
    yield
    lc.reset_cost_model()


def test_tiny_matmul_stays_on_cpu(fake_model):
    r = lc.placement("matmul2d", (8, 8), (8, 8), gpu_available=True)
    assert r["device"] == "cpu"
    assert r["cpu_us"] < r["gpu_us"]
    assert "auto: estimated CPU" in r["reason"] and "-> cpu" in r["reason"]


def test_large_matmul_goes_to_gpu(fake_model):
    r = lc.placement("matmul2d", (2048, 2048), (2048, 2048), gpu_available=True)
    assert r["device"] == "cuda" and "-> cuda" in r["reason"]


def test_data_on_gpu_stays_there(fake_model):
    r = lc.placement("matmul2d", (4, 4), (4, 4), gpu_available=True, inputs_on_gpu=True)
    assert r["device"] == "cuda" and "already live on the GPU" in r["reason"]


def test_no_gpu_means_cpu(fake_model):
    r = lc.placement("matmul2d", (4096, 4096), (4096, 4096), gpu_available=False)
    assert r["device"] == "cpu" and r["reason"] == "auto: no CUDA device, so the CPU"


def test_explicit_devices(fake_model):
    assert lc.placement("matmul2d", (4, 4), (4, 4), device="cuda", gpu_available=True)["device"] == "cuda"
    assert lc.placement("matmul2d", (4096, 4096), (4096, 4096), device="cpu",
                        gpu_available=True)["device"] == "cpu"
    with pytest.raises(ValueError, match="cuda"):
        lc.placement("matmul2d", (4, 4), (4, 4), device="cuda", gpu_available=False)


def test_conv_crossover_knob_decides(fake_model):
    # 1x8x16x16 input, 8x8x3x3 weight, pad 1: 8*8*9*256 = 147456 MACs < 260000 -> CPU.
    small = lc.placement("conv2d_nchw", (1, 8, 16, 16), (8, 8, 3, 3), padding=1, gpu_available=True)
    assert small["device"] == "cpu" and "CJ_CONV2D_CPU_CROSSOVER_MACS" in small["reason"]
    lc.set_cost_model(dict(conv_cpu_crossover_macs=1000.0, gpu_launch_us=0.0))
    big = lc.placement("conv2d_nchw", (1, 64, 64, 64), (64, 64, 3, 3), padding=1, gpu_available=True)
    assert big["device"] == "cuda"


def test_upload_never_with_host_data_runs_on_cpu(fake_model):
    p = lc.ExecutionPolicy(upload="never")
    r = lc.placement("matmul2d", (4096, 4096), (4096, 4096), policy=p, gpu_available=True)
    assert r["device"] == "cpu" and "upload" in r["reason"]


def test_changing_the_model_moves_the_crossover(fake_model):
    shapes = ((256, 256), (256, 256))
    assert lc.placement("matmul2d", *shapes, gpu_available=True)["device"] == "cuda"
    lc.set_cost_model(dict(gpu_launch_us=1e6))  # a very slow GPU round trip
    assert lc.placement("matmul2d", *shapes, gpu_available=True)["device"] == "cpu"


def test_placement_accepts_arrays_and_all_families(fake_model):
    a = np.zeros((16, 32), np.float32)
    assert lc.placement("linear", a, np.zeros((8, 32), np.float32), gpu_available=False)["family"] == "matmul"
    assert lc.placement("attention2d", (128, 64), (128, 64), (128, 64), gpu_available=True)["family"] == "attention"
    assert lc.placement("layernorm", (64, 64), gpu_available=True)["family"] == "norm"
    assert lc.placement("vector_add", (1024,), (1024,), gpu_available=True)["family"] == "elementwise"
    assert isinstance(lc.explain_placement("softmax", (4, 4), gpu_available=True), str)
    with pytest.raises(ValueError):
        lc.placement("no_such_op", (1,), gpu_available=True)
    with pytest.raises(ValueError):
        lc.placement("matmul2d", (4,), (4, 4), gpu_available=True)


def test_cost_model_roundtrip_and_validation():
    lc.set_cost_model(dict(gpu_launch_us=7.5, cpu_gflops=dict(matmul=123.0)))
    m = lc.cost_model()
    assert m["gpu_launch_us"] == 7.5 and m["cpu_gflops"]["matmul"] == 123.0
    with pytest.raises(ValueError):
        lc.set_cost_model(dict(nonsense=1.0))
    with pytest.raises(ValueError):
        lc.set_cost_model(dict(cpu_gflops=dict(matmul=-1.0)))
    with pytest.raises(ValueError):
        lc.set_cost_model(dict(h2d_small_gbps=-1.0))
    lc.reset_cost_model()
    assert not lc.cost_model_fixed()


def test_small_copies_cost_more_with_a_small_copy_bandwidth(h100_like):
    # 256^3 GEMM one-shot: three 256 KiB copies, each on the direct (unstaged) path.
    base = lc.placement("matmul2d", (256, 256), (256, 256), gpu_available=True)
    lc.set_cost_model(dict(H100_LIKE, h2d_small_gbps=2.0, d2h_small_gbps=2.0,
                           small_copy_bytes=256 * 1024))
    m = lc.cost_model()
    assert m["h2d_small_gbps"] == 2.0 and m["small_copy_bytes"] == 256 * 1024
    slow = lc.placement("matmul2d", (256, 256), (256, 256), gpu_available=True)
    # 768 KiB at 2 GB/s instead of 10 GB/s: ~315 us more on the GPU side, CPU side unchanged
    assert slow["transfer_us"] > base["transfer_us"] + 250
    assert slow["cpu_us"] == pytest.approx(base["cpu_us"])
    assert slow["device"] == "cpu"


@pytest.fixture
def h100_like():
    lc.set_cost_model(H100_LIKE)
    yield
    lc.reset_cost_model()


@pytest.mark.parametrize("op, shapes, kw, device", [
    ("matmul2d", [(256, 256), (256, 256)], {}, "cpu"),       # the fast multi-threaded CPU GEMM wins
    ("matmul2d", [(896, 896), (896, 896)], {}, "cuda"),
    ("attention2d", [(8, 32)] * 3, {}, "cpu"),
    ("attention2d", [(8, 16)] * 3, {}, "cpu"),
    ("attention2d", [(12, 12)] * 3, {}, "cpu"),
    ("vector_add", [(1 << 16,), (1 << 16,)], {}, "cpu"),
    ("vector_add", [(1 << 20,), (1 << 20,)], {}, "cpu"),
    ("conv2d_nchw", [(2, 3, 16, 16), (16, 3, 3, 3)], dict(padding=1), "cuda"),  # model, not crossover
    ("linear", [(4096, 1024), (1024, 1024)], {}, "cuda"),    # transfer-bound, still faster on the GPU
])
def test_fitted_model_one_shot_cases(h100_like, op, shapes, kw, device):
    r = lc.placement(op, *shapes, gpu_available=True, **kw)
    assert r["device"] == device, r["reason"]
    assert "[calibrated]" in r["reason"]
    assert (r["cpu_us"] < r["gpu_us"]) == (device == "cpu")


def test_fitted_model_gpu_estimate_adds_up(h100_like):
    r = lc.placement("matmul2d", (100, 100), (100, 100), gpu_available=True)
    # 2 uploads of 40 KB (3 us latency each), one 40 KB download (4 us).
    assert r["transfer_us"] == pytest.approx(2 * 3 + 80000 / 1e4 + 4 + 40000 / 1e4)
    assert r["gpu_us"] == pytest.approx(8 + 6 + r["transfer_us"] + 2e6 / 3e7)
    assert r["cpu_us"] == pytest.approx(0.5 + 8 + 2e6 / 5e5)


def test_fitted_model_resident_data_stays_on_gpu(h100_like):
    r = lc.placement("attention2d", (8, 32), (8, 32), (8, 32), gpu_available=True, inputs_on_gpu=True)
    assert r["device"] == "cuda" and "already live on the GPU" in r["reason"]


def test_fitted_model_transfers_dominate(h100_like):
    lc.set_cost_model(dict(h2d_gbps=0.5, d2h_gbps=0.5, gpu_gflops=dict(matmul=1e9)))
    r = lc.placement("matmul2d", (1024, 1024), (1024, 1024), gpu_available=True)
    assert r["device"] == "cpu" and r["transfer_us"] > r["cpu_us"]


def test_explicit_conv_crossover_wins_over_fitted_model(h100_like, monkeypatch):
    shapes = ((2, 3, 16, 16), (16, 3, 3, 3))
    assert lc.placement("conv2d_nchw", *shapes, padding=1, gpu_available=True)["device"] == "cuda"
    lc.set_cost_model(dict(conv_cpu_crossover_macs=260000.0))  # explicit -> the original's rule
    assert lc.cost_model()["conv_crossover_explicit"]
    r = lc.placement("conv2d_nchw", *shapes, padding=1, gpu_available=True)
    assert r["device"] == "cpu" and "CJ_CONV2D_CPU_CROSSOVER_MACS" in r["reason"]
    # Through the environment: the knob marks the crossover explicit when the model is rebuilt.
    lc.reset_cost_model()
    monkeypatch.setenv("CJ_CONV2D_CPU_CROSSOVER_MACS", "260000")
    lc.reset_cost_model()
    assert lc.cost_model()["conv_crossover_explicit"]
    monkeypatch.delenv("CJ_CONV2D_CPU_CROSSOVER_MACS")
    lc.reset_cost_model()
    assert not lc.cost_model()["conv_crossover_explicit"]


def test_family_overhead_knobs(monkeypatch):
    monkeypatch.setenv("LC_CPU_OVERHEAD_US_MATMUL", "9.5")
    monkeypatch.setenv("LC_GPU_OVERHEAD_US_ATTENTION", "3.25")
    monkeypatch.setenv("LC_H2D_LATENCY_US", "5")
    lc.reset_cost_model()
    m = lc.cost_model()
    assert m["cpu_family_overhead_us"]["matmul"] == 9.5
    assert m["gpu_family_overhead_us"]["attention"] == 3.25
    assert m["h2d_latency_us"] == 5.0
    for k in ("LC_CPU_OVERHEAD_US_MATMUL", "LC_GPU_OVERHEAD_US_ATTENTION", "LC_H2D_LATENCY_US"):
        monkeypatch.delenv(k)
    lc.reset_cost_model()


def test_cost_model_rejects_negative_overheads():
    with pytest.raises(ValueError):
        lc.set_cost_model(dict(cpu_family_overhead_us=dict(matmul=-1.0)))
    with pytest.raises(ValueError):
        lc.set_cost_model(dict(h2d_latency_us=-1.0))
    lc.reset_cost_model()


def test_auto_on_this_machine_is_consistent():
    # Whatever the machine, a tiny op on numpy data with device="auto" runs on the CPU.
    a = np.ones((4, 4), np.float32)
    reason = lc.explain(lc.matmul2d, a, a, device="auto")
    assert lc.last_op_report()["device"] == "cpu"
    assert reason.startswith("auto:")


@pytest.mark.gpu
def test_gpu_auto_large_goes_to_gpu_and_resident_stays():
    a = np.ones((2048, 2048), np.float32)
    lc.matmul2d(a, a, device="auto")
    assert lc.last_op_report()["device"] == "cuda"
    t = lc.Tensor(np.ones((4, 4), np.float32), device="cuda")
    lc.matmul2d(t, t, device="auto")
    assert lc.last_op_report()["device"] == "cuda"


# ---- pipelines under "auto": one device for the whole chain (lc.api._chain_device) ----------
def test_auto_chain_follows_its_heaviest_block(h100_like, monkeypatch):
    calls = []

    def fake_gpu(ops, shapes, policy, on_gpu, _gpu_available, host=False, device=None):
        calls.extend(ops)
        return lc._lightning_core._chain_device(ops, shapes, policy, on_gpu, True, host, device)

    monkeypatch.setattr(lc.api, "_chain_query", fake_gpu)
    base = lc.current_policy()
    x = np.zeros((1024, 1024), np.float32)
    w = np.zeros((1024, 1024), np.float32)
    # On its own the layernorm of host data stays on the CPU ...
    assert lc.placement("layernorm", x.shape, gpu_available=True)["device"] == "cpu"
    # ... but in LN -> projection the projection goes to the GPU, so the chain does.
    assert lc.api._chain_device([("layernorm", (x,)), ("linear", (x, w))], base) == "cuda"
    assert calls == ["layernorm", "linear"]
    # The native query agrees with the op-level rule block by block.
    for op, shapes in (("layernorm", [[1024, 1024]]), ("linear", [[1024, 1024], [1024, 1024]]),
                       ("layernorm", [[4, 8]])):
        one = lc._lightning_core._chain_device([op], [shapes], base, False, True)
        assert one == lc.placement(op, *shapes, gpu_available=True)["device"]
    # No GPU: always the CPU; data already on the GPU: the GPU.
    assert lc._lightning_core._chain_device(["linear"], [[[1024, 1024], [1024, 1024]]], base,
                                            False, False) == "cpu"
    assert lc._lightning_core._chain_device(["layernorm"], [[[4, 8]]], base, True, True) == "cuda"
    with pytest.raises(ValueError):
        lc._lightning_core._chain_device(["linear"], [], base, False, True)
    # A tiny chain stays on the CPU; shapes given as tuples work too.
    t = np.zeros((4, 8), np.float32)
    assert lc.api._chain_device([("layernorm", (t,)), ("linear", ((4, 8), (8, 8)))], base) == "cpu"
    # An odd shape leaves the decision to the ops (which raise with their own message).
    assert lc.api._chain_device([("linear", (None, w)), ("linear", ((1,), w))], base) in ("auto", "cpu")
    inner, last = lc.api._chain_policy("layernorm_linear", "auto", None, [("layernorm", (x,)), ("linear", (x, w))])
    assert inner.device == "cuda" and last.device == "cuda" and inner.download is False
    # Explicit devices are never second-guessed.
    inner, last = lc.api._chain_policy("ffn", "cpu", None, [("linear", (x, w))])
    assert inner.device == "cpu" and last.device == "cpu"


def test_auto_reason_without_a_gpu_is_a_few_words():
    # explain() on a machine without a usable GPU: the cause in a few words, not the backend's
    # whole message (which tells the caller to use "auto" when they did).
    if lc.cuda_available():
        pytest.skip("this machine has a GPU")
    a = np.ones((4, 4), np.float32)
    reason = lc.explain(lc.matmul2d, a, a)
    assert reason.startswith("auto: no CUDA device") and len(reason) < 80, reason
    assert '"auto"' not in reason
