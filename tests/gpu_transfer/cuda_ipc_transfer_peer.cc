// The prefill side of the CUDA IPC multi-process tests (a CUDA IPC handle cannot be opened in the
// process that exported it). Speaks lines on stdout:
//
//   cuda_ipc_transfer_peer <worker> <epoch> <address> <lease> <dst,blocks,...> <deadline_ms> <mode>
//
// Makes a device cache of kPeerBlocks blocks filled with Pattern(kPeerSeed, b), starts a transfer
// of its blocks 0..n-1 into logical blocks 0..n-1 of the destination, sends them all and prints
// "sent <n>". Modes: "finish" calls Finish and prints "finished <status code> <message>";
// "lie_layout" does the same but claims the destination has our (different) layout, so only the
// destination's handshake can catch the mismatch; "hang" never finishes (it is there to be
// stopped or killed). Exits by itself after two minutes (no orphans).
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gpu_transfer/gpu_test_util.h"
#include "transfer/cuda_ipc/cuda_ipc_kv_transport.h"
#include "unit/transfer/transfer_test_util.h"

namespace {

using namespace tandem;
using namespace tandem::transfer;

constexpr int64_t kPeerBlocks = 16;
constexpr uint64_t kPeerSeed = 7;

void Say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::fputs("usage: cuda_ipc_transfer_peer <worker> <epoch> <address> <lease> <blocks> "
               "<deadline_ms> finish|lie_layout|hang\n", stderr);
    return 2;
  }
  alarm(120);
  const std::string mode = argv[7];
  KvLayoutInfo layout = gpu_testing::TestLayout();
  if (mode == "lie_layout") layout.model_id = "some-other-model";
  auto cache = gpu_testing::DeviceKvCache::Create(layout, kPeerBlocks);
  if (!cache.ok()) {
    Say("error " + cache.status().ToString());
    return 1;
  }
  if (absl::Status s = (*cache)->FillPattern(kPeerSeed); !s.ok()) {
    Say("error " + s.ToString());
    return 1;
  }
  CudaIpcKvTransportOptions o;
  o.cache = cache->get();
  o.layout = layout;
  o.worker_id = "peer-prefill";
  auto transport = CudaIpcKvTransport::Create(o);
  if (!transport.ok()) {
    Say("error " + transport.status().ToString());
    return 1;
  }
  KvEndpoint endpoint;
  endpoint.worker_id = argv[1];
  endpoint.epoch = std::stoull(argv[2]);
  endpoint.address = argv[3];
  endpoint.layout = layout;  // "lie_layout": ours, so the local check passes
  std::vector<int32_t> blocks;
  std::stringstream csv(argv[5]);
  for (std::string item; std::getline(csv, item, ',');) blocks.push_back(std::stoi(item));
  KvDestination destination = testing::Destination(endpoint, argv[4], blocks);
  auto transfer = (*transport)->StartTransfer(
      destination, absl::Now() + absl::Milliseconds(std::stoll(argv[6])));
  if (!transfer.ok()) {
    Say("finished " + std::to_string(static_cast<int>(transfer.status().code())) + " " +
        transfer.status().ToString());
    return 0;
  }
  std::vector<BlockCopy> copies;
  for (size_t i = 0; i < blocks.size(); ++i) {
    copies.push_back({static_cast<int32_t>(i), static_cast<int32_t>(i)});
  }
  // Two Sends, as a prefill of two chunks would.
  const size_t half = copies.size() / 2;
  (*transfer)->Send(std::span<const BlockCopy>(copies).subspan(0, half));
  (*transfer)->Send(std::span<const BlockCopy>(copies).subspan(half));
  Say("sent " + std::to_string(copies.size()));
  if (mode == "hang") {
    while (true) pause();
  }
  auto status = testing::FinishAndWait(**transfer, absl::Seconds(60));
  if (!status.has_value()) {
    Say("finished -1 no callback");
    return 1;
  }
  Say("finished " + std::to_string(static_cast<int>(status->code())) + " " + status->ToString());
  return 0;
}
