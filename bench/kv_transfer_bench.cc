// KV transfer bandwidth: UcxKvTransport between two processes on this machine (the bench
// re-executes itself as the receiving decode worker) for a SmolLM2-shaped cache (30 layers x 3
// KV heads x head dim 64 x block 16, fp16: 368,640 bytes per block), transfers of 1, 16, 64 and
// 256 blocks, both data paths, with the blocks' checksums (the default) and without them, against
// a plain memcpy of the same blocks measured in the same run. Prints JSON on stdout.
//
//   kv_transfer_bench [--tls=tcp,sm,self] [--min_seconds=1] [--in_process]
//
// --in_process puts both transports in this process instead (same UCX path, no fork).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "engine/backends/cpu/cpu_backend.h"
#include "nlohmann/json.hpp"
#include "transfer/ucx/ucx_kv_transport.h"

namespace {

using namespace tandem;
using namespace tandem::transfer;

constexpr int kMaxBlocks = 256;
const std::vector<int> kSizes = {1, 16, 64, 256};

KvLayoutInfo SmolLm2Layout() {
  KvLayoutInfo l;
  l.model_id = "smollm2-135m-instruct";
  l.layout = {30, 3, 64, 16, DType::kF16};
  l.block_format = "cpu/kt-v1";
  return l;
}

struct Flags {
  std::string tls = "tcp,sm,self";
  double min_seconds = 1.0;
  bool in_process = false;
  bool receiver = false;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--tls=", 0) == 0) f.tls = a.substr(6);
    else if (a.rfind("--min_seconds=", 0) == 0) f.min_seconds = std::stod(a.substr(14));
    else if (a == "--in_process") f.in_process = true;
    else if (a == "--role=receiver") f.receiver = true;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      std::exit(2);
    }
  }
  return f;
}

class AcceptAll : public KvLeaseHandler {
 public:
  absl::Status TransferStarting(const std::string&, std::span<const int32_t>) override { return absl::OkStatus(); }
  void TransferEnded(const std::string&, const absl::Status&, int32_t) override {}
};

struct Cache {
  std::unique_ptr<cpu::CpuBackend> backend;
  std::unique_ptr<KvCacheStorage> storage;
};

Cache MakeCache(int64_t blocks) {
  Cache c;
  c.backend = cpu::CpuBackend::Create({.threads = 1}).value();
  c.storage = c.backend->CreateKvCache(SmolLm2Layout().layout, blocks).value();
  std::mt19937_64 rng(1);
  auto* p = reinterpret_cast<uint64_t*>(c.storage->host_base());
  const int64_t words = blocks * c.storage->layout().bytes_per_block() / 8;
  for (int64_t i = 0; i < words; ++i) p[i] = rng();
  return c;
}

std::unique_ptr<UcxKvTransport> MakeTransport(const Flags& f, const std::string& id, Cache& cache,
                                              KvLeaseHandler* handler, UcxDataPath path,
                                              bool checksums = true) {
  UcxKvTransportOptions o;
  o.block_checksums = checksums;
  o.cache = cache.storage.get();
  o.layout = SmolLm2Layout();
  o.worker_id = id;
  o.lease_handler = handler;
  o.transports = f.tls;
  o.data_path = path;
  auto t = UcxKvTransport::Create(o);
  if (!t.ok()) {
    std::fprintf(stderr, "UcxKvTransport::Create: %s\n", t.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*t);
}

int RunReceiver(const Flags& f) {
  Cache cache = MakeCache(kMaxBlocks);
  AcceptAll handler;
  auto t = MakeTransport(f, "bench-decode", cache, &handler, UcxDataPath::kActiveMessage);
  const KvEndpoint& e = t->local_endpoint();
  std::printf("%llu %s\n", static_cast<unsigned long long>(e.epoch), e.address.c_str());
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }  // until the parent closes our stdin
  return 0;
}

// The receiving process: its endpoint, and the pipe that keeps it alive.
struct ReceiverProcess {
  pid_t pid = -1;
  int to_child = -1;
  KvEndpoint endpoint;
};

ReceiverProcess SpawnReceiver(const Flags& f) {
  int down[2], up[2];
  if (pipe(down) != 0 || pipe(up) != 0) std::exit(1);
  ReceiverProcess r;
  r.pid = fork();
  if (r.pid == 0) {
    dup2(down[0], STDIN_FILENO);
    dup2(up[1], STDOUT_FILENO);
    close(down[1]);
    close(up[0]);
    std::string tls = "--tls=" + f.tls;
    execl("/proc/self/exe", "kv_transfer_bench", "--role=receiver", tls.c_str(), nullptr);
    _exit(127);
  }
  close(down[0]);
  close(up[1]);
  r.to_child = down[1];
  std::string line;
  char c;
  while (read(up[0], &c, 1) == 1 && c != '\n') line += c;
  close(up[0]);
  const size_t space = line.find(' ');
  if (space == std::string::npos) {
    std::fprintf(stderr, "receiver did not start\n");
    std::exit(1);
  }
  r.endpoint.worker_id = "bench-decode";
  r.endpoint.epoch = std::stoull(line.substr(0, space));
  r.endpoint.address = line.substr(space + 1);
  r.endpoint.layout = SmolLm2Layout();
  return r;
}

absl::Status RunTransfer(KvTransport& sender, const KvEndpoint& dst, int blocks, int64_t serial) {
  KvDestination d;
  d.endpoint = dst;
  d.lease_id = "bench-" + std::to_string(serial);
  std::vector<BlockCopy> copies;
  for (int i = 0; i < blocks; ++i) {
    d.blocks.push_back((i * 7 + static_cast<int>(serial)) % kMaxBlocks);  // scattered blocks
    copies.push_back({i, i});
  }
  auto t = sender.StartTransfer(d, absl::Now() + absl::Seconds(60));
  if (!t.ok()) return t.status();
  (*t)->Send(copies);
  std::promise<absl::Status> done;
  (*t)->Finish([&done](absl::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

struct Measurement {
  int64_t runs = 0;
  double seconds = 0;
  double p50_ms = 0;
};

template <typename Fn>
Measurement Measure(double min_seconds, Fn fn) {
  fn();  // warm-up (connection set-up, page faults)
  std::vector<double> ms;
  const absl::Time start = absl::Now();
  while (ms.size() < 5 || absl::ToDoubleSeconds(absl::Now() - start) < min_seconds) {
    const absl::Time t0 = absl::Now();
    fn();
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  Measurement m;
  m.runs = static_cast<int64_t>(ms.size());
  m.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::sort(ms.begin(), ms.end());
  m.p50_ms = ms[ms.size() / 2];
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  if (flags.receiver) return RunReceiver(flags);
  signal(SIGPIPE, SIG_IGN);

  Cache src = MakeCache(kMaxBlocks);
  Cache local_dst;
  AcceptAll handler;
  std::unique_ptr<UcxKvTransport> in_process_receiver;
  ReceiverProcess child;
  KvEndpoint dst;
  if (flags.in_process) {
    local_dst = MakeCache(kMaxBlocks);
    in_process_receiver =
        MakeTransport(flags, "bench-decode", local_dst, &handler, UcxDataPath::kActiveMessage);
    dst = in_process_receiver->local_endpoint();
  } else {
    child = SpawnReceiver(flags);
    dst = child.endpoint;
  }
  const int64_t bytes_per_block = src.storage->layout().bytes_per_block();
  std::vector<uint8_t> memcpy_dst(static_cast<size_t>(kMaxBlocks * bytes_per_block));

  nlohmann::json out;
  out["ucx_tls"] = flags.tls;
  out["mode"] = flags.in_process ? "two transports in one process" : "two processes";
  out["bytes_per_block"] = bytes_per_block;
  out["layout"] = SmolLm2Layout().Describe();
  out["results"] = nlohmann::json::array();
  int64_t serial = 0;
  for (UcxDataPath path : {UcxDataPath::kActiveMessage, UcxDataPath::kRmaPut}) {
    const char* path_name = path == UcxDataPath::kRmaPut ? "rma_put" : "active_message";
    auto sender = MakeTransport(flags, "bench-prefill", src, nullptr, path);
    auto unchecked = MakeTransport(flags, "bench-prefill-unchecked", src, nullptr, path, false);
    for (int blocks : kSizes) {
      const double bytes = static_cast<double>(blocks) * static_cast<double>(bytes_per_block);
      absl::Status failure;
      auto transfer_with = [&](KvTransport& t) {
        return Measure(flags.min_seconds, [&] {
          absl::Status s = RunTransfer(t, dst, blocks, serial++);
          if (!s.ok()) failure = s;
        });
      };
      Measurement plain = transfer_with(*unchecked);
      Measurement ucx = transfer_with(*sender);
      if (!failure.ok()) {
        std::fprintf(stderr, "transfer failed: %s\n", failure.ToString().c_str());
        return 1;
      }
      Measurement copy = Measure(flags.min_seconds, [&] {
        for (int i = 0; i < blocks; ++i) {
          const int dst_block = (i * 7 + static_cast<int>(serial)) % kMaxBlocks;
          std::memcpy(memcpy_dst.data() + dst_block * bytes_per_block,
                      src.storage->host_base() + i * bytes_per_block,
                      static_cast<size_t>(bytes_per_block));
        }
      });
      const double ucx_gbps = bytes * static_cast<double>(ucx.runs) / ucx.seconds / 1e9;
      const double copy_gbps = bytes * static_cast<double>(copy.runs) / copy.seconds / 1e9;
      out["results"].push_back({{"data_path", path_name},
                                {"blocks", blocks},
                                {"bytes", static_cast<int64_t>(bytes)},
                                {"transfers", ucx.runs},
                                {"ucx_gbps", ucx_gbps},
                                {"ucx_p50_ms", ucx.p50_ms},
                                {"ucx_no_checksums_p50_ms", plain.p50_ms},
                                {"checksums_vs_none_p50", ucx.p50_ms / plain.p50_ms},
                                {"memcpy_gbps", copy_gbps},
                                {"memcpy_p50_ms", copy.p50_ms},
                                {"ucx_vs_memcpy", ucx_gbps / copy_gbps}});
    }
  }
  std::printf("%s\n", out.dump(2).c_str());
  if (child.pid > 0) {
    close(child.to_child);
    waitpid(child.pid, nullptr, 0);
  }
  return 0;
}
