#include "transfer/protocol/protocol_transport.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "transfer/protocol/epoch.h"
#include "transfer/protocol/receiver.h"
#include "transfer/protocol/sender.h"

namespace tandem::transfer {

struct ProtocolTransport::Core final : public MediumEvents {
  Core(const ProtocolOptions& o, std::unique_ptr<Medium> m)
      : options(o),
        medium(std::move(m)),
        sender(medium.get(),
               SenderOptions{o.worker_id, o.epoch, o.layout, o.handshake_timeout,
                             o.block_checksums ? o.host_base : nullptr, o.bytes_per_block},
               [this](bool ok) { (ok ? succeeded : failed).fetch_add(1); }),
        receiver(medium.get(), ReceiverOptions{o.worker_id, o.epoch, o.layout, o.num_blocks,
                                               o.bytes_per_block, o.lease_handler, o.lease_grace,
                                               o.host_base}) {}

  void OnMessage(ConnectionId conn, std::string_view payload) override;
  void OnConnectionLost(ConnectionId conn, const absl::Status& status) override {
    if (sender.Owns(conn)) return sender.OnConnectionLost(conn, status);
    receiver.OnConnectionLost(conn, status);
  }
  absl::StatusOr<int32_t> OnBlockOffered(ConnectionId conn, const wire::BlockHeader& header,
                                         size_t length) override {
    return receiver.OnBlockOffered(conn, header, length);
  }
  void OnBlockPlaced(ConnectionId conn, uint64_t transfer_id, const absl::Status& status) override {
    receiver.OnBlockPlaced(conn, transfer_id, status);
  }
  absl::Time OnTick(absl::Time now) override { return std::min(sender.Tick(now), receiver.Tick(now)); }
  void OnShutdown() override {
    sender.Shutdown();
    receiver.Shutdown();
  }

  const ProtocolOptions options;
  const std::unique_ptr<Medium> medium;
  // Touched only on the medium's thread.
  Sender sender;
  Receiver receiver;
  std::atomic<uint64_t> next_transfer_id{1};
  std::atomic<int64_t> succeeded{0};
  std::atomic<int64_t> failed{0};
};

void ProtocolTransport::Core::OnMessage(ConnectionId conn, std::string_view payload) {
  absl::StatusOr<wire::MessageType> type = wire::PeekType(payload);
  absl::Status status = type.status();
  if (type.ok() && !sender.Owns(conn)) return receiver.OnMessage(conn, *type, payload);
  if (type.ok()) {
    absl::StatusOr<wire::Ack> ack = wire::DecodeAck(payload);
    if ((status = ack.status()).ok()) sender.OnAck(conn, *ack);
  }
  if (!status.ok()) {
    GetLogger("transfer")->warn("dropped a kv transfer message of {} bytes on conn={}: {}",
                                payload.size(), conn, status.ToString());
  }
}

namespace {

using Core = ProtocolTransport::Core;

// The caller's handle; every call becomes a task on the medium's thread.
class ProtocolTransfer final : public KvTransfer {
 public:
  ProtocolTransfer(std::shared_ptr<Core> core, uint64_t id, const KvDestination& destination)
      : core_(std::move(core)),
        id_(id),
        context_(TransferContext(destination)),
        destination_blocks_(destination.blocks.size()) {}

  ~ProtocolTransfer() override {
    Core* core = core_.get();
    const uint64_t id = id_;
    core_->medium->Post([core, id] { core->sender.Abandon(id); });
  }

  void Send(std::span<const BlockCopy> copies) override {
    if (finish_called_.load()) {
      GetLogger("transfer")->error("{}: Send after Finish ignored", context_);
      return;
    }
    if (absl::Status invalid = Check(copies); !invalid.ok()) return PostFailure(invalid);
    WriteFence fence;
    if (!copies.empty()) {
      absl::StatusOr<WriteFence> captured = core_->medium->CaptureFence();
      if (!captured.ok()) return PostFailure(captured.status());
      fence = std::move(*captured);
    }
    Core* core = core_.get();
    const uint64_t id = id_;
    core_->medium->Post([core, id, batch = std::vector<BlockCopy>(copies.begin(), copies.end()),
                         fence = std::move(fence)]() mutable {
      core->sender.Send(id, std::move(batch), std::move(fence));
    });
  }

  void Finish(std::function<void(absl::Status)> done) override {
    if (finish_called_.exchange(true)) {
      done(absl::FailedPreconditionError("kv transfer: Finish called twice"));
      return;
    }
    Core* core = core_.get();
    const uint64_t id = id_;
    auto shared_done = std::make_shared<Completion>(std::move(done));
    if (!core_->medium->Post([core, id, shared_done] { core->sender.Finish(id, *shared_done); })) {
      (*shared_done)(absl::CancelledError(StrCat(context_, ": the transport was destroyed")));
    }
  }

 private:
  absl::Status Check(std::span<const BlockCopy> copies) const {
    const int64_t local_blocks = core_->options.num_blocks;
    for (const BlockCopy& c : copies) {
      if (c.index < 0 || static_cast<size_t>(c.index) >= destination_blocks_ || c.src_block < 0 ||
          c.src_block >= local_blocks) {
        return absl::InvalidArgumentError(
            StrCat("bad block copy src_block=", c.src_block, " index=", c.index, " (",
                   local_blocks, " local blocks, ", destination_blocks_, " destination blocks)"));
      }
    }
    return absl::OkStatus();
  }

  void PostFailure(const absl::Status& status) {
    Core* core = core_.get();
    const uint64_t id = id_;
    core_->medium->Post([core, id, status] { core->sender.Fail(id, status); });
  }

  const std::shared_ptr<Core> core_;
  const uint64_t id_;
  const std::string context_;
  const size_t destination_blocks_;
  std::atomic<bool> finish_called_{false};
};

// The checks StartTransfer can make before asking the medium.
absl::Status CheckLocally(const ProtocolOptions& local, const KvDestination& d) {
  if (std::string diff = local.layout.Mismatch(d.endpoint.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat(TransferContext(d), ": KV layout mismatch (source vs destination): ", diff));
  }
  for (int32_t b : d.blocks) {
    if (b < 0) {
      return absl::InvalidArgumentError(StrCat(TransferContext(d), ": negative destination block ", b));
    }
  }
  return absl::OkStatus();
}

// The checks against the medium's view of the destination (what it knows of it).
absl::Status CheckAgainstPeer(const ProtocolOptions& local, const KvDestination& d,
                              const PeerInfo& peer) {
  if (peer.bytes_per_block != 0 && peer.bytes_per_block != local.bytes_per_block) {
    return absl::FailedPreconditionError(StrCat(TransferContext(d), ": the destination's blocks hold ",
                                                peer.bytes_per_block, " bytes, ours ",
                                                local.bytes_per_block));
  }
  for (int32_t b : d.blocks) {
    if (peer.num_blocks != 0 && b >= peer.num_blocks) {
      return absl::InvalidArgumentError(StrCat(TransferContext(d), ": destination block ", b,
                                               " outside its cache of ", peer.num_blocks, " blocks"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProtocolOptions> ProtocolOptionsFor(std::string_view transport, std::string name,
                                                   const KvTransportCommonOptions& common,
                                                   CacheMemory memory) {
  KvCacheStorage* cache = common.cache;
  const bool host = memory == CacheMemory::kHost;
  if (cache == nullptr || cache->num_blocks() <= 0 ||
      (host ? cache->host_base() == nullptr : cache->device_base() == nullptr || cache->device() < 0)) {
    return absl::InvalidArgumentError(StrCat(transport, ": a non-empty ", host ? "host" : "device",
                                             "-memory KV cache is required"));
  }
  if (cache->layout().bytes_per_block() != common.layout.layout.bytes_per_block() ||
      cache->block_format() != common.layout.block_format) {
    return absl::InvalidArgumentError(StrCat(transport, ": the layout (", common.layout.Describe(),
                                             ") does not describe the cache"));
  }
  ProtocolOptions p;
  p.name = std::move(name);
  p.worker_id = common.worker_id;
  p.epoch = common.epoch != 0 ? common.epoch : RandomEpoch();
  p.layout = common.layout;
  p.num_blocks = cache->num_blocks();
  p.bytes_per_block = cache->layout().bytes_per_block();
  p.lease_handler = common.lease_handler;
  p.lease_grace = common.lease_grace;
  p.handshake_timeout = common.handshake_timeout;
  p.host_base = host ? cache->host_base() : nullptr;
  p.block_checksums = common.block_checksums;
  return p;
}

absl::StatusOr<std::shared_ptr<Core>> ProtocolTransport::StartCore(const ProtocolOptions& options,
                                                                   std::unique_ptr<Medium> medium) {
  TANDEM_CHECK(options.epoch != 0);
  auto core = std::make_shared<Core>(options, std::move(medium));
  if (absl::Status s = core->medium->Start(core.get()); !s.ok()) return s;
  return core;
}

ProtocolTransport::ProtocolTransport(std::shared_ptr<Core> core) : core_(std::move(core)) {
  endpoint_.worker_id = core_->options.worker_id;
  endpoint_.epoch = core_->options.epoch;
  endpoint_.layout = core_->options.layout;
  endpoint_.address = core_->medium->address();
  const ProtocolOptions& o = core_->options;
  GetLogger("transfer")->info("{} kv transport worker={} epoch={} blocks={} bytes_per_block={} block_checksums={}",
                              o.name, endpoint_.worker_id, endpoint_.epoch, o.num_blocks, o.bytes_per_block,
                              o.host_base == nullptr ? "none (device cache)" : o.block_checksums ? "sent" : "off");
}

ProtocolTransport::~ProtocolTransport() {
  TANDEM_CHECK(!core_->medium->OnThread()) << name() << " kv transport destroyed from its own callback";
  core_->medium->Stop();
}

std::string_view ProtocolTransport::name() const { return core_->options.name; }

int64_t ProtocolTransport::transfers_succeeded() const { return core_->succeeded.load(); }

int64_t ProtocolTransport::transfers_failed() const { return core_->failed.load(); }

absl::StatusOr<std::unique_ptr<KvTransfer>> ProtocolTransport::StartTransfer(
    const KvDestination& destination, absl::Time deadline) {
  TANDEM_RETURN_IF_ERROR(CheckLocally(core_->options, destination));
  absl::StatusOr<PeerInfo> peer = core_->medium->Resolve(destination.endpoint);
  if (!peer.ok()) return WithContext(peer.status(), TransferContext(destination));
  TANDEM_RETURN_IF_ERROR(CheckAgainstPeer(core_->options, destination, *peer));
  OutboundRequest request;
  request.id = core_->next_transfer_id.fetch_add(1);
  request.destination = destination;
  request.peer = std::move(*peer);
  request.deadline = deadline;
  const uint64_t id = request.id;
  Core* core = core_.get();
  if (!core_->medium->Post([core, request = std::move(request)]() mutable {
        core->sender.Start(std::move(request));
      })) {
    return absl::UnavailableError(
        StrCat(TransferContext(destination), ": the transport is shutting down"));
  }
  return std::unique_ptr<KvTransfer>(new ProtocolTransfer(core_, id, destination));
}

}  // namespace tandem::transfer
