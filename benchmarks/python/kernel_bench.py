"""Kernel suite: single ops. Attention (micro and larger), conv2d 3x3, GEMM, broadcast add.

    python benchmarks/python/kernel_bench.py [--quick] [--out-dir DIR] [--modes oneshot,resident]
"""

from __future__ import annotations

from typing import List

import numpy as np

from harness import Case, np_attention, np_conv2d_nchw, randn, torch_attention
from suite_main import suite_main

ATTN_MICRO = [(8, 16), (8, 32), (12, 12)]
ATTN_LARGE = [(256, 64), (512, 64), (4096, 64)]
CONV = [(1, 3, 16, 16, 16), (1, 3, 24, 24, 16), (2, 3, 16, 16, 16), (1, 3, 28, 28, 16),
        (1, 3, 32, 32, 16), (8, 64, 56, 56, 64)]
GEMM = [(256, 256, 256), (896, 896, 896), (1024, 1024, 1024)]
# float32 add with numpy broadcasting: a row, a column, and both operands broadcast
BCAST = [((4096, 4096), (4096,)), ((4096, 4096), (4096, 1)), ((64, 1, 1024), (1, 256, 1024)),
         ((257, 129), (1, 129))]


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


def build_cases(quick: bool = False) -> List[Case]:
    s = "kernel"
    cases = [attention_case(s, "attention micro", q, d) for q, d in ATTN_MICRO]
    cases += [attention_case(s, "attention", q, d) for q, d in ATTN_LARGE]
    cases += [conv_case(s, *shape) for shape in CONV]
    cases += [gemm_case(s, "gemm", *shape) for shape in GEMM]
    cases += [broadcast_add_case(s, sa, sb) for sa, sb in BCAST]
    return cases


if __name__ == "__main__":
    suite_main("kernel", build_cases)
