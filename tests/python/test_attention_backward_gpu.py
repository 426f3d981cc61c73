"""The CUDA attention backward (src/backends/cuda/attention_mha_bwd.cu) against the float64
reference of test_attention_backward.py (explicit softmax Jacobian, written from the
definition), on fresh random inputs. Every test needs a GPU (``gpu`` marker).

out and lse come from lc.attention on the GPU (what a training loop passes). Tolerances
(relative Frobenius error): float32 2e-5 (the kernels work in the exp2 domain with the scale
folded into q and recompute P from a float32 lse: a few ulp more than a plain sum, as the CUDA
forward's 2e-5), float16 / bfloat16 1e-2 (out and dout rounded to 11 / 8 bits feed
D = rowsum(dout * out)).

Covered: every dtype; head dims of every kernel bucket (<= 64, <= 128, <= 256) with D != Dv and
sizes that are not multiples of 4 (the scalar load path); GQA 4:1 and MQA; causal with Sq < Sk
and Sq > Sk (rows with no visible key); several query / key tiles; key-padding, 4-D boolean,
int64 and additive masks (-inf entries, inf / NaN in masked k / v); permuted and misaligned
device views read through strides; sizes 0 and 1; more than 65535 blocks; NaN-poisoned outputs;
bitwise determinism; the train step on the GPU (functional and both sessions) against the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from parity import rel_error
from test_attention_backward import f64, np_dtype, ref_grads, ref_train_step, rnd

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _own_kernels():
    """These tests are about our kernels (attention_mha_bwd.cu): float16 / bfloat16 calls that
    cuDNN would take under "auto" run ours here (test_attention_cudnn.py covers cuDNN's)."""
    before = lc.attention_impl()
    lc.set_attention_impl("own")
    yield
    lc.set_attention_impl(before)

DTYPES = ["float32", "float16", "bfloat16"]
TOL = {"float32": 2e-5, "float16": 1e-2, "bfloat16": 1e-2}


def check(y, ref, dtype, where, tol=None):
    y = f64(y)
    assert y.shape == ref.shape, (where, y.shape, ref.shape)
    assert not np.isnan(y).any(), f"{where}: {int(np.isnan(y).sum())} NaN (unwritten or wrong)"
    tol = TOL[dtype] if tol is None else tol
    if not np.any(ref):
        assert not np.any(y), f"{where}: expected all zeros"
        return
    err = rel_error(y, ref)
    assert err <= tol, f"{where}: relative error {err:.3e} > {tol:.0e}"


def gpu_backward(dout, q, k, v, causal=False, mask=None, scale=None):
    out, lse = lc.attention(q, k, v, causal=causal, mask=mask, scale=scale, return_lse=True,
                            device="cuda")
    return lc.attention_backward(dout, q, k, v, out, lse, causal=causal, mask=mask, scale=scale,
                                 device="cuda")


# (B, H, Hk, Sq, Sk, D, Dv, causal)
CASES = {
    "size1": (1, 1, 1, 1, 1, 1, 1, False),
    "prime": (2, 3, 3, 37, 53, 13, 13, False),
    "gqa12:4": (1, 12, 4, 9, 11, 8, 8, False),
    "mqa8:1": (2, 8, 1, 7, 10, 8, 5, True),
    "causal_sq<sk": (1, 2, 1, 19, 41, 16, 16, True),
    "causal_sq>sk": (1, 2, 2, 41, 19, 16, 16, True),
    "tiles_d64": (1, 2, 1, 130, 300, 64, 64, True),
    "d48_dv80": (1, 2, 2, 67, 71, 48, 80, False),   # bucket 128, D != Dv
    "d128": (1, 2, 1, 129, 97, 128, 128, True),
    "d256_dv7": (1, 2, 2, 33, 70, 256, 7, False),   # bucket 256, scalar v path
    "d200": (1, 1, 1, 45, 45, 200, 200, True),
    "odd_d": (1, 3, 1, 17, 23, 7, 9, False),        # D, Dv not multiples of 4
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_cuda_backward_matches_jacobian_reference(dtype, case, rng):
    B, H, Hk, Sq, Sk, D, Dv, causal = CASES[case]
    q = rnd(rng, (B, H, Sq, D), dtype)
    k = rnd(rng, (B, Hk, Sk, D), dtype)
    v = rnd(rng, (B, Hk, Sk, Dv), dtype)
    dout = rnd(rng, (B, H, Sq, Dv), dtype)
    dq, dk, dv = gpu_backward(dout, q, k, v, causal)
    ref = ref_grads(dout, q, k, v, causal)
    for name, y, r in zip(("dq", "dk", "dv"), (dq, dk, dv), ref):
        assert np.asarray(y).dtype == np_dtype(dtype), (name, np.asarray(y).dtype)
        check(y, r, dtype, f"{case} {dtype} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu_backward(dtype, rng):
    """Same inputs (out / lse from the CPU forward) on both backends."""
    B, H, Hk, Sq, Sk, D = 2, 4, 2, 45, 77, 32
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype)
    dout = rnd(rng, (B, H, Sq, D), dtype)
    out, lse = lc.attention(q, k, v, causal=True, return_lse=True, device="cpu")
    cpu = lc.attention_backward(dout, q, k, v, out, lse, causal=True, device="cpu")
    gpu = lc.attention_backward(dout, q, k, v, out, lse, causal=True, device="cuda")
    for name, y, r in zip(("dq", "dk", "dv"), gpu, cpu):
        check(y, f64(r), dtype, f"cuda vs cpu {name}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_key_padding_and_fully_masked_rows(dtype, rng):
    B, H, Hk, Sq, Sk, D = 3, 4, 2, 6, 9, 8
    mask = rng.random((B, Sk)) > 0.4
    mask[1] = False  # batch 1: every key masked
    mask[2, 0] = True
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype)
    dout = rnd(rng, (B, H, Sq, D), dtype)
    dq, dk, dv = gpu_backward(dout, q, k, v, mask=mask)
    for name, y in zip(("dq", "dk", "dv"), (dq, dk, dv)):
        y = f64(y)
        assert np.all(np.isfinite(y)), name
        assert not np.any(y[1]), f"{name}: batch 1 has no visible key, its gradient must be 0"
    ref = ref_grads(dout, q, k, v, mask=mask)
    for name, y, r in zip(("dq", "dk", "dv"), (dq, dk, dv), ref):
        check(y, r, dtype, f"key padding {name}")
    assert not np.any(f64(dk)[~mask[:, None, :].repeat(Hk, 1)])


def test_cuda_4d_and_int64_masks_with_nonfinite_masked_values(rng):
    B, H, Hk, Sq, Sk, D = 2, 2, 1, 70, 75, 16
    mask = rng.random((B, H, Sq, Sk)) > 0.3
    mask[0, 1, 3] = False
    mask[..., 4] = False  # key 4 hidden everywhere: poison it
    q, k, v = (rnd(rng, s, "float32") for s in ((B, H, Sq, D), (B, Hk, Sk, D), (B, Hk, Sk, D)))
    dout = rnd(rng, (B, H, Sq, D), "float32")
    ref = ref_grads(dout, q, k, v, mask=mask)
    out, lse = lc.attention(q, k, v, mask=mask, return_lse=True, device="cuda")
    k[:, :, 4] = np.inf
    v[:, :, 4] = np.nan
    keep = np.ones(Sk, bool)
    keep[4] = False
    for m in (mask, mask.astype(np.int64)):
        dq, dk, dv = lc.attention_backward(dout, q, k, v, out, lse, mask=m, device="cuda")
        assert not np.any(dq[0, 1, 3])
        check(dq, ref[0], "float32", "dq")
        check(dk[:, :, keep], ref[1][:, :, keep], "float32", "dk")
        check(dv[:, :, keep], ref[2][:, :, keep], "float32", "dv")
        assert not np.any(dv[:, :, 4]) and not np.any(dk[:, :, 4])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mshape", ["sq_sk", "b1sqsk"])
def test_cuda_additive_mask(dtype, mshape, rng):
    B, H, Hk, Sq, Sk, D = 2, 3, 3, 8, 69, 24
    shape = (Sq, Sk) if mshape == "sq_sk" else (B, 1, Sq, Sk)
    add = (rng.standard_normal(shape) * 2).astype(np_dtype(dtype))
    add[..., 3] = -np.inf
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype)
    dout = rnd(rng, (B, H, Sq, D), dtype)
    grads = gpu_backward(dout, q, k, v, mask=add, causal=True)
    ref = ref_grads(dout, q, k, v, mask=add, causal=True)
    for name, y, r in zip(("dq", "dk", "dv"), grads, ref):
        check(y, r, dtype, f"additive {mshape} {name}")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_strided_and_misaligned_device_views(dtype, rng):
    """Device tensors read in place through their strides: [B, S, H, D] permuted to [B, H, S, D]
    (vector loads), and views offset by one element (row starts not 16-byte aligned: the scalar
    load path)."""
    B, S, H, Hk, D = 2, 67, 4, 2, 64
    hq, hk, hv, hg = (rnd(rng, (B, S, h, D), dtype) for h in (H, Hk, Hk, H))
    dq_, dk_, dv_ = (lc.Tensor(x, device="cuda").permute(0, 2, 1, 3) for x in (hq, hk, hv))
    dg = lc.Tensor(hg, device="cuda").permute(0, 2, 1, 3)
    q, k, v, g = (x.transpose(0, 2, 1, 3) for x in (hq, hk, hv, hg))
    out, lse = lc.attention(dq_, dk_, dv_, causal=True, return_lse=True, device="cuda")
    grads = lc.attention_backward(dg, dq_, dk_, dv_, out, lse, causal=True, device="cuda")
    ref = ref_grads(g, q, k, v, causal=True)
    for name, y, r in zip(("dq", "dk", "dv"), grads, ref):
        assert isinstance(y, lc.Tensor) and y.device == "cuda"
        check(y, r, dtype, f"permuted {name}")
    # offset-by-one views of [B, H, S, D + 1] buffers: every row starts misaligned
    Sq, Sk = 37, 41

    def off1(shape):
        full = rnd(rng, shape[:-1] + (shape[-1] + 1,), dtype)
        t = lc.Tensor(full, device="cuda")
        st = [int(np.prod(full.shape[i + 1:])) for i in range(4)]
        return t._view(list(shape), st, 1), full[..., 1:]

    (tq, q2), (tk, k2), (tv, v2), (tg, g2) = (off1(s) for s in ((1, 2, Sq, D), (1, 2, Sk, D),
                                                                 (1, 2, Sk, D), (1, 2, Sq, D)))
    o2, l2 = lc.attention(tq, tk, tv, return_lse=True, device="cuda")
    g2s = lc.attention_backward(tg, tq, tk, tv, o2, l2, device="cuda")
    for name, y, r in zip(("dq", "dk", "dv"), g2s, ref_grads(g2, q2, k2, v2)):
        check(y, r, dtype, f"misaligned {name}")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_into_writes_every_element_of_poisoned_outputs(dtype, rng):
    B, H, Hk, Sq, Sk, D, Dv = 2, 4, 2, 23, 29, 12, 7
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, Dv), dtype)
    dout = rnd(rng, (B, H, Sq, Dv), dtype)
    out, lse = lc.attention(q, k, v, causal=True, return_lse=True, device="cuda")
    ref = ref_grads(dout, q, k, v, True)
    # device outputs poisoned with NaN
    outs = [lc.Tensor(np.full(x.shape, np.nan, np_dtype(dtype)), device="cuda") for x in (q, k, v)]
    lc.attention_backward_into(dout, q, k, v, out, lse, *outs, causal=True, device="cuda")
    for name, y, r in zip(("dq", "dk", "dv"), outs, ref):
        assert y.device == "cuda"
        check(y, r, dtype, f"device into {name}")
    # host outputs poisoned with NaN
    hosts = [np.full(x.shape, np.nan, np_dtype(dtype)) for x in (q, k, v)]
    lc.attention_backward_into(dout, q, k, v, out, lse, *hosts, causal=True, device="cuda")
    for name, y, r in zip(("dq", "dk", "dv"), hosts, ref):
        check(y, r, dtype, f"host into {name}")


def test_cuda_zero_and_unit_sizes(rng):
    # no keys: dq = 0, dk / dv empty
    q = rnd(rng, (1, 2, 3, 4), "float32")
    k0 = np.zeros((1, 2, 0, 4), np.float32)
    out, lse = lc.attention(q, k0, k0, return_lse=True, device="cuda")
    dq, dk, dv = lc.attention_backward(np.ones_like(out), q, k0, k0, out, lse, device="cuda")
    assert dq.shape == q.shape and not np.any(dq) and not np.isnan(dq).any()
    assert dk.shape == k0.shape and dv.shape == k0.shape
    # no queries: dk = dv = 0 over every key (poisoned first)
    q0 = np.zeros((1, 2, 0, 4), np.float32)
    k, v = rnd(rng, (1, 2, 5, 4), "float32"), rnd(rng, (1, 2, 5, 4), "float32")
    out0, lse0 = lc.attention(q0, k, v, return_lse=True, device="cuda")
    dk0 = np.full(k.shape, np.nan, np.float32)
    dv0 = np.full(v.shape, np.nan, np.float32)
    lc.attention_backward_into(out0, q0, k, v, out0, lse0, np.empty_like(q0), dk0, dv0,
                               device="cuda")
    assert not np.any(dk0) and not np.any(dv0)
    # dv = 0 columns: dq = dk = 0 (dout has no columns), dv empty
    qd, kd = rnd(rng, (1, 1, 3, 4), "float32"), rnd(rng, (1, 1, 5, 4), "float32")
    vd = np.zeros((1, 1, 5, 0), np.float32)
    od, ld = lc.attention(qd, kd, vd, return_lse=True, device="cuda")
    g = lc.attention_backward(od, qd, kd, vd, od, ld, device="cuda")
    assert not np.any(g[0]) and not np.any(g[1]) and g[2].shape == vd.shape
    # batch 0
    e = np.zeros((0, 2, 3, 4), np.float32)
    oe, le = lc.attention(e, e, e, return_lse=True, device="cuda")
    ge = lc.attention_backward(oe, e, e, e, oe, le, device="cuda")
    assert all(x.shape == e.shape for x in ge)


def test_cuda_more_than_65535_blocks(rng):
    """70000 heads of one query and one key: 70000 blocks per kernel (a 1-D grid-stride loop, no
    y / z limit). With one key p = 1, so dS = p (dP - D) = 0 up to rounding (dP and D are the same
    dot product summed in different orders): dq, dk ~ 0 and dv = dout, for every head."""
    H = 70000
    q, k, v = (rnd(rng, (1, H, 1, 4), "float32") for _ in range(3))
    dout = rnd(rng, (1, H, 1, 4), "float32")
    dq, dk, dv = gpu_backward(dout, q, k, v)
    assert not np.isnan(dq).any() and not np.isnan(dk).any()
    assert np.abs(dq).max() < 1e-5 and np.abs(dk).max() < 1e-5
    # p = exp2(s' - lse'), with s' recomputed and lse' from the forward: both carry float32
    # rounding of |s| (up to ~10 here), so p is 1 within ~1e-6 (seen on the H200: 1.1e-6 at one
    # of 280,000 elements), not within 1e-6 everywhere.
    np.testing.assert_allclose(dv, dout, rtol=1e-5, atol=1e-7)


def test_cuda_backward_is_deterministic(rng):
    B, H, Hk, S, D = 2, 8, 2, 200, 64
    q, k, v = rnd(rng, (B, H, S, D), "float32"), rnd(rng, (B, Hk, S, D), "float32"), rnd(rng, (B, Hk, S, D), "float32")
    dout = rnd(rng, (B, H, S, D), "float32")
    a = gpu_backward(dout, q, k, v, causal=True)
    b = gpu_backward(dout, q, k, v, causal=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_cuda_head_dim_over_limit_runs_on_the_cpu_under_auto(rng):
    q, k, v, dout = (rnd(rng, s, "float32") for s in ((1, 1, 3, 300), (1, 1, 5, 300),
                                                       (1, 1, 5, 300), (1, 1, 3, 300)))
    out, lse = lc.attention(q, k, v, return_lse=True, device="cpu")
    g = lc.attention_backward(dout, q, k, v, out, lse, device="auto")
    ref = ref_grads(dout, q, k, v)
    for y, r in zip(g, ref):
        check(y, r, "float32", "D=300 auto")


# ---- training on the GPU ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_train_step_matches_reference(dtype, rng):
    B, H, Hk, Sq, Sk, D = 2, 4, 2, 7, 9, 8
    mask = rng.random((B, Sk)) > 0.3
    mask[:, 0] = True
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype)
    target = rnd(rng, (B, H, Sq, D), dtype)
    ref = ref_train_step(q, k, v, target, 0.5, causal=True, mask=mask)
    before = [f64(x) for x in (q, k, v)]
    out, loss = lc.attention_train_step(q, k, v, target, 0.5, causal=True, mask=mask, device="cuda")
    check(out, ref[0], dtype, "out")
    tol = 1e-4 if dtype == "float32" else 5e-2
    assert abs(loss - ref[1]) <= tol * ref[1], (loss, ref[1])
    if dtype == "float32":
        for name, x, x0, r in zip("qkv", (q, k, v), before, ref[2:]):
            err = rel_error((x0 - f64(x)) / 0.5, (x0 - r) / 0.5)
            assert err <= 1e-3, f"{name}: step error {err:.2e}"


def test_cuda_train_step_device_tensors_stay_on_the_device(rng):
    B, H, S, D = 1, 2, 16, 32
    hq, hk, hv = (rnd(rng, (B, H, S, D), "float32") for _ in range(3))
    target = rnd(rng, (B, H, S, D), "float32")
    ref = ref_train_step(hq, hk, hv, target, 0.1)
    q, k, v = (lc.Tensor(x, device="cuda") for x in (hq, hk, hv))
    out, loss = lc.attention_train_step(q, k, v, lc.Tensor(target, device="cuda"), 0.1)
    assert isinstance(out, lc.Tensor) and out.device == "cuda"
    assert abs(loss - ref[1]) <= 1e-5 * ref[1]
    for name, x, r in zip("qkv", (q, k, v), ref[2:]):
        assert x.device == "cuda"
        np.testing.assert_allclose(x.numpy(), r, rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("kind", ["2d", "batched"])
def test_cuda_sessions_train_like_the_cpu(kind, rng):
    """Three steps on a CUDA session and on a CPU session from the same start agree."""
    if kind == "2d":
        shapes = ((13, 16), (17, 16), (17, 16))
        make = lambda q, k, v, dev: lc.attention2d_resident_session(q, k, v, True, dev)  # noqa: E731
    else:
        shapes = ((2, 4, 13, 16), (2, 2, 17, 16), (2, 2, 17, 16))
        mask = rng.random((2, 17)) > 0.3
        mask[:, -1] = True
        make = lambda q, k, v, dev: lc.attention_resident_session(q, k, v, True, dev, mask=mask)  # noqa: E731
    q, k, v = (rnd(rng, s, "float32") for s in shapes)
    target = rnd(rng, shapes[0], "float32")
    with make(q, k, v, "cuda") as g, make(q, k, v, "cpu") as c:
        assert g.device == "cuda" and c.device == "cpu"
        for _ in range(3):
            og, lg = g.train_step(target, 0.2)
            oc, lc_ = c.train_step(target, 0.2)
            np.testing.assert_allclose(og, oc, rtol=0, atol=1e-5)
            assert abs(lg - lc_) <= 1e-5 * lc_
        for x, y in zip(g.parameters(), c.parameters()):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
        np.testing.assert_allclose(g.forward(), c.forward(), rtol=0, atol=1e-5)


def test_cuda_bf16_session_train_step(rng):
    import ml_dtypes  # noqa: F401  (np_dtype skips without it)

    shapes = ((1, 4, 33, 64), (1, 1, 33, 64), (1, 1, 33, 64))
    q, k, v = (rnd(rng, s, "bfloat16") for s in shapes)
    target = rnd(rng, shapes[0], "bfloat16")
    ref = ref_train_step(q, k, v, target, 0.5, causal=True)
    with lc.attention_resident_session(q, k, v, True, "cuda") as s:
        out, loss = s.train_step(target, 0.5)
        assert out.dtype == np_dtype("bfloat16")
        check(out, ref[0], "bfloat16", "session bf16 out")
        assert abs(loss - ref[1]) <= 5e-2 * ref[1]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_cuda_session_train_step_into_a_device_tensor(dtype, rng):
    """train_step(..., out=<cuda lc.Tensor>): no download of the output (the loss comes from the
    device reduction, Backend::sum_squares); out and loss equal the copying form's and the
    loss matches float64 over the stored output. 1.6 M outputs: many reduction blocks."""
    shape = (2, 12, 257, 64)
    q, k, v, target = (rnd(rng, shape, dtype) for _ in range(4))
    with lc.attention_resident_session(q, k, v, False, "cuda") as a, \
            lc.attention_resident_session(q, k, v, False, "cuda") as b:
        want, want_loss = a.train_step(target, 0.0)
        out = lc.Tensor(np.full(shape, np.nan, np.float32), device="cuda", dtype=dtype)
        got, loss = b.train_step(target, 0.0, out=out)
        assert got is out and out.device == "cuda"
        np.testing.assert_array_equal(f64(out.numpy()), f64(want))
        assert loss == want_loss
        exact = float(np.mean((f64(want) - f64(target)) ** 2))
        assert abs(loss - exact) <= 1e-3 * exact, (loss, exact)  # diff rounded to the dtype
