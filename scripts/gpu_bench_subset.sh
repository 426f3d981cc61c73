#!/usr/bin/env bash
# A short device call: builds only the Python module (build-gpu) and runs chosen benchmark cases
# side by side with torch. LC_BENCH_FILTERS: ';'-separated "suite:filter" items (filter = text in
# "family case"; empty = the whole suite). --quick unless LC_BENCH_FULL=1. Results under $OUT.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
ROOT=$PWD; BUILD=$ROOT/build-gpu
EXTRA=()
CUDNN_DIR=$(python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null)
if [ -n "$CUDNN_DIR" ] && [ -f "$CUDNN_DIR/include/cudnn.h" ]; then
  EXTRA+=("-DLC_CUDNN_INCLUDE=$CUDNN_DIR/include" "-DLC_CUDNN_LIB=$(ls "$CUDNN_DIR"/lib/libcudnn.so* | head -1)")
  export LD_LIBRARY_PATH="$CUDNN_DIR/lib:${LD_LIBRARY_PATH:-}"
fi
T0=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLC_ENABLE_CUDA=ON -DLC_BUILD_TESTS=OFF \
  -DLC_BUILD_PYTHON=ON -DLC_BUILD_BENCHMARKS=OFF "${EXTRA[@]}" > "$OUT/configure.log" 2>&1 || exit 1
cmake --build "$BUILD" -j16 --target _lightning_core lightning_core_py > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
echo "build took $(( $(date +%s) - T0 )) s"
export PYTHONPATH="$BUILD/python:$ROOT/python:${PYTHONPATH:-}"
Q=--quick; [ "${LC_BENCH_FULL:-0}" = 1 ] && Q=
IFS=';' read -ra ITEMS <<< "${LC_BENCH_FILTERS:-kernel:}"
i=0
for it in "${ITEMS[@]}"; do
  suite=${it%%:*}; filt=${it#*:}; i=$((i + 1))
  timeout ${LC_BENCH_ITEM_S:-60} python3 benchmarks/python/run_all.py $Q --suites "$suite" --filter "$filt" \
    --modes resident --out-dir "$OUT/r$i" > "$OUT/r$i.log" 2>&1 || echo "item $it: rc $?"
  grep -E "best LC|ours/peer" "$OUT/r$i.log" | head -20
  # The numbers themselves, in the call's output (the device tool returns few files).
  [ -f "$OUT/r$i/$suite.csv" ] && cat "$OUT/r$i/$suite.csv"
done
# One archive of everything (the tool returns at most a few files); keep only it and the logs.
TMP_TGZ=$(mktemp /tmp/bench.XXXXXX.tgz)
(cd "$OUT" && tar czf "$TMP_TGZ" . 2>/dev/null && mv "$TMP_TGZ" bench_results.tgz && \
  find . -mindepth 1 -maxdepth 1 ! -name bench_results.tgz -exec rm -rf {} +)
