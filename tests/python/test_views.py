"""Views on any device (Tensor.reshape / view / permute / transpose / basic indexing) against
numpy on random shapes and keys, linear over [..., in], layernorm/softmax over leading
dimensions, and the repr that shows small tensors' values."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

from conftest import backends


def rand_shape(rng, ndim):
    return tuple(int(v) for v in rng.choice([1, 2, 3, 5, 7], size=ndim))


def rand_key(rng, shape):
    """A random basic-indexing key: ints, slices (any step sign), None and at most one '...'."""
    key = []
    d = 0
    use_ellipsis = rng.random() < 0.3
    while d < len(shape):
        r = rng.random()
        n = shape[d]
        if use_ellipsis and rng.random() < 0.3:
            key.append(Ellipsis)
            use_ellipsis = False
            d = len(shape)  # the ellipsis takes the rest here; later entries index from the end
            break
        if r < 0.25:
            key.append(int(rng.integers(-n, n)))
        elif r < 0.35:
            key.append(None)
            continue
        else:
            start = rng.choice([None, int(rng.integers(-n - 2, n + 2))])
            stop = rng.choice([None, int(rng.integers(-n - 2, n + 2))])
            step = rng.choice([None, 1, 2, 3, -1, -2])
            key.append(slice(start, stop, step))
        d += 1
        if rng.random() < 0.2:
            break
    return tuple(key)


def test_basic_indexing_matches_numpy(rng):
    for _ in range(400):
        shape = rand_shape(rng, int(rng.integers(1, 5)))
        a = rng.standard_normal(shape).astype(np.float32)
        t = lc.Tensor(a)
        key = rand_key(rng, shape)
        expect = a[key]
        if expect.ndim > 8:  # numpy allows 64 dimensions, lightning_core 8: a clear ValueError
            with pytest.raises(ValueError, match=r"^\[Tensor.__getitem__\] the result would have"):
                t[key]
            continue
        v = t[key]
        assert v.shape == expect.shape, (shape, key)
        np.testing.assert_array_equal(v.numpy(), expect)
        # a view: writing through numpy's view of it lands in the base
        if expect.size:
            np.asarray(v)[...] = 7
            assert np.all(t.numpy()[key] == 7)


def test_nones_before_integers_never_pass_through_more_than_8_dims():
    """Found by the random test (seed 3025311575): five Nones before an integer index on a 4-D
    tensor give an 8-D result, but indexing left to right went through 9 dimensions."""
    a = np.arange(3 * 1 * 7 * 2, dtype=np.float32).reshape(3, 1, 7, 2)
    key = (None, slice(2, 0, 2), slice(None, None, 2), None, None, slice(6, -4, 3), None, None, 1)
    assert lc.Tensor(a)[key].shape == a[key].shape == (1, 0, 1, 1, 1, 0, 1, 1)
    b = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    for key in [(None, None, None, None, 1, 2), (None, 1, None, None, None, None, Ellipsis, 3),
                (Ellipsis, None, None, None, None, 0, 0)]:
        v = lc.Tensor(b)[key]
        assert v.shape == b[key].shape, key
        np.testing.assert_array_equal(v.numpy(), b[key])


def test_reshape_permute_transpose_match_numpy(rng):
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    t = lc.Tensor(a)
    np.testing.assert_array_equal(t.reshape(6, -1).numpy(), a.reshape(6, -1))
    np.testing.assert_array_equal(t.reshape((4, 30)).numpy(), a.reshape(4, 30))
    np.testing.assert_array_equal(t.permute(3, 1, 0, 2).numpy(), a.transpose(3, 1, 0, 2))
    np.testing.assert_array_equal(t.transpose(0, -1).numpy(), a.swapaxes(0, -1))
    # reshape of a non-contiguous view copies; view refuses
    p = t.permute(0, 2, 1, 3)
    np.testing.assert_array_equal(p.reshape(-1, 5).numpy(), a.transpose(0, 2, 1, 3).reshape(-1, 5))
    with pytest.raises(ValueError, match=r"^\[Tensor.view\] .*not contiguous"):
        p.view(-1)
    v = t.view(120)
    assert np.shares_memory(np.asarray(v), np.asarray(t))
    for bad in [(7, -1), (-1, -1), (121,)]:
        with pytest.raises(ValueError, match=r"^\[Tensor.reshape\]"):
            t.reshape(*bad)
    with pytest.raises(ValueError, match=r"^\[Tensor.permute\]"):
        t.permute(0, 0, 1, 2)
    with pytest.raises(ValueError, match=r"^\[Tensor.__getitem__\]"):
        t[0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"out of range"):
        t[2]
    with pytest.raises(TypeError, match=r"^\[Tensor.__getitem__\] index items must be"):
        t[0, "a"]  # one index array gathers (test_advanced_indexing.py); other objects raise
    with pytest.raises(ValueError, match="step cannot be zero"):
        t[::0]
    z = t[:, 3:1]  # empty
    assert z.shape == (2, 0, 4, 5) and z.numpy().size == 0


@pytest.mark.parametrize("device", backends)
def test_views_feed_ops(device, rng):
    a = rng.standard_normal((4, 6, 8)).astype(np.float32)
    t = lc.Tensor(a, device=device)
    sub = t[1:3, ::2].permute(1, 0, 2)  # [3, 2, 8], strided
    np.testing.assert_allclose(lc.softmax(sub, device).numpy() if device == "cuda" else
                               lc.softmax(sub, device), softmax_ref(a[1:3, ::2].transpose(1, 0, 2)),
                               rtol=1e-5, atol=1e-6)
    if device == "cuda":
        c = sub.contiguous()
        np.testing.assert_array_equal(c.numpy(), a[1:3, ::2].transpose(1, 0, 2))


def softmax_ref(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 5, 7), (2, 1, 3, 7)])
def test_linear_over_leading_dims(device, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((11, 7)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    y = lc.linear(x, w, b, "relu", device)
    ref = np.maximum(x.astype(np.float64) @ w.T + b, 0)
    assert y.shape == shape[:-1] + (11,)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    out = np.full(shape[:-1] + (11,), np.nan, np.float32)
    lc.linear_into(x, w, b, out, "relu", device)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"^\[linear\] 'out' has shape"):
        lc.linear_into(x, w, b, np.empty(shape[:-1] + (12,), np.float32), "relu", device)


@pytest.mark.parametrize("device", backends)
def test_layernorm_softmax_over_leading_dims(device, rng):
    x = rng.standard_normal((2, 3, 4, 9)).astype(np.float32)
    g = rng.standard_normal(9).astype(np.float32)
    xd = x.astype(np.float64)
    ln = (xd - xd.mean(-1, keepdims=True)) / np.sqrt(xd.var(-1, keepdims=True) + 1e-5) * g
    np.testing.assert_allclose(lc.layernorm(x, g, None, 1e-5, device), ln, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lc.softmax(x, device), softmax_ref(x), rtol=1e-5, atol=1e-6)


def test_repr_shows_small_tensors():
    t = lc.Tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    r = repr(t)
    assert r.startswith("lightning_core.Tensor([[0., 1., 2.],") and 'dtype=float32, device="cpu"' in r
    big = repr(lc.Tensor(np.zeros(1000, np.float32)))
    assert big == 'lightning_core.Tensor(shape=[1000], dtype=float32, device="cpu")'
    assert "strided" in repr(t.t())
