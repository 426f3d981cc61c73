"""The sentence-transformers model directory that parallel_bench.py builds from random weights
(models._bench.write_sentence_transformers_dir; issue #15's 10,000-sentence comparison), and the
benchmark's sentences. CI: the files, the tokenizer and LC's encode against the float64
reference; where sentence-transformers and torch are installed (the GPU host), the directory
loads there offline and both libraries agree."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")

from lightning_core.models import SentenceEncoder, _bench  # noqa: E402
from test_models import cosines, ref_embed, rel_err, small_config  # noqa: E402


def test_wordpiece_vocab():
    v = _bench.wordpiece_vocab(500)
    assert len(v) == 500 and len(set(v)) == 500
    assert v[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"a", "z", "##a", "##z", "0", "##9", ".", ","} <= set(v)
    assert v == _bench.wordpiece_vocab(500)                     # deterministic
    assert _bench.wordpiece_vocab(30522)[:500] == v             # a prefix of the bigger one
    assert len(_bench.wordpiece_vocab(30522)) == 30522
    with pytest.raises(ValueError, match="128"):
        _bench.wordpiece_vocab(100)


def test_bench_sentences_are_deterministic_and_varied():
    a = _bench.bench_sentences(200)
    assert a == _bench.bench_sentences(200) and len(a) == 200
    assert a != _bench.bench_sentences(200, seed=2)
    words = [len(s.split()) for s in a]
    assert min(words) >= 5 and max(words) <= 60 and len(set(words)) > 30
    assert all(s.endswith(".") and s[0].isupper() for s in a)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory):
    cfg = small_config(vocab_size=300, max_position_embeddings=128)
    W = _bench.random_bert_weights(cfg, seed=3)
    d = _bench.write_sentence_transformers_dir(tmp_path_factory.mktemp("st"), cfg, W,
                                               max_seq_length=96)
    return cfg, W, d


def test_directory_layout(st_dir):
    cfg, W, d = st_dir
    for f in ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
              "tokenizer_config.json", "special_tokens_map.json", "modules.json",
              "sentence_bert_config.json", "1_Pooling/config.json"):
        assert (d / f).is_file(), f
    assert (d / "2_Normalize").is_dir()
    conf = json.loads((d / "config.json").read_text())
    assert conf["model_type"] == "bert" and conf["architectures"] == ["BertModel"]
    assert {k: conf[k] for k in cfg} == cfg
    mods = json.loads((d / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in mods] == ["Transformer", "Pooling", "Normalize"]
    assert [m["path"] for m in mods] == ["", "1_Pooling", "2_Normalize"]
    pool = json.loads((d / "1_Pooling" / "config.json").read_text())
    assert pool["pooling_mode_mean_tokens"] and not pool["pooling_mode_cls_token"]
    assert pool["word_embedding_dimension"] == cfg["hidden_size"]
    assert json.loads((d / "sentence_bert_config.json").read_text())["max_seq_length"] == 96
    tc = json.loads((d / "tokenizer_config.json").read_text())
    assert tc["pad_token"] == "[PAD]" and tc["tokenizer_class"] == "BertTokenizer"
    assert (d / "vocab.txt").read_text().splitlines() == _bench.wordpiece_vocab(cfg["vocab_size"])
    import safetensors
    with safetensors.safe_open(str(d / "model.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}          # transformers refuses a file without it
        assert set(f.keys()) == set(W)
        np.testing.assert_array_equal(f.get_tensor("encoder.layer.1.output.dense.weight"),
                                      W["encoder.layer.1.output.dense.weight"])


def test_lc_loads_it_and_matches_the_reference(st_dir):
    cfg, W, d = st_dir
    model = SentenceEncoder.from_pretrained(d)
    assert model.max_seq_length == 96
    sents = _bench.bench_sentences(20, cfg["vocab_size"]) + ["", "Hello, World!"]
    ids, mask, types = model.tokenize(sents)
    vocab = _bench.wordpiece_vocab(cfg["vocab_size"])
    assert ids.max() < cfg["vocab_size"]
    lens = mask.sum(1)
    assert ids[0, 0] == vocab.index("[CLS]") and ids[0, lens[0] - 1] == vocab.index("[SEP]")
    assert lens[20] == 2                                             # "" -> [CLS] [SEP]
    # BERT's lower-casing, punctuation split and greedy longest-match word pieces ("he" and
    # "wo" are pseudo-words of the vocabulary)
    assert model.tokenizer.encode("Hello, World!").tokens == [
        "[CLS]", "he", "##l", "##l", "##o", ",", "wo", "##r", "##l", "##d", "!", "[SEP]"]
    got = model.encode(sents, batch_size=8, device="cpu")
    assert rel_err(got, ref_embed(cfg, W, ids, mask, types)) <= 2e-5


def test_sentence_transformers_loads_it_offline(st_dir, monkeypatch):
    """Where sentence-transformers is installed (the GPU host; not in CI: it needs torch)."""
    pytest.importorskip("torch")
    st_mod = pytest.importorskip("sentence_transformers")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg, W, d = st_dir
    try:
        st = st_mod.SentenceTransformer(str(d), device="cpu", local_files_only=True)
    except TypeError:
        st = st_mod.SentenceTransformer(str(d), device="cpu")
    sents = _bench.bench_sentences(16, cfg["vocab_size"]) + ["Hello, World!"]
    model = SentenceEncoder.from_pretrained(d)
    ids, mask, _ = model.tokenize(sents)
    hf = transformers.AutoTokenizer.from_pretrained(str(d))(sents, padding=True, truncation=True,
                                                            max_length=model.max_seq_length)
    np.testing.assert_array_equal(np.asarray(hf["input_ids"]), ids)
    ref = st.encode(sents, batch_size=8, convert_to_numpy=True)
    assert np.allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-5)  # the Normalize module
    got = model.encode(sents, batch_size=8, device="cpu")
    assert cosines(got, ref).min() >= 0.99999
