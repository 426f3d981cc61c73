"""A transformer encoder layer written with lc ops (the Core v2 pieces together: linear over
[B, S, E], reshape/permute/index views, batched matmul, softmax and layernorm over the last
dimension, the residual in the linear epilogue) against a float64 numpy reference, in float32
and bfloat16. On the GPU the whole layer stays on the device: the trace of the layer holds no
upload or download event, only CUDA ops (#12, "a transformer layer's data movement")."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

ml_dtypes = pytest.importorskip("ml_dtypes")

B, S, E, H, F = 2, 13, 32, 4, 64  # odd sequence length; D = 8


def make_params(rng):
    def w(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "wqkv": w(3 * E, E, scale=E ** -0.5), "bqkv": w(3 * E, scale=0.1),
        "wo": w(E, E, scale=E ** -0.5), "bo": w(E, scale=0.1),
        "g1": 1 + w(E, scale=0.1), "b1": w(E, scale=0.1),
        "w1": w(F, E, scale=E ** -0.5), "c1": w(F, scale=0.1),
        "w2": w(E, F, scale=F ** -0.5), "c2": w(E, scale=0.1),
        "g2": 1 + w(E, scale=0.1), "b2": w(E, scale=0.1),
    }


def layer_lc(x, p):
    b, s, e = x.shape
    d = e // H
    qkv = lc.linear(x, p["wqkv"], p["bqkv"])                       # [B, S, 3E]
    qkv = qkv.reshape(b, s, 3, H, d).permute(2, 0, 3, 1, 4)         # [3, B, H, S, D] view
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = lc.vector_scale(lc.matmul(q, k.transpose(-2, -1)), 1.0 / np.sqrt(d))
    o = lc.matmul(lc.softmax(scores), v)                             # [B, H, S, D]
    o = o.permute(0, 2, 1, 3).reshape(b, s, e)                       # a copy on the device
    h = lc.layernorm(lc.linear(o, p["wo"], p["bo"], residual=x), p["g1"], p["b1"])
    f = lc.linear(h, p["w1"], p["c1"], "gelu")
    return lc.layernorm(lc.linear(f, p["w2"], p["c2"], residual=h), p["g2"], p["b2"])


def _ln(x, g, b, eps=1e-5):
    m = x.mean(-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + eps) * g + b


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def layer_ref(x, p):
    p = {k: v.astype(np.float64) for k, v in p.items()}
    x = x.astype(np.float64)
    b, s, e = x.shape
    d = e // H
    qkv = (x @ p["wqkv"].T + p["bqkv"]).reshape(b, s, 3, H, d).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv
    sc = q @ k.swapaxes(-1, -2) / np.sqrt(d)
    sc = np.exp(sc - sc.max(-1, keepdims=True))
    o = (sc / sc.sum(-1, keepdims=True)) @ v
    o = o.transpose(0, 2, 1, 3).reshape(b, s, e)
    h = _ln(o @ p["wo"].T + p["bo"] + x, p["g1"], p["b1"])
    f = _gelu_tanh(h @ p["w1"].T + p["c1"])
    return _ln(f @ p["w2"].T + p["c2"] + h, p["g2"], p["b2"])


def _cast(a, dtype):
    return a if dtype == "float32" else a.astype(ml_dtypes.bfloat16)


TOL = {"float32": 2e-4, "bfloat16": 6e-2}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_encoder_layer_on_the_cpu(dtype, rng):
    p = make_params(rng)
    x = rng.standard_normal((B, S, E)).astype(np.float32)
    # lc.Tensor inputs (host memory): results are lc.Tensors, so the views (reshape, permute,
    # indexing) apply between the ops as they do on the GPU.
    with lc.policy(device="cpu"):
        y = layer_lc(lc.Tensor(_cast(x, dtype), dtype=dtype),
                     {k: lc.Tensor(_cast(v, dtype), dtype=dtype) for k, v in p.items()})
    assert isinstance(y, lc.Tensor) and y.device == "cpu" and y.dtype == dtype
    y = y.numpy().astype(np.float64)
    ref = layer_ref(_cast(x, dtype).astype(np.float32), {k: _cast(v, dtype).astype(np.float32) for k, v in p.items()})
    assert y.shape == (B, S, E)
    np.testing.assert_allclose(y, ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_encoder_layer_stays_on_the_gpu(dtype, rng):
    p = make_params(rng)
    x = rng.standard_normal((B, S, E)).astype(np.float32)
    dx = lc.Tensor(_cast(x, dtype), device="cuda", dtype=dtype)
    dp = {k: lc.Tensor(_cast(v, dtype), device="cuda", dtype=dtype) for k, v in p.items()}
    layer_lc(dx, dp)  # first call: plans, tuning
    lc.synchronize()
    with lc.runtime_trace():
        y = layer_lc(dx, dp)
        lc.synchronize()
    ev = lc.runtime_trace_events()
    assert isinstance(y, lc.Tensor) and y.device == "cuda" and y.dtype == dtype
    moves = [e for e in ev if e["kind"] in ("upload", "download")]
    assert moves == [], f"host round trips inside the layer: {moves}"
    ops = [e for e in ev if e["kind"] == "op"]
    assert len(ops) >= 10 and all(e["device"] == "cuda" for e in ops)
    ref = layer_ref(_cast(x, dtype).astype(np.float32), {k: _cast(v, dtype).astype(np.float32) for k, v in p.items()})
    np.testing.assert_allclose(y.numpy().astype(np.float64), ref, rtol=TOL[dtype], atol=TOL[dtype])
