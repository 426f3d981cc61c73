#!/usr/bin/env bash
# Runs every test: builds and installs the package with scikit-build-core (the C++ tests built
# in the same build tree; CUDA compiled when nvcc is present), then the C++ tests (ctest) and the
# Python tests (pytest). GPU tests skip themselves where no GPU is present. Then the checked
# build: scripts/sanitize.sh builds the C++ tests and the module once more with ASan+UBSan
# (CPU-only, build/asan) and runs both test suites under them; LC_SKIP_SANITIZE=1 skips it.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
BUILD_DIR=${LC_BUILD_DIR:-build/test}

bash scripts/bootstrap.sh

defines=(-Ccmake.define.LC_BUILD_TESTS=ON -Ccmake.define.LC_BUILD_BENCHMARKS=ON)
if command -v ccache >/dev/null; then
  defines+=(-Ccmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -Ccmake.define.CMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "test_all: nvcc found: the CUDA backend is compiled (sm_90a); its tests run only on a GPU"
else
  echo "test_all: no nvcc: CPU-only build"
fi

echo "== build + install (pip, scikit-build-core) into $BUILD_DIR"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  $PY -m pip install --no-build-isolation -q . -Cbuild-dir="$BUILD_DIR" "${defines[@]}"

echo "== C++ tests (ctest)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)"

echo "== Python tests (pytest)"
# Run from the repo root: python/lightning_core is not importable from here, so the tests use
# the installed package.
$PY -m pytest -q tests/python

if [ "${LC_SKIP_SANITIZE:-0}" = 1 ]; then
  echo "test_all: LC_SKIP_SANITIZE=1: the sanitizer stage (scripts/sanitize.sh) is skipped"
else
  LC_BOOTSTRAPPED=1 bash scripts/sanitize.sh
fi
