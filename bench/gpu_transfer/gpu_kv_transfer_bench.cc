// KV transfer bandwidth over CUDA IPC between two processes on one GPU, against cudaMemcpy
// device-to-device in the same run. A Llama-3-8B-shaped block (32 layers x 8 KV heads x head dim
// 128 x 16 tokens, bf16 = 2 MiB); transfers of 1/16/64/256 blocks, destination blocks contiguous
// (one copy per transfer after coalescing) and scattered (one copy per block). A transfer is timed
// from StartTransfer to Finish's callback: handshake, lease pin, copies, stream sync, end ack.
//
//   gpu_kv_transfer_bench [--out FILE] [--iters N] [--device D]
//
// This process is the decode side (exports the pool); it re-runs itself with --role=sender as the
// prefill side. Without a usable CUDA device it says so, writes {"skipped": ...} to --out and
// exits 0 (1 under TANDEM_REQUIRE_GPU=1).
#include <cuda_runtime.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/child_process.h"
#include "nlohmann/json.hpp"
#include "transfer/cuda_ipc/cuda_ipc_kv_transport.h"

namespace {

using namespace tandem;
using namespace tandem::transfer;
using nlohmann::json;

constexpr int64_t kPoolBlocks = 256;
const std::vector<int> kSizes = {1, 16, 64, 256};

KvLayoutInfo Llama8bLayout() {
  KvLayoutInfo l;
  l.model_id = "llama-3-8b-shape";
  l.layout = {32, 8, 128, 16, DType::kBF16};
  l.block_format = "bench/raw";
  return l;
}

class DevicePool final : public KvCacheStorage {
 public:
  DevicePool(const KvLayoutInfo& l, int64_t blocks, int device) : device_(device) {
    layout_ = l.layout;
    num_blocks_ = blocks;
    cudaSetDevice(device);
    void* p = nullptr;
    if (cudaMalloc(&p, static_cast<size_t>(blocks * layout_.bytes_per_block())) == cudaSuccess) {
      base_ = static_cast<uint8_t*>(p);
      cudaMemset(base_, 0x3c, static_cast<size_t>(blocks * layout_.bytes_per_block()));
      cudaDeviceSynchronize();
    }
  }
  ~DevicePool() override {
    if (base_ != nullptr) cudaFree(base_);
  }
  uint8_t* device_base() override { return base_; }
  int device() const override { return device_; }
  std::string_view block_format() const override { return "bench/raw"; }

 private:
  uint8_t* base_ = nullptr;
  int device_;
};

class AcceptAll : public KvLeaseHandler {
 public:
  absl::Status TransferStarting(const std::string&, std::span<const int32_t>) override { return absl::OkStatus(); }
  void TransferEnded(const std::string& lease, const absl::Status& s, int32_t) override {
    if (!s.ok()) std::fprintf(stderr, "lease %s ended: %s\n", lease.c_str(), s.ToString().c_str());
  }
};

struct Args {
  std::string out;
  std::string role = "decode";
  int iters = 20;
  int device = 0;
  std::string worker, address;
  uint64_t epoch = 0;
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const std::string& name) -> std::string {
      if (arg.rfind(name + "=", 0) == 0) return arg.substr(name.size() + 1);
      if (arg == name && i + 1 < argc) return argv[++i];
      return {};
    };
    std::string v;
    if (!(v = value("--out")).empty()) a.out = v;
    else if (!(v = value("--role")).empty()) a.role = v;
    else if (!(v = value("--iters")).empty()) a.iters = std::max(1, std::stoi(v));
    else if (!(v = value("--device")).empty()) a.device = std::stoi(v);
    else if (!(v = value("--worker")).empty()) a.worker = v;
    else if (!(v = value("--address")).empty()) a.address = v;
    else if (!(v = value("--epoch")).empty()) a.epoch = std::stoull(v);
    else {
      std::fprintf(stderr, "usage: gpu_kv_transfer_bench [--out FILE] [--iters N] [--device D]\n");
      std::exit(2);
    }
  }
  return a;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Prefill side: one JSON line per (size, pattern) on stdout.
int RunSender(const Args& a) {
  const KvLayoutInfo layout = Llama8bLayout();
  DevicePool pool(layout, kPoolBlocks, a.device);
  if (pool.device_base() == nullptr) {
    std::printf("error cudaMalloc failed\n");
    return 1;
  }
  CudaIpcKvTransportOptions o;
  o.cache = &pool;
  o.layout = layout;
  o.worker_id = "bench-prefill";
  auto transport = CudaIpcKvTransport::Create(o);
  if (!transport.ok()) {
    std::printf("error %s\n", transport.status().ToString().c_str());
    return 1;
  }
  KvEndpoint endpoint{a.worker, a.epoch, a.address, layout};
  const double bpb = static_cast<double>(layout.layout.bytes_per_block());
  int lease = 0;
  for (const std::string pattern : {"contiguous", "scattered"}) {
    for (int n : kSizes) {
      std::vector<double> ms;
      for (int it = -2; it < a.iters; ++it) {  // two warm-up transfers
        KvDestination d;
        d.endpoint = endpoint;
        d.lease_id = "bench-" + std::to_string(lease++);
        std::vector<BlockCopy> copies;
        for (int i = 0; i < n; ++i) {
          // Scattered: every other block from the end, so no two are adjacent at the destination.
          d.blocks.push_back(pattern == "contiguous" ? i : (kPoolBlocks - 1 - 2 * i) % kPoolBlocks);
          copies.push_back({i, i});
        }
        if (pattern == "scattered" && n > kPoolBlocks / 2) {
          for (int i = 0; i < n; ++i) d.blocks[i] = (i * 37) % kPoolBlocks;  // 37 odd: a permutation
        }
        const absl::Time start = absl::Now();
        auto t = (*transport)->StartTransfer(d, absl::Now() + absl::Seconds(30));
        if (!t.ok()) {
          std::printf("error %s\n", t.status().ToString().c_str());
          return 1;
        }
        (*t)->Send(copies);
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        absl::Status status;
        (*t)->Finish([&](absl::Status s) {
          std::lock_guard<std::mutex> l(mu);
          status = std::move(s);
          done = true;
          cv.notify_all();
        });
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return done; });
        if (!status.ok()) {
          std::printf("error %s\n", status.ToString().c_str());
          return 1;
        }
        if (it >= 0) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      }
      const double med = Median(ms);
      json r = {{"blocks", n}, {"pattern", pattern}, {"bytes", n * bpb}, {"ipc_ms_median", med},
                {"ipc_ms_min", *std::min_element(ms.begin(), ms.end())},
                {"ipc_gbps_median", n * bpb / (med * 1e-3) / 1e9}};
      std::printf("result %s\n", r.dump().c_str());
      std::fflush(stdout);
    }
  }
  std::printf("done\n");
  std::fflush(stdout);
  return 0;
}

// cudaMemcpy D2D of n contiguous blocks inside one process, median over iters (ms).
double MemcpyBaselineMs(DevicePool& pool, int n, int iters) {
  const size_t bytes = static_cast<size_t>(n) * static_cast<size_t>(pool.layout().bytes_per_block());
  uint8_t* src = pool.device_base();
  uint8_t* dst = pool.device_base() + bytes;  // n <= kPoolBlocks / 2 ... or overlap-free below
  void* scratch = nullptr;
  if (2 * static_cast<size_t>(n) > static_cast<size_t>(kPoolBlocks)) {
    if (cudaMalloc(&scratch, bytes) != cudaSuccess) return -1;
    dst = static_cast<uint8_t*>(scratch);
  }
  std::vector<double> ms;
  for (int it = -2; it < iters; ++it) {
    const absl::Time start = absl::Now();
    cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
    if (it >= 0) ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  if (scratch != nullptr) cudaFree(scratch);
  return Median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    const std::string reason =
        std::string("no usable CUDA device (") + cudaGetErrorString(cudaGetLastError()) + ")";
    std::fprintf(stderr, "gpu_kv_transfer_bench: %s; nothing measured\n", reason.c_str());
    if (!a.out.empty() && a.role != "sender") {
      std::ofstream(a.out) << json{{"benchmark", "gpu_kv_transfer"}, {"skipped", reason}}.dump(2)
                           << "\n";
    }
    // A GPU machine's check (TANDEM_REQUIRE_GPU=1) must not pass on a skip.
    const char* required = std::getenv("TANDEM_REQUIRE_GPU");
    return required != nullptr && std::string(required) == "1" ? 1 : 0;
  }
  if (a.role == "sender") return RunSender(a);

  const KvLayoutInfo layout = Llama8bLayout();
  DevicePool pool(layout, kPoolBlocks, a.device);
  if (pool.device_base() == nullptr) {
    std::fprintf(stderr, "gpu_kv_transfer_bench: cudaMalloc of the pool failed\n");
    return 1;
  }
  AcceptAll handler;
  CudaIpcKvTransportOptions o;
  o.cache = &pool;
  o.layout = layout;
  o.worker_id = "bench-decode";
  o.lease_handler = &handler;
  auto transport = CudaIpcKvTransport::Create(o);
  if (!transport.ok()) {
    std::fprintf(stderr, "gpu_kv_transfer_bench: %s\n", transport.status().ToString().c_str());
    return 1;
  }
  const KvEndpoint& e = (*transport)->local_endpoint();
  auto child = ChildProcess::Spawn({ChildProcess::SelfPath(), "--role=sender",
                                    "--worker=" + e.worker_id, "--epoch=" + std::to_string(e.epoch),
                                    "--address=" + e.address, "--iters=" + std::to_string(a.iters),
                                    "--device=" + std::to_string(a.device)});
  if (!child.ok()) {
    std::fprintf(stderr, "gpu_kv_transfer_bench: %s\n", child.status().ToString().c_str());
    return 1;
  }
  std::vector<json> results;
  bool ok = false;
  while (true) {
    auto line = (*child)->ReadLine(absl::Minutes(5));
    if (!line.ok()) break;
    if (line->rfind("result ", 0) == 0) {
      results.push_back(json::parse(line->substr(7)));
    } else if (*line == "done") {
      ok = true;
      break;
    } else if (line->rfind("error", 0) == 0) {
      std::fprintf(stderr, "gpu_kv_transfer_bench: sender: %s\n", line->c_str());
      break;
    }
  }
  (*child)->Wait(absl::Seconds(30)).IgnoreError();
  cudaSetDevice(a.device);
  const double bpb = static_cast<double>(layout.layout.bytes_per_block());
  for (json& r : results) {
    const int n = r["blocks"];
    const double ms = MemcpyBaselineMs(pool, n, a.iters);
    r["memcpy_d2d_ms_median"] = ms;
    r["memcpy_d2d_gbps_median"] = ms > 0 ? n * bpb / (ms * 1e-3) / 1e9 : 0.0;
    std::printf("%-10s %4d blocks  cuda-ipc %8.3f ms %7.1f GB/s   cudaMemcpy d2d %8.3f ms %7.1f GB/s\n",
                r["pattern"].get<std::string>().c_str(), n, r["ipc_ms_median"].get<double>(),
                r["ipc_gbps_median"].get<double>(), ms, r["memcpy_d2d_gbps_median"].get<double>());
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, a.device);
  json out = {{"benchmark", "gpu_kv_transfer"},
              {"device", prop.name},
              {"layout", layout.Describe()},
              {"bytes_per_block", layout.layout.bytes_per_block()},
              {"iters", a.iters},
              {"complete", ok},
              {"results", results}};
  if (!a.out.empty()) {
    std::ofstream f(a.out);
    f << out.dump(2) << "\n";
  } else {
    std::printf("%s\n", out.dump(2).c_str());
  }
  return ok ? 0 : 1;
}
