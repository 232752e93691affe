// A decode worker's KV reservations. The router reserves blocks for a request's prompt
// (Reserve); a prefill worker's transfer pins the lease while it writes (TransferStarting) and
// marks it filled when every block has arrived (TransferEnded); the Decode call adopts a filled
// lease. Leases that are not used in time expire and their blocks are freed: a reserved lease
// after its deadline, a filled one if nobody adopts it, a pinned one only when its transfer
// ends (a transfer always ends: on success, error, or its peer's death).
//
// Thread-safe: the transport calls the KvLeaseHandler methods from its thread, the gRPC
// handlers and the engine thread call the rest.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/kv_transport.h"

namespace tandem::worker {

class KvLeaseTable : public KvLeaseHandler {
 public:
  struct Options {
    absl::Duration adopt_timeout = absl::Seconds(30);  // a filled lease waits this long for Decode
  };
  explicit KvLeaseTable(Options options) : options_(options) {}

  // Records a new lease over `blocks` (already allocated) that expires at `deadline` unless a
  // transfer starts. Returns the lease id.
  std::string Add(const std::string& request_id, std::vector<int32_t> blocks, absl::Time deadline);
  // Takes a filled lease's blocks for decoding. FailedPrecondition if the KV has not fully
  // arrived, or the transfer filled fewer than `needed_blocks` (never decode from partial or
  // stale KV: the lease is dropped), NotFound if unknown or expired.
  absl::StatusOr<std::vector<int32_t>> Adopt(const std::string& lease_id, int32_t needed_blocks = 0);
  // Drops a lease that is not pinned; returns its blocks (to free). NotFound / FailedPrecondition.
  absl::StatusOr<std::vector<int32_t>> Release(const std::string& lease_id);
  // Removes every expired lease (and every lease released while it was being written) and
  // returns their blocks (to free); `expired`, if given, counts the leases that timed out.
  std::vector<int32_t> TakeExpired(absl::Time now, int* expired = nullptr);
  // Leases of every state (for draining and metrics).
  size_t size() const;
  int64_t reserved_blocks() const;

  // KvLeaseHandler.
  absl::Status TransferStarting(const std::string& lease_id, std::span<const int32_t> blocks) override;
  void TransferEnded(const std::string& lease_id, const absl::Status& status, int32_t filled_blocks) override;

 private:
  enum class State { kReserved, kPinned, kFilled };
  struct Lease {
    std::string request_id;
    std::vector<int32_t> blocks;
    absl::Time deadline;
    State state = State::kReserved;
    int32_t filled = 0;     // blocks the last successful transfer wrote, from the first
    bool released = false;  // released while being written: freed when the transfer ends
  };

  const Options options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Lease> leases_;  // guarded by mu_
  uint64_t next_id_ = 0;                           // guarded by mu_
};

}  // namespace tandem::worker
