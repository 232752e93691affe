// A hand-written Medium for the protocol's unit tests: it records what the protocol asks of it
// (messages sent, connections opened and closed, writes, flushes, commits) and lets the test
// answer (complete writes and flushes, fail CommitBlocks). Nothing runs on a thread of its own:
// the test plays the medium's thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "transfer/protocol/medium.h"
#include "transfer/protocol/wire.h"

namespace tandem::transfer::testing {

class FakeMedium final : public Medium {
 public:
  struct Write {
    ConnectionId conn = 0;
    uint64_t transfer_id = 0;
    std::vector<BlockWrite> writes;
    Completion on_done;
  };

  absl::Status Start(MediumEvents*) override { return absl::OkStatus(); }
  void Stop() override {}
  bool Post(std::function<void()> task) override {
    task();
    return true;
  }
  bool OnThread() const override { return true; }
  std::string address() const override { return "fake://"; }
  wire::DataPath data_path() const override { return path; }
  absl::StatusOr<PeerInfo> Resolve(const KvEndpoint& endpoint) override {
    return PeerInfo{endpoint.address, 0, 0, false};
  }
  absl::StatusOr<ConnectionId> Connect(const KvEndpoint&, const PeerInfo&) override {
    opened.push_back(next_conn);
    return next_conn++;
  }
  void SendControl(ConnectionId conn, std::string message, Completion on_sent) override {
    sent[conn].push_back(std::move(message));
    if (on_sent) on_sent(absl::OkStatus());
  }
  void Close(ConnectionId conn) override { closed.push_back(conn); }
  void WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> w, WriteFence,
                   Completion on_done) override {
    writes.push_back({conn, transfer_id, std::move(w), std::move(on_done)});
  }
  void Flush(ConnectionId, Completion on_done) override { flushes.push_back(std::move(on_done)); }
  absl::Status CommitBlocks(std::span<const int32_t> blocks) override {
    committed.insert(committed.end(), blocks.begin(), blocks.end());
    return commit_status;
  }

  // The messages sent on `conn`, decoded by type (the last one of that type).
  std::vector<wire::MessageType> Types(ConnectionId conn) const {
    std::vector<wire::MessageType> out;
    if (auto it = sent.find(conn); it != sent.end()) {
      for (const std::string& m : it->second) out.push_back(*wire::PeekType(m));
    }
    return out;
  }
  wire::Ack LastAck(ConnectionId conn) const { return *wire::DecodeAck(sent.at(conn).back()); }

  wire::DataPath path = wire::DataPath::kReceiverPlaced;
  absl::Status commit_status;
  ConnectionId next_conn = 1;
  std::vector<ConnectionId> opened;
  std::vector<ConnectionId> closed;
  std::map<ConnectionId, std::vector<std::string>> sent;
  std::vector<Write> writes;
  std::vector<Completion> flushes;
  std::vector<int32_t> committed;
};

}  // namespace tandem::transfer::testing
