"""The Graph IR's fusion rules (issue #14, src/graph/fusion.cpp): for each rule, its switch on
and off, fused == unfused == the float64 reference, the report's entries (applied or not, and
why), and the rule on the GPU where one is present. The rest of lc.GraphIR: test_graph.py."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from test_graph import f64, gelu64, layernorm64, softmax64  # the float64 references

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]

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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fuse", [True, False])
def test_rule_linear_epilogue_exact_gelu(rng, device, fuse):
    """gelu(approximate="none") after linear (+ bias, + residual before it) folds into linear's
    "gelu_erf" activation (the CPU GEMM's tiles; a second kernel inside the op on a GPU); fused
    and unfused agree with float64 (odd sizes, a batched input)."""
    x = rng.standard_normal((2, 7, 13)).astype(np.float32)
    w = rng.standard_normal((11, 13)).astype(np.float32)
    b = rng.standard_normal(11).astype(np.float32)
    r = rng.standard_normal((2, 7, 11)).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(r.shape, "float32", "r")
    g.add_tensor(w.shape, "float32", "w", True, value=w)
    g.add_tensor(b.shape, "float32", "b", True, value=b)
    g.add_node("linear", ["x", "w"], ["h"], name="fc")
    g.add_node("add", ["h", "b"], ["hb"], name="bias")
    g.add_node("add", ["hb", "r"], ["hr"], name="res")
    g.add_node("gelu", ["hr"], ["y"], {"approximate": "none"}, name="exact")
    g.plan(device, fusion={"linear_epilogue": fuse, "residual_epilogue": fuse,
                           "elementwise_chain": False})
    applied = {(e["rule"], e["applied"]) for e in g.fusion_report()}
    assert (("linear_epilogue", True) in applied) == fuse, g.fusion_report()
    if fuse:
        assert len(g.plan_summary()["steps"]) == 1, g.plan_summary()["text"]
    from math import erf
    h = f64(x) @ f64(w).T + f64(b) + f64(r)
    ref = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
    y = g.execute({"x": x, "r": r})["y"]
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5, atol=1e-5)


def test_rule_linear_epilogue_not_applied_reasons(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    w = rng.standard_normal((5, 6)).astype(np.float32)
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
