#!/usr/bin/env bash
# A short device call for chasing a GPU failure: builds (build-gpu, as gpu_check.sh) and runs the
# C++ CUDA tests one suite per process (a sticky CUDA error in one cannot fail the others), the
# GPU-marked Python tests one file per process, and compute-sanitizer memcheck on the suites
# named in LC_DEBUG_MEMCHECK (a gtest filter). Logs under $OUT.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
ROOT=$PWD; BUILD=$ROOT/build-gpu
EXTRA=()
CUDNN_DIR=$(python3 -c 'import nvidia.cudnn, os; print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null)
if [ -n "$CUDNN_DIR" ] && [ -f "$CUDNN_DIR/include/cudnn.h" ]; then
  EXTRA+=("-DLC_CUDNN_INCLUDE=$CUDNN_DIR/include" "-DLC_CUDNN_LIB=$(ls "$CUDNN_DIR"/lib/libcudnn.so* | head -1)")
  export LD_LIBRARY_PATH="$CUDNN_DIR/lib:${LD_LIBRARY_PATH:-}"
fi
T0=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLC_ENABLE_CUDA=ON -DLC_BUILD_TESTS=ON \
  -DLC_GTEST_SOURCE_DIR="$ROOT/.deps/googletest" -DLC_BUILD_PYTHON=ON -DLC_BUILD_BENCHMARKS=OFF \
  "${EXTRA[@]}" > "$OUT/configure.log" 2>&1 || { tail -20 "$OUT/configure.log"; exit 1; }
cmake --build "$BUILD" -j16 > "$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -20; exit 1; }
echo "build took $(( $(date +%s) - T0 )) s"
SUITES=$("$BUILD/tests/cpp/lc_tests" --gtest_list_tests | grep -E '^Cuda' | tr -d '.')
for s in $SUITES; do
  r=$(timeout 120 "$BUILD/tests/cpp/lc_tests" --gtest_filter="$s.*" 2>&1 | tee "$OUT/gtest_$s.log" | grep -E "^\[  (PASSED|FAILED) " | tr '\n' ' ')
  echo "gtest $s: $r"
done
grep -hE "Failure|error|Expected|Which is|rel_error" "$OUT"/gtest_*.log | head -40
if [ -n "${LC_DEBUG_MEMCHECK:-}" ]; then
  for g in 3 0; do  # launch replay on (the default) and off
    LC_CUDA_GRAPH_LAUNCH=$g timeout 200 compute-sanitizer --tool memcheck "$BUILD/tests/cpp/lc_tests" \
      --gtest_filter="$LC_DEBUG_MEMCHECK" > "$OUT/memcheck_g$g.log" 2>&1
    echo "memcheck LC_CUDA_GRAPH_LAUNCH=$g:"
    grep -E "Invalid|at void|Access|by thread|ERROR SUMMARY|FAILED|PASSED" "$OUT/memcheck_g$g.log" | head -10
  done
fi
export PYTHONPATH="$BUILD/python:$ROOT/python:${PYTHONPATH:-}"
for f in ${LC_DEBUG_PYFILES:-tests/python/test_*.py}; do
  r=$(timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu "$f" 2>&1 | tee "$OUT/py_$(basename $f .py).log" | tail -1)
  echo "pytest $f: $r"
done
grep -hE "^E  |^FAILED" "$OUT"/py_*.log | sort | uniq -c | sort -rn | head -40
