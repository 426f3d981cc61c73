"""SentenceEncoder.encode's output options and device="auto"'s steady state (issue #15).

- ``convert_to_tensor`` / ``convert_to_numpy`` / ``normalize_embeddings`` (sentence-transformers'
  names): an ``lc.Tensor`` on the CPU in CI; on a GPU (gpu marker) the embeddings stay there.
- device="auto" after its decision: no re-measuring (counted through AutoPlacement.on_measure)
  and the very same dispatch as the pinned device (same location, encoder object and mode).
"""
from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")

from lightning_core.models import AutoPlacement, PlacementDecision, SentenceEncoder  # noqa: E402
from test_models import (  # noqa: E402
    random_sentences, random_weights, ref_embed, rel_err, small_config, write_model_dir)


@pytest.fixture
def small_model(rng, tmp_path):
    cfg = small_config()
    W = random_weights(cfg, rng)
    return cfg, W, SentenceEncoder.from_pretrained(write_model_dir(tmp_path / "m", cfg, W))


def _np(t) -> np.ndarray:
    return np.asarray(t.numpy(), np.float32)


# ---- convert_to_tensor / convert_to_numpy / normalize_embeddings (CPU) ------------------------

def test_convert_to_tensor_on_the_cpu(small_model, rng):
    cfg, W, model = small_model
    sents = random_sentences(rng, 11) + ["cat", ""]
    ids, mask, types = model.tokenize(sents)
    want = model.encode(sents, batch_size=4, device="cpu")
    got = model.encode(sents, batch_size=4, device="cpu", convert_to_tensor=True)
    assert isinstance(got, lc.Tensor)
    assert got.location == "cpu" and got.dtype == "float32" and tuple(got.shape) == want.shape
    np.testing.assert_array_equal(_np(got), want)
    assert rel_err(_np(got), ref_embed(cfg, W, ids, mask, types)) <= 2e-5
    # convert_to_numpy=False is the tensor too; convert_to_tensor wins over convert_to_numpy
    np.testing.assert_array_equal(
        _np(model.encode(sents, batch_size=4, device="cpu", convert_to_numpy=False)), want)
    np.testing.assert_array_equal(
        _np(model.encode(sents, batch_size=4, device="cpu", convert_to_tensor=True,
                         convert_to_numpy=True)), want)
    # auto without a GPU: the CPU, a CPU tensor
    model._has_gpu = False
    t = model.encode(sents, batch_size=4, convert_to_tensor=True)
    assert t.location == "cpu"
    np.testing.assert_array_equal(_np(t), want)


def test_normalize_embeddings_is_honoured(small_model, rng):
    cfg, W, model = small_model
    sents = random_sentences(rng, 6)
    ids, mask, types = model.tokenize(sents)
    raw = ref_embed(cfg, W, ids, mask, types, normalize=False)
    for kw in (dict(normalize=False), dict(normalize_embeddings=False),
               dict(normalize=True, normalize_embeddings=False)):
        a = model.encode(sents, batch_size=4, device="cpu", **kw)
        t = model.encode(sents, batch_size=4, device="cpu", convert_to_tensor=True, **kw)
        assert rel_err(a, raw) <= 2e-5, kw
        np.testing.assert_array_equal(_np(t), a)
        assert not np.allclose(np.linalg.norm(a, axis=1), 1.0)
    a = model.encode(sents, batch_size=4, device="cpu", normalize=False, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    t = model.encode(sents, batch_size=4, device="cpu", normalize=False,
                     normalize_embeddings=True,
                     convert_to_tensor=True)
    np.testing.assert_array_equal(_np(t), a)


def test_convert_to_tensor_single_empty_and_data_parallel(small_model, rng):
    cfg, W, model = small_model
    one = model.encode("the cat sat", device="cpu", convert_to_tensor=True)
    assert tuple(one.shape) == (cfg["hidden_size"],)
    np.testing.assert_array_equal(_np(one), model.encode("the cat sat", device="cpu"))
    empty = model.encode([], device="cpu", convert_to_tensor=True)
    assert tuple(empty.shape) == (0, cfg["hidden_size"]) and empty.location == "cpu"
    sents = random_sentences(rng, 9)
    dp = model.encode(sents, batch_size=2, devices=["cpu", "cpu"], convert_to_tensor=True)
    assert dp.location == "cpu"
    np.testing.assert_allclose(_np(dp), model.encode(sents, batch_size=2, device="cpu"),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("normalize", [True, False])
def test_tensor_assembly_in_device_memory(small_model, rng, normalize):
    """The on-device assembly (row gather to input order, GEMV norms, one elementwise pass) that
    a GPU's batches take, run here with CPU tensors (and numpy batches uploaded into it)."""
    cfg, W, model = small_model
    n, dim = 13, cfg["hidden_size"]
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows[5] = 0.0                                      # a zero row stays zero (eps clamp)
    perm = rng.permutation(n)
    parts = [(perm[0:5], lc.Tensor(rows[perm[0:5]])), (perm[5:9], rows[perm[5:9]]),
             (perm[9:], lc.Tensor(rows[perm[9:]]))]
    got = model._tensor_result(parts, n, normalize, False, "cpu")
    assert isinstance(got, lc.Tensor) and tuple(got.shape) == (n, dim)
    want = rows.astype(np.float64)
    if normalize:
        want = want / np.maximum(np.linalg.norm(want, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(_np(got), want, rtol=2e-6, atol=1e-7)
    single = model._tensor_result([(np.array([0]), lc.Tensor(rows[:1]))], 1, normalize, True,
                                  "cpu")
    assert tuple(single.shape) == (dim,)
    r0 = rows[0].astype(np.float64)
    want0 = r0 / max(np.linalg.norm(r0), 1e-12) if normalize else r0
    np.testing.assert_allclose(_np(single), want0, rtol=2e-6, atol=1e-7)


def test_mean_pool_tensor_matches_mean_pool(small_model, rng):
    cfg, W, model = small_model
    sents = random_sentences(rng, 7) + [""]
    ids, mask, types = model.tokenize(sents)
    for dtype in ("float32", "bfloat16"):
        enc = model.encoder("cpu", dtype)
        hidden = enc.forward(ids, mask, types)
        t = enc.mean_pool_tensor(hidden, mask)
        assert t.dtype == "float32" and tuple(t.shape) == (len(sents), cfg["hidden_size"])
        np.testing.assert_allclose(_np(t), enc.mean_pool(hidden, mask), rtol=1e-6, atol=1e-7)


# ---- device="auto" after its decision -----------------------------------------------------------

def _record_run_on(model, monkeypatch, calls):
    real = model._run_on

    def run_on(loc, enc, ids, mask, types, mode, keep=False):
        calls.append((loc, id(enc), ids.shape, mode, keep))
        return real(loc, enc, ids, mask, types, mode, keep=keep)

    monkeypatch.setattr(model, "_run_on", run_on)


@pytest.mark.skipif(lc.cuda_available(), reason="needs a GPU side that fails: a machine without "
                    "a usable GPU (with one, the tiny model's measurement may pick either side)")
def test_auto_does_not_remeasure_and_dispatches_like_the_pinned_cpu(small_model, rng,
                                                                   monkeypatch):
    """A "GPU" that cannot run (this CPU machine): auto measures once per bucket (the GPU side
    fails, the CPU wins), then every call runs exactly the pinned CPU path."""
    cfg, W, model = small_model
    model._has_gpu = True
    p = AutoPlacement("test encode-api", cfg["max_position_embeddings"], has_gpu=True,
                      persist=False)
    measured = []
    p.on_measure = lambda bucket, dtype: measured.append((bucket, dtype))
    model._placements[None] = p
    sents = ["the cat sat on the mat"] * 3
    first = model.encode(sents, batch_size=3)
    assert measured == [((4, 8), "float32")] and p.measurements == 1
    assert model.last_placement.device == "cpu"
    assert model.last_placement.source.startswith("cuda failed")
    auto_calls, pinned_calls = [], []
    _record_run_on(model, monkeypatch, auto_calls)
    outs = [model.encode(sents, batch_size=3) for _ in range(4)]
    assert p.measurements == 1 and len(measured) == 1               # no re-measuring
    assert model.last_placement.source == "memo"
    monkeypatch.undo()
    _record_run_on(model, monkeypatch, pinned_calls)
    pinned = [model.encode(sents, batch_size=3, device="cpu") for _ in range(4)]
    assert auto_calls == pinned_calls                               # the same dispatch
    assert auto_calls[0][0] == "cpu" and auto_calls[0][1] == id(model.encoder("cpu", "float32"))
    for a, b in zip(outs, pinned):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first, pinned[0])
    # the tensor result takes the same dispatch too (the CPU ran it: numpy rows, wrapped)
    pinned_calls.clear()
    tp = model.encode(sents, batch_size=3, device="cpu", convert_to_tensor=True)
    monkeypatch.undo()
    auto_calls.clear()
    _record_run_on(model, monkeypatch, auto_calls)
    t = model.encode(sents, batch_size=3, convert_to_tensor=True)
    assert auto_calls == pinned_calls and len(auto_calls) == 1 and p.measurements == 1
    assert t.location == "cpu"
    np.testing.assert_array_equal(_np(t), _np(tp))
    np.testing.assert_array_equal(_np(t), pinned[0])


def test_auto_dispatches_like_the_pinned_gpu_after_deciding(small_model, rng, monkeypatch):
    """A bucket decided for the GPU: auto's calls are the pinned "cuda" calls, argument for
    argument (the GPU is faked by the CPU encoder, as test_models_placement does)."""
    cfg, W, model = small_model
    model._has_gpu = True
    cpu_enc = model.encoder("cpu", "float32")
    calls = []

    def run_on(loc, enc, ids, mask, types, mode, keep=False):
        calls.append((loc, id(enc), ids.shape, mode, keep))
        res = model.__class__._run_on(model, "cpu", cpu_enc, ids, mask, types, mode)
        return lc.Tensor(res) if keep else res     # a "device" tensor when asked to keep it

    monkeypatch.setattr(model, "_run_on", run_on)
    monkeypatch.setattr("lightning_core.models._sentence.parse_device",
                        lambda d, where: "cpu" if d == "cpu" else "cuda:0")
    fake_gpu_enc = object()
    monkeypatch.setattr(model, "encoder",
                        lambda loc, dtype: cpu_enc if loc == "cpu" else fake_gpu_enc)
    p = AutoPlacement("fake", cfg["max_position_embeddings"], has_gpu=True, persist=False)
    p.on_measure = lambda bucket, dtype: pytest.fail(f"measured {bucket} again")
    p._memo[(4, 8, "float32")] = PlacementDecision("cuda", (4, 8), "float32", "measured", 9, 2)
    model._placements[None] = model._placements["eager"] = p
    sents = ["the cat", "a dog ran", "the mat", "cat sat"]
    for kw in ({}, dict(execution_mode="eager")):
        calls.clear()
        a = model.encode(sents, batch_size=4, **kw)
        auto_calls = list(calls)
        calls.clear()
        b = model.encode(sents, batch_size=4, device="cuda", **kw)
        assert auto_calls == calls and auto_calls[0][:2] == ("cuda:0", id(fake_gpu_enc))
        np.testing.assert_array_equal(a, b)
    # more than one batch: the GPU batches stay on the device (keep) and come down once, on
    # both paths alike; the rows match the one-batch result
    more = sents + ["the dog sat", "a cat ran far", "mat"]
    one = model.encode(more, batch_size=8, device="cuda")
    calls.clear()
    a = model.encode(more, batch_size=4)
    auto_calls = list(calls)
    calls.clear()
    b = model.encode(more, batch_size=4, device="cuda")
    assert auto_calls == calls and [c[4] for c in calls] == [True, True]
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == one.shape
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, one, rtol=1e-5, atol=1e-6)
    ids, mask, types = model.tokenize(more)
    assert rel_err(a, ref_embed(cfg, W, ids, mask, types)) <= 2e-5
    assert p.measurements == 0


# ---- on a GPU --------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_convert_to_tensor_stays_on_the_gpu(small_model, rng, dtype):
    cfg, W, model = small_model
    sents = random_sentences(rng, 37) + ["", "cat"]
    want = model.encode(sents, batch_size=8, device="cuda", dtype=dtype)
    got = model.encode(sents, batch_size=8, device="cuda", dtype=dtype, convert_to_tensor=True)
    assert isinstance(got, lc.Tensor) and got.location.startswith("cuda")
    assert got.dtype == "float32" and tuple(got.shape) == want.shape
    np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)
    raw = model.encode(sents, batch_size=8, device="cuda", dtype=dtype, normalize_embeddings=False)
    traw = model.encode(sents, batch_size=8, device="cuda", dtype=dtype, convert_to_tensor=True,
                        normalize_embeddings=False)
    np.testing.assert_allclose(_np(traw), raw, rtol=1e-5, atol=1e-6)
    one = model.encode("the cat sat", device="cuda", dtype=dtype, convert_to_tensor=True)
    assert tuple(one.shape) == (cfg["hidden_size"],) and one.location.startswith("cuda")
    empty = model.encode([], device="cuda", convert_to_tensor=True)
    assert tuple(empty.shape) == (0, cfg["hidden_size"]) and empty.location.startswith("cuda")
    ids, mask, types = model.tokenize(sents)
    assert rel_err(_np(got), ref_embed(cfg, W, ids, mask, types)) <= (
        2e-5 if dtype == "float32" else 3e-2)


@pytest.mark.gpu
def test_auto_mixed_batches_assemble_on_the_gpu(small_model, monkeypatch):
    cfg, W, model = small_model
    p = AutoPlacement("mixed", cfg["max_position_embeddings"], has_gpu=True, persist=False)
    p._memo[(1, 8, "float32")] = PlacementDecision("cpu", (1, 8), "float32", "measured", 1, 2)
    p._memo[(4, 8, "float32")] = PlacementDecision("cuda", (4, 8), "float32", "measured", 9, 2)
    model._placements[None] = p
    sents = ["the cat", "a dog ran", "the mat", "cat sat", "far"]
    got = model.encode(sents, batch_size=4, convert_to_tensor=True)
    assert model.last_device_batches == {"cuda": 1, "cpu": 1}
    assert got.location.startswith("cuda")
    np.testing.assert_allclose(_np(got), model.encode(sents, batch_size=4, device="cpu"),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_auto_on_a_gpu_keeps_the_pinned_path_after_calibrate(small_model, monkeypatch):
    cfg, W, model = small_model
    sents = ["the cat sat on the mat"] * 4
    p = AutoPlacement("calibrated", cfg["max_position_embeddings"], has_gpu=True, persist=False)
    model._placements[None] = p
    model.calibrate(batch_sizes=(4,), seq_lens=(8,))
    n = p.measurements
    assert n == 1
    model.encode(sents, batch_size=4)                      # settles on the decided side
    device = model.last_placement.device
    traces = {k: e.graph_traces for k, e in model._encoders.items()}
    auto_calls, pinned_calls = [], []
    _record_run_on(model, monkeypatch, auto_calls)
    a = [model.encode(sents, batch_size=4) for _ in range(3)]
    monkeypatch.undo()
    _record_run_on(model, monkeypatch, pinned_calls)
    b = [model.encode(sents, batch_size=4, device=device) for _ in range(3)]
    assert auto_calls == pinned_calls and p.measurements == n
    assert {k: e.graph_traces for k, e in model._encoders.items()} == traces
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
