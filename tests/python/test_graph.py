"""lc.GraphIR and the tracer (lc.compile / lc.graph.trace), issue #14: validation passes that name
the node, liveness buffer reuse, execution in graph and eager modes, bad inputs, and a MiniLM-like
encoder block built by hand and traced. The fusion rules: test_graph_rules.py."""

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
def test_gpu_results_are_handed_out_without_a_copy(rng):
    """A captured plan writes its outputs into a ring of output sets (docs/graph.md, "Results
    without a copy"): a call with device inputs gets a free set's buffers as its results, never a
    set an earlier result still holds; results held past the ring are copies; each holds its
    own call's values."""
    s, d, f = 64, 128, 512
    W = make_weights(rng, d, f)
    g = block_graph(W, s, d)
    assert g.plan("cuda", strict=True)["captured"]
    xd = lc.Tensor(np.zeros((s, d), np.float32), device="cuda")
    kept, refs = [], []
    for i in range(7):  # more than the ring holds: the last ones are copies of set 0
        x = rng.standard_normal((s, d)).astype(np.float32)
        xd.copy_(lc.Tensor(x, device="cuda"))  # same input buffer: replays, no re-record
        out = g.execute({"x": xd})["out"]
        assert isinstance(out, lc.Tensor) and out.device == "cuda"
        kept.append(out)
        refs.append(block_reference(x, W))
    for out, ref in zip(kept, refs):  # no later call overwrote an earlier result
        np.testing.assert_allclose(out.numpy(), ref, rtol=2e-3, atol=2e-3)
    st = g.stats()
    assert st["outputs_handed_out"] == 3, st  # the ring's sets; calls 4-7 got copies
    # Released results free their sets: a `y = g(x)` loop replays without copies or records.
    kept.clear()
    out = None
    rec = None
    for i in range(6):
        if i == 1:  # every set has recorded by now
            rec = g.stats()["records"]
        x = rng.standard_normal((s, d)).astype(np.float32)
        xd.copy_(lc.Tensor(x, device="cuda"))
        out = g.execute({"x": xd})["out"]
        out.copy_(lc.Tensor(np.full((s, d), np.nan, np.float32), device="cuda"))  # caller's now
        out = g.execute({"x": xd})["out"]
        np.testing.assert_allclose(out.numpy(), block_reference(x, W), rtol=2e-3, atol=2e-3)
    st = g.stats()
    assert st["records"] == rec and st["outputs_handed_out"] == 3 + 12, st
    # Host inputs: the results are downloaded from set 0 (numpy); the eager A/B agrees.
    x = rng.standard_normal((s, d)).astype(np.float32)
    np.testing.assert_allclose(g.execute({"x": x})["out"], block_reference(x, W), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(g.execute({"x": xd}, execution_mode="eager")["out"].numpy(),
                               out.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_gpu_compile_auto_places_the_whole_chain(rng):
    d, f = 384, 1536  # the block's attention head is d wide: CUDA runs heads up to 512
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
            # attention2d with a head dimension CUDA cannot run (> 512): pinned to the CPU
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
    g = linear_chain_graph(512, 520, tiny_between=False, head_dim=520)
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
            g.execute({"x": np.zeros((512, 520), np.float32)})


@pytest.mark.gpu
def test_gpu_compile_eager_runs_on_the_compiled_device(rng):
    """execution_mode="eager" is the A/B of the same computation on the same device: a tiny
    chain compiled for "cuda" runs its eager ops on the GPU (alone they would place themselves
    on the CPU), and agrees with the graph."""
    x = rng.standard_normal((64, 64)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)

    def chain(t):
        return lc.relu(lc.add(lc.relu(lc.add(t, b)), b))
    eager = lc.compile(chain, device="cuda", execution_mode="eager")
    graph = lc.compile(chain, device="cuda")
    lc.runtime_trace_clear()
    lc.runtime_trace_enable(True)
    try:
        y = eager(x)
    finally:
        lc.runtime_trace_enable(False)
    ran = {e["device"] for e in lc.runtime_trace_events() if e["kind"] == "op"}
    assert ran == {"cuda"}, ran
    np.testing.assert_allclose(y, graph(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, np.maximum(np.maximum(x + b, 0) + b, 0), rtol=1e-6, atol=1e-6)
