"""The matrix-product family beyond float32 2-D (issue #12 items 2 and 3): storage dtypes in
matmul2d / linear (float32, float16, bfloat16 everywhere, float64 on the CPU), the batched /
broadcast `matmul` with torch.matmul semantics, and linear's fused `residual`.

Every result is checked against a float64 numpy reference computed from the very values the op
saw (inputs rounded to their storage dtype first), with an error scaled by |A| |B| (the forward
error bound of a dot product, stable for products whose terms cancel). Tolerances: float64
1e-12, float32 1e-5, float16 / bfloat16 1e-2 (one output rounding: 2^-11 / 2^-8 relative).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lightning_core as lc

from conftest import backends
from dtype_util import TOL, np_dtype as npdt

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

DTYPES = ["float32", "float16", "bfloat16", "float64"]
# Absolute floor of the error scale: float16 results below its smallest normal (2^-14) are
# subnormal, with a fixed spacing of 2^-24 instead of a relative one (a k = 1 product of two
# small values lands there).
FLOOR = {"float32": 1e-30, "float16": 2.0 ** -14, "bfloat16": 1e-30, "float64": 1e-300}


def rand(rng, shape, dt):
    return rng.standard_normal(shape).astype(npdt(dt))


def f64(x):
    return np.asarray(x).astype(np.float64)


def poisoned(shape, dt):
    return np.full(shape, np.nan, dtype=npdt(dt))


def check(got, a, b, dt, bias=None, residual=None, act="none", ref=None):
    """got vs act(a @ b + bias + residual) in float64, error scaled by |a| |b| (+ |bias| + |res|)."""
    got = np.asarray(got.numpy() if isinstance(got, lc.Tensor) else got)
    assert got.dtype == npdt(dt), (got.dtype, dt)
    A, B = f64(a), f64(b)
    want = np.matmul(A, B) if ref is None else ref
    scale = np.matmul(np.abs(A), np.abs(B))
    if bias is not None:
        want = want + f64(bias)
        scale = scale + np.abs(f64(bias))
    if residual is not None:
        want = want + f64(residual)
        scale = scale + np.abs(f64(residual))
    if act == "relu":
        want = np.maximum(want, 0)
    elif act == "gelu":
        want = 0.5 * want * (1 + np.tanh(np.sqrt(2 / np.pi) * (want + 0.044715 * want ** 3)))
    elif act == "gelu_erf":
        want = 0.5 * want * np.vectorize(math.erfc)(-want / math.sqrt(2.0))
    assert got.shape == want.shape, (got.shape, want.shape)
    g = f64(got)
    assert not np.isnan(g).any(), "output not fully written (NaN left from the poison)"
    if want.size == 0:
        return
    err = np.max(np.abs(g - want) / (scale + FLOOR[dt]))
    assert err <= TOL[dt], f"{dt}: scaled error {err:.3g} > {TOL[dt]}"


# ---- matmul2d: every dtype, odd / prime / unit sizes, empty sizes, views ----------------------

SHAPES = [(1, 1, 1), (1, 7, 1), (3, 5, 7), (17, 13, 19), (64, 1, 33), (2, 97, 3), (127, 129, 131)]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("mkn", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul2d_dtypes(backend, dt, mkn, rng):
    m, k, n = mkn
    a, b = rand(rng, (m, k), dt), rand(rng, (k, n), dt)
    check(lc.matmul2d(a, b, backend), a, b, dt)
    out = poisoned((m, n), dt)
    assert lc.matmul2d_into(a, b, out, backend) is out
    check(out, a, b, dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_matmul2d_empty_sizes(backend, dt, rng):
    # k == 0: an empty sum, zeros like numpy; m == 0 / n == 0: empty results.
    for m, k, n in [(3, 0, 4), (0, 5, 4), (3, 5, 0), (0, 0, 0)]:
        a, b = rand(rng, (m, k), dt), rand(rng, (k, n), dt)
        got = lc.matmul2d(a, b, backend)
        assert got.shape == (m, n) and got.dtype == npdt(dt)
        np.testing.assert_array_equal(f64(got), np.zeros((m, n)))
        out = poisoned((m, n), dt)
        lc.matmul2d_into(a, b, out, backend)
        np.testing.assert_array_equal(f64(out), np.zeros((m, n)))


@pytest.mark.parametrize("dt", DTYPES)
def test_matmul2d_transposed_and_sliced_views(backend, dt, rng):
    base_a = rand(rng, (23, 41), dt)
    base_b = rand(rng, (38, 31), dt)
    a = base_a.T[::2]           # (21, 23) non-contiguous
    b = base_b[5:28, ::3]       # (23, 11) strided
    check(lc.matmul2d(a, b, backend), a, b, dt)
    t = lc.Tensor(base_b, dtype=dt)[5:28, ::3]  # an lc view
    check(lc.matmul2d(a, t, backend), a, b, dt)


def test_precision_is_a_compute_mode_of_float32_only(backend, rng):
    # 16-bit storage ignores precision="tf32"/"bf16" (it multiplies in its own type anyway);
    # float64 ignores it too (always exact).
    for dt in ["float16", "bfloat16", "float64"]:
        a, b = rand(rng, (33, 65), dt), rand(rng, (65, 17), dt)
        # (a CPU policy refuses GPU precisions outright: the CPU computes fp32)
        for prec in ["fp32", "tf32", "bf16"] if backend != "cpu" else ["fp32"]:
            pol = lc.ExecutionPolicy(device=backend, precision=prec)
            check(lc.matmul2d(a, b, policy=pol), a, b, dt)


# ---- linear: dtypes, epilogues, residual ------------------------------------------------------

@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("act", ["none", "relu", "gelu", "gelu_erf"])
def test_linear_dtypes_bias_residual(backend, dt, act, rng):
    x = rand(rng, (2, 7, 29), dt)
    w = rand(rng, (13, 29), dt)
    b = rand(rng, (13,), dt)
    r = rand(rng, (2, 7, 13), dt)
    for bias in (None, b):
        for res in (None, r):
            got = lc.linear(x, w, bias, act, backend, residual=res)
            check(got, x, w.T, dt, bias=bias, residual=res, act=act)
            out = poisoned((2, 7, 13), dt)
            lc.linear_into(x, w, bias, out, act, backend, residual=res)
            check(out, x, w.T, dt, bias=bias, residual=res, act=act)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 16, 384, 1536), (3, 37, 131, 257),
                                   (2, 64, 384, 1536)], ids=lambda s: "x".join(map(str, s)))
def test_linear_gelu_erf_fused_minilm_shapes(backend, shape, rng):
    # The MiniLM MLP's up projection (exact GELU fused into the GEMM's epilogue on the CPU, a
    # second elementwise step elsewhere), and odd / unit shapes, through non-contiguous views,
    # into a poisoned out, with and without a residual; float64 reference.
    B, S, k, n = shape
    x = rand(rng, (B, S, 2 * k), "float32")[:, :, ::2]      # non-contiguous
    w = rand(rng, (k, n), "float32").T                       # [n, k] transposed view
    b = rand(rng, (n,), "float32")
    r = rand(rng, (B, S, n), "float32")
    for res in (None, r):
        got = lc.linear(x, w, b, "gelu_erf", backend, residual=res)
        check(got, x, w.T, "float32", bias=b, residual=res, act="gelu_erf")
        out = poisoned((B, S, n), "float32")
        lc.linear_into(x, w, b, out, "gelu_erf", backend, residual=res)
        check(out, x, w.T, "float32", bias=b, residual=res, act="gelu_erf")
    # the fused form equals the two-step form
    two = lc.gelu(lc.linear(x, w, b, "none", backend), approximate="none")
    np.testing.assert_allclose(np.asarray(lc.linear(x, w, b, "gelu_erf", backend)),
                               np.asarray(two), rtol=2e-5, atol=2e-6)


def test_gelu_erf_is_linear_only(rng):
    # conv2d's activation stays none / relu / gelu; the message lists linear's choices.
    x = rand(rng, (1, 2, 5, 5), "float32")
    w = rand(rng, (3, 2, 3, 3), "float32")
    with pytest.raises(ValueError, match="unknown activation 'gelu_erf'"):
        lc.conv2d_nchw(x, w, None, activation="gelu_erf")
    with pytest.raises(ValueError, match=r"gelu_erf.*exact"):
        lc.linear(x[0, 0], w[0, 0].T, None, "erf")


def test_linear_residual_is_added_before_the_activation(backend):
    # x @ w^T = -1, residual = +3: relu(-1 + 3) = 2 (before) vs relu(-1) + 3 = 3 (after).
    x = np.ones((1, 1), np.float32)
    w = -np.ones((1, 1), np.float32)
    r = np.full((1, 1), 3.0, np.float32)
    assert lc.linear(x, w, None, "relu", backend, residual=r)[0, 0] == 2.0


@pytest.mark.parametrize("dt", DTYPES)
def test_linear_residual_aliasing_out_in_place(backend, dt, rng):
    # The transformer's x = x + proj(h), written in place: out is the residual itself.
    h = rand(rng, (9, 31), dt)
    w = rand(rng, (17, 31), dt)
    x = rand(rng, (9, 17), dt)
    x0 = x.copy()
    lc.linear_into(h, w, None, x, "none", backend, residual=x)
    check(x, h, w.T, dt, residual=x0)


def test_linear_positional_arguments_unchanged(rng):
    x, w, b = rand(rng, (4, 6), "float32"), rand(rng, (3, 6), "float32"), rand(rng, (3,), "float32")
    check(lc.linear(x, w, b, "relu", "cpu"), x, w.T, "float32", bias=b, act="relu")
    with pytest.raises(TypeError, match=r"^\[linear\]"):
        lc.linear(x, w, b, "relu", "cpu", x)  # residual is keyword-only


@pytest.mark.parametrize("dt", DTYPES)
def test_linear_empty_sizes(backend, dt, rng):
    x, w, b = rand(rng, (4, 0), dt), rand(rng, (3, 0), dt), rand(rng, (3,), dt)
    r = rand(rng, (4, 3), dt)
    got = lc.linear(x, w, b, "relu", backend, residual=r)
    np.testing.assert_allclose(f64(got), np.maximum(f64(b) + f64(r), 0), rtol=1e-2)
    assert lc.linear(rand(rng, (0, 5), dt), rand(rng, (3, 5), dt), None, "none", backend).shape == (0, 3)


# ---- matmul: torch.matmul semantics -----------------------------------------------------------

BATCH_CASES = [
    ((5,), (5,)),                      # 1-D . 1-D -> scalar
    ((5,), (5, 3)),                    # 1-D @ 2-D -> [3]
    ((4, 5), (5,)),                    # 2-D @ 1-D -> [4]
    ((3, 4, 5), (5,)),                 # batched @ 1-D
    ((5,), (3, 5, 2)),                 # 1-D @ batched
    ((7, 3, 4), (7, 4, 6)),            # bmm
    ((7, 3, 4), (4, 6)),               # shared b (folded into one GEMM)
    ((3, 4), (7, 4, 6)),               # shared a (stride 0)
    ((2, 1, 3, 4), (1, 5, 4, 6)),      # broadcast both: grouped calls
    ((2, 5, 3, 4), (5, 4, 6)),         # broadcast leading
    ((1, 1, 3, 4), (2, 3, 4, 1)),      # n = 1
    ((2, 3, 1, 13), (3, 13, 11)),      # m = 1
    ((4, 0, 5), (4, 5, 3)),            # m = 0
    ((4, 3, 0), (4, 0, 2)),            # k = 0 -> zeros
    ((0, 3, 4), (4, 2)),               # empty batch
    ((3, 1, 2, 7, 3), (4, 1, 3, 5)),   # 5-D x 4-D
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shapes", BATCH_CASES, ids=lambda s: f"{s[0]}@{s[1]}")
def test_matmul_batched_broadcast(backend, dt, shapes, rng):
    sa, sb = shapes
    a, b = rand(rng, sa, dt), rand(rng, sb, dt)
    want_shape = np.matmul(f64(a), f64(b)).shape
    got = lc.matmul(a, b, backend)
    got = np.asarray(got)
    assert got.shape == want_shape
    check(got, a, b, dt)
    out = poisoned(want_shape, dt)
    lc.matmul_into(a, b, out, backend)
    check(out, a, b, dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_matmul_transposed_and_sliced_operands(backend, dt, rng):
    a = rand(rng, (6, 9, 11), dt)
    kt = rand(rng, (6, 13, 11), dt)
    b = kt.transpose(0, 2, 1)              # q @ k^T: read with trans_b, no copy
    check(lc.matmul(a, b, backend), a, b, dt)
    w = rand(rng, (7, 11), dt)
    check(lc.matmul(a, w.T, backend), a, w.T, dt)  # a transposed 2-D weight, broadcast
    s = rand(rng, (6, 20, 11), dt)[:, ::2]     # a sliced (non-contiguous) a
    check(lc.matmul(s, b[:, :, :5], backend), s, b[:, :, :5], dt)


def test_matmul_64_small_products_threaded_path(backend, rng):
    # The benchmark's shape: 64 x (128x64 @ 64x128), one product per pool task on the CPU.
    for dt in ["float32", "bfloat16"]:
        a, b = rand(rng, (64, 128, 64), dt), rand(rng, (64, 64, 128), dt)
        check(lc.matmul(a, b, backend), a, b, dt)


def test_matmul_aliasing_out(backend, rng):
    a = rand(rng, (3, 8, 8), "float32")
    b = rand(rng, (3, 8, 8), "float32")
    a0 = a.copy()
    lc.matmul_into(a, b, a, backend)     # out is a: computed through scratch
    check(a, a0, b, "float32")
    b0 = b.copy()
    lc.matmul_into(a0, b, b, backend)    # out is b
    check(b, a0, b0, "float32")


def test_matmul_lc_tensors_and_results(backend, rng):
    a, b = rand(rng, (4, 6, 5), "float32"), rand(rng, (5, 3), "float32")
    got = lc.matmul(lc.Tensor(a, device=backend), lc.Tensor(b, device=backend), backend)
    assert isinstance(got, lc.Tensor) and got.shape == (4, 6, 3)
    check(got.numpy(), a, b, "float32")


# ---- bad inputs: the op's name, the shapes, no partial write -----------------------------------

def _assert_untouched(out):
    assert np.isnan(f64(out)).all(), "an error left a partial write in out"


@pytest.mark.parametrize("fn", ["matmul", "matmul2d"])
def test_dtype_mix_is_a_type_error(fn, rng):
    a = rand(rng, (3, 4), "float32")
    b = rand(rng, (4, 5), "float16")
    out = poisoned((3, 5), "float32")
    with pytest.raises(TypeError, match=rf"^\[{fn}\].*float32.*float16"):
        getattr(lc, fn + "_into")(a, b, out, "cpu")
    _assert_untouched(out)
    with pytest.raises(TypeError, match=rf"^\[{fn}\]"):
        getattr(lc, fn)(a, rand(rng, (4, 5), "float64"))
    with pytest.raises(TypeError, match=rf"^\[{fn}\].*int32"):
        getattr(lc, fn)(a, np.zeros((4, 5), np.int32))


def test_linear_dtype_mix_and_residual_shape(rng):
    x, w = rand(rng, (3, 4), "float32"), rand(rng, (5, 4), "float32")
    with pytest.raises(TypeError, match=r"^\[linear\].*bias"):
        lc.linear(x, w, rand(rng, (5,), "float16"))
    with pytest.raises(TypeError, match=r"^\[linear\].*residual"):
        lc.linear(x, w, residual=rand(rng, (3, 5), "float64"))
    with pytest.raises(TypeError, match=r"^\[linear\].*weight"):
        lc.linear(x, rand(rng, (5, 4), "float16"))
    out = poisoned((3, 5), "float32")
    with pytest.raises(ValueError, match=r"^\[linear\] residual has shape \[1, 5\].*\[3, 5\]"):
        lc.linear_into(x, w, None, out, residual=rand(rng, (1, 5), "float32"))
    _assert_untouched(out)
    with pytest.raises(ValueError, match=r"^\[linear\] residual"):
        lc.linear(x, w, residual=rand(rng, (3, 4), "float32"))


def test_matmul_shape_errors_name_the_shapes(rng):
    f = "float32"
    with pytest.raises(ValueError, match=r"^\[matmul\] inner dimensions differ: a is \[2, 3, 4\] and b is \[5, 6\]"):
        lc.matmul(rand(rng, (2, 3, 4), f), rand(rng, (5, 6), f))
    with pytest.raises(ValueError, match=r"^\[matmul\] inner dimensions differ.*\[7\]"):
        lc.matmul(rand(rng, (3, 4), f), rand(rng, (7,), f))
    with pytest.raises(ValueError, match=r"^\[matmul\] batch dimensions do not broadcast: a is \[2, 3, 4\] and b is \[3, 4, 5\]"):
        lc.matmul(rand(rng, (2, 3, 4), f), rand(rng, (3, 4, 5), f))
    with pytest.raises(ValueError, match=r"^\[matmul\] both operands need at least 1 dimension"):
        lc.matmul(np.float32(3.0), rand(rng, (3,), f))
    out = poisoned((2, 3, 5), f)
    with pytest.raises(ValueError, match=r"^\[matmul\] 'out' has shape \[2, 3, 5\] but the result has shape \[2, 3, 6\]"):
        lc.matmul_into(rand(rng, (2, 3, 4), f), rand(rng, (4, 6), f), out)
    _assert_untouched(out)
    out16 = poisoned((2, 3, 6), "float16")
    with pytest.raises(TypeError, match=r"^\[matmul\] 'out' must be float32, got float16"):
        lc.matmul_into(rand(rng, (2, 3, 4), f), rand(rng, (4, 6), f), out16)
    _assert_untouched(out16)
    with pytest.raises(ValueError, match=r"^\[matmul2d\] inner dimensions differ"):
        lc.matmul2d(rand(rng, (3, 4), "bfloat16"), rand(rng, (5, 4), "bfloat16"))
    with pytest.raises(TypeError, match=r"^\[matmul\] invalid arguments"):
        lc.matmul(rand(rng, (3, 4), f), rand(rng, (4, 3), f), "cpu", "extra")


# ---- placement, work estimates -----------------------------------------------------------------

def test_explain_placement_knows_matmul():
    # matmul's work estimate (broadcast batch count x 2 m k n) is known to placement
    text = lc.explain_placement("matmul", (64, 128, 64), (64, 64, 128))
    assert isinstance(text, str) and text
    assert lc.explain_placement("matmul", (5,), (3, 5, 2))
    with pytest.raises(ValueError, match="matmul"):
        lc.explain_placement("matmul", (), (3, 4))


def test_float64_runs_on_the_cpu_whatever_the_device(rng):
    a, b = rand(rng, (5, 6), "float64"), rand(rng, (6, 4), "float64")
    for dev in backends:
        check(lc.matmul2d(a, b, dev), a, b, "float64")
        assert lc.last_op_report()["device"] == "cpu"
        check(lc.matmul(a, b, dev), a, b, "float64")
        assert lc.last_op_report()["device"] == "cpu"


# ---- GPU: resident 16-bit tensors, larger shapes (tensor cores) --------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["float16", "bfloat16", "float32"])
def test_gpu_resident_gemm_and_bmm(dt, rng):
    a, b = rand(rng, (257, 511), dt), rand(rng, (511, 263), dt)
    ta, tb = lc.Tensor(a, device="cuda"), lc.Tensor(b, device="cuda")
    r = lc.matmul2d(ta, tb, "cuda")
    assert isinstance(r, lc.Tensor) and r.device == "cuda" and r.dtype == dt
    check(r.numpy(), a, b, dt)
    x, y = rand(rng, (64, 128, 64), dt), rand(rng, (64, 64, 128), dt)
    r = lc.matmul(lc.Tensor(x, device="cuda"), lc.Tensor(y, device="cuda"), "cuda")
    check(r.numpy(), x, y, dt)
    # broadcast operand (stride 0) and a misaligned view (an odd element offset)
    check(lc.matmul(y[0], x, "cuda"), y[0], x, dt)  # [64, 128] @ [64, 128, 64]
    off = rand(rng, (1 + 31 * 17,), dt)[1:].reshape(31, 17)
    check(lc.matmul2d(off, b[:17, :9].copy(), "cuda"), off, b[:17, :9], dt)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["float16", "bfloat16", "float32"])
def test_gpu_linear_residual_epilogues(dt, rng):
    x = rand(rng, (3, 65, 96), dt)
    w = rand(rng, (80, 96), dt)
    b = rand(rng, (80,), dt)
    r = rand(rng, (3, 65, 80), dt)
    for act in ["none", "relu", "gelu"]:
        got = lc.linear(x, w, b, act, "cuda", residual=r)
        if act == "gelu" and dt == "float32":
            # cuBLASLt's GELU epilogue uses a fast tanh (~3e-5 relative on single elements)
            np.testing.assert_allclose(f64(got), f64(lc.linear(x, w, b, act, "cpu", residual=r)),
                                       rtol=1e-4, atol=1e-4)
        else:
            check(got, x, w.T, dt, bias=b, residual=r, act=act)
    xr = lc.Tensor(r, device="cuda")
    lc.linear_into(lc.Tensor(x, device="cuda"), lc.Tensor(w, device="cuda"), None, xr, "none",
                   "cuda", residual=xr)
    check(xr.numpy(), x, w.T, dt, residual=r)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", ["float16", "bfloat16"])
def test_gpu_autotuned_gemm_per_dtype(dt, rng):
    # The tuner times cuBLASLt's candidates in the storage dtype and the op then uses the winner
    # (plans are keyed by dtype); the result is still right.
    info = lc.gemm_prepare(192, 320, 256, "autotuned", dtype=dt)
    assert info["candidates"] >= 1 and 0 <= info["algo_index"] < info["candidates"]
    a, b = rand(rng, (192, 320), dt), rand(rng, (320, 256), dt)
    check(lc.matmul2d(lc.Tensor(a, device="cuda"), lc.Tensor(b, device="cuda"), "cuda").numpy(), a, b, dt)
    again = lc.gemm_prepare(192, 320, 256, "autotuned", dtype=dt)
    assert again["from_cache"] and again["algo_index"] == info["algo_index"]


def test_gemm_prepare_refuses_other_dtypes():
    with pytest.raises(TypeError, match=r"^\[gemm_prepare\] dtype must be float32, float16 or bfloat16"):
        lc.gemm_prepare(4, 4, 4, "autotuned", dtype="float64")
