"""ML suite: linear classifier inference, matrix subtraction (preprocessing), vector add, one
LSTM layer (lc.lstm vs torch.nn.LSTM: cuDNN on the GPU, torch's CPU kernel, a numpy loop), and
MiniLM's encoder pieces: the MLP up projection with the exact GELU (linear(..., "gelu_erf"),
fused into the GEMM on the CPU) and its self-attention shapes (vs torch SDPA).

    python benchmarks/python/ml_bench.py [--quick] [--out-dir DIR]
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import numpy as np

from harness import Case, randn
from suite_main import suite_main

LINEAR = [(1024, 1024, 512), (2048, 1024, 512), (4096, 1024, 1024)]
MATRIX_SUB = [(512, 512), (1024, 1024), (2048, 1024)]
VECTOR_ADD = [64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 64 * 1024 * 1024]
# (seq, batch, input, hidden, dtype, precision). float32 twice: "fp32" is exact float32 on both
# sides (torch with TF32 off: cuDNN's IEEE float32 LSTM; LC's default policy), "tf32" lets both
# use TF32 (torch's cuDNN default for float32 RNNs; LC with lc.policy(precision="tf32"), which
# only its input-projection GEMM uses: the persistent recurrence is float32 FMAs either way).
LSTM = [(128, 32, 512, 512, "float32", "fp32"), (128, 32, 512, 512, "float32", "tf32"),
        (128, 32, 512, 512, "bfloat16", "bf16")]
# MiniLM's MLP up projection (tokens, in, out): exact GELU + bias fused into the GEMM on the
# CPU; tokens = batch x seq of 1x16, 1x128, 32x128.
LINEAR_GELU = [(16, 384, 1536), (128, 384, 1536), (4096, 384, 1536)]
# MiniLM's attention (batch, heads, seq, head dim): the CPU's encoder kernel.
ENC_ATTENTION = [(1, 12, 16, 32), (1, 12, 128, 32), (32, 12, 128, 32)]


def _erf(x: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf
        return erf(x)
    except ImportError:   # slow, but only a reference then
        import math
        return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def linear_gelu_case(t: int, i_: int, o: int) -> Case:
    def ref(i):
        y = i["x"] @ i["w"].T + i["b"]
        return 0.5 * y * (1.0 + _erf(y / np.float32(np.sqrt(2.0))))
    return Case(
        suite="ml", family="linear + exact gelu", name=f"tokens={t},in={i_},out={o}",
        params={"tokens": t, "in": i_, "out": o},
        make_inputs=lambda rng: {"x": randn(rng, t, i_), "w": randn(rng, o, i_, scale=i_ ** -0.5),
                                 "b": randn(rng, o, scale=0.1)},
        numpy_fn=ref,
        lc_fn=lambda lc, i, dev: lc.linear(i["x"], i["w"], i["b"], "gelu_erf", dev),
        lc_into=lambda lc, i, out, dev: lc.linear_into(i["x"], i["w"], i["b"], out, "gelu_erf", dev),
        out_shape=(t, o),
        torch_fn=lambda torch, i: torch.nn.functional.gelu(
            torch.nn.functional.linear(i["x"], i["w"], i["b"])),
        tol=1e-3, notes=["BERT's intermediate layer: gelu(x @ W^T + b), exact erf GELU; LC fuses "
                         "bias + GELU into the GEMM tiles on the CPU"],
    )


def enc_attention_case(b: int, h: int, s: int, d: int) -> Case:
    def ref(i):
        q, k, v = (i[n].astype(np.float64) for n in ("q", "k", "v"))
        sc = np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(d)
        p = np.exp(sc - sc.max(-1, keepdims=True))
        return (np.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdims=True), v)).astype(np.float32)
    return Case(
        suite="ml", family="encoder attention", name=f"batch={b},heads={h},seq={s},d={d}",
        params={"batch": b, "heads": h, "seq": s, "d": d},
        make_inputs=lambda rng: {n: randn(rng, b, h, s, d) for n in ("q", "k", "v")},
        numpy_fn=ref, numpy_peer=False, numpy_note="float64 einsum reference only",
        lc_fn=lambda lc, i, dev: lc.attention(i["q"], i["k"], i["v"], device=dev),
        out_shape=(b, h, s, d),
        torch_fn=lambda torch, i: torch.nn.functional.scaled_dot_product_attention(
            i["q"], i["k"], i["v"]),
        tol=1e-3, notes=["MiniLM's self-attention shapes (no mask); LC's CPU runs its encoder "
                         "kernel (one task per (batch, head), vectorised QK^T / softmax / PV)"],
    )


def linear_case(b: int, i_: int, o: int) -> Case:
    return Case(
        suite="ml", family="linear classifier", name=f"batch={b},in={i_},out={o}",
        params={"batch": b, "in": i_, "out": o},
        make_inputs=lambda rng: {"x": randn(rng, b, i_), "w": randn(rng, o, i_, scale=i_ ** -0.5),
                                 "b": randn(rng, o, scale=0.1)},
        numpy_fn=lambda i: i["x"] @ i["w"].T + i["b"],
        lc_fn=lambda lc, i, dev: lc.linear(i["x"], i["w"], i["b"], "none", dev),
        lc_into=lambda lc, i, out, dev: lc.linear_into(i["x"], i["w"], i["b"], out, "none", dev),
        out_shape=(b, o),
        torch_fn=lambda torch, i: torch.nn.functional.linear(i["x"], i["w"], i["b"]),
        tol=1e-3, notes=["logits = x @ W^T + b (weight [out, in])"],
    )


def matrix_sub_case(r: int, c: int) -> Case:
    return Case(
        suite="ml", family="matrix sub", name=f"rows={r},cols={c}", params={"rows": r, "cols": c},
        make_inputs=lambda rng: {"a": randn(rng, r, c), "b": randn(rng, r, c)},
        numpy_fn=lambda i: i["a"] - i["b"],
        lc_fn=lambda lc, i, dev: lc.matrix_sub(i["a"], i["b"], dev),
        lc_into=lambda lc, i, out, dev: lc.matrix_sub_into(i["a"], i["b"], out, dev),
        out_shape=(r, c),
        torch_fn=lambda torch, i: torch.sub(i["a"], i["b"]), tol=1e-6,
    )


def vector_add_case(n: int) -> Case:
    label = f"{n // (1024 * 1024)}M" if n >= 1024 * 1024 else f"{n // 1024}K"
    return Case(
        suite="ml", family="vector add", name=f"n={n} ({label})", params={"n": n},
        make_inputs=lambda rng: {"a": randn(rng, n), "b": randn(rng, n)},
        numpy_fn=lambda i: i["a"] + i["b"],
        lc_fn=lambda lc, i, dev: lc.vector_add(i["a"], i["b"], dev),
        lc_into=lambda lc, i, out, dev: lc.vector_add_into(i["a"], i["b"], out, dev),
        out_shape=(n,),
        torch_fn=lambda torch, i: torch.add(i["a"], i["b"]), tol=1e-6,
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def lstm_numpy(i: Dict[str, np.ndarray]) -> np.ndarray:
    """The LSTM recurrence in numpy float32 (the peer, and the reference): y [T, B, H]."""
    x, w_ih, w_hh = (i[k].astype(np.float32) for k in ("x", "w_ih", "w_hh"))
    h, c = i["h0"].astype(np.float32), i["c0"].astype(np.float32)
    H = w_hh.shape[1]
    xg = x @ w_ih.T + (i["b_ih"].astype(np.float32) + i["b_hh"].astype(np.float32))
    y = np.empty((x.shape[0], x.shape[1], H), np.float32)
    for t in range(x.shape[0]):
        g = xg[t] + h @ w_hh.T
        c = _sigmoid(g[:, H:2 * H]) * c + _sigmoid(g[:, :H]) * np.tanh(g[:, 2 * H:3 * H])
        h = _sigmoid(g[:, 3 * H:]) * np.tanh(c)
        y[t] = h
    return y


# torch.nn.LSTM modules per (device, dtype, shapes), built once (cuDNN's flattened weights, as a
# torch user holds them); weights are copied in only when a new input dict arrives (oneshot mode
# builds one per call: its upload).
_TORCH_LSTM: Dict[Any, Any] = {}


def lstm_torch(torch: Any, i: Dict[str, Any]) -> Any:
    x, w_ih, w_hh = i["x"], i["w_ih"], i["w_hh"]
    key = (str(x.device), x.dtype, tuple(x.shape), tuple(w_hh.shape))
    ent = _TORCH_LSTM.get(key)
    if ent is None:
        m = torch.nn.LSTM(x.shape[2], w_hh.shape[1]).to(device=x.device, dtype=x.dtype).eval()
        ent = _TORCH_LSTM[key] = [m, None]
    m = ent[0]
    if ent[1] is not i:
        with torch.no_grad():
            m.weight_ih_l0.copy_(w_ih)
            m.weight_hh_l0.copy_(w_hh)
            m.bias_ih_l0.copy_(i["b_ih"])
            m.bias_hh_l0.copy_(i["b_hh"])
        ent[1] = i
    return m(x, (i["h0"][None], i["c0"][None]))[0]


_LC_STATE: Dict[Any, Any] = {}


def lstm_lc_into(lc: Any, i: Dict[str, Any], out: Any, dev: str) -> Any:
    """lc.lstm_into with y = the harness's preallocated `out`; h_n / c_n preallocated once."""
    st = _LC_STATE.get(id(out))
    if st is None:
        shape = [out.shape[1], out.shape[2]]
        st = _LC_STATE[id(out)] = (out, lc.Tensor.empty(shape, dtype=out.dtype, device=dev),
                                   lc.Tensor.empty(shape, dtype=out.dtype, device=dev))
    lc.lstm_into(i["x"], i["h0"], i["c0"], i["w_ih"], i["w_hh"], i["b_ih"], i["b_hh"], out,
                 st[1], st[2], device=dev)
    return out


def _lstm_lc(lc: Any, i: Dict[str, Any], dev: str) -> Any:
    return lc.lstm(i["x"], i["h0"], i["c0"], i["w_ih"], i["w_hh"], i["b_ih"], i["b_hh"],
                   device=dev)[0]


def _with_tf32(fn: Callable[..., Any]) -> Callable[..., Any]:
    """fn run under lc.policy(precision="tf32") (nested on the harness's own policy scope, so only
    the precision changes)."""
    def run(lc: Any, *args: Any) -> Any:
        with lc.policy(precision="tf32"):
            return fn(lc, *args)
    return run


def lstm_case(T: int, B: int, I: int, H: int, dtype: str, prec: str) -> Case:
    def make(rng: np.random.Generator) -> Dict[str, np.ndarray]:
        k = H ** -0.5
        ins = {"x": randn(rng, T, B, I), "h0": randn(rng, B, H, scale=0.5), "c0": randn(rng, B, H),
               "w_ih": randn(rng, 4 * H, I, scale=k), "w_hh": randn(rng, 4 * H, H, scale=k),
               "b_ih": randn(rng, 4 * H, scale=k), "b_hh": randn(rng, 4 * H, scale=k)}
        if dtype == "bfloat16":
            import ml_dtypes
            ins = {n: v.astype(ml_dtypes.bfloat16) for n, v in ins.items()}
        return ins

    tf32 = prec == "tf32"
    precision_note = {
        "fp32": "precision: exact float32 on both sides (torch: TF32 off, cuDNN's IEEE float32 "
                "LSTM; LC: default fp32 policy)",
        "tf32": "precision: TF32 allowed on both sides (torch: cuDNN's default for float32; LC: "
                "lc.policy(precision='tf32'), used by its input GEMM only, the persistent "
                "recurrence stays float32)",
        "bf16": "precision: bfloat16 storage, float32 accumulation on both sides",
    }[prec]
    return Case(
        suite="ml", family="lstm",
        name=f"seq={T},batch={B},input={I},hidden={H},{dtype}" + (",tf32" if tf32 else ""),
        params={"seq": T, "batch": B, "input": I, "hidden": H, "dtype": dtype, "precision": prec},
        make_inputs=make, numpy_fn=lstm_numpy,
        lc_fn=_with_tf32(_lstm_lc) if tf32 else _lstm_lc,
        lc_into=_with_tf32(lstm_lc_into) if tf32 else lstm_lc_into, out_shape=(T, B, H),
        dtype=dtype, precision=prec, torch_precision="tf32" if tf32 else "fp32",
        torch_fn=lstm_torch, tol={"fp32": 1e-4, "tf32": 3e-3, "bf16": 3e-2}[prec],
        # bfloat16 (and the TF32 twin) on the CPU say nothing about the cuDNN comparison
        cpu_peers=prec == "fp32",
        notes=["one LSTM layer, torch.nn.LSTM layout; y [T, B, H] compared (h_n = y[-1]); "
               "LC CUDA: input GEMM (cuBLASLt) + per step GEMM + fused pointwise kernel replayed "
               "as one CUDA graph (LC_LSTM_PERSISTENT=1: one persistent cooperative kernel for "
               "all steps); LC CPU: one pool job for the whole sequence; torch: nn.LSTM (cuDNN "
               "on the GPU)", precision_note],
    )


def build_cases(quick: bool = False) -> List[Case]:
    cases = [linear_case(*s) for s in LINEAR]
    cases += [matrix_sub_case(*s) for s in MATRIX_SUB]
    cases += [vector_add_case(n) for n in VECTOR_ADD]
    cases += [lstm_case(*s) for s in LSTM]
    cases += [linear_gelu_case(*s) for s in LINEAR_GELU]
    cases += [enc_attention_case(*s) for s in ENC_ATTENTION]
    return cases


if __name__ == "__main__":
    suite_main("ml", build_cases)
