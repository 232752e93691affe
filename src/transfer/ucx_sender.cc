#include "transfer/ucx_sender.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/time/clock.h"
#include "common/logging.h"

namespace tandem::transfer {
namespace {

// Adds `context` in front of an error's message, keeping its code.
absl::Status WithContext(const absl::Status& s, std::string_view context) {
  return absl::Status(s.code(), StrCat(context, ": ", ToStd(s.message())));
}

}  // namespace

UcxSender::~UcxSender() = default;

std::string UcxSender::Context(const Transfer& t) {
  return StrCat("kv transfer lease=", t.destination.lease_id,
                " to worker=", t.destination.endpoint.worker_id);
}

std::string_view UcxSender::StageName(Stage s) {
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

UcxSender::Transfer* UcxSender::Find(uint64_t id) {
  auto it = transfers_.find(id);
  return it == transfers_.end() ? nullptr : it->second.get();
}

UcxSender::Peer* UcxSender::FindPeer(uint64_t conn_id) {
  auto it = peers_.find(conn_id);
  return it == peers_.end() ? nullptr : it->second.get();
}

void UcxSender::Start(OutboundRequest request) {
  auto owned = std::make_unique<Transfer>();
  Transfer& t = *owned;
  t.id = request.id;
  t.destination = request.destination;
  t.deadline = request.deadline;
  transfers_[t.id] = std::move(owned);
  if (absl::Now() >= t.deadline) {
    return FailTransfer(t, absl::DeadlineExceededError(
                               StrCat(Context(t), ": the deadline passed before it started")));
  }
  absl::StatusOr<Peer*> peer = GetOrConnect(request);
  if (!peer.ok()) return FailTransfer(t, WithContext(peer.status(), Context(t)));
  t.conn_id = (*peer)->conn_id;
  if ((*peer)->ready) {
    SendBegin(t);
  } else {
    (*peer)->waiting.push_back(t.id);
  }
}

absl::StatusOr<UcxSender::Peer*> UcxSender::GetOrConnect(const OutboundRequest& request) {
  std::string key = StrCat(request.destination.endpoint.epoch, "/", request.address.worker_address);
  if (auto it = peer_by_key_.find(key); it != peer_by_key_.end()) return peers_[it->second].get();

  auto peer = std::make_unique<Peer>();
  peer->conn_id = next_conn_id_++;
  peer->key = key;
  peer->worker_id = request.destination.endpoint.worker_id;
  peer->address = request.address;
  const uint64_t conn_id = peer->conn_id;
  auto ep = loop_->Connect(request.address.worker_address, [this, conn_id](absl::Status s) {
    const Peer* p = FindPeer(conn_id);
    DropPeer(conn_id, absl::UnavailableError(StrCat("connection to worker ",
                                                    p ? p->worker_id : "?", " failed: ",
                                                    ToStd(s.message()))));
  });
  if (!ep.ok()) return ep.status();
  peer->ep = *ep;
  const ucs_status_t st = ucp_ep_rkey_unpack(peer->ep, request.address.rkey.data(), &peer->rkey);
  if (st != UCS_OK) {
    loop_->Disconnect(peer->ep);
    return UcsError(st, "ucp_ep_rkey_unpack of the destination's remote key");
  }
  wire::Hello hello;
  hello.sender_epoch = local_->epoch;
  hello.conn_id = conn_id;
  hello.sender_worker_id = local_->worker_id;
  hello.sender_address = loop_->worker_address();
  hello.expected_epoch = request.destination.endpoint.epoch;
  hello.layout = local_->layout;
  loop_->SendMessage(peer->ep, wire::Encode(hello), [this, conn_id](absl::Status s) {
    if (!s.ok()) DropPeer(conn_id, WithContext(s, "sending the KV handshake"));
  });
  GetLogger("transfer")->debug("connecting to worker={} conn={}", peer->worker_id, conn_id);
  Peer* raw = peer.get();
  peer_by_key_[key] = conn_id;
  peers_[conn_id] = std::move(peer);
  return raw;
}

void UcxSender::SendBegin(Transfer& t) {
  Peer* peer = FindPeer(t.conn_id);
  if (peer == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(Context(t), ": connection lost")));
  }
  t.stage = Stage::kBegin;
  wire::Begin begin;
  begin.sender_epoch = local_->epoch;
  begin.conn_id = t.conn_id;
  begin.transfer_id = t.id;
  begin.lease_id = t.destination.lease_id;
  begin.num_blocks = static_cast<int32_t>(t.destination.blocks.size());
  begin.remaining_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(t.deadline - absl::Now()));
  begin.data_path = data_path_;
  if (data_path_ == wire::DataPath::kActiveMessage) begin.blocks = t.destination.blocks;
  const uint64_t id = t.id;
  loop_->SendMessage(peer->ep, wire::Encode(begin), [this, id](absl::Status s) {
    if (!s.ok()) Fail(id, WithContext(s, "sending the transfer begin"));
  });
}

void UcxSender::Send(uint64_t id, const std::vector<BlockCopy>& copies) {
  Transfer* t = Find(id);
  if (t == nullptr || t->failed || t->finish_requested) return;
  if (t->stage == Stage::kActive) {
    WriteBlocks(*t, copies);
  } else {
    t->queued.insert(t->queued.end(), copies.begin(), copies.end());
  }
}

void UcxSender::WriteBlocks(Transfer& t, const std::vector<BlockCopy>& copies) {
  Peer* peer = FindPeer(t.conn_id);
  if (peer == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(Context(t), ": connection lost")));
  }
  const int64_t bytes = local_->bytes_per_block;
  const uint64_t id = t.id;
  for (const BlockCopy& c : copies) {
    const uint8_t* src = local_->base + c.src_block * bytes;
    ++t.blocks_sent;
    if (data_path_ == wire::DataPath::kRmaPut) {
      const int64_t dst = t.destination.blocks[static_cast<size_t>(c.index)];
      const uint64_t remote = peer->address.remote_base + static_cast<uint64_t>(dst * bytes);
      loop_->Put(peer->ep, src, static_cast<size_t>(bytes), remote, peer->rkey, local_->memh,
                 [this, id](absl::Status s) {
                   if (!s.ok()) Fail(id, WithContext(s, "RMA put"));
                 });
      continue;
    }
    wire::BlockHeader header;
    header.sender_epoch = local_->epoch;
    header.conn_id = t.conn_id;
    header.transfer_id = id;
    header.index = c.index;
    ++t.in_flight;
    loop_->SendData(peer->ep, wire::Encode(header), src, static_cast<size_t>(bytes), local_->memh,
                    [this, id](absl::Status s) {
                      Transfer* t = Find(id);
                      if (t == nullptr) return;
                      --t->in_flight;
                      if (t->failed) return;
                      if (!s.ok()) return FailTransfer(*t, WithContext(s, StrCat(Context(*t), ": block write")));
                      if (t->stage == Stage::kDraining && t->in_flight == 0) SendEnd(*t);
                    });
  }
}

void UcxSender::Finish(uint64_t id, std::function<void(absl::Status)> done) {
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

void UcxSender::StartDrain(Transfer& t) {
  Peer* peer = FindPeer(t.conn_id);
  if (peer == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(Context(t), ": connection lost")));
  }
  t.stage = Stage::kDraining;
  if (data_path_ == wire::DataPath::kActiveMessage) {
    // A data message completes once the destination holds its block.
    if (t.in_flight == 0) SendEnd(t);
    return;
  }
  const uint64_t id = t.id;
  loop_->Flush(peer->ep, [this, id](absl::Status s) {
    Transfer* t = Find(id);
    if (t == nullptr || t->failed) return;
    if (!s.ok()) return FailTransfer(*t, WithContext(s, StrCat(Context(*t), ": flush")));
    SendEnd(*t);
  });
}

void UcxSender::SendEnd(Transfer& t) {
  Peer* peer = FindPeer(t.conn_id);
  if (peer == nullptr) {
    return FailTransfer(t, absl::UnavailableError(StrCat(Context(t), ": connection lost")));
  }
  t.stage = Stage::kEnding;
  t.pinned = false;  // from here on the destination learns the end from this message
  wire::End end;
  end.sender_epoch = local_->epoch;
  end.conn_id = t.conn_id;
  end.transfer_id = t.id;
  end.blocks_sent = t.blocks_sent;
  const uint64_t id = t.id;
  loop_->SendMessage(peer->ep, wire::Encode(end), [this, id](absl::Status s) {
    if (!s.ok()) Fail(id, WithContext(s, "sending the transfer end"));
  });
}

void UcxSender::Abandon(uint64_t id) {
  Transfer* t = Find(id);
  if (t == nullptr) return;
  t->abandoned = true;
  if (!t->finish_requested) {
    FailTransfer(*t, absl::CancelledError(StrCat(Context(*t), ": abandoned before Finish")));
  }
  if ((t = Find(id)) != nullptr) MaybeForget(*t);
}

void UcxSender::Fail(uint64_t id, const absl::Status& status) {
  if (Transfer* t = Find(id); t != nullptr) FailTransfer(*t, WithContext(status, Context(*t)));
}

void UcxSender::FailTransfer(Transfer& t, const absl::Status& status) {
  if (t.failed) return;
  t.failed = true;
  GetLogger("transfer")->info("{} failed while {} after {} blocks: {}", Context(t),
                              StageName(t.stage), t.blocks_sent, status.ToString());
  if (t.stage == Stage::kHandshake) {
    if (Peer* peer = FindPeer(t.conn_id); peer != nullptr) std::erase(peer->waiting, t.id);
  }
  if (t.pinned) {
    t.pinned = false;
    SendEndFailure(t.conn_id, t.id, status);
  }
  t.outcome = status;
  t.queued.clear();
  if (t.finish_requested) return Complete(t, status);  // forgets `t`
  MaybeForget(t);
}

void UcxSender::Complete(Transfer& t, const absl::Status& status) {
  // A status of its own (not sharing its representation with ours): the caller may keep it.
  absl::Status outcome(status.code(), std::string(status.message()));
  auto done = std::move(t.done);
  transfers_.erase(t.id);  // `t` is gone
  if (done) done(std::move(outcome));
}

void UcxSender::MaybeForget(Transfer& t) {
  // A failed transfer stays until Finish collects its outcome, unless no Finish can come.
  if (t.failed && t.abandoned && !t.finish_requested) transfers_.erase(t.id);
}

void UcxSender::SendEndFailure(uint64_t conn_id, uint64_t transfer_id, const absl::Status& status) {
  Peer* peer = FindPeer(conn_id);
  if (peer == nullptr) return;  // the connection is gone; the destination times the lease out
  // Flush first so that no put of this transfer lands after the destination unpinned the lease.
  loop_->Flush(peer->ep, [this, conn_id, transfer_id, status](absl::Status) {
    Peer* peer = FindPeer(conn_id);
    if (peer == nullptr) return;
    wire::End end;
    end.sender_epoch = local_->epoch;
    end.conn_id = conn_id;
    end.transfer_id = transfer_id;
    end.status = status;
    loop_->SendMessage(peer->ep, wire::Encode(end));
  });
}

void UcxSender::DropPeer(uint64_t conn_id, const absl::Status& status) {
  auto it = peers_.find(conn_id);
  if (it == peers_.end()) return;
  std::unique_ptr<Peer> peer = std::move(it->second);
  peers_.erase(it);
  peer_by_key_.erase(peer->key);
  GetLogger("transfer")->info("dropping connection to worker={} conn={}: {}", peer->worker_id,
                              conn_id, status.ToString());
  ClosePeer(*peer);
  std::vector<uint64_t> affected;
  for (const auto& [id, t] : transfers_) {
    if (t->conn_id == conn_id && !t->failed) affected.push_back(id);
  }
  for (uint64_t id : affected) {
    Transfer* t = Find(id);
    if (t == nullptr) continue;
    t->pinned = false;  // the endpoint is closed: the destination unpins on its own
    FailTransfer(*t, WithContext(status, Context(*t)));
  }
}

void UcxSender::ClosePeer(Peer& peer) {
  ucp_rkey_h rkey = std::exchange(peer.rkey, nullptr);
  ucp_ep_h ep = peer.ep;
  if (loop_->EpFailed(ep)) {
    // UCX already completed the endpoint's outstanding operations with errors.
    if (rkey != nullptr) ucp_rkey_destroy(rkey);
    loop_->Disconnect(ep);
    return;
  }
  // A remote key must outlive the operations that use it and die before its endpoint.
  loop_->Flush(ep, [this, rkey, ep](absl::Status) {
    if (rkey != nullptr) ucp_rkey_destroy(rkey);
    loop_->Disconnect(ep);
  });
}

void UcxSender::OnAck(const wire::Ack& ack) {
  switch (ack.type) {
    case wire::MessageType::kHelloAck:
      return OnHelloAck(ack);
    case wire::MessageType::kBeginAck:
      return OnBeginAck(ack);
    case wire::MessageType::kEndAck:
      return OnEndAck(ack);
    default:
      return;
  }
}

void UcxSender::OnHelloAck(const wire::Ack& ack) {
  Peer* peer = FindPeer(ack.conn_id);
  if (peer == nullptr || peer->ready) return;
  if (!ack.status.ok()) {
    return DropPeer(ack.conn_id, absl::Status(ack.status.code(),
                                              StrCat("worker ", peer->worker_id,
                                                     " refused the connection: ",
                                                     ToStd(ack.status.message()))));
  }
  peer->ready = true;
  std::vector<uint64_t> waiting;
  waiting.swap(peer->waiting);
  for (uint64_t id : waiting) {
    if (Transfer* t = Find(id); t != nullptr && !t->failed) SendBegin(*t);
  }
}

void UcxSender::OnBeginAck(const wire::Ack& ack) {
  Transfer* t = Find(ack.transfer_id);
  if (t == nullptr || t->failed || t->stage != Stage::kBegin) {
    // The transfer ended while the lease was being pinned: unpin it now.
    if (ack.status.ok() && (t == nullptr || t->failed)) {
      SendEndFailure(ack.conn_id, ack.transfer_id,
                     absl::CancelledError("kv transfer ended before the lease was pinned"));
    }
    return;
  }
  if (!ack.status.ok()) {
    return FailTransfer(*t, absl::Status(ack.status.code(),
                                         StrCat(Context(*t), ": the destination refused the lease: ",
                                                ToStd(ack.status.message()))));
  }
  t->pinned = true;
  t->stage = Stage::kActive;
  std::vector<BlockCopy> queued;
  queued.swap(t->queued);
  if (!queued.empty()) WriteBlocks(*t, queued);
  if ((t = Find(ack.transfer_id)) != nullptr && !t->failed && t->finish_requested) StartDrain(*t);
}

void UcxSender::OnEndAck(const wire::Ack& ack) {
  Transfer* t = Find(ack.transfer_id);
  if (t == nullptr || t->failed || t->stage != Stage::kEnding) return;
  t->pinned = false;  // the destination has ended the lease either way
  if (!ack.status.ok()) {
    t->failed = true;
    const absl::Status status(ack.status.code(), StrCat(Context(*t), ": the destination rejected the end: ",
                                                       ToStd(ack.status.message())));
    t->outcome = status;
    return Complete(*t, status);
  }
  GetLogger("transfer")->debug("{} done: {} blocks", Context(*t), t->blocks_sent);
  Complete(*t, absl::OkStatus());
}

absl::Time UcxSender::Tick(absl::Time now) {
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
    FailTransfer(*t, absl::DeadlineExceededError(StrCat(Context(*t), ": deadline passed while ",
                                                        StageName(t->stage), " (", t->blocks_sent,
                                                        " blocks written)")));
  }
  // A connection whose handshake nobody waits for any more is not kept half-open.
  std::vector<uint64_t> idle;
  for (const auto& [conn_id, peer] : peers_) {
    if (!peer->ready && peer->waiting.empty()) idle.push_back(conn_id);
  }
  for (uint64_t conn_id : idle) {
    DropPeer(conn_id, absl::DeadlineExceededError("handshake not answered in time"));
  }
  return next;
}

void UcxSender::Shutdown() {
  std::vector<uint64_t> ids;
  for (const auto& [id, t] : transfers_) ids.push_back(id);
  for (uint64_t id : ids) {
    Transfer* t = Find(id);
    if (t == nullptr) continue;
    t->abandoned = true;  // no Finish can reach us any more
    if (!t->failed) {
      FailTransfer(*t, absl::CancelledError(StrCat(Context(*t), ": the source transport shut down")));
    } else if (t->finish_requested) {
      Complete(*t, t->outcome);
    }
    if ((t = Find(id)) != nullptr) MaybeForget(*t);
  }
  std::vector<std::unique_ptr<Peer>> peers;
  for (auto& [conn_id, peer] : peers_) peers.push_back(std::move(peer));
  peers_.clear();
  peer_by_key_.clear();
  for (auto& peer : peers) {
    if (peer->ready) {
      wire::Bye bye;
      bye.sender_epoch = local_->epoch;
      bye.conn_id = peer->conn_id;
      loop_->SendMessage(peer->ep, wire::Encode(bye));
    }
    ClosePeer(*peer);
  }
}

}  // namespace tandem::transfer
