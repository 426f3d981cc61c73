"""Interop without copies: DLPack both ways (numpy here; torch / CuPy on the GPU machine),
numpy 2's __array__ copy semantics, and a policy repr that is valid Python."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import lightning_core as lc


@pytest.mark.parametrize("dt", ["float32", "float64", "float16", "int32", "int64"])
@pytest.mark.parametrize("layout", ["c", "strided", "transposed", "zero", "scalar"])
def test_dlpack_round_trips_with_numpy_share_memory(dt, layout, rng):
    base = (rng.standard_normal((5, 6)) * 10).astype(dt)
    a = {"c": base, "strided": base[::2, 1::2], "transposed": base.T, "zero": base[:0],
         "scalar": np.array(base[1, 1])}[layout]
    t = lc.from_dlpack(a)
    assert t.dtype == dt and t.shape == a.shape and t.device == "cpu"
    back = np.from_dlpack(t)
    np.testing.assert_array_equal(back, a)
    if a.size:
        assert np.shares_memory(back, a)  # numpy -> lc -> numpy, no copy anywhere


def test_dlpack_keeps_producers_alive():
    a = np.arange(10, dtype=np.float32)
    t = lc.from_dlpack(a)
    del a
    gc.collect()
    assert float(np.asarray(t).sum()) == 45.0
    t2 = lc.Tensor(np.arange(4, dtype=np.float32))
    c = np.from_dlpack(t2)
    del t2
    gc.collect()
    assert float(c.sum()) == 6.0


def test_dlpack_errors():
    with pytest.raises(TypeError, match=r"^\[from_dlpack\] expects an object with __dlpack__"):
        lc.from_dlpack([1, 2, 3])
    with pytest.raises(TypeError, match=r"^\[from_dlpack\] unsupported dtype"):
        lc.from_dlpack(np.zeros(3, np.complex64))
    with pytest.raises(ValueError, match=r"^\[Tensor.__dlpack__\] copy=True"):
        lc.Tensor(np.zeros(3, np.float32)).__dlpack__(copy=True)
    assert lc.Tensor(np.zeros(3, np.float32)).__dlpack_device__() == (1, 0)


def test_array_copy_semantics():
    a = np.arange(6, dtype=np.float32)
    t = lc.from_dlpack(a)
    v = np.asarray(t, copy=False)
    assert np.shares_memory(v, a)
    c = np.array(t, copy=True)
    assert not np.shares_memory(c, a)
    with pytest.raises(ValueError):  # (numpy itself refuses: the conversion would copy)
        np.asarray(t, dtype=np.float64, copy=False)
    np.testing.assert_array_equal(np.asarray(t, dtype=np.float64), a)


def test_execution_policy_repr_is_valid_python():
    for p in [lc.ExecutionPolicy(), lc.ExecutionPolicy(device="cpu", precision="tf32", fusion=False),
              lc.ExecutionPolicy(device="auto", upload="never", download=False, sync="none")]:
        assert eval(repr(p), {"lc": lc}) == p


@pytest.mark.gpu
def test_device_tensor_refuses_copy_free_numpy():
    t = lc.Tensor(np.ones(3, np.float32), device="cuda")
    with pytest.raises(ValueError, match=r"^\[Tensor.__array__\] .*without a copy"):
        np.asarray(t, copy=False)
    np.testing.assert_array_equal(np.asarray(t), np.ones(3))


@pytest.mark.gpu
def test_dlpack_with_torch_on_the_gpu_shares_memory():
    torch = pytest.importorskip("torch")
    x = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4)
    t = lc.from_dlpack(x)
    assert t.device == "cuda" and t.shape == (3, 4)
    y = torch.from_dlpack(t)
    assert y.data_ptr() == x.data_ptr()
    np.testing.assert_array_equal(t.numpy(), x.cpu().numpy())
    z = torch.from_dlpack(lc.Tensor(np.ones((2, 2), np.float32), device="cuda"))
    assert z.is_cuda and float(z.sum()) == 4.0


def test_cuda_array_interface_absent_on_cpu_tensors():
    t = lc.Tensor(np.ones((2, 3), np.float32))
    assert not hasattr(t, "__cuda_array_interface__")
    with pytest.raises(AttributeError, match="only defined for CUDA tensors"):
        t.__cuda_array_interface__  # noqa: B018


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32, np.int64])
def test_cuda_array_interface_v3_with_cupy_and_torch(dtype):
    a = (np.arange(24) % 7).astype(dtype).reshape(4, 6)
    t = lc.Tensor(a, device="cuda", dtype=np.dtype(dtype).name)
    cai = t.__cuda_array_interface__
    assert cai["version"] == 3 and cai["shape"] == (4, 6) and cai["strides"] is None
    assert cai["typestr"] == np.dtype(dtype).str and cai["stream"] is None
    ptr = cai["data"][0]
    cupy = pytest.importorskip("cupy")
    c = cupy.asarray(t)  # reads __cuda_array_interface__: no copy
    assert c.data.ptr == ptr
    np.testing.assert_array_equal(cupy.asnumpy(c), a)
    # A strided view exports its strides in bytes and still shares memory.
    v = t.transpose(0, 1)
    cv = cupy.asarray(v)
    assert v.__cuda_array_interface__["strides"] == (a.itemsize, 6 * a.itemsize)
    assert cv.data.ptr == ptr
    np.testing.assert_array_equal(cupy.asnumpy(cv), a.T)
    torch = pytest.importorskip("torch")
    x = torch.as_tensor(t, device="cuda")  # torch reads the interface too
    assert x.data_ptr() == ptr
    np.testing.assert_array_equal(x.cpu().numpy(), a)
