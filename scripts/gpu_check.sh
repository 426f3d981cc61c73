#!/usr/bin/env bash
# One call on the lent GPU machine: versions, configure + build (build-gpu), C++ tests, the CUDA
# micro-benchmark, optional compute-sanitizer, and a short summary table at the end.
#   run tool: command "bash scripts/gpu_check.sh", carry [".deps"] (GoogleTest source tree).
#   LC_SANITIZE=1  also runs compute-sanitizer memcheck on lc_tests --gtest_filter='Cuda*' (minus
#                  the OOM test, whose deliberate cudaMalloc failure memcheck counts as an error).
#   LC_SKIP_TESTS=1 / LC_SKIP_BENCH=1 skip those steps. LC_GTEST_FILTER narrows the tests.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
ROOT=$PWD
BUILD=$ROOT/build-gpu
declare -A STATUS

echo "=== versions ==="
nvidia-smi || true
nvcc --version | tail -2
cmake --version | head -1
python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || echo "python/torch: not importable"

echo "=== configure ==="
EXTRA=()
# CMake < 3.26 does not know nvcc's C++20 flag (CUDA_STANDARD 20): teach it, outside the repo.
CMV=$(cmake --version | head -1 | awk '{print $3}')
if [ "$(printf '%s\n3.26\n' "$CMV" | sort -V | head -1)" != "3.26" ]; then
  mkdir -p "$BUILD"
  printf 'set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")\nset(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")\n' > "$BUILD/cuda20.cmake"
  EXTRA+=("-DCMAKE_USER_MAKE_RULES_OVERRIDE_CUDA=$BUILD/cuda20.cmake")
fi
# cuDNN: the system's if CMake finds it, else the one inside the nvidia-cudnn pip wheel.
if ! ls /usr/include/cudnn.h /usr/local/cuda/include/cudnn.h >/dev/null 2>&1; then
  CUDNN_DIR=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__) if nvidia.cudnn.__file__ else list(nvidia.cudnn.__path__)[0])' 2>/dev/null)
  if [ -n "$CUDNN_DIR" ] && [ -f "$CUDNN_DIR/include/cudnn.h" ]; then
    LIB=$(ls "$CUDNN_DIR"/lib/libcudnn.so* 2>/dev/null | head -1)
    EXTRA+=("-DLC_CUDNN_INCLUDE=$CUDNN_DIR/include" "-DLC_CUDNN_LIB=$LIB")
    export LD_LIBRARY_PATH="$CUDNN_DIR/lib:${LD_LIBRARY_PATH:-}"
    echo "using pip cuDNN at $CUDNN_DIR"
  fi
fi
PY=OFF
# --- Python module: built and tested here once python/CMakeLists.txt exists -----------------
if [ -f python/CMakeLists.txt ]; then PY=ON; fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLC_ENABLE_CUDA=ON -DLC_BUILD_TESTS=ON \
  -DLC_GTEST_SOURCE_DIR="$ROOT/.deps/googletest" -DLC_BUILD_PYTHON=$PY -DLC_BUILD_BENCHMARKS=ON \
  "${EXTRA[@]}" > "$OUT/configure.log" 2>&1 && STATUS[configure]=ok || STATUS[configure]=FAIL
grep -E "lightning_core|Error|error|Warning" "$OUT/configure.log"

echo "=== build ==="
T0=$(date +%s)
if cmake --build "$BUILD" -j16 > "$OUT/build.log" 2>&1; then STATUS[build]=ok; else STATUS[build]=FAIL; tail -60 "$OUT/build.log"; fi
echo "build took $(( $(date +%s) - T0 )) s"
grep -E "warning" "$OUT/build.log" | head -20

if [ "${LC_SKIP_TESTS:-0}" != 1 ] && [ -x "$BUILD/tests/cpp/lc_tests" ]; then
  echo "=== C++ tests ==="
  FILTER=${LC_GTEST_FILTER:-*}
  if timeout 300 "$BUILD/tests/cpp/lc_tests" --gtest_filter="$FILTER" > "$OUT/ctest.log" 2>&1; then STATUS[tests]=ok; else STATUS[tests]=FAIL; fi
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error:|Expected|Which is|rel_error|seed|^\[==" "$OUT/ctest.log" | head -80
  grep -E "^\[       OK \] Cuda" "$OUT/ctest.log" | head -40
fi

if [ "${LC_SKIP_BENCH:-0}" != 1 ] && [ -x "$BUILD/benchmarks/cpp/cuda_micro" ]; then
  echo "=== cuda_micro ==="
  if timeout 240 "$BUILD/benchmarks/cpp/cuda_micro" "$OUT/cuda_micro.txt" > "$OUT/cuda_micro.log" 2>&1; then STATUS[bench]=ok; else STATUS[bench]=FAIL; tail -20 "$OUT/cuda_micro.log"; fi
fi

if [ "${LC_SANITIZE:-0}" = 1 ] && [ -x "$BUILD/tests/cpp/lc_tests" ]; then
  echo "=== compute-sanitizer memcheck ==="
  if timeout 400 compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/cpp/lc_tests" \
       --gtest_filter="${LC_SANITIZE_FILTER:-Cuda*:-CudaMemory.OutOfMemory*}" > "$OUT/memcheck.log" 2>&1; then STATUS[memcheck]=ok; else STATUS[memcheck]=FAIL; fi
  grep -E "ERROR SUMMARY|Invalid|FAILED" "$OUT/memcheck.log" | head -20
fi

# --- Python tests / benchmarks (added once the nanobind module exists) ---------------------
if [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== python tests ==="
  export PYTHONPATH="$BUILD/python:$ROOT/python:${PYTHONPATH:-}"
  if timeout 300 python3 -m pytest tests/python -q > "$OUT/pytest.log" 2>&1; then STATUS[pytest]=ok; else STATUS[pytest]=FAIL; fi
  tail -15 "$OUT/pytest.log"
fi

echo
echo "=== summary ==="
for k in configure build tests bench memcheck pytest; do
  [ -n "${STATUS[$k]:-}" ] && printf '%-10s %s\n' "$k" "${STATUS[$k]}"
done
[ -f "$OUT/ctest.log" ] && grep -E "^\[  (PASSED|FAILED) |tests? from .* ran" "$OUT/ctest.log" | tail -3
[ -f "$OUT/cuda_micro.txt" ] && cat "$OUT/cuda_micro.txt"
exit 0
