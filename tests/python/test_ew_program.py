"""lc.elementwise_program (one kernel evaluating a small program per element) and the graph's
elementwise_chain fusion rule (issue #14): every instruction against float64 numpy, broadcasting
(bias [N], scalar, [1, N], [M, 1]), storage dtypes, sizes 0 / 1 / prime / > 1M, non-contiguous
inputs (read in place through their strides), poisoned outputs, invalid programs, and fused vs
unfused compiled functions. Runs on every backend present (CUDA cases need a GPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lightning_core as lc

from conftest import backends
from dtype_util import TOL, np_dtype as npdt

ml_dtypes = pytest.importorskip("ml_dtypes")

_erf = np.vectorize(math.erf, otypes=[np.float64])


def f64(x):
    return np.asarray(x.numpy() if isinstance(x, lc.Tensor) else x).astype(np.float64)


def T(x, device):
    x = np.asarray(x)
    name = "bfloat16" if x.dtype == ml_dtypes.bfloat16 else x.dtype.name
    return lc.Tensor(x, device=device, dtype=name)


def check(got, ref, dtype, tol=None):
    got = np.asarray(got.numpy() if isinstance(got, lc.Tensor) else got)
    assert got.dtype == npdt(dtype), (got.dtype, dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    tol = TOL[dtype] if tol is None else tol
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=tol, atol=tol)


def sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "tanh": np.tanh, "sigmoid": sigmoid64,
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3))),
    "gelu_erf": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "silu": lambda x: x * sigmoid64(x),
}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "max": np.maximum, "min": np.minimum}
POSITIVE = {"log", "sqrt", "rsqrt"}


def operands(rng, op, shape, dtype):
    if op in POSITIVE:
        x = rng.uniform(0.1, 4.0, size=shape)
    else:
        x = rng.uniform(-3.0, 3.0, size=shape)
    y = rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x.astype(npdt(dtype)), y.astype(npdt(dtype))


# ---- every instruction -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("op", list(UNARY) + list(BINARY))
def test_every_instruction(rng, backend, op, dtype):
    if dtype == "float64" and backend == "cuda":
        pytest.skip("float64 runs on the CPU")
    x, y = operands(rng, op, (5, 37), dtype)
    if op in UNARY:
        got = lc.elementwise_program(f"{op} x0", T(x, backend), device=backend)
        ref = UNARY[op](f64(x))
    else:
        got = lc.elementwise_program(f"{op} x0 x1", T(x, backend), T(y, backend), device=backend)
        ref = BINARY[op](f64(x), f64(y))
    # float32 results: a few ulp of the float64 reference (gelu_erf / rsqrt are approximations)
    check(got, ref, dtype, tol=5e-5 if dtype == "float32" and op in ("gelu_erf", "rsqrt") else None)


def test_constants_and_a_dag(rng, backend):
    x = rng.standard_normal((3, 41)).astype(np.float32)
    b = rng.standard_normal(41).astype(np.float32)
    # y = (x * sigmoid(x) + b) * 0.5 - 2.5e-1, max with -1; t0 is read twice
    prog = "sigmoid x0; mul x0 t0; add t1 x1; mul t2 0.5; sub t3 2.5e-1; max t4 -1"
    got = lc.elementwise_program(prog, T(x, backend), T(b, backend), device=backend)
    ref = np.maximum((f64(x) * sigmoid64(f64(x)) + b) * 0.5 - 0.25, -1.0)
    check(got, ref, "float32")


def test_nan_propagates_through_max_min_relu():
    x = np.array([np.nan, 1.0, -2.0], np.float32)
    y = np.array([0.0, np.nan, -3.0], np.float32)
    out = lc.elementwise_program("max x0 x1; min x0 x1; add t0 t1; relu t2", x, y)
    assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] == 0.0


# ---- broadcasting, dtypes, sizes, strides ------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_broadcasting(rng, backend, dtype):
    m, n = 7, 29
    x = rng.standard_normal((m, n)).astype(npdt(dtype))
    bias = rng.standard_normal(n).astype(npdt(dtype))           # [N]
    scal = np.asarray(rng.standard_normal(()), npdt(dtype))    # 0-d scalar
    row = rng.standard_normal((1, n)).astype(npdt(dtype))      # [1, N]
    col = rng.standard_normal((m, 1)).astype(npdt(dtype))      # [M, 1]
    one = rng.standard_normal((1,)).astype(npdt(dtype))        # [1]
    ins = [x, bias, scal, row, col, one]
    prog = "add x0 x1; mul t0 x2; sub t1 x3; div t2 2; add t3 x4; mul t4 x5; gelu t5"
    got = lc.elementwise_program(prog, *[T(a, backend) for a in ins], device=backend)
    X = [f64(a) for a in ins]
    ref = UNARY["gelu"]((((X[0] + X[1]) * X[2] - X[3]) / 2 + X[4]) * X[5])
    check(got, ref, dtype, tol=2e-2 if dtype != "float32" else None)


def test_result_shape_is_the_broadcast_of_all_inputs(rng, backend):
    a = rng.standard_normal(6).astype(np.float32)          # [N]
    b = rng.standard_normal((4, 1)).astype(np.float32)     # [M, 1]
    c = rng.standard_normal((2, 1, 1)).astype(np.float32)  # [B, 1, 1]
    got = lc.elementwise_program("add x0 x1; mul t0 x2", T(a, backend), T(b, backend), T(c, backend),
                                 device=backend)
    check(got, (f64(a) + f64(b)) * f64(c), "float32")
    assert lc.op_infer("elementwise_program", [(6,), (4, 1), (2, 1, 1)])[0] == (2, 4, 6)


def test_mixed_input_dtypes_result_takes_x0s(rng, backend):
    x = rng.standard_normal((3, 17)).astype(np.float16)
    y = rng.standard_normal((3, 17)).astype(np.float32)
    z = rng.standard_normal(17).astype(ml_dtypes.bfloat16)
    got = lc.elementwise_program("mul x0 x1; add t0 x2", T(x, backend), T(y, backend), T(z, backend),
                                 device=backend)
    check(got, f64(x) * f64(y) + f64(z), "float16")


def test_float64_computes_in_float64(rng):
    x = rng.standard_normal((4, 13))
    b = rng.standard_normal(13)
    got = lc.elementwise_program("tanh x0; mul t0 x1; exp t1; log t2", x, b)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.tanh(x) * b, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("n", [0, 1, 7919, (1 << 20) + 3])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sizes(rng, backend, n, dtype):
    x = rng.standard_normal(n).astype(npdt(dtype))
    y = rng.standard_normal(n).astype(npdt(dtype))
    prog = "sub x0 x1; mul t0 x0; relu t1; add t2 1; sqrt t3"
    got = lc.elementwise_program(prog, T(x, backend), T(y, backend), device=backend)
    ref = np.sqrt(np.maximum((f64(x) - f64(y)) * f64(x), 0) + 1)
    check(got, ref, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_unaligned_inputs(rng, backend, dtype):
    # offsets of one element: the CUDA kernel's scalar path (no vector loads)
    base = rng.standard_normal(1001).astype(npdt(dtype))
    t = T(base, backend)
    a, b = t[1:], t[:-1]
    got = lc.elementwise_program("mul x0 x1; exp t0", a, b, device=backend)
    check(got, np.exp(f64(base[1:]) * f64(base[:-1])), dtype)


def test_non_contiguous_inputs_are_read_through_their_strides(rng, backend):
    x = rng.standard_normal((9, 14)).astype(np.float32)
    y = rng.standard_normal((14, 9)).astype(np.float32)
    z = rng.standard_normal((9, 28)).astype(np.float32)
    tx, ty, tz = T(x, backend), T(y, backend), T(z, backend)
    yt = ty.transpose(0, 1)   # [9, 14], strides (1, 9)
    zs = tz[:, ::2]          # [9, 14], a column stride of 2
    got = lc.elementwise_program("add x0 x1; mul t0 x2; tanh t1", tx, yt, zs, device=backend)
    check(got, np.tanh((f64(x) + f64(y).T) * f64(z)[:, ::2]), "float32")
    # numpy views too
    got = lc.elementwise_program("add x0 x1; mul t0 x2; tanh t1", x, y.T, z[:, ::2])
    check(got, np.tanh((f64(x) + f64(y).T) * f64(z)[:, ::2]), "float32")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_poisoned_output_is_fully_written(rng, backend, dtype):
    for shape, bshape in [((33, 65), (65,)), ((4097,), (4097,)), ((4099,), ())]:
        x = rng.standard_normal(shape).astype(npdt(dtype))
        b = rng.standard_normal(bshape).astype(npdt(dtype))
        out = T(np.full(shape, np.nan, npdt(dtype)), backend)
        r = lc.elementwise_program_into("silu x0; add t0 x1", T(x, backend), out, T(b, backend),
                                        device=backend)
        assert r is out
        check(out, UNARY["silu"](f64(x)) + f64(b), dtype)


def test_numpy_out_and_aliasing(rng):
    x = rng.standard_normal((6, 10)).astype(np.float32)
    ref = np.exp(-f64(x)) + f64(x)
    out = x.copy()
    lc.elementwise_program_into("neg x0; exp t0; add t1 x0", out, out)  # out is its own input
    np.testing.assert_allclose(out, ref, rtol=1e-5)


def test_large_multi_block(rng, backend):
    m, n = 1024, 1031  # > 1M elements, a bias row: the strided path with many blocks
    x = rng.standard_normal((m, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    got = lc.elementwise_program("add x0 x1; sigmoid t0; mul t0 t1", T(x, backend), T(b, backend),
                                 device=backend)
    v = f64(x) + f64(b)
    check(got, v * sigmoid64(v), "float32")


@pytest.mark.gpu
def test_cuda_result_stays_resident(rng):
    x = rng.standard_normal((64, 65)).astype(np.float32)
    t = lc.Tensor(x, device="cuda")
    keep = lc.ExecutionPolicy(device="cuda", download=False)
    r = lc.elementwise_program("relu x0; exp t0", t, policy=keep)
    assert r.device == "cuda"
    check(r, np.exp(np.maximum(f64(x), 0)), "float32")


# ---- bad programs and arguments ----------------------------------------------------------------


@pytest.mark.parametrize("prog,msg", [
    ("", "empty"),
    ("  ;  ", "empty"),
    ("foo x0", "unknown op 'foo'"),
    ("add x0", "takes 2 operand"),
    ("relu x0 x1", "takes 1 operand"),
    ("relu t0", "earlier instruction"),
    ("relu x0; add t0 t1", "earlier instruction"),
    ("relu x6", "out of range"),
    ("relu y0", "neither"),
    ("relu 1.5e", "neither"),
    ("; ".join(["neg x0"] + ["neg t%d" % i for i in range(16)]), "more than 16 instructions"),
    ("; ".join(["add x0 %d" % 1] + ["add t%d %d" % (i, i + 2) for i in range(8)]), "more than 8"),
])
def test_invalid_programs_raise_value_error(prog, msg):
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="elementwise_program") as e:
        lc.elementwise_program(prog, x)
    assert msg in str(e.value), str(e.value)


def test_bad_arguments():
    x = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match="reads x1 but 1 input"):
        lc.elementwise_program("add x0 x1", x)
    with pytest.raises(ValueError, match="without gaps"):
        lc.elementwise_program("add x0 x2", x, None, x)
    with pytest.raises(TypeError, match="elementwise_program"):
        lc.elementwise_program("relu x0", np.ones(4, np.int32))
    with pytest.raises(ValueError, match=r"cannot be broadcast"):
        lc.elementwise_program("add x0 x1", x, np.ones(3, np.float32))
    out = np.full((4, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        lc.elementwise_program_into("relu x0", x, out)
    assert np.all(out == 7.0)  # nothing written
    with pytest.raises(TypeError):
        lc.elementwise_program_into("relu x0", x, np.zeros((4, 5), np.float64))
    with pytest.raises(TypeError):
        lc.elementwise_program(3, x)


def test_registry_entry():
    info = lc.op_info("elementwise_program")
    assert [i["name"] for i in info["inputs"]] == ["x0", "x1", "x2", "x3", "x4", "x5"]
    assert info["attributes"]["program"]["required"]
    assert "float64" in info["dtypes"]["cpu"] and "float64" not in info["dtypes"]["cuda"]


def test_graph_node_with_a_bad_program_names_the_node():
    g = lc.GraphIR()
    g.add_tensor((4,), "float32", "x")
    with pytest.raises(ValueError, match=r"node 'p' \(elementwise_program\).*unknown op 'nope'"):
        g.add_node("elementwise_program", ["x"], ["y"], {"program": "nope x0"}, name="p")
    with pytest.raises(ValueError, match=r"node 'q' \(elementwise_program\).*reads x1"):
        g.add_node("elementwise_program", ["x"], ["y"], {"program": "add x0 x1"}, name="q")


# ---- the graph rule: elementwise_chain ---------------------------------------------------------


# The rule is on by default (include/lightning_core/graph.h); these tests name it explicitly.
ON = {"elementwise_chain": True}


def test_rule_is_on_by_default(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    for fusion in (None, True, ON):
        c = lc.compile(gelu_bias_mul, device="cpu") if fusion is None else \
            lc.compile(gelu_bias_mul, device="cpu", fusion=fusion)
        assert steps(c, x, x[0], x) == ["elementwise_program"], fusion
    for fusion in (False, {"elementwise_chain": False}):
        c = lc.compile(gelu_bias_mul, device="cpu", fusion=fusion)
        assert "elementwise_program" not in steps(c, x, x[0], x), fusion


def steps(fn, *args, **kw):
    return [s["op"] for s in fn.graph(*args).plan_summary()["steps"]]


def chain_reports(fn, *args):
    return [r for r in fn.graph(*args).fusion_report() if r["rule"] == "elementwise_chain"]


def swish_bias(x, b):
    return x * lc.elementwise_program("sigmoid x0", x) + b


def relu_exp(a, b, c):
    return lc.elementwise_program("exp x0", lc.relu(lc.mul(lc.sub(a, b), c)))


def gelu_bias_mul(x, bias, y):
    return lc.gelu(x + bias) * y


CASES = [
    (swish_bias, lambda X: X[0] * sigmoid64(X[0]) + X[1], [(33, 70), (70,)]),
    (relu_exp, lambda X: np.exp(np.maximum((X[0] - X[1]) * X[2], 0)), [(5, 7, 11), (7, 1), (11,)]),
    (gelu_bias_mul, lambda X: UNARY["gelu"](X[0] + X[1]) * X[2], [(16, 24), (24,), (16, 24)]),
]


@pytest.mark.parametrize("device", backends)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fused_and_unfused_agree(rng, case, device, dtype):
    fn, ref_fn, shapes = CASES[case]
    args = [(rng.standard_normal(s) * 0.7).astype(npdt(dtype)) for s in shapes]
    fused = lc.compile(fn, device=device, fusion=ON)
    off = lc.compile(fn, device=device, fusion={"elementwise_chain": False})
    assert steps(fused, *args) == ["elementwise_program"]
    assert len(steps(off, *args)) >= 3
    rep = chain_reports(fused, *args)
    assert len(rep) == 1 and rep[0]["applied"], rep
    assert "one kernel" in rep[0]["reason"]
    rep_off = chain_reports(off, *args)
    assert rep_off and not rep_off[0]["applied"] and rep_off[0]["reason"] == "switched off"
    assert "elementwise_chain" in fused.explain()
    ref = ref_fn([f64(a) for a in args])
    y_f, y_o = fused(*args), off(*args)
    # fused keeps float32 intermediates; unfused rounds each one to the storage dtype
    tol = {"float32": 1e-5, "float16": 2e-2, "bfloat16": 5e-2}[dtype]
    check(y_f, ref, dtype, tol)
    check(y_o, ref, dtype, tol)
    # the fused plan's eager mode too
    g = fused.graph(*args)
    names = g.inputs
    check(g.execute(dict(zip(names, args)), execution_mode="eager")[g.outputs[0]], ref, dtype, tol)


def test_rule_does_not_steal_from_the_linear_epilogue_or_layernorm(rng):
    x = rng.standard_normal((8, 16)).astype(np.float32)
    w = (rng.standard_normal((24, 16)) * 0.25).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    y = rng.standard_normal((8, 24)).astype(np.float32)
    r = rng.standard_normal((8, 24)).astype(np.float32)

    def f(x, y, r):
        h = lc.gelu(lc.linear(x, w) + b) * y   # bias + gelu go into the GEMM; the mul stays
        return lc.layernorm(h + r) * 2.0       # the add goes into the layernorm

    c = lc.compile(f, device="cpu", fusion=ON)
    assert steps(c, x, y, r) == ["linear", "mul", "layernorm", "vector_scale"]
    rules = {e["rule"] for e in c.graph(x, y, r).fusion_report() if e["applied"]}
    assert {"linear_epilogue", "residual_layernorm"} <= rules and "elementwise_chain" not in rules
    h = UNARY["gelu"](f64(x) @ f64(w).T + b) * y + r
    mu = h.mean(-1, keepdims=True)
    ref = (h - mu) / np.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * 2.0
    check(c(x, y, r), ref, "float32", 1e-4)


def test_intermediate_used_twice_is_reported(rng):
    a = rng.standard_normal((4, 9)).astype(np.float32)
    b = rng.standard_normal((4, 9)).astype(np.float32)

    def f(a, b):
        h = lc.sub(a, b)
        return lc.relu(lc.mul(h, a)), lc.gelu(h)

    c = lc.compile(f, device="cpu", fusion=ON)
    rep = chain_reports(c, a, b)
    reasons = " | ".join(r["reason"] for r in rep)
    assert "used twice" in reasons, rep
    assert any(r["applied"] for r in rep)          # relu(mul(.)) still fuses
    assert steps(c, a, b).count("elementwise_program") == 1
    y1, y2 = c(a, b)
    h = f64(a) - f64(b)
    check(y1, np.maximum(h * f64(a), 0), "float32")
    check(y2, UNARY["gelu"](h), "float32")


def test_graph_output_intermediate_is_not_fused(rng):
    a = rng.standard_normal(10).astype(np.float32)

    def f(a):
        h = lc.relu(a)
        return h, lc.gelu(h)

    c = lc.compile(f, device="cpu", fusion=ON)
    rep = chain_reports(c, a)
    assert rep and not rep[0]["applied"] and "graph output" in rep[0]["reason"], rep
    assert steps(c, a) == ["relu", "gelu"]


def test_more_than_six_inputs_splits_the_chain(rng):
    xs = [rng.standard_normal(12).astype(np.float32) for _ in range(8)]

    def f(*xs):
        acc = xs[0]
        for x in xs[1:]:
            acc = lc.add(acc, x)
        return acc

    c = lc.compile(f, device="cpu", fusion=ON)
    rep = chain_reports(c, *xs)
    assert any("more than 6 inputs" in r["reason"] for r in rep), rep
    assert steps(c, *xs) == ["elementwise_program", "elementwise_program"]
    check(c(*xs), sum(f64(x) for x in xs), "float32")


def test_sixteen_instruction_limit(rng):
    x = rng.standard_normal(20).astype(np.float32)

    def f(x):
        for _ in range(20):
            x = lc.relu(x)
        return x

    c = lc.compile(f, device="cpu", fusion=ON)
    assert any("more than 16 instructions" in r["reason"] for r in chain_reports(c, x))
    assert steps(c, x) == ["elementwise_program", "elementwise_program"]
    check(c(x), np.maximum(f64(x), 0), "float32")


def test_scale_and_neg_become_constants(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)

    def f(x):
        return lc.relu(-(x * 3.0) + x) * 0.5

    c = lc.compile(f, device="cpu", fusion=ON)
    assert steps(c, x) == ["elementwise_program"]
    prog = c.graph(x).plan_summary()["steps"][0]
    check(c(x), np.maximum(-(f64(x) * 3.0) + f64(x), 0) * 0.5, "float32")
    assert prog["op"] == "elementwise_program"


def test_graph_ir_by_hand_and_switch(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    g = lc.GraphIR()
    g.add_tensor(x.shape, "float32", "x")
    g.add_tensor(b.shape, "float32", "b", True, value=b)
    g.add_node("add", ["x", "b"], ["h"], name="bias")
    g.add_node("elementwise_program", ["h"], ["s"], {"program": "silu x0"}, name="act")
    g.add_node("vector_scale", ["s"], ["y"], {"alpha": -2.0}, name="scale")
    s = g.plan("cpu", fusion=ON)
    assert [(st["op"], st["name"]) for st in s["steps"]] == [("elementwise_program", "scale")]
    assert s["steps"][0]["fused"] == ["bias", "act"]
    rep = g.fusion_report()
    assert rep[0]["rule"] == "elementwise_chain" and rep[0]["applied"]
    assert rep[0]["nodes"] == ["scale", "bias", "act"]
    assert "add x0 x1; silu t0; mul t1 -2" in rep[0]["reason"], rep[0]["reason"]
    ref = UNARY["silu"](f64(x) + b) * -2.0
    check(g.execute({"x": x})["y"], ref, "float32")
    s = g.plan("cpu", fusion={"elementwise_chain": False})
    assert [st["op"] for st in s["steps"]] == ["add", "elementwise_program", "vector_scale"]
    check(g.execute({"x": x})["y"], ref, "float32")
    s = g.plan("cpu", fusion=False)
    assert len(s["steps"]) == 3
    with pytest.raises(ValueError, match="elementwise_chain"):
        g.plan("cpu", fusion={"elementwise_chian": False})


@pytest.mark.gpu
def test_cuda_graph_replay_of_a_fused_chain(rng):
    x = rng.standard_normal((256, 384)).astype(np.float32)
    b = rng.standard_normal(384).astype(np.float32)
    c = lc.compile(gelu_bias_mul, device="cuda", fusion=ON)
    y = rng.standard_normal((256, 384)).astype(np.float32)
    ref = UNARY["gelu"](f64(x) + b) * f64(y)
    for _ in range(3):  # eager warm-up, record, replay
        check(c(x, b, y), ref, "float32")
    assert steps(c, x, b, y) == ["elementwise_program"]


# ---- the register-allocated CUDA kernel / vectorised CPU loops: every path ---------------------

CHAIN6 = "mul x0 x1; add t0 x0; gelu t1; sub t2 x1; relu t3; mul t4 0.5"


def chain6_ref(x, y):
    u = x * y + x
    return np.maximum(UNARY["gelu"](u) - y, 0.0) * 0.5


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 9, 31, 4097])
def test_vector_widths_tails_and_offsets(rng, backend, dtype, n):
    if dtype == "float64" and backend != "cpu":
        pytest.skip("float64 runs on the CPU")
    base_x = rng.standard_normal(n + 3).astype(npdt(dtype))
    base_y = rng.standard_normal(n + 3).astype(npdt(dtype))
    tx, ty = T(base_x, backend), T(base_y, backend)
    # (x offset, y offset): both aligned, one misaligned by 1 or 3 elements, both misaligned
    for ox, oy in [(0, 0), (1, 0), (0, 3), (1, 2)]:
        x, y = tx[ox:ox + n], ty[oy:oy + n]
        out = T(np.full(n, np.nan, npdt(dtype)), backend)
        lc.elementwise_program_into(CHAIN6, x, out, y, device=backend)
        check(out, chain6_ref(f64(base_x[ox:ox + n]), f64(base_y[oy:oy + n])), dtype,
              tol=2 * TOL[dtype])


MAX_PROGRAM = ("mul x0 0.5; add t0 x1; mul t1 1.5; sub t2 x2; max t3 -0.25; min t4 2.5; mul t5 x3; "
               "add t6 0.125; tanh t7; mul t8 x4; sub t9 0.75; sigmoid t10; mul t11 x5; add t12 3; "
               "abs t13; mul t14 0.5")


def max_program_ref(x):
    t = x[0] * 0.5 + x[1]
    t = np.minimum(np.maximum(t * 1.5 - x[2], -0.25), 2.5)
    t = np.tanh(t * x[3] + 0.125)
    t = sigmoid64(t * x[4] - 0.75)
    return np.abs(t * x[5] + 3.0) * 0.5


WIDE_DAG = ("neg x0; abs x1; relu x2; tanh x3; sigmoid x4; silu x5; add t0 t1; add t2 t3; add t4 t5; "
            "add t6 t7; add t8 t9; mul t10 x0; sub t11 x5; add t12 x3; mul t13 x1; add t14 x2")


def wide_dag_ref(x):
    s = (-x[0] + np.abs(x[1])) + (np.maximum(x[2], 0) + np.tanh(x[3])) + \
        (sigmoid64(x[4]) + UNARY["silu"](x[5]))
    return ((s * x[0] - x[5]) + x[3]) * x[1] + x[2]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("prog,ref", [(MAX_PROGRAM, max_program_ref), (WIDE_DAG, wide_dag_ref)],
                         ids=["16-instructions-6-inputs-8-constants", "11-live-values"])
def test_largest_programs(rng, backend, dtype, prog, ref):
    if dtype == "float64" and backend != "cpu":
        pytest.skip("float64 runs on the CPU")
    for n in (1, 13, 5003):
        xs = [rng.uniform(-1.5, 1.5, n).astype(npdt(dtype)) for _ in range(6)]
        out = T(np.full(n, np.nan, npdt(dtype)), backend)
        lc.elementwise_program_into(prog, T(xs[0], backend), out, *[T(v, backend) for v in xs[1:]],
                                    device=backend)
        check(out, ref([f64(v) for v in xs]), dtype, tol=4 * TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("cols", [1, 3, 5, 67])
def test_broadcast_next_to_contiguous_operands(rng, backend, dtype, cols):
    # x, z contiguous with the result (vector loads on CUDA's general path), b [cols] and
    # c [rows, 1] gathered; inner sizes that are not multiples of the vector width
    rows = 37
    x = rng.standard_normal((rows, cols)).astype(npdt(dtype))
    b = rng.standard_normal(cols).astype(npdt(dtype))
    c = rng.standard_normal((rows, 1)).astype(np.float32)
    z = rng.standard_normal((rows, cols)).astype(npdt(dtype))
    out = T(np.full((rows, cols), np.nan, npdt(dtype)), backend)
    lc.elementwise_program_into("add x0 x1; mul t0 x2; gelu t1; sub t2 x3", T(x, backend), out,
                                T(b, backend), T(c, backend), T(z, backend), device=backend)
    check(out, UNARY["gelu"]((f64(x) + f64(b)) * f64(c)) - f64(z), dtype, tol=2 * TOL[dtype])


def test_transcendentals_at_the_edges(backend):
    # exp overflow -> inf, gradual underflow, log of 0 / negatives / denormals / inf, NaN kept
    x = np.array([-110, -104, -100, -88, -20, -1e-3, 0, 1e-3, 1, 20, 88, 88.7, 88.8, 100,
                  np.inf, -np.inf, np.nan], np.float32)
    with np.errstate(all="ignore"):
        got = lc.elementwise_program("exp x0", T(x, backend), device=backend).numpy()
        want = np.exp(x.astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=3e-45)
        got = lc.elementwise_program("tanh x0", T(x, backend), device=backend).numpy()
        np.testing.assert_allclose(got, np.tanh(x.astype(np.float64)).astype(np.float32), rtol=2e-6,
                                   atol=1e-37)
        pos = np.array([0, -1, 1e-40, 1e-30, 0.5, 1, 2, 1e30, 3.4e38, np.inf, np.nan], np.float32)
        got = lc.elementwise_program("log x0", T(pos, backend), device=backend).numpy()
        want = np.log(pos.astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)


def test_chain_cost_check_reports_fusion(rng):
    # the rule fuses a 6-node chain (>= 2 nodes, 3 slots: within the budget) and says so
    x = rng.standard_normal((64, 64)).astype(np.float32)
    y = rng.standard_normal((64, 64)).astype(np.float32)

    def fn(a, b):
        return lc.relu(lc.sub(lc.gelu(lc.add(lc.mul(a, b), a)), b)) * 0.5

    c = lc.compile(fn, device="cpu", fusion={"elementwise_chain": True})
    rep = [r for r in c.graph(x, y).fusion_report() if r["rule"] == "elementwise_chain"]
    assert any(r["applied"] for r in rep), rep
    np.testing.assert_allclose(f64(c(x, y)), chain6_ref(f64(x), f64(y)), rtol=2e-5, atol=2e-5)
