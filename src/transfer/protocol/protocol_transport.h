// ProtocolTransport: a KvTransport made of the KV hand-off protocol (sender.h, receiver.h,
// wire.h) over one medium (medium.h). Every medium's transport (UcxKvTransport,
// InProcessKvTransport, CudaIpcKvTransport, StagedKvTransport) is one of these, built by its
// Create from the medium's options.
//
// What it adds to the sessions: StartTransfer's local checks (layout, destination blocks, the
// medium's view of the endpoint: failing at once rather than in Finish), and the KvTransfer
// handle's guards (Send after Finish is ignored and logged, Finish twice answers
// FAILED_PRECONDITION, a bad BlockCopy fails the transfer with INVALID_ARGUMENT, a handle dropped
// without Finish cancels the transfer and unpins its lease, Finish after the transport is gone
// answers CANCELLED).
//
// Thread-safety: every method may be called from any thread; all protocol work runs on the
// medium's thread, where Finish's `done` and the KvLeaseHandler are called: they must not block.
// Ownership: the cache and the lease handler are not owned and must outlive the transport; the
// source blocks of a transfer must stay unchanged until its Finish callback; destroy the
// transport from a thread that is not running one of its callbacks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/medium.h"

namespace tandem::transfer {

// What every medium's transport is made from; each medium's options extend it.
struct KvTransportCommonOptions {
  KvCacheStorage* cache = nullptr;  // required; host or device memory as the medium needs
  KvLayoutInfo layout;              // must describe `cache`
  std::string worker_id;
  // Decode side: pins and unpins leases for inbound transfers; null refuses them. Not owned.
  KvLeaseHandler* lease_handler = nullptr;
  uint64_t epoch = 0;  // 0: random
  // A pinned lease is ended with DEADLINE_EXCEEDED this long after the sender's deadline.
  absl::Duration lease_grace = absl::Seconds(5);
  // How long a new connection may take to say hello, and a sender to wait for the answer.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Send a checksum of every block with the transfer's end (block_digest.h), so that a block
  // corrupted on the way fails the transfer (DATA_LOSS) instead of decoding garbage. The
  // receiver checks whatever checksums arrive, whatever its own setting. Host caches only: a
  // device cache's blocks are not checksummed (no kernel for it yet).
  bool block_checksums = true;
};

struct ProtocolOptions {
  std::string name;  // KvTransport::name()
  std::string worker_id;
  uint64_t epoch = 0;  // non-zero; the medium's address carries it too
  KvLayoutInfo layout;
  int64_t num_blocks = 0;  // of the local cache
  int64_t bytes_per_block = 0;
  // Decode side: pins and unpins leases for inbound transfers; null refuses them. Not owned.
  KvLeaseHandler* lease_handler = nullptr;
  // A pinned lease is ended with DEADLINE_EXCEEDED this long after the sender's deadline.
  absl::Duration lease_grace = absl::Seconds(5);
  // How long a sender waits for a new connection's handshake to be answered.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // The cache's memory when it is host memory (null otherwise): where blocks are checksummed.
  const uint8_t* host_base = nullptr;
  bool block_checksums = true;  // KvTransportCommonOptions::block_checksums
};

// Where a medium needs the cache's memory.
enum class CacheMemory { kHost, kDevice };

// The protocol's options for a transport `name` made from `common`: the cache's geometry, and a
// random epoch unless `common` names one. INVALID_ARGUMENT (naming `transport`) unless
// `common.cache` is a non-empty cache in `memory` that `common.layout` describes.
absl::StatusOr<ProtocolOptions> ProtocolOptionsFor(std::string_view transport, std::string name,
                                                   const KvTransportCommonOptions& common,
                                                   CacheMemory memory);

class ProtocolTransport : public KvTransport {
 public:
  // Fails pending transfers (CANCELLED) and pinned leases (UNAVAILABLE) and stops the medium.
  ~ProtocolTransport() override;

  std::string_view name() const override;
  const KvEndpoint& local_endpoint() const override { return endpoint_; }
  absl::StatusOr<std::unique_ptr<KvTransfer>> StartTransfer(const KvDestination& destination,
                                                            absl::Time deadline) override;

  // Transfers started here whose Finish was answered OK / with an error so far.
  int64_t transfers_succeeded() const;
  int64_t transfers_failed() const;

  struct Core;  // shared with transfer handles (internal)

 protected:
  // Starts `medium` under the protocol; a medium's Create passes the result to the constructor.
  static absl::StatusOr<std::shared_ptr<Core>> StartCore(const ProtocolOptions& options,
                                                         std::unique_ptr<Medium> medium);
  explicit ProtocolTransport(std::shared_ptr<Core> core);

 private:
  std::shared_ptr<Core> core_;
  KvEndpoint endpoint_;
};

// The transport of one medium, made from that medium's options (UcxKvTransportOptions, ...) by
// Create, which each medium defines (an explicit specialization in its own .cc).
template <typename Options>
class MediumTransport final : public ProtocolTransport {
 public:
  static absl::StatusOr<std::unique_ptr<MediumTransport>> Create(const Options& options);

 private:
  using ProtocolTransport::ProtocolTransport;
};

}  // namespace tandem::transfer
