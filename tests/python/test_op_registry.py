"""The op registry from Python: lc.ops() (every registered op, the Graph IR's op list),
lc.op_info(name) (family, inputs, outputs, attributes with defaults, dtypes per backend),
lc.op_infer(name, shapes) (the registry's shape/dtype inference), and the bindings built from
one definition per op: every op function keeps its `_into` twin and exactly the signature it had
before the registry (names, argument names, order, defaults)."""

from __future__ import annotations

import ast
import math
import re

import numpy as np
import pytest

import lightning_core as lc

# The signature line (first line of __doc__) of every op function before the bindings were
# generated from one definition per op (commit d74620e): the returning and `_into` forms, with the
# keyword-only arguments added since (layernorm residual=, softmax scale= / mask=).
SIGNATURES_BEFORE = [
    'matmul2d(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'matmul2d_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'matmul(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'matmul_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    "linear(x: object | None, weight: object | None, bias: object | None = None, activation: object | None = 'none', device: object | None = None, *, residual: object | None = None, policy: object | None = None) -> object",
    "linear_into(x: object | None, weight: object | None, bias: object | None, out: object | None, activation: object | None = 'none', device: object | None = None, *, residual: object | None = None, policy: object | None = None) -> object",
    'attention2d(q: object | None, k: object | None, v: object | None, causal: object | None = False, device: object | None = None, *, scale: object | None = None, policy: object | None = None) -> object',
    'attention2d_into(q: object | None, k: object | None, v: object | None, out: object | None, causal: object | None = False, device: object | None = None, *, scale: object | None = None, policy: object | None = None) -> object',
    "conv2d_nchw(x: object | None, weight: object | None, bias: object | None = None, stride_h: object | None = 1, stride_w: object | None = 1, pad_h: object | None = 0, pad_w: object | None = 0, device: object | None = None, *, activation: object | None = 'none', policy: object | None = None) -> object",
    "conv2d_nchw_into(x: object | None, weight: object | None, bias: object | None, out: object | None, stride_h: object | None = 1, stride_w: object | None = 1, pad_h: object | None = 0, pad_w: object | None = 0, device: object | None = None, *, activation: object | None = 'none', policy: object | None = None) -> object",
    'layernorm(x: object | None, gamma: object | None = None, beta: object | None = None, eps: object | None = 9.999999747378752e-06, device: object | None = None, *, residual: object | None = None, policy: object | None = None) -> object',
    'layernorm_into(x: object | None, gamma: object | None, beta: object | None, out: object | None, eps: object | None = 9.999999747378752e-06, device: object | None = None, *, residual: object | None = None, policy: object | None = None) -> object',
    'softmax(x: object | None, device: object | None = None, *, scale: object | None = None, mask: object | None = None, policy: object | None = None) -> object',
    'softmax_into(x: object | None, out: object | None, device: object | None = None, *, scale: object | None = None, mask: object | None = None, policy: object | None = None) -> object',
    'vector_add(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_add_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_sub(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_sub_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_mul(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_mul_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'matrix_sub(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'matrix_sub_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_scale(a: object | None, alpha: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'vector_scale_into(a: object | None, alpha: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'relu(a: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'relu_into(a: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    "gelu(a: object | None, device: object | None = None, *, approximate: object | None = 'tanh', policy: object | None = None) -> object",
    "gelu_into(a: object | None, out: object | None, device: object | None = None, *, approximate: object | None = 'tanh', policy: object | None = None) -> object",
    'add(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'add_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'sub(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'sub_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'mul(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'mul_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'div(a: object | None, b: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'div_into(a: object | None, b: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'embedding(ids: object | None, weight: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    'embedding_into(ids: object | None, weight: object | None, out: object | None, device: object | None = None, *, policy: object | None = None) -> object',
    "conv_attention_nchw(x: object | None, w: object | None, b: object | None, seq_len: object | None, head_dim: object | None, stride_h: object | None = 1, stride_w: object | None = 1, pad_h: object | None = 0, pad_w: object | None = 0, device: object | None = None, *, activation: object | None = 'relu', causal: object | None = False, scale: object | None = None, graph: object | None = False, policy: object | None = None) -> object",
    "conv_attention_nchw_into(x: object | None, w: object | None, b: object | None, out: object | None, seq_len: object | None, head_dim: object | None, stride_h: object | None = 1, stride_w: object | None = 1, pad_h: object | None = 0, pad_w: object | None = 0, device: object | None = None, *, activation: object | None = 'relu', causal: object | None = False, scale: object | None = None, graph: object | None = False, policy: object | None = None) -> object",
    # Bound by hand until conv_attention_nchw and attention moved to def_op too (commit dcf560c).
    'attention(q: object | None, k: object | None, v: object | None, *, causal: object | None = False, mask: object | None = None, scale: object | None = None, return_lse: object | None = False, device: object | None = None, policy: object | None = None) -> object',
    'attention_into(q: object | None, k: object | None, v: object | None, out: object | None, *, causal: object | None = False, mask: object | None = None, scale: object | None = None, return_lse: object | None = False, device: object | None = None, policy: object | None = None) -> object',
]

# Every op function that had an `_into` twin before the registry.
HAD_INTO = [
    "matmul2d", "matmul", "linear", "attention2d", "conv2d_nchw", "layernorm", "softmax",
    "vector_add", "vector_sub", "vector_mul", "matrix_sub", "vector_scale", "relu", "gelu",
    "add", "sub", "mul", "div", "embedding", "conv_attention_nchw", "attention",
]

FAMILIES = {"matmul", "attention", "conv2d", "norm", "elementwise"}
EXECUTION_PARAMS = {"device", "policy", "out"}  # per-call execution, not op attributes


def signature_line(fn) -> str:
    return fn.__doc__.split("\n")[0]


def parameters(fn) -> list[tuple[str, object, bool]]:
    """(name, default or _REQUIRED, keyword_only) from the nanobind signature line."""
    line = signature_line(fn)
    inner = line[line.index("(") + 1: line.rindex(") ->")]
    params, kw_only = [], False
    for part in re.split(r", (?=(?:[A-Za-z_]\w*:|\*))", inner):
        if part == "*":
            kw_only = True
            continue
        name, rest = part.split(":", 1)
        default = ast.literal_eval(rest.split(" = ", 1)[1]) if " = " in rest else _REQUIRED
        params.append((name.strip(), default, kw_only))
    return params


_REQUIRED = object()


def test_ops_lists_every_op_once():
    names = lc.ops()
    assert isinstance(names, list) and all(isinstance(n, str) for n in names)
    assert len(names) == len(set(names))
    assert set(HAD_INTO) <= set(names)
    for n in names:  # every registered op is a public function
        assert callable(getattr(lc, n)), n


@pytest.mark.parametrize("name", HAD_INTO)
def test_every_op_keeps_its_into_twin(name):
    assert callable(getattr(lc, name))
    assert callable(getattr(lc, name + "_into"))


def test_signatures_unchanged():
    now = {}
    for line in SIGNATURES_BEFORE:
        name = line[: line.index("(")]
        now[name] = signature_line(getattr(lc, name))
    assert [now[l[: l.index("(")]] for l in SIGNATURES_BEFORE] == SIGNATURES_BEFORE


@pytest.mark.parametrize("name", sorted(set(HAD_INTO)))
def test_op_info_matches_the_python_signature(name):
    info = lc.op_info(name)
    assert info["name"] == name
    assert info["family"] in FAMILIES
    assert info["outputs"] == ["out"]
    assert info["doc"]
    params = parameters(getattr(lc, name))
    by_name = {p[0]: p for p in params}
    # Inputs: the tensor arguments, in call order, before the attributes.
    input_names = [i["name"] for i in info["inputs"]]
    assert [p[0] for p in params if p[0] in input_names] == input_names
    for i in info["inputs"]:
        assert i["kind"] in ("float", "index")
        if i["optional"]:  # an optional input is None by default or accepts None positionally
            assert by_name[i["name"]][1] in (None, _REQUIRED)
    # Attributes: every one is a parameter with the registry's default.
    for attr, a in info["attributes"].items():
        assert attr in by_name, (name, attr)
        default = by_name[attr][1]
        if a["required"]:
            assert default is _REQUIRED, (name, attr)
        elif isinstance(a["default"], float):
            assert math.isclose(default, a["default"], rel_tol=1e-6), (name, attr)
        else:
            assert default == a["default"], (name, attr, default, a["default"])
        assert a["type"] in ("bool", "int", "float", "str")
    # Nothing else: every parameter is an input, an attribute or an execution parameter.
    extra = set(by_name) - set(input_names) - set(info["attributes"]) - EXECUTION_PARAMS
    assert not extra, (name, extra)


def test_op_info_dtypes_per_backend():
    mm = lc.op_info("matmul2d")["dtypes"]
    assert set(mm["cpu"]) == {"float32", "float64", "float16", "bfloat16"}
    assert set(mm["cuda"]) == {"float32", "float16", "bfloat16"}  # float64: CPU only
    assert lc.op_info("conv2d_nchw")["dtypes"] == {"cpu": ["float32"], "cuda": ["float32"]}
    assert "float64" not in lc.op_info("attention2d")["dtypes"]["cpu"]
    assert "float64" in lc.op_info("layernorm")["dtypes"]["cpu"]
    emb = lc.op_info("embedding")
    assert emb["index_dtypes"] == ["int32", "int64"]
    assert [i["kind"] for i in emb["inputs"]] == ["index", "float"]
    assert lc.op_info("add")["index_dtypes"] == []
    for name in lc.ops():  # nothing runs on CUDA only
        d = lc.op_info(name)["dtypes"]
        assert "float32" in d["cpu"] and set(d["cuda"]) <= set(d["cpu"]), name


def test_op_info_attributes_with_defaults():
    conv = lc.op_info("conv2d_nchw")["attributes"]
    assert list(conv) == ["stride_h", "stride_w", "pad_h", "pad_w", "activation"]
    assert conv["stride_h"]["default"] == 1 and conv["stride_h"]["type"] == "int"
    assert conv["activation"]["default"] == "none"
    att = lc.op_info("attention2d")["attributes"]
    assert att["causal"] == {"type": "bool", "required": False, "default": False,
                             "doc": att["causal"]["doc"]}
    assert att["scale"]["default"] is None
    assert lc.op_info("vector_scale")["attributes"]["alpha"]["required"] is True
    assert lc.op_info("gelu")["attributes"]["approximate"]["default"] == "tanh"


def test_op_info_unknown_op_is_a_value_error_listing_the_ops():
    with pytest.raises(ValueError, match=r"no_such_op.*matmul2d"):
        lc.op_info("no_such_op")


@pytest.mark.parametrize("name,shapes,kw", [
    ("matmul2d", [(7, 13), (13, 5)], {}),
    ("matmul", [(2, 1, 3, 4), (5, 4, 6)], {}),
    ("matmul", [(4,), (2, 4, 3)], {}),
    ("linear", [(2, 3, 8), (5, 8)], {}),
    ("attention2d", [(9, 16), (11, 16), (11, 32)], {}),
    ("conv2d_nchw", [(2, 3, 17, 19), (8, 3, 3, 5)], {"stride_h": 2, "stride_w": 2, "pad_h": 1, "pad_w": 1}),
    ("layernorm", [(4, 5, 6)], {}),
    ("softmax", [(3, 0)], {}),
    ("add", [(3, 1, 5), (4, 1)], {}),
    ("vector_mul", [(7,), (7,)], {}),
    ("relu", [(2, 3)], {}),
    ("embedding", [(2, 7), (100, 16)], {}),
])
def test_op_infer_matches_the_op(name, shapes, kw):
    shape, dtype = lc.op_infer(name, shapes, "float32",
                               **{k: v for k, v in kw.items()})
    assert dtype == "float32"
    if name == "embedding":
        args = [np.zeros(shapes[0], np.int64), np.zeros(shapes[1], np.float32)]
    else:
        args = [np.zeros(s, np.float32) for s in shapes]
    if name == "conv2d_nchw":
        got = lc.conv2d_nchw(args[0], args[1], None, kw["stride_h"], kw["stride_w"], kw["pad_h"],
                             kw["pad_w"], "cpu")
    else:
        got = getattr(lc, name)(*args, device="cpu")
    assert tuple(got.shape) == shape


def test_op_infer_rejects_what_the_op_rejects():
    with pytest.raises(ValueError, match=r"\[matmul2d\]"):
        lc.op_infer("matmul2d", [(7, 13), (12, 5)])
    with pytest.raises(ValueError, match=r"\[add\]"):
        lc.op_infer("add", [(3, 2), (3,)])
    with pytest.raises(ValueError):
        lc.op_infer("matmul2d", [(4,), (4, 4)])  # wrong rank
    assert lc.op_infer("matmul2d", [(2, 2), (2, 2)], "bfloat16")[1] == "bfloat16"


def test_placement_asks_the_registry_what_cuda_supports():
    # The CUDA attention kernels' head-dim limit (512) comes from the registry: an explicit
    # device="cuda" request at d = 520 falls back to the CPU, as the op itself does.
    big = lc.placement("attention2d", (8, 520), (8, 520), (8, 520), device="cuda",
                       gpu_available=True)
    assert big["device"] == "cpu" and big["fallback"] is True
    ok = lc.placement("attention2d", (8, 512), (8, 512), (8, 512), device="cuda",
                      gpu_available=True)
    assert ok["device"] == "cuda" and ok["fallback"] is False
    with pytest.raises(ValueError, match="no_such_op"):
        lc.placement("no_such_op", (1,), gpu_available=True)


def test_generated_forms_behave_like_the_original():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones((4, 2), np.float32)
    out = np.full((3, 2), np.nan, np.float32)
    assert lc.matmul2d_into(a, b, out, "cpu") is out
    np.testing.assert_allclose(out, a @ b)
    np.testing.assert_allclose(lc.matmul2d(a, b, "cpu"), a @ b)
    # keyword forms, out by keyword, bad arity -> TypeError naming the op and its signature
    out2 = np.full(4, np.nan, np.float32)
    lc.vector_scale_into(a[0], 2.0, out=out2, device="cpu")
    np.testing.assert_array_equal(out2, 2 * a[0])
    with pytest.raises(TypeError, match=r"\[softmax_into\].*softmax_into\(x"):
        lc.softmax_into(a)
    with pytest.raises(TypeError, match=r"\[gelu\]"):
        lc.gelu(a, approx="none")
