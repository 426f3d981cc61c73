"""lc.compile's float arguments (docs/graph.md, "Scalars"): a float argument whose value changes
between calls is lifted into a one-element graph input after the second value (one more trace,
then none for any later value); one whose value fn needs while tracing (an op attribute, Python
arithmetic, control flow, a comparison) keys the cache by value. Checked against float64
references for every value, each dtype, fusion on and off, on each device; GraphIR.execute's
``scalars=`` argument and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dtype_util import TOL, np_dtype

import lightning_core as lc

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def f64(a):
    return np.asarray(a.numpy() if isinstance(a, lc.Tensor) else a, np.float64)


def gelu64(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def close(got, ref, dtype):
    tol = TOL[dtype] * (4 if dtype != "float32" else 1)
    np.testing.assert_allclose(f64(got), ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("fusion", [True, False])
def test_float_argument_is_lifted_after_its_second_value(rng, device, dtype, fusion):
    x = rng.standard_normal((5, 13)).astype(np_dtype(dtype))
    w = rng.standard_normal((3, 13)).astype(np_dtype(dtype))

    def fn(x, s):
        return lc.gelu(lc.linear(x, w) * s, approximate="none") + s

    c = lc.compile(fn, device=device, fusion=fusion)
    xt = lc.Tensor(x, device=device)
    values = [0.5, 2.0, -1.25, 3.0, 0.0, 1e-3, 7.5]
    for i, s in enumerate(values):
        got = c(xt, s)
        assert isinstance(got, lc.Tensor) and got.dtype == dtype
        sd = float(np.asarray(s, np_dtype(dtype)).astype(np.float64))  # s in x's dtype, as the graph holds it
        ref = gelu64((f64(x) @ f64(w).T) * sd) + sd
        close(got, ref, dtype)
        assert c.traces == (1 if i == 0 else 2), (i, c.traces)  # by value once, then lifted once
    assert "argument 1 (float) is a graph input: arg1" in c.explain(xt, 9.0)
    assert c.traces == 2


@pytest.mark.parametrize("device", DEVICES)
def test_one_scalar_feeds_two_dtypes(rng, device):
    pytest.importorskip("ml_dtypes")
    a = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal((4, 6)).astype(np.float16)

    c = lc.compile(lambda a, b, s: (a * s, s * b, b / s, a - s), device=device)
    for s in (1.5, -0.75, 3.25):
        r = c(lc.Tensor(a, device=device), lc.Tensor(b, device=device), s)
        s16 = float(np.float16(s))
        close(r[0], f64(a) * s, "float32")
        close(r[1], s16 * f64(b), "float16")
        close(r[2], f64(b) / s16, "float16")
        close(r[3], f64(a) - s, "float32")
    assert c.traces == 2
    text = c.explain()
    assert "arg2" in text and "arg2_float16" in text


@pytest.mark.parametrize("device", DEVICES)
def test_values_the_trace_needs_key_the_cache(rng, device):
    x = rng.standard_normal((6, 9)).astype(np.float32)
    g, b = np.ones(9, np.float32), np.zeros(9, np.float32)

    def ln(x, eps):  # an op attribute
        return lc.layernorm(x, g, b, eps)

    def twice(x, s):  # Python arithmetic on the value
        return x * (s * 2.0)

    def branch(x, s):  # control flow on the value
        return lc.relu(x) if s > 0 else lc.gelu(x, approximate="none")

    def equal(x, s):  # a comparison
        return x * 3.0 if s == 1.0 else x + 1.0

    def ln64(x, eps):
        m = x.mean(-1, keepdims=True)
        return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps)

    cases = [(ln, [1e-5, 1e-2, 0.5], ln64),
             (twice, [0.5, -3.0, 2.0], lambda x, s: x * s * 2),
             (branch, [1.0, -1.0, 2.0], lambda x, s: np.maximum(x, 0) if s > 0 else gelu64(x)),
             (equal, [1.0, 2.0, 1.0], lambda x, s: x * 3 if s == 1.0 else x + 1)]
    for fn, values, ref in cases:
        c = lc.compile(fn, device=device)
        xt = lc.Tensor(x, device=device)
        for s in values:
            close(c(xt, s), ref(f64(x), s), "float32")
        assert c.traces == len(set(values)), fn.__name__
        assert "argument 1 (float) keys the cache by value" in c.explain()


def test_ints_bools_and_numpy_scalars_key_by_value(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    c = lc.compile(lambda x, k: x * k)
    for k in (1, 2, 3):
        np.testing.assert_allclose(c(x, k), x * k, rtol=1e-6)
    assert c.traces == 3  # ints may be sizes or axes: never lifted
    c = lc.compile(lambda x, k: x * k)
    for k in (np.float32(1.5), np.float32(2.5)):
        np.testing.assert_allclose(c(x, k), x * k, rtol=1e-6)
    assert c.traces == 2


def test_lifted_values_nan_inf_and_numpy_results(rng):
    x = rng.standard_normal((2, 7)).astype(np.float32)
    c = lc.compile(lambda x, s: x + s)
    for s in (1.0, 2.0, math.inf, -math.inf, math.nan, 1e30):
        got = c(x, s)
        assert isinstance(got, np.ndarray)  # numpy in, numpy out: the scalar does not change that
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(got, x + np.float32(s))
    assert c.traces == 2


@pytest.mark.gpu
def test_results_stay_on_the_gpu_with_a_lifted_scalar(rng):
    x = lc.Tensor(rng.standard_normal((8, 8)).astype(np.float32), device="cuda")
    c = lc.compile(lambda x, s: lc.relu(x * s), device="cuda")
    for s in (1.0, 0.5, -2.0):
        r = c(x, s)
        assert isinstance(r, lc.Tensor) and r.device == "cuda"
        np.testing.assert_allclose(r.numpy(), np.maximum(x.numpy() * s, 0), rtol=1e-6)
    assert c.traces == 2


def test_execute_scalars_argument_and_its_errors(rng):
    g = lc.GraphIR()
    g.add_tensor((4,), "float16", "x")
    g.add_tensor((1,), "float16", "s")
    g.add_tensor((4,), "float16", "y")
    g.add_node("mul", ["x", "s"], ["y"], {}, "m")
    g.set_outputs(["y"])
    x = rng.standard_normal(4).astype(np.float16)
    with pytest.raises(TypeError, match="must be float16"):
        g.execute({"x": x, "s": np.array([2.0], np.float32)})
    y = g.execute({"x": x}, scalars={"s": 1.0 / 3.0})["y"]
    assert y.dtype == np.float16  # numpy in, numpy out; the value rounded to the input's dtype
    np.testing.assert_array_equal(y, x * np.float16(1.0 / 3.0))
    with pytest.raises(TypeError, match="scalars must be a dict"):
        g.execute({"x": x}, scalars=[1.0])
    with pytest.raises(TypeError, match="must be a number"):
        g.execute({"x": x}, scalars={"s": "two"})
    with pytest.raises(ValueError, match="not a graph input"):
        g.execute({"x": x, "s": np.ones(1, np.float16)}, scalars={"y": 1.0})
    with pytest.raises(ValueError, match="missing"):
        g.execute({"x": x})
    np.testing.assert_array_equal(g.execute({"x": x}, scalars={"s": 2})["y"], x * np.float16(2))  # still usable
