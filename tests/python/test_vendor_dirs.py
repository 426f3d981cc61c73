"""NVIDIA's pip wheels' library folders reach the native loader (issue #16: find cuBLASLt,
cuDNN and NCCL inside the nvidia-* wheels users already have)."""

from __future__ import annotations

import os
import subprocess
import sys

import lightning_core as lc
from lightning_core import _vendor_dirs


def test_find_lists_each_wheel_lib_folder_once_in_path_order(tmp_path):
    a, b = tmp_path / "site_a", tmp_path / "site_b"
    for base, names in ((a, ["cublas", "cudnn"]), (b, ["cudnn", "nccl"])):
        for n in names:
            (base / "nvidia" / n / "lib").mkdir(parents=True)
    (a / "nvidia" / "not_a_lib").mkdir()  # no lib/ folder: skipped
    (a / "nvidia" / "stray.txt").write_text("")
    found = _vendor_dirs.find([str(a), str(tmp_path / "missing"), str(b), str(a)])
    assert found == [str(a / "nvidia" / n / "lib") for n in ("cublas", "cudnn")] + [
        str(b / "nvidia" / n / "lib") for n in ("cudnn", "nccl")]


def test_find_default_is_sys_path_and_never_raises():
    assert isinstance(_vendor_dirs.find(), list)
    native = lc._lightning_core
    native._set_vendor_lib_dirs(_vendor_dirs.find())  # accepted on every build (no-op without CUDA)
    native._set_vendor_lib_dirs([])


def test_import_scans_without_loading_any_vendor_library(tmp_path):
    # A fake wheel folder on the path: importing hands it over, and nothing gets mapped.
    lib = tmp_path / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    code = ("import sys; sys.path.insert(0, %r); import lightning_core as lc; "
            "maps = open('/proc/self/maps').read(); "
            "assert 'libcublasLt' not in maps and 'libcudnn' not in maps, 'loaded at import'; "
            "from lightning_core import _vendor_dirs; assert %r in _vendor_dirs.find()" % (str(tmp_path), str(lib)))
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
