#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) in build-fuzz/ with clang and runs each for a time.
#
# usage: scripts/run_fuzzers.sh [seconds-per-target] [jobs] [target...]
#   seconds-per-target  libFuzzer's -max_total_time for each target (default 60)
#   jobs                targets run at once (default 2)
#   target...           only these (default: every tests/fuzz/fuzz_*.cc)
#
# Configures build-fuzz/ once and builds only the fuzz targets and the libraries they link (ninja
# skips what is up to date). Each target starts from its seed corpus (tests/fuzz/corpus/<target>/,
# read only) plus what earlier runs found (build-fuzz/corpus/<target>/, kept between runs), with
# its dictionary where it has one (tests/fuzz/dict/). Prints per target: executions, exec/s,
# coverage (libFuzzer's cov: edges and ft: features) and crashes. A crash, a sanitizer report,
# a timeout or running out of memory saves the input under build-fuzz/crashes/<target>/ and makes
# the script exit 1; the full log is build-fuzz/logs/<target>.log.
# Environment: FUZZ_BUILD_DIR (default build-fuzz), CC/CXX (default clang/clang++).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
jobs=${2:-2}
shift $(($# < 2 ? $# : 2))
build=${FUZZ_BUILD_DIR:-build-fuzz}
cc=${CC:-clang}
cxx=${CXX:-clang++}
[[ $cc == *clang* ]] || cc=clang
[[ $cxx == *clang* ]] || cxx=clang++

if (($# > 0)); then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/fuzz_*.cc; do targets+=("$(basename "$f" .cc)"); done
fi

if ! command -v "$cxx" >/dev/null; then
  echo "run_fuzzers: $cxx not found (scripts/setup.sh installs clang and libclang-rt-dev)" >&2
  exit 1
fi

start=$SECONDS
if [[ ! -f $build/build.ninja ]]; then
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  echo "[fuzz] configuring $build/ ($cxx, TANDEM_FUZZ=ON)"
  mkdir -p "$build"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" -DTANDEM_FUZZ=ON -DTANDEM_BUILD_TESTS=OFF \
    -DTANDEM_BUILD_BENCH=OFF -DTANDEM_CUDA=OFF >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; rm -f "$build/build.ninja"; exit 1; }
fi
echo "[fuzz] building ${targets[*]}"
build_status=0
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" 2>&1 |
  { grep -v -e '^\[[0-9]*/[0-9]*\] ' -e '^-- ' || true; } || build_status=$?
((build_status == 0)) || { echo "run_fuzzers: the build failed" >&2; exit 1; }
echo "[fuzz] build took $((SECONDS - start)) s"

# The dictionary of each target that has one.
dict_of() {
  case $1 in
    fuzz_http_request) echo tests/fuzz/dict/http.dict ;;
    fuzz_openai_request | fuzz_kube_json | fuzz_json_grammar) echo tests/fuzz/dict/json.dict ;;
    fuzz_prom_text) echo tests/fuzz/dict/prom.dict ;;
    fuzz_gguf) echo tests/fuzz/dict/gguf.dict ;;
  esac
}

# Runs one target; its log ends with libFuzzer's final stats.
run_one() {
  local t=$1 corpus=$build/corpus/$1 crashes=$build/crashes/$1 dict
  mkdir -p "$corpus" "$crashes" "$build/logs"
  dict=$(dict_of "$t")
  local args=(-max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1
              -artifact_prefix="$crashes/")
  [[ -n $dict ]] && args+=(-dict="$dict")
  UBSAN_OPTIONS=print_stacktrace=1 "$build/tests/fuzz/$t" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" \
    >"$build/logs/$t.log" 2>&1
}

# One line per target from its log: executions, exec/s, the last cov:/ft: and the crashes found.
summarize() {
  local t=$1 rc=$2 log=$build/logs/$1.log
  local execs rate cov ft crashes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  crashes=$(find "$build/crashes/$t" -type f -newer "$build/logs/.started" | wc -l)
  printf '[fuzz] %-20s executions=%-9s exec/s=%-6s cov=%-5s ft=%-6s crashes=%s%s\n' "$t" "${execs:-?}" \
    "${rate:-?}" "${cov:-?}" "${ft:-?}" "$crashes" "$( ((rc == 0)) || echo " (exit $rc; see $log)")"
  ((rc == 0 && crashes == 0))
}

mkdir -p "$build/logs"
touch "$build/logs/.started"
echo "[fuzz] running ${#targets[@]} targets for ${seconds} s each, $jobs at a time"
declare -A pid_of_target=()
failed=0
run_start=$SECONDS
next=0
while ((next < ${#targets[@]} || ${#pid_of_target[@]} > 0)); do
  while ((next < ${#targets[@]} && ${#pid_of_target[@]} < jobs)); do
    t=${targets[next]}
    next=$((next + 1))
    echo "[fuzz] start  $t"
    run_one "$t" &
    pid_of_target[$t]=$!
  done
  wait -n || true
  for t in "${!pid_of_target[@]}"; do
    pid=${pid_of_target[$t]}
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0
      wait "$pid" || rc=$?
      unset "pid_of_target[$t]"
      summarize "$t" "$rc" || failed=$((failed + 1))
    fi
  done
done
echo "[fuzz] runs took $((SECONDS - run_start)) s, $((SECONDS - start)) s in all"
if ((failed > 0)); then
  echo "[fuzz] $failed target(s) failed; inputs in $build/crashes/, reproduce with $build/tests/fuzz/<target> <input>" >&2
  exit 1
fi
echo "[fuzz] no crashes"
