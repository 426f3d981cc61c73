"""Every ```python block of README.md and docs/*.md runs (on the CPU here; a block after a
`<!-- docs-test: gpu -->` line runs only where a GPU is usable). The blocks of one file share a
namespace, in order, seeded with the names the docs' fragments assume (a, b, out, x, w, ...):
a doc example that stops working fails CI."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

import lightning_core as lc

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"(<!-- docs-test: gpu -->\n)?```python\n(.*?)```", re.S)


def blocks(path):
    return [(bool(m.group(1)), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def seed_namespace():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 64)).astype(np.float32)
    b = rng.standard_normal((64, 64)).astype(np.float32)
    return {
        "np": np, "lc": lc, "a": a, "b": b, "out": np.empty((64, 64), np.float32),
        "x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "m": 64, "k": 64, "n": 64, "model_step": lambda: lc.matmul2d(a, b),
    }


@pytest.mark.parametrize("path", [p for p in FILES if blocks(p)], ids=lambda p: p.name)
def test_doc_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (trace.json)
    ns = seed_namespace()
    ran = 0
    saved = lc.get_default_policy()
    try:
        for i, (gpu_only, code) in enumerate(blocks(path)):
            if gpu_only and not lc.cuda_available():
                continue
            exec(compile(code, f"{path.name}[block {i}]", "exec"), ns)  # noqa: S102
            ran += 1
    finally:
        lc.set_default_policy(saved)
    assert ran > 0 or any(g for g, _ in blocks(path))
