"""Resident sessions (matmul2d / attention2d / conv->attention) and lc.conv_attention_nchw.

On a machine without a GPU the sessions run on the CPU with the same API, so shape checks,
lifetimes, counters and results are all tested here; the GPU variants are marked gpu.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

import lightning_core as lc
from lightning_core._lightning_core import _session_live_bytes


def _attention_ref(q, k, v, causal=False, scale=None):
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    s = q64 @ k64.T * (scale if scale else 1.0 / np.sqrt(q.shape[1]))
    if causal:
        s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return p @ v64


def _conv_ref(x, w, b, pad):
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, oc, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + oh, j:j + ow]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _conv_attention_ref(x, w, b, seq_len, head_dim, pad):
    feats = np.maximum(_conv_ref(x, w, b, pad), 0).reshape(-1)
    need = seq_len * head_dim
    qkv = np.tile(feats, -(-need // feats.size))[:need].reshape(seq_len, head_dim)
    return _attention_ref(qkv, qkv, qkv)


# ---- matmul session ------------------------------------------------------------------------------

def test_matmul_session_start_run_batch_download(rng):
    a = rng.standard_normal((32, 48)).astype(np.float32)
    b = rng.standard_normal((48, 16)).astype(np.float32)
    out = np.zeros((32, 16), np.float32)
    with lc.matmul2d_resident_session(a, b) as s:
        assert s.device in lc.available_devices()
        assert s.out_shape == (32, 16)
        assert s.policy.upload == "once"
        s.start_into(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
        st = s.stats
        # 2 uploads at creation + 2 by start_into (it always uploads); one launch, one download
        assert st["uploads"] == 4 and st["launches"] == 1 and st["downloads"] == 1

        out2 = np.zeros_like(out)
        s.run_batch_sync_no_download_into(a, b, out2, 5)
        assert not out2.any()  # no download happened
        st = s.stats
        assert st["launches"] == 6 and st["downloads"] == 1 and st["uploads"] == 4
        s.sync()
        s.download_into(out2)
        np.testing.assert_allclose(out2, a @ b, rtol=1e-4, atol=1e-4)


def test_matmul_session_once_keeps_resident_data(rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    b = rng.standard_normal((8, 8)).astype(np.float32)
    out = np.zeros((8, 8), np.float32)
    s = lc.matmul2d_resident_session(a, b)
    a_saved = a.copy()
    a *= 2  # the bound object changed in place: upload="once" trusts it and uses the resident copy
    s.run_into(a, b, out)
    np.testing.assert_allclose(out, a_saved @ b, rtol=1e-4, atol=1e-4)
    assert s.stats["uploads"] == 2
    s.start_into(a, b, out)  # start_into always uploads
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    s.close()


def test_session_once_uploads_an_array_that_is_not_the_bound_one(rng):
    # Never a result for data the caller did not pass: a fresh array (even one that may reuse
    # the old one's address) is uploaded before the run; the bound objects are not re-uploaded.
    a = rng.standard_normal((8, 8)).astype(np.float32)
    b = rng.standard_normal((8, 8)).astype(np.float32)
    out = np.zeros((8, 8), np.float32)
    with lc.matmul2d_resident_session(a, b) as s:
        up = s.stats["uploads"]
        for i in range(5):
            a2 = a * (i + 2)  # a new object every time
            s.run_into(a2, b, out)
            np.testing.assert_allclose(out, a2 @ b, rtol=1e-4, atol=1e-4)
        assert s.stats["uploads"] == up + 5  # only a, never b
        s.run_into(a2, b, out)  # now bound: no upload
        assert s.stats["uploads"] == up + 5
        s.run_batch_sync_no_download_into(a, b, out, 2)  # the first a again: uploaded
        s.download_into(out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
    q = rng.standard_normal((5, 4)).astype(np.float32)
    o = np.zeros((5, 4), np.float32)
    with lc.attention2d_resident_session(q, q, q) as s:
        q2 = q + 1
        s.run_into(q2, q2, q2, o)
        np.testing.assert_allclose(o, lc.attention2d(q2, q2, q2, False, "cpu"), rtol=1e-4, atol=1e-5)


def test_matmul_session_upload_always_refreshes(rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    b = rng.standard_normal((8, 8)).astype(np.float32)
    out = np.zeros((8, 8), np.float32)
    with lc.matmul2d_resident_session(a, b, upload="always") as s:
        s.run_into(a * 3, b, out)
        np.testing.assert_allclose(out, (a * 3) @ b, rtol=1e-4, atol=1e-4)
        assert s.stats["uploads"] == 4


def test_session_shape_checks(rng):
    a = np.ones((4, 6), np.float32)
    b = np.ones((6, 5), np.float32)
    out = np.zeros((4, 5), np.float32)
    with lc.matmul2d_resident_session(a, b) as s:
        with pytest.raises(ValueError, match="created for"):
            s.run_into(np.ones((4, 7), np.float32), np.ones((7, 5), np.float32), out)
        with pytest.raises(ValueError, match="created for"):
            s.start_into(a, np.ones((6, 6), np.float32), np.zeros((4, 6), np.float32))
        with pytest.raises(ValueError):
            s.run_into(a, b, np.zeros((5, 4), np.float32))  # wrong out shape
        with pytest.raises(ValueError, match="n must be"):
            s.run_batch_sync_no_download_into(a, b, out, 0)
        with pytest.raises(TypeError):
            s.run_into(a.astype(np.float64), b, out)
    with pytest.raises(ValueError, match="inner dimensions"):
        lc.matmul2d_resident_session(a, np.ones((5, 5), np.float32))


def test_download_before_any_run_raises():
    a = np.ones((2, 2), np.float32)
    with lc.matmul2d_resident_session(a, a) as s:
        with pytest.raises(ValueError, match="no result yet"):
            s.download_into(np.zeros((2, 2), np.float32))


def test_closed_session_raises_and_frees():
    base = _session_live_bytes()
    a = np.ones((64, 64), np.float32)
    s = lc.matmul2d_resident_session(a, a)
    assert s.resident_bytes == 3 * 64 * 64 * 4
    assert _session_live_bytes() == base + s.resident_bytes
    s.close()
    assert s.closed and s.resident_bytes == 0
    assert _session_live_bytes() == base
    with pytest.raises(ValueError, match="closed"):
        s.run_into(a, a, np.zeros((64, 64), np.float32))
    s.close()  # idempotent


def test_context_manager_closes_even_on_error():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(RuntimeError):
        with lc.matmul2d_resident_session(a, a) as s:
            raise RuntimeError("boom")
    assert s.closed


def test_collected_session_frees_memory():
    base = _session_live_bytes()
    a = np.ones((32, 32), np.float32)
    s = lc.matmul2d_resident_session(a, a)
    assert _session_live_bytes() > base
    del s
    gc.collect()
    assert _session_live_bytes() == base


def test_session_outlives_its_numpy_inputs(rng):
    a = rng.standard_normal((16, 16)).astype(np.float32)
    expect = a @ a
    s = lc.matmul2d_resident_session(a.copy(), a.copy())  # the caller drops the temporaries
    gc.collect()
    out = np.zeros((16, 16), np.float32)
    s.run_batch_sync_no_download_into(*s._lc_bound, out, 1)  # the session kept what it bound
    s.download_into(out)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4)
    s.close()


def test_upload_never_binds_lc_tensors(rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    ta = lc.Tensor(a, device="cpu")
    out = np.zeros((8, 8), np.float32)
    pol = lc.ExecutionPolicy(device="auto", upload="never")
    with lc.matmul2d_resident_session(ta, ta, policy=pol) as s:
        assert s.device == "cpu"
        s.start_into(ta, ta, out)
        np.testing.assert_allclose(out, a @ a, rtol=1e-4, atol=1e-4)
        assert s.stats["uploads"] == 0
        assert s.resident_bytes == 8 * 8 * 4  # only the result buffer is owned
    with pytest.raises(ValueError, match="never"):
        lc.matmul2d_resident_session(a, a, policy=pol)  # borrowed numpy cannot be bound


def test_session_explicit_cpu_and_reason():
    a = np.ones((4, 4), np.float32)
    with lc.matmul2d_resident_session(a, a, "cpu") as s:
        assert s.device == "cpu"
        assert "cpu" in s.placement_reason
        assert s.gemm_mode == ""
        assert s.input_shapes == {"a": (4, 4), "b": (4, 4)}
        assert "matmul2d_resident_session" in repr(s)


def test_session_policy_validation():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError):
        lc.matmul2d_resident_session(a, a, upload="sometimes")
    with pytest.raises(ValueError):
        lc.matmul2d_resident_session(a, a, "cpu", upload="never")


# ---- attention session ------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
def test_attention_session(rng, causal):
    q = rng.standard_normal((24, 16)).astype(np.float32)
    k = rng.standard_normal((32, 16)).astype(np.float32)
    v = rng.standard_normal((32, 8)).astype(np.float32)
    out = np.zeros((24, 8), np.float32)
    with lc.attention2d_resident_session(q, k, v, causal, scale=0.3) as s:
        s.start_into(q, k, v, out)
        np.testing.assert_allclose(out, _attention_ref(q, k, v, causal, 0.3), rtol=1e-4, atol=1e-4)
        out.fill(0)
        s.run_batch_sync_no_download_into(q, k, v, out, 3)
        s.download_into(out)
        np.testing.assert_allclose(out, _attention_ref(q, k, v, causal, 0.3), rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="'k' has shape"):
            s.run_into(q, k[:8], v, out)
    with pytest.raises(ValueError, match="scale"):
        lc.attention2d_resident_session(q, k, v, scale=-1.0)


# ---- conv -> attention -------------------------------------------------------------------------

@pytest.mark.parametrize("seq_len, head_dim", [(32, 16), (48, 20), (8, 8)])
def test_conv_attention_matches_reference(rng, seq_len, head_dim):
    # conv output: 1x4x8x8 = 256 values; (32,16) is an exact view, the others tile / truncate.
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    got = lc.conv_attention_nchw(x, w, b, seq_len, head_dim, 1, 1, 1, 1, device="cpu")
    assert isinstance(got, np.ndarray) and got.shape == (seq_len, head_dim)
    np.testing.assert_allclose(got, _conv_attention_ref(x, w, b, seq_len, head_dim, 1),
                               rtol=1e-4, atol=1e-4)
    out = np.zeros((seq_len, head_dim), np.float32)
    lc.conv_attention_nchw_into(x, w, None, out, seq_len, head_dim, 1, 1, 1, 1, "cpu")
    np.testing.assert_allclose(out, _conv_attention_ref(x, w, None, seq_len, head_dim, 1),
                               rtol=1e-4, atol=1e-4)


def test_conv_attention_checks():
    x = np.ones((2, 3, 8, 8), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match="one image"):
        lc.conv_attention_nchw(x, w, None, 16, 16, device="cpu")
    with pytest.raises(ValueError, match=">= 1"):
        lc.conv_attention_nchw(x[:1], w, None, 0, 16, device="cpu")
    with pytest.raises(ValueError):
        lc.conv_attention_nchw(x[:1], np.ones((4, 2, 3, 3), np.float32), None, 4, 4, device="cpu")


def test_conv_attention_api_wrapper_uses_native(rng):
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = (rng.standard_normal((3, 2, 3, 3)) * 0.3).astype(np.float32)
    b = np.zeros(3, np.float32)
    got = lc.api.conv_attention_torchstrong_nchw(x, w, b, seq_len=12, head_dim=9, device="cpu")
    np.testing.assert_allclose(np.asarray(got), _conv_attention_ref(x, w, b, 12, 9, 1),
                               rtol=1e-4, atol=1e-4)


def test_conv_attention_session(rng):
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    out = np.zeros((40, 16), np.float32)
    base = _session_live_bytes()
    with lc.conv_attention_resident_session(x, w, b, 40, 16, 1, 1, 1, 1) as s:
        assert s.input_shapes == {"x": (1, 3, 8, 8)}
        s.start_into(x, out)
        np.testing.assert_allclose(out, _conv_attention_ref(x, w, b, 40, 16, 1), rtol=1e-4, atol=1e-4)
        x2 = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
        s.start_into(x2, out)
        np.testing.assert_allclose(out, _conv_attention_ref(x2, w, b, 40, 16, 1), rtol=1e-4, atol=1e-4)
        s.run_batch_sync_no_download_into(x2, out, 4)
        assert s.stats["launches"] == 6
        with pytest.raises(ValueError, match="created for"):
            s.run_into(np.ones((1, 3, 9, 9), np.float32), out)
        assert _session_live_bytes() > base
    assert _session_live_bytes() == base


# ---- GPU -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("use_graph", [False, True])
def test_gpu_matmul_session(rng, use_graph):
    a = rng.standard_normal((512, 256)).astype(np.float32)
    b = rng.standard_normal((256, 384)).astype(np.float32)
    out = np.zeros((512, 384), np.float32)
    with lc.matmul2d_resident_session(a, b, "cuda", use_graph=use_graph) as s:
        assert s.device == "cuda" and s.uses_graph == use_graph
        s.start_into(a, b, out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-3, atol=1e-3)
        out.fill(0)
        s.run_batch_sync_no_download_into(a, b, out, 10)
        assert not out.any()
        s.download_into(out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-3, atol=1e-3)
        if use_graph:
            assert s.stats["graph_replays"] == 10


@pytest.mark.gpu
def test_gpu_sessions_free_device_memory(rng):
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    before = lc.cuda_memory_stats()["in_use_bytes"] if hasattr(lc, "cuda_memory_stats") else None
    s = lc.matmul2d_resident_session(a, a, "cuda")
    assert s.resident_bytes == 3 * a.nbytes
    del s
    gc.collect()
    if before is not None:
        assert lc.cuda_memory_stats()["in_use_bytes"] == before


@pytest.mark.gpu
@pytest.mark.parametrize("graph", [False, True])
# conv output 16x16x16 = 4096 values: tiled just past 1x, past 2x (the cyclic-tile kernel's
# wrap-around), truncated, and an exact view.
@pytest.mark.parametrize("seq_len, head_dim", [(96, 48), (192, 48), (40, 24), (64, 64)])
def test_gpu_conv_attention(rng, graph, seq_len, head_dim):
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32) * 0.1
    # Fresh inputs every call: calls 3+ replay cached graphs (the eager kernels' one-node graphs,
    # or graph mode's captured chain), which must read the new data.
    for _ in range(4):
        x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
        got = lc.conv_attention_nchw(x, w, b, seq_len, head_dim, 1, 1, 1, 1, "cuda", graph=graph)
        np.testing.assert_allclose(got, _conv_attention_ref(x, w, b, seq_len, head_dim, 1),
                                   rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_gpu_attention_and_conv_attention_sessions(rng):
    q = rng.standard_normal((256, 64)).astype(np.float32)
    out = np.zeros((256, 64), np.float32)
    with lc.attention2d_resident_session(q, q, q, device="cuda", use_graph=True) as s:
        s.start_into(q, q, q, out)
        s.run_batch_sync_no_download_into(q, q, q, out, 4)
        s.download_into(out)
        np.testing.assert_allclose(out, _attention_ref(q, q, q), rtol=1e-3, atol=1e-3)
    x = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    o2 = np.zeros((64, 64), np.float32)
    with lc.conv_attention_resident_session(x, w, None, 64, 64, 1, 1, 1, 1, "cuda",
                                            use_graph=True) as s:
        s.start_into(x, o2)
        s.run_batch_sync_no_download_into(x, o2, 3)
        s.download_into(o2)
        np.testing.assert_allclose(o2, _conv_attention_ref(x, w, None, 64, 64, 1), rtol=1e-3, atol=1e-3)


# ---- the capture seam (one graph mechanism: re-record + update in place on rebind) -------------

def test_cpu_session_use_graph_runs_directly(rng):
    # The CPU backend has no graphs: use_graph is accepted and the batch runs the op directly.
    a = rng.standard_normal((33, 17)).astype(np.float32)
    b = rng.standard_normal((17, 29)).astype(np.float32)
    out = np.full((33, 29), np.nan, np.float32)
    with lc.matmul2d_resident_session(a, b, "cpu", use_graph=True) as s:
        assert not s.uses_graph
        s.start_into(a, b, out)
        s.run_batch_sync_no_download_into(a, b, out, 3)
        s.download_into(out)
        np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)
        assert s.stats["launches"] == 4
        assert s.stats["graph_replays"] == 0 and s.stats["graph_records"] == 0


@pytest.mark.gpu
def test_gpu_graph_session_rebind_updates_in_place(rng):
    # upload="never" binds device tensors; a batch on other tensors re-records the launch and
    # updates the captured graph in place (graph_records counts recordings), and the replays
    # read the new buffers.
    pol = lc.ExecutionPolicy(device="cuda", upload="never")
    a1 = rng.standard_normal((257, 131)).astype(np.float32)
    b1 = rng.standard_normal((131, 67)).astype(np.float32)
    a2 = rng.standard_normal((257, 131)).astype(np.float32)
    b2 = rng.standard_normal((131, 67)).astype(np.float32)
    ta1, tb1 = lc.Tensor(a1, device="cuda"), lc.Tensor(b1, device="cuda")
    ta2, tb2 = lc.Tensor(a2, device="cuda"), lc.Tensor(b2, device="cuda")
    out = np.full((257, 67), np.nan, np.float32)
    with lc.matmul2d_resident_session(ta1, tb1, policy=pol, use_graph=True) as s:
        assert s.uses_graph
        s.start_into(ta1, tb1, out)
        np.testing.assert_allclose(out, a1 @ b1, rtol=1e-3, atol=1e-3)
        s.run_batch_sync_no_download_into(ta1, tb1, out, 5)
        assert s.stats["graph_records"] == 1
        out.fill(np.nan)
        s.download_into(out)
        np.testing.assert_allclose(out, a1 @ b1, rtol=1e-3, atol=1e-3)
        s.run_batch_sync_no_download_into(ta2, tb2, out, 5)  # rebound: re-recorded once
        assert s.stats["graph_records"] == 2
        out.fill(np.nan)
        s.download_into(out)
        np.testing.assert_allclose(out, a2 @ b2, rtol=1e-3, atol=1e-3)
        s.run_batch_sync_no_download_into(ta2, tb2, out, 3)  # same buffers: replays only
        assert s.stats["graph_records"] == 2
        s.run_batch_sync_no_download_into(ta1, tb2, out, 2)  # one input back
        assert s.stats["graph_records"] == 3
        out.fill(np.nan)
        s.download_into(out)
        np.testing.assert_allclose(out, a1 @ b2, rtol=1e-3, atol=1e-3)
        assert s.stats["graph_replays"] == 15


@pytest.mark.gpu
def test_gpu_graph_sessions_of_one_shape_share_the_cache(rng):
    # A second session of the same shapes picks up the first one's graph from the backend's
    # cache (keyed by topology, shapes and dtypes) and records its own buffers into it.
    q = rng.standard_normal((96, 32)).astype(np.float32)
    out = np.full((96, 32), np.nan, np.float32)
    for _ in range(3):
        q = rng.standard_normal((96, 32)).astype(np.float32)
        with lc.attention2d_resident_session(q, q, q, device="cuda", use_graph=True) as s:
            s.start_into(q, q, q, out)
            s.run_batch_sync_no_download_into(q, q, q, out, 2)
            out.fill(np.nan)
            s.download_into(out)
            np.testing.assert_allclose(out, _attention_ref(q, q, q), rtol=1e-3, atol=1e-3)
            assert s.stats["graph_records"] == 1
