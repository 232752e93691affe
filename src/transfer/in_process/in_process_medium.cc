#include "transfer/in_process/in_process_medium.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/time/clock.h"

namespace tandem::transfer {
namespace internal {

// A connection: both ends' ids and stations. Fields are written by one end only (said below).
struct InProcessLink {
  std::shared_ptr<InProcessStation> sender;
  std::shared_ptr<InProcessStation> receiver;
  ConnectionId sender_conn = 0;    // the sender's id (set before the link is shared)
  ConnectionId receiver_conn = 0;  // the receiver's id (its thread; 0 until the first message)
  InProcessFault fault;            // the sender's (set before the link is shared)
  int64_t blocks_copied = 0;       // the sender's thread
};

bool InProcessStation::Post(std::function<void(InProcessMedium&)> task, absl::Time at) {
  std::lock_guard<std::mutex> lock(mu);
  if (medium == nullptr) return false;
  InProcessMedium* m = medium;
  return m->loop().Post([m, task = std::move(task)] { task(*m); }, at);
}

}  // namespace internal

namespace {

absl::Status Closed(std::string_view why) { return absl::UnavailableError(StrCat("kv transfer: ", why)); }

}  // namespace

InProcessMedium::InProcessMedium(std::shared_ptr<InProcessKvHub> hub, std::string worker_id,
                                 KvCacheStorage* cache)
    : hub_(std::move(hub)), station_(std::make_shared<internal::InProcessStation>()) {
  station_->worker_id = std::move(worker_id);
  station_->base = cache->host_base();
  station_->bytes_per_block = cache->layout().bytes_per_block();
}

void InProcessMedium::InjectFault(const InProcessFault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  fault_ = fault;
}

absl::Status InProcessMedium::Start(MediumEvents* events) {
  StartLoop(events);
  {
    std::lock_guard<std::mutex> lock(station_->mu);
    station_->medium = this;
  }
  address_ = hub_->Register(station_);
  return absl::OkStatus();
}

void InProcessMedium::Stop() {
  hub_->Unregister(address_);
  StopLoop([this] {
    std::vector<ConnectionId> conns;
    for (const auto& [conn, link] : conns_) conns.push_back(conn);
    for (ConnectionId conn : conns) Disconnect(conn, Closed("the peer transport shut down"));
  });
  std::lock_guard<std::mutex> lock(station_->mu);  // waits for copies reading our cache
  station_->medium = nullptr;
}

absl::StatusOr<PeerInfo> InProcessMedium::Resolve(const KvEndpoint& endpoint) {
  if (endpoint.address.rfind(kInProcessAddressPrefix, 0) != 0) {
    return absl::InvalidArgumentError(
        StrCat("not an in-process KV endpoint address: ", endpoint.address));
  }
  PeerInfo peer;
  peer.key = endpoint.address;
  std::lock_guard<std::mutex> lock(mu_);
  if (fault_.kind == InProcessFault::Kind::kNone || fault_.transfers == 0) return peer;
  // A faulty transfer gets a connection of its own.
  peer.key = StrCat(endpoint.address, "#fault-", next_fault_++);
  peer.single_use = true;
  pending_faults_[peer.key] = fault_;
  if (fault_.transfers > 0 && --fault_.transfers == 0) fault_ = InProcessFault{};
  return peer;
}

absl::StatusOr<ConnectionId> InProcessMedium::Connect(const KvEndpoint& endpoint,
                                                      const PeerInfo& peer) {
  InProcessFault fault;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = pending_faults_.find(peer.key); it != pending_faults_.end()) {
      fault = it->second;
      pending_faults_.erase(it);
    }
  }
  if (fault.kind == InProcessFault::Kind::kRefuse) return fault.status;
  std::shared_ptr<internal::InProcessStation> target = hub_->Find(endpoint.address);
  if (target == nullptr) {
    return absl::UnavailableError(StrCat("no transport at address ", endpoint.address));
  }
  auto link = std::make_shared<Link>();
  link->sender = station_;
  link->receiver = std::move(target);
  link->sender_conn = next_conn_++;
  link->fault = fault;
  conns_[link->sender_conn] = link;
  return link->sender_conn;
}

std::shared_ptr<InProcessMedium::Link> InProcessMedium::FindLink(ConnectionId conn) const {
  auto it = conns_.find(conn);
  return it == conns_.end() ? nullptr : it->second;
}

bool InProcessMedium::Outbound(ConnectionId conn, const Link& link) const {
  return link.sender_conn == conn && link.sender == station_;
}

bool InProcessMedium::ToPeer(ConnectionId conn, const Link& link,
                             std::function<void(InProcessMedium&)> task) {
  if (!Outbound(conn, link)) return link.sender->Post(std::move(task));
  const absl::Time at = link.fault.kind == InProcessFault::Kind::kDelay
                            ? absl::Now() + link.fault.delay
                            : absl::InfinitePast();
  return link.receiver->Post(std::move(task), at);
}

void InProcessMedium::Lost(ConnectionId conn, const absl::Status& status) {
  if (conns_.erase(conn) == 0) return;
  loop().Defer([this, conn, status] { events()->OnConnectionLost(conn, status); });
}

void InProcessMedium::SendControl(ConnectionId conn, std::string message, Completion on_sent) {
  std::shared_ptr<Link> link = FindLink(conn);
  bool sent = link != nullptr;
  if (sent && Outbound(conn, *link) && link->fault.kind == InProcessFault::Kind::kUnresponsive) {
    // Swallowed: the destination never hears of it.
  } else if (sent) {
    const bool outbound = Outbound(conn, *link);
    sent = ToPeer(conn, *link, [link, message = std::move(message), outbound](InProcessMedium& m) {
      outbound ? m.ReceiveControl(link, message) : m.ReceiveReply(link, message);
    });
    if (!sent) Lost(conn, Closed("the peer transport shut down"));
  }
  if (on_sent) {
    loop().Defer([on_sent = std::move(on_sent), sent] {
      on_sent(sent ? absl::OkStatus() : Closed("the connection is closed"));
    });
  }
}

void InProcessMedium::ReceiveControl(const std::shared_ptr<Link>& link, const std::string& message) {
  if (link->receiver_conn == 0) {
    link->receiver_conn = next_conn_++;
    conns_[link->receiver_conn] = link;
  } else if (!conns_.contains(link->receiver_conn)) {
    return;  // this end closed it
  }
  events()->OnMessage(link->receiver_conn, message);
}

void InProcessMedium::ReceiveReply(const std::shared_ptr<Link>& link, const std::string& message) {
  if (conns_.contains(link->sender_conn)) events()->OnMessage(link->sender_conn, message);
}

absl::Status InProcessMedium::ClosedByPeer() { return Closed("the peer closed the connection"); }

void InProcessMedium::Disconnect(ConnectionId conn, const absl::Status& status) {
  std::shared_ptr<Link> link = FindLink(conn);
  if (link == nullptr) return;
  conns_.erase(conn);
  const bool outbound = Outbound(conn, *link);
  ToPeer(conn, *link, [link, outbound, status](InProcessMedium& m) {
    m.PeerClosed(link, /*at_receiver=*/outbound, status);
  });
}

void InProcessMedium::PeerClosed(const std::shared_ptr<Link>& link, bool at_receiver,
                                 const absl::Status& status) {
  const ConnectionId conn = at_receiver ? link->receiver_conn : link->sender_conn;
  auto it = conns_.find(conn);
  if (conn == 0 || it == conns_.end() || it->second != link) return;
  conns_.erase(it);
  events()->OnConnectionLost(conn, status);
}

void InProcessMedium::WriteBlocks(ConnectionId conn, uint64_t transfer_id,
                                  std::vector<BlockWrite> writes, WriteFence, Completion on_done) {
  std::shared_ptr<Link> link = FindLink(conn);
  if (link == nullptr) {
    loop().Defer([on_done = std::move(on_done)] { on_done(Closed("the connection is closed")); });
    return;
  }
  const InProcessFault& fault = link->fault;
  if (fault.kind == InProcessFault::Kind::kUnresponsive) return;  // never completes
  bool drop = false;
  if (fault.kind == InProcessFault::Kind::kDropAfterBlocks) {
    const int64_t room = std::max<int64_t>(fault.after_blocks - link->blocks_copied, 1);
    if (static_cast<int64_t>(writes.size()) >= room) {
      writes.resize(static_cast<size_t>(room));
      drop = true;
    }
  }
  link->blocks_copied += static_cast<int64_t>(writes.size());
  const bool sent = ToPeer(conn, *link, [link, transfer_id, writes, on_done](InProcessMedium& m) {
    m.PlaceBlocks(link, transfer_id, writes, on_done);
  });
  if (!sent) {
    Lost(conn, Closed("the destination shut down"));
    loop().Defer([on_done] { on_done(Closed("the destination shut down")); });
  } else if (drop) {
    // The connection drops: the destination hears of it after the blocks before the drop.
    const absl::Status status = fault.status;
    Disconnect(conn, status);
    loop().Defer([this, conn, status] { events()->OnConnectionLost(conn, status); });
  }
}

void InProcessMedium::PlaceBlocks(const std::shared_ptr<Link>& link, uint64_t transfer_id,
                                  const std::vector<BlockWrite>& writes, Completion on_done) {
  const ConnectionId conn = link->receiver_conn;
  absl::Status result;
  if (conn == 0 || !conns_.contains(conn)) result = Closed("the connection is closed");
  const int64_t bytes = station_->bytes_per_block;
  for (size_t i = 0; i < writes.size() && result.ok(); ++i) {
    const BlockWrite& w = writes[i];
    absl::StatusOr<int32_t> dst = events()->OnBlockOffered(
        conn, wire::BlockHeader{transfer_id, w.index}, static_cast<size_t>(bytes));
    if (!dst.ok()) {
      result = dst.status();
      break;
    }
    absl::Status placed;
    {
      internal::InProcessStation& source = *link->sender;
      std::lock_guard<std::mutex> lock(source.mu);
      if (source.medium == nullptr) {
        placed = Closed("the source transport shut down");
      } else {
        uint8_t* target = station_->base + *dst * bytes;
        std::memcpy(target, source.base + w.src_block * bytes, static_cast<size_t>(bytes));
        if (link->fault.kind == InProcessFault::Kind::kCorruptBlocks) target[bytes / 2] ^= 0x10;
      }
    }
    events()->OnBlockPlaced(conn, transfer_id, placed);
    result = placed;
  }
  link->sender->Post([on_done, result](InProcessMedium&) { on_done(result); });
}

}  // namespace tandem::transfer
