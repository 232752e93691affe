#!/usr/bin/env bash
# CPU benchmark: tandem's bench/engine_bench against llama.cpp's own tools as its users run them
# (llama-bench: pp512 and tg64; llama-batched-bench: decode with B = 1, 8, 32, and B = 1 from a
# long context, where attention's share of the step grows), built by
# tools/goldens/build_llama_tools.sh from the same llama.cpp version the goldens use (with the
# CPU's best kernels and, on an AVX-512 CPU, also AVX2-only: each figure is the faster), on the same
# GGUF file with the same thread count, one after the other in the same run; then bench/membw,
# the DRAM read bandwidth that gives the decode roofline (tokens/s at 100% of it for the weight
# bytes one decode step reads).
#
# Writes one JSON (default bench/results/cpu-<host>-<date>.json) with every figure, the ratios
# tandem / llama.cpp and the roofline, and prints a markdown table.
#
# usage: bench/run_cpu_bench.sh [--model PATH] [--threads N] [--repeats N] [--out FILE]
#                               [--with-llama-cpp-python]
#   --model     GGUF file (default: `tandem model fetch`, the default model)
#   --threads   threads for every engine and for the bandwidth probe (default: nproc)
#   --repeats   runs of each measurement, the median is reported (default: 3)
#   --out       result file (default: bench/results/cpu-<host>-<date>.json)
#   --long-context N
#               the long-context row's prompt tokens (default 2048; 0 skips the row)
#   --with-llama-cpp-python
#               also run the old comparison through llama-cpp-python's low-level API
#               (bench/llama_cpp_bench.py, venv from tools/goldens/setup_llama_cpp.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
threads="$(nproc)"
repeats=3
model=""
out=""
with_python=0
long_context=2048
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --long-context) long_context="$2"; shift 2 ;;
    --with-llama-cpp-python) with_python=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$root/bench/results/cpu-$(hostname)-$(date +%Y-%m-%d).json"
for t in engine_bench membw; do
  [[ -x "$build/bench/$t" ]] || cmake --build "$build" --target "$t"
done
[[ -n "$model" ]] || model="$("$build/tandem" model fetch)"
bin_dir="$("$root/tools/goldens/build_llama_tools.sh")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Runs one stage, its JSON to $tmp/<name>.json; shows its log only if it fails.
stage() {
  local name="$1"; shift
  echo "== $name ($threads threads)" >&2
  local start=$SECONDS
  if ! "$@" >"$tmp/$name.json" 2>"$tmp/$name.log"; then
    cat "$tmp/$name.log" >&2
    echo "$name failed" >&2
    exit 1
  fi
  grep -E '^  \$ ' "$tmp/$name.log" >&2 || true
  echo "   $((SECONDS - start)) s" >&2
}
stage tandem "$build/bench/engine_bench" --model "$model" --threads "$threads" \
  --repeats "$repeats" --prompt-tokens 512 --decode-steps 64 --batches 1,8,32
long=()
if ((long_context > 0)); then
  stage tandem_long "$build/bench/engine_bench" --model "$model" --threads "$threads" \
    --repeats "$repeats" --prompt-tokens 16 --decode-steps 64 --decode-context "$long_context" --batches 1
  long=(--tandem-long "$tmp/tandem_long.json")
fi
native=(--model "$model" --threads "$threads" --repeats "$repeats" --prompt-tokens 512 --decode-steps 64
  --batches 1,8,32 --long-context "$long_context")
avx512=0
grep -Eq '\bavx512_?vnni\b' /proc/cpuinfo && avx512=1
stage llama_cpp python3 "$root/bench/llama_native_bench.py" run --bin-dir "$bin_dir" \
  --label "$( ((avx512)) && echo avx512 || echo avx2)" "${native[@]}"
natives=(--native "$tmp/llama_cpp.json")
# On an AVX-512 CPU, llama.cpp's AVX2 build too: each figure's baseline is the faster build.
if ((avx512)); then
  bin_avx2="$("$root/tools/goldens/build_llama_tools.sh" --isa avx2)"
  stage llama_cpp_avx2 python3 "$root/bench/llama_native_bench.py" run --bin-dir "$bin_avx2" --label avx2 "${native[@]}"
  natives+=(--native "$tmp/llama_cpp_avx2.json")
fi
stage membw "$build/bench/membw" --threads "$threads" --repeats "$((repeats < 5 ? 5 : repeats))"
extra=()
if ((with_python)); then
  "$root/tools/goldens/setup_llama_cpp.sh"
  venv="${GOLDENS_VENV:-$root/.venv-goldens}"
  stage llama_cpp_python "$venv/bin/python" "$root/bench/llama_cpp_bench.py" --model "$model" \
    --threads "$threads" --repeats "$repeats" --prompt-tokens 512 --decode-steps 64 --batches 1,8,32
  extra=(--extra "$tmp/llama_cpp_python.json")
fi

mkdir -p "$(dirname "$out")"
python3 "$root/bench/llama_native_bench.py" report --tandem "$tmp/tandem.json" \
  "${natives[@]}" --membw "$tmp/membw.json" --out "$out" --model "$model" \
  --command "bench/run_cpu_bench.sh --threads $threads --repeats $repeats --long-context $long_context" \
  "${long[@]}" "${extra[@]}"
