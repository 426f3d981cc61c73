#!/usr/bin/env bash
# Fills .deps/ (git-ignored) with what the GPU machine lacks and scripts/gpu_check.sh needs:
#   .deps/googletest  GoogleTest's source tree (built there with the project's tests)
#   .deps/benchmark   Google Benchmark's headers and shared library (for the native bench_* binaries)
#   .deps/cudnn_frontend/include  the cuDNN frontend's headers (PyPI nvidia-cudnn-frontend, header-only
#                     C++; CMakeLists.txt finds them there: cuDNN flash attention, src/backends/cuda/
#                     attention_cudnn.cpp). LC_CUDNN_FRONTEND_VERSION pins the version (default 1.32.0).
#   .deps/wheels      pytest-xdist and execnet (pure-Python wheels): gpu_check.sh's LC_PYTEST_WORKERS
# Run it here once; then every device `run` of gpu_check.sh passes carry [".deps"].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >/dev/null
mkdir -p .deps
if [ ! -f .deps/googletest/CMakeLists.txt ]; then
  [ -f /usr/src/googletest/CMakeLists.txt ] || { echo "no /usr/src/googletest (apt-get install googletest)" >&2; exit 1; }
  cp -r /usr/src/googletest .deps/googletest
fi
if [ ! -f .deps/benchmark/include/benchmark/benchmark.h ]; then
  lib=$(ls /usr/lib/x86_64-linux-gnu/libbenchmark.so.*.* 2>/dev/null | head -1 || true)
  if [ -n "$lib" ] && [ -d /usr/include/benchmark ]; then
    mkdir -p .deps/benchmark/include .deps/benchmark/lib
    cp -r /usr/include/benchmark .deps/benchmark/include/
    # Plain copies under the link name and the SONAME the binaries will ask for (links may not
    # travel with the device tool).
    soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
    cp "$lib" .deps/benchmark/lib/libbenchmark.so
    if [ -n "$soname" ]; then cp "$lib" ".deps/benchmark/lib/$soname"; fi
  else
    echo "Google Benchmark not installed here (apt-get install libbenchmark-dev); native bench skipped" >&2
  fi
fi
fe_ver=${LC_CUDNN_FRONTEND_VERSION:-1.32.0}
if [ ! -f .deps/cudnn_frontend/include/cudnn_frontend.h ]; then
  # Only the wheel's include/ is kept (no Python package, none of its dependencies installed).
  tmp=$(mktemp -d)
  if python3 -m pip download --quiet --no-deps "nvidia-cudnn-frontend==$fe_ver" -d "$tmp" >&2; then
    mkdir -p .deps/cudnn_frontend
    python3 - "$tmp" <<'PY'
import pathlib, sys, zipfile
whl = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.startswith("include/"):
            z.extract(n, ".deps/cudnn_frontend")
PY
  else
    echo "could not download nvidia-cudnn-frontend==$fe_ver; the GPU build runs attention without cuDNN" >&2
  fi
  rm -rf "$tmp"
fi
if ! ls .deps/wheels/pytest_xdist-*.whl >/dev/null 2>&1; then
  mkdir -p .deps/wheels
  python3 -m pip download --quiet --no-deps "pytest-xdist<4" "execnet<3" -d .deps/wheels >&2 \
    || echo "pytest-xdist not downloadable: LC_PYTEST_WORKERS will run pytest in one process" >&2
fi
du -sh .deps/*
