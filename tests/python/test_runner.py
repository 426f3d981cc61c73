"""lc.models.TinyTransformerRunner: eager and graph modes against a float64 numpy reference of
the same block (fresh random inputs, odd sizes, batch 1, each dtype), eager/graph agreement,
safetensors checkpoints (bit-identical round trip, bad files naming the key) and bad input."""
from __future__ import annotations

import importlib.util
import sys

import ml_dtypes
import numpy as np
import pytest

import lightning_core as lc
from lightning_core.models import TinyTransformerConfig, TinyTransformerRunner

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
DTYPES = ["float32", "bfloat16", "float16"]
# Relative to the largest |reference| value (the output is layer-normalised: values are O(1)).
TOL = {"float32": 1e-5, "bfloat16": 3e-2, "float16": 5e-3}
NP = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def ref_block(cfg: TinyTransformerConfig, P: dict, x: np.ndarray) -> np.ndarray:
    """The runner's block in float64 numpy, from its state_dict (written from the definition:
    pre-LN, per-layer fused nothing, heads by reshape)."""
    P = {k: np.asarray(v, np.float64) for k, v in P.items()}
    x = np.asarray(x, np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[None]
    B, S, h = x.shape
    H, D = cfg.heads, cfg.hidden // cfg.heads

    def ln(t, g, b):
        mu = t.mean(-1, keepdims=True)
        var = ((t - mu) ** 2).mean(-1, keepdims=True)
        return (t - mu) / np.sqrt(var + cfg.eps) * g + b

    def act(t):
        if cfg.activation == "relu":
            return np.maximum(t, 0)
        if cfg.activation == "gelu_tanh":
            return 0.5 * t * (1 + np.tanh(np.sqrt(2 / np.pi) * (t + 0.044715 * t ** 3)))
        from math import erf
        return 0.5 * t * (1 + np.vectorize(erf)(t / np.sqrt(2)))

    x = x + P["pos"][:S]
    for i in range(cfg.layers):
        p = f"layers.{i}."

        def lin(t, n):
            return t @ P[p + n + ".weight"].T + P[p + n + ".bias"]

        t = ln(x, P[p + "ln1.weight"], P[p + "ln1.bias"])
        q, k, v = (lin(t, f"attn.{n}").reshape(B, S, H, D).transpose(0, 2, 1, 3) for n in "qkv")
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)
        if cfg.causal:
            s = np.where(np.tril(np.ones((S, S), bool)), s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        x = x + lin(a.transpose(0, 2, 1, 3).reshape(B, S, h), "attn.out")
        t = ln(x, P[p + "ln2.weight"], P[p + "ln2.bias"])
        x = x + lin(act(lin(t, "ffn.up")), "ffn.down")
    y = ln(x, P["final_ln.weight"], P["final_ln.bias"])
    return y[0] if squeeze else y


def rel_err(a, ref) -> float:
    a = np.asarray(a, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))


def small(rng, **kw) -> TinyTransformerConfig:
    heads = kw.pop("heads", 3)
    head_dim = kw.pop("head_dim", 7)
    base = dict(layers=2, hidden=heads * head_dim, heads=heads, ffn=37, seq=13,
                seed=int(rng.integers(1 << 30)))
    base.update(kw)
    return TinyTransformerConfig(**base)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 11), (1, 13), (1, 1), (11,)], ids=["b3s11", "b1s13", "b1s1", "2d_s11"])
def test_eager_and_graph_match_float64_reference(rng, device, dtype, shape):
    cfg = small(rng, dtype=dtype, device=device)
    r = TinyTransformerRunner(cfg)
    x = rng.standard_normal(shape + (cfg.hidden,)).astype(np.float32)
    # The reference sees what the runner sees: the input rounded to the dtype.
    ref = ref_block(cfg, r.state_dict(), x.astype(NP[dtype]))
    ye = r.run(x, mode="eager")
    assert r.last_run["executed"] == "eager"
    yg = r.run(x, mode="graph")
    assert r.last_run == {"mode": "graph", "executed": "graph", "reason": r.last_run["reason"]}
    assert "eager block traced" in r.last_run["reason"]
    for y in (ye, yg):
        assert y.shape == x.shape and y.dtype == np.dtype(NP[dtype])
        assert np.isfinite(np.asarray(y, np.float32)).all()
        assert rel_err(y, ref) < TOL[dtype], (dtype, rel_err(y, ref))
    assert rel_err(ye, np.asarray(yg, np.float64)) < TOL[dtype]
    # The graph replays (no new trace) and gives the same bits again.
    assert np.array_equal(r.run(x, mode="graph"), yg)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_activations_causal_and_single_head(rng, device, activation):
    for heads, head_dim, causal in ((1, 9, False), (5, 4, True), (2, 16, True)):
        cfg = small(rng, heads=heads, head_dim=head_dim, activation=activation, causal=causal,
                    layers=3, device=device, eps=1e-6)
        r = TinyTransformerRunner(cfg)
        x = rng.standard_normal((2, 10, cfg.hidden)).astype(np.float32)
        ref = ref_block(cfg, r.state_dict(), x)
        for mode in ("eager", "graph"):
            assert rel_err(r.run(x, mode=mode), ref) < TOL["float32"], (heads, causal, mode)


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_in_tensor_out_and_float64_numpy_input(rng, device):
    cfg = small(rng, device=device)
    r = TinyTransformerRunner(cfg)
    x = rng.standard_normal((2, 6, cfg.hidden))          # float64: converted to float32
    y = r.run(x)
    t = lc.Tensor(x.astype(np.float32), device, "float32")
    for mode in ("eager", "graph"):
        out = r.run(t, mode=mode)
        assert isinstance(out, lc.Tensor) and out.device.split(":")[0] == device
        assert out.shape == (2, 6, cfg.hidden)
        assert rel_err(out.numpy(), np.asarray(y, np.float64)) < TOL["float32"]
    out2 = r.run(lc.Tensor(x[0].astype(np.float32), device, "float32"), mode="graph")
    assert out2.shape == (6, cfg.hidden)


def test_graph_traces_once_per_shape(rng):
    r = TinyTransformerRunner(small(rng))
    h = r.config.hidden
    x = rng.standard_normal((2, 5, h)).astype(np.float32)
    r.run(x, mode="graph")
    r.run(rng.standard_normal((2, 5, h)).astype(np.float32), mode="graph")
    assert r._compiled.traces == 1
    r.run(rng.standard_normal((3, 7, h)).astype(np.float32), mode="graph")
    assert r._compiled.traces == 2
    text = r.explain(x)
    # the eager block's views traced: the head merge is written by attention through a
    # permuted view (no copy step), Q/K/V stay one GEMM
    assert "attention_out_proj applied" in text and "one QKV GEMM" in text
    assert text.count(": linear on ") == 4 * r.config.layers, text


def test_empty_batch_and_sequence(rng):
    r = TinyTransformerRunner(small(rng))
    h = r.config.hidden
    for shape in ((0, 5, h), (2, 0, h), (0, h)):
        for mode in ("eager", "graph"):
            y = r.run(np.zeros(shape, np.float32), mode=mode)
            assert y.shape == shape and y.dtype == np.float32
            assert r.last_run["executed"] == "none" and "empty" in r.last_run["reason"]
            t = r.run(lc.Tensor(np.zeros(shape, np.float32)), mode=mode)
            assert isinstance(t, lc.Tensor) and t.shape == shape


def test_same_seed_same_weights_other_seed_other_weights(rng):
    a = TinyTransformerRunner(small(rng, seed=7)).state_dict()
    b = TinyTransformerRunner(small(rng, seed=7)).state_dict()
    c = TinyTransformerRunner(small(rng, seed=8)).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


# ---- checkpoints ----------------------------------------------------------------------------

# Checkpoints need the optional safetensors ([models] extra); the tests above run without it.
HAVE_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
needs_safetensors = pytest.mark.skipif(not HAVE_SAFETENSORS,
                                       reason="pip install 'lightning-core[models]' (safetensors)")
if HAVE_SAFETENSORS:
    import safetensors.numpy as stn


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


@needs_safetensors
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_checkpoint_round_trip_is_bit_identical(rng, tmp_path, device, dtype):
    cfg = small(rng, dtype=dtype, device=device)
    src = TinyTransformerRunner(cfg)
    path = tmp_path / "tiny.safetensors"
    src.save_checkpoint(path)
    x = rng.standard_normal((2, 9, cfg.hidden)).astype(np.float32)

    other = TinyTransformerRunner(TinyTransformerConfig(**{**cfg.to_dict(), "seed": cfg.seed + 1}))
    before = other.run(x, mode="graph")                  # traces with the old weights
    other.load_checkpoint(path)
    sa, sb = src.state_dict(), other.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sb[k].dtype == sa[k].dtype == np.dtype(NP[dtype]) and bits(sa[k]) == bits(sb[k]), k
    for mode in ("eager", "graph"):                      # the graph is traced again after a load
        assert np.array_equal(other.run(x, mode=mode), src.run(x, mode=mode)), mode
    assert not np.array_equal(before, other.run(x, mode="graph"))

    again = TinyTransformerRunner.from_checkpoint(path)
    assert again.config == cfg
    assert np.array_equal(again.run(x), src.run(x))
    stored = stn.load_file(str(path))
    assert sorted(stored) == sorted(sa) and all(bits(stored[k]) == bits(sa[k]) for k in sa)


@needs_safetensors
def test_checkpoint_dtype_conversion_on_load(rng, tmp_path):
    cfg = small(rng)
    src = TinyTransformerRunner(cfg)
    src.save_checkpoint(tmp_path / "f32.safetensors")
    half = TinyTransformerRunner.from_checkpoint(tmp_path / "f32.safetensors", dtype="bfloat16")
    assert half.config.dtype == "bfloat16"
    for k, v in src.state_dict().items():
        assert np.array_equal(half.state_dict()[k], v.astype(ml_dtypes.bfloat16)), k


@needs_safetensors
def test_bad_checkpoints_name_the_key(rng, tmp_path):
    cfg = small(rng)
    r = TinyTransformerRunner(cfg)
    good = r.state_dict()

    missing = dict(good)
    del missing["layers.1.attn.k.bias"]
    stn.save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"no 'layers\.1\.attn\.k\.bias'"):
        r.load_checkpoint(tmp_path / "missing.safetensors")

    wrong = dict(good)
    wrong["layers.0.ffn.up.weight"] = np.zeros((cfg.ffn + 1, cfg.hidden), np.float32)
    stn.save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match=r"'layers\.0\.ffn\.up\.weight' has shape \(38, 21\).*\(37, 21\)"):
        r.load_checkpoint(tmp_path / "wrong.safetensors")

    extra = dict(good, **{"layers.2.ln1.weight": np.ones(cfg.hidden, np.float32)})
    stn.save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected key 'layers\.2\.ln1\.weight'"):
        r.load_checkpoint(tmp_path / "extra.safetensors")

    ints = dict(good, pos=np.zeros((cfg.seq, cfg.hidden), np.int32))
    with pytest.raises(TypeError, match="'pos' has dtype int32"):
        r.load_state_dict(ints)

    # A model of another size: the first mismatching key is named.
    big = TinyTransformerRunner(TinyTransformerConfig(**{**cfg.to_dict(), "seq": cfg.seq + 2}))
    big.save_checkpoint(tmp_path / "big.safetensors")
    with pytest.raises(ValueError, match=r"'pos' has shape \(15, 21\)"):
        r.load_checkpoint(tmp_path / "big.safetensors")

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        r.load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(FileNotFoundError):
        r.load_checkpoint(tmp_path / "nope.safetensors")
    stn.save_file(good, str(tmp_path / "nometa.safetensors"))
    with pytest.raises(ValueError, match="no runner config"):
        TinyTransformerRunner.from_checkpoint(tmp_path / "nometa.safetensors")
    # Failed loads changed nothing.
    assert all(bits(r.state_dict()[k]) == bits(good[k]) for k in good)


def test_missing_safetensors_is_a_clear_import_error(rng, tmp_path, monkeypatch):
    r = TinyTransformerRunner(small(rng))
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    for call in (lambda: r.save_checkpoint(tmp_path / "a.safetensors"),
                 lambda: r.load_checkpoint(tmp_path / "a.safetensors"),
                 lambda: TinyTransformerRunner.from_checkpoint(tmp_path / "a.safetensors")):
        with pytest.raises(ImportError, match=r"lightning-core\[models\]"):
            call()


# ---- bad input ------------------------------------------------------------------------------

def test_bad_config_and_input(rng):
    with pytest.raises(ValueError, match="hidden 10 is not a multiple of heads 4"):
        TinyTransformerConfig(hidden=10, heads=4)
    for bad in (dict(layers=0), dict(dtype="float64"), dict(activation="swish"),
                dict(device="metal"), dict(eps=0.0), dict(ffn=2.5)):
        with pytest.raises(ValueError, match="TinyTransformerConfig"):
            TinyTransformerConfig(**bad)
    with pytest.raises(ValueError, match="unknown fields"):
        TinyTransformerRunner({"layers": 1, "width": 8})
    with pytest.raises(TypeError):
        TinyTransformerRunner(42)
    r = TinyTransformerRunner({"layers": 1, "hidden": 8, "heads": 2, "ffn": 16, "seq": 4})
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="mode must be 'eager' or 'graph'"):
        r.run(x, mode="fast")
    with pytest.raises(ValueError, match=r"x has shape \(2, 3, 9\)"):
        r.run(rng.standard_normal((2, 3, 9)).astype(np.float32))
    with pytest.raises(ValueError, match=r"x has shape \(1, 2, 3, 8\)"):
        r.run(rng.standard_normal((1, 2, 3, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="sequence length 5 exceeds the config's seq 4"):
        r.run(rng.standard_normal((1, 5, 8)).astype(np.float32), mode="graph")
    with pytest.raises(TypeError, match="floating array"):
        r.run(np.ones((2, 3, 8), np.int64))
    with pytest.raises(TypeError, match="dtype float16"):
        r.run(lc.Tensor(x, "cpu", "float16"))


@pytest.mark.skipif(lc.cuda_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_a_value_error():
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        TinyTransformerRunner(TinyTransformerConfig(device="cuda"))
