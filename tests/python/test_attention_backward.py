"""lc.attention_backward / lc.attention_backward_into: the gradients of lc.attention.

The reference is float64 numpy written from the definition, independent of the kernel's
algorithm: per row, p = softmax(masked scores), the explicit softmax Jacobian
J = diag(p) - p p^T, dS = J (dout v^T), dq = scale dS k, dk = scale dS^T q, dv = p^T dout,
with k / v repeated per query head and dk / dv summed back over each key/value head's group.
Inputs are rounded to the dtype first and the reference is computed from those rounded values;
out and lse come from lc.attention (what a training loop passes). A second, fully independent
check uses central finite differences of lc.attention in float64 on tiny shapes.

Tolerances (relative Frobenius error): float32 1e-5 (measured ~3e-7), float16 / bfloat16
1e-2 (measured ~3e-4 / ~3e-3: out and dout rounded to 11 / 8 bits feed D = rowsum(dout * out)),
float64 1e-12 (float64 recomputes lse in float64; measured ~6e-16). The CUDA backward
(float32 / float16 / bfloat16) is tested in test_attention_backward_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from dtype_util import TOL, np_dtype
from parity import rel_error

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

try:
    import torch
except Exception:  # torch comparisons skip without it
    torch = None

DTYPES = ["float32", "float16", "bfloat16", "float64"]


def f64(a):
    if isinstance(a, lc.Tensor):
        a = a.numpy()
    return np.asarray(a).astype(np.float64)


def rnd(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np_dtype(dtype))


def visible_and_scores(q, k, causal, mask, scale):
    """Scaled, masked scores s [B,H,Sq,Sk] (k already repeated per head) and visibility."""
    B, H, Sq, _ = q.shape
    Sk = k.shape[2]
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    visible = np.ones((B, H, Sq, Sk), dtype=bool)
    if causal:
        visible &= np.arange(Sk)[None, :] <= np.arange(Sq)[:, None] + (Sk - Sq)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == bool or np.issubdtype(mask.dtype, np.integer):
            mb = mask != 0
            visible &= mb[:, None, None, :] if mb.ndim == 2 else np.broadcast_to(mb, visible.shape)
        else:
            add = np.broadcast_to(mask.astype(np.float64), s.shape)
            visible &= add != -np.inf
            s = s + np.where(add == -np.inf, 0.0, add)
    return np.where(visible, s, -np.inf), visible


def ref_grads(dout, q, k, v, causal=False, mask=None, scale=None):
    """float64 (dq, dk, dv) by the explicit softmax Jacobian, row by row."""
    dout, q, k, v = (f64(x) for x in (dout, q, k, v))
    B, H, Sq, D = q.shape
    Hk, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    dq = np.zeros(q.shape)
    dk = np.zeros(k.shape)
    dv = np.zeros(v.shape)
    if min(B, H, Sq, Sk) == 0:
        return dq, dk, dv
    g = H // Hk
    kr = np.repeat(k, g, axis=1)
    vr = np.repeat(v, g, axis=1)
    s, visible = visible_and_scores(q, kr, causal, mask, scale)
    for b in range(B):
        for h in range(H):
            for i in range(Sq):
                if not visible[b, h, i].any():
                    continue  # no visible key: zero gradient
                row = s[b, h, i]
                e = np.where(visible[b, h, i], np.exp(row - row[visible[b, h, i]].max()), 0.0)
                p = e / e.sum()
                jac = np.diag(p) - np.outer(p, p)
                dp = vr[b, h] @ dout[b, h, i]          # [Sk]
                ds = jac @ dp                           # [Sk]
                dq[b, h, i] = scale * ds @ kr[b, h]
                dk[b, h // g] += scale * np.outer(ds, q[b, h, i])
                dv[b, h // g] += np.outer(p, dout[b, h, i])
    return dq, dk, dv


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


def run_backward(rng, dtype, B, H, Hk, Sq, Sk, D, Dv, causal=False, mask=None, scale=None):
    q = rnd(rng, (B, H, Sq, D), dtype)
    k = rnd(rng, (B, Hk, Sk, D), dtype)
    v = rnd(rng, (B, Hk, Sk, Dv), dtype)
    dout = rnd(rng, (B, H, Sq, Dv), dtype)
    out, lse = lc.attention(q, k, v, causal=causal, mask=mask, scale=scale, return_lse=True,
                            device="cpu")
    grads = lc.attention_backward(dout, q, k, v, out, lse, causal=causal, mask=mask, scale=scale)
    return (q, k, v, dout, out, lse), grads


# (B, H, Hk, Sq, Sk, D, Dv, causal)
CASES = {
    "size1": (1, 1, 1, 1, 1, 1, 1, False),
    "prime": (2, 3, 3, 37, 53, 13, 13, False),
    "gqa12:4": (1, 12, 4, 9, 11, 8, 8, False),
    "mqa12:1": (2, 12, 1, 7, 10, 8, 5, True),
    "causal_sq<sk": (1, 2, 1, 19, 41, 16, 16, True),
    "causal_sq>sk": (1, 2, 2, 41, 19, 16, 16, True),
    "tiles": (1, 2, 1, 130, 300, 24, 20, True),  # several query blocks and key tiles
    # one (batch, kv head) pair and enough work: its items are split over tasks with private
    # dK / dV partials (LC_NUM_THREADS=7 gives a 6-way split here)
    "mqa_split": (1, 3, 1, 70, 90, 16, 16, False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_backward_matches_jacobian_reference(dtype, case, rng):
    B, H, Hk, Sq, Sk, D, Dv, causal = CASES[case]
    if dtype != "float32" and case == "tiles":
        pytest.skip("the large case runs in float32 only (the python reference is slow)")
    (q, k, v, dout, _, _), (dq, dk, dv) = run_backward(rng, dtype, B, H, Hk, Sq, Sk, D, Dv, causal)
    ref = ref_grads(dout, q, k, v, causal)
    for name, y, r in zip(("dq", "dk", "dv"), (dq, dk, dv), ref):
        assert np.asarray(y).dtype == np_dtype(dtype), (name, np.asarray(y).dtype)
        check(y, r, dtype, f"{case} {dtype} {name}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_into_writes_every_element_of_poisoned_outputs(dtype, rng):
    B, H, Hk, Sq, Sk, D, Dv = 2, 4, 2, 23, 29, 12, 7
    (q, k, v, dout, out, lse), _ = run_backward(rng, dtype, B, H, Hk, Sq, Sk, D, Dv, True)
    dq = np.full(q.shape, np.nan, np_dtype(dtype))
    dk = np.full(k.shape, np.nan, np_dtype(dtype))
    dv = np.full(v.shape, np.nan, np_dtype(dtype))
    res = lc.attention_backward_into(dout, q, k, v, out, lse, dq, dk, dv, causal=True)
    assert res[0] is dq and res[1] is dk and res[2] is dv
    ref = ref_grads(dout, q, k, v, True)
    for name, y, r in zip(("dq", "dk", "dv"), (dq, dk, dv), ref):
        check(y, r, dtype, f"into {name}")


def test_finite_differences_float64(rng):
    """Central differences of sum(attention(q, k, v) * G) against attention_backward(G)."""
    B, H, Hk, Sq, Sk, D = 1, 4, 2, 3, 5, 3
    mask = np.array([[True, True, False, True, True]])
    q, k, v = (rng.standard_normal(s) for s in ((B, H, Sq, D), (B, Hk, Sk, D), (B, Hk, Sk, D)))
    G = rng.standard_normal((B, H, Sq, D))

    def loss(q, k, v):
        return float((lc.attention(q, k, v, causal=True, mask=mask, device="cpu") * G).sum())

    out, lse = lc.attention(q, k, v, causal=True, mask=mask, return_lse=True, device="cpu")
    grads = lc.attention_backward(G, q, k, v, out, lse, causal=True, mask=mask)
    eps = 1e-6
    for idx, (name, x) in enumerate(zip(("dq", "dk", "dv"), (q, k, v))):
        num = np.zeros_like(x)
        for pos in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[pos] += eps
            xm[pos] -= eps
            args_p = [q, k, v]
            args_m = [q, k, v]
            args_p[idx], args_m[idx] = xp, xm
            num[pos] = (loss(*args_p) - loss(*args_m)) / (2 * eps)
        err = rel_error(f64(grads[idx]), num)
        assert err < 1e-7, f"{name}: finite differences disagree, relative error {err:.2e}"
    # the masked key gets no dk / dv
    assert not np.any(f64(grads[1])[0, :, 2]) and not np.any(f64(grads[2])[0, :, 2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_key_padding_with_fully_masked_rows_gives_zero_gradients(dtype, rng):
    B, H, Hk, Sq, Sk, D = 3, 4, 2, 6, 9, 8
    mask = rng.random((B, Sk)) > 0.4
    mask[1] = False  # batch 1: every key masked
    mask[2, 0] = True
    (q, k, v, dout, out, lse), (dq, dk, dv) = run_backward(rng, dtype, B, H, Hk, Sq, Sk, D, D,
                                                           mask=mask)
    assert np.all(np.isneginf(f64(lse)[1]))
    for name, y in zip(("dq", "dk", "dv"), (dq, dk, dv)):
        y = f64(y)
        assert np.all(np.isfinite(y)), name
        assert not np.any(y[1]), f"{name}: batch 1 has no visible key, its gradient must be 0"
    ref = ref_grads(dout, q, k, v, mask=mask)
    for name, y, r in zip(("dq", "dk", "dv"), (dq, dk, dv), ref):
        check(y, r, dtype, f"key padding {name}")
    # masked keys get no dk / dv at all
    assert not np.any(f64(dk)[~mask[:, None, :].repeat(Hk, 1)])


def test_boolean_4d_mask_and_nonfinite_masked_values(rng):
    """Rows fully masked by a 4-D mask get 0; inf / NaN in masked keys' k and v never leak."""
    B, H, Hk, Sq, Sk, D = 2, 2, 1, 7, 11, 6
    mask = rng.random((B, H, Sq, Sk)) > 0.3
    mask[0, 1, 3] = False
    mask[..., 4] = False  # key 4 hidden everywhere: poison it
    q = rnd(rng, (B, H, Sq, D), "float32")
    k = rnd(rng, (B, Hk, Sk, D), "float32")
    v = rnd(rng, (B, Hk, Sk, D), "float32")
    dout = rnd(rng, (B, H, Sq, D), "float32")
    out, lse = lc.attention(q, k, v, mask=mask, return_lse=True, device="cpu")
    ref = ref_grads(dout, q, k, v, mask=mask)
    k[:, :, 4] = np.inf
    v[:, :, 4] = np.nan
    dq, dk, dv = lc.attention_backward(dout, q, k, v, out, lse, mask=mask)
    assert not np.any(dq[0, 1, 3])
    check(dq, ref[0], "float32", "dq")
    # key 4's own rows are 0 * inf in the reference sense: compare the others
    keep = np.ones(Sk, bool)
    keep[4] = False
    check(dk[:, :, keep], ref[1][:, :, keep], "float32", "dk")
    check(dv[:, :, keep], ref[2][:, :, keep], "float32", "dv")
    assert not np.any(dv[:, :, 4])


@pytest.mark.parametrize("mshape", ["sq_sk", "b1sqsk"])
def test_additive_mask(mshape, rng):
    B, H, Hk, Sq, Sk, D = 2, 3, 3, 8, 13, 8
    shape = (Sq, Sk) if mshape == "sq_sk" else (B, 1, Sq, Sk)
    add = (rng.standard_normal(shape) * 2).astype(np.float32)
    add[..., 3] = -np.inf
    (q, k, v, dout, _, _), grads = run_backward(rng, "float32", B, H, Hk, Sq, Sk, D, D,
                                                mask=add)
    ref = ref_grads(dout, q, k, v, mask=add)
    for name, y, r in zip(("dq", "dk", "dv"), grads, ref):
        check(y, r, "float32", f"additive {mshape} {name}")


def test_explicit_scale_and_rank2_rank3(rng):
    q, k, v = rnd(rng, (5, 4), "float32"), rnd(rng, (7, 4), "float32"), rnd(rng, (7, 3), "float32")
    dout = rnd(rng, (5, 3), "float32")
    out, lse = lc.attention(q, k, v, scale=0.3, return_lse=True)
    dq, dk, dv = lc.attention_backward(dout, q, k, v, out, lse, scale=0.3)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    ref = ref_grads(dout[None, None], q[None, None], k[None, None], v[None, None], scale=0.3)
    for y, r, n in zip((dq, dk, dv), ref, ("dq", "dk", "dv")):
        check(y, r[0, 0], "float32", "rank2 " + n)
    q3, k3, v3 = (rnd(rng, s, "float32") for s in ((4, 6, 8), (2, 9, 8), (2, 9, 8)))
    dout3 = rnd(rng, (4, 6, 8), "float32")
    out3, lse3 = lc.attention(q3, k3, v3, causal=True, return_lse=True)
    g3 = lc.attention_backward(dout3, q3, k3, v3, out3, lse3, causal=True)
    ref3 = ref_grads(dout3[None], q3[None], k3[None], v3[None], causal=True)
    for y, r, n in zip(g3, ref3, ("dq", "dk", "dv")):
        check(y, r[0], "float32", "rank3 " + n)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_non_contiguous_inputs(dtype, rng):
    """[B, S, H, D] tensors permuted to [B, H, S, D] (no copy), dout and out too."""
    B, S, H, Hk, D = 2, 17, 4, 2, 8
    q = rnd(rng, (B, S, H, D), dtype).transpose(0, 2, 1, 3)
    k = rnd(rng, (B, S, Hk, D), dtype).transpose(0, 2, 1, 3)
    v = rnd(rng, (B, S, Hk, D), dtype).transpose(0, 2, 1, 3)
    dout = rnd(rng, (B, S, H, D), dtype).transpose(0, 2, 1, 3)
    out, lse = lc.attention(q, k, v, causal=True, return_lse=True)
    out_nc = np.ascontiguousarray(out.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    grads = lc.attention_backward(dout, q, k, v, out_nc, lse, causal=True)
    ref = ref_grads(dout, q, k, v, causal=True)
    for name, y, r in zip(("dq", "dk", "dv"), grads, ref):
        check(y, r, dtype, f"permuted {name}")
    # a non-unit last stride (staged) and reversed rows
    q2 = rnd(rng, (1, 2, 6, 16), dtype)[..., ::2]
    k2, v2 = rnd(rng, (1, 2, 9, 8), dtype)[:, :, ::-1], rnd(rng, (1, 2, 9, 8), dtype)
    d2 = rnd(rng, (1, 2, 6, 8), dtype)
    o2, l2 = lc.attention(q2, k2, v2, return_lse=True)
    g2 = lc.attention_backward(d2, q2, k2, v2, o2, l2)
    for name, y, r in zip(("dq", "dk", "dv"), g2, ref_grads(d2, q2, k2, v2)):
        check(y, r, dtype, f"strided {name}")


def test_lc_tensor_inputs_return_tensors(rng):
    (q, k, v, dout, out, lse), ref = run_backward(rng, "float32", 1, 2, 2, 5, 6, 4, 4)
    tq = lc.Tensor(q, device="cpu")
    g = lc.attention_backward(dout, tq, k, v, out, lse)
    assert all(isinstance(t, lc.Tensor) for t in g)
    for y, r in zip(g, ref):
        np.testing.assert_array_equal(y.numpy(), r)
    dq, dk, dv = (lc.Tensor(np.full(x.shape, np.nan, np.float32), device="cpu") for x in (q, k, v))
    lc.attention_backward_into(dout, q, k, v, out, lse, dq, dk, dv)
    for y, r in zip((dq, dk, dv), ref):
        np.testing.assert_array_equal(y.numpy(), r)


def test_zero_lengths(rng):
    q, k, v = rnd(rng, (1, 2, 3, 4), "float32"), np.zeros((1, 2, 0, 4), np.float32), np.zeros((1, 2, 0, 4), np.float32)
    out, lse = lc.attention(q, k, v, return_lse=True)
    dq, dk, dv = lc.attention_backward(np.ones_like(out), q, k, v, out, lse)
    assert dq.shape == q.shape and not np.any(dq) and dk.shape == k.shape and dv.shape == v.shape
    q0 = np.zeros((1, 2, 0, 4), np.float32)
    k0, v0 = rnd(rng, (1, 2, 5, 4), "float32"), rnd(rng, (1, 2, 5, 4), "float32")
    out0, lse0 = lc.attention(q0, k0, v0, return_lse=True)
    dk0 = np.full(k0.shape, np.nan, np.float32)
    dv0 = np.full(v0.shape, np.nan, np.float32)
    lc.attention_backward_into(out0, q0, k0, v0, out0, lse0, np.empty_like(q0), dk0, dv0)
    assert not np.any(dk0) and not np.any(dv0)


def test_bad_inputs_raise_and_write_nothing(rng):
    (q, k, v, dout, out, lse), _ = run_backward(rng, "float32", 1, 2, 1, 4, 5, 3, 3)
    with pytest.raises(TypeError, match="attention_backward"):
        lc.attention_backward(dout, q.astype(np.int32), k, v, out, lse)
    with pytest.raises(TypeError, match="attention_backward"):
        lc.attention_backward(dout.astype(np.float16), q, k, v, out, lse)
    with pytest.raises(TypeError, match="lse must be float32"):
        lc.attention_backward(dout, q, k, v, out, lse.astype(np.float64))
    with pytest.raises(ValueError, match=r"attention_backward.*dout is \[1, 2, 4, 2\]"):
        lc.attention_backward(dout[..., :2], q, k, v, out, lse)
    with pytest.raises(ValueError, match=r"attention_backward.*out is \[1, 2, 3, 3\]"):
        lc.attention_backward(dout, q, k, v, out[:, :, :3], lse)
    with pytest.raises(ValueError, match=r"attention_backward.*lse is \[1, 2, 5\]"):
        lc.attention_backward(dout, q, k, v, out, np.zeros((1, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"attention_backward.*k is \[1, 2, 5, 3\]"):
        lc.attention_backward(dout, q, np.zeros((1, 2, 5, 3), np.float32), v, out, lse)
    # _into: a bad dv leaves dq and dk untouched
    dq = np.full(q.shape, 7.0, np.float32)
    dk = np.full(k.shape, 7.0, np.float32)
    with pytest.raises(ValueError, match="attention_backward"):
        lc.attention_backward_into(dout, q, k, v, out, lse, dq, dk, np.empty((1, 1, 5, 2), np.float32))
    with pytest.raises(TypeError):
        lc.attention_backward_into(dout, q, k, v, out, lse, dq, dk, np.empty(v.shape, np.float64))
    with pytest.raises(ValueError, match="share memory"):
        lc.attention_backward_into(dout, q, k, v, out, lse, dq, dk, dk)
    assert np.all(dq == 7.0) and np.all(dk == 7.0)


def test_cuda_request_without_a_device_is_a_clear_error(rng):
    if lc.cuda_available():
        pytest.skip("a GPU is present: the gpu tests run the CUDA backward")
    (q, k, v, dout, out, lse), _ = run_backward(rng, "float32", 1, 1, 1, 2, 2, 2, 2)
    with pytest.raises(Exception, match=r"\[attention_backward\].*not available"):
        lc.attention_backward(dout, q, k, v, out, lse, device="cuda")
    # "auto" runs it on the CPU
    g = lc.attention_backward(dout, q, k, v, out, lse, device="auto")
    assert isinstance(g[0], np.ndarray)


def test_registry_entry():
    info = lc.op_info("attention_backward")
    assert info["outputs"] == ["dq", "dk", "dv"]
    assert [i["name"] if isinstance(i, dict) else i for i in info["inputs"]][:6] == \
        ["dout", "q", "k", "v", "out", "lse"] or "dout" in str(info["inputs"])
    assert "attention_backward" in lc.ops()
    # CUDA runs float32 / float16 / bfloat16 (attention_mha_bwd.cu), float64 stays on the CPU
    assert sorted(info["dtypes"]["cuda"]) == ["bfloat16", "float16", "float32"]
    assert "float64" in info["dtypes"]["cpu"]


def test_matches_torch_autograd(rng):
    if torch is None:
        pytest.skip("torch is not installed")
    B, H, Hk, Sq, Sk, D = 2, 4, 4, 9, 13, 8
    (q, k, v, dout, out, lse), grads = run_backward(rng, "float32", B, H, Hk, Sq, Sk, D, D, True)
    tq, tk, tv = (torch.tensor(x.astype(np.float64), requires_grad=True) for x in (q, k, v))
    mask = torch.ones(Sq, Sk, dtype=torch.bool).tril(Sk - Sq)
    o = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
    o.backward(torch.tensor(dout.astype(np.float64)))
    for name, y, t in zip(("dq", "dk", "dv"), grads, (tq, tk, tv)):
        check(y, t.grad.numpy(), "float32", f"torch {name}")


# ---- lc.attention_train_step ---------------------------------------------------------------


def ref_train_step(q, k, v, target, lr, causal=False, mask=None):
    """float64: out, MSE loss, and q/k/v after one SGD step (explicit-Jacobian gradients)."""
    q, k, v, target = (f64(x) for x in (q, k, v, target))
    B, H, Sq, D = q.shape
    kr, vr = (np.repeat(x, H // k.shape[1], axis=1) for x in (k, v))
    s, visible = visible_and_scores(q, kr, causal, mask, 1.0 / np.sqrt(D))
    m = np.where(visible.any(-1, keepdims=True), s.max(-1, keepdims=True), 0.0)
    e = np.where(visible, np.exp(s - m), 0.0)
    l = e.sum(-1, keepdims=True)
    p = np.where(l > 0, e / np.where(l > 0, l, 1.0), 0.0)
    out = p @ vr
    loss = float(np.mean((out - target) ** 2))
    dout = 2.0 * (out - target) / out.size
    dq, dk, dv = ref_grads(dout, q, k, v, causal, mask)
    return out, loss, q - lr * dq, k - lr * dk, v - lr * dv


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
def test_train_step_matches_float64_reference(dtype, rng):
    B, H, Hk, Sq, Sk, D = 2, 4, 2, 7, 9, 8
    mask = rng.random((B, Sk)) > 0.3
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype)
    target = rnd(rng, (B, H, Sq, D), dtype)
    before = [f64(x) for x in (q, k, v)]
    lr = 0.5
    ref = ref_train_step(q, k, v, target, lr, causal=True, mask=mask)
    out, loss = lc.attention_train_step(q, k, v, target, lr, causal=True, mask=mask)
    check(out, ref[0], dtype, "out")
    assert abs(loss - ref[1]) <= 10 * TOL[dtype] * ref[1], (loss, ref[1])
    for name, x, x0, r in zip("qkv", (q, k, v), before, ref[2:]):
        assert np.asarray(x).dtype == np_dtype(dtype), name
        if dtype == "bfloat16":
            continue  # a step of ~1e-3 is below bfloat16's resolution of q/k/v ~ 1: rounding decides
        # the step taken, (x_before - x_after) / lr, against the reference gradient: float32
        # rounds x_after to ~6e-8 |x| next to steps of ~1e-4, hence 1e-3
        step, ref_step = (x0 - f64(x)) / lr, (x0 - r) / lr
        err = rel_error(step, ref_step)
        assert err <= (1e-3 if dtype == "float32" else 1e-10), f"{name}: step error {err:.2e}"


def test_train_step_updates_in_place_and_decreases_loss(rng):
    B, H, Hk, S, D = 1, 2, 1, 6, 4
    q, k, v = (rnd(rng, (B, h, S, D), "float64") for h in (H, Hk, Hk))
    target = rnd(rng, (B, H, S, D), "float64")
    q0, k0, v0 = q.copy(), k.copy(), v.copy()
    ref = ref_train_step(q0, k0, v0, target, 0.1, causal=True)
    out, loss = lc.attention_train_step(q, k, v, target, 0.1, causal=True)
    assert abs(loss - ref[1]) < 1e-12 * ref[1]
    for name, x, r in zip("qkv", (q, k, v), ref[2:]):
        err = np.abs(x - r).max()
        assert err < 1e-12, f"{name}: updated in place wrong by {err:.2e}"
    losses = [loss]
    for _ in range(20):
        losses.append(lc.attention_train_step(q, k, v, target, 0.1, causal=True)[1])
    assert losses[-1] < losses[0] and all(b <= a + 1e-12 for a, b in zip(losses, losses[1:])), losses


def test_train_step_bad_inputs_write_nothing(rng):
    q = rnd(rng, (1, 2, 4, 4), "float32")
    k = rnd(rng, (1, 2, 4, 4), "float32")
    v = rnd(rng, (1, 2, 4, 4), "float32")
    q0 = q.copy()
    with pytest.raises(ValueError, match="attention_train_step.*target"):
        lc.attention_train_step(q, k, v, np.zeros((1, 2, 4, 3), np.float32), 0.1)
    with pytest.raises(ValueError, match="share memory"):
        lc.attention_train_step(q, q, v, np.zeros((1, 2, 4, 4), np.float32), 0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        lc.attention_train_step(q[:, :, ::2], k[:, :, ::2], v[:, :, ::2], np.zeros((1, 2, 2, 4), np.float32), 0.1)
    np.testing.assert_array_equal(q, q0)


