"""The pipelines' graph mode (issue #14): conv_attention_torchstrong_nchw, ffn and layernorm_linear
with execution_mode="graph" run as GraphIRs (the conv -> attention chain built in C++, the other two
through lc.GraphIR in api.py), cached per signature, on the CPU through the executor's DirectGraph
and on a GPU as one captured CUDA graph. Graph == eager == a float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from lightning_core import api

# ---- float64 references ------------------------------------------------------------------------


def gelu64(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def act64(x, activation):
    if activation == "gelu":
        return gelu64(x)
    if activation == "relu":
        return np.maximum(x, 0.0)
    return x


def layernorm64(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if g is not None:
        y = y * g
    if b is not None:
        y = y + b
    return y


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


def ffn64(x, w1, b1, w2, b2, activation):
    x, w1, b1, w2, b2 = map(f64, (x, w1, b1, w2, b2))
    h = x @ w1.T + (0 if b1 is None else b1)
    h = act64(h, activation)
    return h @ w2.T + (0 if b2 is None else b2)


def lnlin64(x, g, b, w, bias, eps, activation):
    x, g, b, w, bias = map(f64, (x, g, b, w, bias))
    y = layernorm64(x, g, b, eps) @ w.T + (0 if bias is None else bias)
    return act64(y, activation)


def conv64(x, w, b, sh, sw, ph, pw):
    x, w = f64(x), f64(w)
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, oc, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    if b is not None:
        y += f64(b)[None, :, None, None]
    return y


def conv_attention64(x, w, b, seq, hd, sh, sw, ph, pw, causal):
    y = np.maximum(conv64(x, w, b, sh, sw, ph, pw), 0.0).reshape(-1)
    s = np.tile(y, -(-seq * hd // y.size))[:seq * hd].reshape(seq, hd)
    sc = s @ s.T / np.sqrt(hd)
    if causal:
        sc = np.where(np.tril(np.ones((seq, seq), bool)), sc, -np.inf)
    p = np.exp(sc - sc.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return p @ s


def r32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- conv -> attention -------------------------------------------------------------------------

# (image c, h, w; out channels; kernel; seq_len, head_dim): conv 1x3x8x8 -> 16 k3 pad 1 gives
# 1024 features: 32x32 is a plain view, 48x8 a truncation, 40x40 a repetition; odd sizes too.
CONV_CASES = [
    ((3, 8, 8), 16, 3, 32, 32),
    ((3, 8, 8), 16, 3, 48, 8),
    ((3, 8, 8), 16, 3, 40, 40),
    ((2, 5, 7), 3, 3, 13, 11),
    ((1, 3, 3), 1, 3, 7, 5),     # 9 features, 35 needed: 4 repetitions, truncated
    ((1, 1, 1), 1, 1, 1, 1),
]


@pytest.mark.parametrize("img,oc,k,seq,hd", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_conv_attention_graph_matches_eager_and_reference(rng, img, oc, k, seq, hd, bias, causal):
    c, h, wd = img
    x = r32(rng, 1, c, h, wd)
    w = r32(rng, oc, c, k, k, scale=0.3)
    b = r32(rng, oc, scale=0.1) if bias else None
    pad = k // 2
    args = (x, w, b, seq, hd, 1, 1, pad, pad, "cpu")
    eager = api.conv_attention_torchstrong_nchw(*args, causal=causal, execution_mode="eager")
    graph = api.conv_attention_torchstrong_nchw(*args, causal=causal, execution_mode="graph")
    again = api.conv_attention_torchstrong_nchw(*args, causal=causal, execution_mode="graph")
    ref = conv_attention64(x, w, b, seq, hd, 1, 1, pad, pad, causal)
    assert isinstance(graph, np.ndarray) and graph.shape == (seq, hd) and graph.dtype == np.float32
    np.testing.assert_allclose(graph, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again, graph)


def test_conv_attention_graph_strided_and_new_inputs(rng):
    """Fresh inputs each call reach the cached graph (host inputs are staged / bound per call);
    a strided input and a stride of 2 work too."""
    w = r32(rng, 6, 3, 3, 3, scale=0.3)
    for rep in range(3):
        big = r32(rng, 1, 3, 9, 18)
        x = big[:, :, :, ::2]  # non-contiguous
        eager = api.conv_attention_torchstrong_nchw(x, w, None, 10, 12, 2, 2, 1, 1, "cpu")
        graph = api.conv_attention_torchstrong_nchw(x, w, None, 10, 12, 2, 2, 1, 1, "cpu",
                                                    execution_mode="graph")
        np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(graph, conv_attention64(x, w, None, 10, 12, 2, 2, 1, 1, False),
                                   rtol=1e-4, atol=1e-5)


def test_conv_attention_graph_out_and_tensor_inputs(rng):
    x, w, b = r32(rng, 1, 3, 6, 6), r32(rng, 4, 3, 3, 3, scale=0.3), r32(rng, 4)
    ref = api.conv_attention_torchstrong_nchw(x, w, b, 12, 12, device="cpu")
    t = api.conv_attention_torchstrong_nchw(lc.Tensor(x), lc.Tensor(w), lc.Tensor(b), 12, 12,
                                            device="cpu", execution_mode="graph")
    assert isinstance(t, lc.Tensor)
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-6)
    out = np.full((12, 12), np.nan, np.float32)
    lc.conv_attention_nchw_into(x, w, b, out, 12, 12, 1, 1, 1, 1, "cpu", graph=True)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_conv_attention_graph_errors(rng):
    x, w = r32(rng, 1, 3, 6, 6), r32(rng, 4, 3, 3, 3)
    with pytest.raises(ValueError, match="conv_attention_torchstrong_nchw.*execution_mode"):
        api.conv_attention_torchstrong_nchw(x, w, None, 4, 4, execution_mode="fast")
    with pytest.raises(ValueError, match="conv_attention_nchw"):
        api.conv_attention_torchstrong_nchw(r32(rng, 2, 3, 6, 6), w, None, 4, 4, device="cpu",
                                            execution_mode="graph")  # two images
    with pytest.raises(ValueError):
        api.conv_attention_torchstrong_nchw(r32(rng, 1, 5, 6, 6), w, None, 4, 4, device="cpu",
                                            execution_mode="graph")  # channel mismatch


# ---- ffn ---------------------------------------------------------------------------------------


def ffn_inputs(rng, lead, d, h, dtype=np.float32, bias=(True, True)):
    x = rng.standard_normal(lead + (d,)).astype(dtype)
    w1 = (rng.standard_normal((h, d)) * d ** -0.5).astype(dtype)
    b1 = (rng.standard_normal(h) * 0.1).astype(dtype) if bias[0] else None
    w2 = (rng.standard_normal((d, h)) * h ** -0.5).astype(dtype)
    b2 = (rng.standard_normal(d) * 0.1).astype(dtype) if bias[1] else None
    return x, w1, b1, w2, b2


@pytest.mark.parametrize("lead,d,h", [((5,), 7, 13), ((2, 3), 16, 37), ((1,), 1, 1), ((31,), 32, 64)])
@pytest.mark.parametrize("activation", ["gelu", "relu", "none"])
@pytest.mark.parametrize("bias", [(True, True), (False, True), (True, False), (False, False)])
def test_ffn_graph_matches_eager_and_reference(rng, lead, d, h, activation, bias):
    x, w1, b1, w2, b2 = ffn_inputs(rng, lead, d, h, bias=bias)
    eager = api.ffn(x, w1, b1, w2, b2, activation, "cpu")
    graph = api.ffn(x, w1, b1, w2, b2, activation, "cpu", execution_mode="graph")
    ref = ffn64(x, w1, b1, w2, b2, activation)
    assert isinstance(graph, np.ndarray) and graph.shape == lead + (d,) and graph.dtype == np.float32
    np.testing.assert_allclose(graph, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-2), ("bfloat16", 3e-2), ("float64", 1e-10)])
def test_ffn_graph_dtypes(rng, dtype, tol):
    import ml_dtypes  # noqa: F401  (numpy's bfloat16)

    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    x, w1, b1, w2, b2 = ffn_inputs(rng, (9,), 12, 20, np_dtype)
    graph = api.ffn(x, w1, b1, w2, b2, device="cpu", execution_mode="graph")
    eager = api.ffn(x, w1, b1, w2, b2, device="cpu")
    assert graph.dtype == np_dtype
    ref = ffn64(x, w1, b1, w2, b2, "gelu")
    np.testing.assert_allclose(f64(graph), ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(f64(graph), f64(eager), rtol=tol, atol=tol)


def test_ffn_graph_cached_per_signature(rng):
    api._pipeline_graphs.clear()
    x, w1, b1, w2, b2 = ffn_inputs(rng, (4,), 8, 16)
    api.ffn(x, w1, b1, w2, b2, device="cpu", execution_mode="graph")
    assert len(api._pipeline_graphs) == 1
    (g,) = api._pipeline_graphs.values()
    for _ in range(3):  # new values, same signature: the same graph, executed again
        x2, w12, b12, w22, b22 = ffn_inputs(rng, (4,), 8, 16)
        y = api.ffn(x2, w12, b12, w22, b22, device="cpu", execution_mode="graph")
        np.testing.assert_allclose(y, ffn64(x2, w12, b12, w22, b22, "gelu"), rtol=1e-4, atol=1e-5)
    assert len(api._pipeline_graphs) == 1 and g.stats()["executions"] == 4
    assert [s["op"] for s in g.plan_summary()["steps"]] == ["linear", "linear"]
    api.ffn(*ffn_inputs(rng, (5,), 8, 16), device="cpu", execution_mode="graph")  # new shape
    api.ffn(x, w1, b1, w2, b2, "relu", "cpu", execution_mode="graph")               # new activation
    api.ffn(x, w1, None, w2, b2, device="cpu", execution_mode="graph")              # no b1
    assert len(api._pipeline_graphs) == 4
    for i in range(api._PIPELINE_GRAPHS_MAX + 3):                                    # bounded
        api.ffn(*ffn_inputs(rng, (i + 1,), 2, 3), device="cpu", execution_mode="graph")
    assert len(api._pipeline_graphs) == api._PIPELINE_GRAPHS_MAX


def test_ffn_graph_inputs_kinds(rng):
    x, w1, b1, w2, b2 = ffn_inputs(rng, (6,), 10, 14)
    ref = api.ffn(x, w1, b1, w2, b2, device="cpu")
    # lc.Tensor in -> lc.Tensor out; non-contiguous numpy; nested lists
    t = api.ffn(lc.Tensor(x), lc.Tensor(w1), lc.Tensor(b1), lc.Tensor(w2), lc.Tensor(b2), device="cpu",
                execution_mode="graph")
    assert isinstance(t, lc.Tensor)
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5, atol=1e-5)
    xs = np.repeat(x, 2, axis=1)[:, ::2]
    assert not xs.flags.c_contiguous
    np.testing.assert_allclose(api.ffn(xs, w1, b1, w2, b2, device="cpu", execution_mode="graph"), ref,
                               rtol=1e-5, atol=1e-5)
    lists = api.ffn(*(a.tolist() for a in (x, w1, b1, w2, b2)), device="cpu", execution_mode="graph")
    assert lists.dtype == np.float64  # numpy's dtype for Python floats, as in eager
    np.testing.assert_allclose(lists, ffn64(x, w1, b1, w2, b2, "gelu"), rtol=1e-10, atol=1e-10)


def test_ffn_graph_zero_rows(rng):
    x, w1, b1, w2, b2 = ffn_inputs(rng, (0,), 6, 10)
    y = api.ffn(x, w1, b1, w2, b2, device="cpu", execution_mode="graph")
    assert y.shape == (0, 6)


def test_ffn_graph_errors(rng):
    x, w1, b1, w2, b2 = ffn_inputs(rng, (4,), 8, 16)
    with pytest.raises(ValueError, match=r"\[ffn\] execution_mode"):
        api.ffn(x, w1, b1, w2, b2, execution_mode="compiled")
    with pytest.raises(ValueError, match="fc1"):  # the node that rejects the shapes
        api.ffn(x, w1[:, :5], b1, w2, b2, device="cpu", execution_mode="graph")
    with pytest.raises(TypeError):
        api.ffn(x, w1.astype(np.float16), b1, w2, b2, device="cpu", execution_mode="graph")
    with pytest.raises(ValueError):
        api.ffn(x, w1, b1, w2, b2, "swish", "cpu", execution_mode="graph")
    with pytest.raises(TypeError, match=r"\[ffn\] policy"):
        api.ffn(x, w1, b1, w2, b2, policy="fast", execution_mode="graph")


# ---- layernorm -> linear -----------------------------------------------------------------------


@pytest.mark.parametrize("lead,d,n", [((5,), 7, 11), ((2, 3), 32, 17), ((1,), 1, 1), ((64,), 48, 96)])
@pytest.mark.parametrize("activation", ["none", "gelu", "relu"])
@pytest.mark.parametrize("affine", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("has_bias", [True, False])
def test_layernorm_linear_graph_matches_eager_and_reference(rng, lead, d, n, activation, affine, has_bias):
    x = r32(rng, *lead, d)
    g = (1 + r32(rng, d, scale=0.1)) if affine[0] else None
    b = r32(rng, d, scale=0.1) if affine[1] else None
    w = r32(rng, n, d, scale=d ** -0.5)
    bias = r32(rng, n, scale=0.1) if has_bias else None
    eager = api.layernorm_linear(x, g, b, w, bias, 1e-5, activation, "cpu")
    graph = api.layernorm_linear(x, g, b, w, bias, 1e-5, activation, "cpu", execution_mode="graph")
    ref = lnlin64(x, g, b, w, bias, 1e-5, activation)
    assert isinstance(graph, np.ndarray) and graph.shape == lead + (n,)
    np.testing.assert_allclose(graph, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-5)


def test_layernorm_linear_graph_eps_and_dtypes(rng):
    import ml_dtypes

    x, g, b, w = r32(rng, 6, 16), 1 + r32(rng, 16, scale=0.1), r32(rng, 16), r32(rng, 8, 16, scale=0.25)
    y1 = api.layernorm_linear(x, g, b, w, eps=1e-5, device="cpu", execution_mode="graph")
    y2 = api.layernorm_linear(x, g, b, w, eps=np.float32(0.5), device="cpu", execution_mode="graph")  # own graph
    np.testing.assert_allclose(y2, lnlin64(x, g, b, w, None, 0.5, "none"), rtol=1e-4, atol=1e-5)
    assert not np.allclose(y1, y2)
    for dt, tol in ((np.float16, 2e-2), (ml_dtypes.bfloat16, 4e-2)):
        args = [a.astype(dt) for a in (x, g, b, w)]
        y = api.layernorm_linear(*args, device="cpu", execution_mode="graph")
        assert y.dtype == np.dtype(dt)
        np.testing.assert_allclose(f64(y), lnlin64(*args, None, 1e-5, "none"), rtol=tol, atol=tol)
    with pytest.raises(TypeError, match=r"\[layernorm_linear\] eps"):
        api.layernorm_linear(x, g, b, w, eps="small", device="cpu", execution_mode="graph")
    with pytest.raises(ValueError, match=r"\[layernorm_linear\] execution_mode"):
        api.layernorm_linear(x, g, b, w, execution_mode="")
    with pytest.raises(ValueError, match="proj"):
        api.layernorm_linear(x, g, b, r32(rng, 8, 15), device="cpu", execution_mode="graph")


# ---- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("img,oc,k,seq,hd", CONV_CASES[:5])
def test_gpu_conv_attention_graph(rng, img, oc, k, seq, hd):
    c, h, wd = img
    w, b = r32(rng, oc, c, k, k, scale=0.3), r32(rng, oc, scale=0.1)
    for _ in range(3):  # the first call runs eagerly, then records, then replays
        x = r32(rng, 1, c, h, wd)
        args = (x, w, b, seq, hd, 1, 1, k // 2, k // 2, "cuda")
        eager = api.conv_attention_torchstrong_nchw(*args)
        graph = api.conv_attention_torchstrong_nchw(*args, execution_mode="graph")
        np.testing.assert_allclose(graph, eager, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(graph, conv_attention64(x, w, b, seq, hd, 1, 1, k // 2, k // 2, False),
                                   rtol=1e-4, atol=1e-4)
    # resident inputs: the result stays on the device
    t = api.conv_attention_torchstrong_nchw(lc.Tensor(x).to("cuda"), lc.Tensor(w).to("cuda"),
                                            lc.Tensor(b).to("cuda"), seq, hd, 1, 1, k // 2, k // 2,
                                            "cuda", execution_mode="graph")
    assert t.device.startswith("cuda")
    np.testing.assert_allclose(t.numpy(), eager, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float16", 2e-2)])
def test_gpu_ffn_and_layernorm_linear_graph(rng, dtype, tol):
    api._pipeline_graphs.clear()
    pol = lc.ExecutionPolicy(device="cuda", precision="fp32")
    for _ in range(3):
        x, w1, b1, w2, b2 = ffn_inputs(rng, (257,), 64, 256, np.dtype(dtype))
        g = api.ffn(x, w1, b1, w2, b2, policy=pol, execution_mode="graph")
        e = api.ffn(x, w1, b1, w2, b2, policy=pol)
        np.testing.assert_allclose(f64(g), f64(e), rtol=tol, atol=tol)
        np.testing.assert_allclose(f64(g), ffn64(x, w1, b1, w2, b2, "gelu"), rtol=tol, atol=tol)
        gam, bet, w = 1 + 0.1 * x[0], 0.1 * x[1], w1
        y = api.layernorm_linear(x, gam, bet, w, b1, device="cuda", execution_mode="graph")
        np.testing.assert_allclose(f64(y), lnlin64(x, gam, bet, w, b1, 1e-5, "none"), rtol=tol, atol=tol)
    graphs = list(api._pipeline_graphs.values())
    assert len(graphs) == 2
    for gr in graphs:
        assert gr.plan_summary()["captured"]
        assert gr.stats()["replays"] >= 2


def test_signature_keys_kind_dtype_and_shape():
    """The pipelines' cache key (lc._signature): equal for arguments of the same kind, dtype and
    shape; different when any of them differs; None is its own item; other types are refused."""
    sig = lc._lightning_core._signature
    a = np.zeros((3, 5), np.float32)
    t = lc.Tensor(a)
    assert sig([a, None, t]) == sig((np.ones((3, 5), np.float32), None, lc.Tensor(a + 1)))
    others = [[a.astype(np.float64), None, t], [a, None, lc.Tensor(a, dtype="float16")],
              [np.zeros((5, 3), np.float32), None, t], [a, t, None], [t, None, a],
              [a, None, lc.Tensor(np.zeros((15,), np.float32))], [a, None], [a[None], None, t]]
    for o in others:
        assert sig(o) != sig([a, None, t]), o
    assert sig([]) == b""
    with pytest.raises(TypeError, match="item 1"):
        sig([a, 3.0])
