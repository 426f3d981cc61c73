"""Device indices ("cuda:N"), lc.Device, streams and events (issue #12 item 4).

The CPU half runs everywhere: parsing, the policy's device index, lc.Device, CPU streams and
events (tokens and host time stamps), the errors. The GPU half (marker ``gpu``) checks results
computed on side streams against float64 references, event ordering and timing, the
stream-aware caching allocator, and -- with two or more GPUs -- ops, copies and sessions on
cuda:1.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

from conftest import CUDA

NGPU = lc.device_count("cuda")


# ---- parsing and the policy ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["cuda:x", "cuda:", "cuda:-1", "cuda:64", "auto:0", "cpu:1", "gpu:1a", "cuda:0:1"])
def test_bad_device_strings_raise_value_error(bad):
    with pytest.raises(ValueError):
        lc.ExecutionPolicy(device=bad)
    with pytest.raises(ValueError):
        lc.Tensor(np.ones(3, np.float32), device=bad)


def test_policy_keeps_the_device_index_and_round_trips():
    p = lc.ExecutionPolicy(device="cuda:1", download=False)
    assert p.device == "cuda:1"
    assert "device=cuda:1" in str(lc.ExecutionPolicy.__repr__(p)) or "cuda:1" in repr(p)
    q = eval(repr(p), {"lc": lc})
    assert q == p
    assert q != lc.ExecutionPolicy(device="cuda:0", download=False)
    assert q != lc.ExecutionPolicy(device="cuda", download=False)
    assert hash(q) == hash(p)
    assert lc.ExecutionPolicy(device="cuda").device == "cuda"
    assert lc.ExecutionPolicy(device="cpu:0").device == "cpu:0"


def test_cpu_zero_is_the_cpu(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    t = lc.Tensor(x, device="cpu:0")
    assert t.device == "cpu" and t.device_index == 0 and t.get_device() == -1 and t.location == "cpu"
    np.testing.assert_array_equal(t.numpy(), x)
    y = lc.vector_add(x.ravel(), x.ravel(), device="cpu:0")
    np.testing.assert_array_equal(y, (x + x).ravel())


@pytest.mark.skipif(CUDA, reason="checks the no-GPU errors")
def test_cuda_index_without_a_gpu_is_a_clear_value_error():
    with pytest.raises(ValueError, match="cuda"):
        lc.Tensor(np.ones(3, np.float32), device="cuda:1")
    with pytest.raises(ValueError):
        lc.vector_add(np.ones(3, np.float32), np.ones(3, np.float32), device="cuda:0")
    with pytest.raises(ValueError):
        lc.set_device("cuda:0")
    with pytest.raises(ValueError):
        lc.Stream()
    assert lc.device_count("cuda") == 0
    assert lc.current_device("cuda") == "cuda:0"  # the thread's choice; no CUDA call


# ---- lc.Device --------------------------------------------------------------------------------


def test_device_object():
    d = lc.Device("cuda:1")
    assert d.type == "cuda" and d.index == 1 and str(d) == "cuda:1"
    assert d == "cuda:1" and d == lc.Device("cuda", 1) and d != "cuda:0" and d != "cuda"
    assert hash(d) == hash(lc.Device("cuda", 1))
    assert lc.Device("cuda").index is None and str(lc.Device("gpu:2")) == "cuda:2"
    assert lc.Device(d) == d and repr(d) == "lc.Device('cuda:1')"
    assert lc.Device("cpu") == "cpu" and lc.Device("cpu") != 3
    assert lc.device_count("cpu") == 1 and lc.current_device("cpu") == "cpu:0"
    for bad, exc in [("tpu", ValueError), ("cuda:x", ValueError), ("cpu:1", ValueError), (3, TypeError)]:
        with pytest.raises(exc):
            lc.Device(bad)
    with pytest.raises(ValueError):
        lc.Device("cuda:1", 2)
    with pytest.raises(TypeError):
        lc.Device("cuda", "1")
    with pytest.raises(ValueError):
        lc.Device("cuda", -1)


# ---- CPU streams and events ------------------------------------------------------------------


def test_cpu_stream_is_a_token_and_ops_run_inside_it(rng):
    s = lc.Stream("cpu")
    assert s.device == "cpu" and s.query() and s.cuda_stream == 0
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    with s as entered:
        assert entered is s
        c = lc.matmul(a, b, device="cpu")
    s.synchronize()
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)
    assert lc.current_stream("cpu") == lc.default_stream("cpu")
    assert "cpu" in repr(s)


def test_cpu_events_time_host_work():
    e0 = lc.Event(enable_timing=True, device="cpu")
    e1 = lc.Event(enable_timing=True, device="cpu")
    assert e0.query()  # never recorded: nothing to wait for
    with pytest.raises(ValueError, match="recorded"):
        e0.elapsed_time(e1)
    e0.record()
    lc.matmul(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32), device="cpu")
    e1.record()
    e1.synchronize()
    assert e0.elapsed_time(e1) >= 0.0
    plain = lc.Event(device="cpu")
    plain.record()
    with pytest.raises(ValueError, match="enable_timing"):
        plain.elapsed_time(e1)
    s = lc.Stream("cpu")
    s.wait_event(e1)
    e1.wait(s)
    s.wait_stream(lc.default_stream("cpu"))


def test_record_stream_on_cpu_tensor_is_a_no_op():
    t = lc.Tensor(np.ones(4, np.float32))
    t.record_stream(lc.Stream("cpu"))


# ---- GPU --------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_tensors_know_their_index(rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    t = lc.Tensor(x, device="cuda:0")
    assert t.device == "cuda" and t.device_index == 0 and t.get_device() == 0 and t.location == "cuda:0"
    assert t.to("cuda:0") is not None and t.to("cuda").location == "cuda:0"
    np.testing.assert_array_equal(t.numpy(), x)
    assert t.__dlpack_device__() == (2, 0)
    assert lc.current_device() == "cuda:0"
    assert lc.device_count() == NGPU >= 1


@pytest.mark.gpu
@pytest.mark.skipif(NGPU != 1, reason="checks the error for a GPU that is not there")
def test_missing_gpu_index_names_the_devices_there_are():
    with pytest.raises(ValueError, match="cuda:0"):
        lc.Tensor(np.ones(3, np.float32), device="cuda:1")
    with pytest.raises(ValueError, match="does not exist"):
        lc.set_device("cuda:1")
    with pytest.raises(ValueError, match="does not exist"):
        lc.vector_add(np.ones(3, np.float32), np.ones(3, np.float32), device="cuda:1")
    with pytest.raises(ValueError):
        lc.Stream("cuda:1")
    lc.set_device(0)  # still usable
    assert lc.current_device() == "cuda:0"


@pytest.mark.gpu
def test_ops_on_a_side_stream_match_the_reference(rng):
    a = rng.standard_normal((257, 131)).astype(np.float32)
    b = rng.standard_normal((131, 67)).astype(np.float32)
    ad, bd = lc.Tensor(a, device="cuda"), lc.Tensor(b, device="cuda")
    s = lc.Stream()
    assert s.device == "cuda:0" and s.cuda_stream != 0
    assert lc.current_stream() == lc.default_stream()
    pol = lc.ExecutionPolicy(device="cuda", download=False, sync="none")
    with s:
        assert lc.current_stream() == s
        c = lc.matmul(ad, bd, policy=pol)
        d = lc.layernorm(c, policy=pol)
    assert lc.current_stream() != s
    s.synchronize()
    assert s.query()
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c.numpy(), ref, rtol=1e-4, atol=1e-4)
    assert d.location == "cuda:0"


@pytest.mark.gpu
def test_event_orders_two_streams_and_times_work(rng):
    n = 1 << 22
    x = rng.standard_normal(n).astype(np.float32)
    xd = lc.Tensor(x, device="cuda")
    pol = lc.ExecutionPolicy(device="cuda", download=False, sync="none")
    s1, s2 = lc.Stream(), lc.Stream()
    start, done = lc.Event(enable_timing=True), lc.Event(enable_timing=True)
    with s1:
        start.record()
        y = xd
        for _ in range(20):  # a chain long enough that s2 would overtake it without the event
            y = lc.vector_add(y, xd, policy=pol)
        done.record()
    s2.wait_event(done)
    with s2:
        z = lc.vector_add(y, xd, policy=pol)
        y.record_stream(s2)
    s2.synchronize()
    np.testing.assert_allclose(z.numpy(), 22.0 * x, rtol=1e-5, atol=1e-5)
    assert done.query()
    ms = start.elapsed_time(done)
    assert ms > 0.0
    # wait_stream: the same ordering without an explicit event.
    s3 = lc.Stream()
    with s1:
        w = lc.vector_add(xd, xd, policy=pol)
    s3.wait_stream(s1)
    with s3:
        v = lc.vector_add(w, xd, policy=pol)
    s3.synchronize()
    np.testing.assert_allclose(v.numpy(), 3.0 * x, rtol=1e-6, atol=1e-6)


@pytest.mark.gpu
def test_allocator_reuses_a_block_only_on_its_own_stream():
    n = 3 << 20  # a size class of its own
    s1, s2 = lc.Stream(), lc.Stream()
    pol = lc.ExecutionPolicy(device="cuda", download=False, sync="none")
    x = lc.Tensor(np.ones(n, np.float32), device="cuda")
    lc.synchronize()
    with s1:
        t = lc.vector_add(x, x, policy=pol)
    s1.synchronize()
    del t  # back to s1's free list
    cached = lc.memory_info("cuda")["cached_bytes"]
    with s2:
        u = lc.vector_add(x, x, policy=pol)  # must not take s1's block
    s2.synchronize()
    assert lc.memory_info("cuda")["cached_bytes"] >= cached
    with s1:
        w = lc.vector_add(x, x, policy=pol)  # takes it
    s1.synchronize()
    assert lc.memory_info("cuda")["cached_bytes"] < cached + 1
    np.testing.assert_array_equal(u.numpy(), np.full(n, 2.0, np.float32))
    np.testing.assert_array_equal(w.numpy(), np.full(n, 2.0, np.float32))


@pytest.mark.gpu
def test_stream_errors_and_device_mismatch():
    e = lc.Event()
    with pytest.raises(ValueError):
        e.record(lc.Stream("cpu"))
    with pytest.raises(ValueError):
        lc.Stream("cpu").wait_event(e)
    with pytest.raises(ValueError, match="enable_timing"):
        e.record()
        e.elapsed_time(e)


@pytest.mark.gpu
@pytest.mark.skipif(NGPU < 2, reason="needs two GPUs")
def test_second_gpu_ops_copies_and_sessions(rng):
    a = rng.standard_normal((65, 33)).astype(np.float32)
    b = rng.standard_normal((33, 17)).astype(np.float32)
    a1, b1 = lc.Tensor(a, device="cuda:1"), lc.Tensor(b, device="cuda:1")
    assert a1.location == "cuda:1" and lc.current_device() == "cuda:0"
    c1 = lc.matmul(a1, b1, policy=lc.ExecutionPolicy(device="cuda", download=False))
    assert c1.location == "cuda:1"
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c1.numpy(), ref, rtol=1e-4, atol=1e-4)
    a0 = a1.to("cuda:0")  # peer copy
    assert a0.location == "cuda:0"
    np.testing.assert_array_equal(a0.numpy(), a)
    with pytest.raises(ValueError, match="one device"):
        lc.matmul(a0, b1)
    with pytest.raises(ValueError):
        lc.matmul(a1, b1, policy=lc.ExecutionPolicy(device="cuda:0"))
    with lc.Device("cuda:1"):
        t = lc.Tensor(a, device="cuda")
        assert t.location == "cuda:1"
        s = lc.Stream()
        assert s.device == "cuda:1"
    assert lc.current_device() == "cuda:0"
    sess = lc.matmul2d_resident_session(a1, b1)
    out = np.empty((65, 17), np.float32)
    sess.start_into(a1, b1, out)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
def test_stream_destroyed_before_a_tensor_recorded_on_it():
    # The allocator must forget a destroyed stream: freeing the tensor afterwards records no
    # event on it (a use after free before the fix).
    x = lc.Tensor(np.ones(1000, np.float32), device="cuda")
    s = lc.Stream()
    with s:
        y = lc.vector_add(x, x, policy=lc.ExecutionPolicy(device="cuda", download=False, sync="none"))
    x.record_stream(s)
    s.synchronize()
    del s
    del x, y
    z = lc.Tensor(np.ones(1000, np.float32), device="cuda")
    lc.synchronize()
    np.testing.assert_array_equal(z.numpy(), np.ones(1000, np.float32))
