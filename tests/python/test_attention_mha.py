"""lc.attention / lc.attention_into: batched multi-head and grouped-query attention.

Every case draws fresh inputs, rounds them to the dtype, and compares with a float64 numpy
reference computed from exactly those rounded values. Tolerances (relative Frobenius error):
float32 1e-5 (TF32 policy 1e-3), float16 / bfloat16 1e-2, float64 1e-12; lse (float32) to
1e-5 relative + absolute. Outputs of the `_into` form are poisoned with NaN and must come back
fully written. Each test runs on every backend (conftest.backends: "cpu", plus "cuda" where a
GPU is usable); the tests marked gpu need the CUDA backend and skip without it.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import backends
from dtype_util import TOL, np_dtype
from parity import rel_error

try:
    import ml_dtypes
except ImportError:  # bfloat16 cases skip without it
    ml_dtypes = None

try:
    import torch
except Exception:  # torch comparisons skip without it
    torch = None

DTYPES = ["float32", "float16", "bfloat16", "float64"]


def devices_for(dtype):
    return ["cpu"] if dtype == "float64" else backends


def f64(a):
    if isinstance(a, lc.Tensor):
        a = a.numpy()
    return np.asarray(a).astype(np.float64)


def rnd(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np_dtype(dtype))


def ref_mha(q, k, v, causal=False, mask=None, scale=None):
    """float64 reference. q [B,H,Sq,D], k [B,Hk,Sk,D], v [B,Hk,Sk,Dv]; mask: bool [B,Sk]
    (key padding), bool broadcastable to [B,H,Sq,Sk], or float additive broadcastable.
    Returns (out [B,H,Sq,Dv], lse [B,H,Sq]); rows with no visible key give 0 and -inf."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, H, Sq, D = q.shape
    Hk, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    if Sk == 0 or Sq == 0 or B == 0 or H == 0:
        return np.zeros((B, H, Sq, Dv)), np.full((B, H, Sq), -np.inf)
    k = np.repeat(k, H // Hk, axis=1)
    v = np.repeat(v, H // Hk, axis=1)
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
            s = s + np.broadcast_to(mask.astype(np.float64), s.shape)
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    empty = m == -np.inf
    e = np.exp(s - np.where(empty, 0.0, m))
    l = e.sum(axis=-1, keepdims=True)
    safe = np.where(l > 0, l, 1.0)
    out = np.where(l > 0, (e @ v) / safe, 0.0)
    lse = np.where(l[..., 0] > 0, (m + np.log(safe))[..., 0], -np.inf)
    return out, lse


def check(y, ref, dtype, where, tol=None):
    y = f64(y)
    assert y.shape == ref.shape, (where, y.shape, ref.shape)
    assert not np.isnan(y).any(), f"{where}: {int(np.isnan(y).sum())} NaN (unwritten or wrong)"
    tol = TOL[dtype] if tol is None else tol
    err = rel_error(y, ref)
    assert err <= tol, f"{where}: relative error {err:.3e} > {tol:.0e}"


def check_lse(lse, ref, where, tol=1e-5):
    lse = f64(lse)
    assert lse.shape == ref.shape, (where, lse.shape, ref.shape)
    assert np.array_equal(np.isneginf(lse), np.isneginf(ref)), f"{where}: -inf rows differ"
    fin = np.isfinite(ref)
    assert np.isfinite(lse[fin]).all(), where
    np.testing.assert_allclose(lse[fin], ref[fin], rtol=tol, atol=tol, err_msg=where)


# (B, H, Hk, Sq, Sk, D, Dv, causal): size 1, odd/prime sizes, GQA (12:4) and MQA (8:1), causal
# with Sq < Sk and Sq > Sk (bottom-right), head dims across the CUDA tile configs (<= 64,
# <= 128, <= 256), Dv != D, and a size big enough for the CPU's BLAS tiles and several tiles.
CASES = [
    (1, 1, 1, 1, 1, 1, 1, False),
    (1, 1, 1, 1, 1, 1, 1, True),
    (2, 3, 3, 37, 53, 13, 13, False),
    (2, 3, 3, 37, 53, 13, 13, True),
    (2, 12, 4, 17, 29, 16, 16, False),
    (1, 8, 1, 9, 33, 64, 64, True),
    (2, 2, 2, 7, 19, 8, 8, True),     # causal, Sq < Sk
    (1, 2, 1, 19, 7, 8, 8, True),     # causal, Sq > Sk: rows 0..11 see nothing -> zeros
    (1, 2, 2, 129, 129, 64, 64, True),
    (1, 2, 1, 33, 70, 80, 48, False),
    (1, 1, 1, 20, 45, 256, 256, True),
    (2, 4, 2, 300, 260, 64, 64, False),
    (1, 2, 2, 200, 200, 32, 32, True),
]


def case_id(c):
    b, h, hk, sq, sk, d, dv, causal = c
    return f"B{b}H{h}Hk{hk}-{sq}x{sk}-d{d}v{dv}" + ("-causal" if causal else "")


def cases_by_dtype():
    for dtype in DTYPES:
        for device in devices_for(dtype):
            for c in CASES:
                yield pytest.param(dtype, device, c, id=f"{dtype}-{device}-{case_id(c)}")


@pytest.mark.parametrize("dtype,device,case", list(cases_by_dtype()))
def test_attention_matches_float64_reference(dtype, device, case, rng):
    b, h, hk, sq, sk, d, dv, causal = case
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, dv), dtype)
    ref, ref_lse = ref_mha(q, k, v, causal=causal)
    out, lse = lc.attention(q, k, v, causal=causal, return_lse=True, device=device)
    assert isinstance(out, np.ndarray) and out.dtype == np_dtype(dtype)
    assert lse.dtype == np.float32 and lse.shape == (b, h, sq)
    check(out, ref, dtype, "return")
    check_lse(lse, ref_lse, "return lse", tol=1e-5 if dtype in ("float32", "float64") else 1e-4)
    # _into: poisoned out and lse fully written
    o = np.full((b, h, sq, dv), np.nan, dtype=np_dtype(dtype))
    res = lc.attention_into(q, k, v, o, causal=causal, device=device, return_lse=True)
    assert res[0] is o
    check(o, ref, dtype, "into")
    check_lse(res[1], ref_lse, "into lse", tol=1e-5 if dtype in ("float32", "float64") else 1e-4)
    # without lse, the plain result
    o2 = np.full((b, h, sq, dv), np.nan, dtype=np_dtype(dtype))
    assert lc.attention_into(q, k, v, o2, causal=causal, device=device) is o2
    check(o2, ref, dtype, "into (no lse)")


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)], ids=["Sq0", "Sk0", "both0"])
def test_zero_lengths(device, shape, rng):
    sq, sk = shape
    q, k, v = rnd(rng, (2, 4, sq, 8), "float32"), rnd(rng, (2, 2, sk, 8), "float32"), rnd(rng, (2, 2, sk, 6), "float32")
    o = np.full((2, 4, sq, 6), np.nan, dtype=np.float32)
    _, lse = lc.attention_into(q, k, v, o, device=device, return_lse=True)
    assert o.shape == (2, 4, sq, 6) and np.array_equal(o, np.zeros_like(o))
    assert lse.shape == (2, 4, sq) and np.all(np.isneginf(lse))
    out = lc.attention(q, k, v, causal=True, device=device)
    assert out.shape == (2, 4, sq, 6) and not np.isnan(out).any() and not out.any()


@pytest.mark.parametrize("device", backends)
def test_zero_batch_and_heads(device, rng):
    for b, h, hk in [(0, 4, 2), (3, 0, 1)]:
        q, k, v = rnd(rng, (b, h, 5, 8), "float32"), rnd(rng, (b, hk, 7, 8), "float32"), rnd(rng, (b, hk, 7, 8), "float32")
        out, lse = lc.attention(q, k, v, device=device, return_lse=True)
        assert out.shape == (b, h, 5, 8) and lse.shape == (b, h, 5)


@pytest.mark.parametrize("device", backends)
def test_rank2_and_rank3_inputs(device, rng):
    q, k, v = rnd(rng, (11, 16), "float32"), rnd(rng, (23, 16), "float32"), rnd(rng, (23, 5), "float32")
    ref, ref_lse = ref_mha(q[None, None], k[None, None], v[None, None], causal=True)
    out, lse = lc.attention(q, k, v, causal=True, device=device, return_lse=True)
    assert out.shape == (11, 5) and lse.shape == (11,)
    check(out, ref[0, 0], "float32", "rank 2")
    check_lse(lse, ref_lse[0, 0], "rank 2 lse")
    # rank 2 without mask or causal matches attention2d (the single-head op keeps its meaning)
    check(lc.attention(q, k, v, device=device), f64(lc.attention2d(q, k, v, device=device)), "float32", "vs attention2d")
    q3, k3, v3 = rnd(rng, (6, 11, 16), "float32"), rnd(rng, (3, 23, 16), "float32"), rnd(rng, (3, 23, 16), "float32")
    ref3, _ = ref_mha(q3[None], k3[None], v3[None])
    out3 = lc.attention(q3, k3, v3, device=device)
    assert out3.shape == (6, 11, 16)
    check(out3, ref3[0], "float32", "rank 3 GQA")


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_key_padding_mask_with_fully_masked_rows(device, dtype, rng):
    b, h, hk, sq, sk, d = 3, 4, 2, 13, 29, 16
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, d), dtype)
    mask = rng.random((b, sk)) < 0.6
    mask[0, 0] = True
    mask[1, :] = False  # batch 1: every key hidden -> zeros, lse -inf
    # values at hidden keys are inf / NaN: they must never reach the output
    v = v.copy()
    v[0, :, ~mask[0]] = np.inf
    v[2, :, ~mask[2]] = np.nan
    ref, ref_lse = ref_mha(q, k, np.nan_to_num(f64(v), nan=0.0, posinf=0.0), mask=mask)
    out, lse = lc.attention(q, k, v, mask=mask, device=device, return_lse=True)
    check(out, ref, dtype, "key padding")
    assert not f64(out)[1].any(), "fully masked rows must be exactly zero"
    assert np.all(np.isneginf(f64(lse)[1]))
    check_lse(lse, ref_lse, "key padding lse", tol=1e-4)
    # the same mask as int32 / int64, and as an lc.Tensor
    for m in (mask.astype(np.int32), mask.astype(np.int64), mask.tolist(),
              lc.Tensor(mask.astype(np.int32), device=device)):
        check(lc.attention(q, k, v, mask=m, device=device), ref, dtype, f"mask {type(m).__name__}")


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("mshape", ["Sk", "11SqSk", "B11Sk", "BHSqSk", "HSqSk", "B1SqSk"])
def test_additive_mask_broadcasts(device, mshape, rng):
    b, h, hk, sq, sk, d = 2, 6, 3, 17, 41, 24
    q, k, v = rnd(rng, (b, h, sq, d), "float32"), rnd(rng, (b, hk, sk, d), "float32"), rnd(rng, (b, hk, sk, d), "float32")
    shape = {"Sk": (sk,), "11SqSk": (1, 1, sq, sk), "B11Sk": (b, 1, 1, sk), "BHSqSk": (b, h, sq, sk),
             "HSqSk": (h, sq, sk), "B1SqSk": (b, 1, sq, sk)}[mshape]
    add = rnd(rng, shape, "float32", scale=2.0)
    add[rng.random(shape) < 0.2] = -np.inf
    ref, ref_lse = ref_mha(q, k, v, mask=add)
    out, lse = lc.attention(q, k, v, mask=add, device=device, return_lse=True)
    check(out, ref, "float32", mshape)
    check_lse(lse, ref_lse, mshape + " lse")
    # with causal on top
    ref_c, _ = ref_mha(q, k, v, mask=add, causal=True)
    check(lc.attention(q, k, v, mask=add, causal=True, device=device), ref_c, "float32", mshape + " causal")


@pytest.mark.parametrize("device", backends)
def test_boolean_mask_broadcast_4d(device, rng):
    b, h, sq, sk, d = 2, 3, 9, 14, 8
    q, k, v = rnd(rng, (b, h, sq, d), "float32"), rnd(rng, (b, h, sk, d), "float32"), rnd(rng, (b, h, sk, d), "float32")
    mask = rng.random((1, 1, sq, sk)) < 0.5
    mask[0, 0, 3, :] = False  # a fully masked query row
    ref, ref_lse = ref_mha(q, k, v, mask=mask)
    out, lse = lc.attention(q, k, v, mask=mask, device=device, return_lse=True)
    check(out, ref, "float32", "bool [1,1,Sq,Sk]")
    check_lse(lse, ref_lse, "bool [1,1,Sq,Sk] lse")
    assert not f64(out)[:, :, 3].any()


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_permuted_views_as_transformers_make_them(device, dtype, rng):
    """q/k/v projected as [B, S, H, D] and transposed to [B, H, S, D] (non-contiguous)."""
    b, s, h, hk, d = 2, 37, 6, 2, 32
    qp, kp, vp = rnd(rng, (b, s, h, d), dtype), rnd(rng, (b, s, hk, d), dtype), rnd(rng, (b, s, hk, d), dtype)
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (qp, kp, vp))
    assert not q.flags.c_contiguous
    ref, ref_lse = ref_mha(q, k, v, causal=True)
    out, lse = lc.attention(q, k, v, causal=True, device=device, return_lse=True)
    check(out, ref, dtype, "permuted numpy")
    check_lse(lse, ref_lse, "permuted lse", tol=1e-4)
    # a packed qkv projection [B, S, 3, H, D] sliced into q, k, v
    qkv = rnd(rng, (b, s, 3, h, d), dtype)
    q2, k2, v2 = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    ref2, _ = ref_mha(q2, k2, v2)
    check(lc.attention(q2, k2, v2, device=device), ref2, dtype, "packed qkv slices")
    # a non-unit last stride (staged contiguous) and negative strides
    q3 = np.ascontiguousarray(np.repeat(q, 2, axis=-1))[..., ::2]
    check(lc.attention(q3, k, v, device=device), ref_mha(q, k, v)[0], dtype, "last-dim stride 2")
    check(lc.attention(q[:, :, ::-1], k, v, device=device), ref_mha(q[:, :, ::-1], k, v)[0], dtype, "reversed rows")


@pytest.mark.parametrize("device", backends)
def test_resident_tensors_and_views(device, rng):
    b, s, h, d = 2, 21, 4, 16
    qp = rnd(rng, (b, s, h, d), "float32")
    k, v = rnd(rng, (b, h, s, d), "float32"), rnd(rng, (b, h, s, d), "float32")
    tq = lc.Tensor(qp, device=device)
    # the [B, H, S, D] view of the resident [B, S, H, D] tensor (strides in elements)
    view = tq._view([b, h, s, d], [s * h * d, d, h * d, 1], 0)
    tk, tv = lc.Tensor(k, device=device), lc.Tensor(v, device=device)
    out, lse = lc.attention(view, tk, tv, causal=True, device=device, return_lse=True)
    assert isinstance(out, lc.Tensor) and isinstance(lse, lc.Tensor)
    ref, ref_lse = ref_mha(qp.transpose(0, 2, 1, 3), k, v, causal=True)
    check(out, ref, "float32", "resident view")
    check_lse(lse, ref_lse, "resident lse")
    o = lc.Tensor(np.full((b, h, s, d), np.nan, np.float32), device=device)
    res, lse2 = lc.attention_into(view, tk, tv, o, causal=True, device=device, return_lse=True)
    assert res is o and isinstance(lse2, lc.Tensor)
    check(o, ref, "float32", "resident into")
    check_lse(lse2, ref_lse, "resident into lse")


@pytest.mark.parametrize("device", backends)
def test_scale_and_tf32_policy(device, rng):
    q, k, v = rnd(rng, (2, 4, 33, 64), "float32"), rnd(rng, (2, 4, 47, 64), "float32"), rnd(rng, (2, 4, 47, 64), "float32")
    ref, _ = ref_mha(q, k, v, scale=0.37)
    check(lc.attention(q, k, v, scale=0.37, device=device), ref, "float32", "scale")
    pol = lc.ExecutionPolicy(device=device, precision="tf32")
    check(lc.attention(q, k, v, scale=0.37, policy=pol), ref, "float32", "tf32", tol=1e-3)


@pytest.mark.parametrize("device", backends)
def test_bad_inputs_raise_and_leave_out_untouched(device, rng):
    q, k, v = rnd(rng, (2, 6, 5, 8), "float32"), rnd(rng, (2, 3, 7, 8), "float32"), rnd(rng, (2, 3, 7, 8), "float32")
    out = np.full((2, 6, 5, 8), np.nan, np.float32)

    def untouched():
        assert np.isnan(out).all(), "an error must not write into out"

    with pytest.raises(TypeError, match=r"\[attention\]"):
        lc.attention_into(q.astype(np.int32), k, v, out, device=device)
    untouched()
    with pytest.raises(TypeError, match=r"\[attention\]"):
        lc.attention_into(q, k.astype(np.float16), v, out, device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\].*\[2, 4, 7, 8\].*divide"):
        lc.attention_into(q, rnd(rng, (2, 4, 7, 8), "float32"), rnd(rng, (2, 4, 7, 8), "float32"), out, device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\].*head dimension"):
        lc.attention_into(q, rnd(rng, (2, 3, 7, 9), "float32"), v, out, device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\].*sequence length"):
        lc.attention_into(q, k, rnd(rng, (2, 3, 6, 8), "float32"), out, device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\].*batch"):
        lc.attention_into(q, rnd(rng, (3, 3, 7, 8), "float32"), rnd(rng, (3, 3, 7, 8), "float32"), out, device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\].*mask is \[2, 5\]"):
        lc.attention_into(q, k, v, out, mask=np.ones((2, 5), bool), device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\].*mask"):
        lc.attention_into(q, k, v, out, mask=np.zeros((3, 1, 1, 7), np.float32), device=device)
    untouched()
    with pytest.raises(TypeError, match=r"\[attention\].*additive mask"):
        lc.attention_into(q, k, v, out, mask=np.zeros((7,), np.float64), device=device)
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\]"):
        lc.attention_into(q[None], k[None], v[None], out, device=device)  # 5-D
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\]"):
        lc.attention_into(q, k[0], v[0], out, device=device)  # ranks differ
    untouched()
    with pytest.raises(ValueError, match=r"\[attention\]"):
        lc.attention_into(q, k, v, np.full((2, 6, 5, 7), np.nan, np.float32), device=device)
    with pytest.raises(TypeError, match=r"\[attention\]"):
        lc.attention_into(q, k, v, np.full((2, 6, 5, 8), np.nan, np.float64), device=device)
    with pytest.raises(ValueError, match=r"\[attention\].*scale"):
        lc.attention_into(q, k, v, out, scale=-1.0, device=device)
    untouched()
    with pytest.raises(TypeError, match=r"attention"):
        lc.attention(q, k, v, True)  # causal is keyword-only
    with pytest.raises(TypeError, match=r"\[attention\]"):
        lc.attention(q, k, v, causal="yes")


def test_float64_is_computed_in_float64(rng):
    q, k, v = rnd(rng, (1, 2, 9, 5), "float64"), rnd(rng, (1, 1, 12, 5), "float64"), rnd(rng, (1, 1, 12, 3), "float64")
    ref, ref_lse = ref_mha(q, k, v, causal=True)
    out, lse = lc.attention(q, k, v, causal=True, return_lse=True, device="cpu")
    assert out.dtype == np.float64
    check(out, ref, "float64", "f64")
    check_lse(lse, ref_lse, "f64 lse", tol=1e-6)


# ---- torch.nn.functional.scaled_dot_product_attention ----------------------------------------

@pytest.mark.skipif(torch is None, reason="torch not importable")
@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_matches_torch_sdpa(device, dtype, rng):
    import torch.nn.functional as F

    tdt = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    b, h, hk, sq, sk, d = 2, 8, 2, 33, 47, 64
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, d), dtype)
    tq, tk, tv = (torch.from_numpy(f64(x)).to(torch.float32) for x in (q, k, v))
    tk, tv = tk.repeat_interleave(h // hk, dim=1), tv.repeat_interleave(h // hk, dim=1)
    # causal with Sq != Sk: torch's is_causal is top-left, ours bottom-right: pass torch the
    # bottom-right mask explicitly
    keep = torch.ones(sq, sk, dtype=torch.bool).tril(diagonal=sk - sq)
    ref = F.scaled_dot_product_attention(tq.double(), tk.double(), tv.double(), attn_mask=keep).numpy()
    check(lc.attention(q, k, v, causal=True, device=device), ref, dtype, "causal vs torch")
    add = rnd(rng, (b, 1, 1, sk), "float32")
    ref2 = F.scaled_dot_product_attention(tq.double(), tk.double(), tv.double(),
                                          attn_mask=torch.from_numpy(f64(add))).numpy()
    check(lc.attention(q, k, v, mask=add.astype(np_dtype(dtype)), device=device), ref2, dtype, "additive vs torch",
          tol=TOL[dtype] if dtype == "float32" else 2e-2)
    del tdt


# ---- CUDA-only ---------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_resident_bf16_fp16_views_and_lse_on_device(dtype, rng):
    b, s, h, hk, d = 3, 77, 8, 2, 64
    qp, kp, vp = rnd(rng, (b, s, h, d), dtype), rnd(rng, (b, s, hk, d), dtype), rnd(rng, (b, s, hk, d), dtype)
    tq = lc.Tensor(qp, device="cuda", dtype=dtype)
    tk = lc.Tensor(kp, device="cuda", dtype=dtype)
    tv = lc.Tensor(vp, device="cuda", dtype=dtype)
    vq = tq._view([b, h, s, d], [s * h * d, d, h * d, 1], 0)
    vk = tk._view([b, hk, s, d], [s * hk * d, d, hk * d, 1], 0)
    vv = tv._view([b, hk, s, d], [s * hk * d, d, hk * d, 1], 0)
    mask = rng.random((b, s)) < 0.7
    mask[:, 0] = True
    out, lse = lc.attention(vq, vk, vv, causal=True, mask=lc.Tensor(mask.astype(np.int64), device="cuda"),
                            return_lse=True, device="cuda")
    assert out.device == "cuda" and lse.device == "cuda" and out.dtype == dtype
    ref, ref_lse = ref_mha(*(x.transpose(0, 2, 1, 3) for x in (qp, kp, vp)), causal=True, mask=mask)
    check(out, ref, dtype, "cuda resident views")
    check_lse(lse, ref_lse, "cuda lse", tol=1e-4)


@pytest.mark.gpu
def test_cuda_misaligned_views_take_the_scalar_path(rng):
    """Views offset by one element (no 16-byte loads) and odd D / Dv."""
    b, h, s, d = 2, 3, 45, 12
    buf = rnd(rng, (b * h * s * d + 1,), "float32")
    t = lc.Tensor(buf, device="cuda")
    q = t._view([b, h, s, d], [h * s * d, s * d, d, 1], 1)
    ref, _ = ref_mha(buf[1:].reshape(b, h, s, d), buf[1:].reshape(b, h, s, d), buf[1:].reshape(b, h, s, d))
    check(lc.attention(q, q, q, device="cuda"), ref, "float32", "misaligned")
    q5, k5, v5 = rnd(rng, (1, 2, 19, 7), "float32"), rnd(rng, (1, 2, 23, 7), "float32"), rnd(rng, (1, 2, 23, 5), "float32")
    check(lc.attention(q5, k5, v5, causal=True, device="cuda"), ref_mha(q5, k5, v5, causal=True)[0], "float32", "odd dims")


@pytest.mark.gpu
def test_cuda_more_blocks_than_grid_y_limit(rng):
    """B * H * query tiles > 65535 (one block per pair on grid x, grid-stride loop)."""
    b, h, hk, sq, sk, d = 1100, 64, 8, 5, 9, 4
    q, k, v = rnd(rng, (b, h, sq, d), "float32"), rnd(rng, (b, hk, sk, d), "float32"), rnd(rng, (b, hk, sk, d), "float32")
    ref, ref_lse = ref_mha(q, k, v, causal=True)
    out, lse = lc.attention(q, k, v, causal=True, device="cuda", return_lse=True)
    check(out, ref, "float32", "many pairs")
    check_lse(lse, ref_lse, "many pairs lse")


@pytest.mark.gpu
@pytest.mark.parametrize("d", [16, 48, 96, 128, 192, 256, 257, 384, 512, 513])
def test_cuda_head_dims(d, rng):
    """Every CUDA tile config (d <= 64 / 128 / 256 / 512); d = 513 is past the CUDA limit and
    runs on the CPU. The trace says where each call ran."""
    q, k, v = rnd(rng, (2, 4, 70, d), "bfloat16"), rnd(rng, (2, 2, 131, d), "bfloat16"), rnd(rng, (2, 2, 131, d), "bfloat16")
    ref, _ = ref_mha(q, k, v, causal=True)
    lc.runtime_trace_clear()
    lc.runtime_trace_enable(True)
    try:
        out = lc.attention(q, k, v, causal=True, device="cuda")
    finally:
        lc.runtime_trace_enable(False)
    check(out, ref, "bfloat16", f"d={d}")
    ran = {e["device"] for e in lc.runtime_trace_events() if e["op"] == "attention"}
    assert ran == ({"cpu"} if d > 512 else {"cuda"}), (d, ran)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("d,dv", [(384, 384), (300, 7), (5, 450), (512, 512)])
def test_cuda_wide_heads(d, dv, dtype, rng):
    """The 512-wide tile config of both kernels: the batched one (GQA, causal, a key-padding
    mask, lse) and attention2d's (a long single head: split-K), NaN-poisoned outputs."""
    q, k, v = rnd(rng, (2, 4, 37, d), dtype), rnd(rng, (2, 2, 131, d), dtype), rnd(rng, (2, 2, 131, dv), dtype)
    mask = rng.random((2, 131)) < 0.8
    mask[:, 0] = True
    ref, ref_lse = ref_mha(q, k, v, causal=True, mask=mask)
    out = np.full((2, 4, 37, dv), np.nan, dtype=np_dtype(dtype))
    _, lse = lc.attention_into(q, k, v, out, causal=True, mask=mask, device="cuda", return_lse=True)
    check(out, ref, dtype, f"mha d={d} dv={dv}")
    check_lse(lse, ref_lse, f"mha lse d={d} dv={dv}", tol=1e-5 if dtype == "float32" else 1e-4)
    q2, k2, v2 = rnd(rng, (53, d), dtype), rnd(rng, (1031, d), dtype), rnd(rng, (1031, dv), dtype)
    ref2, _ = ref_mha(q2[None, None], k2[None, None], v2[None, None], causal=False)
    check(lc.attention2d(q2, k2, v2, device="cuda"), ref2[0, 0], dtype, f"2-D d={d} dv={dv}")


@pytest.mark.gpu
def test_cuda_matches_cpu_on_a_transformer_shape(rng):
    q, k, v = rnd(rng, (4, 12, 128, 64), "float32"), rnd(rng, (4, 12, 128, 64), "float32"), rnd(rng, (4, 12, 128, 64), "float32")
    mask = rng.random((4, 128)) < 0.9
    mask[:, 0] = True
    a = lc.attention(q, k, v, mask=mask, device="cuda")
    c = lc.attention(q, k, v, mask=mask, device="cpu")
    assert rel_error(f64(a), f64(c)) < 1e-5


def test_registry_entry():
    """lc.op_info / lc.op_infer know the op (src/ops/registry.h)."""
    assert "attention" in lc.ops()
    info = lc.op_info("attention")
    assert [i["name"] for i in info["inputs"]] == ["q", "k", "v", "mask"]
    assert set(info["attributes"]) == {"causal", "scale", "return_lse"}
    assert "float64" in info["dtypes"]["cpu"] and "float64" not in info["dtypes"]["cuda"]
    assert lc.op_infer("attention", [(2, 8, 5, 16), (2, 2, 7, 16), (2, 2, 7, 4)], "bfloat16") == ((2, 8, 5, 4), "bfloat16")
    with pytest.raises(ValueError, match=r"\[attention\]"):
        lc.op_infer("attention", [(2, 6, 5, 16), (2, 4, 7, 16), (2, 4, 7, 4)], "float32")
