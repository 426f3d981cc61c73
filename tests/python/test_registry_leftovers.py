"""The facts issue #12 wanted written once, checked from Python:

* conv2d_nchw and conv -> attention dispatch their convolution through one function (same tuned
  path, same results);
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


# ---- one conv dispatch --------------------------------------------------------------------------

@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_CORE_CACHE_DIR", str(tmp_path / "lc-cache"))
    monkeypatch.delenv("LC_AUTOTUNE", raising=False)
    _C._autotune_reload()
    yield tmp_path
    _C._autotune_reload()


def _conv_entries():
    return [e for e in lc.autotune_cache_entries() if e["op"] == "conv2d_nchw.cpu_path"]


@pytest.mark.parametrize("c, oc, hw, pad", [(3, 5, 11, 1), (1, 1, 3, 0), (7, 4, 13, 2)])
def test_conv2d_and_conv_attention_share_one_dispatch(cache_dir, rng, c, oc, hw, pad):
    x = rng.standard_normal((1, c, hw, hw)).astype(f32)
    w = rng.standard_normal((oc, c, 3, 3)).astype(f32)
    b = rng.standard_normal(oc).astype(f32)
    before = lc.autotune_measurement_count()
    conv = lc.conv2d_nchw(x, w, b, 1, 1, pad, pad, "cpu", activation="relu")
    # conv2d_nchw tunes its path like conv -> attention always did: one measurement per shape,
    # persisted under the same key ...
    assert lc.autotune_measurement_count() == before + 1
    (entry,) = _conv_entries()
    assert entry["choice"] in ("direct", "im2col")
    # ... which conv -> attention then reads: no second measurement, the same path.
    oh = conv.shape[2]
    seq, head = oc, oh * oh
    fused = lc.conv_attention_nchw(x, w, b, seq, head, 1, 1, pad, pad, "cpu")
    assert lc.autotune_measurement_count() == before + 1
    assert len(_conv_entries()) == 1
    # Same conv, same attention kernel: the chain equals the ops run one by one, bit for bit.
    s = np.ascontiguousarray(conv.reshape(seq, head))
    np.testing.assert_array_equal(fused, lc.attention2d(s, s, s, device="cpu"))
    # And both against a float64 reference of the convolution.
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = np.zeros((1, oc, oh, oh))
    for i in range(3):
        for j in range(3):
            ref += np.einsum("nchw,oc->nohw", xp[:, :, i:i + oh, j:j + oh], w[:, :, i, j].astype(np.float64))
    ref = np.maximum(ref + b.astype(np.float64)[None, :, None, None], 0)
    np.testing.assert_allclose(conv, ref, rtol=1e-4, atol=1e-4)


def test_conv2d_without_autotune_measures_nothing(cache_dir, rng):
    x = rng.standard_normal((1, 2, 9, 9)).astype(f32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(f32)
    before = lc.autotune_measurement_count()
    pol = lc.ExecutionPolicy(device="cpu", autotune=False)
    a = lc.conv2d_nchw(x, w, None, policy=pol)
    assert lc.autotune_measurement_count() == before and not _conv_entries()
    # The tuned path computes the same convolution.
    np.testing.assert_allclose(lc.conv2d_nchw(x, w, None, device="cpu"), a, rtol=1e-5, atol=1e-5)
