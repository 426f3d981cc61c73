"""lc.attention_into with a strided `out`: the merged-heads buffer [B, S, H, D] passed as its
permuted view [B, H, S, D] (what the BERT encoder does), written in place through its strides
(src/ops/attention_mha.cpp; MhaArgs::out_strides in every backend), or through scratch and one
strided copy when it cannot be written directly (a numpy out for a GPU op, a non-unit last
stride). Every buffer is poisoned with NaN and must come back fully written; a bad `out`
raises before anything is written. The CUDA cases cover the tensor-core kernel for 16-bit
(attention_mha_tc.cu), the float32 kernel and cuDNN.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import backends
from test_attention_mha import check, f64, np_dtype, ref_mha, rnd


def packed_qkv(rng, b, s, h, d, dtype, device):
    """q, k, v as [B, H, S, D] views of one [B, S, 3, H, D] lc.Tensor (the encoder's layout)."""
    qkv = lc.Tensor(rnd(rng, (b, s, 3 * h * d), dtype), device=device)
    q5 = qkv.view(b, s, 3, h, d).permute(2, 0, 3, 1, 4)
    return qkv, q5[0], q5[1], q5[2]


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("masked", [False, True])
def test_merged_heads_out_view(device, dtype, masked, rng):
    b, s, h, d = 3, 37, 4, 32
    qkv, q, k, v = packed_qkv(rng, b, s, h, d, dtype, device)
    mask = None
    if masked:
        mask = rng.random((b, s)) < 0.7
        mask[:, 0] = True
        mask[2, :] = False  # batch 2: every key hidden -> zeros
    host = f64(qkv.numpy()).reshape(b, s, 3, h, d).transpose(2, 0, 3, 1, 4)
    ref, _ = ref_mha(host[0], host[1], host[2], mask=mask)
    buf = lc.Tensor(np.full((b, s, h * d), np.nan, np_dtype(dtype)), device=device)
    view = buf.view(b, s, h, d).permute(0, 2, 1, 3)
    ret = lc.attention_into(q, k, v, view, mask=mask)
    assert ret is view
    got = f64(buf.numpy()).reshape(b, s, h, d).transpose(0, 2, 1, 3)
    check(got, ref, dtype, "merged-heads out")  # NaN check covers every element of the buffer
    if masked:
        assert not got[2].any(), "rows with no visible key must be exact zeros"


@pytest.mark.parametrize("device", backends)
def test_strided_out_with_lse_and_causal_gqa(device, rng):
    b, h, hk, sq, sk, d = 2, 6, 2, 19, 41, 16
    q, k, v = rnd(rng, (b, h, sq, d), "float32"), rnd(rng, (b, hk, sk, d), "float32"), rnd(rng, (b, hk, sk, d), "float32")
    ref, ref_lse = ref_mha(q, k, v, causal=True)
    buf = lc.Tensor(np.full((b, sq, h, d), np.nan, np.float32), device=device)
    view = buf.permute(0, 2, 1, 3)
    tq, tk, tv = (lc.Tensor(x, device=device) for x in (q, k, v))
    out, lse = lc.attention_into(tq, tk, tv, view, causal=True, return_lse=True)
    assert out is view
    check(f64(buf.numpy()).transpose(0, 2, 1, 3), ref, "float32", "strided out + lse")
    np.testing.assert_allclose(f64(lse), ref_lse, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", backends)
def test_numpy_strided_out_and_slices(device, rng):
    """A numpy view (written through scratch for a GPU op) and a column slice of a wider buffer."""
    b, h, s, d = 2, 3, 11, 8
    q, k, v = (rnd(rng, (b, h, s, d), "float32") for _ in range(3))
    ref, _ = ref_mha(q, k, v)
    big = np.full((b, s, h, d + 5), np.nan, np.float32)
    view = big[..., 2:2 + d].transpose(0, 2, 1, 3)  # [B, H, S, D], rows 13 elements apart
    lc.attention_into(q, k, v, view, device=device)
    check(view, ref, "float32", "numpy column slice")
    assert np.isnan(big[..., :2]).all() and np.isnan(big[..., 2 + d:]).all(), "wrote outside out"
    # a non-unit last stride goes through scratch and a strided copy
    wide = np.full((b, h, s, 2 * d), np.nan, np.float32)
    lc.attention_into(q, k, v, wide[..., ::2], device=device)
    check(wide[..., ::2], ref, "float32", "last stride 2")
    assert np.isnan(wide[..., 1::2]).all()


@pytest.mark.parametrize("device", backends)
def test_bad_strided_out_raises_before_writing(device, rng):
    b, h, s, d = 2, 3, 5, 8
    q, k, v = (rnd(rng, (b, h, s, d), "float32") for _ in range(3))
    # a broadcast (overlapping) view: refused
    base = np.full((b, 1, s, d), np.nan, np.float32)
    bad = np.broadcast_to(base, (b, h, s, d))
    with pytest.raises((ValueError, TypeError)):
        lc.attention_into(q, k, v, bad, device=device)
    assert np.isnan(base).all()
    # wrong shape / dtype as a strided view: refused, untouched
    buf = np.full((b, s, h, d), np.nan, np.float32)
    with pytest.raises(ValueError, match="attention"):
        lc.attention_into(q, k, v, buf.transpose(0, 2, 3, 1), device=device)
    with pytest.raises((ValueError, TypeError)):
        lc.attention_into(q, k, v, buf.astype(np.float64).transpose(0, 2, 1, 3), device=device)
    assert np.isnan(buf).all()
    # out overlapping an input: computed through scratch, the input read before it is written
    qkv = rnd(rng, (b, s, 3, h, d), "float32")
    q5 = qkv.transpose(2, 0, 3, 1, 4)
    ref, _ = ref_mha(q5[0], q5[1], q5[2])
    out = qkv[:, :, 0].transpose(0, 2, 1, 3)  # over q itself
    lc.attention_into(q5[0], q5[1], q5[2], out, device=device)
    check(out, ref, "float32", "out aliasing q")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("d", [16, 32, 64, 80, 128])
def test_cuda_tensor_core_shapes_strided_out(dtype, d, rng):
    """MiniLM-like and odd shapes through the default CUDA path (tensor cores or cuDNN)."""
    for (b, s, h), masked in (((4, 128, 12), True), ((2, 129, 3), False), ((3, 7, 2), True),
                              ((1, 300, 2), True)):
        qkv, q, k, v = packed_qkv(rng, b, s, h, d, dtype, "cuda")
        mask = None
        if masked:
            mask = rng.random((b, s)) < 0.8
            mask[:, 0] = True
        host = f64(qkv.numpy()).reshape(b, s, 3, h, d).transpose(2, 0, 3, 1, 4)
        ref, _ = ref_mha(host[0], host[1], host[2], mask=mask)
        buf = lc.Tensor(np.full((b, s, h * d), np.nan, np_dtype(dtype)), device="cuda")
        lc.attention_into(q, k, v, buf.view(b, s, h, d).permute(0, 2, 1, 3), mask=mask)
        got = f64(buf.numpy()).reshape(b, s, h, d).transpose(0, 2, 1, 3)
        check(got, ref, dtype, f"B{b} S{s} H{h} d{d} masked={masked}")
        # the returning form agrees
        check(lc.attention(q, k, v, mask=mask), ref, dtype, "returning form")


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["own", "cudnn"])
def test_cuda_impls_honour_out_strides(impl, rng):
    before = lc.attention_impl()
    try:
        lc.set_attention_impl(impl)
        b, s, h, d = 2, 128, 12, 64
        qkv, q, k, v = packed_qkv(rng, b, s, h, d, "bfloat16", "cuda")
        host = f64(qkv.numpy()).reshape(b, s, 3, h, d).transpose(2, 0, 3, 1, 4)
        ref, _ = ref_mha(host[0], host[1], host[2], causal=True)
        buf = lc.Tensor(np.full((b, s, h * d), np.nan, np_dtype("bfloat16")), device="cuda")
        lc.attention_into(q, k, v, buf.view(b, s, h, d).permute(0, 2, 1, 3), causal=True)
        got = f64(buf.numpy()).reshape(b, s, h, d).transpose(0, 2, 1, 3)
        check(got, ref, "bfloat16", impl)
    finally:
        lc.set_attention_impl(before)
