"""CUDA attention in float16 / bfloat16 through cuDNN's fused flash attention (the cuDNN
frontend's SDPA graphs, src/backends/cuda/attention_cudnn.cpp) and the fallbacks to our kernel.

Which implementation ran is read from lc.last_op_report()["impl"] (and the trace's "impl"):
"cudnn" or "own". Where this build has the frontend (build_info()["cuda_cudnn_frontend"]) and
cuDNN loads (device_fingerprint), the cases of CUDNN_CASES must run on cuDNN; every case is
compared with a float64 reference computed from the rounded inputs (relative Frobenius error
1e-2 for out and 1e-4 for lse, as test_attention_mha.py; gradients 2e-2: cuDNN rounds P and dS
to the 16-bit type before its products). Outputs of the _into forms are poisoned with NaN.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lightning_core as lc
from parity import rel_error
from test_attention_mha import check, check_lse, f64, np_dtype, ref_mha, rnd

DTYPES16 = ["float16", "bfloat16"]
GRAD_TOL = 2e-2


def cudnn_expected() -> bool:
    """True when this build compiled the frontend in and cuDNN loads on this machine."""
    if lc.build_info().get("cuda_cudnn_frontend", "no") == "no":
        return False
    fp = lc.device_fingerprint("cuda")
    return ";cudnn=" in fp and "cudnn=unavailable" not in fp


@pytest.fixture
def impl():
    """Sets the attention implementation for one test and restores the previous choice."""
    before = lc.attention_impl()
    yield lc.set_attention_impl
    lc.set_attention_impl(before)


def last_impl() -> str:
    return lc.last_op_report()["impl"]


def assert_ran(want: str, where: str):
    got = last_impl()
    if want == "cudnn" and not cudnn_expected():
        want = "own"  # no frontend in this build, or no cuDNN here: our kernel is the only one
    assert got == want, (f"{where}: ran {got!r}, expected {want!r} (frontend "
                         f"{lc.build_info().get('cuda_cudnn_frontend')}; LC_LOG_LEVEL=INFO logs "
                         "why cuDNN declined the first call it declined, DEBUG every one)")


TUNE_OP = "attention_mha.cuda_impl"


def tuned_entry(dtype, case, with_lse=False):
    """The auto-tune cache entry the "auto" forward stored for this contiguous case, or None.
    Its shapes field is the graph key: 0, dtype, B, H, Hk, Sq, Sk, D, Dv, 9 strides, causal,
    mask kind, scale bits, with-lse, device (attention_cudnn.cpp)."""
    b, h, hk, sq, sk, d, dv, causal = case
    for e in lc.autotune_cache_entries():
        if e.get("op") != TUNE_OP or e.get("dtype") != dtype:
            continue
        f = [int(x) for x in e["shapes"].strip(",").split(",")]
        if f[0] == 0 and f[2:9] == [b, h, hk, sq, sk, d, dv] and f[18] == int(causal) \
                and f[21] == int(with_lse):
            return e
    return None


def assert_auto(dtype, case, where):
    """What "auto" must have run for a contiguous forward case: our kernel below the size rule;
    above it the auto-tuner's stored choice for the shape when it measured one, else cuDNN (our
    flash decoding for decode shapes: sq <= 8 against sk >= 256 keys)."""
    b, h, hk, sq, sk, d, dv, causal = case
    got = last_impl()
    if b * h * sq * sk * (d + dv) < 1 << 22 or not cudnn_expected():
        assert got == "own", f"{where}: ran {got!r}"
        return
    e = tuned_entry(dtype, case) if lc.autotune_enabled() else None
    if e is None:
        # untimed: our flash decoding for decode shapes (attention_cudnn.cpp, decide), else cuDNN
        decode = sq <= 8 and sk >= 256 and d % 8 == 0 and dv % 8 == 0
        want = "own" if decode else "cudnn"
        assert got == want, f"{where}: ran {got!r} and no tuned entry"
        return
    assert got == e["choice"], (where, got, e)
    own, cud = float(e["own_us"]), float(e["cudnn_us"])
    assert (e["choice"] == "own") == (own < 0.9 * cud), e


def ref_grads(dout, q, k, v, causal=False, scale=None):
    """float64 (dq, dk, dv) of attention without a mask (every row sees a key), vectorised."""
    dout, q, k, v = (f64(x) for x in (dout, q, k, v))
    B, H, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    g = H // Hk
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    kr, vr = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, kr) * scale
    if causal:
        s = np.where(np.arange(Sk)[None, :] <= np.arange(Sq)[:, None] + (Sk - Sq), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    out = p @ vr
    dp = np.einsum("bhic,bhjc->bhij", dout, vr)
    ds = p * (dp - (dout * out).sum(axis=-1, keepdims=True))
    dq = scale * ds @ kr
    dk = scale * np.einsum("bhij,bhid->bhjd", ds, q)
    dv = np.einsum("bhij,bhic->bhjc", p, dout)
    fold = lambda x: x.reshape(B, Hk, g, Sk, x.shape[-1]).sum(axis=2)  # noqa: E731
    return dq, fold(dk), fold(dv)


# (B, H, Hk, Sq, Sk, D, Dv, causal): the shapes cuDNN must take. The transformer shape,
# GQA 4:1 and MQA, causal with Sq == Sk (top-left = bottom-right) and Sq < Sk (bottom-right),
# D = 128, odd S (77) and S = 1, single-token decode against a long K/V.
CUDNN_CASES = {
    "B4H12S512D64": (4, 12, 12, 512, 512, 64, 64, False),
    "B4H12S512D64-causal": (4, 12, 12, 512, 512, 64, 64, True),
    "gqa16:4-causal": (2, 16, 4, 256, 256, 64, 64, True),
    "mqa8:1": (2, 8, 1, 128, 192, 64, 64, False),
    "causal-sq<sk": (2, 8, 8, 100, 300, 64, 64, True),
    "D128-causal": (2, 8, 8, 256, 256, 128, 128, True),
    "oddS77": (3, 4, 4, 77, 77, 64, 64, False),
    "oddS77-causal": (3, 4, 2, 77, 77, 64, 64, True),
    "S1": (4, 12, 12, 1, 1, 64, 64, False),
    "decode-sq1": (2, 8, 2, 1, 333, 128, 128, False),
    "decode-sq1-causal": (1, 4, 4, 1, 40, 64, 64, True),
}


def inputs(rng, dtype, case):
    b, h, hk, sq, sk, d, dv, _ = case
    return rnd(rng, (b, h, sq, d), dtype), rnd(rng, (b, hk, sk, d), dtype), rnd(rng, (b, hk, sk, dv), dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES16)
@pytest.mark.parametrize("name", list(CUDNN_CASES))
def test_cudnn_forward_and_lse(dtype, name, impl, rng):
    impl("cudnn")
    case = CUDNN_CASES[name]
    b, h, hk, sq, sk, d, dv, causal = case
    q, k, v = inputs(rng, dtype, case)
    ref, ref_lse = ref_mha(q, k, v, causal=causal)
    out, lse = lc.attention(q, k, v, causal=causal, return_lse=True, device="cuda")
    assert_ran("cudnn", name)
    assert out.dtype == np_dtype(dtype) and lse.dtype == np.float32 and lse.shape == (b, h, sq)
    check(out, ref, dtype, f"{name} out")
    check_lse(lse, ref_lse, f"{name} lse", tol=1e-4)
    # the graph without Stats (no lse), into a poisoned out
    o = np.full((b, h, sq, dv), np.nan, dtype=np_dtype(dtype))
    assert lc.attention_into(q, k, v, o, causal=causal, device="cuda") is o
    assert_ran("cudnn", f"{name} (no lse)")
    check(o, ref, dtype, f"{name} into")
    # "auto": our kernel for the tiny S = 1 cases (below its size rule), else cuDNN unless the
    # auto-tuner measured ours faster for the shape (twice: the second call uses the choice)
    impl("auto")
    for rep in range(2):
        o3 = np.full((b, h, sq, dv), np.nan, dtype=np_dtype(dtype))
        lc.attention_into(q, k, v, o3, causal=causal, device="cuda")
        assert_auto(dtype, case, f"{name} auto #{rep}")
        check(o3, ref, dtype, f"{name} auto #{rep}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES16)
def test_cudnn_resident_bshd_views_and_trace(dtype, impl, rng):
    """q/k/v as [B, S, H, D] buffers read as [B, H, S, D] views (what transformers pass), on the
    device; lse stays on the device; the trace records the implementation."""
    impl("cudnn")
    b, s, h, hk, d = 2, 160, 8, 2, 64
    qp, kp, vp = rnd(rng, (b, s, h, d), dtype), rnd(rng, (b, s, hk, d), dtype), rnd(rng, (b, s, hk, d), dtype)
    tq, tk, tv = (lc.Tensor(x, device="cuda", dtype=dtype) for x in (qp, kp, vp))
    vq = tq._view([b, h, s, d], [s * h * d, d, h * d, 1], 0)
    vk = tk._view([b, hk, s, d], [s * hk * d, d, hk * d, 1], 0)
    vv = tv._view([b, hk, s, d], [s * hk * d, d, hk * d, 1], 0)
    lc.runtime_trace_clear()
    lc.runtime_trace_enable(True)
    try:
        out, lse = lc.attention(vq, vk, vv, causal=True, return_lse=True, device="cuda")
        lc.synchronize()
    finally:
        lc.runtime_trace_enable(False)
    ops = [e for e in lc.runtime_trace_events() if e["kind"] == "op" and e["op"] == "attention"]
    lc.runtime_trace_clear()
    assert ops, "no attention event traced"
    want = "cudnn" if cudnn_expected() else "own"
    assert ops[-1]["impl"] == want, ops[-1]
    assert_ran("cudnn", "bshd views")
    assert out.device == "cuda" and lse.device == "cuda"
    ref, ref_lse = ref_mha(*(x.transpose(0, 2, 1, 3) for x in (qp, kp, vp)), causal=True)
    check(out, ref, dtype, "bshd views")
    check_lse(lse, ref_lse, "bshd lse", tol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES16)
def test_own_is_forced_by_the_knob(dtype, impl, rng):
    impl("own")
    case = CUDNN_CASES["B4H12S512D64-causal"]
    q, k, v = inputs(rng, dtype, case)
    ref, ref_lse = ref_mha(q, k, v, causal=True)
    out, lse = lc.attention(q, k, v, causal=True, return_lse=True, device="cuda")
    assert last_impl() == "own"
    check(out, ref, dtype, "own")
    check_lse(lse, ref_lse, "own lse", tol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES16)
def test_fallbacks_run_our_kernel_even_when_cudnn_is_forced(dtype, impl, rng):
    """Calls outside cuDNN's set run our kernel with our semantics (impl "own")."""
    impl("cudnn")
    b, h, s, d = 2, 4, 96, 64
    q, k, v = rnd(rng, (b, h, s, d), dtype), rnd(rng, (b, h, s, d), dtype), rnd(rng, (b, h, s, d), dtype)

    # key-padding mask with a fully masked batch row: zeros and lse = -inf
    mask = rng.random((b, s)) < 0.6
    mask[1, :] = False
    ref, ref_lse = ref_mha(q, k, v, mask=mask)
    out, lse = lc.attention(q, k, v, mask=mask, return_lse=True, device="cuda")
    assert last_impl() == "own", "key-padding mask"
    check(out, ref, dtype, "key padding")
    check_lse(lse, ref_lse, "key padding lse", tol=1e-4)

    # additive mask
    add = rnd(rng, (b, 1, 1, s), dtype)
    ref, _ = ref_mha(q, k, v, mask=add)
    out = lc.attention(q, k, v, mask=add, device="cuda")
    assert last_impl() == "own", "additive mask"
    check(out, ref, dtype, "additive", tol=2e-2)

    # causal with Sq > Sk: the first rows see no key -> out 0, lse -inf (bottom-right)
    q2 = rnd(rng, (1, 4, 50, d), dtype)
    k2, v2 = rnd(rng, (1, 4, 20, d), dtype), rnd(rng, (1, 4, 20, d), dtype)
    ref, ref_lse = ref_mha(q2, k2, v2, causal=True)
    out, lse = lc.attention(q2, k2, v2, causal=True, return_lse=True, device="cuda")
    assert last_impl() == "own", "causal sq > sk"
    check(out, ref, dtype, "causal sq>sk")
    check_lse(lse, ref_lse, "causal sq>sk lse", tol=1e-4)
    assert not np.any(f64(out)[:, :, :30]) and np.all(np.isneginf(f64(lse)[:, :, :30]))

    # head dims that are not multiples of 8
    q3, k3, v3 = rnd(rng, (2, 3, 40, 12), dtype), rnd(rng, (2, 3, 50, 12), dtype), rnd(rng, (2, 3, 50, 20), dtype)
    out = lc.attention(q3, k3, v3, device="cuda")
    assert last_impl() == "own", "d = 12"
    check(out, ref_mha(q3, k3, v3)[0], dtype, "d=12")

    # a view one element off 16-byte alignment
    n = b * h * s * d
    buf = rnd(rng, (n + 1,), dtype)
    t = lc.Tensor(buf, device="cuda", dtype=dtype)
    qv = t._view([b, h, s, d], [h * s * d, s * d, d, 1], 1)
    out = lc.attention(qv, qv, qv, device="cuda")
    assert last_impl() == "own", "misaligned view"
    x = buf[1:].reshape(b, h, s, d)
    check(out, ref_mha(x, x, x)[0], dtype, "misaligned")

    # row strides that are not multiples of 8 elements (16 bytes): [B, H, S, 60] in a 60-wide
    # buffer read with d = 56 columns
    buf2 = rnd(rng, (b, h, s, 60), dtype)
    t2 = lc.Tensor(buf2, device="cuda", dtype=dtype)
    qv2 = t2._view([b, h, s, 56], [h * s * 60, s * 60, 60, 1], 0)
    out = lc.attention(qv2, qv2, qv2, device="cuda")
    assert last_impl() == "own", "row stride 60"
    x2 = buf2[..., :56]
    check(out, ref_mha(x2, x2, x2)[0], dtype, "row stride 60")

    # zero keys: zeros and lse = -inf
    out, lse = lc.attention(q, k[:, :, :0], v[:, :, :0], return_lse=True, device="cuda")
    assert not np.any(f64(out)) and np.all(np.isneginf(f64(lse)))

    # float32 has only our kernel
    q4 = q.astype(np.float32)
    out = lc.attention(q4, q4, q4, device="cuda")
    assert last_impl() == "own", "float32"
    check(out, ref_mha(q4, q4, q4)[0], "float32", "float32")


@pytest.mark.gpu
def test_auto_rule_small_shapes_run_our_kernel(impl, rng):
    impl("auto")
    q = rnd(rng, (1, 2, 8, 64), "bfloat16")
    lc.attention(q, q, q, device="cuda")
    assert last_impl() == "own"
    q = rnd(rng, (4, 12, 512, 64), "bfloat16")
    lc.attention(q, q, q, device="cuda")
    assert_auto("bfloat16", (4, 12, 12, 512, 512, 64, 64, False), "auto, B4 H12 S512 D64")


@pytest.mark.gpu
def test_auto_tuner_persists_its_choice(tmp_path):
    """A fresh cache: the first "auto" call of a shape measures both and stores the choice; a
    new process reuses the stored choice without measuring (an entry edited to "own" makes it
    run our kernel)."""
    if not cudnn_expected():
        pytest.skip("no cuDNN flash attention in this build or on this machine")
    body = """
        import os
        lc.set_attention_impl("auto")
        q = np.random.rand(2, 8, 256, 64).astype(np.float16)
        before = lc.autotune_measurement_count()
        lc.attention(q, q, q, device="cuda")
        out["measured"] = lc.autotune_measurement_count() - before
        out["impl"] = lc.last_op_report()["impl"]
        out["entries"] = [e for e in lc.autotune_cache_entries() if e["op"] == "attention_mha.cuda_impl"]
    """
    env = {"LIGHTNING_CORE_CACHE_DIR": str(tmp_path), "LC_AUTOTUNE": "1", "LC_CALIBRATE": "0"}
    first = _child(None, body, env)
    assert first["measured"] >= 1 and len(first["entries"]) == 1, first
    entry = first["entries"][0]
    assert first["impl"] == entry["choice"] and entry["choice"] in ("cudnn", "own"), first
    second = _child(None, body, env)
    assert second["measured"] == 0 and second["impl"] == entry["choice"], second
    _child(None, f"""
        lc.autotune_record("attention_mha.cuda_impl", {entry["shapes"]!r}, "own", "cuda",
                           "float16", own_us="1", cudnn_us="2")
    """, env)
    third = _child(None, body, env)
    assert third["measured"] == 0 and third["impl"] == "own", third


def cuda_backward_enabled(rng) -> bool:
    """Whether lc.attention_backward accepts device="cuda" in this build (the op's CUDA entry
    comes with the CUDA backward kernel; before it, the call is refused)."""
    q = rnd(rng, (1, 1, 8, 64), "bfloat16")
    out, lse = lc.attention(q, q, q, return_lse=True, device="cpu")
    try:
        lc.attention_backward(q, q, q, q, out, lse, device="cuda")
    except (ValueError, RuntimeError) as e:
        if "not implemented" in str(e):
            return False
        raise
    return True


BWD_CASES = {k: CUDNN_CASES[k] for k in
             ["B4H12S512D64", "B4H12S512D64-causal", "gqa16:4-causal", "mqa8:1", "causal-sq<sk",
              "D128-causal", "oddS77", "oddS77-causal", "S1", "decode-sq1"]}


def check_grad(got, ref, what):
    """Relative error against the float64 reference; where the exact gradient is 0 (one visible
    key: softmax is 1 and dq = scale * (dP - D) k vanishes), the result is the rounding noise of
    dP - D, so it is checked in absolute terms against the O(1) size of the terms instead."""
    if np.linalg.norm(ref.ravel()) < 1e-9:
        worst = float(np.abs(got).max()) if got.size else 0.0
        assert worst <= 2e-3, f"{what}: exact gradient 0, got max |g| = {worst:.3e}"
        return
    err = rel_error(got, ref)
    assert err <= GRAD_TOL, f"{what}: relative error {err:.3e} > {GRAD_TOL:.0e}"


# Single-row queries: cuDNN's backward support for them varies by version; either
# implementation is accepted there, the gradients are checked all the same.
BWD_EITHER = {"S1", "decode-sq1"}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES16)
@pytest.mark.parametrize("name", list(BWD_CASES))
def test_cudnn_backward(dtype, name, impl, rng):
    if not cuda_backward_enabled(rng):
        pytest.skip("lc.attention_backward has no CUDA entry in this build yet")
    impl("cudnn")
    case = BWD_CASES[name]
    b, h, hk, sq, sk, d, dv, causal = case
    q, k, v = inputs(rng, dtype, case)
    dout = rnd(rng, (b, h, sq, dv), dtype)
    out, lse = lc.attention(q, k, v, causal=causal, return_lse=True, device="cuda")
    dq, dk, dvv = lc.attention_backward(dout, q, k, v, out, lse, causal=causal, device="cuda")
    if name in BWD_EITHER:
        assert last_impl() in ("cudnn", "own"), last_impl()
    else:
        assert_ran("cudnn", f"{name} backward")
    rq, rk, rv = ref_grads(dout, q, k, v, causal=causal)
    for got, ref, what in ((dq, rq, "dq"), (dk, rk, "dk"), (dvv, rv, "dv")):
        assert f64(got).shape == ref.shape, (what, f64(got).shape, ref.shape)
        assert not np.isnan(f64(got)).any(), f"{name} {what}: NaN"
        check_grad(f64(got), ref, f"{name} {what}")
    # poisoned _into outputs are fully written
    gq = np.full(q.shape, np.nan, dtype=q.dtype)
    gk = np.full(k.shape, np.nan, dtype=k.dtype)
    gv = np.full(v.shape, np.nan, dtype=v.dtype)
    lc.attention_backward_into(dout, q, k, v, out, lse, gq, gk, gv, causal=causal, device="cuda")
    for got, ref, what in ((gq, rq, "dq"), (gk, rk, "dk"), (gv, rv, "dv")):
        assert not np.isnan(f64(got)).any(), f"{name} into {what}: unwritten"
        check_grad(f64(got), ref, f"{name} into {what}")


def test_knob_values_and_errors(impl):
    assert lc.attention_impl() in ("auto", "cudnn", "own")
    for name in ("own", "cudnn", "auto"):
        impl(name)
        assert lc.attention_impl() == name
    with pytest.raises(ValueError, match="auto.*cudnn.*own"):
        lc.set_attention_impl("flash")


def test_cpu_ops_report_no_impl(rng):
    q = rnd(rng, (1, 2, 8, 16), "float32")
    lc.attention(q, q, q, device="cpu")
    assert lc.last_op_report()["impl"] == ""


def _child(env_value: str | None, body: str, extra_env: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("LC_ATTENTION_IMPL", None)
    env.update(extra_env or {})
    if env_value is not None:
        env["LC_ATTENTION_IMPL"] = env_value
    code = "import json, warnings\nimport numpy as np\nimport lightning_core as lc\nout = {}\n" + \
        textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_environment_knob_is_read_once():
    assert _child("own", 'out["impl"] = lc.attention_impl()')["impl"] == "own"
    assert _child("cudnn", 'out["impl"] = lc.attention_impl()')["impl"] == "cudnn"
    assert _child(None, 'out["impl"] = lc.attention_impl()')["impl"] == "auto"
    res = _child("fastest", """
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            out["impl"] = lc.attention_impl()
        out["warned"] = any("LC_ATTENTION_IMPL" in str(x.message) for x in w)
    """)
    assert res == {"impl": "auto", "warned": True}


@pytest.mark.gpu
def test_cudnn_loads_on_first_attention_not_at_import():
    res = _child("cudnn", """
        def mapped():
            with open("/proc/self/maps") as f:
                return sorted({l.split()[-1] for l in f if "libcudnn" in l})
        out["import"] = mapped()
        q = np.random.rand(2, 4, 128, 64).astype(np.float16)
        lc.attention(q, q, q, device="cuda")
        lc.synchronize()
        out["impl"] = lc.last_op_report()["impl"]
        out["after"] = mapped()
    """)
    assert res["import"] == [], res
    if cudnn_expected():
        assert res["impl"] == "cudnn", res
        assert any("libcudnn" in p for p in res["after"]), res
    else:
        assert res["impl"] == "own", res
