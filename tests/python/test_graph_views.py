"""View nodes of the Graph IR (reshape / view, permute, transpose, slice, select, contiguous) and
their tracing from lc.Tensor's methods: fused and unfused plans agree with the eager ops on
lc.Tensor views and with float64 numpy references; each view kind, odd sizes, size-1 and size-0
axes, views of graph inputs and constants, views feeding attention / linear / elementwise ops,
graph outputs that are views, liveness with aliases, and bad views naming the node."""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
FUSION = [True, False]


def f64(a):
    return np.asarray(a.numpy() if isinstance(a, lc.Tensor) else a, np.float64)


def softmax64(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention64(q, k, v, keep=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if keep is not None:
        s = np.where(keep[:, None, None, :] != 0, s, -np.inf)
    return softmax64(s) @ v


def run_all_ways(fn, args, ref, device, tol=2e-5):
    """fn compiled (fusion on and off) vs fn run eagerly on lc.Tensor args vs the float64 ref."""
    targs = [lc.Tensor(a, device=device) if isinstance(a, np.ndarray) else a for a in args]
    eager = fn(*targs)
    assert np.allclose(f64(eager), ref, rtol=tol, atol=tol), np.abs(f64(eager) - ref).max()
    for fusion in FUSION:
        c = lc.compile(fn, device=device, fusion=fusion)
        for _ in range(3):  # first run, the recording, a replay (GPU); the CPU runs it thrice
            got = c(*args)
            assert isinstance(got, np.ndarray) and got.shape == ref.shape, (got.shape, ref.shape)
            assert np.allclose(f64(got), ref, rtol=tol, atol=tol), (fusion, np.abs(f64(got) - ref).max())
        got_t = c(*targs)  # lc.Tensor in: lc.Tensor out
        assert np.allclose(f64(got_t), ref, rtol=tol, atol=tol)
        assert c.traces == 2  # numpy and lc.Tensor arguments are two signatures
    return c


def r(rng, *shape, scale=1.0, dtype=np.float32):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# ---- each view kind --------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_reshape_and_view_alias_feeding_elementwise(rng, device):
    x = r(rng, 3, 35)
    y = r(rng, 7, 15)

    def fn(x, y):
        return lc.add(x.reshape(7, 15), y.view(-1, 15))

    run_all_ways(fn, (x, y), f64(x).reshape(7, 15) + f64(y), device)
    g = lc.graph.trace(fn, x, y, device="cpu")
    # both reshapes alias their inputs: one step remains
    assert [s["op"] for s in g.plan_summary()["steps"]] == ["add"]


@pytest.mark.parametrize("device", DEVICES)
def test_permute_reshape_needs_one_copy(rng, device):
    # [B, H, S, D] -> permute -> [B, S, H*D]: no strides express it, so one copy step
    B, H, S, D = 2, 3, 5, 7
    a = r(rng, B, H, S, D)
    w = r(rng, 11, H * D, scale=0.3)

    def fn(a):
        return lc.linear(a.permute(0, 2, 1, 3).reshape(B, S, H * D), w)

    ref = f64(a).transpose(0, 2, 1, 3).reshape(B, S, H * D) @ f64(w).T
    run_all_ways(fn, (a,), ref, device)
    summary = lc.graph.trace(fn, a, device="cpu").plan_summary()
    assert [s["op"] for s in summary["steps"]] == ["reshape", "linear"]
    assert summary["view_aliases"] == 1 and summary["view_copies"] == 1
    assert "views: 1 alias(es)" in summary["text"]


@pytest.mark.parametrize("device", DEVICES)
def test_transpose_and_T_feeding_matmul(rng, device):
    a = r(rng, 13, 6)
    b = r(rng, 9, 13)

    def fn(a, b):
        return lc.matmul(a.T, b.transpose(0, 1))

    run_all_ways(fn, (a, b), f64(a).T @ f64(b).T, device, tol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("key", [
    (slice(1, 4),), (slice(None, None, 2),), (slice(-3, None),), (slice(2, 100),),
    (Ellipsis, slice(1, 6, 3)), (slice(None), 2), (-1,), (1, slice(0, 5)),
    (slice(0, 0),), (None, slice(1, 3)), (Ellipsis, None),
])
def test_getitem_kinds_of_intermediates(rng, device, key):
    x = r(rng, 5, 7)

    def fn(x):
        return lc.relu(lc.vector_scale(x, 2.0)[key])

    ref = np.maximum(2.0 * f64(x)[key], 0.0)
    run_all_ways(fn, (x,), ref, device)


@pytest.mark.parametrize("device", DEVICES)
def test_select_and_slice_on_every_axis_of_a_3d_input(rng, device):
    x = r(rng, 3, 4, 5)
    for axis in range(3):
        idx = [slice(None)] * 3
        idx[axis] = 1
        sl = [slice(None)] * 3
        sl[axis] = slice(1, None, 2)

        def fn(x, idx=tuple(idx), sl=tuple(sl)):
            return lc.add(x[sl], x[sl]), lc.relu(x[idx])

        c = lc.compile(fn, device=device)
        got_a, got_b = c(x)
        np.testing.assert_allclose(got_a, 2 * f64(x)[tuple(sl)], rtol=1e-6)
        np.testing.assert_allclose(got_b, np.maximum(f64(x)[tuple(idx)], 0), rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_contiguous_alias_or_copy(rng, device):
    x = r(rng, 4, 6)

    def fn(x):
        h = lc.relu(x)
        return lc.add(h.contiguous(), h), lc.vector_scale(h.T.contiguous(), 1.0)

    c = lc.compile(fn, device=device)
    a, b = c(x)
    h = np.maximum(f64(x), 0)
    np.testing.assert_allclose(a, 2 * h, rtol=1e-6)
    np.testing.assert_allclose(b, h.T, rtol=1e-6)
    ops = [s["op"] for s in c.graph(x).plan_summary()["steps"]]
    assert ops.count("contiguous") == 1  # h.contiguous() aliases, h.T.contiguous() copies


# ---- views feeding attention / linear; inputs, constants, outputs -------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused_qkv", [True, False])
def test_bert_attention_views_with_mask(rng, device, fused_qkv):
    B, S, H, D = 3, 7, 2, 5
    h = H * D
    x = r(rng, B, S, h)
    wqkv = r(rng, 3 * h, h, scale=h ** -0.5)
    bqkv = r(rng, 3 * h, scale=0.1)
    wo = r(rng, h, h, scale=h ** -0.5)
    keep = np.ones((B, S), np.int32)
    keep[0, 4:] = 0
    keep[2, 1:] = 0

    def fn(x, mask):
        qkv = lc.linear(x, wqkv, bqkv)
        if fused_qkv:
            q5 = qkv.view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)
            q, k, v = q5[0], q5[1], q5[2]
        else:
            q = qkv[:, :, 0:h].reshape(B, S, H, D).transpose(1, 2)
            k = qkv[..., h:2 * h].reshape(B, S, H, D).permute(0, 2, 1, 3)
            v = qkv[:, :, 2 * h:].reshape(B, S, H, D).permute(0, 2, 1, 3)
        a = lc.attention(q, k, v, mask=mask)
        return lc.linear(a.permute(0, 2, 1, 3).reshape(B, S, h), wo, residual=x)

    qkv = f64(x) @ f64(wqkv).T + f64(bqkv)
    q, k, v = (qkv[..., i * h:(i + 1) * h].reshape(B, S, H, D).transpose(0, 2, 1, 3) for i in range(3))
    a = attention64(q, k, v, keep).transpose(0, 2, 1, 3).reshape(B, S, h)
    ref = a @ f64(wo).T + f64(x)
    run_all_ways(fn, (x, keep), ref, device, tol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_views_of_constants_and_inputs_and_view_outputs(rng, device):
    table = r(rng, 11, 6)  # a constant the function closes over
    x = r(rng, 6, 4)

    def fn(x):
        pos = table[2:8]                       # a lc.Tensor/numpy slice: a constant
        y = lc.add(x.T.reshape(4, 6), pos[0:4])  # views of an input, of a constant
        return y[1:3], x.T, y                  # graph outputs that are views (and a root)

    got = lc.compile(fn, device=device)(x)
    y = f64(x).T + f64(table)[2:6]
    np.testing.assert_allclose(got[0], y[1:3], rtol=1e-6)
    np.testing.assert_allclose(got[1], f64(x).T)
    np.testing.assert_allclose(got[2], y, rtol=1e-6)

    def fn2(x, t):
        return lc.add(x.T, t[1:5, 0:6:1].T.T[:, :].reshape(4, 6))  # views of a graph input

    got2 = lc.compile(fn2, device=device)(x, table)
    np.testing.assert_allclose(got2, f64(x).T + f64(table)[1:5], rtol=1e-6)


def test_strided_lc_tensor_input_with_views(rng):
    x = r(rng, 8, 6)
    xt = lc.Tensor(x)[::2]  # a strided graph input: copied once, then viewed

    def fn(a):
        return lc.relu(a.reshape(-1))

    got = lc.compile(fn, device="cpu")(xt)
    np.testing.assert_allclose(got.numpy(), np.maximum(f64(x)[::2].reshape(-1), 0))


@pytest.mark.parametrize("device", DEVICES)
def test_size_one_and_zero_axes(rng, device):
    x = r(rng, 1, 5, 1)

    def fn(x):
        return lc.relu(x.reshape(5)), lc.relu(x.permute(2, 1, 0)[0]), lc.relu(x[:, 1:1, :])

    a, b, c = lc.compile(fn, device=device)(x)
    np.testing.assert_allclose(a, np.maximum(f64(x).reshape(5), 0))
    np.testing.assert_allclose(b, np.maximum(f64(x).transpose(2, 1, 0)[0], 0))
    assert c.shape == (1, 0, 1)
    z = r(rng, 0, 6)

    def fz(z):
        return lc.relu(z.reshape(3, 0, 2).permute(1, 0, 2))

    assert lc.compile(fz, device=device)(z).shape == (0, 3, 2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_views_in_half_precision(rng, device, dtype):
    import ml_dtypes  # noqa: F401  (numpy bfloat16)
    np_dt = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    x = r(rng, 6, 10).astype(np_dt)
    w = r(rng, 7, 5, scale=0.5).astype(np_dt)

    def fn(x):
        return lc.linear(x.reshape(12, 5)[1:11:3], w)

    ref = f64(x).reshape(12, 5)[1:11:3] @ f64(w).T
    for fusion in FUSION:
        got = lc.compile(fn, device=device, fusion=fusion)(x)
        assert np.allclose(f64(got), ref, rtol=3e-2, atol=3e-2)


# ---- liveness: a view keeps its root's memory ---------------------------------------------

def test_view_keeps_its_root_alive_in_the_arena(rng):
    n = 64
    x = r(rng, n, n, scale=0.2)
    ws = [r(rng, n, n, scale=n ** -0.5) for _ in range(4)]

    def fn(x):
        h = lc.relu(lc.linear(x, ws[0]))
        early = h[3:9].T                       # an alias of h, read only at the end
        y = x
        for w in ws[1:]:
            y = lc.gelu(lc.linear(y, w))       # would reuse h's bytes if h were dead
        return lc.add(y[:, 3:9], early.T.T)

    def ref():
        g = lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))  # noqa: E731
        h = np.maximum(f64(x) @ f64(ws[0]).T, 0)
        y = f64(x)
        for w in ws[1:]:
            y = g(y @ f64(w).T)
        return y[:, 3:9] + h[3:9].T

    for fusion in FUSION:
        c = lc.compile(fn, device="cpu", fusion=fusion)
        np.testing.assert_allclose(c(x), ref(), rtol=1e-4, atol=1e-4)
        s = c.graph(x).plan_summary()
        assert s["peak_bytes"] <= s["naive_bytes"]


def test_hand_built_view_nodes_and_explain(rng):
    g = lc.GraphIR()
    g.add_tensor((4, 6), "float32", "x")
    g.add_node("reshape", ["x"], ["x3"], {"shape": (2, 3, 4)}, name="r")
    g.add_node("permute", ["x3"], ["p"], {"dims": [2, 0, 1]}, name="p")
    g.add_node("select", ["p"], ["s"], {"dim": 1, "index": -1}, name="sel")
    g.add_node("slice", ["s"], ["sl"], {"dim": 0, "start": 1, "stop": None, "step": 2}, name="sl")
    g.add_node("transpose", ["sl"], ["t"], {"dim0": 0, "dim1": 1}, name="t")
    g.add_node("relu", ["t"], ["y"], name="act")
    g.validate()
    assert g.tensor_shape("sl") == (2, 3) and g.tensor_shape("t") == (3, 2)
    s = g.plan(device="cpu")
    assert [st["op"] for st in s["steps"]] == ["relu"]
    assert s["view_aliases"] == 5 and s["view_copies"] == 0
    x = r(rng, 4, 6)
    ref = np.maximum(f64(x).reshape(2, 3, 4).transpose(2, 0, 1)[:, -1][1::2].T, 0)
    np.testing.assert_allclose(g.execute({"x": x})["y"], ref)
    np.testing.assert_allclose(g.execute({"x": x}, execution_mode="eager")["y"], ref)


# ---- errors name the node ------------------------------------------------------------------

@pytest.mark.parametrize("bad, msg", [
    (lambda x: x.reshape(4, 4), "cannot reshape"),
    (lambda x: x.reshape(-1, -1), "only one dimension"),
    (lambda x: x.permute(0, 0), "repeat"),
    (lambda x: x.permute(0, 1, 2), "must name each"),
    (lambda x: x.transpose(0, 5), "out of range"),
    (lambda x: x[3], "out of range"),
    (lambda x: x[:, -4], "out of range"),
])
def test_bad_views_raise_value_error_naming_the_node(rng, bad, msg):
    x = r(rng, 3, 3)
    with pytest.raises(ValueError, match=r"node '\w+_\d+' \(\w+\): .*" + msg):
        lc.compile(lambda x: lc.relu(bad(x)), device="cpu")(x)
    # an index longer than the tensor fails before any node: it names the traced tensor
    with pytest.raises(ValueError, match=r"too many indices \(3\) for traced tensor 'arg0'"):
        lc.compile(lambda x: lc.relu(x[0, 0, 0]), device="cpu")(x)


NEG_SLICES = [
    lambda t: t[::-1], lambda t: t[:, ::-2], lambda t: t[3:0:-1, 1::2], lambda t: t[-1:-6:-2],
    lambda t: t[10:-10:-1], lambda t: t[::-1][::-1], lambda t: t[::-1].T, lambda t: t[2:2:-1],
    lambda t: t[::-1, ::-3][1:, ::-1],
]


@pytest.mark.parametrize("k", range(len(NEG_SLICES)))
def test_negative_slice_steps_are_views(rng, k):
    # numpy's basic slicing with a negative step, recorded as slice nodes with negative strides
    # (aliases: no copy step), read by the next op; numpy's clamping of out-of-range bounds
    view = NEG_SLICES[k]
    x = r(rng, 5, 7)
    f = lc.compile(lambda t: lc.relu(view(t)) + 0.5, device="cpu")
    y = f(x)
    np.testing.assert_array_equal(y, np.maximum(view(x), 0) + np.float32(0.5))
    plan = f.graph(x).plan_summary()
    views = {"slice", "reshape", "permute", "transpose", "contiguous", "select", "expand"}
    assert not views & {s["op"] for s in plan["steps"]}, plan["text"]  # aliases, no copy step
    np.testing.assert_array_equal(lc.compile(lambda t: lc.relu(view(t)) + 0.5, device="cpu",
                                             execution_mode="eager")(x), y)
    # by hand: start / stop None walk from the end, as Python's slice.indices
    g = lc.GraphIR()
    g.add_tensor((5, 7), "float32", "x")
    g.add_node("slice", ["x"], ["s"], {"dim": 1, "step": -2}, name="rev")
    g.add_node("relu", ["s"], ["y"], name="r")
    np.testing.assert_array_equal(g.execute({"x": x})["y"], np.maximum(x[:, ::-2], 0))


@pytest.mark.parametrize("device", DEVICES)
def test_negative_slice_steps_every_way(rng, device):
    # eager on lc.Tensor args, compiled with fusion on and off (on a GPU: recorded, replayed),
    # numpy and lc.Tensor arguments: reversed and strided views read by elementwise ops and a
    # linear
    x = r(rng, 6, 9)
    w = r(rng, 5, 9, scale=0.3)

    def fn(x):
        return lc.linear(lc.add(lc.vector_scale(lc.relu(x[::-1, ::-2]), 2.0), x[5::-1, 0:9:2]), w[:, ::-2])

    ref = (np.maximum(f64(x)[::-1, ::-2], 0) * 2 + f64(x)[5::-1, 0:9:2]) @ f64(w)[:, ::-2].T
    run_all_ways(fn, (x,), ref, device)


def test_bad_view_types_and_steps():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="step cannot be zero"):
        lc.compile(lambda x: lc.relu(x[::0]), device="cpu")(x)
    with pytest.raises(ValueError, match="cannot be broadcast"):  # index arrays gather (test_advanced_indexing.py)
        lc.compile(lambda x: lc.relu(x[[0, 1], [1, 2, 3]]), device="cpu")(x)
    with pytest.raises(TypeError, match="only basic indexing"):
        lc.compile(lambda x: lc.relu(x[0, 1.5]), device="cpu")(x)
    with pytest.raises(TypeError, match="expected an int"):
        lc.compile(lambda x: lc.relu(x.reshape(2.0, 6)), device="cpu")(x)
    g = lc.GraphIR()
    g.add_tensor((3, 4), "float32", "x")
    g.add_node("reshape", ["x"], ["y"], {"shape": (5, 2)}, name="bad_reshape")
    g.add_node("relu", ["y"], ["z"])
    rep = g.validate_report()
    assert rep[0]["pass"] == "shape" and rep[0]["node"] == "bad_reshape"
    assert "node 'bad_reshape' (reshape): cannot reshape" in rep[0]["message"]
    with pytest.raises(ValueError, match="bad_reshape"):
        g.plan(device="cpu")
    g2 = lc.GraphIR()
    g2.add_tensor((3, 4), "float32", "x")
    with pytest.raises(ValueError, match=r"node 's' \(slice\): step cannot be zero"):
        g2.add_node("slice", ["x"], ["y"], {"dim": 0, "step": 0}, name="s")
    with pytest.raises(TypeError, match="tuple of int"):
        g2.add_node("reshape", ["x"], ["y"], {"shape": 12}, name="r")
    with pytest.raises(ValueError, match="'shape' is required"):
        g2.add_node("reshape", ["x"], ["y"], {}, name="r2")


def test_shared_constants_are_not_copied(rng):
    w = lc.Tensor(r(rng, 5, 5))
    x = r(rng, 2, 5)
    f_copy = lc.compile(lambda x: lc.linear(x, w), device="cpu")
    f_share = lc.compile(lambda x: lc.linear(x, w), device="cpu", copy_constants=False)
    np.testing.assert_allclose(f_copy(x), f_share(x), rtol=1e-6)
