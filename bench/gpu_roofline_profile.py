#!/usr/bin/env python3
"""Writes a `tandem plan` profile for a GPU worker from published peak figures and a model's
shape - a roofline estimate, NOT a measurement. It stands in until `tandem profile --device
cuda` has run on a real GPU (issue 13); every assumption is a flag and is recorded in the file.

Iteration cost (src/sim/cost_model.h), per worker = one GPU:
  per_token_s       2 x (parameters - embedding - output head) FLOPs / (peak x --compute-eff)
  per_sample_s      2 x output-head parameters FLOPs / (peak x --compute-eff)
  per_attention_s   4 x layers x heads x head_dim FLOPs per query-key pair / (peak x --compute-eff)
  per_kv_read_s     KV bytes per token / (HBM bandwidth x --memory-eff)
  min_iteration_s   weight bytes / (HBM bandwidth x --memory-eff): a decode step reads every weight
  fixed_s           --fixed-ms (launch and scheduling overhead per iteration)
Transfer: --transfer-gbps and --transfer-latency-ms (the defaults: half of a 400 Gb/s NIC, RDMA).

Defaults: an H100 SXM (989.4 TFLOP/s dense BF16, 3.35 TB/s HBM3, NVIDIA's datasheet) serving
Llama-3-8B in BF16 (32 layers, hidden 4096, 32 heads, 8 KV heads, head dim 128, vocabulary
128256, 8.03 B parameters, untied output head).

  bench/gpu_roofline_profile.py --out bench/profiles/h100-llama3-8b-roofline.json
"""
import argparse
import datetime
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device-name", default="H100 SXM")
    ap.add_argument("--peak-tflops", type=float, default=989.4, help="dense BF16 TFLOP/s")
    ap.add_argument("--hbm-tbps", type=float, default=3.35, help="HBM bandwidth, TB/s")
    ap.add_argument("--compute-eff", type=float, default=0.5, help="share of peak FLOP/s reached by GEMMs and attention")
    ap.add_argument("--memory-eff", type=float, default=0.7, help="share of HBM bandwidth reached by decode")
    ap.add_argument("--fixed-ms", type=float, default=0.3, help="per-iteration overhead, ms")
    ap.add_argument("--model-name", default="Llama-3-8B (bf16)")
    ap.add_argument("--params", type=float, default=8.03e9)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--context", type=int, default=8192)
    ap.add_argument("--dtype-bytes", type=int, default=2)
    ap.add_argument("--transfer-gbps", type=float, default=25.0, help="KV transfer bandwidth, GB/s")
    ap.add_argument("--transfer-latency-ms", type=float, default=0.1)
    a = ap.parse_args()

    flops = a.peak_tflops * 1e12 * a.compute_eff
    hbm = a.hbm_tbps * 1e12 * a.memory_eff
    head_params = a.vocab * a.hidden
    body_params = a.params - 2 * head_params  # embedding table and output head
    kv_bytes_per_token = 2 * a.layers * a.kv_heads * a.head_dim * a.dtype_bytes
    weight_bytes = int(a.params * a.dtype_bytes)
    cost = {
        "fixed_s": a.fixed_ms / 1e3,
        "per_token_s": 2 * body_params / flops,
        "per_sample_s": 2 * head_params / flops,
        "per_attention_pair_s": 4 * a.layers * a.heads * a.head_dim / flops,
        "per_kv_read_token_s": kv_bytes_per_token / hbm,
        "min_iteration_s": weight_bytes / hbm,
    }
    assumptions = {k: v for k, v in vars(a).items() if k != "out"}
    profile = {
        "kind": "tandem-profile", "schema_version": 1,
        "machine": f"analytic roofline of {a.device_name} ({a.peak_tflops} TFLOP/s BF16 x {a.compute_eff}, "
                   f"{a.hbm_tbps} TB/s x {a.memory_eff}): published peaks and assumed efficiencies, not measured",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "assumptions": assumptions,
        "model": {"name": a.model_name, "kv_bytes_per_token": kv_bytes_per_token, "weight_bytes": weight_bytes,
                  "context_length": a.context},
        "transfer": {"latency_s": a.transfer_latency_ms / 1e3, "bytes_per_s": a.transfer_gbps * 1e9,
                     "source": f"assumed: {a.transfer_gbps} GB/s, {a.transfer_latency_ms} ms"},
        "workers": [{"device": "cuda", "threads": 0, "iteration_cost": cost, "fit": {}, "samples": []}],
    }
    with open(a.out, "w") as f:
        json.dump(profile, f, indent=1)
        f.write("\n")
    print(json.dumps(cost, indent=1))


if __name__ == "__main__":
    main()
