#!/bin/bash
# One config of 1p1d (with or without the cost rule) at chat 1.5 req/s, then the router's prefill-mode counter.
set -u
cd /work/main
M=/root/.cache/tandem/models/SmolLM2-135M-Instruct.Q4_1.gguf
name=$1; shift
port=$((42000 + RANDOM % 1000))
build/tandem up --model $M --http-port $port --grpc-port 0 --controller-port 0 --prefill 1 --decode 1 --no-controller --threads 1 "$@" > /tmp/costrun/$name-cluster.log 2>&1 &
up=$!
for i in $(seq 60); do curl -sf http://127.0.0.1:$port/v1/models >/dev/null && break; sleep 1; done
build/tandem bench serve --base-url http://127.0.0.1:$port --tokenizer $M --goodput 'ttft:2000 tpot:100' --workload chat --num-prompts 40 --seed 2000 --request-rate 1.5 --result-file /tmp/costrun/$name.json > /tmp/costrun/$name-bench.log 2>&1
curl -s http://127.0.0.1:$port/metrics | grep "^tandem_router_prefills_total" > /tmp/costrun/$name-metrics.txt
kill -INT $up; wait $up
echo "$name: $(python3 -c "import json;s=json.load(open('/tmp/costrun/$name.json'))['summary'];print('attainment',s['goodput']['attainment'],'ttft p50',s['ttft']['median_ms'],'p99',s['ttft']['p99_ms'],'tpot p50',s['tpot']['median_ms'],'p99',s['tpot']['p99_ms'])")"
cat /tmp/costrun/$name-metrics.txt
