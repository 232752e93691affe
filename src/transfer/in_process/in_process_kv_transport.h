// InProcessKvTransport: the KV hand-off protocol over an in-process medium, for unit tests of the
// worker and router logic. Several transports in one process find each other through a shared
// InProcessKvHub (by endpoint address); the medium (in_process_medium.h) delivers control
// messages to the destination transport's thread and places each block there with a memcpy from
// the source cache (so callers see the same asynchrony as over UCX, and the destination vets
// every block against its lease), and it can be told to misbehave (InProcessFault) so that
// failure handling elsewhere can be tested.
//
// The protocol is the one every medium runs (protocol_transport.h): handshake (layout and epoch
// checked by the destination; a mismatch fails the transfer with a message naming the fields),
// TransferStarting (a refusal fails the transfer), block copies as Send is called,
// TransferEnded(OK) at Finish; any failure after the lease was pinned calls TransferEnded(error)
// exactly once. Destroying the destination transport ends its pinned leases with UNAVAILABLE (and
// the transfers into it fail); destroying the source transport fails its transfers with CANCELLED.
//
// Thread-safety: every method may be called from any thread. Finish's `done` runs on the source
// transport's thread, the destination's KvLeaseHandler on the destination transport's thread:
// they must not block. Ownership: the caches and lease handlers are not owned and must outlive
// their transport; the transport must be destroyed from a thread that is not running one of its
// callbacks.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/protocol_transport.h"

namespace tandem::transfer {

class InProcessMedium;
namespace internal {
struct InProcessStation;
}  // namespace internal

// Registry of the transports of one test (one "cluster"). Thread-safe; shared by the
// transports that use it (keep it alive with a shared_ptr).
class InProcessKvHub {
 public:
  InProcessKvHub() = default;
  InProcessKvHub(const InProcessKvHub&) = delete;
  InProcessKvHub& operator=(const InProcessKvHub&) = delete;

 private:
  friend class InProcessMedium;
  std::string Register(std::shared_ptr<internal::InProcessStation> station);
  void Unregister(const std::string& address);
  std::shared_ptr<internal::InProcessStation> Find(const std::string& address);

  std::mutex mu_;
  StringMap<std::shared_ptr<internal::InProcessStation>> stations_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

// A fault applied to transfers that a transport starts (the sending side). A transfer with a
// fault gets a connection of its own, which misbehaves.
struct InProcessFault {
  enum class Kind {
    kNone,
    // The handshake fails with `status`; the destination's handler is never asked.
    kRefuse,
    // After `after_blocks` blocks have been copied the connection "drops": the transfer fails
    // with `status` and the destination sees TransferEnded(lease, UNAVAILABLE).
    kDropAfterBlocks,
    // Every step (handshake, each Send, Finish) reaches the destination `delay` later than it
    // was asked for.
    kDelay,
    // The destination never answers: only the deadline (or destruction) ends the transfer.
    kUnresponsive,
    // Every block lands with one byte flipped (bit rot on the way): the blocks' checksums fail
    // the transfer with DATA_LOSS; with checksums off the damage goes unnoticed.
    kCorruptBlocks,
  };
  Kind kind = Kind::kNone;
  absl::Status status = absl::UnavailableError("injected fault: connection to the peer failed");
  int32_t after_blocks = 0;
  absl::Duration delay = absl::ZeroDuration();
  // How many of the next transfers it applies to; negative: every transfer until replaced.
  int transfers = -1;
};

// The cache must be in host memory.
struct InProcessKvTransportOptions : KvTransportCommonOptions {
  std::shared_ptr<InProcessKvHub> hub;  // required
};

class InProcessKvTransport final : public ProtocolTransport {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessKvTransport>> Create(
      const InProcessKvTransportOptions& options);

  // Applies `fault` to the transfers started after this call (kNone clears it).
  void InjectFault(const InProcessFault& fault);

 private:
  InProcessKvTransport(std::shared_ptr<Core> core, InProcessMedium* medium)
      : ProtocolTransport(std::move(core)), medium_(medium) {}

  InProcessMedium* const medium_;  // owned by the protocol core
};

}  // namespace tandem::transfer
