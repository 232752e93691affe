#include "worker/kv_lease_table.h"

#include "common/logging.h"
#include "common/strings.h"

namespace tandem::worker {

std::string KvLeaseTable::Add(const std::string& request_id, std::vector<int32_t> blocks, absl::Time deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string id = StrCat("lease-", ++next_id_, "-", request_id);
  leases_[id] = Lease{request_id, std::move(blocks), deadline, State::kReserved};
  return id;
}

absl::StatusOr<std::vector<int32_t>> KvLeaseTable::Adopt(const std::string& lease_id, int32_t needed_blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return absl::NotFoundError(StrCat("KV lease ", lease_id, " is unknown or expired"));
  if (it->second.state != State::kFilled) {
    return absl::FailedPreconditionError(StrCat("the KV for lease ", lease_id, " has not fully arrived"));
  }
  if (it->second.filled < needed_blocks) {
    // The sender ended its transfer early: the rest of the blocks hold stale KV. Expire it now.
    it->second.state = State::kReserved;
    it->second.deadline = absl::InfinitePast();
    return absl::FailedPreconditionError(StrCat("the KV transfer into lease ", lease_id, " filled ",
                                                it->second.filled, " blocks; the prompt needs ", needed_blocks));
  }
  std::vector<int32_t> blocks = std::move(it->second.blocks);
  leases_.erase(it);
  return blocks;
}

absl::StatusOr<std::vector<int32_t>> KvLeaseTable::Release(const std::string& lease_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return absl::NotFoundError(StrCat("KV lease ", lease_id, " is unknown or expired"));
  if (it->second.state == State::kPinned) {
    // A transfer is writing into it: it is released when the transfer ends.
    it->second.deadline = absl::InfinitePast();
    it->second.released = true;
    return std::vector<int32_t>{};
  }
  std::vector<int32_t> blocks = std::move(it->second.blocks);
  leases_.erase(it);
  return blocks;
}

std::vector<int32_t> KvLeaseTable::TakeExpired(absl::Time now, int* expired) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int32_t> out;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.state != State::kPinned && now >= it->second.deadline) {
      if (!it->second.released) {
        if (expired != nullptr) ++*expired;
        GetLogger("worker")->info("request={} KV lease {} expired unused; freeing its {} blocks",
                                  it->second.request_id, it->first, it->second.blocks.size());
      }
      out.insert(out.end(), it->second.blocks.begin(), it->second.blocks.end());
      it = leases_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

size_t KvLeaseTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leases_.size();
}

int64_t KvLeaseTable::reserved_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [id, lease] : leases_) n += static_cast<int64_t>(lease.blocks.size());
  return n;
}

absl::Status KvLeaseTable::TransferStarting(const std::string& lease_id, std::span<const int32_t> blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return absl::NotFoundError(StrCat("KV lease ", lease_id, " is unknown or expired"));
  Lease& lease = it->second;
  if (lease.state != State::kReserved) {
    return absl::FailedPreconditionError(StrCat("KV lease ", lease_id, " is already being written or filled"));
  }
  if (absl::Now() >= lease.deadline) return absl::DeadlineExceededError(StrCat("KV lease ", lease_id, " expired"));
  if (blocks.size() > lease.blocks.size()) {
    return absl::InvalidArgumentError(StrCat("transfer of ", blocks.size(), " blocks into a lease of ",
                                             lease.blocks.size()));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i] != lease.blocks[i]) {
      return absl::PermissionDeniedError(StrCat("transfer into block ", blocks[i], " at index ", i, " of lease ",
                                                lease_id, ", which holds block ", lease.blocks[i], " there"));
    }
  }
  lease.state = State::kPinned;
  return absl::OkStatus();
}

void KvLeaseTable::TransferEnded(const std::string& lease_id, const absl::Status& status, int32_t filled_blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) return;
  Lease& lease = it->second;
  if (lease.released) {
    lease.state = State::kReserved;  // released while pinned: expire now
    return;
  }
  if (status.ok()) {
    lease.state = State::kFilled;
    lease.filled = filled_blocks;
    lease.deadline = absl::Now() + options_.adopt_timeout;
  } else {
    // A failed transfer leaves the lease reusable by a retry until its deadline.
    lease.state = State::kReserved;
    GetLogger("worker")->info("request={} KV transfer into lease {} failed: {}", lease.request_id, lease_id,
                              status.ToString());
  }
}

}  // namespace tandem::worker
