#!/usr/bin/env bash
# Same-host A/B of an old and the current build on chosen benchmark cases: the no-regression check
# of #12. A cross-session comparison (compare_results.py) meets a different host each time and
# the peers' own drift; this builds both trees on one machine and times them with one harness
# (this tree's benchmarks/python) in interleaved rounds, then benchmarks/python/ab_compare.py
# says per case and LC system whether the new build is slower.
#
# Here (no GPU needed):
#   python3 benchmarks/python/compare_results.py OLD_RUN NEW_RUN --filters-out /tmp/f.txt
#   bash scripts/ab_suites.sh --pack <old commit> /tmp/f.txt
#     -> .deps/ab/old.tar.gz (git archive of the old tree, without benchmark_results and docs),
#        .deps/ab/filters.txt ('suite<TAB>filter' lines), .deps/ab/old_commit
# On the device (run tool, carry [".deps"]):
#   bash scripts/ab_suites.sh
#   LC_AB_ROUNDS  which rounds this call runs (default "1 2"; odd rounds time old then new, even
#                 rounds new then old). The rounds and both builds stay in build-ab/ (an ignored
#                 path, kept while the machine is warm), so "1" then "2" can be two calls.
#   LC_AB_MODES   oneshot,resident (default both). LC_AB_ITEM_S: limit per suite process (150).
#   LC_AB_CUDA=OFF  builds without CUDA (the CPU columns, on a machine without a GPU).
#   LC_AB_DIR / LC_AB_WORK  other folders than .deps/ab and build-ab (a second A/B beside the first).
# $OUT gets ab_report.md (every round so far) and ab_rounds.tgz (their CSV files).
set -o pipefail
ROOT=$PWD
AB=${LC_AB_DIR:-$ROOT/.deps/ab}
if [ "${1:-}" = --pack ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 --pack <old commit> [filters file]"; exit 2; }
  mkdir -p "$AB"
  git archive --format=tar.gz -o "$AB/old.tar.gz" "$2" -- . ':!benchmark_results' ':!docs' || exit 1
  git rev-parse --short "$2" > "$AB/old_commit"
  [ -n "${3:-}" ] && cp "$3" "$AB/filters.txt"
  ls -la "$AB"
  exit 0
fi
[ -f "$AB/old.tar.gz" ] && [ -f "$AB/filters.txt" ] || { echo "ab_suites: run '$0 --pack' here first"; exit 2; }
OUT=${OUT:-$ROOT/gpu_out}
mkdir -p "$OUT"
WORK=${LC_AB_WORK:-$ROOT/build-ab}
mkdir -p "$WORK/rounds"
export PYTHONUNBUFFERED=1

EXTRA=()
command -v ccache >/dev/null && EXTRA+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
CUDNN_DIR=$(python3 -c 'import nvidia.cudnn; print(list(nvidia.cudnn.__path__)[0])' 2>/dev/null)
if [ -n "$CUDNN_DIR" ] && [ -f "$CUDNN_DIR/include/cudnn.h" ]; then
  EXTRA+=("-DLC_CUDNN_INCLUDE=$CUDNN_DIR/include" "-DLC_CUDNN_LIB=$(ls "$CUDNN_DIR"/lib/libcudnn.so* | head -1)")
  export LD_LIBRARY_PATH="$CUDNN_DIR/lib:${LD_LIBRARY_PATH:-}"
fi

build() {  # build <source dir> <build dir> <name>: the Python module only
  local T0=$(date +%s)
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLC_ENABLE_CUDA=${LC_AB_CUDA:-ON} -DLC_BUILD_TESTS=OFF \
    -DLC_BUILD_PYTHON=ON -DLC_BUILD_BENCHMARKS=OFF "${EXTRA[@]}" > "$WORK/configure-$3.log" 2>&1 \
    && cmake --build "$2" -j16 > "$WORK/build-$3.log" 2>&1 \
    || { echo "ab_suites: the $3 build failed"; tail -30 "$WORK/build-$3.log"; return 1; }
  echo "$3 build: $(( $(date +%s) - T0 )) s"
}
if [ ! -d "$WORK/old-src" ]; then
  mkdir -p "$WORK/old-src" && tar xzf "$AB/old.tar.gz" -C "$WORK/old-src" || exit 1
fi
build "$WORK/old-src" "$WORK/old" old || exit 1
build "$ROOT" "$WORK/new" new || exit 1

pass() {  # pass <old|new> <round>: every suite of filters.txt, its cases as one --filter
  local side=$1 r=$2 src=$ROOT
  [ "$side" = old ] && src=$WORK/old-src
  local dir=$WORK/rounds/$side-$r
  rm -rf "$dir"; mkdir -p "$dir"
  for suite in $(cut -f1 "$AB/filters.txt" | sort -u); do
    local filt
    filt=$(awk -F'\t' -v s="$suite" '$1 == s { printf "%s%s", sep, $2; sep = "|" }' "$AB/filters.txt")
    XDG_CACHE_HOME=$WORK/cache-$side PYTHONPATH="$WORK/$side/python:$src/python" \
      timeout ${LC_AB_ITEM_S:-150} python3 benchmarks/python/run_all.py --quick --suites "$suite" \
      --filter "$filt" --modes "${LC_AB_MODES:-oneshot,resident}" --out-dir "$dir" --no-summary \
      --no-progress >> "$dir/run.log" 2>&1 || echo "$side round $r, $suite: rc $?"
  done
  echo "$side round $r: $(ls "$dir"/*.csv 2>/dev/null | wc -l) suite files"
}
for r in ${LC_AB_ROUNDS:-1 2}; do
  if [ $((r % 2)) = 1 ]; then pass old "$r"; pass new "$r"; else pass new "$r"; pass old "$r"; fi
done

echo "old tree: $(cat "$AB/old_commit" 2>/dev/null)  new tree: ${LC_GIT_COMMIT:-working tree}" > "$OUT/ab_report.md"
python3 benchmarks/python/ab_compare.py "$WORK/rounds" >> "$OUT/ab_report.md"
(cd "$WORK" && tar czf "$OUT/ab_rounds.tgz" rounds)
grep -E "^\| (slower|faster|same|incomplete) " "$OUT/ab_report.md"
grep -E "\| slower \|$" "$OUT/ab_report.md" | head -30
exit 0
