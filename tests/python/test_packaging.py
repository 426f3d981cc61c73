"""Packaging metadata: one version source, the sdist's contents, the license field, pins."""

from __future__ import annotations

import importlib.metadata
import re
import tarfile
from pathlib import Path

import pytest

import lightning_core as lc

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def _pyproject() -> str:
    if not PYPROJECT.exists():
        pytest.skip("not run from a source checkout (no pyproject.toml)")
    return PYPROJECT.read_text()


def _project_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', _pyproject(), re.M)
    assert m, "pyproject.toml has no [project] version line"
    return m.group(1)


def test_version_has_one_source():
    v = _project_version()
    assert lc.__version__ == v
    assert lc.build_info()["version"] == v
    # No other file states the version: CMakeLists.txt reads pyproject.toml.
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"project\(lightning_core VERSION \$\{LC_VERSION_NUMERIC\}", cmake)
    assert v not in cmake


def test_installed_metadata_matches_the_module():
    try:
        dist = importlib.metadata.distribution("lightning-core")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("lightning-core is not pip-installed (tests run on a build tree)")
    installed = Path(dist.locate_file("lightning_core/__init__.py")).resolve()
    if installed != Path(lc.__file__).resolve():
        pytest.skip("the imported lightning_core is not the pip-installed one (PYTHONPATH build)")
    assert dist.version == lc.__version__
    assert dist.metadata["License-Expression"] == "LicenseRef-KWU-1.0"


def test_license_and_pins_in_pyproject():
    text = _pyproject()
    assert re.search(r'^license\s*=\s*"LicenseRef-KWU-1\.0"', text, re.M)
    # nanobind below its next major (the C++ API and stub output change across majors)
    assert re.search(r'"nanobind>=\d[\d.]*,<\d+"', text)


def test_sdist_leaves_out_benchmark_results_and_build_trees(tmp_path):
    build = pytest.importorskip("scikit_build_core.build")
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        name = build.build_sdist(str(tmp_path))
    finally:
        os.chdir(cwd)
    with tarfile.open(tmp_path / name) as tf:
        names = tf.getnames()
        top = {n.split("/")[1] for n in names if n.count("/") >= 1}
        pkg_info = tf.extractfile(f"{name[:-len('.tar.gz')]}/PKG-INFO").read().decode()
    assert name == f"lightning_core-{_project_version()}.tar.gz"
    assert "benchmark_results" not in top
    assert not any(t.startswith(("build", ".venv", "dist")) for t in top), sorted(top)
    assert {"src", "include", "python", "CMakeLists.txt", "pyproject.toml", "README.md"} <= top
    assert not any("__pycache__" in n for n in names)
    assert f"Version: {_project_version()}" in pkg_info
    assert "License-Expression: LicenseRef-KWU-1.0" in pkg_info


@pytest.mark.parametrize("archs,codes", [
    ("hopper", ["sm_90a"]),
    ("all", ["sm_80", "sm_86", "sm_89", "sm_90a", "sm_100", "compute_100"]),
])
def test_cuda_arch_lists(tmp_path, archs, codes):
    """LC_CUDA_ARCHS gives the -gencode list nvcc compiles and the targets build_info names."""
    import shutil

    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if nvcc is None or shutil.which("cmake") is None:
        pytest.skip("needs nvcc and cmake")
    import os
    import subprocess

    # Not the sanitizer stage's LD_PRELOAD of libasan: under it, CMake's compiler probes report
    # LeakSanitizer leaks and fail to identify the compiler.
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
    r = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(tmp_path), f"-DLC_CUDA_ARCHS={archs}",
                        f"-DCMAKE_CUDA_COMPILER={nvcc}", "-DLC_BUILD_PYTHON=OFF",
                        "-DLC_BUILD_TESTS=OFF", "-DLC_BLAS=none"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    flags = " ".join(p.read_text() for p in tmp_path.rglob("*.ninja")) or \
        " ".join(p.read_text() for p in tmp_path.rglob("flags.make"))
    got = sorted(set(re.findall(r"-gencode=arch=compute_\w+,code=(\w+)", flags)))
    assert got == sorted(codes)
    assert f'LC_CUDA_TARGETS=\\"{",".join(codes)}\\"' in flags or \
        f'LC_CUDA_TARGETS="{",".join(codes)}"' in flags
