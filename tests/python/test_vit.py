"""lc.models.VisionEncoder (ViT-style image encoder) against a float64 numpy ViT written here.

The reference follows Hugging Face's ViTModel from its state dict names: a patch convolution
(einsum over the image's patch grid), CLS token + position embeddings, pre-LN layers with
separate Q / K / V projections and an explicit softmax, exact erf GELU, a final layernorm; then
our pooling ("cls" / "mean" over the patch tokens) and optional projection. Random weights,
fresh every run (the ``rng`` fixture). The "cuda" variants are gpu-marked.
"""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import lightning_core as lc
from lightning_core.models import (VIT_KEY_SCHEMES, VisionConfig, VisionEncoder,
                                   convert_vit_state_dict, random_vit_state_dict, vit_key_scheme)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]

# 32 x 32, patch 8 (16 patches), 4 heads of 8, CLS pooling.
SMALL = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=64, layer_norm_eps=1e-12)
# Odd: 36 x 36, patch 6 (36 patches), 2 channels, 3 heads of 7, no Q/K/V bias, mean pooling and
# a projection to 11.
ODD = dict(image_size=36, patch_size=6, num_channels=2, hidden_size=21, num_hidden_layers=3,
           num_attention_heads=3, intermediate_size=37, layer_norm_eps=1e-6, qkv_bias=False,
           pooling="mean", projection_dim=11)
CONFIGS = {"small": SMALL, "odd": ODD}

_erf = np.vectorize(math.erf)


def _weights(cfg, rng):
    """Random float32 weights by HF names, shapes taken from the config (not from the model)."""
    c = VisionConfig(**cfg)
    h, it, p, C = c.hidden_size, c.intermediate_size, c.patch_size, c.num_channels
    shapes = {"embeddings.cls_token": (1, 1, h),
              "embeddings.position_embeddings": (1, (c.image_size // p) ** 2 + 1, h),
              "embeddings.patch_embeddings.projection.weight": (h, C, p, p),
              "embeddings.patch_embeddings.projection.bias": (h,),
              "layernorm.weight": (h,), "layernorm.bias": (h,)}
    for i in range(c.num_hidden_layers):
        q = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            shapes[q + f"attention.attention.{n}.weight"] = (h, h)
            if c.qkv_bias:
                shapes[q + f"attention.attention.{n}.bias"] = (h,)
        shapes[q + "attention.output.dense.weight"] = (h, h)
        shapes[q + "attention.output.dense.bias"] = (h,)
        shapes[q + "intermediate.dense.weight"], shapes[q + "intermediate.dense.bias"] = (it, h), (it,)
        shapes[q + "output.dense.weight"], shapes[q + "output.dense.bias"] = (h, it), (h,)
        for n in ("layernorm_before", "layernorm_after"):
            shapes[q + n + ".weight"], shapes[q + n + ".bias"] = (h,), (h,)
    if c.projection_dim:
        shapes["projection.weight"] = (c.projection_dim, h)
    w = {}
    for k, s in shapes.items():
        fan_in = int(np.prod(s[1:])) if len(s) >= 2 and not k.startswith("embeddings.cls") \
            and "position" not in k else 1
        a = rng.standard_normal(s) / math.sqrt(fan_in) if fan_in > 1 else rng.standard_normal(s) * 0.3
        if "layernorm" in k and k.endswith("weight"):
            a = 1.0 + 0.2 * rng.standard_normal(s)
        w[k] = a.astype(np.float32)
    return w


def _ln(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def reference_vit(cfg, w, images):
    """float64 ViT forward: (tokens [B, 1 + N, h], pooled)."""
    c = VisionConfig(**cfg)
    W = {k: np.asarray(v, np.float64) for k, v in w.items()}
    x = np.asarray(images, np.float64)
    B, C, Hi, Wi = x.shape
    p, h, nh = c.patch_size, c.hidden_size, c.num_attention_heads
    d = h // nh
    g = Hi // p
    # the convolution with kernel = stride = p, summed over (channel, row, column) of a patch
    grid = x.reshape(B, C, g, p, g, p)
    patches = np.einsum("bcyixj,ocij->byxo", grid, W["embeddings.patch_embeddings.projection.weight"])
    patches = patches.reshape(B, g * g, h) + W["embeddings.patch_embeddings.projection.bias"]
    cls = np.broadcast_to(W["embeddings.cls_token"], (B, 1, h))
    t = np.concatenate([cls, patches], axis=1) + W["embeddings.position_embeddings"]
    S = t.shape[1]
    for i in range(c.num_hidden_layers):
        q_ = f"encoder.layer.{i}."
        y = _ln(t, W[q_ + "layernorm_before.weight"], W[q_ + "layernorm_before.bias"], c.layer_norm_eps)

        def proj(n):
            r = y @ W[q_ + f"attention.attention.{n}.weight"].T
            if c.qkv_bias:
                r = r + W[q_ + f"attention.attention.{n}.bias"]
            return r.reshape(B, S, nh, d).transpose(0, 2, 1, 3)

        q, k, v = proj("query"), proj("key"), proj("value")
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(0, 2, 1, 3).reshape(B, S, h)
        t = t + a @ W[q_ + "attention.output.dense.weight"].T + W[q_ + "attention.output.dense.bias"]
        y = _ln(t, W[q_ + "layernorm_after.weight"], W[q_ + "layernorm_after.bias"], c.layer_norm_eps)
        u = y @ W[q_ + "intermediate.dense.weight"].T + W[q_ + "intermediate.dense.bias"]
        if c.hidden_act == "gelu":
            u = 0.5 * u * (1.0 + _erf(u / math.sqrt(2.0)))
        elif c.hidden_act == "relu":
            u = np.maximum(u, 0.0)
        else:
            u = 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))
        t = t + u @ W[q_ + "output.dense.weight"].T + W[q_ + "output.dense.bias"]
    t = _ln(t, W["layernorm.weight"], W["layernorm.bias"], c.layer_norm_eps)
    pooled = t[:, 0] if c.pooling == "cls" else t[:, 1:].mean(axis=1)
    if c.projection_dim:
        pooled = pooled @ W["projection.weight"].T
    return t, pooled


def _f32(t):
    return np.asarray(t.numpy(), dtype=np.float32)


def _rel(a, r):
    return float(np.abs(np.asarray(a, np.float64) - r).max() / max(np.abs(r).max(), 1e-30))


def _min_cos(a, r):
    a = np.asarray(a, np.float64).reshape(len(r), -1)
    r = r.reshape(len(r), -1)
    return float(((a * r).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(r, axis=1))).min())


def _images(rng, cfg, B):
    return rng.standard_normal((B, cfg["num_channels"], cfg["image_size"],
                                cfg["image_size"])).astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_float32_matches_reference(rng, device, name, B, mode):
    cfg = CONFIGS[name]
    w = _weights(cfg, rng)
    enc = VisionEncoder.from_hf_state_dict(w, cfg, device=device, dtype="float32")
    imgs = _images(rng, cfg, B)
    ref_t, ref_p = reference_vit(cfg, w, imgs)
    # poison: the model's results are fresh tensors; check every element is finite and shaped
    tokens, pooled = enc.forward(imgs, execution_mode=mode)
    c = enc.config
    assert tokens.shape == (B, c.seq_len, c.hidden_size) and tokens.dtype == "float32"
    assert pooled.shape == (B, c.pooled_dim) and pooled.dtype == "float32"
    assert tokens.device.split(":")[0] == device
    t, p = _f32(tokens), _f32(pooled)
    assert np.isfinite(t).all() and np.isfinite(p).all()
    assert _rel(t, ref_t) < 2e-5, _rel(t, ref_t)
    assert _rel(p, ref_p) < 2e-5, _rel(p, ref_p)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", ["relu", "gelu_new", "gelu_pytorch_tanh"])
def test_activations(rng, device, act):
    cfg = dict(SMALL, hidden_act=act, pooling="mean")
    w = _weights(cfg, rng)
    enc = VisionEncoder.from_hf_state_dict(w, cfg, device=device)
    imgs = _images(rng, cfg, 2)
    ref_t, ref_p = reference_vit(cfg, w, imgs)
    t, p = enc.forward(imgs)
    assert _rel(_f32(t), ref_t) < 2e-5 and _rel(_f32(p), ref_p) < 2e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,cos", [("bfloat16", 0.999), ("float16", 0.9995)])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_half_precision_cosine(rng, device, dtype, cos, name):
    cfg = CONFIGS[name]
    w = _weights(cfg, rng)
    enc = VisionEncoder.from_hf_state_dict(w, cfg, device=device, dtype=dtype)
    imgs = _images(rng, cfg, 3)
    ref_t, ref_p = reference_vit(cfg, w, imgs)
    for mode in ("eager", "graph"):
        t, p = enc.forward(imgs, execution_mode=mode)
        assert t.dtype == dtype and p.dtype == dtype
        assert _min_cos(_f32(t), ref_t) >= cos
        assert _min_cos(_f32(p), ref_p) >= cos
        # token by token too (every token of every image)
        assert _min_cos(_f32(t).reshape(-1, enc.config.hidden_size),
                        ref_t.reshape(-1, enc.config.hidden_size)) >= cos - 0.002


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_eager_equals_graph_and_graph_reuse(rng, device, dtype):
    cfg = SMALL
    enc = VisionEncoder.random(cfg, seed=int(rng.integers(1 << 30)), device=device, dtype=dtype)
    for B in (2, 5, 2):
        imgs = _images(rng, cfg, B)
        te, pe = (_f32(a) for a in enc.forward(imgs, execution_mode="eager"))
        tg, pg = (_f32(a) for a in enc.forward(imgs, execution_mode="graph"))
        if dtype == "float32":
            np.testing.assert_allclose(tg, te, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(pg, pe, rtol=1e-5, atol=1e-5)
        else:
            # bfloat16: the graph fuses epilogues (one rounding to bf16 where eager rounds after
            # each op), so single elements near zero differ by a few bf16 ulps of their
            # neighbours after several layers; compare as bf16 networks are compared: the
            # error relative to the tensor's norm, and elementwise at a few ulps of its scale.
            for g, e in ((tg, te), (pg, pe)):
                assert np.linalg.norm(g - e) <= 1e-2 * np.linalg.norm(e)
                np.testing.assert_allclose(g, e, rtol=2e-2, atol=2e-2 * np.abs(e).max())
    assert enc.graph_traces == 2          # one graph per batch size, the third call replays
    assert "linear" in enc.explain(2)


@pytest.mark.parametrize("device", DEVICES)
def test_lc_tensor_input(rng, device):
    cfg = ODD
    enc = VisionEncoder.random(cfg, seed=3, device=device, dtype="bfloat16")
    imgs = _images(rng, cfg, 2)
    t_np, p_np = enc.forward(imgs)
    x = lc.Tensor(imgs, device, "bfloat16")
    t_lc, p_lc = enc.forward(x)
    np.testing.assert_array_equal(_f32(t_lc), _f32(t_np))
    np.testing.assert_array_equal(_f32(p_lc), _f32(p_np))
    # a non-contiguous view: the images of a [C, B, H, W] tensor permuted
    xt = lc.Tensor(np.ascontiguousarray(imgs.transpose(1, 0, 2, 3)), device, "bfloat16")
    t_v, _ = enc.forward(xt.permute(1, 0, 2, 3))
    np.testing.assert_array_equal(_f32(t_v), _f32(t_np))


def test_random_is_deterministic_and_empty_batch():
    a = VisionEncoder.random(SMALL, seed=7)
    b = VisionEncoder.random(SMALL, seed=7)
    imgs = np.random.default_rng(0).standard_normal((2, 3, 32, 32))   # float64 is accepted
    np.testing.assert_array_equal(_f32(a.forward(imgs)[1]), _f32(b.forward(imgs)[1]))
    assert not np.array_equal(random_vit_state_dict(SMALL, 7)["layernorm.bias"],
                              random_vit_state_dict(SMALL, 8)["layernorm.bias"])
    t, p = a.forward(np.zeros((0, 3, 32, 32), np.float32))
    assert t.shape == (0, 17, 32) and p.shape == (0, 32)
    nested = imgs[:1].tolist()                                          # nested lists
    np.testing.assert_array_equal(_f32(a.forward(nested)[1]), _f32(a.forward(imgs[:1])[1]))


def test_bad_inputs():
    enc = VisionEncoder.random(SMALL, seed=0)
    good = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"VisionEncoder.*4 channels.*\(1, 4, 32, 32\).*takes 3"):
        enc.forward(np.zeros((1, 4, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"VisionEncoder.*30 x 30.*not divisible by patch_size 8"):
        enc.forward(np.zeros((1, 3, 30, 30), np.float32))
    with pytest.raises(ValueError, match=r"VisionEncoder.*40 x 40.*takes 32 x 32"):
        enc.forward(np.zeros((1, 3, 40, 40), np.float32))
    with pytest.raises(ValueError, match=r"VisionEncoder.*\[batch, channels, height, width\].*\(3, 32, 32\)"):
        enc.forward(good[0])
    with pytest.raises(TypeError, match=r"VisionEncoder.*floating point.*int32.*\(1, 3, 32, 32\)"):
        enc.forward(good.astype(np.int32))
    with pytest.raises(TypeError, match=r"VisionEncoder.*bfloat16.*float32"):
        enc.forward(lc.Tensor(good, "cpu", "bfloat16"))
    with pytest.raises(ValueError, match="execution_mode"):
        enc.forward(good, execution_mode="fast")
    # config and weights
    with pytest.raises(ValueError, match="image_size 36 is not divisible by patch_size 8"):
        VisionConfig(**dict(SMALL, image_size=36))
    with pytest.raises(ValueError, match="not a multiple of num_attention_heads"):
        VisionConfig(**dict(SMALL, num_attention_heads=5))
    with pytest.raises(ValueError, match="pooling"):
        VisionConfig(**dict(SMALL, pooling="max"))
    w = random_vit_state_dict(SMALL, 0)
    bad = dict(w)
    del bad["encoder.layer.1.output.dense.bias"]
    with pytest.raises(ValueError, match="encoder.layer.1.output.dense.bias"):
        VisionEncoder(SMALL, bad)
    bad = dict(w, **{"layernorm.weight": np.ones(31, np.float32)})
    with pytest.raises(ValueError, match=r"layernorm.weight has shape \(31,\).*\(32,\)"):
        VisionEncoder(SMALL, bad)
    bad = dict(w, **{"layernorm.weight": np.ones(32, np.int64)})
    with pytest.raises(TypeError, match="layernorm.weight must be a float"):
        VisionEncoder(SMALL, bad)
    with pytest.raises(ValueError, match="dtype"):
        VisionEncoder(SMALL, w, dtype="int8")


def test_hf_names_prefix_pooler_and_config_dict(rng):
    cfg = dict(SMALL, projection_dim=5)
    w = _weights(cfg, rng)
    hf = {"vit." + k: v for k, v in w.items() if k != "projection.weight"}
    hf["visual_projection.weight"] = w["projection.weight"]
    hf["vit.pooler.dense.weight"] = np.zeros((32, 32), np.float32)        # ignored
    hf["vit.embeddings.mask_token"] = np.zeros((1, 1, 32), np.float32)    # ignored
    hf_cfg = dict(cfg, model_type="vit", image_size=[32, 32], architectures=["ViTModel"])
    enc = VisionEncoder.from_hf_state_dict(hf, hf_cfg)
    imgs = _images(rng, cfg, 2)
    _, ref_p = reference_vit(cfg, w, imgs)
    assert _rel(_f32(enc.forward(imgs)[1]), ref_p) < 1e-4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_safetensors_round_trip(tmp_path, rng, dtype):
    pytest.importorskip("safetensors")
    enc = VisionEncoder.random(ODD, seed=int(rng.integers(1 << 30)), dtype=dtype)
    path = tmp_path / "vit.safetensors"
    enc.save_safetensors(path)
    again = VisionEncoder.from_safetensors(path, dtype=dtype)
    assert again.config == enc.config
    imgs = _images(rng, ODD, 2)
    for a, b in zip(enc.forward(imgs), again.forward(imgs)):
        np.testing.assert_array_equal(_f32(a), _f32(b))
    sd = enc.state_dict()
    assert sd["encoder.layer.2.attention.attention.query.weight"].shape == (21, 21)
    assert str(sd["layernorm.weight"].dtype) == dtype
    assert sd["embeddings.position_embeddings"].dtype == np.float32


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_against_transformers_vit(rng, dtype):
    """HF transformers' ViTModel with the same random weights, on the GPU."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = dict(ODD, projection_dim=None, pooling="cls", qkv_bias=True)
    w = _weights(cfg, rng)
    hf_cfg = transformers.ViTConfig(**{k: v for k, v in cfg.items()
                                       if k not in ("pooling", "projection_dim")})
    model = transformers.ViTModel(hf_cfg, add_pooling_layer=False)
    # transformers 5 renamed ViTModel's parameters (layers.N.attention.q_proj..., seen with
    # 5.17 on the H200); 4.x keeps encoder.layer.N.attention.attention.query...: give the model
    # its own scheme, and read its state dict back in whichever it is.
    scheme = vit_key_scheme(model.state_dict().keys()) or "classic"
    w_hf = convert_vit_state_dict(w, scheme)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in w_hf.items()},
                                                strict=False)
    assert not missing and not unexpected
    tdt = torch.float32 if dtype == "float32" else torch.bfloat16
    model = model.to("cuda", tdt).eval()
    imgs = _images(rng, cfg, 3)
    # torch >= 2.9 refuses the legacy allow_tf32 flags once the fp32_precision ones are set:
    # the benchmarks' helpers use whichever API this torch has.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "python"))
    from common import restore_torch_tf32, set_torch_tf32, torch_tf32_state
    tf32 = torch_tf32_state(torch)
    set_torch_tf32(torch, False)  # fp32 is fp32
    try:
        with torch.no_grad():
            ref = model(torch.from_numpy(imgs).to("cuda", tdt)).last_hidden_state.float().cpu().numpy()
    finally:
        restore_torch_tf32(torch, tf32)
    enc = VisionEncoder.from_hf_state_dict(model.state_dict(), cfg, device="cuda", dtype=dtype)
    for mode in ("eager", "graph"):
        t, p = enc.forward(imgs, execution_mode=mode)
        t = _f32(t)
        if dtype == "float32":
            assert _rel(t, ref.astype(np.float64)) < 1e-4
        assert _min_cos(t, ref.astype(np.float64)) >= 0.999
        np.testing.assert_array_equal(_f32(p), t[:, 0])


# ---- the two ViTModel naming schemes (classic / transformers 5) -----------------------------

def _classic_to_layers_by_hand(w):
    """The transformers 5 names, written out independently of convert_vit_state_dict."""
    ren = {"attention.attention.query": "attention.q_proj", "attention.attention.key":
           "attention.k_proj", "attention.attention.value": "attention.v_proj",
           "attention.output.dense": "attention.o_proj", "intermediate.dense": "mlp.fc1",
           "output.dense": "mlp.fc2"}
    out = {}
    for k, v in w.items():
        if k.startswith("encoder.layer."):
            i, rest = k[len("encoder.layer."):].split(".", 1)
            name, suffix = rest.rsplit(".", 1)
            k = f"layers.{i}.{ren.get(name, name)}.{suffix}"
        out[k] = v
    return out


def test_vit_key_schemes_convert_both_ways(rng):
    cfg = dict(ODD, qkv_bias=True)
    w = _weights(cfg, rng)
    w["pooler.dense.weight"] = np.zeros((21, 21), np.float32)       # passed through
    assert vit_key_scheme(w) == "classic"
    new = convert_vit_state_dict(w, "layers")
    assert new == _classic_to_layers_by_hand(w)
    assert vit_key_scheme(new) == "layers"
    for k in ("layers.2.attention.q_proj.bias", "layers.0.attention.o_proj.weight",
              "layers.1.mlp.fc1.weight", "layers.1.mlp.fc2.bias", "layers.0.layernorm_after.bias",
              "embeddings.patch_embeddings.projection.weight", "layernorm.weight",
              "pooler.dense.weight"):
        assert k in new, k
    assert not any(k.startswith("encoder.") for k in new)
    assert all(new[k] is v for k, v in _classic_to_layers_by_hand(w).items())  # no copies
    back = convert_vit_state_dict(new, "classic")
    assert back.keys() == w.keys() and all(back[k] is w[k] for k in w)
    assert convert_vit_state_dict(w, "classic") == w                   # already there
    # a "vit." prefix (ViTForImageClassification) is kept
    pre = convert_vit_state_dict({"vit." + k: v for k, v in w.items()}, "layers")
    assert "vit.layers.0.attention.k_proj.weight" in pre and "vit.layernorm.bias" in pre
    assert vit_key_scheme(["embeddings.cls_token", "layernorm.weight"]) is None
    with pytest.raises(ValueError, match="mixes"):
        vit_key_scheme(["encoder.layer.0.output.dense.weight", "layers.0.mlp.fc2.weight"])
    with pytest.raises(ValueError, match="to="):
        convert_vit_state_dict(w, "v5")
    assert VIT_KEY_SCHEMES == ("classic", "layers")


@pytest.mark.parametrize("scheme", ["classic", "layers"])
def test_from_hf_state_dict_reads_either_scheme(rng, scheme):
    cfg = dict(ODD, qkv_bias=True)
    w = _weights(cfg, rng)
    sd = convert_vit_state_dict(w, scheme)
    sd["vit.pooler.dense.bias"] = np.zeros(21, np.float32)              # ignored
    sd = {("vit." + k if not k.startswith("vit.") else k): v for k, v in sd.items()}
    enc = VisionEncoder.from_hf_state_dict(sd, cfg)
    imgs = _images(rng, cfg, 2)
    ref_t, ref_p = reference_vit(cfg, w, imgs)
    t, p = enc.forward(imgs)
    assert _rel(_f32(t), ref_t) < 1e-4 and _rel(_f32(p), ref_p) < 1e-4
    out = enc.state_dict(scheme=scheme)
    assert vit_key_scheme(out) == scheme
    assert set(out) == set(convert_vit_state_dict(w, scheme))
    with pytest.raises(ValueError, match="scheme"):
        enc.state_dict(scheme="v5")
