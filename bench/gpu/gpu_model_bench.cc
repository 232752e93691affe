// Decode and prefill speed of a Llama-3-8B-shaped model (32 layers, hidden 4096, 32 heads,
// 8 KV heads, FFN 14336, vocab 128256, bf16 weights and KV) on the CUDA backend, with random
// weights made on the device (no model file). Reports:
//  * decode: one iteration (a batch of B sequences, one token each, every sequence at
//    context C) timed end to end on the host (BeginForward .. ReadFloat), median of --iters;
//    bytes = every weight matrix once + B rows of the embedding + the KV read (B * C tokens *
//    bytes per token over all layers); achieved bandwidth as a fraction of the device's peak,
//    peak = memory clock (kHz) * 1000 * bus width (bits) / 8 * 2 (double data rate).
//  * prefill: one sequence of --prefill-tokens tokens in one forward pass; FLOPs = 2 * tokens *
//    layer matrix parameters + 2 * lm-head parameters (one logit row) + attention
//    (4 * head_dim * heads * tokens * (tokens + 1) / 2 per layer); TFLOP/s as a fraction of the
//    dense bf16 peak by device name (H100 SXM / H200: 989 TFLOP/s; H100 PCIe: 756).
//
// Usage: gpu_model_bench --out results.json [--iters 10] [--layers 32] [--batches 1,8,64]
//        [--contexts 1024,8192] [--prefill-tokens 2048] [--graphs]
// --graphs turns on CUDA graphs for the decode iterations (the warm-up passes capture them).
// Without a CUDA device it says so, writes {"skipped": ...} to --out and exits 0.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "engine/backends/cuda/cuda_backend.h"
#include "kernels/elementwise_kernels.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

struct Shape {
  int layers = 32, hidden = 4096, heads = 32, kv_heads = 8, head_dim = 128, ffn = 14336, vocab = 128256;
  int block_size = 16;
  float eps = 1e-5f;
};

struct Flags {
  std::string out;
  int iters = 10;
  int layers = 32;
  std::vector<int> batches = {1, 8, 64};
  std::vector<int> contexts = {1024, 8192};
  int prefill_tokens = 2048;
  bool graphs = false;
};

std::vector<int> ParseList(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) v.push_back(std::stoi(item));
  return v;
}

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--out") f->out = value();
    else if (a == "--iters") f->iters = std::stoi(value());
    else if (a == "--layers") f->layers = std::stoi(value());
    else if (a == "--batches") f->batches = ParseList(value());
    else if (a == "--contexts") f->contexts = ParseList(value());
    else if (a == "--prefill-tokens") f->prefill_tokens = std::stoi(value());
    else if (a == "--graphs") f->graphs = true;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return false;
    }
  }
  if (f->out.empty()) {
    std::fprintf(stderr, "usage: gpu_model_bench --out FILE.json [--iters N] [--layers N] [--batches 1,8,64] "
                         "[--contexts 1024,8192] [--prefill-tokens 2048] [--graphs]\n");
    return false;
  }
  return f->iters > 0 && f->layers > 0;
}

void WriteJson(const std::string& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump(2) << "\n";
}

#define BENCH_CHECK(expr)                                                                   \
  do {                                                                                      \
    if (auto s_ = (expr); !s_.ok()) {                                                       \
      std::fprintf(stderr, "gpu_model_bench: %s: %s\n", #expr, std::string(s_.message()).c_str()); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "gpu_model_bench: %s: %s\n", what, std::string(v.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*v);
}

// The model written over the Backend ops, as engine/llama_model.cc does.
class Model {
 public:
  Model(cuda::CudaBackend& b, const Shape& s) : b_(b), s_(s) {
    const int64_t q_dim = int64_t{s.heads} * s.head_dim, kv_dim = int64_t{s.kv_heads} * s.head_dim;
    uint64_t seed = 1;
    auto mat = [&](int64_t out, int64_t in) {
      auto w = Must(b.RandomMatrix(out, in, seed++, 1.0f / std::sqrt(static_cast<float>(in))), "weight");
      weight_bytes_ += w->resident_bytes();
      return w;
    };
    embd_ = Must(b.RandomMatrix(s.vocab, s.hidden, seed++, 1.0f), "embedding");
    output_ = mat(s.vocab, s.hidden);
    out_norm_ = Must(b.ConstantVector(s.hidden, 1.0f), "norm");
    for (int i = 0; i < s.layers; ++i) {
      Layer L;
      L.attn_norm = Must(b.ConstantVector(s.hidden, 1.0f), "norm");
      L.ffn_norm = Must(b.ConstantVector(s.hidden, 1.0f), "norm");
      L.wq = mat(q_dim, s.hidden);
      L.wk = mat(kv_dim, s.hidden);
      L.wv = mat(kv_dim, s.hidden);
      L.wo = mat(s.hidden, q_dim);
      L.gate = mat(s.ffn, s.hidden);
      L.up = mat(s.ffn, s.hidden);
      L.down = mat(s.hidden, s.ffn);
      layers_.push_back(std::move(L));
    }
    RopeConfig rope;
    rope.rotary_dim = s.head_dim;
    rope.theta = 500000.0f;
    rope.max_positions = 8192 * 2;
    BENCH_CHECK(b.SetRope(rope));
  }
  int64_t weight_bytes() const { return weight_bytes_; }  // matrices (lm head included)
  int64_t layer_params() const { return (weight_bytes_ - output_->resident_bytes()) / 2; }
  int64_t head_params() const { return output_->resident_bytes() / 2; }

  void EnsureWorkspace(int64_t rows, int64_t logit_rows) {
    if (rows <= ws_rows_ && logit_rows <= ws_logit_rows_) return;
    rows = std::max(rows, ws_rows_);
    logit_rows = std::max(logit_rows, ws_logit_rows_);
    const int64_t q_dim = int64_t{s_.heads} * s_.head_dim, kv_dim = int64_t{s_.kv_heads} * s_.head_dim;
    ws_.clear();
    for (int64_t cols : {int64_t{s_.hidden}, int64_t{s_.hidden}, int64_t{s_.hidden}, q_dim, kv_dim, kv_dim, q_dim,
                         int64_t{s_.ffn}, int64_t{s_.ffn}, int64_t{s_.ffn}}) {
      ws_.push_back(Must(b_.Allocate(DType::kF32, rows, cols), "workspace"));
    }
    ws_.push_back(Must(b_.Allocate(DType::kF32, logit_rows, s_.hidden), "workspace"));
    ws_.push_back(Must(b_.Allocate(DType::kF32, logit_rows, s_.vocab), "workspace"));
    ws_rows_ = rows;
    ws_logit_rows_ = logit_rows;
  }

  absl::Status Forward(const ForwardBatch& batch, KvCacheStorage& cache, float* logits) {
    const int64_t n = batch.num_tokens(), m = static_cast<int64_t>(batch.logit_rows.size());
    EnsureWorkspace(n, m);
    TANDEM_RETURN_IF_ERROR(b_.BeginForward(batch));
    auto t = [&](int i) { return ws_[i]->tensor().Rows(0, i >= 10 ? m : n); };
    const Tensor x = t(0), h = t(1), delta = t(2), q = t(3), k = t(4), v = t(5), attn = t(6), gate = t(7),
                 up = t(8), act = t(9), sel = t(10), out = t(11);
    const float scale = 1.0f / std::sqrt(static_cast<float>(s_.head_dim));
    b_.Embed(*embd_, x);
    for (int i = 0; i < s_.layers; ++i) {
      const Layer& L = layers_[i];
      if (i == 0) b_.RmsNorm(x, *L.attn_norm, s_.eps, h);
      else b_.AddRmsNorm(x, delta, *L.attn_norm, s_.eps, h);
      const WeightMatrix* qkv[] = {L.wq.get(), L.wk.get(), L.wv.get()};
      const Tensor qkv_out[] = {q, k, v};
      b_.MatMul(h, qkv, qkv_out);
      b_.RopeAndStoreKv(q, k, v, cache, i);
      b_.Attention(q, cache, i, s_.heads, scale, attn);
      const WeightMatrix* wo[] = {L.wo.get()};
      const Tensor wo_out[] = {delta};
      b_.MatMul(attn, wo, wo_out);
      b_.AddRmsNorm(x, delta, *L.ffn_norm, s_.eps, h);
      const WeightMatrix* gu[] = {L.gate.get(), L.up.get()};
      const Tensor gu_out[] = {gate, up};
      b_.MatMul(h, gu, gu_out);
      b_.SwiGlu(gate, up, act);
      const WeightMatrix* down[] = {L.down.get()};
      const Tensor down_out[] = {delta};
      b_.MatMul(act, down, down_out);
    }
    b_.AddRmsNorm(x, delta, *out_norm_, s_.eps, h);
    b_.GatherLogitRows(h, sel);
    const WeightMatrix* head[] = {output_.get()};
    const Tensor head_out[] = {out};
    b_.MatMul(sel, head, head_out);
    return b_.ReadFloat(out, logits);
  }

 private:
  struct Layer {
    std::unique_ptr<DeviceBuffer> attn_norm, ffn_norm;
    std::unique_ptr<WeightMatrix> wq, wk, wv, wo, gate, up, down;
  };
  cuda::CudaBackend& b_;
  Shape s_;
  std::unique_ptr<WeightMatrix> embd_, output_;
  std::unique_ptr<DeviceBuffer> out_norm_;
  std::vector<Layer> layers_;
  std::vector<std::unique_ptr<DeviceBuffer>> ws_;
  int64_t ws_rows_ = 0, ws_logit_rows_ = 0;
  int64_t weight_bytes_ = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Times `iters` forward passes of `batch` after 3 warm-up passes; median seconds.
double TimeForward(Model& model, const ForwardBatch& batch, KvCacheStorage& cache, int iters, int vocab) {
  std::vector<float> logits(batch.logit_rows.size() * static_cast<size_t>(vocab));
  std::vector<double> times;
  for (int i = 0; i < 3 + iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    BENCH_CHECK(model.Forward(batch, cache, logits.data()));
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 3) times.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  for (float x : logits) {
    if (!std::isfinite(x)) {
      std::fprintf(stderr, "gpu_model_bench: non-finite logit\n");
      std::exit(1);
    }
  }
  return Median(times);
}

}  // namespace
}  // namespace tandem

int main(int argc, char** argv) {
  using namespace tandem;
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "gpu_model_bench: no CUDA device found; nothing to measure\n");
    WriteJson(flags.out, {{"skipped", "no CUDA device"}});
    return 0;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  int mem_clock_khz = 0, bus_bits = 0;
  cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, 0);
  cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0);
  const double peak_bw = static_cast<double>(mem_clock_khz) * 1000.0 * (bus_bits / 8.0) * 2.0;
  const std::string name = prop.name;
  double peak_tflops = 0;  // dense bf16
  if (name.find("H100") != std::string::npos) peak_tflops = name.find("PCIe") != std::string::npos ? 756 : 989;
  if (name.find("H200") != std::string::npos) peak_tflops = 989;
  std::printf("device %s: peak HBM %.0f GB/s (clock %d kHz x %d bits x 2), dense bf16 peak %.0f TFLOP/s\n",
              name.c_str(), peak_bw / 1e9, mem_clock_khz, bus_bits, peak_tflops);

  Shape shape;
  shape.layers = flags.layers;
  cuda::CudaBackendOptions options;
  options.cuda_graphs = flags.graphs;
  auto backend = Must(cuda::CudaBackend::Create(options), "CUDA backend");
  Model model(*backend, shape);
  nlohmann::json out;
  out["device"] = name;
  out["peak_bandwidth_bytes_per_s"] = peak_bw;
  out["peak_bandwidth_source"] = "cudaDevAttrMemoryClockRate * 1000 * cudaDevAttrGlobalMemoryBusWidth / 8 * 2";
  out["peak_bf16_tflops"] = peak_tflops;
  out["cuda_graphs"] = flags.graphs;
  out["model"] = {{"layers", shape.layers}, {"hidden", shape.hidden}, {"heads", shape.heads},
                  {"kv_heads", shape.kv_heads}, {"ffn", shape.ffn}, {"vocab", shape.vocab},
                  {"weights", "bf16, random"}, {"kv", "bf16"}, {"weight_bytes", model.weight_bytes()}};

  KvCacheLayout layout;
  layout.num_layers = shape.layers;
  layout.num_kv_heads = shape.kv_heads;
  layout.head_dim = shape.head_dim;
  layout.block_size = shape.block_size;
  layout.dtype = DType::kBF16;
  std::mt19937 rng(1);
  for (int C : flags.contexts) {
    for (int B : flags.batches) {
      const int64_t bps = (C + shape.block_size - 1) / shape.block_size;
      const int64_t blocks = B * bps;
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      nlohmann::json r = {{"batch", B}, {"context", C}};
      if (blocks * layout.bytes_per_block() + (2LL << 30) > static_cast<int64_t>(free_b)) {
        r["skipped"] = "KV cache does not fit in device memory";
        r["kv_bytes"] = blocks * layout.bytes_per_block();
        std::printf("decode B=%d C=%d: skipped (KV cache of %.1f GiB does not fit)\n", B, C,
                    blocks * layout.bytes_per_block() / 1073741824.0);
        out["decode"].push_back(r);
        continue;
      }
      auto cache = Must(backend->CreateKvCache(layout, blocks), "KV cache");
      // Random KV contents (timing on zeros can mislead).
      if (kernels::LaunchFillRandomBf16(reinterpret_cast<__nv_bfloat16*>(cache->device_base()),
                                        blocks * layout.bytes_per_block() / 2, 99, 1.0f, backend->stream()) != 0) {
        std::fprintf(stderr, "gpu_model_bench: filling the KV cache failed\n");
        return 1;
      }
      BENCH_CHECK(backend->Synchronize());
      ForwardBatch batch;
      for (int s = 0; s < B; ++s) {
        const int pos = C - 1;
        batch.tokens.push_back(static_cast<int32_t>(rng() % shape.vocab));
        batch.positions.push_back(pos);
        batch.slot_mapping.push_back(static_cast<int32_t>((s * bps + pos / shape.block_size) * shape.block_size +
                                                          pos % shape.block_size));
        ForwardSequence seq;
        seq.query_start = s;
        seq.query_len = 1;
        seq.context_len = C;
        for (int64_t b = 0; b < bps; ++b) seq.block_table.push_back(static_cast<int32_t>(s * bps + b));
        batch.sequences.push_back(std::move(seq));
        batch.logit_rows.push_back(s);
      }
      const double t = TimeForward(model, batch, *cache, flags.iters, shape.vocab);
      const double bytes = static_cast<double>(model.weight_bytes()) + 2.0 * B * shape.hidden +
                           static_cast<double>(B) * C * layout.bytes_per_token();
      r["iteration_ms"] = t * 1e3;
      r["bytes"] = bytes;
      r["achieved_bytes_per_s"] = bytes / t;
      r["fraction_of_peak_bandwidth"] = bytes / t / peak_bw;
      r["tokens_per_s"] = B / t;
      std::printf("decode B=%-3d C=%-5d %8.2f ms  %7.0f GB/s  %.2f of peak\n", B, C, t * 1e3, bytes / t / 1e9,
                  bytes / t / peak_bw);
      out["decode"].push_back(r);
    }
  }
  {
    const int T = flags.prefill_tokens;
    const int64_t bps = (T + shape.block_size - 1) / shape.block_size;
    auto cache = Must(backend->CreateKvCache(layout, bps), "KV cache");
    ForwardBatch batch;
    ForwardSequence seq;
    seq.query_start = 0;
    seq.query_len = T;
    seq.context_len = T;
    for (int64_t b = 0; b < bps; ++b) seq.block_table.push_back(static_cast<int32_t>(b));
    for (int i = 0; i < T; ++i) {
      batch.tokens.push_back(static_cast<int32_t>(rng() % shape.vocab));
      batch.positions.push_back(i);
      batch.slot_mapping.push_back(i);
    }
    batch.sequences.push_back(seq);
    batch.logit_rows = {T - 1};
    const double t = TimeForward(model, batch, *cache, std::max(1, flags.iters / 2), shape.vocab);
    const double flops = 2.0 * T * model.layer_params() + 2.0 * model.head_params() +
                         4.0 * shape.head_dim * shape.heads * (T * (T + 1.0) / 2) * shape.layers;
    nlohmann::json r = {{"tokens", T}, {"seconds", t}, {"flops", flops}, {"tflops", flops / t / 1e12}};
    if (peak_tflops > 0) r["fraction_of_peak_bf16"] = flops / t / 1e12 / peak_tflops;
    std::printf("prefill T=%d: %.1f ms, %.1f TFLOP/s (%.2f of %.0f)\n", T, t * 1e3, flops / t / 1e12,
                peak_tflops > 0 ? flops / t / 1e12 / peak_tflops : 0.0, peak_tflops);
    out["prefill"] = r;
  }
  WriteJson(flags.out, out);
  return 0;
}
