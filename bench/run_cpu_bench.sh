#!/usr/bin/env bash
# CPU benchmark: tandem and llama.cpp (llama-cpp-python, built by tools/goldens/setup_llama_cpp.sh)
# on the same GGUF file with the same thread count, one after the other in the same run.
# Writes bench/results/cpu-<host>-<date>.json with both results and the ratios, and prints them.
#
# usage: bench/run_cpu_bench.sh [--model PATH] [--threads N] [--repeats N]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
threads="$(nproc)"
repeats=3
model=""
while (($#)); do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    *) echo "usage: $0 [--model PATH] [--threads N] [--repeats N]" >&2; exit 2 ;;
  esac
done
[[ -x "$build/bench/engine_bench" ]] || cmake --build "$build" --target engine_bench
[[ -n "$model" ]] || model="$("$build/tandem" model fetch)"
"$root/tools/goldens/setup_llama_cpp.sh"
venv="${GOLDENS_VENV:-$root/.venv-goldens}"

common=(--model "$model" --threads "$threads" --repeats "$repeats" --prompt-tokens 512 --decode-steps 64 --batches 1,8,32)
echo "running tandem ($threads threads)..." >&2
tandem_json="$("$build/bench/engine_bench" "${common[@]}" 2>/dev/null)"
echo "running llama.cpp ($threads threads)..." >&2
llama_json="$("$venv/bin/python" "$root/bench/llama_cpp_bench.py" "${common[@]}")"

mkdir -p "$root/bench/results"
out="$root/bench/results/cpu-$(hostname)-$(date +%Y-%m-%d).json"
python3 - "$out" "$model" <<PY
import json, platform, subprocess, sys
out, model = sys.argv[1], sys.argv[2]
tandem = json.loads('''$tandem_json''')
llama = json.loads('''$llama_json''')
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
ratios = {"prefill": tandem["prefill_tokens_per_s"] / llama["prefill_tokens_per_s"]}
for b in tandem["decode_tokens_per_s"]:
    ratios[f"decode_batch_{b}"] = tandem["decode_tokens_per_s"][b] / llama["decode_tokens_per_s"][b]
result = {"cpu": cpu, "cores": subprocess.check_output(["nproc"], text=True).strip(), "model": model,
          "command": "bench/run_cpu_bench.sh", "tandem": tandem, "llama_cpp": llama,
          "ratio_tandem_over_llama_cpp": ratios}
json.dump(result, open(out, "w"), indent=2)
print(f"wrote {out}")
print(f"{'':22}{'tandem':>12}{'llama.cpp':>12}{'ratio':>8}")
print(f"{'prefill tok/s (512)':22}{tandem['prefill_tokens_per_s']:12.1f}{llama['prefill_tokens_per_s']:12.1f}{ratios['prefill']:8.2f}")
for b in tandem["decode_tokens_per_s"]:
    t, l = tandem["decode_tokens_per_s"][b], llama["decode_tokens_per_s"][b]
    print(f"{'decode tok/s batch ' + b:22}{t:12.1f}{l:12.1f}{t / l:8.2f}")
PY
