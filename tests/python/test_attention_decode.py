"""Decode-shaped attention on CUDA (a few query rows against a long K/V cache): lc.attention
runs flash decoding for these (src/backends/cuda/attention_decode.cu: the keys split across
blocks, then a combine pass; sq <= 8 and sk >= 256), or cuDNN when "auto" measured it faster.

Every case is compared with the float64 numpy reference of test_attention_mha.py computed from
the rounded inputs (relative Frobenius error: float32 1e-5, float16 / bfloat16 1e-2; lse 1e-4),
with the implementation forced to our kernels ("own") and under "auto". Outputs of the _into
form are poisoned with NaN. K/V also come as a slice of a longer on-device cache, as a decode
loop holds them.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from test_attention_mha import check, check_lse, f64, np_dtype, ref_mha, rnd

DTYPES = ["bfloat16", "float16", "float32"]

# (B, H, Hk, Sq, Sk, D, causal): the decode shape (smaller batch), GQA 4:1, MQA with
# many rows per kv head, H == Hk, sq up to 8 with causal, odd sk, D = 80 and 256.
CASES = [
    (2, 32, 8, 1, 4096, 128, False),
    (1, 8, 2, 1, 4097, 128, True),
    (2, 16, 1, 1, 1000, 64, False),
    (3, 4, 4, 2, 777, 80, True),
    (1, 8, 2, 5, 300, 256, True),
    (2, 4, 1, 8, 2049, 64, True),
]


def case_id(c):
    b, h, hk, sq, sk, d, causal = c
    return f"B{b}H{h}Hk{hk}-{sq}x{sk}-d{d}" + ("-causal" if causal else "")


@pytest.fixture
def impl():
    before = lc.attention_impl()
    yield lc.set_attention_impl
    lc.set_attention_impl(before)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_decode_matches_float64_reference(dtype, case, impl, rng):
    b, h, hk, sq, sk, d, causal = case
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, d), dtype)
    ref, ref_lse = ref_mha(q, k, v, causal=causal)
    for choice in ("own", "auto"):
        impl(choice)
        out, lse = lc.attention(q, k, v, causal=causal, return_lse=True, device="cuda")
        if choice == "own":
            assert lc.last_op_report()["impl"] == "own"
        check(out, ref, dtype, f"{choice} out")
        check_lse(lse, ref_lse, f"{choice} lse", tol=1e-4)
        o = np.full((b, h, sq, d), np.nan, dtype=np_dtype(dtype))
        assert lc.attention_into(q, k, v, o, causal=causal, device="cuda") is o
        check(o, ref, dtype, f"{choice} into")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_decode_masks_and_rows_without_keys(dtype, impl, rng):
    """Key padding with a batch that sees no key (zeros, lse -inf), and an additive mask."""
    impl("own")
    b, h, hk, sq, sk, d = 3, 8, 2, 2, 1500, 64
    q, k, v = rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, d), dtype)
    keep = rng.random((b, sk)) < 0.7
    keep[1, :] = False
    ref, ref_lse = ref_mha(q, k, v, mask=keep)
    out, lse = lc.attention(q, k, v, mask=keep, return_lse=True, device="cuda")
    check(out, ref, dtype, "key padding")
    check_lse(lse, ref_lse, "key padding lse", tol=1e-4)
    assert np.all(f64(out)[1] == 0.0) and np.all(np.isneginf(f64(lse)[1]))
    add = rnd(rng, (b, 1, sq, sk), dtype)
    ref, _ = ref_mha(q, k, v, mask=add, causal=True)
    out = lc.attention(q, k, v, mask=add, causal=True, device="cuda")
    check(out, ref, dtype, "additive + causal")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_decode_reads_a_slice_of_a_device_cache(dtype, impl, rng):
    """K/V as the first sk rows of a [B, Hk, Smax, D] cache on the device (the slack holds
    NaN: a read past sk would show), q as a [B, 1, H, D] buffer read as [B, H, 1, D]."""
    impl("own")
    b, h, hk, smax, sk, d = 2, 16, 4, 3000, 2345, 128
    kc = np.full((b, hk, smax, d), np.nan, dtype=np_dtype(dtype))
    vc = np.full((b, hk, smax, d), np.nan, dtype=np_dtype(dtype))
    kc[:, :, :sk] = rnd(rng, (b, hk, sk, d), dtype)
    vc[:, :, :sk] = rnd(rng, (b, hk, sk, d), dtype)
    qp = rnd(rng, (b, 1, h, d), dtype)
    tk, tv, tq = (lc.Tensor(x, device="cuda", dtype=dtype) for x in (kc, vc, qp))
    vk = tk._view([b, hk, sk, d], [hk * smax * d, smax * d, d, 1], 0)
    vv = tv._view([b, hk, sk, d], [hk * smax * d, smax * d, d, 1], 0)
    vq = tq._view([b, h, 1, d], [h * d, d, h * d, 1], 0)
    q = qp.transpose(0, 2, 1, 3)
    ref, ref_lse = ref_mha(q, kc[:, :, :sk], vc[:, :, :sk])
    out, lse = lc.attention(vq, vk, vv, return_lse=True, device="cuda")
    assert out.device == "cuda" and lse.device == "cuda"
    check(out, ref, dtype, "cache view")
    check_lse(lse, ref_lse, "cache view lse", tol=1e-4)
