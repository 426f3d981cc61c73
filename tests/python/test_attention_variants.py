"""The compiled variants of the CUDA attention kernels (tile shapes, pipeline depth, launch
bounds, split rules; docs/attention.md, "Kernel variants"), chosen through the private hook
``lc._set_attention_kernel_variant("tc" | "decode", i)`` (initially LC_ATTENTION_TC_VARIANT /
LC_ATTENTION_DECODE_VARIANT). Every variant must compute the same attention: each GPU test here
runs its body once per variant with our kernels forced (``set_attention_impl("own")``) against
the float64 reference of test_attention_mha.py: sizes that are not tile multiples, size 1, GQA
and MQA, causal with Sq != Sk, key-padding / additive / per-row masks with rows that see no key,
lse, and out written through the merged-heads strides. The hook's own contract (names, range
checks) runs without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from test_attention_mha import check, check_lse, f64, np_dtype, ref_mha, rnd

TC_VARIANTS = len(lc._attention_kernel_variant_names("tc"))
DECODE_VARIANTS = len(lc._attention_kernel_variant_names("decode"))


def test_variant_hook_contract():
    for kernel, n in (("tc", TC_VARIANTS), ("decode", DECODE_VARIANTS)):
        names = lc._attention_kernel_variant_names(kernel)
        assert n >= 2 and len(set(names)) == n and "default" in names[0]
        before = lc._attention_kernel_variant(kernel)
        try:
            for i in range(n):
                lc._set_attention_kernel_variant(kernel, i)
                assert lc._attention_kernel_variant(kernel) == i
            for bad in (-1, n):
                with pytest.raises(ValueError, match="set_attention_kernel_variant"):
                    lc._set_attention_kernel_variant(kernel, bad)
            assert lc._attention_kernel_variant(kernel) == n - 1  # unchanged by the failures
        finally:
            lc._set_attention_kernel_variant(kernel, before)
    with pytest.raises(ValueError, match="kernel must be"):
        lc._set_attention_kernel_variant("flash", 0)
    with pytest.raises(ValueError, match="kernel must be"):
        lc._attention_kernel_variant_names("nope")


@pytest.fixture
def own():
    before = lc.attention_impl()
    lc.set_attention_impl("own")
    yield
    lc.set_attention_impl(before)


def each_variant(kernel, n):
    """Yields every variant index with the hook set to it; restores the choice after."""
    before = lc._attention_kernel_variant(kernel)
    try:
        for i in range(n):
            lc._set_attention_kernel_variant(kernel, i)
            yield i
    finally:
        lc._set_attention_kernel_variant(kernel, before)


# (B, H, Hk, Sq, Sk, D, causal, mask): mask None, "pad" (bool [B, Sk], batch 1 sees no key),
# "add" (additive [B, 1, Sq, Sk] with -inf, row 0 of batch 0 sees no key), "rows" (bool
# [B, H, Sq, Sk] per row). MiniLM's shape, tile tails (1, 7, 63, 65, 129, 300 rows / keys),
# GQA 4:1 and MQA, causal with Sq < Sk and Sq > Sk, D 16 ... 128 (the variant configs: 32, 64,
# 128; others run the default tiling whatever the variant).
TC_CASES = [
    (4, 12, 12, 128, 128, 32, False, None),
    (2, 12, 12, 128, 128, 32, False, "pad"),
    (1, 4, 4, 1, 1, 32, False, None),
    (2, 8, 2, 65, 129, 64, True, None),
    (2, 8, 1, 129, 65, 32, True, "add"),
    (1, 6, 3, 300, 300, 128, True, None),
    (2, 4, 4, 63, 7, 64, False, "rows"),
    (1, 3, 3, 7, 300, 128, False, "pad"),
    (2, 2, 2, 77, 77, 80, True, None),
    (3, 2, 1, 129, 129, 16, False, None),
]


def tc_case_id(c):
    b, h, hk, sq, sk, d, causal, mask = c
    return f"B{b}H{h}Hk{hk}-{sq}x{sk}-d{d}" + ("-causal" if causal else "") + (f"-{mask}" if mask else "")


def make_mask(kind, rng, b, h, sq, sk, dtype):
    if kind == "pad":
        m = rng.random((b, sk)) < 0.7
        if b > 1:
            m[1, :] = False
        return m
    if kind == "add":
        m = rnd(rng, (b, 1, sq, sk), dtype)
        m[rng.random(m.shape) < 0.2] = -np.inf
        m[0, 0, 0, :] = -np.inf
        return m
    if kind == "rows":
        m = rng.random((b, h, sq, sk)) < 0.6
        m[0, 0, -1, :] = False
        return m
    return None


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", TC_CASES, ids=tc_case_id)
def test_tc_variants_match_float64(dtype, case, own, rng):
    b, h, hk, sq, sk, d, causal, mkind = case
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, d), dtype)
    mask = make_mask(mkind, rng, b, h, sq, sk, dtype)
    ref, ref_lse = ref_mha(q, k, v, causal=causal, mask=mask)
    tq, tk, tv = (lc.Tensor(x, device="cuda") for x in (q, k, v))
    for i in each_variant("tc", TC_VARIANTS):
        where = f"tc variant {i}"
        out, lse = lc.attention(tq, tk, tv, causal=causal, mask=mask, return_lse=True)
        assert lc.last_op_report()["impl"] == "own", where
        check(out, ref, dtype, where)
        check_lse(lse, ref_lse, f"{where} lse", tol=2e-3)
        if mkind in ("pad",) and b > 1:
            assert np.all(f64(out)[1] == 0.0), f"{where}: rows without keys must be zeros"
        # out through the merged-heads strides [B, Sq, H, D] -> [B, H, Sq, D], poisoned first
        buf = lc.Tensor(np.full((b, sq, h * d), np.nan, np_dtype(dtype)), device="cuda")
        lc.attention_into(tq, tk, tv, buf.view(b, sq, h, d).permute(0, 2, 1, 3), causal=causal, mask=mask)
        got = f64(buf.numpy()).reshape(b, sq, h, d).transpose(0, 2, 1, 3)
        check(got, ref, dtype, f"{where} strided out")


# (B, H, Hk, Sq, Sk, D, Dv, causal, mask): the sweep's decode shapes (smaller batches), GQA 4:1,
# MQA with 16 rows per kv head (several row chunks), H == Hk, sq up to 8, odd sk, Dv != D,
# D 64 / 80 / 128 / 256, masks.
DECODE_CASES = [
    (2, 32, 8, 1, 4096, 128, 128, False, None),
    (1, 32, 8, 1, 8192, 128, 128, False, None),
    (4, 32, 8, 1, 1024, 128, 128, True, None),
    (2, 16, 1, 1, 1000, 64, 64, False, "pad"),
    (3, 4, 4, 2, 777, 80, 80, True, "add"),
    (1, 8, 2, 5, 300, 256, 256, True, None),
    (2, 4, 1, 8, 2049, 64, 128, True, "pad"),
    (1, 2, 2, 1, 257, 256, 64, False, None),
    # the tensor-core partial kernel's own cases (16-bit): MQA with 32 rows per kv head (two
    # row chunks of 16) at D 32, a key-padding mask with one head per kv head and 3 query rows
    # at D 48 (padded to 64 columns), one row against few keys
    (1, 32, 1, 1, 700, 32, 32, False, None),
    (2, 6, 6, 3, 500, 48, 48, False, "pad"),
    (3, 8, 2, 1, 257, 128, 128, False, "add"),
]


def decode_case_id(c):
    b, h, hk, sq, sk, d, dv, causal, mask = c
    return f"B{b}H{h}Hk{hk}-{sq}x{sk}-d{d}-dv{dv}" + ("-causal" if causal else "") + (f"-{mask}" if mask else "")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("case", DECODE_CASES, ids=decode_case_id)
def test_decode_variants_match_float64(dtype, case, own, rng):
    b, h, hk, sq, sk, d, dv, causal, mkind = case
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, dv), dtype)
    mask = make_mask(mkind, rng, b, h, sq, sk, dtype)
    ref, ref_lse = ref_mha(q, k, v, causal=causal, mask=mask)
    tq, tk, tv = (lc.Tensor(x, device="cuda") for x in (q, k, v))
    for i in each_variant("decode", DECODE_VARIANTS):
        where = f"decode variant {i}"
        out, lse = lc.attention(tq, tk, tv, causal=causal, mask=mask, return_lse=True)
        assert lc.last_op_report()["impl"] == "own", where
        check(out, ref, dtype, where)
        check_lse(lse, ref_lse, f"{where} lse", tol=1e-4)
        o = np.full((b, h, sq, dv), np.nan, dtype=np_dtype(dtype))
        assert lc.attention_into(q, k, v, o, causal=causal, mask=mask, device="cuda") is o
        check(o, ref, dtype, f"{where} into")
