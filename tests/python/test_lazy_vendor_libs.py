"""cuBLASLt and cuDNN load on first use, not at import (src/backends/cuda/vendor_libs.h).

Every check runs in a fresh interpreter (this one has run other tests already) that imports the
same lightning_core and reads /proc/self/maps. In a CPU-only build the vendor libraries are
never mapped, so the import check passes trivially there; in a CUDA build it is the real test,
and it needs no GPU or driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import lightning_core as lc

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"),
                                reason="needs /proc/self/maps (Linux)")

_PRELUDE = """
import json, sys
import numpy as np
import lightning_core as lc

def mapped():
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f
                       if "libcublas" in line or "libcudnn" in line})

out = {"file": lc.__file__, "cuda_compiled": lc.build_info()["cuda_compiled"]}
"""


def _run(body: str) -> dict:
    env = dict(os.environ)
    # The child must import the very module under test, wherever sys.path found it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["LC_CALIBRATE"] = "0"  # "auto" placement must not run (and time) GEMMs behind our back
    code = _PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert os.path.samefile(res["file"], lc.__file__)
    return res


def test_import_maps_no_vendor_library():
    res = _run("""
        out["after_import"] = mapped()
        # Runtime queries and CPU ops do not need cuBLASLt / cuDNN either.
        lc.cuda_available(); lc.available_devices(); lc.build_info()
        a = np.ones((64, 32), np.float32)
        lc.matmul2d(a, a.T.copy(), "cpu")
        lc.conv2d_nchw(np.ones((1, 16, 64, 64), np.float32), np.ones((32, 16, 3, 3), np.float32),
                       None, 1, 1, 1, 1, "cpu")
        out["after_cpu_ops"] = mapped()
    """)
    assert res["after_import"] == [], res
    assert res["after_cpu_ops"] == [], res


@pytest.mark.gpu
def test_gpu_loads_each_library_on_its_first_use():
    res = _run("""
        x = np.random.rand(4096).astype(np.float32)
        lc.vector_add(x, x, "cuda")
        lc.layernorm(np.random.rand(64, 256).astype(np.float32), device="cuda")
        out["after_kernels"] = mapped()       # own kernels: neither library
        a = np.random.rand(64, 32).astype(np.float32)
        lc.matmul2d(a, a.T.copy(), "cuda")
        out["after_gemm"] = mapped()          # cuBLASLt, not cuDNN
        # 1x16x64x64 -> 32 ch, k3: 18.9 M MACs > 2^24, so cuDNN when the build has it.
        lc.conv2d_nchw(np.random.rand(1, 16, 64, 64).astype(np.float32),
                       np.random.rand(32, 16, 3, 3).astype(np.float32), None, 1, 1, 1, 1, "cuda")
        lc.synchronize()
        out["after_conv"] = mapped()
        out["fingerprint"] = lc.device_fingerprint("cuda")
    """)
    assert res["after_kernels"] == [], res
    assert any("libcublasLt" in p for p in res["after_gemm"]), res
    assert not any("libcudnn" in p for p in res["after_gemm"]), res
    fp = res["fingerprint"]
    assert ";cublasLt=" in fp and "cublasLt=unavailable" not in fp, fp
    if ";cudnn=" in fp:  # built with cuDNN: the conv above loaded it
        assert "cudnn=unavailable" not in fp, fp
        assert any("libcudnn" in p for p in res["after_conv"]), res
