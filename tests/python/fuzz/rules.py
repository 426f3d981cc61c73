"""What every public op must do: one table entry per op, plus the error contract.

OPS maps an op's Python name to an Op:
  inputs   name -> dims pattern. Each letter is one size shared by every input using it; "*" is
           a shape of any rank shared by all "*" inputs (rank >= star_min_ndim); "$" is the
           last size of "*". A name ending in "?" is optional (None allowed).
  out      the result's dims pattern, or a function (dims, star, params) -> shape.
  call     positional template of the returning form: input names, param names, DEV (the
           device argument); OUT marks where the `_into` form takes `out`. kw: keyword params.
  params   hypothesis strategy of valid params (a dict).
  ref      float64 reference: ref(X, P) with X the inputs as float64 (None when absent).
  atol     absolute error floor of a float32 result: atol(X, P) (float or array), scaled by the
           reduction length; the relative part is RTOL.
  check    optional extra validity rule for sizes/params: check(dims, star, P) -> error text
           or None (a ValueError is then expected).
  finite   inputs that never get NaN/Inf injected (a padded conv weight would turn 0 * inf into
           a NaN the math does not have).
  empty_ok zero-size inputs may either work (empty result) or raise ValueError.

Adding an op is one entry here (plus its strategy of params when it has any).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import os
import sys

import numpy as np
from hypothesis import strategies as st

# The float64 references shared with the parity harness (tests/python/parity.py): one copy.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from parity import act64, gelu64  # noqa: E402
from parity import ref_conv2d as conv64  # noqa: E402

OUT, DEV = "@out", "@device"
DEV_KW = "@device="  # the device passed as the keyword `device=` (keyword-only ops: lc.attention)
RTOL = 1e-4  # float32 result vs the float64 reference, relative part
EPS = 2e-6  # per-term float32 error used by the absolute floors below


# ---- float64 references ----------------------------------------------------------------------


def amax(x) -> float:
    if x is None or x.size == 0:
        return 0.0
    a = np.abs(x[np.isfinite(x)])
    return float(a.max()) if a.size else 0.0


def f32(v) -> float:
    return float(np.float32(v))


def ref_matmul(X, P):
    return np.einsum("mk,kn->mn", X["a"], X["b"])  # plain loops: IEEE NaN/Inf, no BLAS shortcuts


def ref_linear(X, P, x="x", w="weight", b="bias", act="activation"):
    y = np.einsum("mi,oi->mo", X[x], X[w])
    if X.get(b) is not None:
        y = y + X[b]
    return act64(y, P.get(act, "none"))


def attention64(q, k, v, causal, scale):
    sq, d = q.shape
    sk = k.shape[0]
    sc = 1.0 / np.sqrt(d) if scale is None else f32(scale)
    s = np.einsum("qd,sd->qs", q, k) * sc
    masked = (np.arange(sk)[None, :] > np.arange(sq)[:, None]) if causal else np.zeros((sq, sk), bool)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.where(masked, -np.inf, s).max(axis=1, keepdims=True)
        # float32 semantics of the weights: exp underflows to exactly 0 below -103.28 (what
        # torch's float32 softmax gives too), so 0 * inf there is NaN, not inf
        p = np.where(masked | (s - m < -103.28), 0.0, np.exp(s - m))
        # masked keys contribute nothing at all: not even 0 * inf
        num = np.where(masked[:, :, None], 0.0, p[:, :, None] * v[None, :, :]).sum(axis=1)
        return num / p.sum(axis=1, keepdims=True)


def ref_attention(X, P):
    return attention64(X["q"], X["k"], X["v"], P.get("causal", False), P.get("scale"))


def ref_mha(X, P):
    """lc.attention's contract on [B, H, S, D]: causal aligned bottom-right (query i sees keys
    j <= i + Sk - Sq), and a row with no visible key is zeros (not NaN)."""
    q, k, v = X["q"], X["k"], X["v"]
    b, h, sq, d = q.shape
    sk, dv = k.shape[2], v.shape[3]
    out = np.zeros((b, h, sq, dv))
    if sq == 0 or sk == 0 or b == 0 or h == 0:
        return out
    # grouped-query attention: query head i reads kv head i // (H / Hk)
    k, v = np.repeat(k, h // k.shape[1], axis=1), np.repeat(v, h // v.shape[1], axis=1)
    sc = 1.0 / np.sqrt(d) if P.get("scale") is None else f32(P["scale"])
    s = np.einsum("bhqd,bhsd->bhqs", q, k) * sc
    visible = np.ones((sq, sk), bool)
    if P.get("causal"):
        visible = np.arange(sk)[None, :] <= np.arange(sq)[:, None] + (sk - sq)
    s = np.where(visible, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    rows = np.isfinite(m)  # rows with at least one visible key
    p = np.where(visible & rows, np.exp(np.where(rows, s - np.where(rows, m, 0.0), -np.inf)), 0.0)
    den = p.sum(axis=-1, keepdims=True)
    out = np.einsum("bhqs,bhse->bhqe", p / np.where(den > 0, den, 1.0), v)
    return np.where(rows, out, 0.0)


def check_mha(dims, star, P):
    if dims["g"] == 0 or dims["h"] % dims["g"]:
        return f"q's {dims['h']} heads are not a multiple of k/v's {dims['g']}"
    return None


def atol_mha(X, P):
    q, k, v = X["q"], X["k"], X["v"]
    d = max(q.shape[3], 1)
    sc = 1.0 / np.sqrt(d) if P.get("scale") is None else abs(f32(P["scale"]))
    score = d * amax(q) * amax(k) * sc
    return 1e-5 * amax(v) * (1.0 + score) * (1 + np.log2(max(k.shape[2], 1))) + 1e-30


def ref_conv(X, P, act=None):
    return conv64(X["x"], X["weight"], X.get("bias"), P["stride_h"], P["stride_w"], P["pad_h"], P["pad_w"],
                  act or P.get("activation", "none"))


def layernorm64(x, g, b, eps):
    if x.size == 0:  # zero-size x: an empty result of x's shape
        return np.zeros(x.shape)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + f32(eps))
    if g is not None:
        y = y * g
    if b is not None:
        y = y + b
    return y


def ref_softmax(X, P):
    x = X["x"]
    if x.size == 0:  # zero-size x: an empty result of x's shape
        return np.zeros(x.shape)
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def qkv_arrange64(feat, seq_len, head_dim):
    flat = feat.reshape(-1)
    need = seq_len * head_dim
    return np.tile(flat, -(-need // flat.size))[:need].reshape(seq_len, head_dim)


def _stored_gelu32(pre, h):
    """gelu's values h (float64) of pre-activations pre as the float32 kernels store them: where
    float32's e^(-2u) overflows (x below ~-10.33) gelu is -0 on both backends (as float32's exp),
    where float64 keeps a tiny tail (~1e-40) that 0 * inf downstream would tell apart (NaN, not
    +-inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        u2 = -1.5957691216057308 * (pre + 0.044715 * pre**3)
        h = np.where(u2 > 88.7228, 0.0 * pre, h)
        return h.astype(np.float32).astype(np.float64)


def ref_conv_attention(X, P, act=None, causal=None):
    act = act or P.get("activation", "relu")
    if act == "gelu":  # the feature map is stored in float32 (its gelu tail is -0 there)
        pre = ref_conv(X, P, act="none")
        f = _stored_gelu32(pre, act64(pre, "gelu"))
    else:
        f = ref_conv(X, P, act=act)
    q = qkv_arrange64(f, P["seq_len"], P["head_dim"])
    return attention64(q, q, q, P.get("causal", False) if causal is None else causal, P.get("scale"))


def ref_ffn(X, P):
    pre = ref_linear(X, {}, "x", "w1", "b1")
    h = act64(pre, P.get("activation", "none"))
    if P.get("activation") == "gelu":  # the stored hidden layer: 0 * an infinite w2 is NaN there
        h = _stored_gelu32(pre, h)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            h = h.astype(np.float32).astype(np.float64)  # the stored hidden layer
    return ref_linear({"h": h, "w2": X["w2"], "b2": X.get("b2")}, {}, "h", "w2", "b2")


def ref_ln_linear(X, P):
    h = layernorm64(X["x"], X.get("gamma"), X.get("beta"), P["eps"])
    return ref_linear({"h": h, "w": X["w"], "b": X.get("b")}, P, "h", "w", "b")


# ---- absolute error floors -------------------------------------------------------------------


def atol_linear(x, w, b=None):
    return EPS * (x.shape[-1] * amax(x) * amax(w) + amax(b)) + 1e-30


def atol_attention(q, k, v, scale):
    d = q.shape[1]
    sc = 1.0 / np.sqrt(d) if scale is None else f32(scale)
    score = d * amax(q) * amax(k) * sc  # bound on |score|: exp's relative error grows with it
    return 1e-5 * amax(v) * (1.0 + score) * (1 + np.log2(k.shape[0])) + 1e-30


def atol_conv(X, P):
    w = X["weight"]
    return EPS * (w.shape[1] * w.shape[2] * w.shape[3] * amax(X["x"]) * amax(w) + amax(X.get("bias"))) + 1e-30


def atol_layernorm(x, g, b):
    if x.size == 0:
        return 0.0
    x = np.where(np.isfinite(x), x, 0.0)  # rows with NaN/Inf have a non-finite reference anyway
    cols = x.shape[-1]
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + 1e-5)
    xm = np.abs(np.where(np.isfinite(x), x, 0)).max(axis=-1, keepdims=True)
    return 4 * EPS * cols * xm * rstd * max(1.0, amax(g)) + EPS * amax(b) + 1e-30


def atol_conv_attention(X, P):
    f = ref_conv(X, P, act="none")
    c_err = atol_conv(X, P)
    hd = P["head_dim"]
    sc = 1.0 / np.sqrt(hd) if P.get("scale") is None else f32(P["scale"])
    m = amax(f)
    q = np.zeros((1, hd)) + m
    return 4 * atol_attention(q, q, q, P.get("scale")) + 4 * m * (2 * hd * m * c_err * sc * P["seq_len"]) + c_err


def atol_ffn(X, P):
    h = ref_linear(X, P, "x", "w1", "b1")
    e1 = atol_linear(X["x"], X["w1"], X.get("b1"))
    return e1 * X["w2"].shape[1] * amax(X["w2"]) * 2 + atol_linear(h, X["w2"], X.get("b2"))


def atol_ln_linear(X, P):
    h = layernorm64(X["x"], X.get("gamma"), X.get("beta"), P["eps"])
    e = float(np.max(atol_layernorm(X["x"], X.get("gamma"), X.get("beta")))) if h.size else 0.0
    return e * X["w"].shape[1] * amax(X["w"]) * 2 + atol_linear(h, X["w"], X.get("b"))


def atol_elementwise(X, P):
    return EPS * max(amax(v) for v in X.values() if v is not None) * max(1.0, abs(P.get("alpha", 1.0))) + 1e-30


# ---- params ----------------------------------------------------------------------------------

ACTS = st.sampled_from(["none", "relu", "gelu"])
SCALES = st.one_of(st.none(), st.sampled_from([0.05, 0.37, 1.0, 3.0]))


def conv_geometry(dims, star, P):
    """Output (oh, ow), or an error text when the padded input is smaller than the kernel."""
    H, W, kh, kw = dims["H"], dims["W"], dims["k"], dims["l"]
    ph, pw, sh, sw = P["pad_h"], P["pad_w"], P["stride_h"], P["stride_w"]
    if sh < 1 or sw < 1:
        return "stride must be >= 1"
    if ph < 0 or pw < 0:
        return "padding must be >= 0"
    if H + 2 * ph < kh or W + 2 * pw < kw:
        return "kernel larger than the padded input"
    return ((H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)


def check_conv(dims, star, P):
    g = conv_geometry(dims, star, P)
    return g if isinstance(g, str) else None


def out_conv(dims, star, P):
    oh, ow = conv_geometry(dims, star, P)
    return (dims["n"], dims["o"], oh, ow)


def check_conv_attention(dims, star, P):
    if dims["n"] != 1:
        return "x must be one image"
    if P["seq_len"] < 1 or P["head_dim"] < 1:
        return "seq_len and head_dim must be >= 1"
    return check_conv(dims, star, P)


conv_params = st.fixed_dictionaries({
    "stride_h": st.sampled_from([1, 1, 2, 3]), "stride_w": st.sampled_from([1, 1, 2, 3]),
    "pad_h": st.sampled_from([0, 0, 1, 2, 3]), "pad_w": st.sampled_from([0, 0, 1, 2, 3]),
})
conv_attn_params = st.fixed_dictionaries({
    "stride_h": st.sampled_from([1, 1, 2]), "stride_w": st.sampled_from([1, 1, 2]),
    "pad_h": st.sampled_from([0, 1, 2]), "pad_w": st.sampled_from([0, 1, 2]),
    "seq_len": st.sampled_from([1, 2, 3, 5, 7, 13]), "head_dim": st.sampled_from([1, 2, 3, 5, 8]),
})


@dataclass(frozen=True)
class Op:
    name: str  # "matmul2d" (lc.matmul2d) or "api.ffn" (lc.api.ffn)
    inputs: dict
    out: object
    call: tuple
    ref: Callable
    atol: Callable
    kw: tuple = ()
    params: object = st.just({})
    check: Callable | None = None
    finite: tuple = ()
    empty_ok: bool = False
    star_min_ndim: int = 0
    has_into: bool = True
    allow: Callable | None = None  # allow(X, P) -> mask of elements where 0 is accepted too
    tags: tuple = field(default=())
    # inputs whose leading dimensions are free ([..., in] for linear): the strategies draw them
    # 2-D (the reference's form) and an "ndim" fault never targets them (any ndim >= 1 is fine;
    # tests/python/test_views.py checks those shapes against numpy)
    leading_free: tuple = ()
    # storage dtypes the op computes in besides float32 (all inputs alike): a "dtype" fault draws
    # only dtypes outside this set, and a Python list or float (which convert to float64) is no
    # junk input for an op that takes float64
    dtypes: tuple = ()
    # "*" inputs broadcast against each other (numpy rules) instead of having to be equal
    broadcast: bool = False
    # the _into form writes a strided `out` view in place (attention_into: docs/attention.md,
    # "strided out"), so a non-contiguous out without overlap is a valid out, not a bad one
    strided_out: bool = False

    @property
    def msg_op(self) -> str:
        """The name error messages start with: "[matmul2d] ..."."""
        return self.name.split(".")[-1]


# The elementwise ops compute in float32, float16, bfloat16 and (on the CPU) float64.
EW_DTYPES = ("float64", "float16")


def _ew(name, fn, n_in=2, star_min_ndim=0, **kw):
    ins = {"a": "*", "b": "*"} if n_in == 2 else {"a": "*"}
    call = ("a", "b", OUT, DEV) if n_in == 2 else ("a", OUT, DEV)
    return Op(name, ins, "*", call, fn, atol_elementwise, empty_ok=True, star_min_ndim=star_min_ndim,
              dtypes=EW_DTYPES, **kw)


def _gelu_allow(X, P):
    return X["a"] == -np.inf  # gelu(-inf): NaN (torch: 0.5 * -inf * 0, the reference) or 0 (the limit)


def _div32(a, b):
    # The reference of a float32 division is the float32 division itself (IEEE, correctly rounded):
    # a quotient past float32's range is inf there, where a float64 reference would be finite.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return (a.astype(np.float32) / b.astype(np.float32)).astype(np.float64)


def _cuda() -> bool:
    import lightning_core as lc
    return bool(lc.cuda_available())


def _relu_epilogue_allow(ref):
    """linear(..., "relu") on CUDA runs the ReLU in cuBLASLt's GEMM epilogue, which maps NaN to
    0 (documented in docs/reliability.md), and so do the ops that end in that linear
    (layernorm_linear); everywhere else NaN propagates as in torch.relu. The allow mask: 0 is
    accepted where the reference is NaN."""
    def allow(X, P):
        if P.get("activation") != "relu" or P.get("_device") == "cpu" or not _cuda():
            return None
        with np.errstate(invalid="ignore", over="ignore"):
            return np.isnan(ref(X, P))
    return allow


_linear_allow = _relu_epilogue_allow(ref_linear)


OPS: dict[str, Op] = {op.name: op for op in [
    # Matrix products take empty sizes (k == 0 gives zeros like numpy; issue #12).
    Op("matmul2d", {"a": "mk", "b": "kn"}, "mn", ("a", "b", OUT, DEV), ref_matmul,
       lambda X, P: atol_linear(X["a"], X["b"].T), empty_ok=True),
    Op("linear", {"x": "mi", "weight": "oi", "bias?": "o"}, "mo",
       ("x", "weight", "bias", OUT, "activation", DEV), ref_linear,
       lambda X, P: atol_linear(X["x"], X["weight"], X.get("bias")),
       params=st.fixed_dictionaries({"activation": ACTS}), allow=_linear_allow, leading_free=("x",),
       empty_ok=True),
    Op("attention2d", {"q": "qd", "k": "sd", "v": "se"}, "qe", ("q", "k", "v", OUT, "causal", DEV),
       ref_attention, lambda X, P: atol_attention(X["q"], X["k"], X["v"], P.get("scale")), kw=("scale",),
       params=st.fixed_dictionaries({"causal": st.booleans(), "scale": SCALES}),
       dtypes=("float16", "bfloat16")),
    # Batched multi-head attention (#13): device and options are keywords.
    Op("attention", {"q": "bhqd", "k": "bgsd", "v": "bgse"}, "bhqe", ("q", "k", "v", OUT, DEV_KW),
       ref_mha, atol_mha, kw=("causal", "scale"), check=check_mha,
       params=st.fixed_dictionaries({"causal": st.booleans(), "scale": SCALES}),
       finite=("q", "k", "v"), empty_ok=True, dtypes=("float64", "float16", "bfloat16"),
       strided_out=True),
    Op("conv2d_nchw", {"x": "ncHW", "weight": "ockl", "bias?": "o"}, out_conv,
       ("x", "weight", "bias", OUT, "stride_h", "stride_w", "pad_h", "pad_w", DEV), ref_conv, atol_conv,
       kw=("activation",), params=conv_params.flatmap(lambda p: st.fixed_dictionaries(
           {**{k: st.just(v) for k, v in p.items()}, "activation": ACTS})),
       check=check_conv, finite=("weight", "bias")),
    Op("layernorm", {"x": "*", "gamma?": "$", "beta?": "$"}, "*", ("x", "gamma", "beta", OUT, "eps", DEV),
       lambda X, P: layernorm64(X["x"], X.get("gamma"), X.get("beta"), P["eps"]),
       lambda X, P: atol_layernorm(X["x"], X.get("gamma"), X.get("beta")),
       params=st.fixed_dictionaries({"eps": st.sampled_from([1e-5, 1e-3, 0.5])}), star_min_ndim=1,
       # an inf gamma turns a normalised value that is exactly 0 in float64 but a rounding
       # residue in float32 into NaN vs +-inf: ill-conditioned, not a contract question
       finite=("gamma", "beta"), empty_ok=True, dtypes=("float64", "float16", "bfloat16")),
    Op("softmax", {"x": "*"}, "*", ("x", OUT, DEV), ref_softmax,
       lambda X, P: EPS * (1.0 + amax(X["x"])) + 1e-30, star_min_ndim=1, empty_ok=True,
       dtypes=("float64", "float16", "bfloat16")),
    _ew("vector_add", lambda X, P: X["a"] + X["b"]),
    _ew("vector_sub", lambda X, P: X["a"] - X["b"]),
    _ew("vector_mul", lambda X, P: X["a"] * X["b"]),
    Op("matrix_sub", {"a": "mn", "b": "mn"}, "mn", ("a", "b", OUT, DEV), lambda X, P: X["a"] - X["b"],
       atol_elementwise, empty_ok=True, dtypes=EW_DTYPES),
    Op("vector_scale", {"a": "*"}, "*", ("a", "alpha", OUT, DEV), lambda X, P: X["a"] * f32(P["alpha"]),
       atol_elementwise, empty_ok=True, dtypes=EW_DTYPES,
       params=st.fixed_dictionaries({"alpha": st.sampled_from([-2.5, 0.0, 1.0, 3.25, 1e-3])})),
    # The broadcasting family (issue #12): shape faults that still broadcast must succeed.
    _ew("add", lambda X, P: X["a"] + X["b"], broadcast=True),
    _ew("sub", lambda X, P: X["a"] - X["b"], broadcast=True),
    _ew("mul", lambda X, P: X["a"] * X["b"], broadcast=True),
    _ew("div", lambda X, P: _div32(X["a"], X["b"]), broadcast=True),
    _ew("relu", lambda X, P: np.maximum(X["a"], 0.0), n_in=1),
    _ew("gelu", lambda X, P: gelu64(X["a"]), n_in=1, allow=_gelu_allow),
    Op("conv_attention_nchw", {"x": "ncHW", "weight": "ockl", "bias?": "o"}, lambda d, s, P: (P["seq_len"], P["head_dim"]),
       ("x", "weight", "bias", OUT, "seq_len", "head_dim", "stride_h", "stride_w", "pad_h", "pad_w", DEV),
       ref_conv_attention, atol_conv_attention, kw=("activation", "causal", "scale"),
       params=conv_attn_params.flatmap(lambda p: st.fixed_dictionaries(
           {**{k: st.just(v) for k, v in p.items()}, "activation": ACTS, "causal": st.booleans(), "scale": SCALES})),
       check=check_conv_attention, finite=("weight", "bias")),
    Op("api.conv_relu_nchw", {"x": "ncHW", "weight": "ockl", "bias?": "o"}, out_conv,
       ("x", "weight", "bias", "stride_h", "stride_w", "pad_h", "pad_w", DEV),
       lambda X, P: ref_conv(X, P, act="relu"), atol_conv, params=conv_params, check=check_conv,
       finite=("weight", "bias"), has_into=False),
    Op("api.conv_attention_torchstrong_nchw", {"x": "ncHW", "weight": "ockl", "bias?": "o"},
       lambda d, s, P: (P["seq_len"], P["head_dim"]),
       ("x", "weight", "bias", "seq_len", "head_dim", "stride_h", "stride_w", "pad_h", "pad_w", DEV),
       lambda X, P: ref_conv_attention(X, P, act="relu"), atol_conv_attention, kw=("causal",),
       params=conv_attn_params.flatmap(lambda p: st.fixed_dictionaries(
           {**{k: st.just(v) for k, v in p.items()}, "causal": st.booleans()})),
       check=check_conv_attention, finite=("weight", "bias"), has_into=False),
    Op("api.ffn", {"x": "mi", "w1": "hi", "b1?": "h", "w2": "oh", "b2?": "o"}, "mo",
       ("x", "w1", "b1", "w2", "b2", "activation", DEV), ref_ffn, atol_ffn,
       params=st.fixed_dictionaries({"activation": ACTS}), has_into=False, leading_free=("x",),
       empty_ok=True),
    Op("api.layernorm_linear", {"x": "mi", "gamma?": "i", "beta?": "i", "w": "oi", "b?": "o"}, "mo",
       ("x", "gamma", "beta", "w", "b", "eps", "activation", DEV), ref_ln_linear, atol_ln_linear,
       params=st.fixed_dictionaries({"eps": st.sampled_from([1e-5, 1e-3]), "activation": ACTS}),
       allow=_relu_epilogue_allow(ref_ln_linear), has_into=False, leading_free=("x",), empty_ok=True,
       dtypes=("float64", "float16", "bfloat16")),  # layernorm and linear both compute these
]}

# Bad values of params, per param name: (value, accepted exception types). "ok" in the types
# means the call may also succeed (no value check then).
BAD_PARAMS = {
    "stride_h": [(0, (ValueError,)), (-1, (ValueError,)), (2**31, (ValueError, TypeError)),
                 (2**62, (ValueError, TypeError))],
    "stride_w": [(0, (ValueError,)), (-2, (ValueError,))],
    # A padding near 2^30 makes a result of gigabytes: computed where the host can back it (a
    # 128 GB GPU host), a MemoryError where it cannot (sizes.h check_host_alloc).
    "pad_h": [(-1, (ValueError,)), (2**30, (ValueError, MemoryError, "ok")), (2**31, (ValueError, TypeError, MemoryError)),
              (2**62, (ValueError, TypeError, MemoryError))],
    "pad_w": [(-1, (ValueError,)), (2**30 - 1, (ValueError, MemoryError, "ok")), (2**31, (ValueError, TypeError, MemoryError))],
    "scale": [(0.0, (ValueError,)), (-1.0, (ValueError,)), (float("nan"), (ValueError,)), ("x", (TypeError,)),
              ([1.0], (TypeError,)), (float("inf"), (ValueError, "ok"))],
    "eps": [(0.0, (ValueError,)), (-1e-5, (ValueError,)), (float("nan"), (ValueError,)), ("x", (TypeError,))],
    "activation": [("tanh", (ValueError,)), ("RELU", (ValueError, "ok")), (3, (TypeError,)), (None, (TypeError, ValueError))],
    "causal": [("yes", (TypeError,)), (2, (TypeError, "ok"))],
    "alpha": [("x", (TypeError,)), (None, (TypeError,))],
    "seq_len": [(0, (ValueError,)), (-1, (ValueError,)), (2**31, (ValueError, MemoryError)),
                (2**62, (ValueError, MemoryError)), (2**63, (ValueError, TypeError))],
    "head_dim": [(0, (ValueError,)), (-1, (ValueError,)), (2**31, (ValueError, MemoryError)),
                 (2**62, (ValueError, MemoryError))],
}

# Odd devices: value -> accepted outcome on a machine without / with a usable GPU.
DEVICES = {
    "cpu": ("ok", "ok"), "auto": ("ok", "ok"), None: ("ok", "ok"),
    "cuda": (ValueError, "ok"), "gpu": (ValueError, "ok"),
    "metal": (ValueError, ValueError), "": (ValueError, ValueError), 3: (TypeError, TypeError),
}

# Bad `out` objects for the `_into` forms: kind -> expected exception types.
BAD_OUTS = {
    "shape": (ValueError,), "float64": (TypeError,), "float16": (TypeError,), "int32": (TypeError,),
    "noncontig": (ValueError,), "readonly": (ValueError,), "misaligned": (ValueError,),
    "swapped": (ValueError,), "none": (TypeError,), "list": (TypeError, ValueError),
}

# Wrong dtypes of an input: all TypeError.
BAD_DTYPES = ["float64", "float16", "int32", "bool", "complex64"]
