#!/bin/bash
# The old binary is a build of b9aaf64 copied to /tmp/tandem-bench, the new one of 2fd03b3 to /tmp/tandem-new.
# old (b9aaf64) vs new (PickLocal) router: 2 mixed workers, chat workload open loop
M=/root/.cache/tandem/models/SmolLM2-135M-Instruct.Q4_1.gguf
for rep in 1 2; do
for name in old new; do
  bin=/tmp/tandem-bench; [ $name = new ] && bin=/tmp/tandem-new
  $bin up --model $M --mixed 2 --prefill 0 --decode 0 --no-controller --threads 1 --http-port 8123 > up-$name-$rep.log 2>&1 &
  pid=$!
  for i in $(seq 60); do curl -sf http://127.0.0.1:8123/v1/models >/dev/null && break; sleep 1; done
  sleep 2
  $bin bench serve --base-url http://127.0.0.1:8123 --workload chat --request-rate 1.2 --num-prompts 150 --seed $rep --goodput "ttft:2000 tpot:200" --result-file $name-$rep.json > bench-$name-$rep.txt 2>&1
  curl -s http://127.0.0.1:8123/metrics > metrics-$name-$rep.txt
  kill -INT $pid; wait $pid
done
done
