"""The original README's usage examples (../shared/seed/), with "metal" read as our devices.

They pin the API's names and argument order: a user of the original switches by changing the
device string only. Each example also checks its result against numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from conftest import backends


def _attn_ref(q, k, v, causal=False):
    s = (q.astype(np.float64) @ k.T.astype(np.float64)) / np.sqrt(q.shape[1])
    if causal:
        s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ v.astype(np.float64)


@pytest.mark.parametrize("device", backends)
def test_quick_start_and_matmul_usage(device):
    assert lc.backend_name() in ("cpu", "cuda")
    a = np.random.rand(128, 256).astype(np.float32)
    b = np.random.rand(256, 64).astype(np.float32)
    y = lc.matmul2d(a, b, device)
    assert y.shape == (128, 64)
    np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-4)

    a = np.random.rand(512, 1024).astype(np.float32)
    b = np.random.rand(1024, 512).astype(np.float32)
    out = lc.matmul2d(a, b, device)
    out2 = np.empty((512, 512), dtype=np.float32)
    lc.matmul2d_into(a, b, out2, device)
    np.testing.assert_allclose(out, out2, rtol=1e-5)


@pytest.mark.parametrize("device", backends)
def test_attention_usage(device):
    q = np.random.rand(8, 16).astype(np.float32)
    k = np.random.rand(8, 16).astype(np.float32)
    v = np.random.rand(8, 16).astype(np.float32)
    out = lc.attention2d(q, k, v, False, device)
    out_into = np.empty_like(q)
    lc.attention2d_into(q, k, v, out_into, False, device)
    np.testing.assert_allclose(out, _attn_ref(q, k, v), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, out_into)


@pytest.mark.parametrize("device", backends)
def test_convolution_usage(device):
    x = np.random.rand(1, 3, 16, 16).astype(np.float32)
    w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    b = np.random.rand(16).astype(np.float32)
    y = lc.conv2d_nchw(x, w, b, 1, 1, 1, 1, device)
    assert y.shape == (1, 16, 16, 16)
    # centre pixel of channel 0 against a direct sum
    ref = (x[0, :, 7:10, 7:10].astype(np.float64) * w[0]).sum() + b[0]
    assert abs(float(y[0, 0, 8, 8]) - ref) < 1e-4 * max(1.0, abs(ref))


@pytest.mark.parametrize("device", backends)
def test_resident_blocks_usage(device):
    a = np.random.rand(256, 256).astype(np.float32)
    b = np.random.rand(256, 256).astype(np.float32)
    out = np.full((256, 256), np.nan, dtype=np.float32)
    with lc.policy(device=device):
        sess = lc.matmul2d_resident_session(a, b)
        sess.start_into(a, b, out)
        sess.run_batch_sync_no_download_into(a, b, out, 8)
        sess.sync()
        sess.download_into(out)
        sess.close()
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4)


@pytest.mark.parametrize("device", backends)
def test_pipeline_usage(device):
    x = np.random.rand(1, 3, 8, 8).astype(np.float32)
    w = np.random.rand(16, 3, 3, 3).astype(np.float32)
    b = np.random.rand(16).astype(np.float32)
    y = lc.api.conv_relu_nchw(x, w, b, stride_h=1, stride_w=1, pad_h=1, pad_w=1, device=device)
    np.testing.assert_allclose(y, np.maximum(lc.conv2d_nchw(x, w, b, 1, 1, 1, 1, "cpu"), 0), rtol=1e-5)
    seq_len, head_dim = 96, 48
    z = lc.api.conv_attention_torchstrong_nchw(
        x, w, b, seq_len=seq_len, head_dim=head_dim, stride_h=1, stride_w=1, pad_h=1, pad_w=1, device=device
    )
    qkv = lc.api.qkv_arrange(np.asarray(y), seq_len, head_dim)
    np.testing.assert_allclose(z, _attn_ref(qkv, qkv, qkv), rtol=1e-4, atol=1e-5)
    z_graph = lc.api.conv_attention_torchstrong_nchw(
        x, w, b, seq_len=seq_len, head_dim=head_dim, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
        device=device, execution_mode="graph",
    )
    np.testing.assert_allclose(z_graph, z, rtol=1e-5, atol=1e-6)
    report = lc.api.conv_attention_torchstrong_nchw_ab_report(
        x, w, b, seq_len=seq_len, head_dim=head_dim, stride_h=1, stride_w=1, pad_h=1, pad_w=1, device=device,
        iters=3, warmup=1,
    )
    assert report["winner"] in ("eager", "graph")
    assert report["max_abs_diff"] < 1e-4 and report["graph_over_eager"] > 0


@pytest.mark.parametrize("device", backends)
def test_timeline_readout_usage(device):
    lc.runtime_trace_clear()
    lc.runtime_trace_enable(True)
    a = np.random.rand(64, 64).astype(np.float32)
    b = np.random.rand(64, 64).astype(np.float32)
    for _ in range(40):
        lc.matmul2d(a, b, device)
    lc.runtime_trace_enable(False)
    report = lc.runtime_trace_timeline(
        group_by="op_path", group_sort_by="total_delta_next_ns", group_descending=True, hotspot_top_k=8
    )
    lc.runtime_trace_clear()
    keys = [g["key"] for g in report["groups"]]
    assert f"matmul2d|{device}|direct" in keys
    group = report["groups"][keys.index(f"matmul2d|{device}|direct")]
    assert group["count"] == 40
    assert 0 < len(report["hotspots"]) <= 8
