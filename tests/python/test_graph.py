"""lc.GraphIR and the tracer (lc.compile / lc.graph.trace), issue #14: validation passes that name
the node, fusion rules (fused == unfused == float64 reference), liveness buffer reuse, execution
in graph and eager modes, bad inputs, and a MiniLM-like encoder block built by hand and traced."""

from __future__ import annotations

import time

import numpy as np
import pytest

import lightning_core as lc

# ---- float64 references ------------------------------------------------------------------------


def gelu64(x):
    x = np.asarray(x, np.float64)
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def layernorm64(x, g=None, b=None, eps=1e-5):
    x = np.asarray(x, np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if g is not None:
        y = y * g
    if b is not None:
        y = y + b
    return y


def softmax64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def f64(a):
    return np.asarray(a, np.float64)


# ---- a MiniLM-like encoder block ---------------------------------------------------------------
# x [S, D] -> q, k, v = linear(x) (+ bias) -> softmax(q k^T / sqrt(D)) v -> linear(Wo) + bo + x
# -> layernorm(g1, b1) -> linear(W1) + b1 -> gelu -> linear(W2) + b2 + h -> layernorm(g2, b2).


def make_weights(rng, d, f, dtype=np.float32):
    def r(*s, scale=1.0):
        return (rng.standard_normal(s) * scale).astype(dtype)

    return {
        "wq": r(d, d, scale=d ** -0.5), "bq": r(d, scale=0.1),
        "wk": r(d, d, scale=d ** -0.5), "bk": r(d, scale=0.1),
        "wv": r(d, d, scale=d ** -0.5), "bv": r(d, scale=0.1),
        "wo": r(d, d, scale=d ** -0.5), "bo": r(d, scale=0.1),
        "g1": (1 + r(d, scale=0.1)), "be1": r(d, scale=0.1),
        "w1": r(f, d, scale=d ** -0.5), "b1": r(f, scale=0.1),
        "w2": r(d, f, scale=f ** -0.5), "b2": r(d, scale=0.1),
        "g2": (1 + r(d, scale=0.1)), "be2": r(d, scale=0.1),
    }


def block_reference(x, W):
    x = f64(x)
    W = {k: f64(v) for k, v in W.items()}
    q, k, v = (x @ W["w" + n].T + W["b" + n] for n in "qkv")
    a = softmax64(q @ k.T / np.sqrt(x.shape[-1])) @ v
    h = layernorm64(a @ W["wo"].T + W["bo"] + x, W["g1"], W["be1"])
    f = gelu64(h @ W["w1"].T + W["b1"])
    return layernorm64(f @ W["w2"].T + W["b2"] + h, W["g2"], W["be2"])


def block_lc(x, W):
    """The block written with lc ops the plain way: unfused adds, a separate gelu, layernorm
    affine as mul + add (so every fusion rule has something to do)."""
    q = lc.add(lc.linear(x, W["wq"]), W["bq"])
    k = lc.add(lc.linear(x, W["wk"]), W["bk"])
    v = lc.add(lc.linear(x, W["wv"]), W["bv"])
    a = lc.attention(q, k, v)
    o = lc.add(lc.add(lc.linear(a, W["wo"]), W["bo"]), x)
    h = lc.add(lc.mul(lc.layernorm(o), W["g1"]), W["be1"])
    f = lc.gelu(lc.add(lc.linear(h, W["w1"]), W["b1"]))
    y = lc.add(lc.add(lc.linear(f, W["w2"]), W["b2"]), h)
    return lc.add(lc.mul(lc.layernorm(y), W["g2"]), W["be2"])


def block_graph(W, s, d, dtype="float32"):
    """The same block built by hand as a GraphIR."""
    g = lc.GraphIR()
    g.add_tensor((s, d), dtype, "x")
    for name, val in W.items():
        g.add_tensor(val.shape, dtype, name, constant=True, value=val)
    g.add_node("linear", ["x", "wq"], ["q0"], name="q_proj")
    g.add_node("add", ["q0", "bq"], ["q"], name="q_bias")
    g.add_node("linear", ["x", "wk"], ["k0"], name="k_proj")
    g.add_node("add", ["k0", "bk"], ["k"], name="k_bias")
    g.add_node("linear", ["x", "wv"], ["v0"], name="v_proj")
    g.add_node("add", ["v0", "bv"], ["v"], name="v_bias")
    g.add_node("attention", ["q", "k", "v"], ["a"], name="attn")
    g.add_node("linear", ["a", "wo"], ["o0"], name="o_proj")
    g.add_node("add", ["o0", "bo"], ["o1"], name="o_bias")
    g.add_node("add", ["o1", "x"], ["o"], name="o_residual")
    g.add_node("layernorm", ["o"], ["n1"], name="ln1")
    g.add_node("mul", ["n1", "g1"], ["n1g"], name="ln1_gamma")
    g.add_node("add", ["n1g", "be1"], ["h"], name="ln1_beta")
    g.add_node("linear", ["h", "w1"], ["f0"], name="ffn1")
    g.add_node("add", ["f0", "b1"], ["f1"], name="ffn1_bias")
    g.add_node("gelu", ["f1"], ["f"], name="ffn_act")
    g.add_node("linear", ["f", "w2"], ["y0"], name="ffn2")
    g.add_node("add", ["y0", "b2"], ["y1"], name="ffn2_bias")
    g.add_node("add", ["y1", "h"], ["y"], name="ffn2_residual")
    g.add_node("layernorm", ["y"], ["n2"], name="ln2")
    g.add_node("mul", ["n2", "g2"], ["n2g"], name="ln2_gamma")
    g.add_node("add", ["n2g", "be2"], ["out"], name="ln2_beta")
    return g


SIZES = [(1, 8, 16), (7, 12, 29), (13, 32, 64)]  # (seq, d_model, d_ffn): size 1 and odd sizes


@pytest.mark.parametrize("s,d,f", SIZES)
@pytest.mark.parametrize("fusion", [True, False])
def test_hand_built_encoder_block(rng, s, d, f, fusion):
    W = make_weights(rng, d, f)
    x = rng.standard_normal((s, d)).astype(np.float32)
    g = block_graph(W, s, d)
    assert g.validate_report() == []
    summary = g.plan("cpu", fusion=fusion)
    ref = block_reference(x, W)
    eager = block_lc(x, W)
    for mode in ("graph", "eager"):
        out = g.execute({"x": x}, execution_mode=mode)["out"]
        assert out.dtype == np.float32 and out.shape == (s, d)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out, eager, rtol=1e-5, atol=1e-5)
    n_nodes = len(g)
    if fusion:
        applied = {(r["rule"], r["nodes"][1]) for r in summary["fusions"] if r["applied"]}
        for node in ("q_bias", "k_bias", "v_bias", "o_bias", "ffn1_bias", "ffn_act", "ffn2_bias"):
            assert ("linear_epilogue", node) in applied, summary["text"]
        for node in ("o_residual", "ffn2_residual"):
            assert ("residual_epilogue", node) in applied, summary["text"]
        for node in ("ln1_gamma", "ln1_beta", "ln2_gamma", "ln2_beta"):
            assert ("layernorm_affine", node) in applied, summary["text"]
        qkv = [r for r in summary["fusions"] if r["rule"] == "qkv_projection"]
        assert len(qkv) == 1 and qkv[0]["applied"] and qkv[0]["nodes"] == ["q_proj", "k_proj", "v_proj"]
        assert len(summary["steps"]) == n_nodes - 15
    else:
        assert len(summary["steps"]) == n_nodes
        assert all(not r["applied"] for r in summary["fusions"])
    # Liveness: the arena is smaller than one buffer per intermediate.
    assert 0 < summary["peak_bytes"] < summary["naive_bytes"]


def test_hand_built_block_float64(rng):
    s, d, f = 5, 8, 24
    W = make_weights(rng, d, f, np.float64)
    x = rng.standard_normal((s, d))
    g = block_graph(W, s, d, "float64")
    out = g.execute({"x": x})["out"]
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, block_reference(x, W), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [("float16", 3e-2), ("bfloat16", 8e-2)])
def test_hand_built_block_16bit(rng, dtype, tol):
    ml = pytest.importorskip("ml_dtypes") if dtype == "bfloat16" else None
    npdt = ml.bfloat16 if ml else np.float16
    s, d, f = 6, 16, 32
    W64 = make_weights(rng, d, f, np.float64)
    W = {k: v.astype(npdt) for k, v in W64.items()}
    x = rng.standard_normal((s, d)).astype(npdt)
    g = block_graph(W, s, d, dtype)
    out = g.execute({"x": x})["out"]
    assert out.dtype == npdt
    ref = block_reference(x, {k: f64(v) for k, v in W.items()})
    np.testing.assert_allclose(f64(out), ref, rtol=tol, atol=tol)
    g.plan("cpu", fusion=False)
    np.testing.assert_allclose(f64(g.execute({"x": x})["out"]), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("s,d,f", SIZES)
def test_traced_encoder_block(rng, s, d, f):
    W = make_weights(rng, d, f)
    x = rng.standard_normal((s, d)).astype(np.float32)
    block = lc.compile(lambda t: block_lc(t, W))
    out = block(x)
    np.testing.assert_allclose(out, block_reference(x, W), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out, block_lc(x, W), rtol=1e-5, atol=1e-5)
    text = block.explain()
    assert "linear_epilogue applied" in text and "residual_epilogue applied" in text
    assert "layernorm_affine applied" in text and "on cpu" in text
    # Unfused trace agrees too; eager mode calls the function itself.
    unfused = lc.compile(lambda t: block_lc(t, W), fusion=False)
    np.testing.assert_allclose(unfused(x), out, rtol=1e-5, atol=1e-5)
    eager = lc.compile(lambda t: block_lc(t, W), execution_mode="eager")
    np.testing.assert_array_equal(eager(x), block_lc(x, W))
    # The traced graph is the hand-built one, step for step.
    g = block.graph(x)
    hand = block_graph(W, s, d)
    hand.plan()
    assert [st["op"] for st in g.plan_summary()["steps"]] == [st["op"] for st in hand.plan_summary()["steps"]]


def test_trace_operators_and_non_contiguous_input(rng):
    w = rng.standard_normal((9, 5)).astype(np.float32)
    c = rng.standard_normal(9).astype(np.float32)

    def fn(x, y):
        h = lc.relu(x @ w.T.copy())  # matmul with a constant b: folded into a linear epilogue
        return (h + c) * 0.5 - y, -h / 4.0

    xs = rng.standard_normal((5, 7)).astype(np.float32).T  # a transposed (strided) view
    y = rng.standard_normal((7, 9)).astype(np.float32)
    cf = lc.compile(fn)
    a, b = cf(xs, y)
    h = np.maximum(f64(xs) @ f64(w).T, 0)
    np.testing.assert_allclose(a, (h + c) * 0.5 - y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, -h / 4.0, rtol=1e-5, atol=1e-5)
    report = cf.graph(xs, y).fusion_report()
    assert any(r["rule"] == "linear_epilogue" and r["applied"] for r in report), report
    # vector_scale(0.5) feeds sub, -h / 4 is two scalings folded into one.
    assert any(r["rule"] == "scale_chain" and r["applied"] for r in report), report


def test_retrace_on_new_shapes_and_bounded_cache(rng):
    w = rng.standard_normal((6, 4)).astype(np.float32)
    cf = lc.compile(lambda x: lc.linear(x, w, None, "relu"), cache_size=2)
    for rows in (1, 3, 5, 3, 1):
        x = rng.standard_normal((rows, 4)).astype(np.float32)
        np.testing.assert_allclose(cf(x), np.maximum(f64(x) @ f64(w).T, 0), rtol=1e-5, atol=1e-5)
    assert cf.traces == 4  # 1, 3, 5 traced; 3 hit; 1 was dropped (cache of 2) and traced again
    x64 = rng.standard_normal((3, 4))
    with pytest.raises(TypeError, match="float64"):  # the closed-over weight is float32
        cf(x64)


def test_compile_as_decorator_and_dict_results(rng):
    @lc.compile(fusion={"linear_epilogue": False})
    def fn(x):
        return {"r": lc.relu(x), "s": lc.softmax(x)}

    x = rng.standard_normal((3, 11)).astype(np.float32)
    twice = lc.compile(lambda t: (lc.relu(t),) * 2)(x)
    np.testing.assert_array_equal(twice[0], twice[1])
    out = fn(x)
    np.testing.assert_allclose(out["r"], np.maximum(x, 0))
    np.testing.assert_allclose(out["s"], softmax64(x), rtol=1e-5, atol=1e-6)
    assert "fn" in fn.explain()


def test_lc_tensor_inputs_give_lc_tensor_results(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_node("relu", ["x"], ["y"])
    out = g.execute({"x": lc.Tensor(x)})["y"]
    assert isinstance(out, lc.Tensor)
    np.testing.assert_array_equal(out.numpy(), np.maximum(x, 0))


def test_normal_op_path_is_untouched_after_trace(rng):
    before = lc.linear
    lc.graph.trace(lambda x: lc.relu(x), np.zeros((2, 2), np.float32))
    assert lc.linear is before
    assert type(lc.linear).__name__ == "nb_func"


def test_trace_of_100_nodes_is_fast(rng):
    x = rng.standard_normal((8, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16)).astype(np.float32)

    def fn(t):
        for _ in range(25):  # 4 nodes a round: 100 nodes
            t = lc.layernorm(lc.add(lc.gelu(lc.linear(t, w)), t))
        return t

    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        g = lc.graph.trace(fn, x)
        best = min(best, time.perf_counter() - t0)
    assert len(g) == 100
    # Issue #14 asks <= 50 ms; the bound here leaves room for a loaded CI machine.
    assert best < 0.25, f"tracing + planning 100 nodes took {best * 1e3:.1f} ms"
    np.testing.assert_allclose(g.execute({"arg0": x})["t100"] if "t100" in g.outputs else
                               g.execute({"arg0": x})[g.outputs[0]], fn(x), rtol=1e-4, atol=1e-4)


# ---- fusion rules: each switch, fused == unfused == reference ----------------------------------


def run_both(g, inputs, rule):
    g.plan("cpu", fusion=True)
    fused = g.execute(inputs)
    rep = g.fusion_report()
    # off: the rule under test, and elementwise_chain, which would otherwise fold the plain
    # elementwise nodes the rule left into one elementwise_program (test_ew_program.py tests it)
    g.plan("cpu", fusion={rule: False, "elementwise_chain": False})
    off = g.execute(inputs)
    rep_off = [r for r in g.fusion_report() if r["rule"] != "elementwise_chain"]
    return fused, off, rep, rep_off


def test_rule_linear_epilogue_from_matmul(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    w = rng.standard_normal((7, 3)).astype(np.float32)  # matmul layout [k, n]
    b = rng.standard_normal(3).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_tensor(b.shape, "float32", "b", True, value=b)
    g.add_node("matmul2d", ["x", "w"], ["p"], name="mm")
    g.add_node("add", ["b", "p"], ["pb"], name="bias")
    g.add_node("gelu", ["pb"], ["y"], name="act")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "linear_epilogue")
    ref = gelu64(f64(x) @ f64(w) + b)
    np.testing.assert_allclose(fused["y"], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(off["y"], ref, rtol=1e-5, atol=1e-5)
    assert [r["applied"] for r in rep] == [True, True]
    assert rep_off and all(not r["applied"] and r["reason"] == "switched off" for r in rep_off)


def test_rule_linear_epilogue_not_applied_reasons(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_node("linear", ["x", "w"], ["h"], name="fc")
    g.add_node("gelu", ["h"], ["y"], {"approximate": "none"}, name="exact")
    g.plan("cpu")
    rep = g.fusion_report()
    assert len(rep) == 1 and not rep[0]["applied"] and "erf" in rep[0]["reason"]
    ref = f64(x) @ f64(w).T
    from math import erf
    ref = 0.5 * ref * (1 + np.vectorize(erf)(ref / np.sqrt(2)))
    np.testing.assert_allclose(g.execute({"x": x})["y"], ref, rtol=1e-5, atol=1e-5)
    # A result read twice is not folded.
    g2 = lc.GraphIR()
    g2.add_tensor(x.shape, "float32", "x")
    g2.add_tensor(w.shape, "float32", "w", True, value=w)
    g2.add_node("linear", ["x", "w"], ["h"], name="fc")
    g2.add_node("relu", ["h"], ["r"], name="act")
    g2.add_node("add", ["h", "r"], ["y"], name="sum")
    g2.plan("cpu")
    rep = g2.fusion_report()
    assert rep and not rep[0]["applied"] and "read by 2 nodes" in rep[0]["reason"]
    h = f64(x) @ f64(w).T
    np.testing.assert_allclose(g2.execute({"x": x})["y"], h + np.maximum(h, 0), rtol=1e-5, atol=1e-5)


def test_rule_residual_epilogue(rng):
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)  # batched (3-D) input
    w = rng.standard_normal((8, 8)).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_node("linear", ["x", "w"], ["p"], {"activation": "none"}, name="proj")
    g.add_node("vector_add", ["x", "p"], ["y"], name="res")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "residual_epilogue")
    ref = f64(x) @ f64(w).T + x
    np.testing.assert_allclose(fused["y"], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(off["y"], ref, rtol=1e-5, atol=1e-5)
    assert rep[0]["applied"] and rep[0]["rule"] == "residual_epilogue"
    assert not rep_off[0]["applied"]


def test_rule_residual_after_activation_is_not_folded(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w = rng.standard_normal((8, 8)).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_node("linear", ["x", "w"], ["p"], {"activation": "relu"}, name="proj")
    g.add_node("add", ["p", "x"], ["y"], name="res")
    g.plan("cpu")
    rep = g.fusion_report()
    assert not rep[0]["applied"] and "activation" in rep[0]["reason"]
    np.testing.assert_allclose(g.execute({"x": x})["y"], np.maximum(f64(x) @ f64(w).T, 0) + x,
                               rtol=1e-5, atol=1e-5)


def test_rule_conv_activation(rng):
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_node("conv2d_nchw", ["x", "w"], ["c"], {"pad_h": 1, "stride_w": 2}, name="conv")
    g.add_node("relu", ["c"], ["y"], name="act")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "conv_activation")
    eager = lc.relu(lc.conv2d_nchw(x, w, None, 1, 2, 1, 0))
    np.testing.assert_allclose(fused["y"], eager, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(off["y"], eager, rtol=1e-5, atol=1e-5)
    assert rep[0]["applied"] and not rep_off[0]["applied"]


def test_rule_layernorm_affine(rng):
    x = rng.standard_normal((3, 17)).astype(np.float32)
    gm = rng.standard_normal(17).astype(np.float32)
    bt = rng.standard_normal(17).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor((17,), "float32", "g", True, value=gm)
    g.add_tensor((17,), "float32", "b", True, value=bt)
    g.add_node("layernorm", ["x"], ["n"], {"eps": 1e-3}, name="ln")
    g.add_node("mul", ["n", "g"], ["ng"], name="scale")
    g.add_node("add", ["ng", "b"], ["y"], name="shift")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "layernorm_affine")
    ref = layernorm64(x, gm, bt, 1e-3)
    np.testing.assert_allclose(fused["y"], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(off["y"], ref, rtol=1e-4, atol=1e-5)
    assert [r["applied"] for r in rep] == [True, True]


def test_rule_scale_chain(rng):
    x = rng.standard_normal(33).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_node("vector_scale", ["x"], ["a"], {"alpha": 3.0}, name="s1")
    g.add_node("vector_scale", ["a"], ["b"], {"alpha": -0.25}, name="s2")
    g.add_node("vector_scale", ["b"], ["y"], {"alpha": 2}, name="s3")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "scale_chain")
    np.testing.assert_allclose(fused["y"], f64(x) * -1.5, rtol=1e-6)
    np.testing.assert_allclose(off["y"], f64(x) * -1.5, rtol=1e-6)
    assert [r["applied"] for r in rep] == [True, True]


def residual_ln_graph(shape, dtype, gm, bt, eps=1e-5, r_shape=None):
    """add(x, r) -> layernorm(gamma, beta)."""
    g = lc.GraphIR()
    g.add_tensor(shape, dtype, "x")
    g.add_tensor(r_shape or shape, dtype, "r")
    g.add_tensor(gm.shape, dtype, "g", True, value=gm)
    g.add_tensor(bt.shape, dtype, "b", True, value=bt)
    g.add_node("add", ["x", "r"], ["s"], name="sum")
    g.add_node("layernorm", ["s", "g", "b"], ["y"], {"eps": eps}, name="ln")
    return g


@pytest.mark.parametrize("shape", [(1, 7), (3, 17), (2, 5, 129), (0, 9)])
def test_rule_residual_layernorm(rng, shape):
    c = shape[-1]
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32)
    gm = rng.standard_normal(c).astype(np.float32)
    bt = rng.standard_normal(c).astype(np.float32)
    g = residual_ln_graph(shape, "float32", gm, bt, 1e-3)
    fused, off, rep, rep_off = run_both(g, {"x": x, "r": r}, "residual_layernorm")
    ref = layernorm64(f64(x) + r, gm, bt, 1e-3)
    eager = lc.layernorm(lc.add(x, r), gm, bt, 1e-3)
    for out in (fused, off):
        assert out["y"].shape == shape and out["y"].dtype == np.float32
        np.testing.assert_allclose(out["y"], ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["y"], eager, rtol=1e-5, atol=1e-5)
    assert rep == [{"rule": "residual_layernorm", "nodes": ["sum", "ln"], "applied": True,
                    "reason": "the residual add runs in the layernorm's row pass"}]
    assert not rep_off[0]["applied"] and rep_off[0]["reason"] == "switched off"
    s = g.plan("cpu")
    assert [(st["op"], st["name"]) for st in s["steps"]] == [("layernorm", "ln")]
    assert s["steps"][0]["fused"] == ["sum"]
    assert [st["op"] for st in g.plan("cpu", fusion=False)["steps"]] == ["add", "layernorm"]
    # both execution modes of the fused plan
    g.plan("cpu")
    np.testing.assert_allclose(g.execute({"x": x, "r": r}, execution_mode="eager")["y"], ref,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float16", 5e-3), ("bfloat16", 1e-2)])
def test_rule_residual_layernorm_dtypes(rng, dtype, tol):
    npdt = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    shape = (4, 3, 67)
    x = rng.standard_normal(shape).astype(npdt)
    r = rng.standard_normal(shape).astype(npdt)
    gm = (1 + 0.1 * rng.standard_normal(67)).astype(npdt)
    bt = rng.standard_normal(67).astype(npdt)
    g = residual_ln_graph(shape, dtype, gm, bt)
    fused, off, rep, _ = run_both(g, {"x": x, "r": r}, "residual_layernorm")
    assert rep[0]["applied"]
    ref = layernorm64(f64(x) + f64(r), f64(gm), f64(bt))
    assert fused["y"].dtype == npdt
    # the fused sum is exact (float32 / float64); the unfused add rounds it to the dtype first
    rel = np.linalg.norm(f64(fused["y"]) - ref) / np.linalg.norm(ref)
    assert rel <= tol, rel
    ref_off = layernorm64(f64(lc.add(x, r)), f64(gm), f64(bt))
    rel = np.linalg.norm(f64(off["y"]) - ref_off) / np.linalg.norm(ref_off)
    assert rel <= tol, rel


def test_rule_residual_layernorm_not_folded(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    r = rng.standard_normal((4, 8)).astype(np.float32)
    v = rng.standard_normal(8).astype(np.float32)
    one = np.ones(8, np.float32)
    # a broadcast add: the residual must have x's shape
    g = residual_ln_graph((4, 8), "float32", one, v, r_shape=(8,))
    g.plan("cpu")
    rep = g.fusion_report()
    assert len(rep) == 1 and not rep[0]["applied"] and "broadcasts" in rep[0]["reason"], rep
    np.testing.assert_allclose(g.execute({"x": x, "r": v})["y"], layernorm64(f64(x) + v, one, v),
                               rtol=1e-5, atol=1e-5)
    # the sum is a graph output too
    g = residual_ln_graph((4, 8), "float32", one, v)
    g.set_outputs(["s", "y"])
    g.plan("cpu")
    rep = g.fusion_report()
    assert not rep[0]["applied"] and "graph output" in rep[0]["reason"], rep
    out = g.execute({"x": x, "r": r})
    np.testing.assert_allclose(out["s"], f64(x) + r, rtol=1e-6)
    np.testing.assert_allclose(out["y"], layernorm64(f64(x) + r, one, v), rtol=1e-5, atol=1e-5)
    # the sum is read twice
    g = residual_ln_graph((4, 8), "float32", one, v)
    g.add_node("relu", ["s"], ["z"], name="other")
    g.set_outputs(["y", "z"])
    g.plan("cpu")
    rep = g.fusion_report()
    assert not rep[0]["applied"] and "read by 2 nodes" in rep[0]["reason"], rep
    np.testing.assert_allclose(g.execute({"x": x, "r": r})["z"], np.maximum(f64(x) + r, 0), rtol=1e-6)
    # the layernorm reads the sum as its gamma: nothing to fold
    g = lc.GraphIR()
    g.add_tensor((4, 8), "float32", "x")
    g.add_tensor((8,), "float32", "a")
    g.add_node("add", ["a", "a"], ["s"], name="sum")
    g.add_node("layernorm", ["x", "s"], ["y"], name="ln")
    g.plan("cpu")
    rep = g.fusion_report()
    assert not rep[0]["applied"] and "gamma" in rep[0]["reason"], rep
    np.testing.assert_allclose(g.execute({"x": x, "a": v})["y"], layernorm64(x, 2 * f64(v)),
                               rtol=1e-5, atol=1e-5)


def test_rule_residual_layernorm_with_other_rules(rng):
    """linear -> add(bias) -> add(residual) -> layernorm -> mul(gamma) -> add(beta): with
    residual_epilogue on, the residual goes into the GEMM; off, into the layernorm."""
    x = rng.standard_normal((6, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 16)) * 0.25).astype(np.float32)
    bias, gm, bt = (rng.standard_normal(16).astype(np.float32) for _ in range(3))
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    for n, val in (("w", w), ("bias", bias), ("gm", gm), ("bt", bt)):
        g.add_tensor(val.shape, "float32", n, True, value=val)
    g.add_node("linear", ["x", "w"], ["p"], name="proj")
    g.add_node("add", ["p", "bias"], ["pb"], name="proj_bias")
    g.add_node("add", ["pb", "x"], ["s"], name="res")
    g.add_node("layernorm", ["s"], ["n"], name="ln")
    g.add_node("mul", ["n", "gm"], ["ng"], name="ln_gamma")
    g.add_node("add", ["ng", "bt"], ["y"], name="ln_beta")
    ref = layernorm64(f64(x) @ f64(w).T + bias + x, gm, bt)
    plans = {"all": True, "no_residual_epilogue": {"residual_epilogue": False}, "none": False}
    rules = {}
    for key, fusion in plans.items():
        s = g.plan("cpu", fusion=fusion)
        np.testing.assert_allclose(g.execute({"x": x})["y"], ref, rtol=1e-4, atol=1e-4)
        rules[key] = ([st["op"] for st in s["steps"]],
                      sorted((r["rule"], r["nodes"][1]) for r in s["fusions"] if r["applied"]))
    assert rules["all"][0] == ["linear", "layernorm"]
    assert ("residual_epilogue", "res") in rules["all"][1]
    assert all(r != "residual_layernorm" for r, _ in rules["all"][1])
    assert rules["no_residual_epilogue"][0] == ["linear", "layernorm"]
    assert ("residual_layernorm", "ln") in rules["no_residual_epilogue"][1]
    assert ("layernorm_affine", "ln_beta") in rules["no_residual_epilogue"][1]
    assert rules["none"] == (["linear", "add", "add", "layernorm", "mul", "add"], [])


def test_traced_residual_layernorm(rng):
    x = rng.standard_normal((5, 24)).astype(np.float32)
    r = rng.standard_normal((5, 24)).astype(np.float32)
    gm, bt = (rng.standard_normal(24).astype(np.float32) for _ in range(2))
    ref = layernorm64(f64(x) + r, gm, bt)
    fn = lc.compile(lambda a, b: lc.layernorm(a + b, gm, bt))
    np.testing.assert_allclose(fn(x, r), ref, rtol=1e-4, atol=1e-5)
    assert "residual_layernorm applied" in fn.explain()
    # the op's residual= argument is traced as the layernorm's fourth input
    fn2 = lc.compile(lambda a, b: lc.layernorm(a, gm, bt, residual=b))
    np.testing.assert_allclose(fn2(x, r), ref, rtol=1e-4, atol=1e-5)
    g = lc.graph.trace(lambda a, b: lc.layernorm(a, None, None, 1e-5, residual=b), x, r)
    np.testing.assert_allclose(g.execute({"arg0": x, "arg1": r})[g.outputs[0]],
                               layernorm64(f64(x) + r), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"residual"):
        lc.graph.trace(lambda a, b: lc.layernorm(a, residual=b), x, r[:, :3].copy())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_rule_residual_layernorm(rng, dtype):
    npdt = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    shape = (256, 512)
    x = rng.standard_normal(shape).astype(npdt)
    r = rng.standard_normal(shape).astype(npdt)
    gm = (1 + 0.1 * rng.standard_normal(512)).astype(npdt)
    bt = rng.standard_normal(512).astype(npdt)
    g = residual_ln_graph(shape, dtype, gm, bt)
    ref = layernorm64(f64(x) + f64(r), f64(gm), f64(bt))
    tol = 1e-5 if dtype == "float32" else 1e-2
    for fusion in (True, False):
        s = g.plan("cuda", strict=True, fusion=fusion)
        assert len(s["steps"]) == (1 if fusion else 2), s["text"]
        for _ in range(3):  # eager first run, then recorded and replayed
            y = f64(g.execute({"x": x, "r": r})["y"])
            assert np.linalg.norm(y - ref) / np.linalg.norm(ref) <= tol

def scores_graph(shape, mask_shape, dtype, alpha=0.125, order="scale_then_mask"):
    """vector_scale(x, alpha) -> add(mask) -> softmax (or the add first)."""
    g = lc.GraphIR()
    g.add_tensor(shape, dtype, "x")
    g.add_tensor(mask_shape, dtype, "m")
    if order == "scale_then_mask":
        g.add_node("vector_scale", ["x"], ["xs"], {"alpha": alpha}, name="scale")
        g.add_node("add", ["xs", "m"], ["xm"], name="mask")
        g.add_node("softmax", ["xm"], ["y"], name="sm")
    else:
        g.add_node("add", ["x", "m"], ["xm"], name="mask")
        g.add_node("vector_scale", ["xm"], ["xs"], {"alpha": alpha}, name="scale")
        g.add_node("softmax", ["xs"], ["y"], name="sm")
    return g


@pytest.mark.parametrize("shape,mask_shape", [((1, 1), (1,)), ((2, 3, 9, 9), (9, 9)),
                                              ((5, 33), (5, 33)), ((4, 17), (17,)), ((0, 8), (8,)),
                                              # broadcast masks: key padding, per batch, per head
                                              ((2, 3, 9, 9), (2, 1, 1, 9)), ((2, 3, 9, 9), (2, 1, 9, 9)),
                                              ((2, 3, 9, 9), (1, 3, 1, 9))])
def test_rule_softmax_scale(rng, shape, mask_shape):
    x = rng.standard_normal(shape).astype(np.float32)
    m = (rng.standard_normal(mask_shape) * 2).astype(np.float32)
    if len(mask_shape) == 2 and mask_shape[0] == mask_shape[1]:
        m[np.triu_indices(mask_shape[0], 1)] = -np.inf
    g = scores_graph(shape, mask_shape, "float32")
    fused, off, rep, rep_off = run_both(g, {"x": x, "m": m}, "softmax_scale")
    ref = softmax64(f64(x) * 0.125 + m)
    eager = lc.softmax(lc.add(lc.vector_scale(x, 0.125), m))
    for out in (fused, off):
        assert out["y"].shape == shape
        np.testing.assert_allclose(out["y"], ref, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(out["y"], eager, rtol=1e-6, atol=1e-7)
    assert [(r["rule"], r["nodes"], r["applied"]) for r in rep] == [
        ("softmax_scale", ["mask", "sm"], True), ("softmax_scale", ["scale", "sm"], True)]
    assert [r["reason"] for r in rep_off] == ["switched off"]
    s = g.plan("cpu")
    assert [(st["op"], st["name"], st["fused"]) for st in s["steps"]] == [("softmax", "sm", ["scale", "mask"])]
    assert "scale=0.125" in s["text"] or "0.125" in s["text"], s["text"]
    assert [st["op"] for st in g.plan("cpu", fusion=False)["steps"]] == ["vector_scale", "add", "softmax"]


def test_rule_softmax_scale_not_folded(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    m = rng.standard_normal(8).astype(np.float32)
    # the add before the scale: only the scale folds (the mask would be scaled too)
    g = scores_graph((4, 8), (8,), "float32", 0.5, order="mask_then_scale")
    g.plan("cpu")
    rep = g.fusion_report()
    assert [(r["nodes"][0], r["applied"]) for r in rep] == [("scale", True), ("mask", False)], rep
    assert "scale" in rep[1]["reason"]
    np.testing.assert_allclose(g.execute({"x": x, "m": m})["y"], softmax64((f64(x) + m) * 0.5),
                               rtol=1e-5, atol=1e-7)
    # a mask that is not of the scores' trailing dimensions ([4, 1] broadcasts over columns)
    g = scores_graph((4, 8), (4, 1), "float32")
    g.plan("cpu")
    rep = g.fusion_report()
    assert not rep[0]["applied"] and "trailing" in rep[0]["reason"], rep
    m41 = rng.standard_normal((4, 1)).astype(np.float32)
    np.testing.assert_allclose(g.execute({"x": x, "m": m41})["y"], softmax64(f64(x) * 0.125 + m41),
                               rtol=1e-5, atol=1e-7)
    # the scaled scores are a graph output too
    g = scores_graph((4, 8), (8,), "float32")
    g.set_outputs(["xs", "y"])
    g.plan("cpu")
    rep = g.fusion_report()
    assert [r["applied"] for r in rep] == [True, False] and "graph output" in rep[1]["reason"], rep
    out = g.execute({"x": x, "m": m})
    np.testing.assert_allclose(out["y"], softmax64(f64(x) * 0.125 + m), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["xs"], f64(x) * 0.125, rtol=1e-6)
    # a negative scale stays a vector_scale
    g = lc.GraphIR()
    g.add_tensor((4, 8), "float32", "x")
    g.add_node("vector_scale", ["x"], ["xs"], {"alpha": -2.0}, name="neg")
    g.add_node("softmax", ["xs"], ["y"], name="sm")
    g.plan("cpu")
    rep = g.fusion_report()
    assert not rep[0]["applied"] and "> 0" in rep[0]["reason"], rep
    np.testing.assert_allclose(g.execute({"x": x})["y"], softmax64(-2 * f64(x)), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cshape", [(), (1,), (1, 1)])
def test_rule_softmax_scale_folds_a_constant_factor(rng, cshape):
    # mul(scores, c) by a one-element constant is a scale: folded into the softmax like
    # vector_scale, then the mask add before it too
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    m = np.triu(np.full((9, 9), -np.inf, np.float32), 1)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(cshape, "float32", "c", True, value=np.full(cshape, 0.125, np.float32))
    g.add_tensor((9, 9), "float32", "m", True, value=m)
    g.add_node("mul", ["x", "c"], ["xs"], name="scale")
    g.add_node("add", ["xs", "m"], ["xm"], name="mask")
    g.add_node("softmax", ["xm"], ["y"], name="sm")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "softmax_scale")
    assert [(r["nodes"], r["applied"]) for r in rep] == [(["mask", "sm"], True), (["scale", "sm"], True)], rep
    assert "constant factor" in rep[1]["reason"]
    ref = softmax64(f64(x) * 0.125 + m)
    for out in (fused, off):
        np.testing.assert_allclose(out["y"], ref, rtol=1e-5, atol=1e-7)
    assert [st["op"] for st in g.plan("cpu")["steps"]] == ["softmax"]
    # not folded: a factor <= 0, a constant that widens the scores' shape, a non-constant
    for value, shape, const in [(-2.0, (1,), True), (0.5, (1, 1, 1, 1, 1), True), (0.5, (1,), False)]:
        g = lc.GraphIR()
        g.add_tensor((4, 8), "float32", "x")
        g.add_tensor(shape, "float32", "c", const, **({"value": np.full(shape, value, np.float32)} if const else {}))
        g.add_node("mul", ["x", "c"], ["xs"], name="scale")
        g.add_node("softmax", ["xs"], ["y"], name="sm")
        g.plan("cpu")
        assert not any(r["applied"] for r in g.fusion_report()), (value, shape, const)
        xv = rng.standard_normal((4, 8)).astype(np.float32)
        ins = {"x": xv} if const else {"x": xv, "c": np.full(shape, value, np.float32)}
        y = g.execute(ins)["y"]
        ref = softmax64((f64(xv) * value).reshape(np.broadcast_shapes((4, 8), shape)))
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float16", 5e-3), ("bfloat16", 1e-2)])
def test_rule_softmax_scale_dtypes(rng, dtype, tol):
    npdt = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    x = (rng.standard_normal((2, 2, 7, 7)) * 3).astype(npdt)
    m = np.triu(np.full((7, 7), -np.inf), 1).astype(npdt)
    g = scores_graph(x.shape, m.shape, dtype, 0.5)
    fused, off, rep, _ = run_both(g, {"x": x, "m": m}, "softmax_scale")
    assert all(r["applied"] for r in rep) and fused["y"].dtype == npdt
    ref = softmax64(f64(x) * 0.5 + f64(m))
    for out in (fused, off):
        rel = np.linalg.norm(f64(out["y"]) - ref) / np.linalg.norm(ref)
        assert rel <= tol, rel


def test_traced_softmax_scale(rng):
    x = rng.standard_normal((2, 6, 6)).astype(np.float32)
    m = np.triu(np.full((6, 6), -np.inf, np.float32), 1)
    fn = lc.compile(lambda s: lc.softmax(s * 0.25 + m))
    np.testing.assert_allclose(fn(x), softmax64(f64(x) * 0.25 + m), rtol=1e-5, atol=1e-7)
    assert "softmax_scale applied" in fn.explain()
    fn2 = lc.compile(lambda s, mm: lc.softmax(s, scale=0.25, mask=mm))
    np.testing.assert_allclose(fn2(x, m), softmax64(f64(x) * 0.25 + m), rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_rule_softmax_scale(rng, dtype):
    npdt = pytest.importorskip("ml_dtypes").bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    x = (rng.standard_normal((4, 12, 128, 128)) * 3).astype(npdt)
    m = np.triu(np.full((128, 128), -np.inf), 1).astype(npdt)
    g = scores_graph(x.shape, m.shape, dtype, 0.125)
    ref = softmax64(f64(x) * 0.125 + f64(m))
    tol = 1e-5 if dtype == "float32" else 1e-2
    for fusion in (True, False):
        s = g.plan("cuda", strict=True, fusion=fusion)
        assert len(s["steps"]) == (1 if fusion else 3), s["text"]
        for _ in range(3):
            y = f64(g.execute({"x": x, "m": m})["y"])
            assert np.linalg.norm(y - ref) / np.linalg.norm(ref) <= tol

# ---- validation ---------------------------------------------------------------------------------


def simple_graph():
    g = lc.GraphIR()
    g.add_tensor((4, 8), "float32", "x")
    g.add_tensor((16, 8), "float32", "w", True, value=np.ones((16, 8), np.float32))
    return g


def test_unknown_op_and_attribute_name_the_node():
    g = simple_graph()
    with pytest.raises(ValueError, match=r"node 'n1' \(lineer\).*unknown op 'lineer'.*linear"):
        g.add_node("lineer", ["x", "w"], ["y"], name="n1")
    with pytest.raises(ValueError, match=r"node 'n2' \(linear\).*unknown attribute 'act'.*activation"):
        g.add_node("linear", ["x", "w"], ["y"], {"act": "gelu"}, name="n2")
    with pytest.raises(TypeError, match=r"node 'n3' \(linear\).*'activation' must be str"):
        g.add_node("linear", ["x", "w"], ["y"], {"activation": 1}, name="n3")
    with pytest.raises(ValueError, match=r"node 'n4'.*activation must be 'none', 'relu' or 'gelu'"):
        g.add_node("linear", ["x", "w"], ["y"], {"activation": "tanh"}, name="n4")
    with pytest.raises(ValueError, match=r"node 'n5' \(vector_scale\).*'alpha' is required"):
        g.add_node("vector_scale", ["x"], ["y"], name="n5")
    with pytest.raises(TypeError, match=r"node 'n6'.*'causal' must be bool"):
        g.add_node("attention2d", ["x", "x", "x"], ["y"], {"causal": "yes"}, name="n6")
    g.add_node("relu", ["x"], ["y"], name="r")
    with pytest.raises(ValueError, match="exists already"):
        g.add_node("relu", ["x"], ["z"], name="r")
    assert len(g) == 1


def passes(g):
    return {(i["pass"], i["node"]) for i in g.validate_report() if i["error"]}


def test_validation_passes_name_the_node():
    # wrong input count
    g = simple_graph()
    g.add_node("linear", ["x"], ["y"], name="fc")
    assert ("arity", "fc") in passes(g)
    with pytest.raises(ValueError, match=r"node 'fc' \(linear\): takes 2 to 4 input\(s\), got 1"):
        g.validate()
    # shape mismatch through the registry's inference
    g = simple_graph()
    g.add_tensor((16, 7), "float32", "w7", True, value=np.ones((16, 7), np.float32))
    g.add_node("linear", ["x", "w7"], ["y"], name="fc")
    with pytest.raises(ValueError, match=r"node 'fc' \(linear\): x is \[4, 8\] but weight is \[16, 7\]"):
        g.validate()
    # declared output shape disagrees
    g = simple_graph()
    g.add_tensor((4, 15), "float32", "y")
    g.add_node("linear", ["x", "w"], ["y"], name="fc")
    with pytest.raises(ValueError, match=r"node 'fc'.*output 'y' is declared \[4, 15\] but the op produces \[4, 16\]"):
        g.validate()
    # dtype mismatch: TypeError
    g = simple_graph()
    g.add_tensor((4, 8), "float64", "x64")
    g.add_node("add", ["x", "x64"], ["y"], name="mix")
    assert ("dtype", "mix") in passes(g)
    with pytest.raises(TypeError, match=r"node 'mix' \(add\).*float64.*float32"):
        g.validate()
    # softmax's additive mask in another float dtype: the dtype pass, naming the node (the graph
    # fuzz found it reported only at execute, by the op, without the node; attention's integer
    # keep-mask stays exempt)
    g = simple_graph()
    g.add_tensor((8,), "float16", "m16", True, value=np.zeros(8, np.float16))
    g.add_node("softmax", ["x", "m16"], ["y"], name="sm")
    assert ("dtype", "sm") in passes(g)
    with pytest.raises(TypeError, match=r"node 'sm' \(softmax\): input 'mask' \(tensor 'm16'\) is float16"):
        g.plan("cpu")
    g = lc.GraphIR()
    for n in ("q", "k", "v"):
        g.add_tensor((1, 2, 4, 8), "float32", n)
    g.add_tensor((1, 4), "int32", "keep")
    g.add_node("attention", ["q", "k", "v", "keep"], ["o"], name="att")
    assert g.validate_report() == []
    # dangling: read, never declared or produced
    g = simple_graph()
    g.add_node("add", ["x", "ghost"], ["y"], name="n")
    with pytest.raises(ValueError, match=r"node 'n' \(add\): reads tensor 'ghost'"):
        g.validate()
    # two producers; a constant written
    g = simple_graph()
    g.add_node("relu", ["x"], ["y"], name="a")
    g.add_node("gelu", ["x"], ["y"], name="b")
    g.add_node("relu", ["x"], ["w"], name="c")
    assert {("producers", "b"), ("producers", "c")} <= passes(g)
    # cycle
    g = simple_graph()
    g.add_node("add", ["x", "q"], ["p"], name="n1")
    g.add_node("relu", ["p"], ["q"], name="n2")
    assert ("cycle", "n1") in passes(g)
    with pytest.raises(ValueError, match=r"cycle.*'n1', 'n2'"):
        g.plan()
    # a constant without a value; an output nobody produces; a pipeline op
    g = simple_graph()
    g.add_tensor((8,), "float32", "c", constant=True)
    g.add_node("add", ["x", "c"], ["y"], name="n")
    g.set_outputs(["y", "nope", "y"])
    assert {("constant", "c"), ("outputs", "nope"), ("outputs", "y")} <= passes(g)
    g = lc.GraphIR()
    g.add_tensor((1, 3, 8, 8), "float32", "x")
    g.add_tensor((4, 3, 3, 3), "float32", "w")
    g.add_node("conv_attention_nchw", ["x", "w"], ["y"], {"seq_len": 6, "head_dim": 6}, name="ca")
    assert ("unsupported", "ca") in passes(g)


def test_unused_tensor_is_a_warning():
    g = simple_graph()
    g.add_node("relu", ["x"], ["y"], name="r")
    report = g.validate_report()
    assert [(i["pass"], i["node"], i["error"]) for i in report] == [("unused", "w", False)]
    g.validate()  # warnings do not fail


def test_plan_summary_before_plan_and_strict_cuda():
    g = simple_graph()
    g.add_node("relu", ["x"], ["y"], name="r")
    with pytest.raises(ValueError, match="not planned"):
        g.plan_summary()
    if not lc.cuda_available():
        with pytest.raises(ValueError, match="cuda"):
            g.plan("cuda", strict=True)
    s = g.plan()
    assert g.plan_summary() == s
    assert s["steps"][0]["device"] in ("cpu", "cuda") and s["placement_reason"]


# ---- execute: bad inputs -------------------------------------------------------------------------


def test_execute_bad_inputs_name_input_and_node(rng):
    g = simple_graph()
    g.add_node("linear", ["x", "w"], ["y"], name="fc")
    x = rng.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"graph input 'x' \(read by node 'fc'\) is missing"):
        g.execute({})
    with pytest.raises(TypeError, match=r"input 'x' \(read by node 'fc'\) must be float32, got float64"):
        g.execute({"x": x.astype(np.float64)})
    with pytest.raises(ValueError, match=r"input 'x' \(read by node 'fc'\) must have shape \[4, 8\], got \[4, 9\]"):
        g.execute({"x": np.zeros((4, 9), np.float32)})
    with pytest.raises(ValueError, match="'w' is not a graph input"):
        g.execute({"x": x, "w": x})
    with pytest.raises(TypeError, match="dict"):
        g.execute([x])
    with pytest.raises(ValueError, match="execution_mode"):
        g.execute({"x": x}, execution_mode="fast")
    with pytest.raises(TypeError):
        g.execute({"x": "not an array"})
    # Still usable after the errors.
    np.testing.assert_allclose(g.execute({"x": x})["y"], f64(x) @ np.ones((8, 16)), rtol=1e-5)


def test_trace_errors_name_the_node(rng):
    w = np.ones((5, 7), np.float32)
    with pytest.raises(ValueError, match=r"\[graph\] node 'linear_0' \(linear\):.*weight"):
        lc.graph.trace(lambda x: lc.linear(x, w), np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="must return"):
        lc.graph.trace(lambda x: 3, np.zeros((3, 4), np.float32))
    # views are graph nodes now (test_graph_views.py); a bad one names its node
    with pytest.raises(ValueError, match=r"node 'reshape_0' \(reshape\): cannot reshape"):
        lc.graph.trace(lambda x: lc.relu(x.reshape(13)), np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="truth value"):
        lc.graph.trace(lambda x: lc.relu(x) if x else x, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="execution_mode"):
        lc.compile(lambda x: x, execution_mode="jit")


# ---- GPU (the lead runs these on the H200) -----------------------------------------------------


@pytest.mark.gpu
def test_gpu_block_is_one_captured_graph(rng):
    s, d, f = 64, 128, 512
    W = make_weights(rng, d, f)
    g = block_graph(W, s, d)
    summary = g.plan("cuda", strict=True)
    assert summary["captured"] and summary["device"] == "cuda", summary["text"]
    ref = block_reference(np.zeros((s, d)), W)
    for i in range(4):
        x = rng.standard_normal((s, d)).astype(np.float32)
        ref = block_reference(x, W)
        out = g.execute({"x": x})["out"]
        np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3)
        # device inputs are bound in place: a new address re-records and updates the graph (in
        # the plan for device inputs: docs/graph.md, "Residency and cuda:N")
        xd = lc.Tensor(x, device="cuda")
        outd = g.execute({"x": xd})["out"]
        assert isinstance(outd, lc.Tensor)
        np.testing.assert_allclose(outd.numpy(), ref, rtol=2e-3, atol=2e-3)
    st = g.stats()
    # Two residencies (host x, device x with the result left there): a plan each (made once,
    # then cached), each warmed up once and then replayed.
    assert st["residency_plans"] == 1
    assert st["eager_runs"] == 2 and st["replays"] == 6
    eager = g.execute({"x": x}, execution_mode="eager")["out"]
    np.testing.assert_allclose(eager, ref, rtol=2e-3, atol=2e-3)


@pytest.mark.gpu
def test_gpu_compile_auto_places_the_whole_chain(rng):
    d, f = 256, 1024  # the block's attention head is d wide: CUDA runs heads up to 256
    W = make_weights(rng, d, f)
    x = rng.standard_normal((512, d)).astype(np.float32)
    fn = lc.compile(lambda t: block_lc(t, W))
    out = fn(x)
    np.testing.assert_allclose(out, block_reference(x, W), rtol=3e-3, atol=3e-3)
    s = fn.graph(x).plan_summary()
    assert s["device"] == "cuda" and not s["crosses_devices"], s["text"]


def test_zero_size_batch_and_shared_transposed_weight(rng):
    w = rng.standard_normal((8, 16)).astype(np.float32)  # matmul layout, read by two matmuls
    g = lc.GraphIR()
    g.add_tensor((0, 8), "float32", "x")
    g.add_tensor((3, 8), "float32", "x3")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_node("matmul", ["x", "w"], ["y"], name="mm0")
    g.add_node("relu", ["y"], ["z"], name="act0")
    g.add_node("matmul2d", ["x3", "w"], ["y3"], name="mm1")
    g.add_node("gelu", ["y3"], ["z3"], name="act1")
    s = g.plan("cpu")
    assert [st["op"] for st in s["steps"]] == ["linear", "linear"]
    assert s["constant_bytes"] == w.nbytes  # one transposed copy; the original is read by no step
    x3 = rng.standard_normal((3, 8)).astype(np.float32)
    out = g.execute({"x": np.zeros((0, 8), np.float32), "x3": x3})
    assert out["z"].shape == (0, 16)
    np.testing.assert_allclose(out["z3"], gelu64(f64(x3) @ f64(w)), rtol=1e-5, atol=1e-5)
    # A traced function on an empty batch.
    cf = lc.compile(lambda t: lc.relu(lc.linear(t, w.T.copy())))
    assert cf(np.zeros((0, 8), np.float32)).shape == (0, 16)


# ---- whole-graph placement (a what-if: planned as if a GPU were present) -----------------------


def linear_chain_graph(rows, d, tiny_between=True, head_dim=None):
    g = lc.GraphIR()
    g.add_tensor((rows, d), "float32", "x")
    w = np.zeros((d, d), np.float32)
    prev = "x"
    for i in range(3):
        g.add_tensor((d, d), "float32", f"w{i}", True, value=w)
        g.add_node("linear", [prev, f"w{i}"], [f"h{i}"], name=f"fc{i}")
        prev = f"h{i}"
        if tiny_between:
            g.add_node("relu", [prev], [f"r{i}"], name=f"act{i}")
            g.add_node("vector_scale", [f"r{i}"], [f"s{i}"], {"alpha": 0.5}, name=f"scale{i}")
            prev = f"s{i}"
        if head_dim and i == 0:
            # attention2d with a head dimension CUDA cannot run (> 256): pinned to the CPU
            g.add_node("attention2d", [prev, prev, prev], ["att"], name="attn")
            prev = "att"
    return g


_FAMILIES = ("matmul", "attention", "conv2d", "norm", "elementwise")


@pytest.fixture
def default_cost_model():
    """The built-in cost model, not this machine's calibration: a loaded CI machine measured a
    CPU overhead that made even a 2x8 chain cheaper on the GPU."""
    lc.set_cost_model({
        "cpu_gflops": {"matmul": 60.0, "attention": 20.0, "conv2d": 30.0, "norm": 4.0, "elementwise": 4.0},
        "gpu_gflops": {"matmul": 40000.0, "attention": 12000.0, "conv2d": 15000.0, "norm": 1000.0,
                       "elementwise": 500.0},
        "cpu_family_overhead_us": {f: 0.0 for f in _FAMILIES},
        "gpu_family_overhead_us": {f: 0.0 for f in _FAMILIES},
        "cpu_overhead_us": 0.3, "gpu_launch_us": 8.0})
    yield
    lc.reset_cost_model()


def test_placement_keeps_a_chain_on_one_device(default_cost_model):
    big = linear_chain_graph(1024, 1024)
    s = big.plan(assume_gpu=True, fusion=False)
    devices = {st["name"]: st["device"] for st in s["steps"]}
    # The tiny relu / scale steps alone would run on the CPU; inside a GPU chain they stay.
    assert set(devices.values()) == {"cuda"}, s["text"]
    assert not s["crosses_devices"] and s["captured"]
    assert s["est_plan_us"] <= min(s["est_cpu_us"], s["est_gpu_us"]) + 1e-6
    tiny = linear_chain_graph(2, 8)
    s = tiny.plan(assume_gpu=True)
    assert {st["device"] for st in s["steps"]} == {"cpu"}, s["text"]
    assert "cost model" in s["placement_reason"]


def test_placement_pins_what_cuda_cannot_run_and_strict_raises():
    g = linear_chain_graph(512, 512, tiny_between=False, head_dim=512)
    s = g.plan(assume_gpu=True)
    devices = {st["name"]: st["device"] for st in s["steps"]}
    assert devices["attn"] == "cpu", s["text"]
    assert devices["fc1"] == "cuda" and devices["fc2"] == "cuda", s["text"]
    assert s["crosses_devices"] and not s["captured"] and "crosses" in s["capture_reason"]
    s = g.plan("cuda", assume_gpu=True)
    assert {st["name"] for st in s["steps"] if st["device"] == "cpu"} == {"attn"}
    assert "node 'attn' (attention2d)" in s["placement_reason"]
    with pytest.raises(ValueError, match=r"node 'attn' \(attention2d\): CUDA cannot run it.*strict"):
        g.plan("cuda", strict=True, assume_gpu=True)
    assert g.outputs == ["h2"]  # the graph is intact after the refusal
    if not lc.cuda_available():
        g.plan(assume_gpu=True)
        with pytest.raises(ValueError, match="cuda"):  # a what-if plan cannot run without the GPU
            g.execute({"x": np.zeros((512, 512), np.float32)})


def test_rule_qkv_projection(rng):
    # Three projections of one batched x of different widths (grouped-query: k and v narrower),
    # with biases and a relu, consumed as strided column views.
    x = rng.standard_normal((2, 5, 12)).astype(np.float32)
    ws = {n: rng.standard_normal((w, 12)).astype(np.float32) for n, w in (("q", 8), ("k", 4), ("v", 6))}
    bs = {n: rng.standard_normal(w.shape[0]).astype(np.float32) for n, w in ws.items()}
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    for n in "qkv":
        g.add_tensor(ws[n].shape, "float32", "w" + n, True, value=ws[n])
        g.add_tensor(bs[n].shape, "float32", "b" + n, True, value=bs[n])
        g.add_node("linear", ["x", "w" + n, "b" + n], [n], {"activation": "relu"}, name=n + "_proj")
    g.add_node("add", ["q", "q"], ["q2"], name="use_q")
    g.add_node("mul", ["k", "k"], ["k2"], name="use_k")
    g.add_node("softmax", ["v"], ["v2"], name="use_v")
    fused, off, rep, rep_off = run_both(g, {"x": x}, "qkv_projection")
    ref = {n: np.maximum(f64(x) @ f64(ws[n]).T + bs[n], 0) for n in "qkv"}
    for out in (fused, off):
        np.testing.assert_allclose(out["q2"], 2 * ref["q"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["k2"], ref["k"] ** 2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["v2"], softmax64(ref["v"]), rtol=1e-5, atol=1e-6)
    rep = [r for r in rep if r["rule"] == "qkv_projection"]
    rep_off = [r for r in rep_off if r["rule"] == "qkv_projection"]
    assert [r["applied"] for r in rep] == [True] and rep[0]["nodes"] == ["q_proj", "k_proj", "v_proj"]
    assert not rep_off[0]["applied"] and rep_off[0]["reason"] == "switched off"
    g.plan("cpu")
    assert [st["op"] for st in g.plan_summary()["steps"]] == ["linear", "add", "mul", "softmax"]
    # A projection whose result is a graph output keeps its own GEMM.
    g.set_outputs(["q", "k2", "v2"])
    g.plan("cpu")
    rep = g.fusion_report()
    assert [r["nodes"] for r in rep if r["rule"] == "qkv_projection"] == [["k_proj", "v_proj"]]
    out = g.execute({"x": x})
    np.testing.assert_allclose(out["q"], ref["q"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["v2"], softmax64(ref["v"]), rtol=1e-5, atol=1e-6)
