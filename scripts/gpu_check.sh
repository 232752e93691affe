#!/usr/bin/env bash
# One command for a GPU machine: configure a CUDA Release build, build everything, run the GPU
# tests (ctest -L gpu, TANDEM_REQUIRE_GPU=1 so a skip is a failure) with the bundled model, run
# every GPU benchmark, and collect nvidia-smi, build/ctest logs and the benchmarks' JSON in $OUT.
# Never stops early: every step runs; the exit status is non-zero if any step failed (the list is
# in $OUT/summary.txt).
#
#   scripts/gpu_check.sh                 # results in ./gpu-results
#   OUT=/tmp/r BUILD_DIR=build-gpu JOBS=16 TANDEM_MODEL=/path/model.gguf scripts/gpu_check.sh
#
# Environment: OUT (results, default ./gpu-results), BUILD_DIR (default build-gpu), JOBS (default
# nproc), TANDEM_MODEL (skip `tandem model fetch`), SKIP_SETUP=1 (do not run scripts/setup.sh),
# CUDA_ARCHITECTURES (default: CMake's default from cmake/TandemCuda.cmake, 90 = Hopper).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1
OUT=${OUT:-$repo/gpu-results}
BUILD_DIR=${BUILD_DIR:-build-gpu}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case "$BUILD_DIR" in /*) build="$BUILD_DIR" ;; *) build="$repo/$BUILD_DIR" ;; esac

failures=()
summary="$OUT/summary.txt"
: >"$summary"

# step NAME LOGFILE COMMAND...: runs it, logs stdout+stderr to $OUT/LOGFILE, records the outcome.
step() {
  local name=$1 log=$2
  shift 2
  echo "== $name: $*" | tee -a "$summary"
  local start=$SECONDS
  "$@" >"$OUT/$log" 2>&1
  local rc=$?
  echo "   rc=$rc ($((SECONDS - start)) s, log $log)" | tee -a "$summary"
  if ((rc != 0)); then
    failures+=("$name (rc=$rc)")
    tail -n 20 "$OUT/$log" | sed 's/^/   | /'
  fi
  return $rc
}

# --- the machine -----------------------------------------------------------------------------
{
  date -u
  uname -a
  nvidia-smi || echo "nvidia-smi failed (rc=$?)"
  nvidia-smi topo -m || true
  nvidia-smi -q || true
} >"$OUT/nvidia-smi.txt" 2>&1
if ! nvidia-smi -L >>"$summary" 2>&1; then failures+=("nvidia-smi (no GPU or no driver)"); fi
{ command -v nvcc && nvcc --version; } >"$OUT/nvcc.txt" 2>&1 ||
  { [ -x /usr/local/cuda/bin/nvcc ] && /usr/local/cuda/bin/nvcc --version >"$OUT/nvcc.txt" 2>&1; }
git -C "$repo" rev-parse HEAD >"$OUT/git-rev.txt" 2>&1 || true
git -C "$repo" status --short >>"$OUT/git-rev.txt" 2>&1 || true

# --- dependencies, configure, build ------------------------------------------------------------
if [[ "${SKIP_SETUP:-0}" != 1 ]]; then
  step setup setup.log "$repo/scripts/setup.sh"
fi
cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON)
command -v ninja >/dev/null && cmake_args+=(-G Ninja)
[[ -n "${CUDA_ARCHITECTURES:-}" ]] && cmake_args+=("-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES")
# An existing build dir keeps its generator.
[[ -f "$build/CMakeCache.txt" ]] && cmake_args=(-S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON)
step configure configure.log cmake "${cmake_args[@]}"
step build build.log cmake --build "$build" -j "$JOBS"

# --- the bundled model -------------------------------------------------------------------------
if [[ -z "${TANDEM_MODEL:-}" ]]; then
  if [[ -x "$build/tandem" ]] && model=$("$build/tandem" model fetch 2>"$OUT/model-fetch.log" | tail -n 1) &&
    [[ -n "$model" && -f "$model" ]]; then
    export TANDEM_MODEL="$model"
  else
    failures+=("model fetch (set TANDEM_MODEL; see model-fetch.log)")
  fi
fi
echo "model: ${TANDEM_MODEL:-<none>}" | tee -a "$summary"

# --- GPU tests ---------------------------------------------------------------------------------
export TANDEM_REQUIRE_GPU=1
[[ -n "${TANDEM_MODEL:-}" ]] && export TANDEM_REQUIRE_MODEL=1
# --no-tests=error: a build in which no test carries the label must not pass.
step ctest-gpu ctest-gpu.txt ctest --test-dir "$build" -L gpu --no-tests=error --output-on-failure \
  --timeout 900 --output-junit "$OUT/ctest-gpu-junit.xml"

# --- GPU benchmarks ----------------------------------------------------------------------------
run_bench() {  # name binary args...
  local name=$1 bin=$2
  shift 2
  if [[ ! -x "$bin" ]]; then
    echo "== $name: $bin was not built" | tee -a "$summary"
    failures+=("$name (not built)")
    return
  fi
  step "$name" "$name.log" "$bin" --out "$OUT/$name.json" "$@"
}
run_bench gpu_kv_transfer_bench "$build/bench/gpu_transfer/gpu_kv_transfer_bench"
run_bench gpu_model_bench "$build/bench/gpu/gpu_model_bench"

# --- verdict -----------------------------------------------------------------------------------
if ((${#failures[@]} == 0)); then
  echo "gpu_check: everything passed; results in $OUT" | tee -a "$summary"
  exit 0
fi
{
  echo "gpu_check: ${#failures[@]} step(s) failed:"
  printf '  - %s\n' "${failures[@]}"
  echo "results in $OUT"
} | tee -a "$summary"
exit 1
