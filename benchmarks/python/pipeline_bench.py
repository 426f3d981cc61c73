"""Pipeline suite: FFN, LayerNorm -> projection, conv -> attention.

LC runs each pipeline through the integrated API in lightning_core.api when this build has it
(lc.api.ffn, lc.api.layernorm_linear, lc.api.conv_attention_torchstrong_nchw); otherwise as a
composition of the library's ops with device-resident intermediates (download=False). The row's
`impl` column says which one ran.

conv -> attention arrangement (the original's "torchstrong" path, also lc.api.qkv_arrange):
conv2d(3x3, stride 1, pad 1, bias) + ReLU gives [1, 16, 8, 8] = 1024 features; they are flattened
in NCHW order and read cyclically until seq*head_dim values are filled (np.tile then slice),
reshaped to [seq, head_dim], and used as q = k = v of one attention head. Every peer does the same.

    python benchmarks/python/pipeline_bench.py [--quick] [--out-dir DIR]
"""

from __future__ import annotations

from typing import Any, List

import numpy as np

from harness import Case, np_attention, np_conv2d_nchw, np_gelu_tanh, np_layernorm, randn, torch_attention
from suite_main import suite_main

FFN = [(512, 768, 3072), (1024, 768, 3072)]
LN_PROJ = [(1024, 1024, 1024), (2048, 1024, 1024)]
CONV_ATTN = [(48, 48), (192, 48), (192, 8), (96, 48)]


def _api(lc: Any, name: str):
    api = getattr(lc, "api", None)
    return getattr(api, name, None) if api is not None else None


def _lc_impl(name: str, composed: str) -> str:
    try:
        import lightning_core as lc  # noqa: WPS433
    except Exception:
        return composed
    return f"lc.api.{name} (integrated API)" if _api(lc, name) else f"{composed} (composed: no fused API in this build)"


def _inner_policy(lc: Any, dev: str):
    """Intermediate results stay where they were computed (no host round trip); on the CPU there
    is nothing to download and the policy requires download=True."""
    return lc.ExecutionPolicy(device=dev, download=dev != "cpu")


# ---- FFN: linear(gelu) -> linear -------------------------------------------------------------------
def ffn_case(b: int, d: int, f: int) -> Case:
    def lc_fn(lc, i, dev):
        api = _api(lc, "ffn")
        if api is not None:
            return api(i["x"], i["w1"], i["b1"], i["w2"], i["b2"], "gelu", dev)
        h = lc.linear(i["x"], i["w1"], i["b1"], "gelu", dev, policy=_inner_policy(lc, dev))
        return lc.linear(h, i["w2"], i["b2"], "none", dev)

    def torch_fn(torch, i):
        F = torch.nn.functional
        return F.linear(F.gelu(F.linear(i["x"], i["w1"], i["b1"]), approximate="tanh"), i["w2"], i["b2"])

    return Case(
        suite="pipeline", family="ffn", name=f"batch={b},d_model={d},d_ff={f}",
        params={"batch": b, "d_model": d, "d_ff": f},
        make_inputs=lambda rng: {"x": randn(rng, b, d), "w1": randn(rng, f, d, scale=d ** -0.5),
                                 "b1": randn(rng, f, scale=0.1), "w2": randn(rng, d, f, scale=f ** -0.5),
                                 "b2": randn(rng, d, scale=0.1)},
        numpy_fn=lambda i: np_gelu_tanh(i["x"] @ i["w1"].T + i["b1"]) @ i["w2"].T + i["b2"],
        lc_fn=lc_fn, torch_fn=torch_fn, tol=2e-3,
        impl=_lc_impl("ffn", "linear(gelu) -> linear"),
        notes=["GELU is the tanh approximation in every system"],
    )


# ---- LayerNorm -> projection ---------------------------------------------------------------------
def ln_proj_case(b: int, d: int, o: int) -> Case:
    def lc_fn(lc, i, dev):
        api = _api(lc, "layernorm_linear")
        if api is not None:
            return api(i["x"], i["g"], i["beta"], i["w"], i["b"], 1e-5, "none", dev)
        h = lc.layernorm(i["x"], i["g"], i["beta"], 1e-5, dev, policy=_inner_policy(lc, dev))
        return lc.linear(h, i["w"], i["b"], "none", dev)

    def torch_fn(torch, i):
        F = torch.nn.functional
        return F.linear(F.layer_norm(i["x"], (d,), i["g"], i["beta"], 1e-5), i["w"], i["b"])

    return Case(
        suite="pipeline", family="ln->proj", name=f"batch={b},d_model={d},out={o}",
        params={"batch": b, "d_model": d, "out": o},
        make_inputs=lambda rng: {"x": randn(rng, b, d), "g": 1.0 + randn(rng, d, scale=0.1),
                                 "beta": randn(rng, d, scale=0.1), "w": randn(rng, o, d, scale=d ** -0.5),
                                 "b": randn(rng, o, scale=0.1)},
        numpy_fn=lambda i: np_layernorm(i["x"], i["g"], i["beta"]) @ i["w"].T + i["b"],
        lc_fn=lc_fn, torch_fn=torch_fn, tol=2e-3,
        impl=_lc_impl("layernorm_linear", "layernorm -> linear"),
    )


# ---- conv -> attention ---------------------------------------------------------------------------
def np_qkv_arrange(feats: np.ndarray, seq: int, d: int) -> np.ndarray:
    flat = np.asarray(feats, dtype=np.float32).reshape(-1)
    need = seq * d
    return np.tile(flat, -(-need // flat.size))[:need].reshape(seq, d)


def conv_attn_case(seq: int, d: int, n: int = 1, c: int = 3, h: int = 8, w: int = 8, oc: int = 16) -> Case:
    def lc_fn(lc, i, dev):
        api = _api(lc, "conv_attention_torchstrong_nchw")
        if api is not None:
            return api(i["x"], i["w"], i["b"], seq, d, 1, 1, 1, 1, dev)
        feats = lc.conv2d_nchw(i["x"], i["w"], i["b"], 1, 1, 1, 1, dev, activation="relu",
                               policy=_inner_policy(lc, dev))
        host = feats.numpy() if isinstance(feats, lc.Tensor) else feats
        qkv = np_qkv_arrange(host, seq, d)
        if isinstance(feats, lc.Tensor) and feats.device != "cpu":
            qkv = lc.Tensor(qkv, device=feats.device)
        return lc.attention2d(qkv, qkv, qkv, False, dev)

    def torch_fn(torch, i):
        y = torch.relu(torch.nn.functional.conv2d(i["x"], i["w"], i["b"], 1, 1)).reshape(-1)
        need = seq * d
        qkv = y.repeat(-(-need // y.numel()))[:need].reshape(seq, d)
        return torch_attention(torch, qkv, qkv, qkv)

    def np_fn(i):
        qkv = np_qkv_arrange(np_conv2d_nchw(i["x"], i["w"], i["b"], 1).clip(min=0), seq, d)
        return np_attention(qkv, qkv, qkv)

    return Case(
        suite="pipeline", family="conv->attn",
        name=f"conv(n={n},c={c}->{oc},h={h},w={w},k=3)+attn(seq={seq},d={d})",
        params={"seq": seq, "head_dim": d, "n": n, "c": c, "h": h, "w": w, "oc": oc},
        make_inputs=lambda rng: {"x": randn(rng, n, c, h, w), "w": randn(rng, oc, c, 3, 3, scale=0.3),
                                 "b": randn(rng, oc, scale=0.1)},
        numpy_fn=np_fn, lc_fn=lc_fn, torch_fn=torch_fn, tol=2e-3,
        impl=_lc_impl("conv_attention_torchstrong_nchw", "conv2d(relu) -> qkv arrange -> attention2d"),
        notes=["q = k = v = conv features (ReLU) flattened NCHW, tiled cyclically to seq*d"],
    )


def build_cases(quick: bool = False) -> List[Case]:
    cases = [ffn_case(*s) for s in FFN]
    cases += [ln_proj_case(*s) for s in LN_PROJ]
    cases += [conv_attn_case(*s) for s in CONV_ATTN]
    return cases


if __name__ == "__main__":
    suite_main("pipeline", build_cases)
