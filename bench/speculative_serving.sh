#!/usr/bin/env bash
# Speculative decoding through the server: `tandem up` (1 prefill + 1 decode worker, no controller)
# without and with --speculative-ngram K, the same `tandem bench serve` load on each: closed loop
# at concurrency 1 and 16, and open loop (Poisson) at --rate. Greedy, fixed lengths, the bench's
# seeded prompt text (random vocabulary), so both configurations get identical requests.
# Writes <out>/{off,on}-{c1,c16,poisson}.json and prints TPOT/ITL/TTFT p50 and throughput.
#
# usage: bench/speculative_serving.sh [--draft K] [--rate R] [--out DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tandem="${TANDEM:-$root/build/tandem}"
draft=3
rate=0.5
out="$root/bench/results/cpu-$(hostname)-$(date +%Y-%m-%d)-speculative"
while (($#)); do
  case "$1" in
    --draft) draft="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: $0 [--draft K] [--rate R] [--out DIR]" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
port=18431
common=(--base-url "http://127.0.0.1:$port" --input-len 256 --output-len 128 --seed 5)

run_config() {  # name, extra tandem up flags...
  local name="$1"; shift
  echo "== $name: tandem up --prefill 1 --decode 1 --no-controller $*" >&2
  "$tandem" up --prefill 1 --decode 1 --no-controller --http-port "$port" --grpc-port 0 --controller-port 0 "$@" \
    > "$out/$name-up.log" 2>&1 &
  local up=$!
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
    kill -0 "$up" 2> /dev/null || { echo "tandem up exited; see $out/$name-up.log" >&2; return 1; }
    sleep 0.2
  done
  "$tandem" bench serve "${common[@]}" --max-concurrency 1 --num-prompts 12 --result-file "$out/$name-c1.json" > /dev/null
  "$tandem" bench serve "${common[@]}" --max-concurrency 16 --num-prompts 48 --result-file "$out/$name-c16.json" > /dev/null
  "$tandem" bench serve "${common[@]}" --request-rate "$rate" --num-prompts 24 --result-file "$out/$name-poisson.json" > /dev/null
  # The decode worker's draft counters, for the record (its HTTP address from tandem up's table).
  local decode_http
  decode_http="$(awk '$1 == "decode" && $2 ~ /^[0-9]+$/ {print $4; exit}' "$out/$name-up.log")"
  curl -fs "http://$decode_http/metrics" | grep '^tandem_worker_speculative_tokens_total' \
    > "$out/$name-speculative-counters.txt" || true
  kill -TERM "$up"; wait "$up" || true
}

run_config off
run_config on --speculative-ngram "$draft"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| load | speculative | TPOT p50 ms | ITL p50 ms | TTFT p50 ms | output tok/s | failed |")
print("|---|---|---|---|---|---|---|")
for load in ("c1", "c16", "poisson"):
    for name in ("off", "on"):
        s = json.load(open(f"{out}/{name}-{load}.json"))["summary"]
        print(f"| {load} | {name} | {s['tpot']['median_ms']:.1f} | {s['itl']['median_ms']:.1f} | {s['ttft']['median_ms']:.0f} | "
              f"{s['output_throughput']:.1f} | {s['failed']} |")
PY
