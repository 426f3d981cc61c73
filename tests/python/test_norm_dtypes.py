"""layernorm / softmax over [..., C] and attention2d in every storage dtype, on every backend.

Each case draws fresh inputs, rounds them to the dtype, and compares the result with a float64
numpy reference computed from exactly those rounded values (so the error left is the kernel's
arithmetic plus the one rounding of each stored result). Tolerances (relative Frobenius error):
float32 1e-5, float16 5e-3, bfloat16 1e-2 (2^-11 / 2^-8 per stored element), float64 1e-12.
Outputs of the `_into` forms are poisoned with NaN first and must come back fully written.

Dtypes: float32, float16, bfloat16 on every backend; float64 on the CPU (device="cuda" runs it on
the CPU as a fallback, tested below). gamma / beta have x's dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import backends
from dtype_util import np_dtype
from parity import ref_attention, ref_layernorm, rel_error

try:
    import ml_dtypes
except ImportError:  # bfloat16 cases skip without it
    ml_dtypes = None

DTYPES = ["float32", "float16", "bfloat16", "float64"]
DTYPES_16 = ["float16", "bfloat16"]
TOL = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 1e-2, "float64": 1e-12}
KINDS = ["numpy", "strided", "tensor", "view"]


def devices_for(dtype):
    """float64 is computed on the CPU only (its device="cuda" fallback has its own test)."""
    return ["cpu"] if dtype == "float64" else backends


def cast(x, dtype):
    return np.asarray(x, dtype=np.float64).astype(np_dtype(dtype))


def f64(a):
    if isinstance(a, lc.Tensor):
        a = a.numpy()
    return np.asarray(a).astype(np.float64)


def ref_softmax(x):
    """Row-max subtracted; rows of all -inf give NaN (-inf - -inf), as torch.softmax."""
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def strided_view(x):
    """A non-contiguous view with x's values: every other element of the last axis of a
    NaN-filled buffer (offset by one element, so 16-byte vector paths cannot apply)."""
    c = x.shape[-1]
    buf = np.full(x.shape[:-1] + (2 * c + 1,), np.nan, dtype=x.dtype)
    view = buf[..., 1 : 2 * c + 1 : 2]
    view[...] = x
    return buf, view


def make(kind, x, device, dtype):
    if kind == "numpy":
        return x
    if kind == "strided":
        return strided_view(x)[1]
    if kind == "tensor":
        return lc.Tensor(x, device=device, dtype=dtype)
    buf, view = strided_view(x)  # "view": a strided lc.Tensor resident on the device
    t = lc.Tensor(buf, device=device, dtype=dtype)
    item = buf.itemsize
    offset = (view.__array_interface__["data"][0] - buf.__array_interface__["data"][0]) // item
    return t._view(list(view.shape), [s // item for s in view.strides], offset)


def poisoned_out(kind, shape, device, dtype):
    a = np.full(shape, np.nan, dtype=np_dtype(dtype))
    return lc.Tensor(a, device=device, dtype=dtype) if kind in ("tensor", "view") else a


def check_result(res, ref, kind, device, dtype, where):
    if kind in ("tensor", "view"):
        assert isinstance(res, lc.Tensor), where
        assert res.device == device and res.dtype == dtype, (where, res.device, res.dtype)
    else:
        assert isinstance(res, np.ndarray) and res.dtype == np_dtype(dtype), (where, type(res))
    y = f64(res)
    assert y.shape == ref.shape, (where, y.shape, ref.shape)
    assert not np.isnan(y).any(), f"{where}: {int(np.isnan(y).sum())} NaN (unwritten or wrong)"
    err = rel_error(y, ref)
    assert err <= TOL[dtype], f"{where}: relative error {err:.3e} > {TOL[dtype]:.0e}"


# ---- layernorm / softmax over [..., C] ------------------------------------------------------

# Leading dims of every rank, C = 1 and primes, C across the CUDA kernels (warp <= 1024 < block
# <= 16384 < long rows; multiples of 8 take the 16-byte vector path), and a CPU-threaded size.
NORM_SHAPES = [(7,), (1, 1), (13, 1), (3, 5, 129), (2, 1, 3, 768), (4, 97), (3, 1031),
               (2, 4104), (2, 16411), (600, 450)]


def norm_cases():
    for dtype in DTYPES:
        for device in devices_for(dtype):
            for shape in NORM_SHAPES:
                yield pytest.param(dtype, device, shape, id=f"{dtype}-{device}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype,device,shape", list(norm_cases()))
def test_layernorm(dtype, device, shape, kind, form, rng):
    c = shape[-1]
    x = cast(rng.standard_normal(shape) * 2.0 + 3.0, dtype)
    affine = rng.integers(0, 3)  # none / gamma / gamma + beta
    g = cast(rng.standard_normal(c) + 1.0, dtype) if affine >= 1 else None
    b = cast(rng.standard_normal(c), dtype) if affine >= 2 else None
    eps = 1e-5
    ref = ref_layernorm(f64(x), None if g is None else f64(g), None if b is None else f64(b), eps)
    xa = make(kind, x, device, dtype)
    ga = None if g is None else make("tensor" if kind in ("tensor", "view") else "numpy", g, device, dtype)
    ba = None if b is None else make("tensor" if kind in ("tensor", "view") else "numpy", b, device, dtype)
    where = f"layernorm {dtype} {shape} on {device} ({kind}, {form}, affine={affine})"
    if form == "return":
        res = lc.layernorm(xa, ga, ba, eps, device)
    else:
        out = poisoned_out(kind, shape, device, dtype)
        res = lc.layernorm_into(xa, ga, ba, out, eps, device)
        assert res is out, where
    if c == 1:  # variance 0: every element is beta (or 0)
        ref = np.broadcast_to(f64(b) if b is not None else 0.0, shape).astype(np.float64)
        assert np.array_equal(f64(res), ref), where
        return
    check_result(res, ref, kind, device, dtype, where)
    assert np.array_equal(f64(x), f64(x)), where  # inputs untouched (x is a fresh array)


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype,device,shape", list(norm_cases()))
def test_softmax(dtype, device, shape, kind, form, rng):
    x = cast(rng.standard_normal(shape) * 4.0, dtype)
    ref = ref_softmax(f64(x))
    xa = make(kind, x, device, dtype)
    where = f"softmax {dtype} {shape} on {device} ({kind}, {form})"
    if form == "return":
        res = lc.softmax(xa, device)
    else:
        out = poisoned_out(kind, shape, device, dtype)
        res = lc.softmax_into(xa, out, device)
        assert res is out, where
    check_result(res, ref, kind, device, dtype, where)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4), (0, 3, 768), (4, 1, 0)])
def test_zero_size_gives_empty(dtype, shape):
    """Like numpy / torch: an empty x (a zero leading dim or C == 0) gives an empty result."""
    x = np.zeros(shape, np_dtype(dtype))
    g = np.ones(shape[-1], np_dtype(dtype))
    for device in devices_for(dtype):
        for r in (lc.layernorm(x, g, g, 1e-5, device), lc.softmax(x, device)):
            assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == np_dtype(dtype)
        out = np.empty(shape, np_dtype(dtype))
        assert lc.layernorm_into(x, None, g, out, 1e-5, device) is out
        assert lc.softmax_into(x, out, device) is out
        t = lc.Tensor(x, device=device, dtype=dtype)
        r = lc.softmax(t, device)
        assert isinstance(r, lc.Tensor) and r.shape == shape and r.dtype == dtype
        with pytest.raises(ValueError, match=r"^\[layernorm\] 'gamma' must be 1-D of length"):
            lc.layernorm(x, np.ones(shape[-1] + 1, np_dtype(dtype)), None, 1e-5, device)
    # the runtime still computes afterwards
    np.testing.assert_allclose(lc.softmax(np.zeros((2, 4), np.float32)), np.full((2, 4), 0.25))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", backends)
def test_softmax_minus_infinity_rows(dtype, device, rng):
    """-inf entries weigh exactly 0; a row of only -inf is NaN (as torch.softmax gives)."""
    if dtype == "float64" and device != "cpu":
        pytest.skip("float64 runs on the CPU")
    for c in (1, 7, 768, 1031, 20000):
        x = rng.standard_normal((4, c)) * 3
        x[0, :] = -np.inf
        x[1, ::2] = -np.inf
        x[2, 0] = -np.inf
        x = cast(x, dtype)
        y = f64(lc.softmax(x, device))
        assert np.isnan(y[0]).all(), (dtype, c)
        if c == 1:
            assert np.isnan(y[1]).all()
            continue
        assert not np.isnan(y[1:]).any(), (dtype, c)
        assert (y[1, ::2] == 0).all() and y[2, 0] == 0
        assert rel_error(y[1:], ref_softmax(f64(x)[1:])) <= TOL[dtype], (dtype, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", backends)
def test_extreme_magnitudes(dtype, device, rng):
    """Large magnitudes within each dtype's range: softmax needs the max subtraction, layernorm
    is scale invariant (its squares stay finite in float32), and a large common offset must
    not cost the mean its precision."""
    if dtype == "float64" and device != "cpu":
        pytest.skip("float64 runs on the CPU")
    big = 6e4 if dtype == "float16" else 1e15
    for shape in [(5, 33), (3, 768), (2, 3000)]:
        x = cast(rng.uniform(-1, 1, shape) * big, dtype)
        ref = ref_layernorm(f64(x), None, None, 1e-5)
        assert rel_error(f64(lc.layernorm(x, None, None, 1e-5, device)), ref) <= TOL[dtype], shape
        y = f64(lc.softmax(x, device))
        assert not np.isnan(y).any()
        assert rel_error(y, ref_softmax(f64(x))) <= TOL[dtype], shape
    if dtype in ("float32", "bfloat16"):  # near float's max: x - max overflows to -inf -> 0
        x = cast(rng.uniform(-3e38, 3e38, (3, 768)), dtype)
        x[:, 5] = 3e38
        y = f64(lc.softmax(x, device))
        assert not np.isnan(y).any() and rel_error(y, ref_softmax(f64(x))) <= TOL[dtype]
    if dtype in ("float32", "float64"):
        x = cast(1e4 + rng.standard_normal((4, 768)), dtype)
        ref = ref_layernorm(f64(x), None, None, 1e-5)
        # float64: the numpy reference itself loses ~1e4 * 2^-52 * sqrt(768) to the offset
        tol = 1e-10 if dtype == "float64" else TOL[dtype]
        assert rel_error(f64(lc.layernorm(x, None, None, 1e-5, device)), ref) <= tol


def test_dtype_mixes_and_bad_shapes_are_clear():
    x16 = np.ones((2, 3, 768), np.float16)
    with pytest.raises(TypeError, match=r"^\[layernorm\] 'x' is float16 but 'gamma' is float32"):
        lc.layernorm(x16, np.ones(768, np.float32))
    if ml_dtypes is not None:
        with pytest.raises(TypeError, match=r"^\[layernorm\] 'x' is bfloat16 but 'beta' is float16"):
            lc.layernorm(x16.astype(ml_dtypes.bfloat16), None, np.ones(768, np.float16))
    with pytest.raises(ValueError, match=r"'gamma' must be 1-D of length 768 .*\[2, 3, 768\].*got shape \[767\]"):
        lc.layernorm(x16, np.ones(767, np.float16))
    with pytest.raises(ValueError, match=r"'beta' must be 1-D .* got shape \[1, 768\]"):
        lc.layernorm(x16, None, np.ones((1, 768), np.float16))
    with pytest.raises(TypeError, match=r"^\[softmax\] 'x' must be float32, float16 or bfloat16 \(or float64\), got int64"):
        lc.softmax(np.ones((2, 3), np.int64))
    out = np.full((2, 3, 768), 7.0, np.float32)
    with pytest.raises(lc.OutDTypeError, match=r"'out' must be float16"):
        lc.softmax_into(x16, out)
    assert (out == 7.0).all()


# ---- layernorm(x + residual): the fused residual add ----------------------------------------
# The residual is summed into the row as the kernel reads it (float32 for 16-bit storage, so the
# reference is the float64 sum of the stored values); any strides, x's shape and dtype only.

RES_SHAPES = [(7,), (1, 1), (1, 13), (13, 1), (3, 5, 129), (2, 1, 3, 768), (3, 1031), (2, 16411),
              (600, 450)]
# (x's kind, residual's kind): numpy / strided numpy / device tensor / strided device view (whose
# odd offset keeps the CUDA kernels off their 16-byte vector path)
RES_KINDS = [("numpy", "numpy"), ("numpy", "strided"), ("strided", "numpy"), ("tensor", "tensor"),
             ("tensor", "view"), ("view", "tensor")]


def residual_cases():
    for dtype in DTYPES:
        for device in devices_for(dtype):
            for shape in RES_SHAPES:
                yield pytest.param(dtype, device, shape, id=f"{dtype}-{device}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("kinds", RES_KINDS, ids=lambda k: "-".join(k))
@pytest.mark.parametrize("dtype,device,shape", list(residual_cases()))
def test_layernorm_residual(dtype, device, shape, kinds, form, rng):
    c = shape[-1]
    x = cast(rng.standard_normal(shape) * 2.0 + 3.0, dtype)
    r = cast(rng.standard_normal(shape) * 1.5 - 1.0, dtype)
    affine = rng.integers(0, 3)  # none / gamma / gamma + beta
    g = cast(rng.standard_normal(c) + 1.0, dtype) if affine >= 1 else None
    b = cast(rng.standard_normal(c), dtype) if affine >= 2 else None
    eps = 1e-5
    ref = ref_layernorm(f64(x) + f64(r), None if g is None else f64(g),
                        None if b is None else f64(b), eps)
    xk, rk = kinds
    xa, ra = make(xk, x, device, dtype), make(rk, r, device, dtype)
    on_dev = xk in ("tensor", "view")
    ga = None if g is None else make("tensor" if on_dev else "numpy", g, device, dtype)
    ba = None if b is None else make("tensor" if on_dev else "numpy", b, device, dtype)
    where = f"layernorm+residual {dtype} {shape} on {device} ({xk}/{rk}, {form}, affine={affine})"
    if form == "return":
        res = lc.layernorm(xa, ga, ba, eps, device, residual=ra)
    else:
        out = poisoned_out(xk, shape, device, dtype)
        res = lc.layernorm_into(xa, ga, ba, out, eps, device, residual=ra)
        assert res is out, where
    if c == 1:  # variance 0: every element is beta (or 0)
        ref = np.broadcast_to(f64(b) if b is not None else 0.0, shape).astype(np.float64)
        assert np.array_equal(f64(res), ref), where
        return
    check_result(res, ref, xk, device, dtype, where)
    # the inputs are untouched (the float32 kernels stage the sum in the output row)
    assert np.array_equal(f64(xa), f64(x)) and np.array_equal(f64(ra), f64(r)), where


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_residual_matches_unfused(dtype, rng):
    """Same as layernorm(add(x, r)) where the sum is exact in the dtype (float32 / float64 here;
    16-bit sums are rounded by the unfused add but not by the fused one)."""
    x = cast(rng.standard_normal((9, 77)), dtype)
    r = cast(rng.standard_normal((9, 77)), dtype)
    g = cast(rng.standard_normal(77), dtype)
    for device in devices_for(dtype):
        fused = f64(lc.layernorm(x, g, None, 1e-5, device, residual=r))
        unfused = f64(lc.layernorm(lc.add(x, r, device), g, None, 1e-5, device))
        tol = {"float64": 1e-13, "float32": 1e-5}.get(dtype, 2 * TOL[dtype])
        assert rel_error(fused, unfused) <= tol, (dtype, device)
        # residual=None is the plain layernorm, bit for bit
        assert np.array_equal(f64(lc.layernorm(x, g, None, 1e-5, device, residual=None)),
                              f64(lc.layernorm(x, g, None, 1e-5, device)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4)])
def test_layernorm_residual_zero_size(dtype, shape):
    x = np.zeros(shape, np_dtype(dtype))
    for device in devices_for(dtype):
        r = lc.layernorm(x, None, None, 1e-5, device, residual=x.copy())
        assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == np_dtype(dtype)
        out = np.empty(shape, np_dtype(dtype))
        assert lc.layernorm_into(x, None, None, out, 1e-5, device, residual=x.copy()) is out


@pytest.mark.parametrize("device", backends)
def test_layernorm_residual_bad_inputs(device):
    x = np.ones((2, 3, 8), np.float32)
    g = np.ones(8, np.float32)
    out = np.full((2, 3, 8), 7.0, np.float32)
    # broadcastable shapes are not accepted: the residual is exactly x's shape
    for bad in [(8,), (1, 3, 8), (2, 3, 7), (3, 8), (2, 3, 8, 1)]:
        with pytest.raises(ValueError, match=r"^\[layernorm\] 'residual' must have x's shape "
                                             r"\[2, 3, 8\] .*got \[" + ", ".join(map(str, bad)) + r"\]"):
            lc.layernorm(x, g, None, 1e-5, device, residual=np.ones(bad, np.float32))
        with pytest.raises(ValueError, match=r"'residual' must have x's shape"):
            lc.layernorm_into(x, g, None, out, 1e-5, device, residual=np.ones(bad, np.float32))
    with pytest.raises(TypeError, match=r"^\[layernorm\] 'x' is float32 but 'residual' is float16"):
        lc.layernorm(x, g, None, 1e-5, device, residual=x.astype(np.float16))
    with pytest.raises(TypeError, match=r"^\[layernorm\] 'x' is float32 but 'residual' is float16"):
        lc.layernorm_into(x, g, None, out, 1e-5, device, residual=x.astype(np.float16))
    with pytest.raises(TypeError):
        lc.layernorm(x, g, None, 1e-5, device, residual="x")
    assert (out == 7.0).all()  # no partial write into the caller's out
    # the runtime still computes afterwards
    y = lc.layernorm(x, g, None, 1e-5, device, residual=x)
    np.testing.assert_array_equal(y, np.zeros_like(x))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_layernorm_residual_resident(dtype, rng):
    """Device-resident x and residual across the CUDA kernels' size ladder (warp rows, block
    rows, long rows; vector and element paths); the result stays on the device."""
    for shape in [(5, 32), (3, 768), (2, 1000), (4, 4096), (2, 12345), (3, 20000), (70000, 8)]:
        x = cast(rng.standard_normal(shape), dtype)
        r = cast(rng.standard_normal(shape), dtype)
        g = cast(rng.standard_normal(shape[-1]), dtype)
        b = cast(rng.standard_normal(shape[-1]), dtype)
        td = [lc.Tensor(a, device="cuda", dtype=dtype) for a in (x, r, g, b)]
        y = lc.layernorm(td[0], td[2], td[3], 1e-5, "cuda", residual=td[1])
        assert isinstance(y, lc.Tensor) and y.device == "cuda"
        ref = ref_layernorm(f64(x) + f64(r), f64(g), f64(b), 1e-5)
        assert rel_error(f64(y), ref) <= TOL[dtype], (dtype, shape)


# ---- softmax(x * scale + mask): the fused attention-score prologue --------------------------
# scale and the additive mask are applied in the compute type as the kernel reads the row; the
# mask has x's trailing dimensions (repeated over the leading ones) or broadcasts over middle
# ones (test_softmax_broadcast_masks), any strides.

SM_SHAPES = [(7,), (1, 1), (1, 13), (3, 5, 129), (2, 3, 8, 8), (2, 1, 3, 768), (3, 1031),
             (2, 16411), (600, 450)]


def softmax_mask_cases():
    for dtype in DTYPES:
        for device in devices_for(dtype):
            for shape in SM_SHAPES:
                yield pytest.param(dtype, device, shape, id=f"{dtype}-{device}-{'x'.join(map(str, shape))}")


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("kinds", RES_KINDS, ids=lambda k: "-".join(k))
@pytest.mark.parametrize("dtype,device,shape", list(softmax_mask_cases()))
def test_softmax_scale_mask(dtype, device, shape, kinds, form, rng):
    xk, mk = kinds
    x = cast(rng.standard_normal(shape) * 3.0, dtype)
    mdims = int(rng.integers(0, min(len(shape), 2) + 1))  # no mask / [C] / [R, C]
    mask = None
    if mdims:
        m = rng.standard_normal(shape[-mdims:]) * 2.0
        m[rng.random(m.shape) < 0.2] = -np.inf  # masked-out entries weigh 0
        m.reshape(-1, shape[-1])[:, 0] = 0.0  # every row keeps a finite entry
        mask = cast(m, dtype)
    scale = float(rng.choice([1.0, 0.125, 2.5]))
    arg = f64(x) * scale + (0.0 if mask is None else f64(mask))
    ref = ref_softmax(arg)
    xa = make(xk, x, device, dtype)
    ma = None if mask is None else make(mk, mask, device, dtype)
    where = f"softmax scale={scale} mask={None if mask is None else mask.shape} {dtype} {shape} on {device} ({xk}/{mk}, {form})"
    if form == "return":
        res = lc.softmax(xa, device, scale=scale, mask=ma)
    else:
        out = poisoned_out(xk, shape, device, dtype)
        res = lc.softmax_into(xa, out, device, scale=scale, mask=ma)
        assert res is out, where
    check_result(res, ref, xk, device, dtype, where)
    if mask is not None:  # -inf entries are exactly 0
        y = f64(res)
        assert (y[np.broadcast_to(np.isneginf(f64(mask)), shape)] == 0).all(), where
    assert np.array_equal(f64(xa), f64(x)), where


# Masks broadcast over middle dimensions (numpy rules), read in place through SoftmaxArgs'
# mask_repeat / mask_outer. A pattern names the mask's dimensions against scores [B, H, S, S]:
# a letter keeps x's size there, "1" broadcasts. Key-padding "B11S", per-batch "B1SS",
# per-head "1H1S" / "H1S", trailing ones and x's own shape.
BCAST_MASKS = ["B11S", "B1SS", "1H1S", "H1S", "11SS", "SS", "S", "BHSS", "111S", "BH1S"]


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("pattern", BCAST_MASKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_broadcast_masks(dtype, pattern, form, rng):
    for device in devices_for(dtype):
        for shape in [(3, 4, 5, 7), (2, 12, 33, 129)]:
            off = len(shape) - len(pattern)
            ms = tuple(1 if c == "1" else shape[off + i] for i, c in enumerate(pattern))
            x = cast(rng.standard_normal(shape) * 3.0, dtype)
            m = rng.standard_normal(ms) * 2.0
            m[rng.random(ms) < 0.25] = -np.inf
            m[..., 0] = 0.0  # every row keeps a finite entry
            mask = cast(m, dtype)
            ref = ref_softmax(f64(x) * 0.5 + f64(mask))
            where = f"softmax mask {ms} over {shape} {dtype} on {device} ({form})"
            if form == "return":
                res = lc.softmax(x, device, scale=0.5, mask=mask)
            else:
                out = poisoned_out("numpy", shape, device, dtype)
                res = lc.softmax_into(x, out, device, scale=0.5, mask=mask)
                assert res is out, where
            check_result(res, ref, "numpy", device, dtype, where)
            y = f64(res)
            assert (y[np.broadcast_to(np.isneginf(f64(mask)), shape)] == 0).all(), where


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_scale_mask_matches_unfused(dtype, rng):
    x = cast(rng.standard_normal((2, 3, 9, 9)), dtype)
    m = cast(np.triu(np.full((9, 9), -np.inf), 1), dtype)  # a causal mask
    for device in devices_for(dtype):
        fused = f64(lc.softmax(x, device, scale=0.25, mask=m))
        unfused = f64(lc.softmax(lc.add(lc.vector_scale(x, 0.25, device), m, device), device))
        tol = {"float64": 1e-13, "float32": 1e-6}.get(dtype, 2 * TOL[dtype])
        assert rel_error(fused, unfused) <= tol, (dtype, device)
        assert (fused[..., np.triu_indices(9, 1)[0], np.triu_indices(9, 1)[1]] == 0).all()
        # the defaults are the plain softmax, bit for bit
        assert np.array_equal(f64(lc.softmax(x, device, scale=None, mask=None)), f64(lc.softmax(x, device)))


@pytest.mark.parametrize("device", backends)
def test_softmax_scale_mask_bad_inputs(device):
    x = np.ones((2, 3, 8), np.float32)
    out = np.full((2, 3, 8), 7.0, np.float32)
    for bad in [(3, 7), (2, 8), (2, 1, 1), (2, 3, 8, 1), (1, 2, 3, 8)]:
        with pytest.raises(ValueError, match=r"^\[softmax\] 'mask' \[" + ", ".join(map(str, bad)) +
                                             r"\] does not broadcast to x \[2, 3, 8\]"):
            lc.softmax(x, device, mask=np.zeros(bad, np.float32))
        with pytest.raises(ValueError, match=r"np.broadcast_to"):
            lc.softmax_into(x, out, device, mask=np.zeros(bad, np.float32))
    # broadcastable, but in three runs of x's sizes: refused with the same message
    x5 = np.ones((2, 3, 4, 5, 8), np.float32)
    with pytest.raises(ValueError, match=r"does not broadcast to x \[2, 3, 4, 5, 8\] as softmax reads it"):
        lc.softmax(x5, device, mask=np.zeros((2, 1, 4, 1, 8), np.float32))
    with pytest.raises(TypeError, match=r"^\[softmax\] 'x' is float32 but 'mask' is float16"):
        lc.softmax_into(x, out, device, mask=np.zeros(8, np.float16))
    for s in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^\[softmax\] scale must be a finite number > 0"):
            lc.softmax_into(x, out, device, scale=s)
    with pytest.raises(TypeError):
        lc.softmax(x, device, scale="big")
    assert (out == 7.0).all()  # no partial write into the caller's out
    np.testing.assert_allclose(lc.softmax(x, device, scale=3.0, mask=np.zeros(8, np.float32)),
                               np.full((2, 3, 8), 0.125), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4)])
def test_softmax_scale_mask_zero_size(dtype, shape):
    x = np.zeros(shape, np_dtype(dtype))
    m = np.zeros(shape[-1:], np_dtype(dtype))
    for device in devices_for(dtype):
        r = lc.softmax(x, device, scale=2.0, mask=m)
        assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == np_dtype(dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_softmax_scale_mask_resident(dtype, rng):
    """Attention-score shapes on the device across the kernels' size ladder (warp rows, block
    rows, long rows), a [S, S] causal mask repeated over batch and heads."""
    for b, h, s in [(2, 3, 32), (1, 4, 768), (1, 2, 1000), (1, 1, 4096), (1, 1, 20000)]:
        rows = min(s, 64)
        x = cast(rng.standard_normal((b, h, rows, s)) * 4, dtype)
        m = np.zeros((rows, s))
        m[np.triu_indices(rows, 1, s)] = -np.inf
        m = cast(m, dtype)
        xd, md = lc.Tensor(x, device="cuda", dtype=dtype), lc.Tensor(m, device="cuda", dtype=dtype)
        y = lc.softmax(xd, "cuda", scale=0.125, mask=md)
        assert isinstance(y, lc.Tensor) and y.device == "cuda"
        ref = ref_softmax(f64(x) * 0.125 + f64(m))
        assert rel_error(f64(y), ref) <= TOL[dtype], (dtype, b, h, s)


# ---- attention2d in float16 / bfloat16 ------------------------------------------------------

ATTN_SHAPES = [(1, 1, 1, 1), (7, 13, 5, 3), (13, 7, 9, 11), (64, 64, 64, 64), (37, 300, 17, 23),
               (150, 300, 67, 45)]


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", ATTN_SHAPES, ids=lambda s: "q{}-k{}-d{}-dv{}".format(*s))
@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("dtype", DTYPES_16)
def test_attention_16bit(dtype, device, shape, causal, kind, form, rng):
    sq, sk, d, dv = shape
    q = cast(rng.standard_normal((sq, d)), dtype)
    k = cast(rng.standard_normal((sk, d)), dtype)
    # few outputs: positive values, so no output element cancels to ~0 (see parity._gen_for)
    v = cast(rng.uniform(0.5, 1.5, (sk, dv)) if sq * dv <= 64 else rng.standard_normal((sk, dv)), dtype)
    ref = ref_attention(f64(q), f64(k), f64(v), causal)
    args = [make(kind, a, device, dtype) for a in (q, k, v)]
    where = f"attention2d {dtype} {shape} causal={causal} on {device} ({kind}, {form})"
    if form == "return":
        res = lc.attention2d(*args, causal, device)
    else:
        out = poisoned_out(kind, (sq, dv), device, dtype)
        res = lc.attention2d_into(*args, out, causal, device)
        assert res is out, where
    check_result(res, ref, kind, device, dtype, where)


def test_attention_dtype_mix_is_a_type_error():
    q = np.ones((4, 8), np.float16)
    with pytest.raises(TypeError, match=r"^\[attention2d\] 'q' is float16 but 'v' is float32"):
        lc.attention2d(q, q, np.ones((4, 8), np.float32))
    with pytest.raises(TypeError, match=r"^\[attention2d\] 'q' must be float32, float16 or bfloat16, got float64"):
        lc.attention2d(q.astype(np.float64), q.astype(np.float64), q.astype(np.float64))


# ---- GPU-only checks (skipped without a GPU) ------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_gpu_benchmark_shape_resident(dtype, rng):
    """The benchmark shape (8192 x 768, resident): matches the reference, result stays resident."""
    x = cast(rng.standard_normal((8192, 768)), dtype)
    g = cast(rng.standard_normal(768) + 1, dtype)
    b = cast(rng.standard_normal(768), dtype)
    xt, gt, bt = (lc.Tensor(a, device="cuda", dtype=dtype) for a in (x, g, b))
    y = lc.layernorm(xt, gt, bt, 1e-5, "cuda")
    assert isinstance(y, lc.Tensor) and y.device == "cuda" and y.dtype == dtype
    assert rel_error(f64(y), ref_layernorm(f64(x), f64(g), f64(b), 1e-5)) <= TOL[dtype]
    s = lc.softmax(xt, "cuda")
    assert s.device == "cuda" and s.dtype == dtype
    assert rel_error(f64(s), ref_softmax(f64(x))) <= TOL[dtype]


@pytest.mark.gpu
def test_gpu_float64_falls_back_to_the_cpu(rng):
    x = rng.standard_normal((5, 33))
    y = lc.softmax(x, "cuda")
    assert y.dtype == np.float64 and rel_error(y, ref_softmax(x)) <= 1e-12
    rep = lc.last_op_report()
    assert rep["device"] == "cpu" and rep["path"] == "fallback"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES_16)
def test_gpu_attention_long_keys_split(dtype, rng):
    """One query tile over 4099 keys: the split-K (flash-decoding) path and its combine kernel
    write the 16-bit result."""
    for sq, sk, d in [(3, 4099, 64), (65, 2053, 128), (2, 1500, 256)]:
        q = cast(rng.standard_normal((sq, d)), dtype)
        k = cast(rng.standard_normal((sk, d)), dtype)
        v = cast(rng.standard_normal((sk, d)), dtype)
        for causal in (False, True):
            y = lc.attention2d(q, k, v, causal, "cuda")
            assert y.dtype == np_dtype(dtype)
            assert rel_error(f64(y), ref_attention(f64(q), f64(k), f64(v), causal)) <= TOL[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES_16)
def test_gpu_matches_cpu_closely(dtype, rng):
    """Both backends compute in float32 and round once: results agree to a rounding step."""
    x = cast(rng.standard_normal((33, 1000)) * 3, dtype)
    for op in (lambda a, dev: lc.layernorm(a, None, None, 1e-5, dev), lambda a, dev: lc.softmax(a, dev)):
        a, b = f64(op(x, "cpu")), f64(op(x, "cuda"))
        assert rel_error(b, a) <= TOL[dtype]
