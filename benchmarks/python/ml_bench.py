"""ML suite: linear classifier inference, matrix subtraction (preprocessing), vector add.

    python benchmarks/python/ml_bench.py [--quick] [--out-dir DIR]
"""

from __future__ import annotations

from typing import List

from harness import Case, randn
from suite_main import suite_main

LINEAR = [(1024, 1024, 512), (2048, 1024, 512), (4096, 1024, 1024)]
MATRIX_SUB = [(512, 512), (1024, 1024), (2048, 1024)]
VECTOR_ADD = [64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 64 * 1024 * 1024]


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


def build_cases(quick: bool = False) -> List[Case]:
    cases = [linear_case(*s) for s in LINEAR]
    cases += [matrix_sub_case(*s) for s in MATRIX_SUB]
    cases += [vector_add_case(n) for n in VECTOR_ADD]
    return cases


if __name__ == "__main__":
    suite_main("ml", build_cases)
