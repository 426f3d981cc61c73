"""Every op against a float64 numpy reference on every available backend (see parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import backends
from parity import CASES, INPUT_KINDS, OPS, F32, check_case, gelu64, ref_softmax, rel_error


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_parity(case, device, kind, form, rng):
    check_case(case, device, kind, form, rng)


def test_every_op_is_covered():
    """The harness must have cases for every public op, incl. a multi-threaded size."""
    expected = {
        "matmul2d", "linear", "attention2d", "conv2d_nchw", "layernorm", "softmax",
        "vector_add", "vector_sub", "vector_mul", "matrix_sub", "vector_scale", "relu", "gelu",
    }
    assert set(OPS) == expected
    for op in expected:
        assert hasattr(lc, op) and hasattr(lc, op + "_into")
        assert any(c.op == op and c.big for c in CASES), f"{op} has no multi-threaded case"
    for c in CASES:
        if c.op == "attention2d" and "causal" in c.id:
            break
    else:
        raise AssertionError("no causal attention case")


# ---- empty dimensions: computed correctly or rejected clearly, never a crash ---------------

# (matmul2d / matmul / linear compute empty sizes like numpy: test_matmul_family.py)
EMPTY_REJECTED = [
    ("attention2d", lambda: lc.attention2d(np.zeros((0, 4), F32), np.zeros((3, 4), F32), np.zeros((3, 2), F32))),
    ("attention2d", lambda: lc.attention2d(np.zeros((2, 4), F32), np.zeros((0, 4), F32), np.zeros((0, 2), F32))),
    ("attention2d", lambda: lc.attention2d(np.zeros((2, 4), F32), np.zeros((3, 4), F32), np.zeros((3, 0), F32))),
    ("conv2d_nchw", lambda: lc.conv2d_nchw(np.zeros((0, 1, 4, 4), F32), np.zeros((2, 1, 3, 3), F32))),
    ("conv2d_nchw", lambda: lc.conv2d_nchw(np.zeros((1, 1, 4, 4), F32), np.zeros((0, 1, 3, 3), F32))),
]
# layernorm / softmax compute empty results (test_norm_dtypes.py: test_zero_size_gives_empty).


@pytest.mark.parametrize("op,call", EMPTY_REJECTED, ids=[f"{o}-{i}" for i, (o, _) in enumerate(EMPTY_REJECTED)])
def test_empty_dimension_rejected_clearly(op, call):
    with pytest.raises(ValueError) as ei:
        call()
    msg = str(ei.value)
    assert msg.startswith(f"[{op}]"), msg
    assert "empty" in msg and ">= 1" in msg, msg


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5, 2)])
def test_empty_elementwise_computed(device, shape):
    a = np.zeros(shape, F32)
    for name in ("vector_add", "vector_sub", "vector_mul"):
        r = getattr(lc, name)(a, a, device)
        assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == np.float32
        out = np.empty(shape, F32)
        assert getattr(lc, name + "_into")(a, a, out, device) is out
    for name in ("relu", "gelu"):
        assert getattr(lc, name)(a, device).shape == shape
    assert lc.vector_scale(a, 2.0, device).shape == shape
    t = lc.Tensor(a, device=device)
    r = lc.vector_add(t, t, device)
    assert isinstance(r, lc.Tensor) and r.shape == shape
    if len(shape) == 2:
        assert lc.matrix_sub(a, a, device).shape == shape
    # the runtime still works afterwards
    np.testing.assert_array_equal(lc.vector_add(np.ones(3, F32), np.ones(3, F32), device), [2, 2, 2])


# ---- unusual but valid numpy layouts --------------------------------------------------------


@pytest.mark.parametrize("device", backends)
def test_zero_d_elementwise(device):
    a = np.array(-1.5, dtype=F32)
    b = np.array(4.0, dtype=F32)
    r = lc.relu(a, device)
    assert r.shape == () and r == 0.0
    assert lc.vector_add(a, b, device) == np.float32(2.5)
    out = np.array(np.nan, dtype=F32)
    lc.vector_mul_into(a, b, out, device)
    assert out == np.float32(-6.0)


@pytest.mark.parametrize("device", backends)
def test_broadcast_zero_stride_inputs(device, rng):
    """np.broadcast_to gives read-only arrays with stride 0: valid inputs, copied once."""
    row = rng.standard_normal(37).astype(F32)
    a = np.broadcast_to(row, (11, 37))
    b = rng.standard_normal((11, 37)).astype(F32)
    assert a.strides[0] == 0 and not a.flags.writeable
    np.testing.assert_array_equal(lc.vector_add(a, b, device), a + b)
    # Every output is the same single dot product (identical rows x identical columns): keep it
    # well conditioned (positive terms), or a sum that cancels to ~0 makes the relative error
    # meaningless.
    a = np.broadcast_to(np.abs(row) + 0.1, (11, 37))
    w = np.broadcast_to(rng.random((37, 1)).astype(F32) + 0.1, (37, 5))
    y = lc.matmul2d(a, w, device)
    assert rel_error(y, a.astype(np.float64) @ w.astype(np.float64)) <= 1e-5


@pytest.mark.parametrize("device", backends)
def test_byteswapped_and_misaligned_inputs(device, rng):
    x = rng.standard_normal((9, 14)).astype(F32)
    swapped = x.astype(">f4")
    assert not swapped.dtype.isnative
    np.testing.assert_allclose(lc.softmax(swapped, device), ref_softmax(x.astype(np.float64)), rtol=1e-5, atol=1e-7)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    mis = np.frombuffer(raw.data, dtype=F32, count=x.size, offset=1).reshape(x.shape)
    mis = mis.copy() if mis.flags.aligned else mis
    raw[1:] = x.view(np.uint8).ravel()
    assert rel_error(lc.relu(mis, device), np.maximum(x, 0).astype(np.float64)) == 0.0
    fortran = np.asfortranarray(x)
    assert rel_error(lc.gelu(fortran, device), gelu64(x.astype(np.float64))) <= 1e-5


@pytest.mark.parametrize("device", backends)
def test_python_lists_are_converted(device):
    # array-likes go through numpy: lists of floats become float64 (which the elementwise ops
    # compute on the CPU), lists of ints int64 (a dtype error)...
    r64 = lc.relu([1.0, -2.0], device)
    assert r64.dtype == np.float64
    np.testing.assert_array_equal(r64, [1.0, 0.0])
    with pytest.raises(TypeError, match=r"^\[relu\]"):
        lc.relu([1, -2], device)
    # ...while float32 array-likes (here a memoryview of a float32 array) are accepted.
    r = lc.relu(memoryview(np.array([1.0, -2.0], F32)), device)
    np.testing.assert_array_equal(r, [1.0, 0.0])


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("name", ["vector_add", "vector_sub", "vector_mul"])
def test_elementwise_out_may_alias_an_input(device, name, rng):
    a = rng.standard_normal(1001).astype(F32)
    b = rng.standard_normal(1001).astype(F32)
    ref = getattr(np, {"vector_add": "add", "vector_sub": "subtract", "vector_mul": "multiply"}[name])(a, b)
    a2 = a.copy()
    getattr(lc, name + "_into")(a2, b, a2, device)
    np.testing.assert_array_equal(a2, ref)
    b2 = b.copy()
    getattr(lc, name + "_into")(a, b2, b2, device)
    np.testing.assert_array_equal(b2, ref)


@pytest.mark.parametrize("device", backends)
def test_results_are_fresh_arrays(device, rng):
    """The returning form allocates: two calls never share memory, nor with the inputs."""
    a = rng.standard_normal((8, 8)).astype(F32)
    r1 = lc.relu(a, device)
    r2 = lc.relu(a, device)
    assert not np.shares_memory(r1, r2) and not np.shares_memory(r1, a)
    r1[...] = 5
    np.testing.assert_array_equal(r2, np.maximum(a, 0))


@pytest.mark.parametrize("device", backends)
def test_attention_causal_is_top_left_aligned(device):
    """Query i sees keys 0..i: with v = identity the output rows are the attention weights,
    zero above the diagonal, and query 0 copies v[0] exactly."""
    sq, sk = 4, 6
    q = np.zeros((sq, 3), F32)
    k = np.zeros((sk, 3), F32)
    v = np.eye(sk, dtype=F32)
    p = lc.attention2d(q, k, v, True, device)
    expected = np.zeros((sq, sk))
    for i in range(sq):
        expected[i, : i + 1] = 1.0 / (i + 1)
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-7)
    full = lc.attention2d(q, k, v, False, device)
    np.testing.assert_allclose(full, np.full((sq, sk), 1.0 / sk), rtol=1e-6)


@pytest.mark.parametrize("device", backends)
def test_gelu_is_the_tanh_approximation(device):
    x = np.linspace(-6, 6, 1201).astype(F32)
    y = lc.gelu(x, device).astype(np.float64)
    tanh_form = gelu64(x.astype(np.float64))
    from math import erf, sqrt

    erf_form = np.array([0.5 * v * (1 + erf(v / sqrt(2))) for v in x.astype(np.float64)])
    assert np.max(np.abs(y - tanh_form)) < 2e-6
    # the two forms differ by up to ~5e-4: far above the kernel's error, so this tells them apart
    assert np.max(np.abs(y - erf_form)) > 1e-4


@pytest.mark.parametrize("device", backends)
def test_gelu_negative_tail_saturates_to_minus_zero(device):
    # Where float32's e^(-2u) overflows (x below ~-10.33) gelu is -0, as float32 evaluates
    # x / (1 + e^(-2u)); the CPU's fast exp saturated at e^88 instead and left ~1e-37 there, so
    # that a following product with an infinite weight gave inf, not NaN (the fuzz suite found it
    # through lc.api.ffn). Elementwise, as a linear epilogue and inside ffn.
    x = np.array([-10.0, -10.4, -12.0, -30.0, -1e6], F32)
    y = lc.gelu(x, device)
    assert y[0] < 0 and np.all(y[1:] == 0) and np.all(np.signbit(y[1:])), y
    # (x = -10 only elementwise: a GEMM epilogue may evaluate the tail in another form)
    z = lc.linear(x[1:, None], np.ones((1, 1), F32), None, activation="gelu", device=device)[:, 0]
    assert np.all(z == 0) and np.all(np.signbit(z)), z
    f = lc.api.ffn(x[1:, None], np.ones((1, 1), F32), None, np.full((1, 1), np.inf, F32), None,
                   "gelu", device)[:, 0]
    assert np.all(np.isnan(f)), f


@pytest.mark.parametrize("device", backends)
def test_layernorm_defaults(device, rng):
    x = (rng.standard_normal((6, 10)) * 4 + 2).astype(F32)
    y = lc.layernorm(x, device=device)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    assert rel_error(y, ref) <= 2e-5


@pytest.mark.parametrize("device", backends)
def test_mixed_numpy_and_tensor_inputs(device, rng):
    a = rng.standard_normal((5, 7)).astype(F32)
    b = rng.standard_normal((7, 3)).astype(F32)
    r = lc.matmul2d(a, lc.Tensor(b, device=device), device)
    assert isinstance(r, lc.Tensor)
    assert rel_error(r.numpy(), a.astype(np.float64) @ b.astype(np.float64)) <= 1e-5
    # numpy out with lc.Tensor inputs
    out = np.full((5, 3), np.nan, F32)
    lc.matmul2d_into(lc.Tensor(a, device=device), b, out, device)
    assert rel_error(out, a.astype(np.float64) @ b.astype(np.float64)) <= 1e-5


@pytest.mark.parametrize("device", backends)
def test_auto_device_matches_explicit(device, rng):
    a = rng.standard_normal((33, 17)).astype(F32)
    b = rng.standard_normal((17, 9)).astype(F32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert rel_error(lc.matmul2d(a, b), ref) <= 1e-5
    assert rel_error(lc.matmul2d(a, b, "auto"), ref) <= 1e-5
    assert rel_error(lc.matmul2d(a, b, device), ref) <= 1e-5
    rep = lc.last_op_report()
    assert rep["op"] == "matmul2d" and rep["device"] == device
