"""The attention sessions' training surface (attention2d_resident_session and the batched
attention_resident_session: forward, forward_into, train_step, parameters) and the functional
lc.attention_train_step, on the CPU, against float64 numpy references.

The reference (test_attention_backward.ref_train_step) computes out, the MSE loss and the SGD
update in float64 from the explicit softmax Jacobian. Per step, the session's parameters before
the step feed the reference, and the step taken, (x_before - x_after) / lr, is compared with the
reference gradient: float32 rounds x_after to ~6e-8 |x| next to steps of ~1e-4, hence 1e-3
relative (as test_attention_backward.py); float64 sessions match a float64 numpy loop of several
steps to 1e-10. GPU variants live in test_attention_backward_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import lightning_core as lc
from parity import rel_error
from test_attention_backward import TOL, f64, np_dtype, ref_train_step, rnd


def numpy_loop(q, k, v, target, lr, steps, causal=False, mask=None):
    """float64 numpy: `steps` SGD steps; returns (losses, q, k, v)."""
    q, k, v = (f64(x) for x in (q, k, v))
    losses = []
    for _ in range(steps):
        _, loss, q, k, v = ref_train_step(q, k, v, target, lr, causal=causal, mask=mask)
        losses.append(loss)
    return losses, q, k, v


def check_step(before, after, ref, lr, dtype, where):
    for name, x0, x1, r in zip("qkv", before, after, ref[2:]):
        x0, x1 = f64(x0), f64(x1)
        step, ref_step = (x0 - x1) / lr, (x0 - r) / lr
        err = rel_error(step, ref_step)
        tol = 1e-3 if dtype == "float32" else 1e-10
        assert err <= tol, f"{where} {name}: step error {err:.2e}"


@pytest.mark.parametrize("Sq,Sk", [(13, 17), (17, 13), (9, 9)])
def test_attention2d_session_forward_and_train_steps_match_numpy(Sq, Sk, rng):
    """attention2d's causal is top-left aligned (query i sees keys j <= i), for its forward and
    its train_step alike; the numpy reference gets that rule as a boolean mask."""
    D, Dv = 8, 6
    tl = (np.arange(Sk)[None, :] <= np.arange(Sq)[:, None])[None, None]
    q, k, v = rnd(rng, (Sq, D), "float32"), rnd(rng, (Sk, D), "float32"), rnd(rng, (Sk, Dv), "float32")
    target = rnd(rng, (Sq, Dv), "float32")
    with lc.attention2d_resident_session(q, k, v, True, "cpu") as s:
        assert isinstance(s, lc.AttentionTrainableSession)
        first = ref_train_step(q[None, None], k[None, None], v[None, None], target[None, None], 0.5,
                               mask=tl)
        out = s.forward()
        assert out.dtype == np.float32 and out.shape == (Sq, Dv)
        assert rel_error(f64(out), first[0][0, 0]) <= 1e-5
        into = np.full((Sq, Dv), np.nan, np.float32)
        assert s.forward_into(into) is into
        np.testing.assert_array_equal(into, out)
        for step in range(3):
            before = s.parameters()
            ref = ref_train_step(*(x[None, None] for x in before), target[None, None], 0.5,
                                 mask=tl)
            out, loss = s.train_step(target, 0.5)
            assert rel_error(f64(out), ref[0][0, 0]) <= 1e-5, step
            assert abs(loss - ref[1]) <= 1e-5 * ref[1], (step, loss, ref[1])
            after = s.parameters()
            check_step([x[None, None] for x in before], [x[None, None] for x in after], ref, 0.5,
                       "float32", f"step {step}")
        # the caller's arrays are untouched (upload="once": the session trains its own copies)
        np.testing.assert_array_equal(s.parameters()[2].shape, v.shape)
        assert not np.array_equal(s.parameters()[0], q)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_batched_session_one_step_per_dtype(dtype, rng):
    B, H, Hk, Sq, Sk, D = 2, 4, 2, 7, 9, 8
    mask = rng.random((B, Sk)) > 0.3
    mask[:, 0] = True
    q, k, v = rnd(rng, (B, H, Sq, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype), rnd(rng, (B, Hk, Sk, D), dtype)
    target = rnd(rng, (B, H, Sq, D), dtype)
    with lc.attention_resident_session(q, k, v, True, "cpu", mask=mask) as s:
        assert s.dtype == dtype and s.has_mask and s.causal
        ref = ref_train_step(q, k, v, target, 0.5, causal=True, mask=mask)
        out, loss = s.train_step(target, 0.5)
        assert out.dtype == np_dtype(dtype)
        assert rel_error(f64(out), ref[0]) <= TOL[dtype]
        assert abs(loss - ref[1]) <= 10 * TOL[dtype] * ref[1]
        params = s.parameters()
        assert all(p.dtype == np_dtype(dtype) for p in params)
        if dtype == "float32":
            check_step((q, k, v), params, ref, 0.5, dtype, "batched f32")
        # forward() sees the updated parameters
        want = lc.attention(*params, causal=True, mask=mask, device="cpu")
        np.testing.assert_array_equal(s.forward(), want)


def test_batched_float64_session_several_steps_match_numpy_loop(rng):
    B, H, Hk, Sq, Sk, D, Dv = 2, 6, 2, 5, 8, 4, 3
    mask = rng.random((B, Sk)) > 0.3
    mask[:, -1] = True
    q, k, v = rnd(rng, (B, H, Sq, D), "float64"), rnd(rng, (B, Hk, Sk, D), "float64"), rnd(rng, (B, Hk, Sk, Dv), "float64")
    target = rnd(rng, (B, H, Sq, Dv), "float64")
    losses, rq, rk, rv = numpy_loop(q, k, v, target, 0.3, 5, causal=True, mask=mask)
    with lc.attention_resident_session(q, k, v, causal=True, mask=mask) as s:
        assert s.device == "cpu"  # float64 runs on the CPU
        got = [s.train_step(target, 0.3)[1] for _ in range(5)]
        for a, b in zip(got, losses):
            assert abs(a - b) <= 1e-12 * b, (got, losses)
        assert got[-1] < got[0]
        for name, x, r in zip("qkv", s.parameters(), (rq, rk, rv)):
            assert np.abs(x - r).max() <= 1e-10 * np.abs(r).max(), name


def test_functional_step_and_session_share_one_implementation(rng):
    """The same step through lc.attention_train_step and a session gives identical results."""
    B, H, Hk, S, D = 1, 4, 1, 11, 8
    q, k, v = rnd(rng, (B, H, S, D), "float32"), rnd(rng, (B, Hk, S, D), "float32"), rnd(rng, (B, Hk, S, D), "float32")
    target = rnd(rng, (B, H, S, D), "float32")
    with lc.attention_resident_session(q, k, v, True, "cpu") as s:
        so, sl = s.train_step(target, 0.25)
        params = s.parameters()
    fq, fk, fv = q.copy(), k.copy(), v.copy()
    fo, fl = lc.attention_train_step(fq, fk, fv, target, 0.25, causal=True, device="cpu")
    assert isinstance(fo, np.ndarray)
    np.testing.assert_array_equal(so, fo)
    assert sl == fl
    for x, y in zip(params, (fq, fk, fv)):
        np.testing.assert_array_equal(x, y)


def test_session_runs_use_the_trained_parameters_and_inputs_still_rebind(rng):
    q, k, v = (rnd(rng, (1, 2, 6, 4), "float32") for _ in range(3))
    target = rnd(rng, (1, 2, 6, 4), "float32")
    out = np.empty((1, 2, 6, 4), np.float32)
    with lc.attention_resident_session(q, k, v, device="cpu") as s:
        s.start_into(q, k, v, out)
        np.testing.assert_array_equal(out, lc.attention(q, k, v, device="cpu"))
        s.train_step(target, 1.0)
        s.run_into(q, k, v, out)  # the bound objects: the resident (trained) ones are used
        np.testing.assert_array_equal(out, lc.attention(*s.parameters(), device="cpu"))
        q2 = q.copy()
        s.run_into(q2, k, v, out)  # another q object: uploaded
        np.testing.assert_array_equal(s.parameters()[0], q2)


def test_train_step_into_out_matches_the_returned_copy(rng):
    """train_step(target, lr, out=...) writes every element of a poisoned numpy out or lc.Tensor
    and gives the same result and loss as the copying form; a wrong out raises before the step
    (nothing written, parameters unchanged). The loss spans several reduction blocks."""
    shape = (2, 3, 170, 67)  # 68,340 outputs: more than one 65,536-element block of the loss
    q, k, v, target = (rnd(rng, shape, "float32") for _ in range(4))
    with lc.attention_resident_session(q, k, v, device="cpu") as a, \
            lc.attention_resident_session(q, k, v, device="cpu") as b:
        want, want_loss = a.train_step(target, 0.2)
        out = np.full(shape, np.nan, np.float32)
        got, loss = b.train_step(target, 0.2, out=out)
        assert got is out
        np.testing.assert_array_equal(out, want)
        assert loss == want_loss
        ref = ref_train_step(q, k, v, target, 0.2)
        assert abs(loss - ref[1]) <= 1e-5 * ref[1]
        t = lc.Tensor(np.full(shape, np.nan, np.float32))
        got2, loss2 = b.train_step(target, 0.2, out=t)
        want2, want_loss2 = a.train_step(target, 0.2)
        assert got2 is t
        np.testing.assert_array_equal(t.numpy(), want2)
        assert loss2 == want_loss2
        before = b.parameters()
        bad = np.full((2, 3, 170, 66), np.nan, np.float32)
        with pytest.raises(ValueError, match=r"attention_resident_session.train_step"):
            b.train_step(target, 0.2, out=bad)
        assert np.isnan(bad).all()
        with pytest.raises(TypeError, match=r"attention_resident_session.train_step"):
            b.train_step(target, 0.2, out=np.zeros(shape, np.float64))
        for x0, x1 in zip(before, b.parameters()):
            np.testing.assert_array_equal(x0, x1)


def test_train_step_memory_is_resident_and_freed(rng):
    q, k, v = (rnd(rng, (2, 3, 10, 8), "float32") for _ in range(3))
    target = rnd(rng, (2, 3, 10, 8), "float32")
    base = lc._lightning_core._session_live_bytes()
    s = lc.attention_resident_session(q, k, v, device="cpu")
    held = s.resident_bytes
    s.train_step(target, 0.1)
    grown = s.resident_bytes
    assert grown > held  # lse, diff, dq, dk, dv
    s.train_step(target, 0.1)
    assert s.resident_bytes == grown  # nothing new per step
    assert s.stats["launches"] == 2
    s.close()
    assert s.resident_bytes == 0 and lc._lightning_core._session_live_bytes() == base


def test_session_bad_inputs(rng):
    q, k, v = (rnd(rng, (1, 2, 4, 4), "float32") for _ in range(3))
    target = np.zeros((1, 2, 4, 4), np.float32)
    op = "attention_resident_session"
    with pytest.raises(TypeError, match="float16"):
        lc.attention_resident_session(q, k.astype(np.float16), v, device="cpu")
    with pytest.raises(ValueError, match="attention"):
        lc.attention_resident_session(q, np.zeros((1, 3, 4, 4), np.float32), v, device="cpu")
    with pytest.raises(ValueError, match=r"mask is \[3, 5\]"):
        lc.attention_resident_session(q, k, v, mask=np.ones((3, 5), bool), device="cpu")
    with pytest.raises(ValueError, match="scale"):
        lc.attention_resident_session(q, k, v, scale=-1.0, device="cpu")
    with pytest.raises(TypeError, match=rf"\[{op}\] invalid arguments.*'masks'"):
        lc.attention_resident_session(q, k, v, masks=None)
    s = lc.attention_resident_session(q, k, v, device="cpu")
    before = s.parameters()
    with pytest.raises(ValueError, match=rf"{op}.train_step.*target is \[1, 2, 4, 3\]"):
        s.train_step(np.zeros((1, 2, 4, 3), np.float32), 0.1)
    with pytest.raises(TypeError, match=rf"{op}.train_step.*target"):
        s.train_step(target.astype(np.float64), 0.1)
    with pytest.raises(ValueError, match="lr must be a finite"):
        s.train_step(target, float("nan"))
    with pytest.raises(TypeError, match="lr"):
        s.train_step(target, "fast")
    for x, y in zip(before, s.parameters()):
        np.testing.assert_array_equal(x, y)  # nothing was written
    with pytest.raises(ValueError, match="forward_into"):
        s.forward_into(np.empty((1, 2, 4, 5), np.float32))
    with pytest.raises(TypeError):
        s.forward_into(np.empty((1, 2, 4, 4), np.float64))
    with pytest.raises(TypeError, match="must be float32"):
        s.run_into(q.astype(np.float16), k, v, np.empty((1, 2, 4, 4), np.float32))
    s.close()
    for call in (lambda: s.forward(), lambda: s.train_step(target, 0.1), lambda: s.parameters(),
                 lambda: s.forward_into(np.empty((1, 2, 4, 4), np.float32))):
        with pytest.raises(ValueError, match="closed"):
            call()
    s2 = lc.attention2d_resident_session(q[0, 0], k[0, 0], v[0, 0], device="cpu")
    with pytest.raises(ValueError, match=r"attention2d_resident_session.train_step.*target"):
        s2.train_step(np.zeros((4, 5), np.float32), 0.1)
    s2.close()
    with pytest.raises(ValueError, match="closed"):
        s2.train_step(np.zeros((4, 4), np.float32), 0.1)


def test_functional_step_bad_inputs_write_nothing(rng):
    q, k, v = (rnd(rng, (1, 2, 4, 4), "float32") for _ in range(3))
    q0 = q.copy()
    target = np.zeros((1, 2, 4, 4), np.float32)
    op = "attention_train_step"
    with pytest.raises(TypeError, match=f"{op}.*q is updated in place"):
        lc.attention_train_step(q.tolist(), k, v, target, 0.1)
    with pytest.raises(TypeError, match=op):
        lc.attention_train_step(q, k, v, target.astype(np.float64), 0.1)
    with pytest.raises(ValueError, match=f"{op}.*lr"):
        lc.attention_train_step(q, k, v, target, float("inf"))
    ro = k.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        lc.attention_train_step(q, ro, v, target, 0.1)
    with pytest.raises(ValueError, match=r"mask is"):
        lc.attention_train_step(q, k, v, target, 0.1, mask=np.ones((2, 7), bool))
    np.testing.assert_array_equal(q, q0)


def test_functional_step_on_lc_tensors(rng):
    hq, hk, hv = (rnd(rng, (1, 2, 5, 4), "float32") for _ in range(3))
    target = rnd(rng, (1, 2, 5, 4), "float32")
    ref = ref_train_step(hq, hk, hv, target, 0.2)
    q, k, v = (lc.Tensor(x, device="cpu") for x in (hq, hk, hv))
    out, loss = lc.attention_train_step(q, k, v, target, 0.2)
    assert isinstance(out, lc.Tensor)
    assert rel_error(f64(out), ref[0]) <= 1e-5 and abs(loss - ref[1]) <= 1e-5 * ref[1]
    check_step((hq, hk, hv), (q.numpy(), k.numpy(), v.numpy()), ref, 0.2, "float32", "tensors")
