"""The facts issue #12 wanted written once, checked from Python:

* conv_attention_nchw and attention come from one binding definition each (returning and
  `_into` forms; their signatures are pinned in test_op_registry.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

_C = lc._lightning_core
f32 = np.float32


# ---- conv_attention_nchw and attention: both forms from one definition ----------------------------

def test_conv_attention_forms(rng):
    x = rng.standard_normal((1, 3, 7, 7)).astype(f32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(f32)
    b = rng.standard_normal(4).astype(f32)
    r = lc.conv_attention_nchw(x, w, b, 11, 5, 1, 1, 1, 1, "cpu", causal=True)
    assert isinstance(r, np.ndarray) and r.shape == (11, 5) and r.dtype == f32
    out = np.full((11, 5), np.nan, f32)
    assert lc.conv_attention_nchw_into(x, w, b, out, 11, 5, 1, 1, 1, 1, "cpu", causal=True) is out
    np.testing.assert_array_equal(out, r)
    # lc.Tensor in -> lc.Tensor out
    t = lc.conv_attention_nchw(lc.Tensor(x), lc.Tensor(w), lc.Tensor(b), 11, 5, 1, 1, 1, 1, "cpu",
                               causal=True)
    assert isinstance(t, lc.Tensor)
    np.testing.assert_array_equal(t.numpy(), r)
    # Bad arguments name the op; a wrong `out` is not written.
    bad = np.full((11, 4), np.nan, f32)
    with pytest.raises(ValueError, match=r"\[conv_attention_nchw\]"):
        lc.conv_attention_nchw_into(x, w, b, bad, 11, 5, device="cpu")
    assert np.isnan(bad).all()
    with pytest.raises(TypeError, match=r"\[conv_attention_nchw_into\]"):
        lc.conv_attention_nchw_into(x, w, b)
    with pytest.raises(ValueError, match="seq_len"):
        lc.conv_attention_nchw(x, w, b, 0, 5, device="cpu")


def test_attention_forms(rng):
    q = rng.standard_normal((2, 3, 5, 4)).astype(f32)
    k = rng.standard_normal((2, 3, 7, 4)).astype(f32)
    v = rng.standard_normal((2, 3, 7, 6)).astype(f32)
    r = lc.attention(q, k, v, device="cpu")
    out = np.full((2, 3, 5, 6), np.nan, f32)
    assert lc.attention_into(q, k, v, out, device="cpu") is out
    np.testing.assert_array_equal(out, r)
    r2, lse = lc.attention(q, k, v, return_lse=True, device="cpu")
    out2 = np.full_like(out, np.nan)
    o2, lse2 = lc.attention_into(q, k, v, out2, return_lse=True, device="cpu")
    assert o2 is out2 and lse.shape == (2, 3, 5) and lse2.shape == (2, 3, 5)
    np.testing.assert_array_equal(out2, r2)
    np.testing.assert_array_equal(lse2, lse)
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) / 2.0
    p = np.exp(s - s.max(-1, keepdims=True))
    ref = np.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdims=True), v.astype(np.float64))
    np.testing.assert_allclose(r, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=r"\[attention_into\]"):
        lc.attention_into(q, k)
    with pytest.raises(TypeError, match=r"\[attention\]"):
        lc.attention(q, k, v, cuasal=True)
