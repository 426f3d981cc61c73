"""GraphIR residency and cuda:N (docs/graph.md, "Residency and cuda:N").

Placement sees where the graph's inputs live and where its results go (the cost model charges an
upload for a host input read on the GPU, a download for a resident input read on the CPU and
for results a GPU step produces unless they stay on the device); execute() plans again, cached,
for a residency other than the plan's; a plan runs on a chosen GPU (device="cuda:1") and refuses
inputs on another GPU. The CPU-side logic runs everywhere through assume_gpu (a what-if plan);
the ``gpu`` tests need a GPU, the two-GPU ones skip with fewer than two.
"""
from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

NGPU = lc.device_count("cuda")
two_gpus = pytest.mark.skipif(NGPU < 2, reason="needs 2 GPUs")

_FAMILIES = ("matmul", "attention", "conv2d", "norm", "elementwise")


@pytest.fixture
def slow_link():
    """The built-in model with a 1 GB/s link: moving a 4 MB tensor costs 4000 us either way,
    far more than the elementwise steps on either device (the decisions below follow from
    residency alone, not from this machine's calibration)."""
    lc.set_cost_model({
        "cpu_gflops": {"matmul": 60.0, "attention": 20.0, "conv2d": 30.0, "norm": 4.0, "elementwise": 4.0},
        "gpu_gflops": {"matmul": 40000.0, "attention": 12000.0, "conv2d": 15000.0, "norm": 1000.0,
                       "elementwise": 500.0},
        "cpu_family_overhead_us": {f: 0.0 for f in _FAMILIES},
        "gpu_family_overhead_us": {f: 0.0 for f in _FAMILIES},
        "cpu_overhead_us": 0.3, "gpu_launch_us": 8.0,
        "h2d_gbps": 1.0, "d2h_gbps": 1.0, "h2d_small_gbps": 0.0, "d2h_small_gbps": 0.0})
    yield
    lc.reset_cost_model()


def chain(n=1024):
    g = lc.GraphIR()
    g.add_tensor((n, n), "float32", "x")
    g.add_node("relu", ["x"], ["a"], name="act1")
    g.add_node("vector_scale", ["a"], ["b"], {"alpha": 0.5}, name="scale")
    g.add_node("relu", ["b"], ["y"], name="act2")
    return g


def devices(s):
    return {st["device"] for st in s["steps"]}


def test_placement_follows_residency(slow_link):
    g = chain()
    host = g.plan(assume_gpu=True, fusion=False)
    assert devices(host) == {"cpu"}, host["text"]
    assert "input x in host memory: an upload charged" in host["residency"]
    assert "results in host memory" in host["residency"]
    assert host["device_index"] == -1 and host["device_name"] == "cpu"

    dev = g.plan(assume_gpu=True, fusion=False, resident={"x": "cuda:0"}, results_on_device=True)
    assert devices(dev) == {"cuda"}, dev["text"]
    assert dev["device_name"] == "cuda:0" and dev["captured"]
    assert "input x resident on cuda:0: no upload charged" in dev["residency"]
    assert "results stay on the device (no download charged)" in dev["residency"]
    assert "residency: input x resident on cuda:0" in dev["text"]
    assert all(st["device_name"] == "cuda:0" for st in dev["steps"])
    # The CPU side of the resident plan pays the input's download (4000 us), the GPU side of the
    # host plan the upload and the results' download.
    assert dev["est_cpu_us"] > host["est_cpu_us"] + 3000
    assert host["est_gpu_us"] > dev["est_gpu_us"] + 6000
    assert dev["est_plan_us"] <= min(dev["est_cpu_us"], dev["est_gpu_us"]) + 1e-6

    # Resident input, results wanted in host memory: the GPU still wins (one download either way).
    mixed = g.plan(assume_gpu=True, fusion=False, resident={"x": "cuda"})
    assert devices(mixed) == {"cuda"}, mixed["text"]
    assert "results in host memory" in mixed["residency"]

    # Host input, results wanted on the device: the GPU would pay the upload; a CPU plan's results
    # stay in host memory (as an eager CPU op's), so the CPU wins.
    up = g.plan(assume_gpu=True, fusion=False, results_on_device=True)
    assert devices(up) == {"cpu"}, up["text"]


def test_explicit_device_is_honoured_whatever_the_residency(slow_link):
    g = chain()
    s = g.plan("cpu", fusion=False, resident={"x": "cuda:0"})
    assert devices(s) == {"cpu"} and "device='cpu' requested" in s["placement_reason"]
    assert "input x resident on cuda:0" in s["residency"]
    s = g.plan("cuda", assume_gpu=True, fusion=False)
    assert devices(s) == {"cuda"} and s["device_name"] == "cuda:0"


def test_resident_inputs_choose_the_gpu(slow_link):
    g = chain()
    s = g.plan(assume_gpu=True, fusion=False, resident={"x": "cuda:2"}, results_on_device=True)
    assert s["device_name"] == "cuda:2" and s["device_index"] == 2, s["text"]
    assert "on cuda:2" in s["capture_reason"]
    assert "plan: 3 step(s) on cuda:2" in s["text"]
    s = g.plan("cuda:1", assume_gpu=True, fusion=False)
    assert s["device_name"] == "cuda:1"
    assert "device='cuda:1' requested" in s["placement_reason"]
    with lc.policy(device="cuda:3"):
        s = g.plan(assume_gpu=True, fusion=False)  # the policy's device index
    assert s["device_name"] == "cuda:3", s["text"]


# relu -> add would otherwise be one elementwise_program step: the messages name the nodes
UNFUSED = {"elementwise_chain": False}


def two_input_graph():
    g = lc.GraphIR()
    g.add_tensor((4, 8), "float32", "x")
    g.add_tensor((4, 8), "float32", "r")
    g.add_node("relu", ["x"], ["a"], name="act")
    g.add_node("add", ["a", "r"], ["y"], name="res")
    return g


@pytest.mark.parametrize("device", [None, "cpu", "cuda"])
def test_inputs_on_two_gpus_are_refused(device):
    g = two_input_graph()
    with pytest.raises(ValueError) as e:
        g.plan(device, assume_gpu=True, fusion=UNFUSED, resident={"x": "cuda:0", "r": "cuda:1"})
    m = str(e.value)
    assert "input 'r' (read by node 'res') is on cuda:1" in m
    assert "input 'x' (read by node 'act') is on cuda:0" in m
    assert '.to("cuda:0")' in m


def test_input_on_another_gpu_than_the_plan_is_refused():
    g = two_input_graph()
    with pytest.raises(ValueError) as e:
        g.plan("cuda:1", assume_gpu=True, fusion=UNFUSED, resident={"x": "cuda:0"})
    m = str(e.value)
    assert "input 'x' (read by node 'act') is on cuda:0 but the plan runs on cuda:1" in m
    assert ".to(\"cuda:1\") or plan with device='cuda:0'" in m
    s = g.plan("cuda:1", assume_gpu=True, resident={"x": "cuda:1", "r": 1}, results_on_device=True)
    assert s["device_name"] == "cuda:1"
    assert "inputs r, x resident on cuda:1" in s["residency"] or "inputs x, r resident on cuda:1" in s["residency"]


def test_bad_resident_arguments():
    g = two_input_graph()
    with pytest.raises(ValueError, match="resident input 'a' is not a graph input; the inputs are"):
        g.plan(assume_gpu=True, resident={"a": "cuda:0"})
    with pytest.raises(ValueError):
        g.plan(assume_gpu=True, resident={"x": "metal"})
    with pytest.raises(ValueError):
        g.plan(assume_gpu=True, resident={"x": "cuda:x"})
    with pytest.raises(TypeError):
        g.plan(assume_gpu=True, resident=["x"])
    with pytest.raises(TypeError):
        g.plan(assume_gpu=True, resident={"x": 1.5})
    s = g.plan("cpu", resident={"x": "cpu"})  # host memory, said explicitly
    assert "inputs x, r in host memory" in s["residency"] or "inputs r, x in host memory" in s["residency"]


def test_execute_plans_per_residency_and_caches(rng):
    # On the CPU the residency key is the results' place: lc.Tensor inputs under a policy with
    # download=False ask for device results, which a host-results plan must not answer blindly.
    g = chain(8)
    g.plan("cpu")
    x = rng.standard_normal((8, 8)).astype(np.float32)
    ref = np.maximum(0, 0.5 * np.maximum(0, x))
    xt = lc.Tensor(x)
    np.testing.assert_allclose(g.execute({"x": xt})["y"].numpy(), ref, rtol=1e-6)
    assert g.stats()["residency_plans"] == 0
    with lc.policy(download=False):
        out = g.execute({"x": xt})["y"]
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)
    assert out.device == "cpu"  # a CPU plan's results are in host memory whatever the policy
    assert g.stats()["residency_plans"] == 1
    assert "results stay on the device" in g.plan_summary()["residency"]
    np.testing.assert_allclose(g.execute({"x": x})["y"], ref, rtol=1e-6)  # numpy: host results
    assert "results in host memory" in g.plan_summary()["residency"]
    with lc.policy(download=False):
        g.execute({"x": xt})
    assert g.stats()["residency_plans"] == 1  # both residencies cached
    assert g.stats()["executions"] == 4
    g.plan("cpu")  # planning again starts over
    with lc.policy(download=False):
        g.execute({"x": xt})
    assert g.stats()["residency_plans"] == 2


def test_compile_takes_a_device_index(slow_link):
    w = np.eye(4, dtype=np.float32)

    def f(x):
        return lc.relu(lc.linear(x, w))

    c = lc.compile(f, device="cuda:1")
    x = np.ones((2, 4), np.float32)
    if NGPU < 2:
        with pytest.raises(ValueError, match="cuda"):
            c(x)
    else:
        np.testing.assert_allclose(c(x), np.ones((2, 4)), rtol=1e-6)
        assert c.graph(x).plan_summary()["device_name"] == "cuda:1"


def test_compile_plans_for_the_residency_it_traced_with(rng):
    w = rng.standard_normal((6, 4)).astype(np.float32)
    c = lc.compile(lambda x, scale: lc.relu(lc.linear(x, w)) * scale, device="cpu")
    x = rng.standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(c(lc.Tensor(x), 2.0).numpy(), 2 * np.maximum(0, x @ w.T), rtol=1e-5, atol=1e-6)
    g = c.graph(lc.Tensor(x), 2.0)
    assert g.stats()["residency_plans"] == 0  # the first plan was already this residency's
    assert g.plan_summary()["residency"].startswith("input arg0 in host memory")


# ---- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_compile_plans_for_device_inputs_at_trace(rng):
    # Big enough that the cost model keeps the chain on the GPU (at 5x8 it runs on the CPU, whose
    # results stay in host memory: see docs/graph.md, "Residency and cuda:N").
    w = rng.standard_normal((512, 512)).astype(np.float32) / np.float32(512 ** 0.5)
    c = lc.compile(lambda x: lc.gelu(lc.linear(x, w)))
    x = rng.standard_normal((257, 512)).astype(np.float32)
    xd = lc.Tensor(x, device="cuda")
    for _ in range(3):
        y = c(xd)
        assert y.device == "cuda"
        np.testing.assert_allclose(y.numpy(), lc.gelu(lc.linear(xd, w)).numpy(), rtol=2e-3, atol=2e-3)
    g = c.graph(xd)
    assert g.stats()["residency_plans"] == 0, g.plan_summary()["text"]
    s = g.plan_summary()
    assert "input arg0 resident on cuda:" in s["residency"] and "results stay on the device" in s["residency"]


def lin_graph(rng):
    w = rng.standard_normal((29, 13)).astype(np.float32)
    b = rng.standard_normal(29).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor((7, 13), "float32", "x")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_tensor(b.shape, "float32", "b", True, value=b)
    g.add_node("linear", ["x", "w", "b"], ["h"], name="fc")
    g.add_node("gelu", ["h"], ["y"], name="act")

    def eager(x):
        return lc.gelu(lc.linear(x, w, b))
    return g, eager


@pytest.mark.gpu
def test_gpu_device_resident_inputs_parity(rng):
    g, eager = lin_graph(rng)
    g.plan("cuda")
    for _ in range(3):
        x = rng.standard_normal((7, 13)).astype(np.float32)
        xd = lc.Tensor(x, device="cuda")
        y = g.execute({"x": xd})["y"]
        assert y.device == "cuda"  # every input resident: the result stays there
        ref = eager(xd)
        np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=2e-3, atol=2e-3)
        # eager mode of the same plan agrees too
        ye = g.execute({"x": xd}, execution_mode="eager")["y"]
        np.testing.assert_allclose(ye.numpy(), ref.numpy(), rtol=2e-3, atol=2e-3)
    s = g.plan_summary()
    assert "input x resident on cuda:0: no upload charged" in s["residency"], s["text"]
    assert g.stats()["residency_plans"] == 1
    # numpy again: the host plan, cached
    x = rng.standard_normal((7, 13)).astype(np.float32)
    np.testing.assert_allclose(g.execute({"x": x})["y"], eager(x), rtol=2e-3, atol=2e-3)
    assert g.stats()["residency_plans"] == 1


@pytest.mark.gpu
def test_gpu_auto_places_resident_inputs_on_the_gpu(rng, slow_link):
    g = chain(1024)
    g.plan(fusion=False)
    assert devices(g.plan_summary()) == {"cpu"}  # host inputs: the link is too slow
    x = rng.standard_normal((1024, 1024)).astype(np.float32)
    xd = lc.Tensor(x, device="cuda")
    y = g.execute({"x": xd})["y"]
    s = g.plan_summary()
    assert devices(s) == {"cuda"}, s["text"]
    assert y.device == "cuda"
    np.testing.assert_allclose(y.numpy(), np.maximum(0, 0.5 * np.maximum(0, x)), rtol=1e-6)


@pytest.mark.gpu
def test_gpu_policy_download_false_keeps_results_on_the_device(rng):
    g, eager = lin_graph(rng)
    g.plan("cuda")
    x = rng.standard_normal((7, 13)).astype(np.float32)
    with lc.policy(download=False):
        y = g.execute({"x": lc.Tensor(x)})["y"]  # a host lc.Tensor: uploaded, result stays
    assert y.device == "cuda"
    np.testing.assert_allclose(y.numpy(), eager(x), rtol=2e-3, atol=2e-3)
    assert "results stay on the device" in g.plan_summary()["residency"]


@pytest.mark.gpu
@two_gpus
def test_gpu2_graph_on_cuda1(rng):
    g, eager = lin_graph(rng)
    s = g.plan("cuda:1", strict=True)
    assert s["device_name"] == "cuda:1" and s["captured"]
    for _ in range(3):
        x = rng.standard_normal((7, 13)).astype(np.float32)
        y = g.execute({"x": lc.Tensor(x, device="cuda:1")})["y"]
        assert y.device == "cuda" and y.device_index == 1
        np.testing.assert_allclose(y.numpy(), eager(x), rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(g.execute({"x": x})["y"], eager(x), rtol=2e-3, atol=2e-3)
    assert lc.current_device("cuda").index == 0  # restored after each call
    with pytest.raises(ValueError, match=r"input 'x' \(read by node 'fc'\) is on cuda:0 but the plan runs on cuda:1"):
        g.execute({"x": lc.Tensor(np.zeros((7, 13), np.float32), device="cuda:0")})


@pytest.mark.gpu
@two_gpus
def test_gpu2_auto_follows_the_inputs_gpu(rng):
    g, eager = lin_graph(rng)
    g.plan("cuda")
    x = rng.standard_normal((7, 13)).astype(np.float32)
    for dev in (1, 0, 1):
        y = g.execute({"x": lc.Tensor(x, device=f"cuda:{dev}")})["y"]
        assert y.device_index == dev
        assert g.plan_summary()["device_name"] == f"cuda:{dev}"
        np.testing.assert_allclose(y.numpy(), eager(x), rtol=2e-3, atol=2e-3)
    assert g.stats()["residency_plans"] == 2


@pytest.mark.gpu
@two_gpus
def test_gpu2_compile_on_cuda1(rng):
    w = rng.standard_normal((16, 8)).astype(np.float32)

    def f(x):
        return lc.relu(lc.linear(x, w))

    c = lc.compile(f, device="cuda:1")
    x = rng.standard_normal((5, 8)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(c(x), np.maximum(0, x @ w.T), rtol=2e-3, atol=2e-3)
    xd = lc.Tensor(x, device="cuda:1")
    y = c(xd)
    assert y.device_index == 1
    np.testing.assert_allclose(y.numpy(), np.maximum(0, x @ w.T), rtol=2e-3, atol=2e-3)


@pytest.mark.gpu
@two_gpus
def test_gpu2_pipeline_graph_follows_the_policy_gpu(rng):
    from lightning_core import api

    api._pipeline_graphs.clear()
    x = rng.standard_normal((9, 16)).astype(np.float32)
    w1 = (rng.standard_normal((32, 16)) * 0.25).astype(np.float32)
    b1 = (rng.standard_normal(32) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((16, 32)) * 0.2).astype(np.float32)
    b2 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    pol = lc.ExecutionPolicy(device="cuda:1", precision="fp32")
    for _ in range(3):
        g = api.ffn(x, w1, b1, w2, b2, policy=pol, execution_mode="graph")
        e = api.ffn(x, w1, b1, w2, b2, policy=pol)
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    (graph,) = api._pipeline_graphs.values()
    assert graph.plan_summary()["device_name"] == "cuda:1", graph.plan_summary()["text"]
