"""The CPU speed goals of issues #13 and #15 in one run, for the GPU host's 16 threads (or any
machine): float32 multi-head attention B4 H12 S512 D64 through ``lc.attention_into(device="cpu")``
against torch's CPU SDPA (same process, all cores, medians of 30 calls per round, five
alternating rounds, the verdict their median ratio: the two libraries' thread pools interfere,
and on the GPU host two rounds gave 0.87x and 1.18x), then MiniLM (random weights
of the all-MiniLM-L6-v2 config) through ``lc-run bench --device cpu`` against torch eager and
onnxruntime.

    python benchmarks/python/cpu_goals.py [--mha-only]
"""
from __future__ import annotations

import os
import sys

import numpy as np

import lightning_core as lc
from lightning_core.cli import main as lc_run
from profile_model import _median_ms  # settles other libraries' spinning workers first


ROUNDS = 5  # alternating LC / torch rounds: the verdict is the median of their ratios


def main() -> int:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((4, 12, 512, 64)).astype(np.float32) for _ in range(3))
    out = np.empty_like(q)
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    ref = sdpa(tq.double(), tk.double(), tv.double()).numpy()
    lc.attention_into(q, k, v, out, device="cpu")
    err = float(np.abs(out - ref).max())
    ratios = []
    for rnd in range(ROUNDS):
        t_lc = _median_ms(lambda: lc.attention_into(q, k, v, out, device="cpu"), 30)
        t_torch = _median_ms(lambda: sdpa(tq, tk, tv), 30)
        ratios.append(t_torch / t_lc)
        print(f"cpu mha fp32 B4 H12 S512 D64 round {rnd}: lc {t_lc:.3f} ms, torch {t_torch:.3f} ms "
              f"({torch.get_num_threads()} threads), lc/torch speed {t_torch / t_lc:.2f}x, "
              f"max err vs float64 {err:.1e}", flush=True)
    print(f"cpu mha fp32 B4 H12 S512 D64: median of {ROUNDS} rounds' lc/torch speed "
          f"{float(np.median(ratios)):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})", flush=True)
    if "--mha-only" in sys.argv:
        return 0
    return lc_run(["bench", "--device", "cpu", "--random-weights", "--batch", "1,32", "--seq", "16,128",
                   "--peers", "lc,torch,ort"])


if __name__ == "__main__":
    sys.exit(main())
