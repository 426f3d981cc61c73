#!/usr/bin/env bash
# The checked build: builds the C++ tests and the Python module once more with AddressSanitizer +
# UndefinedBehaviorSanitizer (LeakSanitizer on), CPU-only, and runs the C++ tests (ctest) and the
# Python tests (pytest) under them. Any sanitizer report fails (non-zero exit).
# scripts/test_all.sh calls it after the normal tests (LC_SKIP_SANITIZE=1 skips it there); it can
# also run alone: bash scripts/sanitize.sh. See docs/reliability.md, "Sanitizers".
#   build tree: build/asan (LC_ASAN_BUILD_DIR); module: pip --target build/asan-site
#   (LC_ASAN_SITE_DIR), never the normal install. ccache is used when present.
#   LC_ASAN_PYTEST_ARGS: extra pytest arguments (e.g. "-k sessions -x").
# Needs GCC (the runtime preloaded for Python is the compiler's libasan.so).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/python_env.sh
CXX_BIN=${CXX:-g++}
BUILD_DIR=${LC_ASAN_BUILD_DIR:-build/asan}
SITE_DIR=${LC_ASAN_SITE_DIR:-build/asan-site}

[ -n "${LC_BOOTSTRAPPED:-}" ] || bash scripts/bootstrap.sh

defines=(-Ccmake.define.LC_SANITIZE=address,undefined -Ccmake.define.LC_ENABLE_CUDA=OFF
         -Ccmake.define.LC_BUILD_TESTS=ON -Ccmake.define.LC_BUILD_BENCHMARKS=OFF)
if command -v ccache >/dev/null; then
  defines+=(-Ccmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

echo "== sanitize: build + install (ASan+UBSan, CPU-only) into $BUILD_DIR, module into $SITE_DIR"
t0=$SECONDS
# --no-deps: numpy comes from the normal environment; --upgrade replaces the previous copy;
# install.strip=false keeps the line tables that the reports print.
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
  $PY -m pip install --no-build-isolation --no-deps --upgrade -q --target "$SITE_DIR" . \
      -Cbuild-dir="$BUILD_DIR" -Cinstall.strip=false "${defines[@]}"
echo "sanitize: build took $((SECONDS - t0)) s"

# Reports: every ASan/LSan/UBSan report ends the process with a non-zero status.
#   allocator_may_return_null=1: an impossible allocation (the MemoryError tests ask for
#   terabytes) returns null / throws std::bad_alloc as in a normal build instead of aborting.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizer/lsan_python.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LC_SANITIZED=1   # tests/python/conftest.py deselects the few tests ASan distorts

echo "== sanitize: C++ tests (ctest)"
t0=$SECONDS
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)"
echo "sanitize: ctest took $((SECONDS - t0)) s"

echo "== sanitize: Python tests (pytest, libasan + libstdc++ preloaded)"
t0=$SECONDS
# The Python module is a shared object built with -fsanitize=address: the ASan runtime must be
# the first library loaded (LD_PRELOAD). libstdc++ is preloaded with it because python itself
# does not link it: ASan resolves the real __cxa_throw & co. for its interceptors at start-up,
# before the module (and libstdc++) is imported. PYTHONMALLOC=malloc: CPython's pymalloc arenas
# hide object allocations from ASan; plain malloc lets it see them. --capture=sys: pytest's
# default fd capture would swallow a report written to fd 2 by a process that then dies.
# The real interpreter, not a wrapper script (pyenv's shim is bash, which would run preloaded).
PYX=$($PY -c 'import sys; print(sys.executable)')
preload="$($CXX_BIN -print-file-name=libasan.so) $($CXX_BIN -print-file-name=libstdc++.so)"
LD_PRELOAD="$preload" PYTHONMALLOC=malloc PYTHONPATH="$ROOT/$SITE_DIR" \
  "$PYX" -m pytest -q -p no:cacheprovider --capture=sys tests/python ${LC_ASAN_PYTEST_ARGS:-}
echo "sanitize: pytest took $((SECONDS - t0)) s"
