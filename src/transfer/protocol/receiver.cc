#include "transfer/protocol/receiver.h"

#include <algorithm>
#include <vector>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/strings.h"
#include "transfer/protocol/block_digest.h"

namespace tandem::transfer {
namespace {

// Longest lease a sender may ask for (its time left is attacker- or bug-controlled input).
constexpr int64_t kMaxRemainingMs = 24LL * 3600 * 1000;

}  // namespace

std::string Receiver::LeaseContext(const Lease& lease) {
  return StrCat("kv transfer request=", lease.request_id, " lease=", lease.lease_id,
                " from worker=", lease.sender);
}

void Receiver::OnMessage(ConnectionId conn, wire::MessageType type, std::string_view payload) {
  absl::Status status;
  if (type != wire::MessageType::kHello && !peers_.contains(conn)) {
    status = absl::FailedPreconditionError("a message before the handshake");
  } else if (type == wire::MessageType::kHello) {
    auto m = wire::DecodeHello(payload);
    if ((status = m.status()).ok()) OnHello(conn, *m);
  } else if (type == wire::MessageType::kBegin) {
    auto m = wire::DecodeBegin(payload);
    if ((status = m.status()).ok()) OnBegin(conn, *m);
  } else if (type == wire::MessageType::kEnd) {
    auto m = wire::DecodeEnd(payload);
    if ((status = m.status()).ok()) OnEnd(conn, *m);
  } else if (type == wire::MessageType::kBye) {
    auto m = wire::DecodeBye(payload);
    if ((status = m.status()).ok()) OnBye(conn);
  } else {
    status = absl::InvalidArgumentError("an acknowledgement sent to the receiving side");
  }
  if (!status.ok()) {
    GetLogger("transfer")->warn("dropped a kv transfer message of {} bytes on conn={}: {}",
                                payload.size(), conn, status.ToString());
  }
}

absl::Status Receiver::CheckHello(const wire::Hello& m) const {
  if (m.expected_epoch != options_.epoch) {
    return absl::FailedPreconditionError(
        StrCat("stale epoch ", m.expected_epoch, ": worker ", options_.worker_id, " is at epoch ",
               options_.epoch, " (it restarted; its old endpoint is void)"));
  }
  if (std::string diff = options_.layout.Mismatch(m.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat("KV layout mismatch (destination vs source): ", diff));
  }
  return absl::OkStatus();
}

void Receiver::OnHello(ConnectionId conn, const wire::Hello& m) {
  if (peers_.contains(conn)) return Reply(conn, wire::MessageType::kHelloAck, 0, absl::OkStatus());
  const absl::Status verdict = CheckHello(m);
  peers_[conn] = m.sender_worker_id;
  Reply(conn, wire::MessageType::kHelloAck, 0, verdict);
  if (!verdict.ok()) {
    GetLogger("transfer")->warn("refused KV connection from worker={}: {}", m.sender_worker_id,
                                verdict.ToString());
    peers_.erase(conn);
    medium_->Close(conn);  // after the refusal has gone out
  }
}

absl::Status Receiver::CheckBegin(const wire::Begin& m) const {
  for (int32_t b : m.blocks) {
    if (b < 0 || b >= options_.num_blocks) {
      return absl::InvalidArgumentError(StrCat("destination block ", b, " outside the cache of ",
                                               options_.num_blocks, " blocks"));
    }
  }
  if (options_.handler == nullptr) {
    return absl::FailedPreconditionError(
        StrCat("worker ", options_.worker_id, " accepts no inbound KV transfers"));
  }
  if (static_cast<size_t>(m.num_blocks) != m.blocks.size()) {
    return absl::InvalidArgumentError(StrCat("kBegin names ", m.blocks.size(), " blocks but counts ", m.num_blocks));
  }
  return options_.handler->TransferStarting(m.lease_id, m.blocks);
}

void Receiver::OnBegin(ConnectionId conn, const wire::Begin& m) {
  const LeaseKey key{conn, m.transfer_id};
  if (leases_.contains(key)) {
    return Reply(conn, wire::MessageType::kBeginAck, m.transfer_id, absl::OkStatus());
  }
  const absl::Status status = CheckBegin(m);
  if (status.ok()) {
    const int64_t remaining = std::clamp<int64_t>(m.remaining_ms, 0, kMaxRemainingMs);
    Lease& lease = leases_[key];
    lease.lease_id = m.lease_id;
    lease.request_id = m.request_id;
    lease.deadline = absl::Now() + absl::Milliseconds(remaining) + options_.lease_grace;
    lease.sender = peers_[conn];
    lease.data_path = m.data_path;
    lease.blocks = m.blocks;
    lease.offered.assign(m.blocks.size(), false);
    GetLogger("transfer")->debug("{}: pinned ({} blocks)", LeaseContext(lease), m.num_blocks);
  } else {
    GetLogger("transfer")->info("kv transfer request={} lease={} from worker={} refused: {}",
                                m.request_id, m.lease_id, peers_[conn], status.ToString());
  }
  Reply(conn, wire::MessageType::kBeginAck, m.transfer_id, status);
}

absl::StatusOr<int32_t> Receiver::OnBlockOffered(ConnectionId conn, const wire::BlockHeader& h,
                                                 size_t length) {
  auto it = leases_.find(LeaseKey{conn, h.transfer_id});
  if (it == leases_.end() || it->second.data_path != wire::DataPath::kReceiverPlaced ||
      (it->second.ending && !it->second.end_status.ok())) {
    // Not (or no longer) a lease pinned by this connection: never write its blocks.
    return absl::FailedPreconditionError("a block for no lease pinned by this connection");
  }
  Lease& lease = it->second;
  if (h.index < 0 || static_cast<size_t>(h.index) >= lease.blocks.size() ||
      static_cast<int64_t>(length) != options_.bytes_per_block || lease.offered[static_cast<size_t>(h.index)]) {
    absl::Status misfit = absl::InvalidArgumentError(
        StrCat("block message index=", h.index, " of ", length, " bytes does not fit the lease (or came twice)"));
    if (lease.data_error.ok()) lease.data_error = misfit;
    return misfit;
  }
  lease.offered[static_cast<size_t>(h.index)] = true;
  ++lease.receiving;
  return lease.blocks[static_cast<size_t>(h.index)];
}

void Receiver::OnBlockPlaced(ConnectionId conn, uint64_t transfer_id, const absl::Status& status) {
  auto it = leases_.find(LeaseKey{conn, transfer_id});
  if (it == leases_.end()) return;
  Lease& lease = it->second;
  --lease.receiving;
  if (status.ok()) {
    ++lease.received;
  } else if (lease.data_error.ok()) {
    lease.data_error = status;
  }
  if (lease.ending) MaybeComplete(it->first);
}

bool Receiver::Settled(const Lease& lease) const {
  if (lease.receiving > 0) return false;  // never hand back blocks a placement still writes
  return !lease.end_status.ok() || !lease.data_error.ok() ||
         lease.data_path != wire::DataPath::kReceiverPlaced || lease.received >= lease.blocks_sent;
}

void Receiver::MaybeComplete(const LeaseKey& key) {
  auto it = leases_.find(key);
  if (it != leases_.end() && it->second.ending && Settled(it->second)) CompleteLease(it);
}

void Receiver::OnEnd(ConnectionId conn, const wire::End& m) {
  auto it = leases_.find(LeaseKey{conn, m.transfer_id});
  if (it != leases_.end() && !it->second.ending) {
    it->second.blocks_sent = m.blocks_sent;
    it->second.digests = m.digests;
    it->second.ack_end = true;
    return EndLease(it, m.status);  // acknowledged with the final verdict
  }
  if (m.status.ok()) {
    Reply(conn, wire::MessageType::kEndAck, m.transfer_id,
          absl::FailedPreconditionError(StrCat("transfer ", m.transfer_id,
                                               " holds no pinned lease on worker ",
                                               options_.worker_id,
                                               " (it expired before the transfer ended)")));
  }
}

void Receiver::OnBye(ConnectionId conn) {
  DropPeer(conn, absl::UnavailableError(StrCat("sender worker ", peers_[conn],
                                               " closed the connection mid-transfer")));
}

void Receiver::OnConnectionLost(ConnectionId conn, const absl::Status& status) {
  auto it = peers_.find(conn);
  if (it == peers_.end()) return;
  DropPeer(conn, absl::UnavailableError(StrCat("sender worker ", it->second,
                                               " went away mid-transfer: ",
                                               ToStd(status.message()))));
}

void Receiver::Reply(ConnectionId conn, wire::MessageType type, uint64_t transfer_id,
                     const absl::Status& status) {
  if (!peers_.contains(conn)) return;
  wire::Ack ack;
  ack.type = type;
  ack.transfer_id = transfer_id;
  ack.status = status;
  medium_->SendControl(conn, wire::Encode(ack), nullptr);
}

void Receiver::EndLease(LeaseMap::iterator it, const absl::Status& status) {
  Lease& lease = it->second;
  if (lease.ending) return;
  lease.ending = true;
  lease.end_status = status;
  // A placement still writing into the lease's blocks must finish (or fail) first: the handler
  // may hand the blocks to another request as soon as TransferEnded returns. After kEnd(OK),
  // blocks that the end message overtook (eager messages on another lane) are still awaited.
  if (Settled(lease)) CompleteLease(it);
}

void Receiver::CompleteLease(LeaseMap::iterator it) {
  const LeaseKey key = it->first;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  absl::Status status = lease.end_status;
  if (status.ok() && !lease.data_error.ok()) {
    status = absl::DataLossError(StrCat("a block of lease ", lease.lease_id,
                                        " failed to arrive: ", ToStd(lease.data_error.message())));
  } else if (status.ok() && lease.data_path == wire::DataPath::kReceiverPlaced &&
             (lease.received != lease.blocks_sent || FilledPrefix(lease) != lease.received)) {
    status = absl::DataLossError(StrCat("lease ", lease.lease_id, " received ", lease.received, " of the ",
                                        lease.blocks_sent, " blocks sent, ", FilledPrefix(lease),
                                        " of them the lease's first"));
  }
  if (status.ok()) status = CheckDigests(lease);
  if (status.ok()) status = medium_->CommitBlocks(lease.blocks);
  if (status.ok()) {
    GetLogger("transfer")->debug("{}: filled ({} blocks)", LeaseContext(lease), lease.received);
  } else {
    GetLogger("transfer")->info("{}: unpinned: {}", LeaseContext(lease), status.ToString());
  }
  // One-sided writes are not seen here: the sender's count is all there is.
  const int64_t filled = lease.data_path == wire::DataPath::kReceiverPlaced ? FilledPrefix(lease) : lease.blocks_sent;
  options_.handler->TransferEnded(lease.lease_id, status, static_cast<int32_t>(std::min<int64_t>(
                                                              filled, static_cast<int64_t>(lease.blocks.size()))));
  if (lease.ack_end) Reply(key.first, wire::MessageType::kEndAck, key.second, status);
}

absl::Status Receiver::CheckDigests(const Lease& lease) const {
  if (lease.digests.empty() || options_.host_base == nullptr) return absl::OkStatus();
  if (static_cast<int64_t>(lease.digests.size()) != lease.blocks_sent ||
      lease.blocks_sent > static_cast<int64_t>(lease.blocks.size())) {
    return absl::DataLossError(StrCat("lease ", lease.lease_id, ": the end carried ", lease.digests.size(),
                                      " block checksums for ", lease.blocks_sent, " blocks sent"));
  }
  for (size_t i = 0; i < lease.digests.size(); ++i) {
    const int32_t block = lease.blocks[i];
    const uint64_t here =
        BlockDigest(options_.host_base + static_cast<int64_t>(block) * options_.bytes_per_block,
                    options_.bytes_per_block);
    if (here != lease.digests[i]) {
      return absl::DataLossError(StrCat("lease ", lease.lease_id, ": block ", i, " (cache block ", block,
                                        ") arrived corrupted (checksum mismatch)"));
    }
  }
  return absl::OkStatus();
}

int64_t Receiver::FilledPrefix(const Lease& lease) {
  int64_t n = 0;
  while (n < static_cast<int64_t>(lease.offered.size()) && lease.offered[static_cast<size_t>(n)]) ++n;
  return n;
}

void Receiver::DropPeer(ConnectionId conn, const absl::Status& status) {
  if (peers_.erase(conn) == 0) return;
  medium_->Close(conn);
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto next = std::next(it);
    if (it->first.first == conn) EndLease(it, status);
    it = next;
  }
}

absl::Time Receiver::Tick(absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  for (auto it = leases_.begin(); it != leases_.end();) {
    auto current = it++;
    Lease& lease = current->second;
    if (lease.deadline <= now) {
      const absl::Status late = absl::DeadlineExceededError(
          StrCat(LeaseContext(lease), " did not end within its deadline (", lease.received,
                 " blocks arrived)"));
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

void Receiver::Shutdown() {
  while (!leases_.empty()) {
    auto it = leases_.begin();
    it->second.ending = true;
    it->second.ack_end = false;
    it->second.end_status = absl::UnavailableError(
        StrCat("kv transfer: the transport of worker ", options_.worker_id, " shut down"));
    CompleteLease(it);
  }
  peers_.clear();  // the medium closes the connections
}

}  // namespace tandem::transfer
