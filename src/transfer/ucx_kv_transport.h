// UcxKvTransport: KV blocks moved with UCX from the prefill worker's cache into the decode
// worker's registered cache, with a small active-message protocol around them (ucx_wire.h)
// for the handshake, the lease and the end of a transfer.
//
//   * The local cache's host memory is registered once (ucp_mem_map); the published
//     KvEndpoint::address packs the UCX worker address, the packed rkey, the remote base
//     address, the cache's size and the epoch (random per Create), as "ucx1:" + base64.
//   * Per destination (worker address, epoch) one endpoint with peer error handling is created
//     on first use and reused; its handshake checks the layout and the epoch at the receiver
//     (a mismatch is refused with the fields named; a stale epoch is refused).
//   * Per transfer: kBegin asks the receiver's KvLeaseHandler to pin the lease (a refusal fails
//     the transfer); block writes start only once it is pinned (earlier Sends are queued) and
//     proceed while the caller computes the next chunk; Finish waits until every block is at
//     the destination, then kEnd(OK); the receiver calls TransferEnded(lease, OK) and
//     acknowledges; Finish's callback fires after that acknowledgement.
//   * Failures (peer gone, deadline, refusal, bad Send) end the transfer with an error and,
//     when the receiver is reachable, a kEnd(error) so the lease is unpinned at once. A receiver
//     whose sender dies notices through its reply endpoint (UCX keepalive / connection reset)
//     or, at the latest, when the lease outlives the sender's deadline plus `lease_grace`.
//
// Data path (UcxDataPath): how the blocks travel.
//   kActiveMessage (default): one active message per block (eager for small blocks, rendezvous
//     zero-copy for large ones: RDMA get on verbs, pipelined over TCP); the receiver places each
//     block after checking that the lease is pinned by this sender and the block is the
//     lease's, counts them, and ends the lease OK only when every block sent has arrived.
//   kRmaPut: one ucp_put_nbx per block into remote base + dst_block * bytes_per_block, then an
//     endpoint flush (remote completion) before kEnd. One-sided: the receiver's CPU is not
//     involved and cannot vet the writes. Use it only where UCX has native RMA (RDMA verbs):
//     UCX 1.13 serves puts over TCP by emulating them with active messages whose target side
//     aborts the receiving process when the sender dies mid-put ("ucp_put_handler ...
//     Fatal: unexpected error"), and with peer error handling it selects no shared-memory
//     transport, so on one host everything (both paths) runs over TCP loopback.
//
// Choosing UCX transports (`transports`, i.e. UCX_TLS): "tcp,sm,self" for one machine or a plain
// TCP network; "all" lets UCX pick RDMA verbs (rc/dc/ud) where an InfiniBand/RoCE HCA is
// present. Empty: the UCX_TLS environment variable if set, else UCX's default (all transports
// it finds). UCX_NET_DEVICES and the other UCX_* variables apply as usual.
//
// Thread-safety: every method may be called from any thread; all UCX work happens on one
// progress thread owned by the transport; callbacks (Finish's `done`, the KvLeaseHandler) run on
// it and must not block. Ownership: the cache and the lease handler are not owned and must
// outlive the transport; the source blocks of a transfer must stay unchanged until its Finish
// callback; destroy the transport from a thread that is not running one of its callbacks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"

namespace tandem::transfer {

enum class UcxDataPath { kActiveMessage, kRmaPut };

struct UcxKvTransportOptions {
  KvCacheStorage* cache = nullptr;  // required, host memory; registered for remote writes
  KvLayoutInfo layout;              // must describe `cache`
  std::string worker_id;
  // Decode role: pins and unpins leases for inbound transfers. Null (prefill-only worker):
  // inbound transfers are refused.
  KvLeaseHandler* lease_handler = nullptr;
  std::string transports;  // UCX_TLS, see above; tests use "tcp,sm,self"
  // How this worker sends blocks (a receiver accepts both), see above.
  UcxDataPath data_path = UcxDataPath::kActiveMessage;
  // How soon an idle connection to a dead peer is noticed (UCX keepalive).
  absl::Duration keepalive_interval = absl::Seconds(1);
  // A pinned lease is ended with DEADLINE_EXCEEDED this long after the sender's deadline.
  absl::Duration lease_grace = absl::Seconds(5);
  uint64_t epoch = 0;  // 0: random
};

class UcxKvTransport final : public KvTransport {
 public:
  static absl::StatusOr<std::unique_ptr<UcxKvTransport>> Create(
      const UcxKvTransportOptions& options);
  // Fails pending transfers (CANCELLED) and pinned leases (UNAVAILABLE), closes endpoints,
  // unregisters the cache and stops the progress thread.
  ~UcxKvTransport() override;

  std::string_view name() const override { return "ucx"; }
  const KvEndpoint& local_endpoint() const override { return endpoint_; }
  absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& destination,
                                                            absl::Time deadline) override;

  struct Core;  // shared with transfer handles (internal)

 private:
  explicit UcxKvTransport(std::shared_ptr<Core> core);

  std::shared_ptr<Core> core_;
  KvEndpoint endpoint_;
};

}  // namespace tandem::transfer
