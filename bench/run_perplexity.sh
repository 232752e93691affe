#!/usr/bin/env bash
# Perplexity of one GGUF file over one text under tandem and under llama.cpp's llama-perplexity
# (built from the vendored source, bench/setup_llama_server.sh), same file, text, context and
# threads, one after the other; prints both values, their ratio and each tool's time.
#
# usage: bench/run_perplexity.sh [--model GGUF] [--file TEXT] [--ctx N] [--threads N] [--build DIR]
#   defaults: the bundled model, /usr/share/common-licenses/GPL-3 (on every Debian machine),
#   ctx 512, 2 threads, build/
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="" file=/usr/share/common-licenses/GPL-3 ctx=512 threads=2 build="$root/build"
while (($#)); do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --file) file="$2"; shift 2 ;;
    --ctx) ctx="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    *) sed -n 2,9p "$0" >&2; exit 2 ;;
  esac
done
tandem="$build/tandem"
[[ -x "$tandem" ]] || cmake --build "$build" --target tandem
[[ -n "$model" ]] || model="$("$tandem" model fetch 2>/dev/null | tail -1)"
llama="$(bash "$root/bench/setup_llama_server.sh" --target llama-perplexity)"
echo "model $model, text $file, ctx $ctx, $threads threads" >&2
t0=$(date +%s.%N)
ours="$("$tandem" perplexity --model "$model" --file "$file" --ctx "$ctx" --threads "$threads" | tail -1 | awk '{print $2}')"
t1=$(date +%s.%N)
theirs="$("$llama" -m "$model" -f "$file" -c "$ctx" -t "$threads" 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')"
t2=$(date +%s.%N)
python3 - "$ours" "$theirs" "$t0" "$t1" "$t2" <<'PY'
import sys
ours, theirs, t0, t1, t2 = map(float, sys.argv[1:])
print(f"tandem     perplexity {ours:.4f}  ({t1 - t0:.1f} s)")
print(f"llama.cpp  perplexity {theirs:.4f}  ({t2 - t1:.1f} s)")
print(f"tandem / llama.cpp: {ours / theirs:.4f} ({100 * (ours / theirs - 1):+.2f}%)")
PY
