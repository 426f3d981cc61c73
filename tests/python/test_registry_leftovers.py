"""The facts issue #12 wanted written once, checked from Python:

* the chain rule (src/runtime/placement.h: one device for a chain of ops, and the policies of its
  inner and last steps) decides the same for the Python pipelines (lc.api.ffn,
  lc.api.layernorm_linear through lc._chain_device / lc._chain_policies) and the C++ one
  (lc.conv_attention_nchw), and agrees with the op-level rule block by block;
* conv2d_nchw and conv -> attention dispatch their convolution through one function (same tuned
  path, same results);
* conv_attention_nchw and attention come from one binding definition each (returning and
  `_into` forms; their signatures are pinned in test_op_registry.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc

_C = lc._lightning_core
f32 = np.float32


# ---- conv_attention_nchw and attention: both forms from one definition ----------------------------

def test_conv_attention_forms(rng):
    x = rng.standard_normal((1, 3, 7, 7)).astype(f32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(f32)
    b = rng.standard_normal(4).astype(f32)
    r = lc.conv_attention_nchw(x, w, b, 11, 5, 1, 1, 1, 1, "cpu", causal=True)
    assert isinstance(r, np.ndarray) and r.shape == (11, 5) and r.dtype == f32
    out = np.full((11, 5), np.nan, f32)
    assert lc.conv_attention_nchw_into(x, w, b, out, 11, 5, 1, 1, 1, 1, "cpu", causal=True) is out
    np.testing.assert_array_equal(out, r)
    # lc.Tensor in -> lc.Tensor out
    t = lc.conv_attention_nchw(lc.Tensor(x), lc.Tensor(w), lc.Tensor(b), 11, 5, 1, 1, 1, 1, "cpu",
                               causal=True)
    assert isinstance(t, lc.Tensor)
    np.testing.assert_array_equal(t.numpy(), r)
    # Bad arguments name the op; a wrong `out` is not written.
    bad = np.full((11, 4), np.nan, f32)
    with pytest.raises(ValueError, match=r"\[conv_attention_nchw\]"):
        lc.conv_attention_nchw_into(x, w, b, bad, 11, 5, device="cpu")
    assert np.isnan(bad).all()
    with pytest.raises(TypeError, match=r"\[conv_attention_nchw_into\]"):
        lc.conv_attention_nchw_into(x, w, b)
    with pytest.raises(ValueError, match="seq_len"):
        lc.conv_attention_nchw(x, w, b, 0, 5, device="cpu")


def test_attention_forms(rng):
    q = rng.standard_normal((2, 3, 5, 4)).astype(f32)
    k = rng.standard_normal((2, 3, 7, 4)).astype(f32)
    v = rng.standard_normal((2, 3, 7, 6)).astype(f32)
    r = lc.attention(q, k, v, device="cpu")
    out = np.full((2, 3, 5, 6), np.nan, f32)
    assert lc.attention_into(q, k, v, out, device="cpu") is out
    np.testing.assert_array_equal(out, r)
    r2, lse = lc.attention(q, k, v, return_lse=True, device="cpu")
    out2 = np.full_like(out, np.nan)
    o2, lse2 = lc.attention_into(q, k, v, out2, return_lse=True, device="cpu")
    assert o2 is out2 and lse.shape == (2, 3, 5) and lse2.shape == (2, 3, 5)
    np.testing.assert_array_equal(out2, r2)
    np.testing.assert_array_equal(lse2, lse)
    s = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) / 2.0
    p = np.exp(s - s.max(-1, keepdims=True))
    ref = np.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdims=True), v.astype(np.float64))
    np.testing.assert_allclose(r, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=r"\[attention_into\]"):
        lc.attention_into(q, k)
    with pytest.raises(TypeError, match=r"\[attention\]"):
        lc.attention(q, k, v, cuasal=True)


# ---- one conv dispatch --------------------------------------------------------------------------

@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_CORE_CACHE_DIR", str(tmp_path / "lc-cache"))
    monkeypatch.delenv("LC_AUTOTUNE", raising=False)
    _C._autotune_reload()
    yield tmp_path
    _C._autotune_reload()


def _conv_entries():
    return [e for e in lc.autotune_cache_entries() if e["op"] == "conv2d_nchw.cpu_path"]


@pytest.mark.parametrize("c, oc, hw, pad", [(3, 5, 11, 1), (1, 1, 3, 0), (7, 4, 13, 2)])
def test_conv2d_and_conv_attention_share_one_dispatch(cache_dir, rng, c, oc, hw, pad):
    x = rng.standard_normal((1, c, hw, hw)).astype(f32)
    w = rng.standard_normal((oc, c, 3, 3)).astype(f32)
    b = rng.standard_normal(oc).astype(f32)
    before = lc.autotune_measurement_count()
    conv = lc.conv2d_nchw(x, w, b, 1, 1, pad, pad, "cpu", activation="relu")
    # conv2d_nchw tunes its path like conv -> attention always did: one measurement per shape,
    # persisted under the same key ...
    assert lc.autotune_measurement_count() == before + 1
    (entry,) = _conv_entries()
    assert entry["choice"] in ("direct", "im2col")
    # ... which conv -> attention then reads: no second measurement, the same path.
    oh = conv.shape[2]
    seq, head = oc, oh * oh
    fused = lc.conv_attention_nchw(x, w, b, seq, head, 1, 1, pad, pad, "cpu")
    assert lc.autotune_measurement_count() == before + 1
    assert len(_conv_entries()) == 1
    # Same conv, same attention kernel: the chain equals the ops run one by one, bit for bit.
    s = np.ascontiguousarray(conv.reshape(seq, head))
    np.testing.assert_array_equal(fused, lc.attention2d(s, s, s, device="cpu"))
    # And both against a float64 reference of the convolution.
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = np.zeros((1, oc, oh, oh))
    for i in range(3):
        for j in range(3):
            ref += np.einsum("nchw,oc->nohw", xp[:, :, i:i + oh, j:j + oh], w[:, :, i, j].astype(np.float64))
    ref = np.maximum(ref + b.astype(np.float64)[None, :, None, None], 0)
    np.testing.assert_allclose(conv, ref, rtol=1e-4, atol=1e-4)


def test_conv2d_without_autotune_measures_nothing(cache_dir, rng):
    x = rng.standard_normal((1, 2, 9, 9)).astype(f32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(f32)
    before = lc.autotune_measurement_count()
    pol = lc.ExecutionPolicy(device="cpu", autotune=False)
    a = lc.conv2d_nchw(x, w, None, policy=pol)
    assert lc.autotune_measurement_count() == before and not _conv_entries()
    # The tuned path computes the same convolution.
    np.testing.assert_allclose(lc.conv2d_nchw(x, w, None, device="cpu"), a, rtol=1e-5, atol=1e-5)


# A fitted model shaped like the H100 host (as test_policy.py's): a layernorm of host data stays
# on the CPU, a 512 x 512 -> 4096 projection goes to the GPU.
H100_LIKE = dict(
    cpu_gflops=dict(matmul=500.0, attention=40.0, conv2d=3.0, norm=10.0, elementwise=30.0),
    gpu_gflops=dict(matmul=30000.0, attention=8000.0, conv2d=10000.0, norm=800.0, elementwise=600.0),
    cpu_family_overhead_us=dict(matmul=8.0, attention=1.0, conv2d=10.0, norm=2.0, elementwise=3.0),
    gpu_family_overhead_us=dict(matmul=6.0, attention=2.0, conv2d=2.0, norm=0.0, elementwise=0.0),
    cpu_overhead_us=0.5, gpu_launch_us=8.0, h2d_gbps=10.0, d2h_gbps=10.0,
    h2d_latency_us=3.0, d2h_latency_us=4.0, h2d_small_gbps=0.0, d2h_small_gbps=0.0,
    conv_crossover_explicit=False, calibrated=True, gpu_calibrated=True,
)


@pytest.fixture
def fake_gpu(monkeypatch):
    """The Python chains see a GPU (lc.api._chain_query with gpu_available=True) under the
    H100-like model; returns the ops each query asked about."""
    lc.set_cost_model(H100_LIKE)
    calls = []

    def query(ops, shapes, policy, on_gpu, _gpu_available, host=False, device=None):
        calls.append(list(ops))
        return _C._chain_device(ops, shapes, policy, on_gpu, True, host, device)

    monkeypatch.setattr(lc.api, "_chain_query", query)
    yield calls
    lc.reset_cost_model()


def _op_rule(op, shapes, policy, on_gpu):
    """The op-level decision for one block (lc.placement: choose_device with the OpDef)."""
    return lc.placement(op, *shapes, policy=policy, inputs_on_gpu=on_gpu, gpu_available=True)["device"]


def _expected_chain(blocks, policy, on_gpu, host):
    """The chain rule written out in Python from the op-level rule (the test's own statement of
    docs/architecture.md "Chains")."""
    if policy.device != "auto":
        return _op_rule(*blocks[0], policy, on_gpu)
    if policy.upload == "never" and host:
        return "cpu"
    for op, shapes in blocks:
        d = _op_rule(op, shapes, policy, on_gpu)
        if d != "cpu":
            return d
    return "cpu"


LN_BIG = [("layernorm", [(512, 512)]), ("linear", [(512, 512), (4096, 512)])]
LN_TINY = [("layernorm", [(4, 8)]), ("linear", [(4, 8), (8, 8)])]
FFN_BIG = [("linear", [(512, 512), (2048, 512)]), ("linear", [(512, 2048), (512, 2048)])]
WIDE_HEAD = [("attention2d", [(8, 520)] * 3), ("linear", [(512, 520), (4096, 520)])]  # 520 > 512: no CUDA kernel

CHAIN_CASES = [
    # blocks, policy fields, inputs on the GPU, inputs in host memory, expected device
    (LN_BIG, dict(), False, True, "cuda"),          # the projection pulls the layernorm along
    (LN_TINY, dict(), False, True, "cpu"),
    (LN_TINY, dict(), True, False, "cuda"),         # resident data stays on the GPU
    (FFN_BIG, dict(), False, True, "cuda"),
    (LN_BIG, dict(upload="never"), False, True, "cpu"),   # host data may not move
    (LN_BIG, dict(upload="never"), True, True, "cpu"),    # ... also next to resident data
    (LN_TINY, dict(upload="never"), True, False, "cuda"),
    (LN_BIG, dict(device="cpu"), True, False, "cpu"),     # explicit requests are honoured
    (LN_TINY, dict(device="cuda"), False, True, "cuda"),
    (WIDE_HEAD, dict(device="cuda"), False, True, "cpu"),  # first block cannot run there
    (WIDE_HEAD, dict(), False, True, "cuda"),       # auto: the projection decides
    (LN_BIG, dict(precision="bf16"), False, True, "cuda"),
]


@pytest.mark.parametrize("blocks, fields, on_gpu, host, want", CHAIN_CASES)
def test_chain_device_table(fake_gpu, blocks, fields, on_gpu, host, want):
    policy = lc.ExecutionPolicy(**fields)
    assert _expected_chain(blocks, policy, on_gpu, host) == want
    # The native rule (what the C++ pipelines call) ...
    ops = [op for op, _ in blocks]
    shapes = [[list(s) for s in ss] for _, ss in blocks]
    assert _C._chain_device(ops, shapes, policy, on_gpu, True, host) == want
    if on_gpu:
        return  # lc.api reads the data's location from real device tensors (GPU tests)
    # ... and the Python pipelines' decision: lc.api's own path to it, data as the pipelines
    # pass it (a host array when some input is in host memory).
    data = [np.zeros(1, f32)] if host else []
    assert lc.api._chain_device(blocks, policy, data, None) == want
    if policy.device != "cpu":  # an explicit "cpu" is honoured without the native call
        assert fake_gpu[-1] == ops
    # The step policies the pipelines then run with are the native pair for that device.
    inner, last = lc.api._chain_policy("chain", None, policy, blocks, data)
    assert (inner, last) == _C._chain_policies(policy, want)


def test_chain_device_without_a_gpu_and_with_unreadable_shapes():
    base = lc.ExecutionPolicy()
    assert _C._chain_device(["linear"], [[[4096, 4096], [4096, 4096]]], base, False, False) == "cpu"
    # No blocks, or a block the registry cannot read: the request itself (the ops decide).
    assert _C._chain_device([], [], base) == "auto"
    assert _C._chain_device(["linear"], [[[4]]], base, False, True, False, "cuda") == "cuda"
    assert lc.api._chain_device([("linear", (None, (8, 8)))], base) in ("auto", "cpu")
    with pytest.raises(ValueError):
        _C._chain_device(["linear"], [], base)


POLICY_TABLE = [
    dict(),
    dict(sync="batch"),
    dict(precision="tf32"),
    dict(precision="bf16"),            # a GPU precision: a CPU chain computes fp32
    dict(upload="never"),              # host data: the whole chain stays on the CPU
    dict(autotune=False, fusion=False),
    dict(download=False, sync="batch"),  # on the CPU results are in host memory anyway
]


def _steps(events, ops):
    """(device, policy) of the op events of `ops`, in order (transfers and syncs left out)."""
    return [(e["device"], e["policy"]) for e in events if e["kind"] == "op" and e["op"] in ops]


def _policy_str(p):
    return (f"upload={p.upload} download={'yes' if p.download else 'no'} sync={p.sync}")


@pytest.mark.parametrize("fields", POLICY_TABLE)
def test_cpu_chains_run_their_steps_alike(rng, fields):
    """The C++ chain (conv_attention_nchw: conv -> attention) and the Python chains (ffn,
    layernorm_linear) under the same caller policy pick the same device and run their inner and
    last steps with the same policies: chain_policies(policy, device)."""
    policy = lc.ExecutionPolicy(**fields)
    x = rng.standard_normal((1, 2, 6, 6)).astype(f32)
    wc = rng.standard_normal((3, 2, 3, 3)).astype(f32)
    a = rng.standard_normal((4, 8)).astype(f32)
    w1 = rng.standard_normal((16, 8)).astype(f32)
    w2 = rng.standard_normal((8, 16)).astype(f32)
    with lc.runtime_trace() as t:
        lc.conv_attention_nchw(x, wc, None, 9, 12, 1, 1, 1, 1, policy=policy)
        lc.api.ffn(a, w1, None, w2, None, policy=policy)
        lc.api.layernorm_linear(a, None, None, w1, policy=policy)
    ev = t.events()
    cpp = _steps(ev, {"conv_attention_nchw.conv", "attention2d"})
    py = _steps(ev, {"linear", "layernorm"})
    assert len(cpp) == 2 and len(py) == 4
    inner, last = _C._chain_policies(policy, "cpu")
    want = [("cpu", _policy_str(inner)), ("cpu", _policy_str(last))]
    assert cpp == want
    assert py[0:2] == want and py[2:4] == want
    assert inner.precision == last.precision == ("fp32" if policy.precision == "bf16" else policy.precision)


@pytest.mark.gpu
@pytest.mark.parametrize("fields", [dict(device="cuda"), dict(device="cuda", sync="batch"),
                                    dict(device="cuda", download=False)])
def test_gpu_chains_run_their_steps_alike(rng, fields):
    policy = lc.ExecutionPolicy(**fields)
    x = rng.standard_normal((1, 2, 6, 6)).astype(f32)
    wc = rng.standard_normal((3, 2, 3, 3)).astype(f32)
    a = rng.standard_normal((4, 8)).astype(f32)
    w1 = rng.standard_normal((16, 8)).astype(f32)
    w2 = rng.standard_normal((8, 16)).astype(f32)
    with lc.runtime_trace() as t:
        lc.conv_attention_nchw(x, wc, None, 9, 12, 1, 1, 1, 1, policy=policy)
        lc.api.ffn(a, w1, None, w2, None, policy=policy)
    lc.synchronize()
    ev = t.events()
    inner, last = _C._chain_policies(policy, "cuda")
    want = [("cuda", _policy_str(inner)), ("cuda", _policy_str(last))]
    assert _steps(ev, {"conv_attention_nchw.conv", "attention2d"}) == want
    assert _steps(ev, {"linear"}) == want


def test_cpu_chain_under_a_bf16_policy_runs_in_fp32(rng):
    # bf16 is a GPU precision; a chain placed on the CPU computes fp32 (as a single op does).
    x = rng.standard_normal((3, 8)).astype(f32)
    w1 = rng.standard_normal((5, 8)).astype(f32)
    w2 = rng.standard_normal((8, 5)).astype(f32)
    pol = lc.ExecutionPolicy(device="auto", precision="bf16")
    if lc.cuda_available():
        pol = lc.ExecutionPolicy(device="auto", precision="bf16", upload="never")
    y = lc.api.ffn(x, w1, None, w2, None, activation="relu", policy=pol)
    h = np.maximum(x.astype(np.float64) @ w1.T.astype(np.float64), 0)
    np.testing.assert_allclose(y, h @ w2.T.astype(np.float64), rtol=1e-5, atol=1e-5)
