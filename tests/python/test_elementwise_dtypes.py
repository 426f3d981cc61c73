"""The elementwise family in every storage dtype (float32, float16, bfloat16; float64 on the
CPU), numpy broadcasting (add / sub / mul / div), gelu(approximate=...), embedding, and the
device strided copy behind Tensor.contiguous() / astype() / copy_(). Every result is checked
against a float64 reference computed from the inputs' exact values, on fresh random inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lightning_core as lc

from conftest import backends
from dtype_util import TOL, np_dtype as npdt

ml_dtypes = pytest.importorskip("ml_dtypes")

FLOAT16S = ["float32", "float16", "bfloat16"]
# float64 computes on the CPU only (a CUDA request falls back to the CPU).
FLOATS = FLOAT16S + ["float64"]
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}
SAME_SHAPE = {"vector_add": np.add, "vector_sub": np.subtract, "vector_mul": np.multiply}
_erf = np.vectorize(math.erf, otypes=[np.float64])


def rand(rng, shape, dtype, lo=-3.0, hi=3.0):
    return rng.uniform(lo, hi, size=shape).astype(npdt(dtype))


def nonzero(rng, shape, dtype):
    """Divisors away from zero (|b| in [0.5, 2])."""
    mag = rng.uniform(0.5, 2.0, size=shape)
    return (mag * rng.choice([-1.0, 1.0], size=shape)).astype(npdt(dtype))


def T(x, device):
    """An lc.Tensor copy of the numpy array x (keeping its dtype) on `device`."""
    x = np.asarray(x)
    name = "bfloat16" if x.dtype == ml_dtypes.bfloat16 else x.dtype.name
    return lc.Tensor(x, device=device, dtype=name)


def f64(x):
    return np.asarray(x.numpy() if isinstance(x, lc.Tensor) else x).astype(np.float64)


def check(got, ref, dtype):
    got = np.asarray(got.numpy() if isinstance(got, lc.Tensor) else got)
    assert got.dtype == npdt(dtype), (got.dtype, dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    g = got.astype(np.float64)
    assert np.all(np.isfinite(g) == np.isfinite(ref)), "non-finite values differ"
    tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    np.testing.assert_allclose(g, ref, rtol=tol, atol=tol * scale)


def gelu_tanh_ref(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf_ref(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


BROADCAST_SHAPES = [
    ((7,), (7,)),
    ((1,), (13,)),
    ((5, 1, 3), (4, 1)),
    ((17, 31), (31,)),
    ((17, 31), (17, 1)),
    ((2, 3, 5, 7), (3, 1, 7)),
    ((1, 1, 1), (1,)),
    ((3, 1), (1, 1)),
    ((0, 3), (1, 3)),
    ((2, 0), (2, 1)),
    ((3, 1), (1, 0)),
    ((4, 1, 1, 2, 1, 3), (5, 1, 2, 7, 3)),
    ((1031,), (1,)),
]


# ---- broadcasting binary ops ------------------------------------------------------------------
@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST_SHAPES)
def test_binary_broadcast(rng, backend, dtype, op, sa, sb):
    a = rand(rng, sa, dtype)
    b = nonzero(rng, sb, dtype) if op == "div" else rand(rng, sb, dtype)
    ref = BINARY[op](f64(a), f64(b))
    got = getattr(lc, op)(a, b, backend)
    check(got, ref, dtype)
    # The other operand order broadcasts the same way.
    a2 = rand(rng, sb, dtype)
    b2 = nonzero(rng, sa, dtype) if op == "div" else rand(rng, sa, dtype)
    check(getattr(lc, op)(a2, b2, backend), BINARY[op](f64(a2), f64(b2)), dtype)


@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_into_poisoned_out(rng, backend, dtype, op):
    a = rand(rng, (6, 1, 29), dtype)
    b = nonzero(rng, (5, 29), dtype)
    out = np.full((6, 5, 29), np.nan, dtype=npdt(dtype))
    r = getattr(lc, op + "_into")(a, b, out, backend)
    assert r is out
    check(out, BINARY[op](f64(a), f64(b)), dtype)


@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", FLOATS)
def test_non_contiguous_inputs(rng, backend, dtype):
    big = rand(rng, (23, 3 * 19), dtype)
    a = big[::2, ::3]  # strided view, shape (12, 19)
    other = nonzero(rng, (19, 12), dtype)
    b = other.T  # transposed view
    for op, f in BINARY.items():
        check(getattr(lc, op)(a, b, backend), f(f64(a), f64(b)), dtype)
    # lc.Tensor views (device-resident on a GPU backend) go through the same strided path.
    dev = backend
    ta = T(big, dev)[::2, ::3]
    tb = T(other, dev).T
    assert not ta.is_contiguous() and not tb.is_contiguous()
    check(lc.add(ta, tb, dev), f64(a) + f64(b), dtype)
    check(lc.relu(tb, dev), np.maximum(f64(b), 0.0), dtype)
    # A broadcast row that is itself a strided view.
    row = T(other, dev)[::-1, 3]  # (19,), stride -12
    check(lc.mul(ta, row, dev), f64(a) * f64(other)[::-1, 3], dtype)


@pytest.mark.parametrize("backend", backends)
def test_out_aliasing_inputs(rng, backend):
    a = rand(rng, (9, 33), "float32")
    b = rand(rng, (33,), "float32")
    ref = f64(a) + f64(b)
    lc.add_into(a, b, a, backend)  # out is a
    check(a, ref, "float32")
    x = rand(rng, (8, 8), "float32")
    ref = f64(x) * f64(x[0])
    lc.mul_into(x, x[0], x, backend)  # b is a row of out: read as if out were fresh
    check(x, ref, "float32")
    y = rand(rng, (64,), "float32")
    ref = f64(y[1:]) - f64(y[:-1])
    lc.sub_into(y[1:], y[:-1], y[:-1], backend)  # overlapping shifted views
    check(y[:-1], ref, "float32")


# ---- the same-shape ops and unary ops in every dtype -------------------------------------------
@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [0, 1, 7, 997, 4099])
def test_same_shape_ops_dtypes(rng, backend, dtype, n):
    a = rand(rng, (n,), dtype)
    b = rand(rng, (n,), dtype)
    for name, f in SAME_SHAPE.items():
        check(getattr(lc, name)(a, b, backend), f(f64(a), f64(b)), dtype)
    check(lc.vector_scale(a, 0.37, backend), f64(a) * np.float64(np.float32(0.37)), dtype)
    check(lc.relu(a, backend), np.maximum(f64(a), 0.0), dtype)
    check(lc.gelu(a, backend), gelu_tanh_ref(f64(a)), dtype)
    check(lc.gelu(a, backend, approximate="tanh"), gelu_tanh_ref(f64(a)), dtype)
    check(lc.gelu(a, backend, approximate="none"), gelu_erf_ref(f64(a)), dtype)
    m = rand(rng, (max(n // 7, 1), 7), dtype)
    check(lc.matrix_sub(m, m[::-1].copy(), backend), f64(m) - f64(m[::-1]), dtype)
    out = np.full((n,), np.nan, dtype=npdt(dtype))
    lc.gelu_into(a, out, backend, approximate="none")
    check(out, gelu_erf_ref(f64(a)), dtype)
    out[:] = np.nan
    lc.vector_add_into(a, b, out, backend)
    check(out, f64(a) + f64(b), dtype)


def test_gelu_default_is_the_tanh_form(rng):
    x = rand(rng, (4001,), "float32", -6, 6)
    np.testing.assert_array_equal(lc.gelu(x, "cpu"), lc.gelu(x, "cpu", approximate="tanh"))
    exact = lc.gelu(x, "cpu", approximate="none")
    check(exact, gelu_erf_ref(f64(x)), "float32")
    # The two forms really differ (by up to ~1e-3 near |x| ~ 2).
    assert np.max(np.abs(f64(exact) - gelu_tanh_ref(f64(x)))) > 1e-5
    with pytest.raises(ValueError, match="approximate"):
        lc.gelu(x, "cpu", approximate="erf")


@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", FLOAT16S)
def test_large_prime_sizes_take_the_parallel_paths(rng, backend, dtype):
    n = 300007  # above the CPU's parallel threshold, odd and prime
    a = rand(rng, (n,), dtype)
    b = rand(rng, (n,), dtype)
    check(lc.add(a, b, backend), f64(a) + f64(b), dtype)
    m = rand(rng, (1009, 331), dtype)
    r = rand(rng, (331,), dtype)
    check(lc.sub(m, r, backend), f64(m) - f64(r), dtype)
    check(lc.gelu(a, backend, approximate="none"), gelu_erf_ref(f64(a)), dtype)


# ---- bad inputs ------------------------------------------------------------------------------
def test_bad_inputs():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match=r"\[add\].*float32.*bfloat16"):
        lc.add(a, a.astype(ml_dtypes.bfloat16))
    with pytest.raises(TypeError, match=r"\[vector_add\]"):
        lc.vector_add(a, a.astype(np.float16))
    with pytest.raises(TypeError, match=r"\[mul\].*int32"):
        lc.mul(a.astype(np.int32), a.astype(np.int32))
    with pytest.raises(ValueError, match=r"\[div\].*\[3, 4\].*\[3\].*broadcast"):
        lc.div(a, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"vector_add.*same shape"):
        lc.vector_add(a, np.ones(4, np.float32))  # the vector_ ops do not broadcast
    out = np.full((3, 4), 7.0, np.float16)
    with pytest.raises(TypeError, match=r"'out' must be float32"):
        lc.add_into(a, a, out)
    out32 = np.full((3, 5), 7.0, np.float32)
    with pytest.raises(ValueError, match=r"'out' has shape \[3, 5\]"):
        lc.add_into(a, np.ones(4, np.float32), out32)
    bad = np.full((3, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        lc.add_into(a, np.ones(5, np.float32), bad)
    assert np.all(bad == 7.0)  # nothing written on error
    with pytest.raises(TypeError, match=r"\[add\] invalid arguments"):
        lc.add(a, a, "cpu", "x")
    with pytest.raises(TypeError, match=r"\[embedding\] invalid arguments"):
        lc.embedding(np.zeros(2, np.int64), a, bogus=1)
    with pytest.raises(TypeError, match=r"\[gelu\]"):
        lc.gelu(a, approximate=3)


@pytest.mark.gpu
def test_float64_on_cuda_falls_back_to_the_cpu(rng):
    a = rand(rng, (33, 5), "float64")
    b = rand(rng, (5,), "float64")
    got = lc.add(a, b, "cuda")
    check(got, f64(a) + f64(b), "float64")
    assert lc.last_op_report()["path"] == "fallback"


# ---- embedding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", FLOAT16S)
@pytest.mark.parametrize("ids_dtype", ["int32", "int64"])
@pytest.mark.parametrize("ids_shape,v,d", [((5,), 11, 7), ((2, 3), 1, 16), ((0,), 4, 3),
                                           ((3, 1, 4), 257, 64), ((2,), 3, 0), ((1,), 5, 1)])
def test_embedding(rng, backend, dtype, ids_dtype, ids_shape, v, d):
    w = rand(rng, (v, d), dtype)
    ids = rng.integers(0, v, size=ids_shape).astype(ids_dtype)
    got = lc.embedding(ids, w, backend)
    ref = w[ids]
    assert np.asarray(got).shape == ref.shape
    np.testing.assert_array_equal(np.asarray(got).view(np.uint8), ref.view(np.uint8))
    out = np.full(ids_shape + (d,), np.nan, dtype=npdt(dtype))
    lc.embedding_into(ids, w, out, backend)
    np.testing.assert_array_equal(out.view(np.uint8), ref.view(np.uint8))
    # Resident inputs (ids and weight on the backend's device).
    got_t = lc.embedding(T(ids, backend), T(w, backend), backend)
    np.testing.assert_array_equal(np.asarray(got_t.numpy()).view(np.uint8), ref.view(np.uint8))


@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("bad", [-1, 11, 2**40])
def test_embedding_out_of_range_ids(backend, bad):
    w = np.ones((11, 4), np.float32)
    ids = np.array([0, 3, bad, 1], np.int64)
    out = np.full((4, 4), 5.0, np.float32)
    with pytest.raises(ValueError, match=rf"\[embedding\] id {bad} .*V = 11"):
        lc.embedding_into(ids, w, out, backend)
    assert np.all(out == 5.0)  # checked before anything is written
    if bad < 2**31:
        with pytest.raises(ValueError, match=rf"id {bad} "):
            lc.embedding(T(ids.astype(np.int32), backend), T(w, backend), backend)


def test_embedding_bad_arguments():
    w = np.ones((5, 3), np.float32)
    with pytest.raises(TypeError, match=r"\[embedding\] 'ids' must be int32 or int64"):
        lc.embedding(np.zeros(3, np.float32), w)
    with pytest.raises(TypeError, match=r"\[embedding\] 'weight'"):
        lc.embedding(np.zeros(3, np.int64), w.astype(np.int32))
    with pytest.raises(ValueError, match=r"\[embedding\] 'weight' must be 2-D"):
        lc.embedding(np.zeros(3, np.int64), np.ones(5, np.float32))


# ---- device strided copies ------------------------------------------------------------------
@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("src", ["float32", "float16", "bfloat16", "float64", "int32", "int64"])
@pytest.mark.parametrize("dst", ["float32", "float16", "bfloat16", "float64", "int32", "int64"])
def test_astype_of_strided_views(rng, backend, src, dst):
    x = (rng.standard_normal((6, 5, 7)) * 50).astype(npdt(src))
    t = T(x, backend).permute(2, 0, 1)[::2, :, 1:]
    ref = np.ascontiguousarray(x.transpose(2, 0, 1)[::2, :, 1:]).astype(npdt(dst))
    got = t.astype(dst)
    assert got.device == backend and got.is_contiguous() and got.dtype == dst
    np.testing.assert_array_equal(np.asarray(got.numpy()).view(np.uint8), ref.view(np.uint8))


@pytest.mark.parametrize("backend", backends)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int64"])
def test_contiguous_and_copy_between_views(rng, backend, dtype):
    x = (rng.standard_normal((4, 6, 10)) * 9).astype(npdt(dtype))
    t = T(x, backend)
    v = t.reshape(24, 10).permute(1, 0)  # (10, 24) view
    c = v.contiguous()
    assert c.device == backend and c.is_contiguous()
    np.testing.assert_array_equal(np.asarray(c.numpy()), x.reshape(24, 10).T)
    # copy_ into a strided destination view (scatter on the device).
    d = T(np.zeros((24, 20), npdt(dtype)), backend)
    d[:, ::2].copy_(v.T)
    ref = np.zeros((24, 20), npdt(dtype))
    ref[:, ::2] = x.reshape(24, 10)
    np.testing.assert_array_equal(np.asarray(d.numpy()), ref)


@pytest.mark.gpu
def test_device_view_chain_stays_on_the_gpu(rng):
    x = rng.standard_normal((8, 6, 5)).astype(np.float32)
    t = lc.Tensor(x, device="cuda")
    keep = lc.ExecutionPolicy(device="cuda", download=False)
    with lc.runtime_trace():
        c = t.reshape(48, 5).permute(1, 0).contiguous()
        h = c.astype("bfloat16")
        r = lc.relu(t.permute(2, 1, 0), policy=keep)  # a strided device operand, no staging
        s = lc.add(h, h[0], policy=keep)  # broadcast, bfloat16, resident
    kinds = [e["kind"] for e in lc.runtime_trace_events()]
    assert "upload" not in kinds and "download" not in kinds, kinds
    assert c.device == "cuda" and h.device == "cuda" and r.device == "cuda" and s.device == "cuda"
    np.testing.assert_array_equal(np.asarray(c.numpy()), x.reshape(48, 5).T)
    np.testing.assert_array_equal(np.asarray(r.numpy()), np.maximum(x.transpose(2, 1, 0), 0))
    hb = x.reshape(48, 5).T.astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(np.asarray(h.numpy()).view(np.uint16), hb.view(np.uint16))
    check(s, f64(hb) + f64(hb[0]), "bfloat16")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOAT16S)
def test_gpu_matches_cpu_bitwise_for_add(rng, dtype):
    a = rand(rng, (1, 4099), dtype)
    b = rand(rng, (37, 1), dtype)
    np.testing.assert_array_equal(np.asarray(lc.add(a, b, "cuda")).view(np.uint8),
                                  np.asarray(lc.add(a, b, "cpu")).view(np.uint8))
