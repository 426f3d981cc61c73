"""No lc object outlives the interpreter: a representative mix of ops (numpy and lc.Tensor
inputs, lc.Tensor results, views, numpy views of tensors, from_numpy, sessions, pipelines,
policy scopes in threads and asyncio tasks, explain, traces, errors) runs in a fresh process,
and nanobind's exit-time check ("nanobind: leaked N instances!", on by default) must stay
silent. Every device the suite runs on is exercised (the CUDA parity paths on a GPU machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import lightning_core as lc

_SCRIPT = textwrap.dedent(r"""
    import asyncio, gc, sys, threading
    import numpy as np
    import lightning_core as lc

    devices = ["cpu"] + (["cuda"] if lc.cuda_available() else [])
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    a, b, x = f32(24, 16), f32(16, 8), f32(24, 16)
    q, k, v = f32(12, 8), f32(12, 8), f32(12, 8)
    img, wconv, bconv = f32(1, 2, 9, 9), f32(4, 2, 3, 3), f32(4)
    keep = []  # results stay alive until the module is torn down, as in a test run

    for dev in devices:
        ta, tb, tx = lc.Tensor(a, dev), lc.Tensor(b, dev), lc.Tensor(x, dev)
        tq, tk, tv = lc.Tensor(q, dev), lc.Tensor(k, dev), lc.Tensor(v, dev)
        keep += [
            lc.matmul2d(a, b, dev), lc.matmul2d(ta, tb, dev), lc.matmul2d(ta, b, dev),
            lc.linear(a, f32(8, 16), f32(8), "relu", dev), lc.linear(ta, lc.Tensor(f32(8, 16), dev), None, "gelu", dev),
            lc.attention2d(q, k, v, True, dev), lc.attention2d(tq, tk, tv, False, dev),
            lc.conv2d_nchw(img, wconv, bconv, 1, 1, 1, 1, dev),
            lc.conv2d_nchw(lc.Tensor(img, dev), lc.Tensor(wconv, dev), None, 1, 1, 0, 0, dev),
            lc.layernorm(x, np.ones(16, np.float32), np.zeros(16, np.float32), 1e-5, dev),
            lc.layernorm(tx, None, None, 1e-5, dev),
            lc.softmax(tx, dev), lc.relu(tx, dev), lc.gelu(x, dev),
            lc.vector_add(tx, tx, dev), lc.vector_scale(tx, 2.0, dev), lc.matrix_sub(ta, ta, dev),
        ]
        # views: transposes, strided views, TensorView over tensors and over numpy arrays
        keep += [ta.T, ta.t(), ta._view([8, 16], [32, 1], 0), lc.TensorView(ta, [16], [1], 3)]
        keep.append(lc.relu(ta._view([12, 16], [32, 1], 0), dev))
        keep.append(lc.matmul2d(ta.T, lc.Tensor(f32(24, 5), dev), dev))
        # into forms with lc.Tensor and numpy outs
        out_t = lc.Tensor.empty([24, 8], dev)
        lc.matmul2d_into(ta, tb, out_t, dev)
        out_n = np.empty((24, 16), np.float32)
        lc.vector_add_into(a.copy(), x, out_n, dev)
        keep += [out_t, out_n]
        # host copies and numpy views of tensors (their base is the tensor)
        keep += [r.numpy() for r in keep[-20:] if isinstance(r, lc.Tensor)]
        keep += [np.asarray(lc.Tensor(a, "cpu")), lc.Tensor(a, dev).to("cpu"), lc.Tensor(a, dev).cpu()]
        # tensors over numpy memory, and numpy over those
        wrapped = lc.Tensor.from_numpy(a.copy())
        keep += [wrapped, np.asarray(wrapped), lc.Tensor.from_numpy(np.asarray(wrapped))]
        keep += [lc.TensorView(np.arange(30, dtype=np.float32), [5, 3], [6, 2], 1), lc.Tensor64(a, "cpu")]
        # sessions: context-managed, closed, and left open
        with lc.matmul2d_resident_session(a, b, dev) as s:
            o = np.empty((24, 8), np.float32)
            s.start_into(a, b, o)
            s.run_into(a, b, o)
            s.run_batch_sync_no_download_into(a, b, o, 3)
            s.sync()
            s.download_into(o)
        s2 = lc.attention2d_resident_session(tq, tk, tv, True, dev)
        o = lc.Tensor.empty([12, 8], dev)
        s2.run_into(tq, tk, tv, o)
        keep += [s2, o]
        s3 = lc.conv_attention_resident_session(img, wconv, bconv, 9, 4, 1, 1, 1, 1, dev)
        o3 = np.empty((9, 4), np.float32)
        s3.run_into(img, o3)
        s3.close()
        keep.append(lc.conv_attention_nchw(img, wconv, bconv, 9, 4, 1, 1, 1, 1, dev))
        # pipelines
        keep.append(lc.api.ffn(x, f32(32, 16), f32(32), f32(16, 32), f32(16), device=dev))
        keep.append(lc.api.layernorm_linear(tx, None, None, lc.Tensor(f32(8, 16), dev), None, device=dev))
        keep.append(lc.conv_relu_nchw(img, wconv, bconv, 1, 1, 1, 1, dev))
        # errors raised with tensors in the frames
        for bad in (lambda: lc.matmul2d(ta, ta, dev), lambda: lc.vector_add(ta, None, dev),
                    lambda: lc.relu(np.ones(3), dev)):
            try:
                bad()
            except (TypeError, ValueError) as e:
                keep.append(e)  # an exception whose traceback holds frames with tensors

    # policies: scopes, decorator, threads, asyncio tasks; explain; traces
    with lc.policy(device="cpu", fusion=False) as p:
        keep.append(lc.explain(lc.matmul2d, a, b))
        keep.append(lc.placement("matmul2d", a, b))
    keep.append(lc.policy(device="cpu")(lambda: lc.relu(lc.Tensor(a), "cpu"))())

    def worker():
        with lc.policy(device="cpu"):
            keep.append(lc.relu(lc.Tensor(a)))
    t = threading.Thread(target=worker); t.start(); t.join()

    async def task(dev):
        with lc.policy(device=dev):
            await asyncio.sleep(0)
            return lc.softmax(lc.Tensor(x, dev))
    async def main():
        return await asyncio.gather(*(task(d) for d in devices))
    keep += asyncio.run(main())

    with lc.runtime_trace() as tr:
        lc.relu(lc.Tensor(a), "cpu")
    keep.append(tr)
    keep.append(lc.last_op_report())
    gc.collect()
    print("ok", len(keep), "objects,", devices)
""")


def test_no_instances_leak_at_exit(tmp_path):
    env = dict(os.environ, LIGHTNING_CORE_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _SCRIPT], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok"), r.stdout
    assert "leaked" not in r.stderr, r.stderr
