"""TransformerEncoder graph mode (issue #15): one planned LC graph per (batch bucket, sequence
bucket), padded with mask-0 tokens and sliced back, cached in an LRU on the encoder; the same
embeddings as eager mode and the float64 reference (random small configs) and, with the real
all-MiniLM-L6-v2 installed, as sentence-transformers' fixture (cosine >= 0.99999 in both modes)."""
from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")

from lightning_core.models import SentenceEncoder, TransformerEncoder, bucket_size  # noqa: E402
from test_models import (  # noqa: E402
    DEVICES, FIXTURE, MINILM, TOL, cosines, needs_minilm, ragged_batch, random_weights,
    ref_embed, ref_hidden, rel_err, small_config,
)


def test_bucket_sizes():
    assert [bucket_size(n) for n in (1, 2, 3, 5, 8, 9, 13, 17, 25, 33, 100)] == \
        [1, 2, 4, 8, 8, 12, 16, 24, 32, 48, 128]
    assert bucket_size(3, 8) == 8 and bucket_size(300, 8, 512) == 384
    assert bucket_size(40, 8, 41) == 41   # capped by the position table
    for n in range(1, 600):
        b = bucket_size(n)
        assert n <= b and (n <= 8 or b <= 1.5 * n + 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_graph_mode_matches_eager_and_reference(rng, device, dtype):
    cfg = small_config()
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device=device, dtype=dtype)
    for lengths in ([7, 1, 4], [13], [1], [5, 5], [11, 3, 8, 2, 9]):
        ids, mask = ragged_batch(rng, cfg, lengths)
        g = enc.forward(ids, mask, execution_mode="graph")
        e = enc.forward(ids, mask, execution_mode="eager")
        assert g.shape == e.shape == (len(lengths), max(lengths), cfg["hidden_size"])
        assert g.dtype == dtype and g.device == device
        got, eager = np.asarray(g.numpy(), np.float64), np.asarray(e.numpy(), np.float64)
        ref = ref_hidden(cfg, W, ids, mask)
        m = mask != 0  # padded positions are not compared (their values are not specified)
        assert np.isfinite(got).all()
        assert rel_err(got[m], ref[m]) <= TOL[dtype], (lengths, rel_err(got[m], ref[m]))
        assert rel_err(got[m], eager[m]) <= TOL[dtype]
        pooled = enc.mean_pool(g, mask)
        assert rel_err(pooled, ref_embed(cfg, W, ids, mask, normalize=False)) <= TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
def test_graph_mode_token_types_no_mask_odd_heads(rng, device):
    cfg = small_config(hidden_size=21, num_attention_heads=3, intermediate_size=29,
                       type_vocab_size=3, num_hidden_layers=3)
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device=device, execution_mode="graph")
    ids = rng.integers(0, cfg["vocab_size"], size=(3, 9))
    types = rng.integers(0, 3, size=(3, 9))
    got = enc.forward(ids, None, types).numpy()
    assert rel_err(got, ref_hidden(cfg, W, ids, None, types)) <= TOL["float32"]
    got0 = enc.forward(ids).numpy()
    assert rel_err(got0, ref_hidden(cfg, W, ids)) <= TOL["float32"]
    # typed and untyped inputs of one bucket are two graphs (the position add moves out)
    assert enc.graph_traces == 2


def test_buckets_are_reused_and_bounded(rng):
    cfg = small_config()
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device="cpu", execution_mode="graph", graph_cache_size=2)
    for lengths in ([3, 5, 7], [8, 1, 2, 6], [2, 2], [4]):      # buckets (4, 8) (4, 8) (2, 8) (1, 8)
        ids, mask = ragged_batch(rng, cfg, lengths)
        enc.forward(ids, mask)
    assert enc.graph_traces == 3
    assert enc.graph_buckets() == [(2, 8), (1, 8)]              # LRU of 2: (4, 8) dropped
    ids, mask = ragged_batch(rng, cfg, [9, 12])                  # (2, 12): a new sequence bucket
    enc.forward(ids, mask)
    ids, mask = ragged_batch(rng, cfg, [10, 11])                 # the same bucket: no new trace
    out = enc.forward(ids, mask)
    assert enc.graph_traces == 4 and enc.graph_buckets()[-1] == (2, 12)
    assert rel_err(out.numpy()[mask != 0], ref_hidden(cfg, W, ids, mask)[mask != 0]) <= 2e-5
    # every layer is inside the graph: one attention and two layernorms per layer (+ embeddings)
    g = enc._graphs._cache[next(reversed(enc._graphs._cache))].g
    ops = [s["op"] for s in g.plan_summary()["steps"]]
    L = cfg["num_hidden_layers"]
    assert ops.count("attention") == L and ops.count("layernorm") == 2 * L + 1
    # the one copy per layer (permute -> reshape), which the rule attention_out_proj removes
    # where the attention writes a strided out in place (the graph's feature check)
    merged = any(f["rule"] == "attention_out_proj" and f["applied"] for f in g.fusion_report())
    assert ops.count("reshape") == (0 if merged else L)
    assert "embedding" not in ops


def test_auto_on_the_cpu_runs_unpadded_batches_as_a_graph(rng):
    """execution_mode="auto" on the CPU: a batch whose sizes are already buckets (2 x 8) runs
    the graph (no padding to pay; measured faster), others eager; the same results as eager."""
    cfg = small_config()
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device="cpu")
    eager = TransformerEncoder(cfg, W, device="cpu", execution_mode="eager")
    ids = rng.integers(1, cfg["vocab_size"], (2, 8))
    mask = np.ones((2, 8), np.int64)
    y = enc.forward(ids, mask)
    assert enc.graph_traces == 1
    assert rel_err(y.numpy(), eager.forward(ids, mask).numpy()) < TOL["float32"]
    enc.forward(ids[:, :5], mask[:, :5])  # 5 is no bucket: eager, nothing traced
    assert enc.graph_traces == 1


def test_execution_mode_errors_and_defaults(rng):
    cfg = small_config()
    W = random_weights(cfg, rng)
    with pytest.raises(ValueError, match="execution_mode"):
        TransformerEncoder(cfg, W, execution_mode="fast")
    with pytest.raises(ValueError, match="graph_cache_size"):
        TransformerEncoder(cfg, W, graph_cache_size=0)
    enc = TransformerEncoder(cfg, W)
    ids, mask = ragged_batch(rng, cfg, [3, 2])
    with pytest.raises(ValueError, match="execution_mode"):
        enc.forward(ids, mask, execution_mode="compiled")
    enc.forward(ids, mask)                        # cpu default: eager, no graph traced
    assert enc.graph_traces == 0
    with pytest.raises(ValueError, match="attention_mask"):
        enc.forward(ids, mask[:, :1], execution_mode="graph")
    assert enc.forward(ids[:0], mask[:0], execution_mode="graph").shape == (0, 3, 32)


@needs_minilm
@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"no fixture {FIXTURE}")
@pytest.mark.parametrize("device", DEVICES)
def test_minilm_fixture_in_both_modes(device):
    model = SentenceEncoder.from_pretrained(MINILM)
    fx = np.load(FIXTURE)
    # a converted float16 copy (LC_MINILM_MODEL) is held to the looser bound test_models uses
    exact = model._weights["embeddings.word_embeddings.weight"].dtype == np.float32
    sents = [str(s) for s in fx["sentences"]]
    got = {}
    for mode in ("eager", "graph"):
        got[mode] = model.encode(sents, batch_size=8, device=device, execution_mode=mode)
        c = cosines(got[mode], fx["embeddings"]).min()
        assert c >= (0.99999 if exact else 0.9999), (mode, c)
    assert cosines(got["graph"], got["eager"]).min() >= 0.99999
    enc = model.encoder(device, "float32")
    assert enc.graph_traces >= 1
    n = enc.graph_traces
    model.encode(sents, batch_size=8, device=device, execution_mode="graph")
    assert enc.graph_traces == n  # the same buckets again: replayed, not traced


@pytest.mark.gpu
@pytest.mark.parametrize("padded", [True, False])
def test_gpu_bucket_is_one_captured_graph_replayed_without_recording(rng, padded):
    cfg = small_config()
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device="cuda")
    assert enc._resolve_mode(None) == "graph"  # the CUDA default
    for _ in range(4):
        # padded: bucket (4, 8) whatever the lengths (one row is short, so a mask is needed)
        lengths = [3] + [int(v) for v in rng.integers(1, 9, size=3)] if padded else [8] * 4
        ids, mask = ragged_batch(rng, cfg, lengths)
        out = enc.forward(ids, mask)
        got = np.asarray(out.numpy(), np.float64)
        ref = ref_hidden(cfg, W, ids, mask)
        m = mask != 0
        assert rel_err(got[m], ref[m]) <= TOL["float32"]
    assert enc.graph_traces == 1
    g = enc._graphs._cache[next(iter(enc._graphs._cache))].g
    assert g.plan_summary()["captured"], g.plan_summary()["capture_reason"]
    st = g.stats()
    # the first call warms up eagerly, the rest replay: the per-bucket input buffers keep the
    # addresses, so only the output sets record, once each (the loop holds the previous result
    # during a call, so two sets of the ring take turns: docs/graph.md, "Results without a copy")
    assert st["eager_runs"] == 1 and st["records"] == 2 and st["replays"] == 3, st
    assert st["outputs_handed_out"] == 4, st
