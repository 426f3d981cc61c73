"""Decode-shaped attention on the CPU (a few query rows against a long K/V cache): lc.attention
runs flash decoding for these (src/backends/cpu/attention_decode.cpp: tasks of (batch, kv head,
chunk of keys), then a combine pass; sq <= 16, sk > 256, float32 / float16 / bfloat16).

Every case is compared with the float64 reference of test_attention_mha.py computed from the
rounded inputs (relative Frobenius error: float32 1e-5, float16 / bfloat16 1e-2; lse 1e-5 /
1e-3); `_into` outputs are poisoned with NaN first. Shapes: the decode boundary (257 keys), odd
and prime key counts, GQA / MQA / H == Hk, sq up to 16 with causal (bottom-right), D != Dv, odd
head dims, K / V read through a slice of a longer cache and a packed layout, masks of both
kinds including rows with no visible key, and NaN / inf values.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from test_attention_mha import check, check_lse, f64, np_dtype, ref_mha, rnd

DTYPES = ["float32", "float16", "bfloat16"]
LSE_TOL = {"float32": 1e-5, "float16": 1e-3, "bfloat16": 1e-3}

# (B, H, Hk, Sq, Sk, D, Dv, causal)
CASES = [
    (1, 32, 8, 1, 4096, 128, 128, False),   # the decode shape, batch 1
    (2, 8, 2, 1, 257, 64, 64, False),       # just past the encoder kernel's key range
    (1, 8, 8, 3, 1031, 32, 48, True),       # H == Hk, D != Dv, prime sk, causal
    (3, 16, 1, 2, 777, 80, 80, True),       # MQA, 32 rows per kv head
    (1, 4, 2, 16, 1500, 17, 5, True),       # sq at the limit, odd head dims
    (2, 2, 1, 5, 300, 256, 256, False),     # D 256
]


def case_id(c):
    b, h, hk, sq, sk, d, dv, causal = c
    return f"B{b}H{h}Hk{hk}-{sq}x{sk}-d{d}v{dv}" + ("-causal" if causal else "")


@pytest.mark.parametrize("form", ["return", "into"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_decode_matches_float64_reference(case, dtype, form, rng):
    b, h, hk, sq, sk, d, dv, causal = case
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, dv), dtype)
    ref, ref_lse = ref_mha(f64(q), f64(k), f64(v), causal)
    where = f"{case_id(case)} {dtype} {form}"
    if form == "return":
        out, lse = lc.attention(q, k, v, causal=causal, return_lse=True, device="cpu")
    else:
        out = np.full((b, h, sq, dv), np.nan).astype(np_dtype(dtype))
        res, lse = lc.attention_into(q, k, v, out, causal=causal, return_lse=True, device="cpu")
        assert res is out
    check(out, ref, dtype, where)
    check_lse(lse, ref_lse, where, LSE_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_masks_and_rows_without_keys(dtype, rng):
    b, h, hk, sq, sk, d = 2, 8, 2, 4, 600, 64
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, d), dtype)
    # key padding [B, Sk]: batch 1 sees only its first 333 keys (every chunk but the first
    # ones sees none of them)
    keep = np.ones((b, sk), bool)
    keep[1, 333:] = False
    out, lse = lc.attention(q, k, v, mask=keep, return_lse=True, device="cpu")
    ref, ref_lse = ref_mha(f64(q), f64(k), f64(v), mask=keep)
    check(out, ref, dtype, "key padding")
    check_lse(lse, ref_lse, "key padding", LSE_TOL[dtype])
    # a full boolean mask that hides every key of some rows: zeros and lse -inf there
    full = rng.random((b, h, sq, sk)) < 0.7
    full[0, 3, 1, :] = False
    full[1, :, 2, :] = False
    out, lse = lc.attention(q, k, v, mask=full.astype(np.int32), return_lse=True, device="cpu")
    ref, ref_lse = ref_mha(f64(q), f64(k), f64(v), mask=full)
    check(out, ref, dtype, "full keep mask")
    assert (f64(out)[0, 3, 1] == 0).all() and (f64(out)[1, :, 2] == 0).all()
    check_lse(lse, ref_lse, "full keep mask", LSE_TOL[dtype])
    # an additive mask in the inputs' dtype, -inf entries included, broadcast over heads
    add = (rng.standard_normal((b, 1, sq, sk)) * 2).astype(np_dtype(dtype))
    add[..., ::7] = -np.inf
    out, lse = lc.attention(q, k, v, mask=add, return_lse=True, causal=True, device="cpu")
    ref, ref_lse = ref_mha(f64(q), f64(k), f64(v), causal=True, mask=f64(add))
    check(out, ref, dtype, "additive + causal")
    check_lse(lse, ref_lse, "additive + causal", LSE_TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decode_reads_cache_slices_and_packed_layouts(dtype, rng):
    b, h, hk, sq, sk, d = 2, 8, 2, 2, 700, 64
    cache_k = lc.Tensor(rnd(rng, (b, hk, 1024, d), dtype))
    cache_v = lc.Tensor(rnd(rng, (b, hk, 1024, d), dtype))
    k, v = cache_k[:, :, :sk], cache_v[:, :, :sk]
    q = lc.Tensor(rnd(rng, (b, sq, h, d), dtype)).permute(0, 2, 1, 3)  # [B, H, Sq, D] view
    out = lc.Tensor.empty([b, sq, h, d], dtype=dtype)
    lc.attention_into(q, k, v, out.permute(0, 2, 1, 3), device="cpu")  # merged-heads layout
    ref, _ = ref_mha(f64(q), f64(k), f64(v))
    check(f64(out).transpose(0, 2, 1, 3), ref, dtype, "cache slices, strided q and out")


def test_decode_non_finite_values(rng):
    b, h, hk, sq, sk, d = 1, 4, 1, 2, 512, 32
    q, k, v = rnd(rng, (b, h, sq, d), "float32"), rnd(rng, (b, hk, sk, d), "float32"), rnd(rng, (b, hk, sk, d), "float32")
    # an infinite value row behind a masked key contributes nothing (never 0 * inf)
    v[0, 0, 400] = np.inf
    keep = np.ones((b, sk), bool)
    keep[0, 400] = False
    out = lc.attention(q, k, v, mask=keep, device="cpu")
    ref, _ = ref_mha(f64(q), f64(k), f64(np.where(np.isinf(v), 0, v)), mask=keep)
    check(out, ref, "float32", "inf behind a masked key")
    # the same key visible: its row is inf / NaN, as torch gives
    out = lc.attention(q, k, v, device="cpu")
    assert not np.isfinite(f64(out)).all()
    # a NaN query row gives a NaN output row, the others stay finite
    q2 = q.copy()
    q2[0, 1, 0, 3] = np.nan
    out = f64(lc.attention(q2, k, np.where(np.isinf(v), 0, v).astype(np.float32), device="cpu"))
    assert np.isnan(out[0, 1, 0]).all() and np.isfinite(np.delete(out.reshape(-1, d), 2, axis=0)).all()


def test_decode_agrees_with_the_tiled_path(rng):
    # sq = 17 is past the decode limit (the tiled path): both sides of the boundary agree with
    # the reference, so the dispatch is seamless
    for sq in (16, 17):
        q, k, v = rnd(rng, (1, 4, sq, 32), "float32"), rnd(rng, (1, 2, 900, 32), "float32"), rnd(rng, (1, 2, 900, 32), "float32")
        out = lc.attention(q, k, v, causal=True, device="cpu")
        ref, _ = ref_mha(f64(q), f64(k), f64(v), causal=True)
        check(out, ref, "float32", f"sq={sq}")
