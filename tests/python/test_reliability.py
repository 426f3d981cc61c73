"""Regression tests for the reliability issue (#11): one test per class of crash, silent wrong
result and wrong exception that fuzzing found. Crash cases run in a subprocess, so a regression
shows up as a failed test instead of a dead pytest.

The classes (see docs/reliability.md):
  crashes          CPU conv with a kernel wider than the unpadded input; size products that
                   overflow 64 bits; session.close() racing a running call
  silent results   `out` that cannot be written in place; causal attention leaking masked
                   positions; `out` aliasing an input; stale resident-session inputs; pipelines
                   under upload="never"
  exceptions       wrong-typed keywords, policy=3, ExecutionPolicy() == None, None inputs, one
                   attention-scale rule, huge paddings, NaN/Inf semantics of relu/gelu
  concurrency      sessions shared by threads (upload="always"), close() while running
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import lightning_core as lc

from parity import ref_conv2d

f32 = np.float32


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (numpy as np, lightning_core as lc imported)."""
    src = "import numpy as np\nimport lightning_core as lc\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=120)


def assert_clean(r: subprocess.CompletedProcess):
    assert r.returncode == 0, f"rc={r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr[-2000:]}"


# ---- reference helpers -------------------------------------------------------------------------

def attention_ref(q, k, v, causal=False, scale=None):
    """float64 attention in which masked keys never enter a row (not even as 0 * value)."""
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    s = q @ k.T * (scale if scale else 1.0 / np.sqrt(q.shape[1]))
    if causal:
        s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((q.shape[0], v.shape[1]))
    for i in range(q.shape[0]):  # only the visible keys: masked values never enter
        vis = np.arange(k.shape[0]) <= i if causal else np.ones(k.shape[0], bool)
        out[i] = p[i, vis] @ v[vis]
    return out


# ---- crashes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape,w_shape,pads", [
    ((1, 64, 64, 1), (64, 64, 3, 5), (1, 2)),   # the issue's case (im2col path)
    ((1, 3, 5, 2), (4, 3, 3, 7), (1, 3)),       # direct path, kernel wider than input
    ((2, 2, 1, 1), (3, 2, 5, 5), (2, 2)),       # 1x1 input, 5x5 kernel
    ((1, 1, 7, 3), (2, 1, 1, 9), (0, 4)),
])
def test_conv_kernel_wider_than_unpadded_input(x_shape, w_shape, pads, rng):
    x = rng.standard_normal(x_shape).astype(f32)
    w = rng.standard_normal(w_shape).astype(f32)
    b = rng.standard_normal(w_shape[0]).astype(f32)
    code = f"""
    x = np.ones({x_shape}, np.float32)
    w = np.ones({w_shape}, np.float32)
    y = lc.conv2d_nchw(x, w, None, 1, 1, {pads[0]}, {pads[1]}, 'cpu')
    print(float(np.abs(y).sum()))
    """
    assert_clean(run_isolated(code))
    y = lc.conv2d_nchw(x, w, b, 1, 1, pads[0], pads[1], "cpu")
    ref = ref_conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1, *pads, "none")
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_conv_attention_tiny_kernel_wider_than_input():
    code = """
    x = np.ones((1, 1, 2, 1), np.float32); w = np.ones((2, 1, 3, 3), np.float32)
    y = lc.conv_attention_nchw(x, w, None, 3, 2, 1, 1, 1, 1, device='cpu')
    assert np.isfinite(y).all()
    y2 = lc.api.conv_attention_torchstrong_nchw(x, w, None, 3, 2, device='cpu')
    assert np.allclose(y, y2)
    s = lc.conv_attention_resident_session(x, w, None, 3, 2, 1, 1, 1, 1, device='cpu')
    out = np.empty_like(y); s.start_into(x, out); assert np.allclose(out, y); s.close()
    """
    assert_clean(run_isolated(code))


@pytest.mark.parametrize("call", [
    "lc.Tensor.empty([2**31, 2**31])",
    "lc.Tensor.empty([2**62, 4])",
    "lc.Tensor.empty([2**63 - 1])",
    "lc.TensorView(lc.Tensor(np.ones(4, np.float32)), [2**40, 2**40], [0, 0])",
    "lc.TensorView(lc.Tensor(np.ones(4, np.float32)), [2**40, 3], [2**40, 1])",
    "lc.conv_attention_nchw(np.ones((1,1,4,4),np.float32), np.ones((1,1,3,3),np.float32), None,"
    " 2**31, 2**31, device='cpu')",
    "lc.conv2d_nchw(np.ones((1,1,4,4),np.float32), np.ones((1,1,3,3),np.float32), None, 1, 1,"
    " 2**30, 2**30, 'cpu')",
])
def test_size_overflow_is_a_value_error(call):
    code = f"""
    try:
        r = {call}
    except (ValueError, MemoryError) as e:
        assert str(e).startswith('['), str(e)
        print('raised', type(e).__name__, e)
    else:
        raise SystemExit('no error: ' + repr(getattr(r, 'shape', r)))
    """
    r = run_isolated(code)
    assert_clean(r)
    assert "raised" in r.stdout


def test_huge_valid_shape_is_a_memory_error():
    with pytest.raises(MemoryError, match=r"^\["):
        lc.Tensor.empty([2**45])
    lc.relu(np.ones(3, f32))  # still usable


def test_session_close_while_running_is_safe():
    code = """
    import threading
    a = np.random.rand(192, 192).astype(np.float32)
    for rep in range(20):
        s = lc.matmul2d_resident_session(a, a, device='cpu')
        out = np.empty((192, 192), np.float32)
        errors = []
        def worker():
            for _ in range(50):
                try:
                    s.run_into(a, a, out)
                except ValueError as e:
                    assert 'closed' in str(e)
                    return
        t = threading.Thread(target=worker); t.start()
        s.close()
        t.join()
    print('ok')
    """
    r = run_isolated(code)
    assert_clean(r)
    assert "ok" in r.stdout


# ---- silent wrong results ----------------------------------------------------------------------

def odd_outs(shape):
    """`out` arrays numpy would have to copy: byte-swapped and misaligned float32."""
    swapped = np.zeros(shape, dtype=">f4")
    buf = np.zeros(int(np.prod(shape)) * 4 + 1, np.uint8)
    misaligned = np.frombuffer(buf.data, dtype=f32, count=int(np.prod(shape)), offset=1).reshape(shape)
    return {"byteswapped": swapped, "misaligned": misaligned}


@pytest.mark.parametrize("kind", ["byteswapped", "misaligned"])
def test_odd_out_is_rejected_everywhere(kind, rng):
    a = rng.standard_normal((6, 6)).astype(f32)
    x = rng.standard_normal((1, 1, 6, 6)).astype(f32)
    w = rng.standard_normal((2, 1, 3, 3)).astype(f32)
    calls = []
    o = odd_outs((6, 6))[kind]
    calls.append(lambda: lc.matmul2d_into(a, a, o, "cpu"))
    o2 = odd_outs((8, 4))[kind]
    calls.append(lambda: lc.conv_attention_nchw_into(x, w, None, o2, 8, 4, device="cpu"))
    for make in (lambda: lc.matmul2d_resident_session(a, a, device="cpu"),):
        s = make()
        for meth in (lambda: s.start_into(a, a, o), lambda: s.run_into(a, a, o),
                     lambda: s.run_batch_sync_no_download_into(a, a, o, 2),
                     lambda: s.download_into(o)):
            calls.append(meth)
    s2 = lc.attention2d_resident_session(a, a, a, device="cpu")
    calls.append(lambda: s2.run_into(a, a, a, o))
    s3 = lc.conv_attention_resident_session(x, w, None, 8, 4, device="cpu")
    calls.append(lambda: s3.run_into(x, o2))
    for call in calls:
        with pytest.raises(ValueError, match=r"^\[.*cannot be written in place"):
            call()


@pytest.mark.parametrize("sq,sk_extra", [(3, 0), (7, 0), (33, 0), (300, 0)])
def test_causal_attention_masked_values_never_leak(sq, sk_extra, rng):
    d = 8
    q = rng.standard_normal((sq, d)).astype(f32)
    k = rng.standard_normal((sq, d)).astype(f32)
    v = rng.standard_normal((sq, d)).astype(f32)
    v[-1, :] = np.inf      # seen only by the last row
    v[-2, 0] = np.nan      # seen by the last two rows
    out = lc.attention2d(q, k, v, True, "cpu")
    ref = attention_ref(q, k, v, causal=True)
    finite = np.isfinite(ref)
    assert np.isfinite(out[:-2]).all()
    np.testing.assert_allclose(out[finite], ref[finite], rtol=1e-4, atol=1e-5)


def test_causal_attention_issue_example():
    q = k = np.ones((3, 2), f32)
    v = q.copy()
    v[2, 0] = np.inf
    np.testing.assert_array_equal(lc.attention2d(q, k, v, True, "cpu")[0], [1, 1])


def test_causal_attention_gemm_path_masked_inf(rng):
    # Large enough for the blocked/GEMM path: inf values of late keys must not reach early rows.
    s, d = 700, 64
    q = rng.standard_normal((s, d)).astype(f32)
    k = rng.standard_normal((s, d)).astype(f32)
    v = rng.standard_normal((s, d)).astype(f32)
    v[400:, 3] = np.inf
    out = lc.attention2d(q, k, v, True, "cpu")
    ref = attention_ref(q, k, v, causal=True)
    np.testing.assert_allclose(out[:400], ref[:400], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["matmul_out_is_b", "matmul_out_is_a", "attention_all_same",
                                  "vector_add_partial", "relu_inplace", "linear_out_is_x",
                                  "softmax_inplace", "layernorm_inplace"])
def test_out_aliasing_an_input_is_computed_correctly(case, rng):
    a = rng.standard_normal((5, 5)).astype(f32)
    b = rng.standard_normal((5, 5)).astype(f32)
    if case == "matmul_out_is_b":
        ref = a.astype(np.float64) @ b
        lc.matmul2d_into(a, b, b, "cpu")
        np.testing.assert_allclose(b, ref, rtol=1e-5, atol=1e-5)
    elif case == "matmul_out_is_a":
        ref = a.astype(np.float64) @ b
        lc.matmul2d_into(a, b, a, "cpu")
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5)
    elif case == "attention_all_same":
        x = a.copy()
        ref = attention_ref(x, x, x)
        lc.attention2d_into(x, x, x, x, False, "cpu")
        np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-6)
    elif case == "vector_add_partial":
        buf = rng.standard_normal(20).astype(f32)
        x, y = buf[:12].copy(), buf[4:16].copy()
        lc.vector_add_into(buf[:12], buf[4:16], buf[2:14], "cpu")
        np.testing.assert_allclose(buf[2:14], x + y, rtol=1e-6)
    elif case == "relu_inplace":
        ref = np.maximum(a, 0)
        lc.relu_into(a, a, "cpu")
        np.testing.assert_array_equal(a, ref)
    elif case == "linear_out_is_x":
        w = rng.standard_normal((5, 5)).astype(f32)
        ref = a.astype(np.float64) @ w.T
        lc.linear_into(a, w, None, a, device="cpu")
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-5)
    elif case == "softmax_inplace":
        e = np.exp(a - a.max(1, keepdims=True))
        ref = e / e.sum(1, keepdims=True)
        lc.softmax_into(a, a, "cpu")
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
    elif case == "layernorm_inplace":
        m = a.mean(1, keepdims=True)
        ref = (a - m) / np.sqrt(a.var(1, keepdims=True) + 1e-5)
        lc.layernorm_into(a, None, None, a, device="cpu")
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-5)


def test_overlapping_tensorview_copy(rng):
    base = rng.standard_normal(16).astype(f32)
    t = lc.Tensor(base.copy())
    expect = base.copy()
    expect[2:14] = base[0:12]
    dst = lc.TensorView(t, [12], [1], 2)
    src = lc.TensorView(t, [12], [1], 0)
    dst.copy_(src)
    np.testing.assert_array_equal(t.numpy(), expect)
    # Strided and reversed: dst[i] = src[11 - i] within the same buffer.
    t2 = lc.Tensor(base.copy())
    expect2 = base.copy()
    expect2[4:16] = base[0:12][::-1]
    lc.TensorView(t2, [12], [1], 4).copy_(lc.TensorView(t2, [12], [-1], 11))
    np.testing.assert_array_equal(t2.numpy(), expect2)


def test_pipelines_under_upload_never_follow_the_op_rules(rng):
    x = rng.standard_normal((4, 8)).astype(f32)
    w1 = rng.standard_normal((16, 8)).astype(f32)
    w2 = rng.standard_normal((8, 16)).astype(f32)
    g = np.ones(8, f32)
    pol = lc.ExecutionPolicy(device="auto", upload="never")
    single = lc.linear(x, w1, None, policy=pol)  # a single op runs on the CPU
    y = lc.api.ffn(x, w1, None, w2, None, policy=pol)
    h = lc.linear(x, w1, None, "gelu", "cpu")
    np.testing.assert_allclose(y, lc.linear(h, w2, None, device="cpu"), rtol=1e-5, atol=1e-5)
    z = lc.api.layernorm_linear(x, g, None, w1, policy=pol)
    assert z.shape == single.shape


# ---- exception types and messages --------------------------------------------------------------

A = np.ones((2, 2), f32)


@pytest.mark.parametrize("call,exc,fragment", [
    (lambda: lc.matmul2d_resident_session(A, A, upload=3), TypeError, "upload"),
    (lambda: lc.attention2d(A, A, A, scale="x"), TypeError, "scale"),
    (lambda: lc.attention2d_resident_session(A, A, A, scale="x"), TypeError, "scale"),
    (lambda: lc.set_cost_model({"h2d_gbps": "x"}), TypeError, "h2d_gbps"),
    (lambda: lc.set_cost_model({"cpu_gflops": 3}), TypeError, "cpu_gflops"),
    (lambda: lc.api.ffn(A, A, None, A, None, policy=3), TypeError, "policy"),
    (lambda: lc.api.layernorm_linear(A, None, None, A, policy="cpu"), TypeError, "policy"),
    (lambda: lc.vector_add(A, None), TypeError, "'b'"),
    (lambda: lc.vector_add(None, A), TypeError, "'a'"),
    (lambda: lc.attention2d(A, A, A, causal=3), TypeError, "causal"),
    (lambda: lc.linear(A, A, None, activation=1), TypeError, "activation"),
    (lambda: lc.layernorm(A, eps="x"), TypeError, "eps"),
    (lambda: lc.vector_scale(A, "x"), TypeError, "alpha"),
    (lambda: lc.conv2d_nchw(np.ones((1, 1, 4, 4), f32), np.ones((1, 1, 3, 3), f32), None, 1, 1,
                            2**40, 1, "cpu"), ValueError, "pad_h"),
    (lambda: lc.conv2d_nchw(np.ones((1, 1, 4, 4), f32), np.ones((1, 1, 3, 3), f32), None, 1.5),
     TypeError, "stride_h"),
    (lambda: lc.conv2d_nchw(np.ones((1, 1, 4, 4), f32), np.ones((1, 1, 3, 3), f32), None, 1, 1,
                            2**70, 1, "cpu"), ValueError, "pad_h"),
    (lambda: lc.ExecutionPolicy(upload=3), TypeError, "upload"),
    (lambda: lc.ExecutionPolicy(fusion="yes"), TypeError, "fusion"),
    (lambda: lc.attention2d(A, A, A, scale=float("inf")), ValueError, "scale"),
    (lambda: lc.attention2d_resident_session(A, A, A, scale=float("inf")), ValueError, "scale"),
    (lambda: lc.conv_attention_nchw(np.ones((1, 1, 4, 4), f32), np.ones((1, 1, 3, 3), f32), None,
                                    2, 2, scale=float("inf")), ValueError, "scale"),
    (lambda: lc.attention2d(A, A, A, scale=-1.0), ValueError, "scale"),
])
def test_wrong_argument_types_and_values(call, exc, fragment):
    with pytest.raises(exc) as ei:
        call()
    msg = str(ei.value)
    assert msg.startswith("["), msg
    assert fragment in msg, msg
    assert "bad_cast" not in msg


def test_execution_policy_equality_with_other_types():
    p = lc.ExecutionPolicy()
    assert (p == None) is False  # noqa: E711
    assert (p != None) is True  # noqa: E711
    assert p == lc.ExecutionPolicy()
    assert p != lc.ExecutionPolicy(device="cpu")
    assert p != "auto"
    assert len({p, lc.ExecutionPolicy()}) == 1


def test_relu_gelu_nan_inf_semantics():
    # relu: NaN propagates (torch.relu, np.maximum). gelu: follows torch (x * Phi-like(x)):
    # gelu(nan) = nan, gelu(+inf) = +inf, gelu(-inf) = nan (torch computes -inf * 0).
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -1.0, 2.0], f32)
    r = lc.relu(x, "cpu")
    np.testing.assert_array_equal(r, [np.nan, 0, np.inf, 0, 0, 0, 2])
    g = lc.gelu(x, "cpu")
    assert np.isnan(g[0]) and np.isnan(g[1]) and g[2] == np.inf
    # The fused epilogues (linear, conv) follow the same rules.
    lx = np.array([[np.nan, -np.inf, np.inf]], f32)
    eye = np.eye(3, dtype=f32)
    assert np.isnan(lc.linear(lx, eye, None, "relu", "cpu")[0, 0])
    # (linear's x @ I turns -inf/inf into nan through 0 * inf products, so only nan is checked.)
    xc = np.array([np.nan, -np.inf, np.inf, -2.0], f32).reshape(1, 1, 1, 4)
    wc = np.ones((1, 1, 1, 1), f32)
    rc = lc.conv2d_nchw(xc, wc, None, activation="relu", device="cpu").reshape(-1)
    np.testing.assert_array_equal(rc, [np.nan, 0, np.inf, 0])
    gc_ = lc.conv2d_nchw(xc, wc, None, activation="gelu", device="cpu").reshape(-1)
    assert np.isnan(gc_[0]) and np.isnan(gc_[1]) and gc_[2] == np.inf


# ---- concurrency -------------------------------------------------------------------------------

def hammer(s, b, n, threads, iters, close_early=False):
    """Threads calling s.run_into(fresh x, b, out) at once; returns the seeds that got a wrong
    result. close_early: close the session while they run (calls then raise "closed")."""
    bad = []

    def worker(seed):
        r = np.random.default_rng(seed)
        out = np.empty((n, n), f32)
        for _ in range(iters):
            x = r.standard_normal((n, n)).astype(f32)
            try:
                s.run_into(x, b, out)
            except ValueError as e:
                assert close_early and "closed" in str(e)
                return
            if not np.allclose(out, x @ b, rtol=1e-4, atol=1e-4):
                bad.append(seed)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    if close_early:
        s.close()  # waits for a call in flight
    for t in ts:
        t.join()
    return bad


@pytest.mark.parametrize("upload", ["always", "once"])
def test_session_shared_by_threads(upload, rng):
    b = rng.standard_normal((32, 32)).astype(f32)
    s = lc.matmul2d_resident_session(b, b, device="cpu", upload=upload)
    bad = hammer(s, b, 32, threads=8, iters=60)
    s.close()
    assert not bad, f"{len(bad)} wrong results out of 480"


@pytest.mark.not_sanitized("ASan's quarantine keeps freed memory (up to 256 MB), so RSS grows by design")
def test_soak_keeps_memory_flat():
    # The CPU half of benchmarks/python/soak_check.py (the GPU run does 100,000 calls per device).
    import pathlib
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "python" / "soak_check.py"
    r = subprocess.run([sys.executable, str(script), "--calls", "20000", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stdout


@pytest.mark.parametrize("call", [
    lambda: lc.matmul2d(A, A, devcie="cpu"),
    lambda: lc.vector_add(A),
    lambda: lc.attention2d(A, A),
    lambda: lc.conv2d_nchw(A),
    lambda: lc.matmul2d_resident_session(A, A, uplaod="once"),
])
def test_arity_and_keyword_errors_name_the_op(call):
    with pytest.raises(TypeError, match=r"^\[\w+\] invalid arguments: .*expected"):
        call()


# ---- the same classes on the GPU ---------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("sq,d", [(3, 2), (37, 16), (300, 64), (1000, 128)])
def test_cuda_causal_attention_masked_values_never_leak(sq, d, rng):
    q = rng.standard_normal((sq, d)).astype(f32)
    k = rng.standard_normal((sq, d)).astype(f32)
    v = rng.standard_normal((sq, d)).astype(f32)
    v[-1, :] = np.inf
    v[-2, 0] = np.nan
    out = lc.attention2d(q, k, v, True, "cuda")
    ref = attention_ref(q, k, v, causal=True)
    assert np.isfinite(out[:-2]).all()
    np.testing.assert_allclose(out[:-2], ref[:-2], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_out_aliasing_device_tensors(rng):
    a = rng.standard_normal((64, 64)).astype(f32)
    b = rng.standard_normal((64, 64)).astype(f32)
    ta, tb = lc.Tensor(a, device="cuda"), lc.Tensor(b, device="cuda")
    lc.matmul2d_into(ta, tb, tb)
    lc.synchronize()
    np.testing.assert_allclose(tb.numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    tq = lc.Tensor(a[:16, :32].copy(), device="cuda")
    ref = attention_ref(a[:16, :32], a[:16, :32], a[:16, :32])
    lc.attention2d_into(tq, tq, tq, tq, False)
    lc.synchronize()
    np.testing.assert_allclose(tq.numpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_relu_gelu_nan_inf_semantics():
    x = np.array([np.nan, -np.inf, np.inf, -2.0, 3.0], f32)
    np.testing.assert_array_equal(lc.relu(x, "cuda"), [np.nan, 0, np.inf, 0, 3])
    g = lc.gelu(x, "cuda")
    assert np.isnan(g[0]) and np.isnan(g[1]) and g[2] == np.inf
    xc = x.reshape(1, 1, 1, 5)
    wc = np.ones((1, 1, 1, 1), f32)
    rc = lc.conv2d_nchw(xc, wc, None, activation="relu", device="cuda").reshape(-1)
    np.testing.assert_array_equal(rc, [np.nan, 0, np.inf, 0, 3])


@pytest.mark.gpu
def test_cuda_session_fresh_inputs_and_threads(rng):
    a = rng.standard_normal((48, 48)).astype(f32)
    b = rng.standard_normal((48, 48)).astype(f32)
    out = np.empty((48, 48), f32)
    with lc.matmul2d_resident_session(a, b, device="cuda") as s:
        a2 = a * 3
        s.run_into(a2, b, out)
        np.testing.assert_allclose(out, a2 @ b, rtol=1e-4, atol=1e-4)
    s = lc.matmul2d_resident_session(a, b, device="cuda", upload="always")
    assert not hammer(s, b, 48, threads=6, iters=40, close_early=True)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("sq,sk", [(1, 1), (1, 97), (4, 5000), (70, 300)])
def test_attention_non_finite_scores_give_nan_rows(device, sq, sk, rng):
    # Found by the device fuzz run (2026-12-01): a query row whose scores are all NaN, or all
    # -inf (q = inf against negative keys), gave 0 on CUDA; the softmax of such a row is NaN
    # (torch gives NaN), and rows with finite scores are untouched. sk = 5000 exercises the
    # split-keys path of the CUDA kernel (its combine step).
    d = 8
    q = rng.standard_normal((sq, d)).astype(f32)
    k = rng.standard_normal((sk, d)).astype(f32)
    v = rng.standard_normal((sk, d)).astype(f32)
    q[0, 0] = np.nan
    if sq > 1:
        q[1, :] = 0
        q[1, 0] = np.inf
        k[:, 0] = -np.abs(k[:, 0]) - 0.5  # every score of row 1 is -inf
    out = lc.attention2d(q, k, v, False, device)
    assert np.isnan(out[0]).all()
    if sq > 1:
        assert np.isnan(out[1]).all()
        ref = attention_ref(q[2:], k, v)
        np.testing.assert_allclose(out[2:], ref, rtol=1e-4, atol=1e-5)

