#!/usr/bin/env bash
# One call on the lent GPU machine: versions, configure + build (build-gpu), C++ tests, the CUDA
# micro-benchmark, optional compute-sanitizer, and a short summary table at the end.
#   run tool: command "bash scripts/gpu_check.sh", carry [".deps"]: make .deps here first with
#   scripts/prepare_gpu_deps.sh (GoogleTest's source tree, Google Benchmark's headers + library).
#   LC_SANITIZE=1  also runs compute-sanitizer memcheck on lc_tests --gtest_filter='Cuda*' (minus
#                  the OOM test, whose deliberate cudaMalloc failure memcheck counts as an error).
#   LC_SANITIZE=all  memcheck, racecheck and synccheck on those tests, then each tool on the
#                  Python fuzz suite's device cases (LC_SANITIZE_FUZZ cases, default 150).
#   LC_FUZZ=1      the fuzz suite's device run (tests/python/fuzz/runner.py --gpu): LC_FUZZ_GPU_EXAMPLES
#                  cases (default 2000).
#   LC_SOAK=1      benchmarks/python/soak_check.py: 100,000 mixed calls per device, RSS and
#                  lc.memory_info() must stay flat.
#   LC_SKIP_TESTS=1 / LC_SKIP_BENCH=1 / LC_SKIP_PYTEST=1 skip those steps (C++ tests, benchmarks,
#                  pytest) so that one check can be split over two calls within the 600 s limit. LC_GTEST_FILTER narrows the tests.
#   LC_PYBENCH=1   also runs the Python benchmark suites (benchmarks/python/run_all.py --quick)
#                  side by side with torch; LC_PYBENCH_SUITES picks suites (default: all),
#                  LC_PYBENCH_FILTER cases ('a|b': case texts containing a or b; '!x': none containing x), LC_PYBENCH_MODES
#                  the modes (oneshot,resident).
#   LC_PYTEST_ARGS extra pytest arguments (e.g. "-k sessions"). LC_PYTEST_TIMEOUT: its limit in s (400).
#                  LC_PYTEST_PATHS: the files or folders to run (default tests/python).
#   LC_PYTEST_WORKERS=N  pytest in N processes (pytest-xdist, one test file per process at a time,
#                  from the wheels prepare_gpu_deps.sh puts in .deps/wheels; the device has none).
#                  The whole GPU suite takes over 10 minutes in one process.
#   LC_NATIVE=1   with LC_PYBENCH=1: also the Google Benchmark binaries (JSON in the results).
#   LC_GIT_COMMIT  the commit the copied tree holds (it has no .git), for the results' context:
#                  run as `LC_GIT_COMMIT=<hash> bash scripts/gpu_check.sh`.
#   LC_CPU_CHECK=1 also runs benchmarks/python/cpu_pool_check.py under several pool settings.
#   LC_PLACEMENT=1 also runs benchmarks/python/placement_check.py (is "auto" the faster side?).
#   LC_ATTENTION_SWEEP=tc|decode|fp32|all  also runs benchmarks/python/attention_sweep.py --profile
#                  on those shapes (every kernel variant, cuDNN, torch; GPU and host time per call):
#                  $OUT/attention_sweep.txt (kept at the top of $OUT) and .json in the archive.
#   LC_EXTRA="cmd" runs one more command after the tests (a diagnosis script, say), with the built
#                  package on PYTHONPATH: $OUT/extra.txt (kept at the top of $OUT); LC_EXTRA_TIMEOUT (240).
#   LC_CPU_GOALS=1 also runs benchmarks/python/cpu_goals.py (the CPU goals of #13 / #15 on this
#                  host's cores): $OUT/cpu_goals.txt (kept at the top of $OUT).
# Everything under $OUT/logs and $OUT/benchmark_results is packed into $OUT/results.tgz at the
# end (the device tool returns at most 8 files).
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
  -DLC_GTEST_SOURCE_DIR="$ROOT/.deps/googletest" -DLC_BENCHMARK_ROOT="$ROOT/.deps/benchmark" \
  -DLC_BUILD_PYTHON=$PY -DLC_BUILD_BENCHMARKS=ON \
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
  if [ -x "$BUILD/benchmarks/cpp/sync_latency" ]; then
    # The raw launch + wait floor under each scheduling mode (one process per mode).
    for m in auto spin blocking; do
      timeout 60 "$BUILD/benchmarks/cpp/sync_latency" $m "$OUT/sync_latency.txt" >> "$OUT/sync_latency.log" 2>&1 \
        || echo "sync_latency $m failed (rc $?)" >> "$OUT/sync_latency.log"
    done
  fi
  if [ -x "$BUILD/benchmarks/cpp/gemm_paths" ]; then
    # CPU GEMM paths, each in its own process (OpenBLAS workers spin ~0.1 s after a call).
    for p in "blas" "pooled" "pooled --hold-one-thread"; do
      timeout 120 "$BUILD/benchmarks/cpp/gemm_paths" --only $p >> "$OUT/gemm_paths.txt" 2>&1 \
        || echo "gemm_paths $p failed (rc $?)" >> "$OUT/gemm_paths.txt"
    done
  fi
fi

if [ "${LC_SANITIZE:-0}" != 0 ] && [ -x "$BUILD/tests/cpp/lc_tests" ]; then
  TOOLS=(memcheck)
  [ "${LC_SANITIZE}" = all ] && TOOLS=(memcheck racecheck synccheck)
  for tool in "${TOOLS[@]}"; do
    echo "=== compute-sanitizer $tool (C++ CUDA tests) ==="
    T0=$(date +%s)
    if timeout ${LC_SANITIZE_TIMEOUT:-300} compute-sanitizer --tool $tool --error-exitcode 9 "$BUILD/tests/cpp/lc_tests" \
         --gtest_filter="${LC_SANITIZE_FILTER:-Cuda*:-CudaMemory.OutOfMemory*}" > "$OUT/$tool.log" 2>&1
    then STATUS[$tool]=ok; else STATUS[$tool]="FAIL(rc $?)"; fi
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|hazard|FAILED|^\[  PASSED" "$OUT/$tool.log" | head -10
    echo "$tool took $(( $(date +%s) - T0 )) s"
  done
fi

# --- Python tests / benchmarks (added once the nanobind module exists) ---------------------
export PYTHONPATH="$BUILD/python:$ROOT/python:${PYTHONPATH:-}"
if [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ] && [ "${LC_SKIP_PYTEST:-0}" != 1 ]; then
  echo "=== python tests ==="
  # faulthandler: a crash in native code prints the Python stack of every thread.
  XDIST=()
  if [ -n "${LC_PYTEST_WORKERS:-}" ] && ls "$ROOT"/.deps/wheels/pytest_xdist-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/lc-xdist "$ROOT"/.deps/wheels/*.whl \
      && export PYTHONPATH="/tmp/lc-xdist:$PYTHONPATH" && XDIST=(-n "$LC_PYTEST_WORKERS" --dist loadfile)
  fi
  if timeout ${LC_PYTEST_TIMEOUT:-400} python3 -X faulthandler -m pytest ${LC_PYTEST_PATHS:-tests/python} -q -p no:cacheprovider "${XDIST[@]}" ${LC_PYTEST_ARGS:-} \
       > "$OUT/pytest.log" 2>&1; then STATUS[pytest]=ok; else STATUS[pytest]=FAIL; fi
  grep -E "FAILED|Error|Fatal|File \"|Segmentation" "$OUT/pytest.log" | head -40
  tail -5 "$OUT/pytest.log"
fi

if [ "${LC_FUZZ:-0}" = 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ] && [ -d tests/python/fuzz ]; then
  echo "=== fuzz suite on the device (${LC_FUZZ_GPU_EXAMPLES:-2000} cases) ==="
  if timeout ${LC_FUZZ_TIMEOUT:-300} python3 tests/python/fuzz/runner.py --gpu \
       --examples ${LC_FUZZ_GPU_EXAMPLES:-2000} --report "$OUT/fuzz_gpu.json" > "$OUT/fuzz_gpu.log" 2>&1
  then STATUS[fuzz]=ok; else STATUS[fuzz]="FAIL(rc $?)"; fi
  tail -25 "$OUT/fuzz_gpu.log"
  if [ "${LC_SANITIZE:-0}" = all ]; then
    # One worker, a generous hang limit: the tools slow every launch down by 10-100x. API errors
    # are not reported: the suite makes huge allocations on purpose (they must be MemoryErrors).
    for tool in memcheck racecheck synccheck; do
      echo "=== compute-sanitizer $tool (fuzz device cases) ==="
      if LC_FUZZ_WORKERS=1 LC_FUZZ_HANG_S=250 timeout ${LC_SANITIZE_TIMEOUT:-300} \
           compute-sanitizer --tool $tool --error-exitcode 9 --target-processes all --report-api-errors no \
           python3 tests/python/fuzz/runner.py --gpu --examples ${LC_SANITIZE_FUZZ:-150} > "$OUT/fuzz_$tool.log" 2>&1
      then STATUS[fuzz_$tool]=ok; else STATUS[fuzz_$tool]="FAIL(rc $?)"; fi
      grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|hazard|cases tried" "$OUT/fuzz_$tool.log" | head -8
    done
  fi
fi

if [ "${LC_SOAK:-0}" = 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== soak: 100,000 mixed calls per device ==="
  if timeout 400 python3 benchmarks/python/soak_check.py --calls ${LC_SOAK_CALLS:-100000} \
       --json "$OUT/soak.json" > "$OUT/soak.log" 2>&1; then STATUS[soak]=ok; else STATUS[soak]="FAIL(rc $?)"; fi
  cat "$OUT/soak.log" | tail -5
fi

if [ "${LC_SKIP_BENCH:-0}" != 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== resident tiny op latency from Python (LC vs torch) ==="
  timeout 120 python3 benchmarks/python/tiny_op_latency.py > "$OUT/tiny_op_latency.txt" 2>&1 \
    || echo "tiny_op_latency failed (rc $?)"
  cat "$OUT/tiny_op_latency.txt"
fi

if [ "${LC_CPU_CHECK:-0}" = 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== CPU paths vs numpy / torch CPU under the pool's knobs ==="
  for knobs in "" "LC_NUM_THREADS=8" "LC_NUM_THREADS=4" "LC_SPIN_US=500" "LC_SPIN_US=0"; do
    env $knobs timeout 120 python3 benchmarks/python/cpu_pool_check.py >> "$OUT/cpu_pool_check.txt" 2>&1 \
      || echo "cpu_pool_check $knobs failed (rc $?)" >> "$OUT/cpu_pool_check.txt"
  done
  cat "$OUT/cpu_pool_check.txt"
fi

if [ "${LC_PLACEMENT:-0}" = 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== placement check (auto vs cpu vs cuda, one-shot) ==="
  if timeout 240 python3 benchmarks/python/placement_check.py --force-calibrate \
       --json "$OUT/placement_check.json" > "$OUT/placement_check.log" 2>&1
  then STATUS[placement]=ok; else STATUS[placement]=FAIL; fi
  tail -45 "$OUT/placement_check.log"
fi

if [ -n "${LC_ATTENTION_SWEEP:-}" ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== attention sweep (${LC_ATTENTION_SWEEP}) ==="
  ONLY=()
  [ "${LC_ATTENTION_SWEEP}" != all ] && ONLY=(--only "${LC_ATTENTION_SWEEP}")
  if timeout ${LC_ATTENTION_SWEEP_TIMEOUT:-240} python3 benchmarks/python/attention_sweep.py --profile "${ONLY[@]}" \
       --json "$OUT/attention_sweep.json" > "$OUT/attention_sweep.txt" 2>&1
  then STATUS[sweep]=ok; else STATUS[sweep]="FAIL(rc $?)"; fi
  grep -E "^==|FAIL" "$OUT/attention_sweep.txt" | head -20
fi

if [ -n "${LC_EXTRA:-}" ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== extra: ${LC_EXTRA} ==="
  if timeout ${LC_EXTRA_TIMEOUT:-240} bash -c "$LC_EXTRA" > "$OUT/extra.txt" 2>&1
  then STATUS[extra]=ok; else STATUS[extra]="FAIL(rc $?)"; fi
  tail -60 "$OUT/extra.txt"
fi

if [ "${LC_CPU_GOALS:-0}" = 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== CPU goals (#13 attention, #15 MiniLM) ==="
  if timeout ${LC_CPU_GOALS_TIMEOUT:-240} python3 benchmarks/python/cpu_goals.py > "$OUT/cpu_goals.txt" 2>&1
  then STATUS[cpu_goals]=ok; else STATUS[cpu_goals]="FAIL(rc $?)"; fi
  grep -E "median of|^[0-9]+ x |batch x seq" "$OUT/cpu_goals.txt"
fi

if [ "${LC_PYBENCH:-0}" = 1 ] && [ "$PY" = ON ] && [ "${STATUS[build]}" = ok ]; then
  echo "=== python benchmark suites (quick) ==="
  mkdir -p "$OUT/benchmark_results"
  # The native micro-benchmarks of this run go next to the suites' results: the summary reads them.
  for f in cuda_micro.txt sync_latency.txt tiny_op_latency.txt gemm_paths.txt placement_check.json; do
    [ -f "$OUT/$f" ] && cp "$OUT/$f" "$OUT/benchmark_results/"
  done
  NATIVE=()
  [ "${LC_NATIVE:-0}" = 1 ] && NATIVE=(--native --build-dir "$BUILD")
  [ -n "${LC_PYBENCH_FILTER:-}" ] && NATIVE+=(--filter "$LC_PYBENCH_FILTER")
  [ -n "${LC_PYBENCH_MODES:-}" ] && NATIVE+=(--modes "$LC_PYBENCH_MODES")
  if timeout ${LC_PYBENCH_TIMEOUT:-420} python3 benchmarks/python/run_all.py --quick "${NATIVE[@]}" \
       --suites "${LC_PYBENCH_SUITES:-kernel,pipeline,ml,dl,api_overhead}" \
       --out-dir "$OUT/benchmark_results" --deadline-s ${LC_PYBENCH_DEADLINE:-360} > "$OUT/pybench.log" 2>&1
  then STATUS[pybench]=ok; else STATUS[pybench]=FAIL; fi
  tail -30 "$OUT/pybench.log"
fi

echo
echo "=== summary ==="
for k in configure build tests bench memcheck racecheck synccheck pytest fuzz fuzz_memcheck \
         fuzz_racecheck fuzz_synccheck soak placement sweep extra cpu_goals pybench; do
  [ -n "${STATUS[$k]:-}" ] && printf '%-10s %s\n' "$k" "${STATUS[$k]}"
done
[ -f "$OUT/ctest.log" ] && grep -E "^\[  (PASSED|FAILED) |tests? from .* ran" "$OUT/ctest.log" | tail -3
[ -f "$OUT/cuda_micro.txt" ] && cat "$OUT/cuda_micro.txt"
[ -f "$OUT/sync_latency.txt" ] && cat "$OUT/sync_latency.txt"
[ -f "$OUT/gemm_paths.txt" ] && cat "$OUT/gemm_paths.txt"
# Pack logs and results into one archive (the tool returns few files); keep the summary files.
TMP_TGZ=$(mktemp /tmp/results.XXXXXX.tgz)
(cd "$OUT" && tar czf "$TMP_TGZ" . 2>/dev/null; mv "$TMP_TGZ" results.tgz && \
  find . -mindepth 1 -maxdepth 1 ! -name results.tgz ! -name cuda_micro.txt ! -name pytest.log \
    ! -name attention_sweep.txt ! -name cpu_goals.txt ! -name extra.txt -exec rm -rf {} +)
exit 0
