#include "transfer/protocol/sender.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "transfer/protocol/block_digest.h"

namespace tandem::transfer {

std::string TransferContext(const KvDestination& destination) {
  return StrCat("kv transfer request=", destination.request_id, " lease=", destination.lease_id,
                " to worker=", destination.endpoint.worker_id);
}

absl::Status WithContext(const absl::Status& s, std::string_view context) {
  return absl::Status(s.code(), StrCat(context, ": ", ToStd(s.message())));
}

std::string_view Sender::StageName(Stage s) {
  switch (s) {
    case Stage::kHandshake:
      return "connecting";
    case Stage::kBegin:
      return "waiting for the lease";
    case Stage::kActive:
      return "writing blocks";
    case Stage::kDraining:
      return "waiting for the blocks to arrive";
    case Stage::kEnding:
      return "waiting for the end acknowledgement";
  }
  return "?";
}

Sender::Transfer* Sender::Find(uint64_t id) {
  auto it = transfers_.find(id);
  return it == transfers_.end() ? nullptr : it->second.get();
}

Sender::Peer* Sender::FindPeer(ConnectionId conn) {
  auto it = peers_.find(conn);
  return it == peers_.end() ? nullptr : it->second.get();
}

bool Sender::HasTransfers(ConnectionId conn) const {
  return std::any_of(transfers_.begin(), transfers_.end(),
                     [conn](const auto& entry) { return entry.second->conn == conn; });
}

void Sender::Start(OutboundRequest request) {
  auto owned = std::make_unique<Transfer>();
  Transfer& t = *owned;
  t.id = request.id;
  t.destination = request.destination;
  t.context = TransferContext(t.destination);
  t.deadline = request.deadline;
  transfers_[t.id] = std::move(owned);
  if (absl::Now() >= t.deadline) {
    return FailTransfer(t, absl::DeadlineExceededError(
                               StrCat(t.context, ": the deadline passed before it started")));
  }
  absl::StatusOr<Peer*> peer = GetOrConnect(request);
  if (!peer.ok()) return FailTransfer(t, WithContext(peer.status(), t.context));
  t.conn = (*peer)->conn;
  if ((*peer)->ready) {
    SendBegin(t);
  } else {
    (*peer)->waiting.push_back(t.id);
  }
}

absl::StatusOr<Sender::Peer*> Sender::GetOrConnect(const OutboundRequest& request) {
  const KvEndpoint& endpoint = request.destination.endpoint;
  std::string key = StrCat(endpoint.epoch, "/", request.peer.key);
  if (auto it = peer_by_key_.find(key); it != peer_by_key_.end()) return peers_[it->second].get();

  absl::StatusOr<ConnectionId> conn = medium_->Connect(endpoint, request.peer);
  if (!conn.ok()) return conn.status();
  auto peer = std::make_unique<Peer>();
  peer->conn = *conn;
  peer->key = key;
  peer->worker_id = endpoint.worker_id;
  peer->single_use = request.peer.single_use;
  peer->hello_deadline = absl::Now() + options_.handshake_timeout;
  wire::Hello hello;
  hello.sender_worker_id = options_.worker_id;
  hello.expected_epoch = endpoint.epoch;
  hello.layout = options_.layout;
  const ConnectionId id = *conn;
  medium_->SendControl(id, wire::Encode(hello), [this, id](absl::Status s) {
    if (!s.ok()) DropPeer(id, WithContext(s, "sending the KV handshake"));
  });
  GetLogger("transfer")->debug("connecting to worker={} conn={}", peer->worker_id, id);
  Peer* raw = peer.get();
  peer_by_key_[key] = id;
  peers_[id] = std::move(peer);
  return raw;
}

void Sender::SendBegin(Transfer& t) {
  if (FindPeer(t.conn) == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(t.context, ": connection lost")));
  }
  t.stage = Stage::kBegin;
  wire::Begin begin;
  begin.transfer_id = t.id;
  begin.lease_id = t.destination.lease_id;
  begin.request_id = t.destination.request_id;
  begin.num_blocks = static_cast<int32_t>(t.destination.blocks.size());
  begin.remaining_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(t.deadline - absl::Now()));
  begin.data_path = medium_->data_path();
  begin.blocks = t.destination.blocks;
  const uint64_t id = t.id;
  medium_->SendControl(t.conn, wire::Encode(begin), [this, id](absl::Status s) {
    if (!s.ok()) Fail(id, WithContext(s, "sending the transfer begin"));
  });
}

void Sender::Send(uint64_t id, std::vector<BlockCopy> copies, WriteFence fence) {
  Transfer* t = Find(id);
  if (t == nullptr || t->failed || t->finish_requested || copies.empty()) return;
  Batch batch{std::move(copies), std::move(fence)};
  if (t->stage == Stage::kActive) {
    WriteBlocks(*t, std::move(batch));
  } else {
    t->queued.push_back(std::move(batch));
  }
}

void Sender::WriteBlocks(Transfer& t, Batch batch) {
  if (FindPeer(t.conn) == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(t.context, ": connection lost")));
  }
  std::vector<BlockWrite> writes;
  writes.reserve(batch.copies.size());
  for (const BlockCopy& c : batch.copies) {
    writes.push_back({c.src_block, c.index, t.destination.blocks[static_cast<size_t>(c.index)]});
    if (options_.checksum_base != nullptr) {
      // The source block stays unchanged until the transfer ends (the KvTransfer contract).
      t.digests.resize(t.destination.blocks.size());
      t.digests[static_cast<size_t>(c.index)] = BlockDigest(
          options_.checksum_base + static_cast<int64_t>(c.src_block) * options_.bytes_per_block,
          options_.bytes_per_block);
    }
  }
  t.blocks_sent += static_cast<int64_t>(writes.size());
  ++t.in_flight;
  const uint64_t id = t.id;
  medium_->WriteBlocks(t.conn, id, std::move(writes), std::move(batch.fence),
                       [this, id](absl::Status s) { OnWritten(id, s); });
}

void Sender::OnWritten(uint64_t id, const absl::Status& s) {
  Transfer* t = Find(id);
  if (t == nullptr) return;
  --t->in_flight;
  if (t->failed) return;
  if (!s.ok()) return FailTransfer(*t, WithContext(s, StrCat(t->context, ": block write")));
  MaybeEnd(*t);
}

void Sender::Finish(uint64_t id, Completion done) {
  Transfer* t = Find(id);
  if (t == nullptr) {
    done(absl::FailedPreconditionError("kv transfer: Finish on an unknown transfer"));
    return;
  }
  t->done = std::move(done);
  t->finish_requested = true;
  if (t->failed) return Complete(*t, t->outcome);
  if (t->stage == Stage::kActive) StartDrain(*t);
}

void Sender::StartDrain(Transfer& t) {
  t.stage = Stage::kDraining;
  // Receiver-placed blocks need no flush: the receiver counts them against kEnd's count.
  if (medium_->data_path() == wire::DataPath::kOneSided) {
    t.flushing = true;
    const uint64_t id = t.id;
    medium_->Flush(t.conn, [this, id](absl::Status s) {
      Transfer* t = Find(id);
      if (t == nullptr || t->failed) return;
      t->flushing = false;
      if (!s.ok()) return FailTransfer(*t, WithContext(s, StrCat(t->context, ": flush")));
      MaybeEnd(*t);
    });
  }
  MaybeEnd(t);
}

void Sender::MaybeEnd(Transfer& t) {
  if (t.stage == Stage::kDraining && t.in_flight == 0 && !t.flushing) SendEnd(t);
}

void Sender::SendEnd(Transfer& t) {
  if (FindPeer(t.conn) == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(t.context, ": connection lost")));
  }
  t.stage = Stage::kEnding;
  t.pinned = false;  // from here on the destination learns the end from this message
  wire::End end;
  end.transfer_id = t.id;
  end.blocks_sent = t.blocks_sent;
  if (!t.digests.empty()) {
    // Logical blocks 0 .. blocks_sent-1; one never written keeps a zero and fails the check.
    end.digests.assign(t.digests.begin(),
                       t.digests.begin() + std::min<int64_t>(t.blocks_sent, static_cast<int64_t>(t.digests.size())));
  }
  const uint64_t id = t.id;
  medium_->SendControl(t.conn, wire::Encode(end), [this, id](absl::Status s) {
    if (!s.ok()) Fail(id, WithContext(s, "sending the transfer end"));
  });
}

void Sender::Abandon(uint64_t id) {
  Transfer* t = Find(id);
  if (t == nullptr) return;
  t->abandoned = true;
  if (!t->finish_requested) {
    FailTransfer(*t, absl::CancelledError(StrCat(t->context, ": abandoned before Finish")));
  }
  if ((t = Find(id)) != nullptr) MaybeForget(*t);
}

void Sender::Fail(uint64_t id, const absl::Status& status) {
  if (Transfer* t = Find(id); t != nullptr) FailTransfer(*t, WithContext(status, t->context));
}

void Sender::FailTransfer(Transfer& t, const absl::Status& status) {
  if (t.failed) return;
  t.failed = true;
  GetLogger("transfer")->info("{} failed while {} after {} blocks: {}", t.context,
                              StageName(t.stage), t.blocks_sent, status.ToString());
  if (t.stage == Stage::kHandshake) {
    if (Peer* peer = FindPeer(t.conn); peer != nullptr) std::erase(peer->waiting, t.id);
  }
  if (t.pinned) {
    t.pinned = false;
    SendEndFailure(t.conn, t.id, status);
  }
  t.outcome = status;
  t.queued.clear();
  if (t.finish_requested) return Complete(t, status);  // forgets `t`
  MaybeForget(t);
}

void Sender::Complete(Transfer& t, const absl::Status& status) {
  // A status of its own (not sharing its representation with ours): the caller may keep it.
  absl::Status outcome(status.code(), std::string(status.message()));
  Completion done = std::move(t.done);
  transfers_.erase(t.id);  // `t` is gone
  if (!done) return;
  on_outcome_(outcome.ok());
  done(std::move(outcome));
}

void Sender::MaybeForget(Transfer& t) {
  // A failed transfer stays until Finish collects its outcome, unless no Finish can come.
  if (t.failed && t.abandoned && !t.finish_requested) transfers_.erase(t.id);
}

void Sender::SendEndFailure(ConnectionId conn, uint64_t transfer_id, const absl::Status& status) {
  Peer* peer = FindPeer(conn);
  if (peer == nullptr) return;  // the connection is gone; the destination times the lease out
  ++peer->pending;
  // Flush first so that no write of this transfer lands after the destination unpinned the lease.
  medium_->Flush(conn, [this, conn, transfer_id, status](absl::Status) {
    Peer* peer = FindPeer(conn);
    if (peer == nullptr) return;
    --peer->pending;
    wire::End end;
    end.transfer_id = transfer_id;
    end.status = status;
    medium_->SendControl(conn, wire::Encode(end), nullptr);
  });
}

void Sender::DropPeer(ConnectionId conn, const absl::Status& status) {
  auto it = peers_.find(conn);
  if (it == peers_.end()) return;
  std::unique_ptr<Peer> peer = std::move(it->second);
  peers_.erase(it);
  peer_by_key_.erase(peer->key);
  GetLogger("transfer")->info("dropping connection to worker={} conn={}: {}", peer->worker_id,
                              conn, status.ToString());
  medium_->Close(conn);
  std::vector<uint64_t> affected;
  for (const auto& [id, t] : transfers_) {
    if (t->conn == conn && !t->failed) affected.push_back(id);
  }
  for (uint64_t id : affected) {
    Transfer* t = Find(id);
    if (t == nullptr) continue;
    t->pinned = false;  // the connection is closed: the destination unpins on its own
    FailTransfer(*t, WithContext(status, t->context));
  }
}

void Sender::ClosePeer(ConnectionId conn) {
  auto it = peers_.find(conn);
  if (it == peers_.end()) return;
  if (it->second->ready) medium_->SendControl(conn, wire::Encode(wire::Bye{}), nullptr);
  peer_by_key_.erase(it->second->key);
  peers_.erase(it);
  medium_->Close(conn);
}

void Sender::OnConnectionLost(ConnectionId conn, const absl::Status& status) {
  const Peer* p = FindPeer(conn);
  if (p == nullptr) return;
  DropPeer(conn, absl::Status(status.code(), StrCat("connection to worker ", p->worker_id,
                                                    " failed: ", ToStd(status.message()))));
}

void Sender::OnAck(ConnectionId conn, const wire::Ack& ack) {
  switch (ack.type) {
    case wire::MessageType::kHelloAck:
      return OnHelloAck(conn, ack);
    case wire::MessageType::kBeginAck:
      return OnBeginAck(conn, ack);
    case wire::MessageType::kEndAck:
      return OnEndAck(conn, ack);
    default:
      return;
  }
}

void Sender::OnHelloAck(ConnectionId conn, const wire::Ack& ack) {
  Peer* peer = FindPeer(conn);
  if (peer == nullptr || peer->ready) return;
  if (!ack.status.ok()) {
    return DropPeer(conn, absl::Status(ack.status.code(),
                                       StrCat("worker ", peer->worker_id, " refused the connection: ",
                                              ToStd(ack.status.message()))));
  }
  peer->ready = true;
  std::vector<uint64_t> waiting;
  waiting.swap(peer->waiting);
  for (uint64_t id : waiting) {
    if (Transfer* t = Find(id); t != nullptr && !t->failed) SendBegin(*t);
  }
}

void Sender::OnBeginAck(ConnectionId conn, const wire::Ack& ack) {
  Transfer* t = Find(ack.transfer_id);
  if (t != nullptr && t->conn != conn) return;  // not this peer's to answer
  if (t == nullptr || t->failed || t->stage != Stage::kBegin) {
    // The transfer ended while the lease was being pinned: unpin it now.
    if (ack.status.ok() && (t == nullptr || t->failed)) {
      SendEndFailure(conn, ack.transfer_id,
                     absl::CancelledError("kv transfer ended before the lease was pinned"));
    }
    return;
  }
  if (!ack.status.ok()) {
    return FailTransfer(*t, absl::Status(ack.status.code(),
                                         StrCat(t->context, ": the destination refused the lease: ",
                                                ToStd(ack.status.message()))));
  }
  t->pinned = true;
  t->stage = Stage::kActive;
  std::vector<Batch> queued;
  queued.swap(t->queued);
  const uint64_t id = t->id;
  for (Batch& batch : queued) {
    if ((t = Find(id)) == nullptr || t->failed) return;
    WriteBlocks(*t, std::move(batch));
  }
  if ((t = Find(id)) != nullptr && !t->failed && t->finish_requested) StartDrain(*t);
}

void Sender::OnEndAck(ConnectionId conn, const wire::Ack& ack) {
  Transfer* t = Find(ack.transfer_id);
  if (t == nullptr || t->conn != conn || t->failed || t->stage != Stage::kEnding) return;
  t->pinned = false;  // the destination has ended the lease either way
  if (!ack.status.ok()) {
    t->failed = true;
    const absl::Status status(ack.status.code(),
                              StrCat(t->context, ": the destination rejected the end: ",
                                     ToStd(ack.status.message())));
    t->outcome = status;
    return Complete(*t, status);
  }
  GetLogger("transfer")->debug("{} done: {} blocks", t->context, t->blocks_sent);
  Complete(*t, absl::OkStatus());
}

absl::Time Sender::Tick(absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  std::vector<uint64_t> expired;
  for (const auto& [id, t] : transfers_) {
    if (t->failed) continue;
    if (t->deadline <= now) {
      expired.push_back(id);
    } else {
      next = std::min(next, t->deadline);
    }
  }
  for (uint64_t id : expired) {
    Transfer* t = Find(id);
    if (t == nullptr || t->failed) continue;
    FailTransfer(*t, absl::DeadlineExceededError(StrCat(t->context, ": deadline passed while ",
                                                        StageName(t->stage), " (", t->blocks_sent,
                                                        " blocks written)")));
  }
  TickPeers(now);
  for (const auto& [conn, peer] : peers_) {
    if (!peer->ready) next = std::min(next, peer->hello_deadline);
  }
  return next;
}

void Sender::TickPeers(absl::Time now) {
  std::vector<ConnectionId> stalled, idle;
  for (const auto& [conn, peer] : peers_) {
    // A connection whose handshake nobody waits for any more is not kept half-open.
    if (!peer->ready && (peer->waiting.empty() || peer->hello_deadline <= now)) {
      stalled.push_back(conn);
    } else if (peer->single_use && peer->pending == 0 && !HasTransfers(conn)) {
      idle.push_back(conn);
    }
  }
  for (ConnectionId conn : stalled) {
    DropPeer(conn, absl::DeadlineExceededError("handshake not answered in time"));
  }
  for (ConnectionId conn : idle) ClosePeer(conn);
}

void Sender::Shutdown() {
  std::vector<uint64_t> ids;
  for (const auto& [id, t] : transfers_) ids.push_back(id);
  for (uint64_t id : ids) {
    Transfer* t = Find(id);
    if (t == nullptr) continue;
    t->abandoned = true;  // no Finish can reach us any more
    if (!t->failed) {
      FailTransfer(*t, absl::CancelledError(StrCat(t->context, ": the source transport shut down")));
    } else if (t->finish_requested) {
      Complete(*t, t->outcome);
    }
    if ((t = Find(id)) != nullptr) MaybeForget(*t);
  }
  std::vector<ConnectionId> conns;
  for (const auto& [conn, peer] : peers_) conns.push_back(conn);
  for (ConnectionId conn : conns) ClosePeer(conn);
}

}  // namespace tandem::transfer
