// InProcessKvTransport: a KvTransport for unit tests of the worker and router logic. Several
// transports in one process find each other through a shared InProcessKvHub (by endpoint
// address); a transfer memcpys whole blocks from the source cache into the destination cache
// on the source transport's thread (so callers see the same asynchrony as with UCX), consults
// the destination's KvLeaseHandler on start and end, honours deadlines, and can be told to
// misbehave (InProcessFault) so that failure handling elsewhere can be tested.
//
// The protocol mirrors UcxKvTransport: handshake (layout and epoch checked by the destination;
// a mismatch fails the transfer with a message naming the fields), TransferStarting (a refusal
// fails the transfer), block copies as Send is called, TransferEnded(OK) at Finish; any
// failure after the lease was pinned calls TransferEnded(error) exactly once. Destroying the
// destination transport ends its pinned leases with UNAVAILABLE (and the transfers into it
// fail); destroying the source transport fails its transfers with CANCELLED.
//
// Thread-safety: every method may be called from any thread. Callbacks (Finish's `done` and
// the destination's KvLeaseHandler) run on the source transport's thread, the handler with the
// destination's lock held: they must not block or call back into the destination transport.
// Ownership: the caches and lease handlers are not owned and must outlive their transport;
// the transport must be destroyed from a thread that is not running one of its callbacks.
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

namespace tandem {
class TimedTaskQueue;
}  // namespace tandem

namespace tandem::transfer {

namespace internal {
struct InProcessTarget;
class InProcessTransferState;
}  // namespace internal

// Registry of the transports of one test (one "cluster"). Thread-safe; shared by the
// transports that use it (keep it alive with a shared_ptr).
class InProcessKvHub {
 public:
  InProcessKvHub() = default;
  InProcessKvHub(const InProcessKvHub&) = delete;
  InProcessKvHub& operator=(const InProcessKvHub&) = delete;

 private:
  friend class InProcessKvTransport;
  friend class internal::InProcessTransferState;
  std::string Register(std::shared_ptr<internal::InProcessTarget> target);
  void Unregister(const std::string& address);
  std::shared_ptr<internal::InProcessTarget> Find(const std::string& address);

  std::mutex mu_;
  StringMap<std::shared_ptr<internal::InProcessTarget>> targets_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

// A fault applied to transfers that a transport starts (the sending side).
struct InProcessFault {
  enum class Kind {
    kNone,
    // The handshake fails with `status`; the destination's handler is never asked.
    kRefuse,
    // After `after_blocks` blocks have been copied the connection "drops": the transfer fails
    // with `status` and the destination sees TransferEnded(lease, status).
    kDropAfterBlocks,
    // Every step (handshake, each Send, Finish) runs `delay` later than it was asked for.
    kDelay,
    // The destination never answers: only the deadline (or destruction) ends the transfer.
    kUnresponsive,
  };
  Kind kind = Kind::kNone;
  absl::Status status = absl::UnavailableError("injected fault: connection to the peer failed");
  int32_t after_blocks = 0;
  absl::Duration delay = absl::ZeroDuration();
  // How many of the next transfers it applies to; negative: every transfer until replaced.
  int transfers = -1;
};

struct InProcessKvTransportOptions {
  std::shared_ptr<InProcessKvHub> hub;  // required
  std::string worker_id;
  KvCacheStorage* cache = nullptr;  // required, host memory; not owned
  KvLayoutInfo layout;              // must describe `cache`
  // Decode side: consulted for inbound transfers; null refuses them. Not owned.
  KvLeaseHandler* lease_handler = nullptr;
  uint64_t epoch = 0;  // 0: chosen at random
};

class InProcessKvTransport final : public KvTransport {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessKvTransport>> Create(
      const InProcessKvTransportOptions& options);
  ~InProcessKvTransport() override;

  std::string_view name() const override { return "inprocess"; }
  const KvEndpoint& local_endpoint() const override { return endpoint_; }
  absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& destination,
                                                            absl::Time deadline) override;

  // Applies `fault` to the transfers started after this call (kNone clears it).
  void InjectFault(const InProcessFault& fault);

  // Transfers started by this transport that ended OK / with an error so far.
  int64_t transfers_succeeded() const;
  int64_t transfers_failed() const;

 private:
  friend class internal::InProcessTransferState;
  InProcessKvTransport(const InProcessKvTransportOptions& options, uint64_t epoch);
  void RecordOutcome(bool ok);

  InProcessKvTransportOptions options_;
  KvEndpoint endpoint_;
  std::shared_ptr<internal::InProcessTarget> target_;
  std::shared_ptr<TimedTaskQueue> queue_;

  mutable std::mutex mu_;
  InProcessFault fault_ ABSL_GUARDED_BY(mu_);
  uint64_t next_transfer_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t succeeded_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  // Transfers not yet ended (weak: the queue's tasks own them), failed at destruction.
  std::vector<std::weak_ptr<internal::InProcessTransferState>> live_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::transfer
