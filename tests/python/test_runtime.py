"""Runtime queries: backend_name, cuda_available, metal_available, build_info, available_devices."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import CUDA, backends


def test_backend_name():
    name = lc.backend_name()
    assert name in ("cpu", "cuda")
    assert name == ("cuda" if lc.cuda_available() else "cpu")


def test_availability_flags():
    assert isinstance(lc.cuda_available(), bool)
    assert lc.metal_available() is False


def test_available_devices():
    devs = lc.available_devices()
    assert devs[0] == "cpu"
    assert ("cuda" in devs) == lc.cuda_available()
    assert "metal" not in devs
    assert devs == backends  # the test suite runs on exactly these


def test_build_info_keys():
    info = lc.build_info()
    for key in (
        "version", "cuda_compiled", "metal_compiled", "cpu_blas",
        "cpu_available", "cpu_device", "cuda_available", "cuda_device",
        "metal_available", "metal_device",
    ):
        assert key in info, key
        assert isinstance(info[key], str) and info[key], key
    assert info["version"] == lc.__version__
    assert info["cpu_available"] == "yes"
    assert info["metal_available"] == "no" and info["metal_compiled"] == "no"
    assert info["cuda_available"] == ("yes" if lc.cuda_available() else "no")
    if info["cuda_compiled"] == "no":
        assert not lc.cuda_available()
    if not lc.cuda_available():
        assert info["cuda_device"]  # says why


def test_synchronize_is_harmless():
    lc.synchronize()


def test_last_op_report():
    lc.relu(np.ones(3, np.float32), "cpu")
    rep = lc.last_op_report()
    assert rep["op"] == "relu" and rep["device"] == "cpu" and rep["path"] == "direct"


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_cuda_request_without_gpu_is_clear():
    with pytest.raises(ValueError) as ei:
        lc.matmul2d(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), "cuda")
    msg = str(ei.value)
    assert msg.startswith("[matmul2d]") and "cuda" in msg and '"cpu"' in msg


def test_per_call_policy_and_default_policy():
    x = np.array([-1, 2], np.float32)
    p = lc.ExecutionPolicy(device="cpu")
    assert p.device == "cpu" and p.download is True
    np.testing.assert_array_equal(lc.relu(x, policy=p), [0, 2])
    before = lc.get_default_policy()
    lc.set_default_policy(p)
    try:
        assert lc.current_policy() == p
        np.testing.assert_array_equal(lc.relu(x), [0, 2])
        assert lc.last_op_report()["device"] == "cpu"
    finally:
        lc.set_default_policy(before)
    assert lc.get_default_policy() == before


@pytest.mark.gpu
def test_cuda_out_of_memory_raises_memoryerror_and_runtime_recovers():
    """Allocating beyond the card raises MemoryError naming the fix; ops keep working after."""
    before = lc.memory_info("cuda")
    assert before["known"] and before["total_bytes"] > 0
    too_big = before["total_bytes"] * 2 // 4 + (1 << 30)  # float32 elements: 2x the card
    with pytest.raises(MemoryError) as err:
        lc.Tensor.empty((too_big,), device="cuda")
    msg = str(err.value)
    assert "out of device memory" in msg and "device=\"cpu\"" in msg
    lc.empty_cache()
    x = lc.Tensor(np.arange(1000, dtype=np.float32), device="cuda")
    y = lc.vector_add(x, x)
    lc.synchronize()
    np.testing.assert_array_equal(y.numpy(), 2 * np.arange(1000, dtype=np.float32))
    after = lc.memory_info("cuda")
    assert after["free_bytes"] > 0


def test_memory_info_and_empty_cache_on_cpu_are_harmless():
    info = lc.memory_info("cpu")
    assert info["device"] == "cpu" and info["known"] is False
    lc.empty_cache()  # no device: nothing to return, no error


def test_environment_report_runs_without_a_gpu():
    # `python -m lightning_core`: versions, devices (and, without a GPU, why in a few words),
    # cache path and the knobs that are set.
    import os
    import subprocess
    import sys
    env = dict(os.environ, LC_REPORT_TEST_KNOB="7")
    r = subprocess.run([sys.executable, "-m", "lightning_core"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("lightning_core ") and "devices:" in out and "auto-tune cache:" in out
    assert "LC_REPORT_TEST_KNOB=7" in out
    cuda_line = next(line for line in out.splitlines() if line.strip().startswith("cuda "))
    assert len(cuda_line) < 200  # a short reason, not the 250-character driver error
