// UcxKvTransport: the KV hand-off protocol (transfer/protocol/) over the UCX medium
// (ucx_medium.h): KV blocks move with UCX from the prefill worker's cache into the decode
// worker's registered cache.
//
//   * The local cache's host memory is registered once (ucp_mem_map); the published
//     KvEndpoint::address packs the UCX worker address, the packed rkey, the remote base
//     address, the cache's size and the epoch (random per Create), as "ucx1:" + base64.
//   * Per destination (worker address, epoch) one connection with peer error handling is
//     opened on first use and reused; its handshake checks the layout and the epoch at the
//     receiver (a mismatch is refused with the fields named; a stale epoch is refused).
//   * Per transfer: the receiver's KvLeaseHandler pins the lease first (a refusal fails the
//     transfer); block writes start only once it is pinned (earlier Sends are queued) and
//     proceed while the caller computes the next chunk; Finish waits until every block is at
//     the destination, the receiver calls TransferEnded(lease, OK) and acknowledges; Finish's
//     callback fires after that acknowledgement.
//   * Failures (peer gone, deadline, refusal, bad Send) end the transfer with an error and,
//     when the receiver is reachable, an end(error) so the lease is unpinned at once. A receiver
//     whose sender dies notices through its answering endpoint (UCX keepalive / connection
//     reset) or, at the latest, when the lease outlives the sender's deadline plus `lease_grace`.
//
// Data path (UcxDataPath, ucx_medium.h): kActiveMessage (default; the receiver places and vets
// each block) or kRmaPut (one-sided puts; only where UCX has native RMA, see ucx_medium.h).
//
// Choosing UCX transports (`transports`, i.e. UCX_TLS): "tcp,sm,self" for one machine or a plain
// TCP network; "all" lets UCX pick RDMA verbs (rc/dc/ud) where an InfiniBand/RoCE HCA is
// present. Empty: the UCX_TLS environment variable if set, else UCX's default (all transports
// it finds). UCX_NET_DEVICES and the other UCX_* variables apply as usual.
//
// Thread-safety and ownership: as ProtocolTransport (all UCX work happens on one progress thread
// owned by the transport; callbacks run on it and must not block).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/protocol_transport.h"
#include "transfer/ucx/ucx_medium.h"

namespace tandem::transfer {

// The cache must be in host memory (it is registered for remote writes).
struct UcxKvTransportOptions : KvTransportCommonOptions {
  std::string transports;  // UCX_TLS, see above; tests use "tcp,sm,self"
  // How this worker sends blocks (a receiver accepts both), see above.
  UcxDataPath data_path = UcxDataPath::kActiveMessage;
  // How soon an idle connection to a dead peer is noticed (UCX keepalive).
  absl::Duration keepalive_interval = absl::Seconds(1);
};

// The UCX medium's options for a transport of `worker_id` at `epoch` (its cache left unset).
UcxMediumOptions UcxMediumOptionsFor(const UcxKvTransportOptions& options,
                                     const std::string& worker_id, uint64_t epoch);

using UcxKvTransport = MediumTransport<UcxKvTransportOptions>;
template <>
absl::StatusOr<std::unique_ptr<UcxKvTransport>> UcxKvTransport::Create(
    const UcxKvTransportOptions& options);

}  // namespace tandem::transfer
