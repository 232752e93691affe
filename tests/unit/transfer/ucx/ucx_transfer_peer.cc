// The other process of the UCX multi-process tests. Speaks lines on stdout:
//
//   ucx_transfer_peer receiver <layout> <blocks>
//     prints "endpoint <worker|epoch|address>", then "started <lease> <n>" and
//     "ended <lease> <status code>" as its lease handler is called; runs until killed.
//   ucx_transfer_peer sender <layout> <blocks> <endpoint> <lease> <deadline_ms>
//     starts a transfer of <blocks> blocks into blocks 0.. of <endpoint>, sends them all,
//     prints "sent <blocks>" and then never finishes (it is there to be killed or stopped).
//
// <layout> is "small" or "smollm2". Exits by itself after two minutes (no orphans).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "transfer/ucx/ucx_kv_transport.h"
#include "unit/transfer/transfer_test_util.h"

namespace {

using namespace tandem;
using namespace tandem::transfer;

void Say(const std::string& line) {
  std::fputs((line + "\n").c_str(), stdout);
  std::fflush(stdout);
}

class PrintingHandler : public KvLeaseHandler {
 public:
  absl::Status TransferStarting(const std::string& lease_id, std::span<const int32_t> blocks) override {
    Say("started " + lease_id + " " + std::to_string(blocks.size()));
    return absl::OkStatus();
  }
  void TransferEnded(const std::string& lease_id, const absl::Status& status, int32_t) override {
    Say("ended " + lease_id + " " + std::to_string(static_cast<int>(status.code())));
  }
};

int Usage() {
  std::fputs("usage: ucx_transfer_peer receiver|sender <layout> <blocks> [...]\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return Usage();
  const std::string mode = argv[1];
  const KvLayoutInfo layout = std::string(argv[2]) == "smollm2" ? testing::SmolLm2Layout()
                                                                 : testing::SmallLayout();
  const int blocks = std::stoi(argv[3]);
  testing::TestCache cache = testing::MakeCache(layout, blocks);
  testing::FillRandom(cache, 99);
  PrintingHandler handler;

  UcxKvTransportOptions o = testing::TestUcxOptions(mode + "-child", cache.get(), layout,
                                                    mode == "receiver" ? &handler : nullptr);
  auto transport = UcxKvTransport::Create(o);
  if (!transport.ok()) {
    std::fprintf(stderr, "%s\n", transport.status().ToString().c_str());
    return 1;
  }

  std::unique_ptr<KvTransfer> transfer;
  if (mode == "receiver") {
    Say("endpoint " + testing::EndpointToArg((*transport)->local_endpoint()));
  } else if (mode == "sender" && argc == 7) {
    std::vector<int32_t> dst(blocks);
    std::vector<BlockCopy> copies;
    for (int i = 0; i < blocks; ++i) {
      dst[i] = i;
      copies.push_back({i, i});
    }
    KvDestination d =
        testing::Destination(testing::EndpointFromArg(argv[4], layout), argv[5], dst);
    auto started =
        (*transport)->StartTransfer(d, absl::Now() + absl::Milliseconds(std::stoll(argv[6])));
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    transfer = std::move(*started);
    transfer->Send(copies);
    Say("sent " + std::to_string(blocks));
  } else {
    return Usage();
  }
  absl::SleepFor(absl::Minutes(2));
  return 0;
}
