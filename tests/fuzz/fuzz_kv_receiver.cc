// The receiving side of the KV hand-off protocol (transfer/protocol/receiver.h) driven by a
// fuzzed sequence of what peers and the medium can do: handshakes, kBegin/kEnd/kBye from up to
// three connections, raw messages, blocks offered and placed (in any order, some failing),
// connections lost and the clock moving on. The medium is the protocol tests' FakeMedium, the
// lease handler a fake that holds at most one pin per lease id, as the worker's lease table does.
//
// Input: one command per byte with its arguments in the bytes that follow (see Run). Checked (the
// receiver's promises): TransferEnded comes once per pinned lease and never for another, with a
// filled count inside the lease; never while a placement into the lease is still running; a
// block is only ever placed into a block of a pinned lease; after every placement finished and
// Shutdown, no lease is left pinned.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/time/clock.h"
#include "fuzz_support.h"
#include "transfer/protocol/block_digest.h"
#include "transfer/protocol/receiver.h"
#include "transfer/protocol/wire.h"
#include "unit/transfer/protocol/fake_medium.h"

namespace {

using namespace tandem;
using namespace tandem::transfer;

constexpr int64_t kCacheBlocks = 8;
constexpr int64_t kBytesPerBlock = 64;
constexpr uint64_t kEpoch = 5;

KvLayoutInfo Layout() {
  KvLayoutInfo l;
  l.model_id = "m";
  l.layout.num_layers = 2;
  l.layout.num_kv_heads = 1;
  l.layout.head_dim = 4;
  l.layout.block_size = 16;
  l.layout.dtype = DType::kF16;
  l.block_format = "cpu/kt-v1";
  return l;
}

// Reads the command stream; zeros once it runs out.
struct Bytes {
  const uint8_t* data;
  size_t size, pos = 0;
  bool more() const { return pos < size; }
  uint8_t next() { return pos < size ? data[pos++] : 0; }
};

// A placement the medium started (the receiver said where) and has not reported yet.
struct Placement {
  ConnectionId conn;
  uint64_t transfer_id;
  int32_t block;
};

class Handler final : public KvLeaseHandler {
 public:
  struct Pin {
    ConnectionId conn;
    uint64_t transfer_id;
    std::vector<int32_t> blocks;
  };

  absl::Status TransferStarting(const std::string& lease_id, std::span<const int32_t> blocks) override {
    for (int32_t b : blocks) FUZZ_CHECK(b >= 0 && b < kCacheBlocks);  // CheckBegin's promise
    if (pins.contains(lease_id) || lease_id.empty()) return absl::FailedPreconditionError("not leasable");
    pins[lease_id] = {begin_conn, begin_transfer, {blocks.begin(), blocks.end()}};
    return absl::OkStatus();
  }

  void TransferEnded(const std::string& lease_id, const absl::Status&, int32_t filled) override {
    auto it = pins.find(lease_id);
    FUZZ_CHECK(it != pins.end());  // once per pin, never for a lease not pinned
    FUZZ_CHECK(filled >= 0 && static_cast<size_t>(filled) <= it->second.blocks.size());
    if (!shutting_down) {
      for (const Placement& p : *running) {
        FUZZ_CHECK(!(p.conn == it->second.conn && p.transfer_id == it->second.transfer_id));
      }
    }
    pins.erase(it);
  }

  bool Pinned(int32_t block) const {
    for (const auto& [id, pin] : pins) {
      if (std::find(pin.blocks.begin(), pin.blocks.end(), block) != pin.blocks.end()) return true;
    }
    return false;
  }

  std::map<std::string, Pin> pins;
  ConnectionId begin_conn = 0;  // of the kBegin being handled
  uint64_t begin_transfer = 0;
  const std::vector<Placement>* running = nullptr;
  bool shutting_down = false;
};

struct Session {
  testing::FakeMedium medium;
  Handler handler;
  std::vector<uint8_t> cache = std::vector<uint8_t>(kCacheBlocks * kBytesPerBlock);  // host memory
  Receiver receiver;
  std::vector<Placement> running;
  absl::Time now = absl::Now();
  ConnectionId slots[3] = {1, 2, 3};  // a peer's connection; a closed one is replaced by a new id
  ConnectionId next_conn = 4;

  // The connection peer `slot` sends on: media never reuse an id, so after the receiver closed
  // the last one (refused handshake, kBye) or it was lost, the peer has connected anew.
  ConnectionId Conn(int slot) {
    const auto& closed = medium.closed;
    if (std::find(closed.begin(), closed.end(), slots[slot]) != closed.end()) slots[slot] = next_conn++;
    return slots[slot];
  }

  Session() : receiver(&medium, Options(&handler, cache.data())) { handler.running = &running; }

  static ReceiverOptions Options(Handler* handler, const uint8_t* host_base) {
    ReceiverOptions o;
    o.host_base = host_base;  // where kEnd's checksums are checked
    o.worker_id = "decode-0";
    o.epoch = kEpoch;
    o.layout = Layout();
    o.num_blocks = kCacheBlocks;
    o.bytes_per_block = kBytesPerBlock;
    o.handler = handler;
    return o;
  }

  void Deliver(ConnectionId conn, const std::string& message, uint64_t transfer_id = 0) {
    auto type = wire::PeekType(message);
    if (!type.ok()) return;
    handler.begin_conn = conn;
    handler.begin_transfer = transfer_id;
    receiver.OnMessage(conn, *type, message);
  }

  void Begin(Bytes& in, ConnectionId conn) {
    wire::Begin m;
    m.transfer_id = in.next() % 4;
    m.lease_id = "lease-" + std::to_string(in.next() % 4);
    m.request_id = "r";
    const size_t n = in.next() % 5;
    for (size_t i = 0; i < n; ++i) m.blocks.push_back(static_cast<int8_t>(in.next()) % (kCacheBlocks + 2));
    m.num_blocks = static_cast<int32_t>(n) + (in.next() % 8 == 0 ? 1 : 0);  // now and then a lie
    m.remaining_ms = (in.next() % 4) * 1000;
    m.data_path = in.next() % 4 == 0 ? wire::DataPath::kOneSided : wire::DataPath::kReceiverPlaced;
    Deliver(conn, wire::Encode(m), m.transfer_id);
  }

  void Offer(Bytes& in, ConnectionId conn) {
    const wire::BlockHeader h{static_cast<uint64_t>(in.next() % 4), static_cast<int32_t>(in.next() % 6) - 1};
    const size_t length = in.next() % 8 == 0 ? kBytesPerBlock - 1 : kBytesPerBlock;
    absl::StatusOr<int32_t> block = receiver.OnBlockOffered(conn, h, length);
    if (!block.ok()) return;
    FUZZ_CHECK(*block >= 0 && *block < kCacheBlocks && handler.Pinned(*block));
    running.push_back({conn, h.transfer_id, *block});
  }

  void Place(size_t index, bool ok) {
    if (running.empty()) return;
    const Placement p = running[index % running.size()];
    running.erase(running.begin() + static_cast<std::ptrdiff_t>(index % running.size()));
    receiver.OnBlockPlaced(p.conn, p.transfer_id, ok ? absl::OkStatus() : absl::DataLossError("torn"));
  }

  void Run(Bytes& in);
};

void Session::Run(Bytes& in) {
  while (in.more()) {
    const uint8_t op = in.next();
    const int slot = op / 16 % 3;
    const ConnectionId conn = Conn(slot);
    switch (op % 10) {
      case 0: {
        const bool good = in.next() % 4 != 0;
        KvLayoutInfo layout = Layout();
        if (!good) layout.layout.head_dim = 8;
        Deliver(conn, wire::Encode(wire::Hello{"prefill-" + std::to_string(conn), in.next() % 8 == 0 ? 4 : kEpoch, layout}));
        break;
      }
      case 1:
        Begin(in, conn);
        break;
      case 2: {
        const uint64_t transfer_id = in.next() % 4;
        const absl::Status status = in.next() % 4 == 0 ? absl::InternalError("prefill failed") : absl::OkStatus();
        wire::End end{transfer_id, status, in.next() % 6};
        // Now and then the blocks' checksums: of the (zero) blocks as they are here, or wrong.
        for (int n = in.next() % 8; n > 0 && n < 6; --n) {
          end.digests.push_back(in.next() % 2 == 0 ? BlockDigest(cache.data(), kBytesPerBlock) : in.next());
        }
        Deliver(conn, wire::Encode(end), transfer_id);
        break;
      }
      case 3:
        Deliver(conn, wire::Encode(wire::Bye{}));
        break;
      case 4: {  // raw bytes, as a peer could send anything
        const size_t n = in.next() % 24;
        std::string raw;
        for (size_t i = 0; i < n; ++i) raw.push_back(static_cast<char>(in.next()));
        Deliver(conn, raw);
        break;
      }
      case 5:
        Offer(in, conn);
        break;
      case 6:
      case 7: {
        const size_t index = in.next();
        Place(index, in.next() % 8 != 0);
        break;
      }
      case 8:
        receiver.OnConnectionLost(conn, absl::UnavailableError("reset"));
        slots[slot] = next_conn++;
        break;
      case 9:
        now += absl::Seconds(in.next() % 16);
        receiver.Tick(now);
        break;
    }
  }
  while (!running.empty()) Place(0, true);
  handler.shutting_down = true;
  receiver.Shutdown();
  FUZZ_CHECK(handler.pins.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  Bytes in{data, size};
  Session session;
  session.Run(in);
  return 0;
}
