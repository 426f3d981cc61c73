"""lc.Tensor: construction, dtype, shapes/strides, numpy interop both ways, views, devices."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import CUDA, backends

F32 = np.float32


# ---- construction ---------------------------------------------------------------------------


def test_construct_from_numpy_copies():
    a = np.arange(12, dtype=F32).reshape(3, 4)
    t = lc.Tensor(a)
    assert t.shape == (3, 4) and t.ndim == 2 and t.size == 12 and t.nbytes == 48
    assert t.strides == (4, 1)  # elements, not bytes
    assert t.dtype == "float32" and t.device == "cpu"
    assert t.is_contiguous() and len(t) == 3
    a[0, 0] = 99  # the constructor copied: the tensor does not see later writes
    assert np.asarray(t)[0, 0] == 0
    assert "[[ 0.,  1.,  2.,  3.]," in repr(t) and "float32" in repr(t)  # small: the values


@pytest.mark.parametrize(
    "data,shape",
    [([1.0, 2.0, 3.0], (3,)), ([[1, 2], [3, 4]], (2, 2)), (np.float64(2.5), ()), (np.zeros((2, 0, 3)), (2, 0, 3))],
)
def test_construct_from_array_likes(data, shape):
    t = lc.Tensor(data)
    assert t.shape == shape and t.dtype == "float32"
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=F32))


def test_construct_converts_dtype():
    a = np.array([0.1, 1e-3, 3.0], dtype=np.float64)
    t = lc.Tensor(a)  # default float32
    assert t.dtype == "float32" and t.numpy().dtype == F32
    np.testing.assert_array_equal(t.numpy(), a.astype(F32))
    t64 = lc.Tensor(a, dtype="float64")
    assert t64.dtype == "float64" and t64.numpy().dtype == np.float64
    np.testing.assert_array_equal(t64.numpy(), a)
    assert lc.Tensor(a, dtype="f32").dtype == "float32"


def test_construct_from_non_contiguous_numpy():
    a = np.arange(30, dtype=F32).reshape(5, 6)[::2, 1::2]
    t = lc.Tensor(a)
    assert t.is_contiguous() and t.shape == (3, 3)
    np.testing.assert_array_equal(t.numpy(), a)


def test_tensor64():
    assert hasattr(lc, "Tensor64")
    t = lc.Tensor64(np.arange(4.0))
    assert isinstance(t, lc.Tensor) and t.dtype == "float64"
    np.testing.assert_array_equal(np.asarray(t), np.arange(4.0))
    # float64 tensors are inputs of the ops that compute in float64 (the elementwise family, on
    # the CPU); integer tensors are not
    np.testing.assert_array_equal(np.asarray(lc.relu(t, "cpu")), np.arange(4.0))
    with pytest.raises(TypeError, match=r"^\[relu\].*int64"):
        lc.relu(t.astype("int64"))


def test_empty():
    t = lc.Tensor.empty([2, 3])
    assert t.shape == (2, 3) and t.dtype == "float32" and t.device == "cpu"
    assert lc.Tensor.empty([4], dtype="float64").dtype == "float64"
    assert lc.Tensor.empty([0, 5]).size == 0


def test_construct_from_tensor():
    t = lc.Tensor(np.ones((2, 2), F32))
    u = lc.Tensor(t)
    np.asarray(u)[0, 0] = 5
    assert np.asarray(t)[0, 0] == 1  # a copy
    d = lc.Tensor(t, dtype="float64")  # another dtype: a converted copy
    assert d.dtype == "float64" and np.asarray(d)[0, 0] == 1.0


# ---- errors ---------------------------------------------------------------------------------


def test_bad_dtype():
    with pytest.raises(TypeError, match=r"^\[Tensor\].*float32"):
        lc.Tensor(np.ones(3), dtype="int8")


def test_unknown_device_foo():
    with pytest.raises(ValueError) as ei:
        lc.Tensor(np.ones(3, F32), device="foo")
    msg = str(ei.value)
    assert msg.startswith("[Tensor]") and "foo" in msg
    assert '"cpu"' in msg and '"cuda"' in msg  # names the devices it accepts


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_cuda_unavailable_is_value_error():
    with pytest.raises(ValueError) as ei:
        lc.Tensor(np.ones(3, F32), device="cuda")
    msg = str(ei.value)
    assert msg.startswith("[Tensor]") and "not available" in msg
    assert 'Available devices: "cpu"' in msg
    with pytest.raises(ValueError, match="not available"):
        lc.Tensor(np.ones(3, F32)).to("cuda")
    with pytest.raises(ValueError, match="not available"):
        lc.Tensor.empty([3], device="cuda")


def test_metal_is_value_error():
    with pytest.raises(ValueError) as ei:
        lc.Tensor(np.ones(3, F32), device="metal")
    msg = str(ei.value)
    assert msg.startswith("[Tensor]") and "metal" in msg and '"cpu"' in msg
    with pytest.raises(ValueError, match="metal"):
        lc.relu(np.ones(3, F32), device="metal")


def test_len_of_0d_raises():
    with pytest.raises(TypeError):
        len(lc.Tensor(np.float32(1.0)))


# ---- numpy interop ------------------------------------------------------------------------


def test_asarray_is_zero_copy_both_ways():
    t = lc.Tensor(np.zeros((3, 4), F32))
    a = np.asarray(t)
    assert a.dtype == F32 and a.shape == (3, 4) and a.flags.c_contiguous
    a[1, 2] = 7.0  # numpy -> tensor
    assert t.numpy()[1, 2] == 7.0
    assert np.shares_memory(a, t.numpy())
    # tensor -> numpy: an op writing into the tensor is seen through the earlier view
    lc.vector_scale_into(t, 2.0, t)
    assert a[1, 2] == 14.0


def test_numpy_view_keeps_tensor_alive():
    a = lc.Tensor(np.arange(5, dtype=F32)).numpy()
    import gc

    gc.collect()
    np.testing.assert_array_equal(a, np.arange(5, dtype=F32))


def test_array_interface_and_dunder_array():
    t = lc.Tensor(np.arange(6, dtype=F32).reshape(2, 3))
    ai = t.__array_interface__
    assert ai["shape"] == (2, 3) and ai["strides"] == (12, 4) and ai["typestr"] == "<f4"
    d = np.array(t, dtype=np.float64)
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d, np.arange(6).reshape(2, 3))
    c = np.array(t, copy=True)
    c[0, 0] = 100
    assert t.numpy()[0, 0] == 0


def test_tensor_from_numpy_shares_memory():
    if not hasattr(lc.Tensor, "from_numpy"):
        pytest.skip("Tensor.from_numpy not in this build")
    a = np.arange(6, dtype=F32)
    t = lc.Tensor.from_numpy(a)
    a[2] = 50
    assert t.numpy()[2] == 50


# ---- views ----------------------------------------------------------------------------------


def test_view_and_strides():
    base = np.arange(20, dtype=F32).reshape(4, 5)
    t = lc.Tensor(base)
    v = t._view([2, 3], [5, 1], 6)  # rows 1..2, cols 1..3
    assert v.shape == (2, 3) and v.strides == (5, 1) and not v.is_contiguous()
    np.testing.assert_array_equal(v.numpy(), base[1:3, 1:4])
    # a view shares memory: writing through it changes the base
    np.asarray(v)[0, 0] = -1
    assert np.asarray(t)[1, 1] == -1
    # negative and zero strides
    r = t._view([5], [-1], 4)
    np.testing.assert_array_equal(r.numpy(), base[0, ::-1])
    b = t._view([3, 5], [0, 1], 0)
    np.testing.assert_array_equal(b.numpy(), np.broadcast_to(np.asarray(t)[0], (3, 5)))


def test_view_bounds_checked():
    t = lc.Tensor(np.arange(12, dtype=F32))
    with pytest.raises(ValueError, match=r"^\[TensorView\]"):
        t._view([12], [1], 1)
    with pytest.raises(ValueError, match=r"^\[TensorView\]"):
        t._view([4], [-1], 2)
    with pytest.raises(ValueError, match=r"^\[TensorView\]"):
        t._view([2, 2], [1], 0)
    t._view([12], [1], 0)  # exactly fits
    t._view([4], [-3], 11)


def test_view_of_wrapped_numpy_is_bounds_checked():
    """TensorView over a numpy array (borrowed memory) must not reach past its end."""
    if not hasattr(lc, "TensorView") or not hasattr(lc.Tensor, "from_numpy"):
        pytest.skip("TensorView / from_numpy not in this build")
    a = np.arange(4, dtype=F32)
    v = lc.TensorView(a, [4], [1])
    np.testing.assert_array_equal(v.numpy(), a)
    with pytest.raises(ValueError, match=r"^\[TensorView\]"):
        lc.TensorView(a, [5], [1])  # one past the end
    with pytest.raises(ValueError, match=r"^\[TensorView\]"):
        lc.TensorView(a, [4], [1], 1)


def test_transpose_view():
    a = np.arange(6, dtype=F32).reshape(2, 3)
    t = lc.Tensor(a)
    tt = t.t()
    assert tt.shape == (3, 2) and tt.strides == (1, 3) and not tt.is_contiguous()
    np.testing.assert_array_equal(tt.numpy(), a.T)
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    c = tt.contiguous()
    assert c.is_contiguous() and c.strides == (2, 1)
    np.testing.assert_array_equal(c.numpy(), a.T)
    with pytest.raises(ValueError, match=r"^\[Tensor.t\]"):
        lc.Tensor(np.ones(3, F32)).t()


def test_views_as_op_inputs():
    a = np.arange(6, dtype=F32).reshape(2, 3)
    b = np.arange(6, dtype=F32).reshape(3, 2) - 2
    t = lc.Tensor(a)
    r = lc.matmul2d(t.t(), t)  # (3,2) @ (2,3), transposed input copied once
    assert isinstance(r, lc.Tensor)
    np.testing.assert_allclose(r.numpy(), a.T @ a)
    r = lc.vector_add(t.t(), b)
    np.testing.assert_array_equal(r.numpy(), a.T + b)


def test_copy_():
    t = lc.Tensor(np.zeros((2, 3), F32))
    t.copy_(lc.Tensor(np.ones((2, 3), F32)))
    np.testing.assert_array_equal(t.numpy(), np.ones((2, 3)))
    with pytest.raises(ValueError, match="shape mismatch"):
        t.copy_(lc.Tensor(np.ones((3, 2), F32)))


# ---- devices ------------------------------------------------------------------------------


def test_to_cpu_same_device_shares_memory():
    t = lc.Tensor(np.arange(3, dtype=F32))
    u = t.to("cpu")
    assert u.device == "cpu"
    np.asarray(u)[0] = 9  # "this tensor if already there": same memory
    assert np.asarray(t)[0] == 9
    assert t.cpu().device == "cpu"


@pytest.mark.parametrize("device", backends)
def test_roundtrip_to_device(device, rng):
    a = rng.standard_normal((7, 5)).astype(F32)
    t = lc.Tensor(a, device=device)
    assert t.device == device
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(t.to("cpu").numpy(), a)
    v = t.t()
    np.testing.assert_array_equal(v.numpy(), a.T)


@pytest.mark.gpu
def test_cuda_tensor_numpy_is_a_copy(rng):
    a = rng.standard_normal((4, 4)).astype(F32)
    t = lc.Tensor(a, device="cuda")
    with pytest.raises(AttributeError):
        t.__array_interface__
    h = t.numpy()
    h[0, 0] = 123
    assert t.numpy()[0, 0] == a[0, 0]
    back = t.to("cpu")
    assert back.device == "cpu"
    np.testing.assert_array_equal(np.asarray(back), a)


# ---- arithmetic operators (lightning_core/_tensor_ops.py) ----------------------------------------
def _np_of(dtype):
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return ml_dtypes.bfloat16
    return np.dtype(dtype)


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_arithmetic_operators_match_numpy(device, dtype):
    """t + o, t - o, t * o, t / o with tensors, broadcast arrays and numbers on either side,
    -t and t @ o: the op functions on the tensor's device, checked against float64 numpy on
    the rounded inputs (odd shapes, a size-1 and a size-0 axis)."""
    rng = np.random.default_rng(7)
    tol = 1e-6 if dtype == "float32" else 1e-2
    npdt = _np_of(dtype)
    for shape in [(3, 7), (1, 5), (0, 4), (2, 3, 5)]:
        a = rng.standard_normal(shape).astype(np.float32).astype(npdt)
        b = (rng.standard_normal(shape[-1:]) + 3.0).astype(np.float32).astype(npdt)  # no zeros
        ta, tb = lc.Tensor(a, device=device, dtype=dtype), lc.Tensor(b, device=device, dtype=dtype)
        A, B = a.astype(np.float64), b.astype(np.float64)
        cases = {
            "t+t": (ta + tb, A + B), "t-t": (ta - tb, A - B), "t*t": (ta * tb, A * B),
            "t/t": (ta / tb, A / B), "t+np": (ta + b, A + B), "t-np": (ta - b, A - B),
            "t+2.5": (ta + 2.5, A + 2.5), "3-t": (3 - ta, 3 - A), "t*0.125": (ta * 0.125, A * 0.125),
            "2*t": (2 * ta, 2 * A), "t/4": (ta / 4, A / 4), "1/t": (1.0 / tb, 1.0 / B),
            "-t": (-ta, -A), "t*np.float32": (ta * np.float32(1.5), A * 1.5),
        }
        for name, (got, ref) in cases.items():
            assert isinstance(got, lc.Tensor) and got.device == device and got.dtype == dtype, name
            g = np.asarray(got.numpy(), np.float64)
            assert g.shape == ref.shape, (name, g.shape, ref.shape)
            np.testing.assert_allclose(g, ref.astype(npdt).astype(np.float64) if dtype != "float32" else ref,
                                       rtol=tol, atol=tol, err_msg=f"{name} {shape} {dtype}")
    m = rng.standard_normal((5, 3)).astype(np.float32).astype(npdt)
    tm = lc.Tensor(m, device=device, dtype=dtype)
    a = rng.standard_normal((4, 5)).astype(np.float32).astype(npdt)
    ta = lc.Tensor(a, device=device, dtype=dtype)
    ref = a.astype(np.float64) @ m.astype(np.float64)
    for got in (ta @ tm, ta @ m):
        assert isinstance(got, lc.Tensor) and got.device == device
        np.testing.assert_allclose(np.asarray(got.numpy(), np.float64), ref, rtol=5 * tol, atol=5 * tol)
    # a numpy array on the left keeps numpy's meaning (the tensor converted): an array, and
    # comparisons stay elementwise
    if device == "cpu" and dtype == "float32":
        y = b - lc.Tensor(b, device=device, dtype=dtype)
        assert isinstance(y, np.ndarray) and not y.any()
        assert (b == lc.Tensor(b, device=device, dtype=dtype)).all()


def test_arithmetic_operators_refuse_other_types_and_mixed_dtypes():
    t = lc.Tensor(np.ones((2, 3), np.float32))
    for bad in ("a", None, [1.0, 2.0], True, object()):
        with pytest.raises(TypeError):
            t + bad
    with pytest.raises(TypeError, match="do not mix storage dtypes"):
        t + np.ones(3, np.float16)
    with pytest.raises(ValueError):
        t * lc.Tensor(np.ones((4,), np.float32))  # shapes that do not broadcast
    # division by zero follows IEEE (not a Python ZeroDivisionError), as numpy
    assert np.isinf((t / 0.0).numpy()).all()


def test_operators_in_compiled_eager_and_graph_agree():
    """A function written with operators runs eagerly on lc.Tensor (the A/B form) and compiles to
    the same nodes (the graph suite's scale+mask->softmax case)."""
    rng = np.random.default_rng(3)
    x = lc.Tensor(rng.standard_normal((2, 4, 8, 8)).astype(np.float32), device="cpu")
    m = np.triu(np.full((8, 8), -np.inf, np.float32), 1)

    def scores(t):
        return lc.softmax(lc.add(t * 0.125, m))
    e = lc.compile(scores, device="cpu", execution_mode="eager")(x)
    g = lc.compile(scores, device="cpu")(x)
    np.testing.assert_allclose(e.numpy(), g.numpy(), rtol=1e-6, atol=1e-7)
