"""Kernel suite: single ops. Attention (micro and larger), conv2d 3x3, GEMM (float32; bfloat16 and
float16 at 4096^3), batched matmul (64 x (128x64 @ 64x128) vs torch.bmm, float32 and bfloat16),
linear with a fused residual (vs torch.addmm + add), broadcast add, layernorm and softmax over the
last dim in float32 / float16 / bfloat16 (issue #12's bf16 8192x768 target), and batched
multi-head attention (lc.attention vs torch SDPA on [B, H, S, D]; issue #13), and decode
attention (Sq = 1 against a long grouped-query K/V cache, with the achieved GB/s of K/V).

    python benchmarks/python/kernel_bench.py [--quick] [--out-dir DIR] [--modes oneshot,resident]
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from harness import Case, np_attention, np_conv2d_nchw, randn, torch_attention
from suite_main import matches_filter, suite_main

ATTN_MICRO = [(8, 16), (8, 32), (12, 12)]
ATTN_LARGE = [(256, 64), (512, 64), (4096, 64)]
CONV = [(1, 3, 16, 16, 16), (1, 3, 24, 24, 16), (2, 3, 16, 16, 16), (1, 3, 28, 28, 16),
        (1, 3, 32, 32, 16), (8, 64, 56, 56, 64)]
GEMM = [(256, 256, 256), (896, 896, 896), (1024, 1024, 1024)]
GEMM16 = [(4096, 4096, 4096)]                    # goal: >= 0.95x torch (bf16 / fp16 storage)
BMM = [(64, 128, 64, 128)]                       # batch, m, k, n; goal: >= 1.0x torch.bmm
LINEAR_RESIDUAL = [(4096, 1024, 1024)]           # tokens, in, out: y = x @ w^T + b + r
# float32 add with numpy broadcasting: a row, a column, and both operands broadcast
BCAST = [((4096, 4096), (4096,)), ((4096, 4096), (4096, 1)), ((64, 1, 1024), (1, 256, 1024)),
         ((257, 129), (1, 129))]
# (rows, cols, dtype): a BERT-base-sized activation, every storage dtype
NORM = [(8192, 768, "bfloat16"), (8192, 768, "float16"), (8192, 768, "float32")]
# (B, H, S, D, dtype): batched multi-head attention (issue #13): BERT-base-sized heads in fp32
# and bf16, and a MiniLM-sized call (latency-bound)
MHA = [(4, 12, 512, 64, "float32"), (4, 12, 512, 64, "bfloat16"), (1, 12, 128, 64, "float32"),
       (1, 12, 128, 64, "bfloat16")]


def attention_case(suite: str, family: str, seq: int, d: int, causal: bool = False) -> Case:
    return Case(
        suite=suite, family=family, name=f"seq={seq},head_dim={d}" + (",causal" if causal else ""),
        params={"seq": seq, "head_dim": d, "causal": causal},
        make_inputs=lambda rng: {"q": randn(rng, seq, d), "k": randn(rng, seq, d), "v": randn(rng, seq, d)},
        numpy_fn=lambda i: np_attention(i["q"], i["k"], i["v"], causal),
        lc_fn=lambda lc, i, dev: lc.attention2d(i["q"], i["k"], i["v"], causal, dev),
        lc_into=lambda lc, i, out, dev: lc.attention2d_into(i["q"], i["k"], i["v"], out, causal, dev),
        out_shape=(seq, d),
        torch_fn=lambda torch, i: torch_attention(torch, i["q"], i["k"], i["v"], causal),
        tol=2e-3,
        notes=["torch: F.scaled_dot_product_attention on [1, seq, d]; numpy: explicit softmax(QK^T/sqrt(d))V"],
    )


def conv_case(suite: str, n: int, c: int, h: int, w: int, oc: int, k: int = 3, pad: int = 1,
              activation: str = "none") -> Case:
    def torch_fn(torch, i):
        y = torch.nn.functional.conv2d(i["x"], i["w"], i["b"], 1, pad)
        return torch.relu(y) if activation == "relu" else y

    def np_fn(i):
        y = np_conv2d_nchw(i["x"], i["w"], i["b"], pad)
        return y.clip(min=0) if activation == "relu" else y

    return Case(
        suite=suite, family="conv",
        name=f"batch={n},in_ch={c},h={h},w={w},out_ch={oc},k={k}",
        params={"n": n, "c": c, "h": h, "w": w, "oc": oc, "k": k, "pad": pad, "stride": 1},
        make_inputs=lambda rng: {"x": randn(rng, n, c, h, w), "w": randn(rng, oc, c, k, k, scale=0.2),
                                 "b": randn(rng, oc)},
        numpy_fn=np_fn,
        lc_fn=lambda lc, i, dev: lc.conv2d_nchw(i["x"], i["w"], i["b"], 1, 1, pad, pad, dev,
                                                activation=activation),
        lc_into=lambda lc, i, out, dev: lc.conv2d_nchw_into(i["x"], i["w"], i["b"], out, 1, 1, pad, pad,
                                                            dev, activation=activation),
        out_shape=(n, oc, h + 2 * pad - k + 1, w + 2 * pad - k + 1),
        torch_fn=torch_fn, tol=1e-3,
        notes=[f"stride 1, pad {pad}, bias" + (", fused ReLU" if activation == "relu" else "")
               + "; numpy: im2col + one GEMM"],
    )


def gemm_case(suite: str, family: str, m: int, k: int, n: int) -> Case:
    return Case(
        suite=suite, family=family, name=f"m={m},k={k},n={n}", params={"m": m, "k": k, "n": n},
        make_inputs=lambda rng: {"a": randn(rng, m, k), "b": randn(rng, k, n)},
        numpy_fn=lambda i: i["a"] @ i["b"],
        lc_fn=lambda lc, i, dev: lc.matmul2d(i["a"], i["b"], dev),
        lc_into=lambda lc, i, out, dev: lc.matmul2d_into(i["a"], i["b"], out, dev),
        out_shape=(m, n),
        torch_fn=lambda torch, i: torch.mm(i["a"], i["b"]),
        tol=1e-3,
    )


def _np_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes  # numpy's bfloat16 (a dependency of the test suite)
        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def _rand(rng, dtype: str, *shape: int, scale: float = 1.0) -> np.ndarray:
    return randn(rng, *shape, scale=scale).astype(_np_dtype(dtype))


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32)


# Storage-dtype tolerances against the float32 numpy reference (relative to max |ref|).
TOL = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 3e-2}
SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def gemm16_case(suite: str, dtype: str, m: int, k: int, n: int) -> Case:
    return Case(
        suite=suite, family=f"gemm {SHORT[dtype]}", name=f"m={m},k={k},n={n}",
        params={"m": m, "k": k, "n": n, "dtype": dtype},
        make_inputs=lambda rng: {"a": _rand(rng, dtype, m, k), "b": _rand(rng, dtype, k, n)},
        numpy_fn=lambda i: _f32(i["a"]) @ _f32(i["b"]),
        lc_fn=lambda lc, i, dev: lc.matmul2d(i["a"], i["b"], dev),
        lc_into=lambda lc, i, out, dev: lc.matmul2d_into(i["a"], i["b"], out, dev),
        out_shape=(m, n), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.mm(i["a"], i["b"]),
        tol=TOL[dtype], numpy_peer=False, numpy_note="numpy has no 16-bit GEMM (reference only)",
        cpu_peers=False,
        notes=[f"{dtype} storage, float32 accumulation (cuBLASLt COMPUTE_32F); torch.mm on {dtype} tensors"],
    )


def bmm_case(suite: str, dtype: str, b: int, m: int, k: int, n: int) -> Case:
    return Case(
        suite=suite, family=f"bmm {SHORT[dtype]}", name=f"batch={b},m={m},k={k},n={n}",
        params={"batch": b, "m": m, "k": k, "n": n, "dtype": dtype},
        make_inputs=lambda rng: {"a": _rand(rng, dtype, b, m, k), "b": _rand(rng, dtype, b, k, n)},
        numpy_fn=lambda i: np.matmul(_f32(i["a"]), _f32(i["b"])),
        lc_fn=lambda lc, i, dev: lc.matmul(i["a"], i["b"], dev),
        lc_into=lambda lc, i, out, dev: lc.matmul_into(i["a"], i["b"], out, dev),
        out_shape=(b, m, n), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.bmm(i["a"], i["b"]),
        tol=TOL[dtype], numpy_peer=dtype == "float32",
        numpy_note="numpy has no 16-bit GEMM (reference only)",
        notes=["lc.matmul: one strided-batched cuBLASLt call; torch.bmm"],
    )


def linear_residual_case(suite: str, dtype: str, m: int, i_: int, o: int) -> Case:
    return Case(
        suite=suite, family=f"linear+residual {SHORT[dtype]}", name=f"tokens={m},in={i_},out={o}",
        params={"m": m, "in": i_, "out": o, "dtype": dtype},
        make_inputs=lambda rng: {"x": _rand(rng, dtype, m, i_), "w": _rand(rng, dtype, o, i_, scale=0.05),
                                 "b": _rand(rng, dtype, o), "r": _rand(rng, dtype, m, o)},
        numpy_fn=lambda i: _f32(i["x"]) @ _f32(i["w"]).T + _f32(i["b"]) + _f32(i["r"]),
        lc_fn=lambda lc, i, dev: lc.linear(i["x"], i["w"], i["b"], "none", dev, residual=i["r"]),
        lc_into=lambda lc, i, out, dev: lc.linear_into(i["x"], i["w"], i["b"], out, "none", dev,
                                                       residual=i["r"]),
        out_shape=(m, o), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.addmm(i["b"], i["x"], i["w"].t()) + i["r"],
        tol=TOL[dtype], numpy_peer=dtype == "float32",
        numpy_note="numpy has no 16-bit GEMM (reference only)", cpu_peers=dtype == "float32",
        notes=["LC: residual as cuBLASLt's C (beta = 1), one call; torch: addmm + add (two kernels)"],
    )


def broadcast_add_case(suite: str, sa, sb) -> Case:
    out = tuple(np.broadcast_shapes(sa, sb))
    return Case(
        suite=suite, family="broadcast add", name=f"{list(sa)}+{list(sb)}",
        params={"a": list(sa), "b": list(sb)},
        make_inputs=lambda rng: {"a": randn(rng, *sa), "b": randn(rng, *sb)},
        numpy_fn=lambda i: i["a"] + i["b"],
        lc_fn=lambda lc, i, dev: lc.add(i["a"], i["b"], dev),
        lc_into=lambda lc, i, out_, dev: lc.add_into(i["a"], i["b"], out_, dev),
        out_shape=out,
        torch_fn=lambda torch, i: torch.add(i["a"], i["b"]),
        tol=1e-6,
        notes=["float32, numpy broadcasting (the bfloat16 and bandwidth cases are in the elementwise suite)"],
    )


# numpy in float32 for float32 inputs (the peer), in float64 for the 16-bit ones (reference only)
def _ref_layernorm(x, g, b, eps=1e-5):
    t = np.float32 if x.dtype == np.float32 else np.float64
    x, g, b = x.astype(t, copy=False), g.astype(t, copy=False), b.astype(t, copy=False)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + t(eps)) * g + b


def _ref_softmax(x):
    x = x.astype(np.float32 if x.dtype == np.float32 else np.float64, copy=False)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_TORCH_NORM = {"layernorm": "F.layer_norm with weight and bias", "softmax": "torch.softmax(x, -1)",
               "layernorm+residual": "F.layer_norm(x + r) with weight and bias",
               "softmax+scale+mask": "torch.softmax(x * 0.125 + m, -1)"}


def norm_case(suite: str, op: str, rows: int, cols: int, dtype: str) -> Case:
    """layernorm (gamma, beta) or softmax over the last dim of x[rows, cols], stored in `dtype`
    (computed in float32 by LC and torch alike). numpy is a peer only for float32 (it has no
    bfloat16 arithmetic); for the 16-bit dtypes it is the float64 reference.
    op "layernorm+residual": layernorm(x + r) with LC's fused residual (one kernel) against
    torch's F.layer_norm(x + r) (an add kernel, then the norm). op "softmax+scale+mask":
    softmax(x * 0.125 + m) with m [cols] (LC's fused scale and mask) against torch.softmax of the
    same expression."""
    dt = _np_dtype(dtype)
    short = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]

    def inputs(rng):
        ins = {"x": randn(rng, rows, cols).astype(dt)}
        if op != "softmax":
            ins["g"] = (randn(rng, cols) + np.float32(1)).astype(dt)
            ins["b"] = randn(rng, cols).astype(dt)
        if op == "layernorm+residual":
            ins["r"] = randn(rng, rows, cols).astype(dt)
        if op == "softmax+scale+mask":
            m = randn(rng, cols)
            m[1::7] = -np.inf
            ins["m"] = m.astype(dt)
        return ins

    if op == "layernorm":
        ref = lambda i: _ref_layernorm(i["x"], i["g"], i["b"])  # noqa: E731
        lc_fn = lambda lc, i, dev: lc.layernorm(i["x"], i["g"], i["b"], 1e-5, dev)  # noqa: E731
        lc_into = lambda lc, i, out, dev: lc.layernorm_into(i["x"], i["g"], i["b"], out, 1e-5, dev)  # noqa: E731
        torch_fn = lambda torch, i: torch.nn.functional.layer_norm(  # noqa: E731
            i["x"], (cols,), i["g"], i["b"], 1e-5)
    elif op == "layernorm+residual":
        def ref(i):
            t = np.float32 if dtype == "float32" else np.float64
            return _ref_layernorm(i["x"].astype(t) + i["r"].astype(t), i["g"], i["b"])
        lc_fn = lambda lc, i, dev: lc.layernorm(i["x"], i["g"], i["b"], 1e-5, dev, residual=i["r"])  # noqa: E731
        lc_into = lambda lc, i, out, dev: lc.layernorm_into(  # noqa: E731
            i["x"], i["g"], i["b"], out, 1e-5, dev, residual=i["r"])
        torch_fn = lambda torch, i: torch.nn.functional.layer_norm(  # noqa: E731
            i["x"] + i["r"], (cols,), i["g"], i["b"], 1e-5)
    elif op == "softmax+scale+mask":
        def ref(i):
            t = np.float32 if dtype == "float32" else np.float64
            return _ref_softmax(i["x"].astype(t) * t(0.125) + i["m"].astype(t))
        lc_fn = lambda lc, i, dev: lc.softmax(i["x"], dev, scale=0.125, mask=i["m"])  # noqa: E731
        lc_into = lambda lc, i, out, dev: lc.softmax_into(i["x"], out, dev, scale=0.125, mask=i["m"])  # noqa: E731
        torch_fn = lambda torch, i: torch.softmax(i["x"] * 0.125 + i["m"], -1)  # noqa: E731
    else:
        ref = lambda i: _ref_softmax(i["x"])  # noqa: E731
        lc_fn = lambda lc, i, dev: lc.softmax(i["x"], dev)  # noqa: E731
        lc_into = lambda lc, i, out, dev: lc.softmax_into(i["x"], out, dev)  # noqa: E731
        torch_fn = lambda torch, i: torch.softmax(i["x"], -1)  # noqa: E731
    return Case(
        suite=suite, family=op, name=f"rows={rows},cols={cols},dtype={short}",
        params={"rows": rows, "cols": cols, "dtype": dtype},
        make_inputs=inputs, numpy_fn=ref, lc_fn=lc_fn, lc_into=lc_into, out_shape=(rows, cols),
        torch_fn=torch_fn, dtype=dtype, precision=short,
        tol={"bfloat16": 1e-2, "float16": 2e-3, "float32": 1e-4}[dtype],
        numpy_peer=dtype == "float32",
        numpy_note="" if dtype == "float32" else "numpy has no bfloat16/float16 arithmetic worth timing",
        notes=[f"torch: {_TORCH_NORM[op]} on {dtype} tensors"],
    )


def _np_mha(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """float32 reference for [B, H, S, D] (same heads for q and k/v)."""
    q, k, v = _f32(q), _f32(k), _f32(v)
    s = np.einsum("bhid,bhjd->bhij", q, k) * np.float32(1.0 / np.sqrt(q.shape[-1]))
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, np.float32(-np.inf))
    s = s - s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", s, v).astype(np.float32)


def mha_case(suite: str, b: int, h: int, seq: int, d: int, dtype: str, causal: bool = False) -> Case:
    return Case(
        suite=suite, family=f"attention mha {SHORT[dtype]}",
        name=f"B={b},H={h},S={seq},D={d}" + (",causal" if causal else ""),
        params={"batch": b, "heads": h, "seq": seq, "head_dim": d, "dtype": dtype, "causal": causal},
        make_inputs=lambda rng: {"q": _rand(rng, dtype, b, h, seq, d), "k": _rand(rng, dtype, b, h, seq, d),
                                 "v": _rand(rng, dtype, b, h, seq, d)},
        numpy_fn=lambda i: _np_mha(i["q"], i["k"], i["v"], causal),
        lc_fn=lambda lc, i, dev: lc.attention(i["q"], i["k"], i["v"], causal=causal, device=dev),
        lc_into=lambda lc, i, out, dev: lc.attention_into(i["q"], i["k"], i["v"], out, causal=causal, device=dev),
        out_shape=(b, h, seq, d), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.nn.functional.scaled_dot_product_attention(
            i["q"], i["k"], i["v"], is_causal=causal),
        tol={"bfloat16": 2e-2, "float16": 5e-3, "float32": 2e-3}[dtype], numpy_peer=dtype == "float32",
        numpy_note="numpy has no 16-bit arithmetic worth timing", cpu_peers=dtype == "float32",
        notes=["lc.attention: one batched flash kernel over B x H x query tiles; "
               "torch: F.scaled_dot_product_attention on [B, H, S, D]"],
    )


# attention forward + backward (a training step's attention work): lc.attention(return_lse)
# then lc.attention_backward vs torch autograd of SDPA. The result compared is dq.
# (B, H, S, D, dtype[, causal]); the 16-bit rows time the CUDA backward against torch's bf16
# autograd (the CPU peers are skipped there).
MHA_BWD = [(4, 12, 512, 64, "float32"), (1, 12, 128, 64, "float32"),
           (4, 12, 512, 64, "float32", True), (4, 12, 512, 64, "bfloat16"),
           (1, 16, 1024, 128, "bfloat16", True)]


def _np_mha_dq(q: np.ndarray, k: np.ndarray, v: np.ndarray, dout: np.ndarray, causal: bool) -> np.ndarray:
    """float32 dq of softmax(q k^T / sqrt(d)) v for [B, H, S, D] (same heads for q and k/v)."""
    q, k, v, dout = _f32(q), _f32(k), _f32(v), _f32(dout)
    scale = np.float32(1.0 / np.sqrt(q.shape[-1]))
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if causal:
        s = np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, np.float32(-np.inf))
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    dp = np.einsum("bhid,bhjd->bhij", dout, v)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    return (np.einsum("bhij,bhjd->bhid", ds, k) * scale).astype(np.float32)


def _torch_mha_fwd_bwd(torch, i, causal: bool):
    # The harness runs torch under inference_mode; autograd needs it off (and normal tensors).
    with torch.inference_mode(False), torch.enable_grad():
        q, k, v = (i[n].clone().requires_grad_(True) for n in ("q", "k", "v"))
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return torch.autograd.grad(o, (q, k, v), i["dout"].clone())[0].detach()


def _lc_mha_fwd_bwd(lc, i, dev: str, causal: bool):
    out, lse = lc.attention(i["q"], i["k"], i["v"], causal=causal, return_lse=True, device=dev)
    return lc.attention_backward(i["dout"], i["q"], i["k"], i["v"], out, lse, causal=causal,
                                 device=dev)[0]


def mha_bwd_case(suite: str, b: int, h: int, seq: int, d: int, dtype: str, causal: bool = False) -> Case:
    return Case(
        suite=suite, family=f"attention mha fwd+bwd {SHORT[dtype]}",
        name=f"B={b},H={h},S={seq},D={d}" + (",causal" if causal else ""),
        params={"batch": b, "heads": h, "seq": seq, "head_dim": d, "dtype": dtype, "causal": causal},
        make_inputs=lambda rng: {n: _rand(rng, dtype, b, h, seq, d) for n in ("q", "k", "v", "dout")},
        numpy_fn=lambda i: _np_mha_dq(i["q"], i["k"], i["v"], i["dout"], causal),
        lc_fn=lambda lc, i, dev: _lc_mha_fwd_bwd(lc, i, dev, causal),
        out_shape=(b, h, seq, d), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: _torch_mha_fwd_bwd(torch, i, causal),
        tol={"bfloat16": 3e-2, "float16": 1e-2, "float32": 2e-3}[dtype],
        numpy_peer=dtype == "float32", numpy_note="numpy has no 16-bit arithmetic worth timing",
        cpu_peers=dtype == "float32", graph_ok=False,
        notes=["lc: attention(return_lse=True) + attention_backward (CPU or CUDA: "
               "attention_mha_bwd.cu; dq compared); torch: SDPA forward + autograd.grad for q, k, v"],
    )


# One attention training step on a resident session (forward, MSE loss, backward, SGD of the
# resident q/k/v) vs torch (SDPA forward, MSE, autograd, in-place SGD, loss.item()). lr = 0 keeps
# the parameters, hence the compared output (the step's forward), the same on every timed call
# while every kernel of the step still runs.
TRAIN = [(4, 12, 512, 64, "float32"), (1, 12, 128, 64, "float32"), (4, 12, 512, 64, "bfloat16")]


def _torch_train_step(torch, i, causal: bool):
    with torch.inference_mode(False), torch.enable_grad():
        q, k, v = (i[n].clone().requires_grad_(True) for n in ("q", "k", "v"))
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        loss = ((o.float() - i["target"].float()) ** 2).mean()
        grads = torch.autograd.grad(loss, (q, k, v))
        with torch.no_grad():
            for x, g in zip((q, k, v), grads):
                x.sub_(0.0 * g)
        loss.item()
        return o.detach()


def train_case(suite: str, b: int, h: int, seq: int, d: int, dtype: str, causal: bool = False) -> Case:
    sessions: dict = {}  # one resident session per (device, inputs), built on first use

    def session(lc, i, dev):
        key = (dev, id(i["q"]))
        s = sessions.get(key)
        if s is None:
            s = sessions[key] = lc.attention_resident_session(i["q"], i["k"], i["v"], causal, dev)
        return s

    def lc_fn(lc, i, dev):
        return session(lc, i, dev).train_step(i["target"], 0.0)[0]

    def lc_into(lc, i, out, dev):  # out on the device: only the loss comes back (8 bytes)
        return session(lc, i, dev).train_step(i["target"], 0.0, out=out)[0]

    return Case(
        suite=suite, family=f"attention train step {SHORT[dtype]}",
        name=f"B={b},H={h},S={seq},D={d}" + (",causal" if causal else ""),
        params={"batch": b, "heads": h, "seq": seq, "head_dim": d, "dtype": dtype, "causal": causal},
        make_inputs=lambda rng: {n: _rand(rng, dtype, b, h, seq, d) for n in ("q", "k", "v", "target")},
        numpy_fn=lambda i: _np_mha(i["q"], i["k"], i["v"], causal),
        lc_fn=lc_fn, lc_into=lc_into, out_shape=(b, h, seq, d), dtype=dtype,
        precision=SHORT[dtype], torch_fn=lambda torch, i: _torch_train_step(torch, i, causal),
        tol={"bfloat16": 2e-2, "float16": 5e-3, "float32": 2e-3}[dtype], numpy_peer=False,
        numpy_note="numpy has no training step", cpu_peers=dtype == "float32" and seq <= 128,
        graph_ok=False,
        notes=["lc: attention_resident_session(...).train_step(target, lr=0) (forward + lse, "
               "MSE loss reduced on the device, backward, SGD in place; lc_cuda returns out as "
               "numpy, lc_cuda_into writes it into a device lc.Tensor); torch: SDPA + MSE + "
               "autograd + sub_ + loss.item(), out stays on the device"],
    )


# ---- 16-bit attention: cuDNN's fused flash attention vs torch SDPA (issue #13) ---------------
# lc.attention on CUDA in float16 / bfloat16 runs cuDNN's flash attention where it supports the
# call (docs/attention.md); the "impl=own" family forces our kernel (lc.set_attention_impl) on
# the same shape, so one run shows both. (B, H, S, D, dtype, causal)
MHA16 = [(4, 12, 512, 64, "float16", False), (4, 12, 512, 64, "bfloat16", True),
         (1, 12, 128, 64, "float16", False), (1, 16, 4096, 128, "bfloat16", False),
         (1, 16, 4096, 128, "bfloat16", True)]
MHA16_OWN = [(4, 12, 512, 64, "bfloat16", False)]
# forward + backward in 16 bits (dq compared)
MHA16_BWD = [(4, 12, 512, 64, "bfloat16", False), (4, 12, 512, 64, "float16", False),
             (1, 12, 128, 64, "bfloat16", False), (1, 16, 4096, 128, "bfloat16", True)]


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def _np_mha_heads(q, k, v, causal: bool, dout=None) -> np.ndarray:
    """float32 out (or, with dout, dq) for [B, H, S, D], one (batch, head) at a time so that
    S = 4096 needs one S x S matrix (64 MiB) at once."""
    q, k, v = _f32(q), _f32(k), _f32(v)
    B, H, S, D = q.shape
    scale = np.float32(1.0 / np.sqrt(D))
    keep = np.tril(np.ones((S, S), dtype=bool)) if causal else None
    res = np.empty(q.shape if dout is not None else (B, H, S, v.shape[-1]), dtype=np.float32)
    for b in range(B):
        for h in range(H):
            s = (q[b, h] @ k[b, h].T) * scale
            if keep is not None:
                s = np.where(keep, s, np.float32(-np.inf))
            p = _softmax_rows(s)
            if dout is None:
                res[b, h] = p @ v[b, h]
            else:
                do = _f32(dout[b, h])
                dp = do @ v[b, h].T
                ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
                res[b, h] = (ds @ k[b, h]) * scale
    return res


def _with_impl(lc, impl: str, fn):
    """Runs fn with lc's attention implementation set to impl (restored after)."""
    before = lc.attention_impl()
    lc.set_attention_impl(impl)
    try:
        return fn()
    finally:
        lc.set_attention_impl(before)


def mha16_case(suite: str, b: int, h: int, seq: int, d: int, dtype: str, causal: bool,
               impl: str = "auto") -> Case:
    fam = f"attention mha {SHORT[dtype]}" + ("" if impl == "auto" else f" impl={impl}")
    return Case(
        suite=suite, family=fam,
        name=f"B={b},H={h},S={seq},D={d}" + (",causal" if causal else ""),
        params={"batch": b, "heads": h, "seq": seq, "head_dim": d, "dtype": dtype, "causal": causal,
                "impl": impl},
        make_inputs=lambda rng: {n: _rand(rng, dtype, b, h, seq, d) for n in ("q", "k", "v")},
        numpy_fn=lambda i: _np_mha_heads(i["q"], i["k"], i["v"], causal),
        lc_fn=lambda lc, i, dev: _with_impl(
            lc, impl, lambda: lc.attention(i["q"], i["k"], i["v"], causal=causal, device=dev)),
        lc_into=lambda lc, i, out, dev: _with_impl(
            lc, impl, lambda: lc.attention_into(i["q"], i["k"], i["v"], out, causal=causal, device=dev)),
        out_shape=(b, h, seq, d), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.nn.functional.scaled_dot_product_attention(
            i["q"], i["k"], i["v"], is_causal=causal),
        tol=2e-2, numpy_peer=False, numpy_note="numpy has no 16-bit arithmetic worth timing",
        cpu_peers=False,
        notes=[f"lc.attention with lc.set_attention_impl(\"{impl}\") (auto: cuDNN flash attention "
               "where supported, docs/attention.md); torch: F.scaled_dot_product_attention"],
    )


# MiniLM-sized 16-bit attention (issue #13 goal: bf16 B32 H12 S128 D32 <= 0.018 ms; issue #15's
# encoder): (B, H, S, D, masked) with a [B, S] key-padding mask (the last ~1/8 of each row's keys
# padded, as a real ragged batch) or none; each with the implementation forced (own: the
# tensor-core kernel of attention_mha_tc.cu; cudnn: cuDNN flash attention, which takes no mask,
# so a masked call runs ours anyway) and on auto (the auto-tuner's pick).
MHA_SMALL = [(32, 12, 128, 32, False), (32, 12, 128, 32, True), (1, 12, 128, 64, False),
             (1, 12, 128, 64, True)]
MHA_SMALL_IMPLS = ("own", "cudnn", "auto")

_TORCH_MASKS: Dict[Any, Any] = {}


def _torch_key_mask(torch, m):
    """[B, S] int32 keep mask -> SDPA's boolean [B, 1, 1, S] (True = attend), converted once per
    input tensor so the timed torch calls carry no conversion kernel."""
    key = (m.data_ptr(), tuple(m.shape), str(m.device))
    t = _TORCH_MASKS.get(key)
    if t is None:
        t = _TORCH_MASKS[key] = (m != 0)[:, None, None, :].contiguous()
    return t


def _np_mha_masked(q, k, v, mask) -> np.ndarray:
    """float32 out for [B, H, S, D] with an int [B, S] key-padding mask (0 = hidden)."""
    q, k, v = _f32(q), _f32(k), _f32(v)
    s = np.einsum("bhid,bhjd->bhij", q, k) * np.float32(1.0 / np.sqrt(q.shape[-1]))
    s = np.where((np.asarray(mask) != 0)[:, None, None, :], s, np.float32(-np.inf))
    return np.einsum("bhij,bhjd->bhid", _softmax_rows(s), v).astype(np.float32)


def _key_padding(rng, b: int, s: int) -> np.ndarray:
    m = np.ones((b, s), np.int32)
    for r in range(b):
        m[r, s - int(rng.integers(0, s // 4 + 1)):] = 0  # up to a quarter padded
        m[r, 0] = 1
    return m


def mha_small_case(suite: str, b: int, h: int, seq: int, d: int, masked: bool, impl: str,
                   dtype: str = "bfloat16") -> Case:
    fam = f"attention mha small {SHORT[dtype]}" + ("" if impl == "auto" else f" impl={impl}")

    def inputs(rng):
        i = {n: _rand(rng, dtype, b, h, seq, d) for n in ("q", "k", "v")}
        if masked:
            i["mask"] = _key_padding(rng, b, seq)
        return i

    def lc_call(lc, i, dev, out=None):
        m = i["mask"] if masked else None
        if out is None:
            return _with_impl(lc, impl, lambda: lc.attention(i["q"], i["k"], i["v"], mask=m, device=dev))
        return _with_impl(lc, impl, lambda: lc.attention_into(i["q"], i["k"], i["v"], out, mask=m, device=dev))

    return Case(
        suite=suite, family=fam,
        name=f"B={b},H={h},S={seq},D={d}" + (",key-padding mask" if masked else ""),
        params={"batch": b, "heads": h, "seq": seq, "head_dim": d, "dtype": dtype, "masked": masked,
                "impl": impl},
        make_inputs=inputs,
        numpy_fn=lambda i: (_np_mha_masked(i["q"], i["k"], i["v"], i["mask"]) if masked
                            else _np_mha_heads(i["q"], i["k"], i["v"], False)),
        lc_fn=lambda lc, i, dev: lc_call(lc, i, dev),
        lc_into=lambda lc, i, out, dev: lc_call(lc, i, dev, out),
        out_shape=(b, h, seq, d), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.nn.functional.scaled_dot_product_attention(
            i["q"], i["k"], i["v"], attn_mask=_torch_key_mask(torch, i["mask"]) if masked else None),
        tol=2e-2, numpy_peer=False, numpy_note="numpy has no 16-bit arithmetic worth timing",
        cpu_peers=False,
        notes=[f"lc.attention with lc.set_attention_impl(\"{impl}\") (own: the tensor-core kernel, "
               "attention_mha_tc.cu; cudnn takes no mask, so masked calls run ours); torch: "
               "F.scaled_dot_product_attention (boolean [B, 1, 1, S] attn_mask when masked)"],
    )


def _lc_mha16_fwd_bwd(lc, i, dev: str, causal: bool):
    out, lse = lc.attention(i["q"], i["k"], i["v"], causal=causal, return_lse=True, device=dev)
    try:
        return lc.attention_backward(i["dout"], i["q"], i["k"], i["v"], out, lse, causal=causal,
                                     device=dev)[0]
    except ValueError as e:
        if "not implemented" in str(e):
            raise Skip("lc.attention_backward has no CUDA entry in this build yet") from None
        raise


def mha16_bwd_case(suite: str, b: int, h: int, seq: int, d: int, dtype: str, causal: bool) -> Case:
    return Case(
        suite=suite, family=f"attention mha fwd+bwd {SHORT[dtype]}",
        name=f"B={b},H={h},S={seq},D={d}" + (",causal" if causal else ""),
        params={"batch": b, "heads": h, "seq": seq, "head_dim": d, "dtype": dtype, "causal": causal},
        make_inputs=lambda rng: {n: _rand(rng, dtype, b, h, seq, d) for n in ("q", "k", "v", "dout")},
        numpy_fn=lambda i: _np_mha_heads(i["q"], i["k"], i["v"], causal, dout=i["dout"]),
        lc_fn=lambda lc, i, dev: _lc_mha16_fwd_bwd(lc, i, dev, causal),
        out_shape=(b, h, seq, d), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: _torch_mha_fwd_bwd(torch, i, causal),
        tol=3e-2, numpy_peer=False, numpy_note="numpy has no 16-bit arithmetic worth timing",
        graph_ok=False, cpu_peers=False,
        notes=["lc: attention(return_lse=True) + attention_backward on CUDA (cuDNN flash attention "
               "forward and backward where supported); torch: SDPA forward + autograd.grad"],
    )


# ---- decode: a few query rows against a long K/V cache (issue #13) ----------------------------
# lc.attention runs flash decoding for these (attention_decode.cu: the keys split across blocks,
# then a combine pass), or cuDNN where "auto" measured it faster; the impl=own / impl=cudnn
# families force one. Decoding is bandwidth-bound: each row also reports the achieved GB/s of
# K and V (the bytes every implementation must read once), e.g. 134 MB for B8 Hk8 Sk4096 D128
# in bf16. (B, H, Hk, Sk, D, dtype); Sq = 1. Goal: bf16 B8 H32 Hk8 <= 0.040 ms (>= 3.4 TB/s).
DECODE = [(8, 32, 8, 4096, 128, "bfloat16"), (1, 32, 8, 32768, 128, "bfloat16"),
          (8, 32, 8, 4096, 128, "float16"), (1, 32, 8, 32768, 128, "float16")]


def _np_decode(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """float32 grouped-query attention for q [B, H, Sq, D], k/v [B, Hk, Sk, D]."""
    q, k, v = _f32(q), _f32(k), _f32(v)
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * np.float32(1.0 / np.sqrt(q.shape[-1]))
    return np.einsum("bhij,bhjd->bhid", _softmax_rows(s), v).astype(np.float32)


def decode_case(suite: str, b: int, h: int, hk: int, sk: int, d: int, dtype: str,
                impl: str = "auto") -> Case:
    fam = f"attention decode {SHORT[dtype]}" + ("" if impl == "auto" else f" impl={impl}")
    kv_bytes = 2 * b * hk * sk * d * (4 if dtype == "float32" else 2)
    return Case(
        suite=suite, family=fam, name=f"B={b},H={h},Hk={hk},Sq=1,Sk={sk},D={d}",
        params={"batch": b, "heads": h, "kv_heads": hk, "sq": 1, "sk": sk, "head_dim": d,
                "dtype": dtype, "impl": impl, "kv_bytes": kv_bytes},
        make_inputs=lambda rng: {"q": _rand(rng, dtype, b, h, 1, d), "k": _rand(rng, dtype, b, hk, sk, d),
                                 "v": _rand(rng, dtype, b, hk, sk, d)},
        numpy_fn=lambda i: _np_decode(i["q"], i["k"], i["v"]),
        lc_fn=lambda lc, i, dev: _with_impl(lc, impl, lambda: lc.attention(i["q"], i["k"], i["v"], device=dev)),
        lc_into=lambda lc, i, out, dev: _with_impl(
            lc, impl, lambda: lc.attention_into(i["q"], i["k"], i["v"], out, device=dev)),
        out_shape=(b, h, 1, d), dtype=dtype, precision=SHORT[dtype],
        torch_fn=lambda torch, i: torch.nn.functional.scaled_dot_product_attention(
            i["q"], i["k"], i["v"], enable_gqa=True),
        tol=2e-2, numpy_peer=False, numpy_note="numpy has no 16-bit arithmetic worth timing",
        cpu_peers=False,
        notes=[f"lc.attention with lc.set_attention_impl(\"{impl}\") (own: flash decoding, "
               "attention_decode.cu); torch: F.scaled_dot_product_attention(enable_gqa=True); "
               f"K+V = {kv_bytes / 1e6:.0f} MB per call (GB/s columns: K/V bytes / time)"],
    )


def add_kv_gbps(row: dict) -> None:
    """Decode rows: the achieved GB/s of K/V per timed system (row["gbps"], a note)."""
    kv = (row.get("params") or {}).get("kv_bytes")
    if not kv:
        return
    gbps = {s: kv / (c["ms"] * 1e-3) / 1e9 for s, c in row["systems"].items() if c.get("ms")}
    for s, g in gbps.items():
        row["systems"][s]["gbps"] = g
    row["gbps"] = gbps
    if gbps:
        row["notes"].append("K/V GB/s: " + ", ".join(f"{s} {g:.0f}" for s, g in gbps.items()))


def run_kernel(args, env, cfg, modes):
    """The suite's runner: harness.run_cases, then GB/s for the decode rows."""
    from harness import run_cases

    cases = [c for c in build_cases(quick=args.quick)
             if matches_filter(args.filter, f"{c.family} {c.name}")]
    rows = run_cases(cases, modes, env, cfg, desc="kernel", progress=not args.no_progress)
    for r in rows:
        add_kv_gbps(r)
    return rows


def build_cases(quick: bool = False) -> List[Case]:
    s = "kernel"
    cases = [attention_case(s, "attention micro", q, d) for q, d in ATTN_MICRO]
    cases += [attention_case(s, "attention", q, d) for q, d in ATTN_LARGE]
    cases += [conv_case(s, *shape) for shape in CONV]
    cases += [gemm_case(s, "gemm", *shape) for shape in GEMM]
    cases += [gemm16_case(s, dt, *shape) for dt in ("bfloat16", "float16") for shape in GEMM16]
    cases += [bmm_case(s, dt, *shape) for dt in ("float32", "bfloat16") for shape in BMM]
    cases += [linear_residual_case(s, dt, *shape) for dt in ("float32", "bfloat16")
              for shape in LINEAR_RESIDUAL]
    cases += [broadcast_add_case(s, sa, sb) for sa, sb in BCAST]
    cases += [norm_case(s, op, *shape) for op in ("layernorm", "softmax") for shape in NORM]
    cases += [norm_case(s, op, *shape) for op in ("layernorm+residual", "softmax+scale+mask")
              for shape in NORM]
    cases += [mha_case(s, *shape) for shape in MHA]
    cases += [mha_bwd_case(s, *shape) for shape in MHA_BWD]
    cases += [mha16_case(s, *shape) for shape in MHA16]
    cases += [mha16_case(s, *shape, impl="own") for shape in MHA16_OWN]
    cases += [mha_small_case(s, *shape, impl=impl) for shape in MHA_SMALL for impl in MHA_SMALL_IMPLS]
    cases += [mha16_bwd_case(s, *shape) for shape in MHA16_BWD]
    cases += [train_case(s, *shape) for shape in TRAIN]
    cases += [decode_case(s, *shape, impl=impl) for shape in DECODE for impl in ("auto", "own", "cudnn")]
    return cases


if __name__ == "__main__":
    suite_main("kernel", build_cases, runner=run_kernel)
