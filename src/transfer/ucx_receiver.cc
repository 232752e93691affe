#include "transfer/ucx_receiver.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/strings.h"

namespace tandem::transfer {
namespace {

// Longest lease a sender may ask for (its time left is attacker- or bug-controlled input).
constexpr int64_t kMaxRemainingMs = 24LL * 3600 * 1000;

}  // namespace

absl::Status UcxReceiver::CheckHello(const wire::Hello& m) const {
  if (m.expected_epoch != local_->epoch) {
    return absl::FailedPreconditionError(
        StrCat("stale epoch ", m.expected_epoch, ": worker ", local_->worker_id,
               " is at epoch ", local_->epoch, " (it restarted; its old endpoint is void)"));
  }
  if (std::string diff = local_->layout.Mismatch(m.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat("KV layout mismatch (destination vs source): ", diff));
  }
  return absl::OkStatus();
}

void UcxReceiver::OnHello(const wire::Hello& m) {
  const PeerKey key{m.sender_epoch, m.conn_id};
  if (peers_.contains(key)) return Reply(key, wire::MessageType::kHelloAck, 0, absl::OkStatus());
  auto ep = loop_->Connect(m.sender_address, [this, key](absl::Status s) {
    auto it = peers_.find(key);
    if (it == peers_.end()) return;
    DropPeer(key, absl::UnavailableError(StrCat("sender worker ", it->second.worker_id,
                                                " went away mid-transfer: ",
                                                ToStd(s.message()))));
  });
  if (!ep.ok()) {
    GetLogger("transfer")->warn("cannot answer the handshake of worker={}: {}", m.sender_worker_id,
                                ep.status().ToString());
    return;
  }
  peers_[key] = InboundPeer{*ep, m.sender_worker_id};
  const absl::Status verdict = CheckHello(m);
  Reply(key, wire::MessageType::kHelloAck, 0, verdict);
  if (!verdict.ok()) {
    GetLogger("transfer")->warn("refused KV connection from worker={}: {}", m.sender_worker_id,
                                verdict.ToString());
    loop_->Disconnect(*ep);  // flushes the refusal first
    peers_.erase(key);
  }
}

void UcxReceiver::OnBegin(const wire::Begin& m) {
  const PeerKey key{m.sender_epoch, m.conn_id};
  auto peer = peers_.find(key);
  if (peer == peers_.end()) {
    GetLogger("transfer")->warn("transfer begin for lease={} on an unknown connection", m.lease_id);
    return;
  }
  const LeaseKey lease_key{m.sender_epoch, m.conn_id, m.transfer_id};
  if (leases_.contains(lease_key)) {
    return Reply(key, wire::MessageType::kBeginAck, m.transfer_id, absl::OkStatus());
  }
  absl::Status status;
  for (int32_t b : m.blocks) {
    if (b < 0 || b >= local_->num_blocks) {
      status = absl::InvalidArgumentError(StrCat("destination block ", b, " outside the cache of ",
                                                 local_->num_blocks, " blocks"));
      break;
    }
  }
  if (!status.ok()) {
  } else if (handler_ == nullptr) {
    status = absl::FailedPreconditionError(
        StrCat("worker ", local_->worker_id, " accepts no inbound KV transfers"));
  } else {
    status = handler_->TransferStarting(m.lease_id, m.num_blocks);
  }
  if (status.ok()) {
    const int64_t remaining = std::clamp<int64_t>(m.remaining_ms, 0, kMaxRemainingMs);
    Lease& lease = leases_[lease_key];
    lease.lease_id = m.lease_id;
    lease.deadline = absl::Now() + absl::Milliseconds(remaining) + lease_grace_;
    lease.sender = peer->second.worker_id;
    lease.data_path = m.data_path;
    lease.blocks = m.blocks;
    GetLogger("transfer")->debug("lease={} pinned for worker={} ({} blocks)", m.lease_id,
                                 peer->second.worker_id, m.num_blocks);
  }
  Reply(key, wire::MessageType::kBeginAck, m.transfer_id, status);
}

ucs_status_t UcxReceiver::OnBlock(std::string_view header, void* data, size_t length, bool rndv) {
  // A rendezvous block we do not take fails the sender's write with the returned status.
  const ucs_status_t reject = rndv ? UCS_ERR_REJECTED : UCS_OK;
  auto h = wire::DecodeBlockHeader(header);
  if (!h.ok()) return reject;
  auto it = leases_.find(LeaseKey{h->sender_epoch, h->conn_id, h->transfer_id});
  if (it == leases_.end() || it->second.data_path != wire::DataPath::kActiveMessage ||
      (it->second.ending && !it->second.end_status.ok())) {
    return reject;  // not (or no longer) a pinned lease of this sender: never write its blocks
  }
  Lease& lease = it->second;
  if (h->index < 0 || static_cast<size_t>(h->index) >= lease.blocks.size() ||
      static_cast<int64_t>(length) != local_->bytes_per_block) {
    if (lease.data_error.ok()) {
      lease.data_error = absl::InvalidArgumentError(
          StrCat("block message index=", h->index, " of ", length, " bytes does not fit the lease"));
    }
    return reject;
  }
  uint8_t* dst = local_->base + lease.blocks[static_cast<size_t>(h->index)] * local_->bytes_per_block;
  if (!rndv) {
    std::memcpy(dst, data, length);
    ++lease.received;
    if (lease.ending) {  // the last blocks may trail the end message
      const LeaseKey key = it->first;
      loop_->Defer([this, key] { MaybeComplete(key); });
    }
    return UCS_OK;
  }
  ++lease.receiving;
  const LeaseKey key = it->first;
  loop_->ReceiveData(data, dst, length, local_->memh,
                     [this, key](absl::Status s) { OnBlockReceived(key, s); });
  return UCS_INPROGRESS;
}

void UcxReceiver::OnBlockReceived(const LeaseKey& key, const absl::Status& status) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return;
  Lease& lease = it->second;
  --lease.receiving;
  if (status.ok()) {
    ++lease.received;
  } else if (lease.data_error.ok()) {
    lease.data_error = status;
  }
  if (lease.ending) MaybeComplete(key);
}

bool UcxReceiver::Settled(const Lease& lease) const {
  if (lease.receiving > 0) return false;  // never hand back blocks a receive still writes
  return !lease.end_status.ok() || !lease.data_error.ok() ||
         lease.data_path != wire::DataPath::kActiveMessage || lease.received >= lease.blocks_sent;
}

void UcxReceiver::MaybeComplete(const LeaseKey& key) {
  auto it = leases_.find(key);
  if (it != leases_.end() && it->second.ending && Settled(it->second)) CompleteLease(it);
}

void UcxReceiver::OnEnd(const wire::End& m) {
  const PeerKey key{m.sender_epoch, m.conn_id};
  auto it = leases_.find(LeaseKey{m.sender_epoch, m.conn_id, m.transfer_id});
  if (it != leases_.end() && !it->second.ending) {
    it->second.blocks_sent = m.blocks_sent;
    it->second.ack_end = true;
    return EndLease(it, m.status);  // acknowledged with the final verdict
  }
  if (m.status.ok()) {
    Reply(key, wire::MessageType::kEndAck, m.transfer_id,
          absl::FailedPreconditionError(StrCat("transfer ", m.transfer_id,
                                               " holds no pinned lease on worker ",
                                               local_->worker_id,
                                               " (it expired before the transfer ended)")));
  }
}

void UcxReceiver::OnBye(const wire::Bye& m) {
  const PeerKey key{m.sender_epoch, m.conn_id};
  auto it = peers_.find(key);
  if (it == peers_.end()) return;
  DropPeer(key, absl::UnavailableError(StrCat("sender worker ", it->second.worker_id,
                                              " closed the connection mid-transfer")));
}

void UcxReceiver::Reply(const PeerKey& key, wire::MessageType type, uint64_t transfer_id,
                        const absl::Status& status) {
  auto it = peers_.find(key);
  if (it == peers_.end()) return;
  wire::Ack ack;
  ack.type = type;
  ack.conn_id = key.second;
  ack.transfer_id = transfer_id;
  ack.status = status;
  loop_->SendMessage(it->second.reply_ep, wire::Encode(ack));
}

void UcxReceiver::EndLease(std::map<LeaseKey, Lease>::iterator it, const absl::Status& status) {
  Lease& lease = it->second;
  if (lease.ending) return;
  lease.ending = true;
  lease.end_status = status;
  // A receive still writing into the lease's blocks must finish (or fail) first: the handler
  // may hand the blocks to another request as soon as TransferEnded returns. After kEnd(OK),
  // blocks that the end message overtook (eager messages on another lane) are still awaited.
  if (Settled(lease)) CompleteLease(it);
}

void UcxReceiver::CompleteLease(std::map<LeaseKey, Lease>::iterator it) {
  const LeaseKey key = it->first;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  absl::Status status = lease.end_status;
  if (status.ok() && !lease.data_error.ok()) {
    status = absl::DataLossError(StrCat("a block of lease ", lease.lease_id,
                                        " failed to arrive: ", ToStd(lease.data_error.message())));
  } else if (status.ok() && lease.data_path == wire::DataPath::kActiveMessage &&
             lease.received != lease.blocks_sent) {
    status = absl::DataLossError(StrCat("lease ", lease.lease_id, " received ", lease.received,
                                        " of the ", lease.blocks_sent, " blocks sent"));
  }
  if (status.ok()) {
    GetLogger("transfer")->debug("lease={} filled by worker={} ({} blocks)", lease.lease_id,
                                 lease.sender, lease.received);
  } else {
    GetLogger("transfer")->info("lease={} from worker={} unpinned: {}", lease.lease_id,
                                lease.sender, status.ToString());
  }
  handler_->TransferEnded(lease.lease_id, status);
  if (lease.ack_end) {
    Reply(PeerKey{std::get<0>(key), std::get<1>(key)}, wire::MessageType::kEndAck,
          std::get<2>(key), status);
  }
}

void UcxReceiver::DropPeer(const PeerKey& key, const absl::Status& status) {
  auto peer = peers_.find(key);
  if (peer == peers_.end()) return;
  const ucp_ep_h ep = peer->second.reply_ep;
  peers_.erase(peer);
  loop_->Disconnect(ep);
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (std::get<0>(it->first) == key.first && std::get<1>(it->first) == key.second) {
      EndLease(it, status);
    }
    it = next;
  }
}

absl::Time UcxReceiver::Tick(absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto current = it++;
    Lease& lease = current->second;
    if (lease.deadline <= now) {
      const absl::Status late = absl::DeadlineExceededError(
          StrCat("kv transfer into lease=", lease.lease_id, " from worker=", lease.sender,
                 " did not end within its deadline (", lease.received, " blocks arrived)"));
      if (!lease.ending) {
        EndLease(current, late);
      } else if (lease.end_status.ok()) {
        lease.end_status = late;  // blocks announced by kEnd never came
        MaybeComplete(current->first);
      }
    } else if (!lease.ending || lease.end_status.ok()) {
      next = std::min(next, lease.deadline);
    }
  }
  return next;
}

void UcxReceiver::Shutdown() {
  while (!leases_.empty()) {
    auto it = leases_.begin();
    it->second.ending = true;
    it->second.ack_end = false;
    it->second.end_status = absl::UnavailableError(
        StrCat("kv transfer: the transport of worker ", local_->worker_id, " shut down"));
    CompleteLease(it);
  }
  peers_.clear();  // the loop closes the endpoints
}

}  // namespace tandem::transfer
