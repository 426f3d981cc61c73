"""The graph rule attention_out_proj (issue #14, "attention + output projection where it pays"):
attention -> permute(heads, rows) -> reshape / contiguous -> linear / matmul, rewritten so the
attention writes the merged-heads [B, S, H, D] layout and the reshape's copy goes. It applies where
the attention writes a strided out in place (the runtime's feature check); without it the report
says why and the plan keeps the copy. LC_GRAPH_FORCE_ATTENTION_OUT_PROJ=1 applies it anyway (the
op then stages the strided out), which checks the rewrite itself: fused == unfused == float64."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

RULE = "attention_out_proj"


def attention64(q, k, v, causal=False):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        sq, sk = s.shape[-2:]
        keep = np.arange(sk)[None, :] <= np.arange(sq)[:, None] + (sk - sq)
        s = np.where(keep, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def block_graph(shape, wo, bo, *, dtype="float32", view="permute", merge="reshape", proj="linear",
                causal=False, three_d=False):
    """q, k, v [B, H, S, D] (or [H, S, D]) -> attention -> heads to rows -> [B, S, H*D] -> proj."""
    B, H, S, D = shape
    qshape = (H, S, D) if three_d else (B, H, S, D)
    g = lc.GraphIR()
    for n in "qkv":
        g.add_tensor(qshape, dtype, n)
    g.add_tensor(wo.shape, dtype, "wo", True, value=wo)
    g.add_tensor(bo.shape, dtype, "bo", True, value=bo)
    g.add_node("attention", ["q", "k", "v"], ["a"], {"causal": causal}, name="attn")
    if view == "permute":
        dims = (1, 0, 2) if three_d else (0, 2, 1, 3)
        g.add_node("permute", ["a"], ["p"], {"dims": dims}, name="heads")
    else:
        g.add_node("transpose", ["a"], ["p"], {"dim0": -3, "dim1": -2}, name="heads")
    merged = (S, H * D) if three_d else (B, S, H * D)
    if merge == "reshape":
        g.add_node("reshape", ["p"], ["m"], {"shape": merged}, name="merge")
    else:
        g.add_node("contiguous", ["p"], ["c"], name="merge")
        g.add_node("reshape", ["c"], ["m"], {"shape": merged}, name="flat")
    if proj == "linear":
        g.add_node("linear", ["m", "wo", "bo"], ["y"], name="out_proj")
    else:  # matmul with the [k, n] weight: linear_epilogue turns it into a linear first
        g.add_node("matmul", ["m", "wo"], ["mm"], name="out_proj")
        g.add_node("add", ["mm", "bo"], ["y"], name="bias")
    return g


def reference(q, k, v, wo, bo, proj="linear", causal=False):
    a = attention64(q, k, v, causal)
    a = np.swapaxes(a, -3, -2)
    m = a.reshape(a.shape[:-2] + (-1,))
    w = np.asarray(wo, np.float64)
    return m @ (w.T if proj == "linear" else w) + np.asarray(bo, np.float64)


def inputs(rng, shape, dtype=np.float32, three_d=False):
    B, H, S, D = shape
    qshape = (H, S, D) if three_d else (B, H, S, D)
    return {n: rng.standard_normal(qshape).astype(dtype) for n in "qkv"}


def entry(report):
    found = [r for r in report if r["rule"] == RULE]
    return found[0] if found else None


def steps(g):
    return [s["op"] for s in g.plan_summary()["steps"]]


@pytest.fixture
def force(monkeypatch):
    monkeypatch.setenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ", "1")


def supported():
    """Whether this build's attention writes a strided out in place (the rule's feature check)."""
    wo, bo = np.ones((6, 6), np.float32), np.zeros(6, np.float32)
    g = block_graph((1, 2, 3, 3), wo, bo)
    g.plan("cpu")
    return entry(g.fusion_report())["applied"]


# ---- the feature check and the report ----------------------------------------------------------


def test_report_names_the_rule_and_why(rng):
    shape = (2, 3, 5, 7)
    wo, bo = rng.standard_normal((11, 21)).astype(np.float32), rng.standard_normal(11).astype(np.float32)
    g = block_graph(shape, wo, bo)
    g.plan("cpu")
    e = entry(g.fusion_report())
    assert e is not None and e["nodes"] == ["attn", "heads", "merge", "out_proj"]
    ins = inputs(rng, shape)
    np.testing.assert_allclose(g.execute(ins)["y"], reference(**ins, wo=wo, bo=bo), rtol=1e-5, atol=1e-5)
    if e["applied"]:
        assert steps(g) == ["attention", "linear"]
    else:  # this build: the reason names what is missing, and the copy stays
        assert "strided out" in e["reason"] and "out_strides" in e["reason"]
        assert steps(g) == ["attention", "reshape", "linear"]
    assert RULE in g.explain()


# ---- the rewrite (forced where the feature is missing): fused == unfused == float64 -------------


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 9, 8), (3, 2, 1, 5), (1, 5, 13, 3), (2, 2, 17, 16)])
@pytest.mark.parametrize("variant", [
    dict(), dict(view="transpose"), dict(merge="contiguous"), dict(proj="matmul"), dict(causal=True),
    dict(three_d=True)])
def test_rewrite_matches_unfused_and_reference(rng, force, shape, variant):
    B, H, S, D = shape
    n = 11
    if variant.get("proj") == "matmul":
        wo = (rng.standard_normal((H * D, n)) * 0.3).astype(np.float32)
    else:
        wo = (rng.standard_normal((n, H * D)) * 0.3).astype(np.float32)
    bo = rng.standard_normal(n).astype(np.float32)
    g = block_graph(shape, wo, bo, **variant)
    three_d = variant.get("three_d", False)
    ins = inputs(rng, shape, three_d=three_d)
    g.plan("cpu")
    fused = g.execute(ins)["y"]
    fused_eager = g.execute(ins, execution_mode="eager")["y"]
    e = entry(g.fusion_report())
    if S == 1:
        assert e["applied"] is False and "no copy to save" in e["reason"]
    else:
        assert e["applied"] is True, e
        assert "reshape" not in steps(g) and "contiguous" not in steps(g)
        assert g.plan_summary()["view_copies"] == 0
    g.plan("cpu", fusion={RULE: False})
    assert entry(g.fusion_report()) is None  # switched off: not examined
    off = g.execute(ins)["y"]
    if S > 1:
        assert "reshape" in steps(g) or "contiguous" in steps(g)
    ref = reference(**ins, wo=wo, bo=bo, proj=variant.get("proj", "linear"), causal=variant.get("causal", False))
    np.testing.assert_allclose(fused, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused_eager, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused, off, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-2), ("bfloat16", 3e-2), ("float64", 1e-10)])
def test_rewrite_dtypes(rng, force, dtype, tol):
    import ml_dtypes

    np_dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    shape = (2, 3, 6, 8)
    wo = (rng.standard_normal((10, 24)) * 0.2).astype(np_dt)
    bo = rng.standard_normal(10).astype(np_dt)
    g = block_graph(shape, wo, bo, dtype=dtype)
    ins = inputs(rng, shape, np_dt)
    g.plan("cpu")
    assert entry(g.fusion_report())["applied"]
    y = g.execute(ins)["y"]
    assert y.dtype == np_dt
    np.testing.assert_allclose(np.asarray(y, np.float64), reference(**ins, wo=wo, bo=bo), rtol=tol, atol=tol)


def test_not_applied_reasons(rng, force):
    shape = (2, 3, 5, 4)
    wo, bo = rng.standard_normal((7, 12)).astype(np.float32), rng.standard_normal(7).astype(np.float32)
    # the permuted heads read twice
    g = block_graph(shape, wo, bo)
    g.add_node("relu", ["p"], ["side"], name="side")
    g.set_outputs(["y", "side"])
    g.plan("cpu")
    e = entry(g.fusion_report())
    assert not e["applied"] and ("graph output" in e["reason"] or "read 2 times" in e["reason"])
    # no projection after the merge
    g = lc.GraphIR()
    for n in "qkv":
        g.add_tensor(shape, "float32", n)
    g.add_node("attention", ["q", "k", "v"], ["a"], name="attn")
    g.add_node("permute", ["a"], ["p"], {"dims": (0, 2, 1, 3)}, name="heads")
    g.add_node("reshape", ["p"], ["m"], {"shape": (2, 5, 12)}, name="merge")
    g.add_node("relu", ["m"], ["y"], name="act")
    g.plan("cpu")
    e = entry(g.fusion_report())
    assert not e["applied"] and "no output projection" in e["reason"]
    ins = inputs(np.random.default_rng(1), shape)
    ref = np.maximum(np.swapaxes(attention64(ins["q"], ins["k"], ins["v"]), 1, 2).reshape(2, 5, 12), 0)
    np.testing.assert_allclose(g.execute(ins)["y"], ref, rtol=1e-5, atol=1e-5)
    # the attention's result is a graph output
    g = block_graph(shape, wo, bo)
    g.set_outputs(["y", "a"])
    g.plan("cpu")
    e = entry(g.fusion_report())
    assert not e["applied"] and "graph output" in e["reason"]
    # fusion=False switches every rule off
    g = block_graph(shape, wo, bo)
    g.plan("cpu", fusion=False)
    assert entry(g.fusion_report()) is None


def test_traced_transformer_heads(rng, force):
    """The docs' heads example with its output projection, traced: the rule applies on the
    tracer's permute -> reshape, and the whole block matches float64."""
    E, Hh = 24, 3
    wqkv = (rng.standard_normal((3 * E, E)) * 0.2).astype(np.float32)
    wo = (rng.standard_normal((E, E)) * 0.2).astype(np.float32)
    bo = rng.standard_normal(E).astype(np.float32)

    def block(x):
        B, S, _ = x.shape
        qkv = lc.linear(x, wqkv).view(B, S, 3, Hh, E // Hh).permute(2, 0, 3, 1, 4)
        a = lc.attention(qkv[0], qkv[1], qkv[2])
        return lc.linear(a.permute(0, 2, 1, 3).reshape(B, S, E), wo, bo)

    f = lc.compile(block, device="cpu")
    x = rng.standard_normal((2, 7, E)).astype(np.float32)
    y = f(x)
    assert f"{RULE} applied" in f.explain()
    assert "reshape" not in [s["op"] for s in f.graph(x).plan_summary()["steps"]]
    x64 = x.astype(np.float64)
    qkv = (x64 @ wqkv.T.astype(np.float64)).reshape(2, 7, 3, Hh, E // Hh).transpose(2, 0, 3, 1, 4)
    a = attention64(qkv[0], qkv[1], qkv[2]).transpose(0, 2, 1, 3).reshape(2, 7, E)
    np.testing.assert_allclose(y, a @ wo.T.astype(np.float64) + bo, rtol=1e-5, atol=1e-5)


def test_unforced_matches_this_builds_feature(rng, monkeypatch):
    monkeypatch.delenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ", raising=False)
    applied = supported()
    g = block_graph((1, 2, 4, 4), np.ones((3, 8), np.float32), np.zeros(3, np.float32))
    g.plan("cpu")
    assert entry(g.fusion_report())["applied"] == applied


# ---- GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float16", 2e-2), ("bfloat16", 3e-2)])
@pytest.mark.parametrize("forced", [False, True])
def test_gpu_rewrite(rng, monkeypatch, dtype, tol, forced):
    import ml_dtypes

    if forced:
        monkeypatch.setenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ", "1")
    else:
        monkeypatch.delenv("LC_GRAPH_FORCE_ATTENTION_OUT_PROJ", raising=False)
    np_dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    shape = (2, 4, 33, 64)
    wo = (rng.standard_normal((96, 256)) * 0.05).astype(np_dt)
    bo = rng.standard_normal(96).astype(np_dt)
    g = block_graph(shape, wo, bo, dtype=dtype)
    g.plan("cuda")
    on = entry(g.fusion_report())["applied"]
    assert on == (forced or supported())
    for _ in range(3):  # eager first run, then record, then replay
        ins = inputs(rng, shape, np_dt)
        y = g.execute(ins)["y"]
        np.testing.assert_allclose(np.asarray(y, np.float64), reference(**ins, wo=wo, bo=bo),
                                   rtol=tol, atol=tol)
    g2 = block_graph(shape, wo, bo, dtype=dtype)
    g2.plan("cuda", fusion={RULE: False})
    np.testing.assert_allclose(np.asarray(g2.execute(ins)["y"], np.float64), np.asarray(y, np.float64),
                               rtol=tol, atol=tol)
