#!/usr/bin/env bash
# The main job on a fresh machine: install the package (CUDA compiled when nvcc is present),
# then print the backends found and time a few ops against numpy (CPU alone works).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
bash scripts/bootstrap.sh
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  $PY -m pip install --no-build-isolation -q . -Cbuild-dir=build/demo
cd examples && $PY demo.py "$@"
