#include "transfer/in_process_kv_transport.h"

#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "common/check.h"
#include "common/logging.h"
#include "common/timed_task_queue.h"

namespace tandem::transfer {
namespace internal {

// What the hub knows about one transport: its cache and its leases pinned by transfers.
struct InProcessTarget {
  std::string worker_id;
  uint64_t epoch = 0;
  KvLayoutInfo layout;
  KvCacheStorage* cache = nullptr;
  KvLeaseHandler* handler = nullptr;

  // Held while the destination's cache is written or its handler is called, so that the
  // destination transport cannot be destroyed under a copy.
  std::mutex mu;
  bool alive ABSL_GUARDED_BY(mu) = true;
  // Leases pinned by inbound transfers, keyed by the transfer.
  std::map<const InProcessTransferState*, std::string> pinned ABSL_GUARDED_BY(mu);
};

// One outbound transfer. Created on the caller's thread; afterwards touched only on the
// source transport's queue thread.
class InProcessTransferState : public std::enable_shared_from_this<InProcessTransferState> {
 public:
  InProcessTransferState(InProcessKvTransport* owner, uint64_t id, KvDestination destination,
                         absl::Time deadline, InProcessFault fault)
      : owner_(owner),
        id_(id),
        destination_(std::move(destination)),
        deadline_(deadline),
        fault_(std::move(fault)) {}

  // When a step asked for now should run (later under a kDelay fault).
  absl::Time StepTime() const {
    return fault_.kind == InProcessFault::Kind::kDelay ? absl::Now() + fault_.delay
                                                       : absl::InfinitePast();
  }
  const KvDestination& destination() const { return destination_; }

  void Handshake();
  void Copy(const std::vector<BlockCopy>& copies);
  void Finish(std::function<void(absl::Status)> done);
  void CheckDeadline();
  // Ends the transfer with `status` (no-op once ended): unpins the lease with the error and
  // reports it to Finish's callback (now, or when Finish is called).
  void Fail(const absl::Status& status);

 private:
  std::string Context() const {
    return StrCat("kv transfer id=", id_, " lease=", destination_.lease_id,
                  " to worker=", destination_.endpoint.worker_id);
  }
  void Complete(const absl::Status& status);

  InProcessKvTransport* const owner_;
  const uint64_t id_;
  const KvDestination destination_;
  const absl::Time deadline_;
  const InProcessFault fault_;

  std::shared_ptr<InProcessTarget> target_;  // set by a successful handshake
  bool unresponsive_ = false;
  bool ended_ = false;           // the outcome is decided
  absl::Status outcome_;         // valid once ended_
  bool reported_ = false;        // done_ was called
  std::function<void(absl::Status)> done_;
  int64_t blocks_copied_ = 0;
};

void InProcessTransferState::Handshake() {
  if (ended_) return;
  switch (fault_.kind) {
    case InProcessFault::Kind::kRefuse:
      return Fail(fault_.status);
    case InProcessFault::Kind::kUnresponsive:
      unresponsive_ = true;
      return;
    default:
      break;
  }
  std::shared_ptr<InProcessTarget> target = owner_->options_.hub->Find(destination_.endpoint.address);
  if (target == nullptr) {
    return Fail(absl::UnavailableError(
        StrCat(Context(), ": no transport at address ", destination_.endpoint.address)));
  }
  absl::Status refused;
  {
    std::lock_guard<std::mutex> lock(target->mu);
    if (!target->alive) {
      refused = absl::UnavailableError(StrCat(Context(), ": the destination shut down"));
    } else if (target->epoch != destination_.endpoint.epoch) {
      refused = absl::FailedPreconditionError(
          StrCat(Context(), ": stale epoch ", destination_.endpoint.epoch,
                 " (the destination is at epoch ", target->epoch, "; it restarted)"));
    } else if (std::string diff = target->layout.Mismatch(owner_->options_.layout); !diff.empty()) {
      refused = absl::FailedPreconditionError(
          StrCat(Context(), ": the destination refused the KV layout: ", diff));
    } else if (target->handler == nullptr) {
      refused = absl::FailedPreconditionError(
          StrCat(Context(), ": the destination accepts no inbound KV transfers"));
    } else {
      for (int32_t b : destination_.blocks) {
        if (b < 0 || b >= target->cache->num_blocks()) {
          refused = absl::InvalidArgumentError(StrCat(Context(), ": destination block ", b,
                                                      " outside the destination's cache of ",
                                                      target->cache->num_blocks(), " blocks"));
          break;
        }
      }
    }
    if (refused.ok()) {
      refused = target->handler->TransferStarting(destination_.lease_id,
                                                  static_cast<int32_t>(destination_.blocks.size()));
      if (refused.ok()) target->pinned.emplace(this, destination_.lease_id);
    }
  }
  if (!refused.ok()) return Fail(refused);
  target_ = std::move(target);
}

void InProcessTransferState::Copy(const std::vector<BlockCopy>& copies) {
  if (ended_ || unresponsive_) return;
  TANDEM_CHECK(target_ != nullptr);
  KvCacheStorage* src = owner_->options_.cache;
  const int64_t bytes = src->layout().bytes_per_block();
  bool dropped = false;
  {
    std::lock_guard<std::mutex> lock(target_->mu);
    if (!target_->alive || !target_->pinned.contains(this)) {
      // The destination shut down (and already ended the lease).
    } else {
      uint8_t* dst_base = target_->cache->host_base();
      for (const BlockCopy& c : copies) {
        const int32_t dst_block = destination_.blocks[static_cast<size_t>(c.index)];
        std::memcpy(dst_base + dst_block * bytes, src->host_base() + c.src_block * bytes,
                    static_cast<size_t>(bytes));
        ++blocks_copied_;
        if (fault_.kind == InProcessFault::Kind::kDropAfterBlocks &&
            blocks_copied_ >= fault_.after_blocks) {
          dropped = true;
          break;
        }
      }
      if (!dropped) return;
    }
  }
  if (dropped) return Fail(fault_.status);
  Fail(absl::UnavailableError(StrCat(Context(), ": the destination shut down mid-transfer")));
}

void InProcessTransferState::Finish(std::function<void(absl::Status)> done) {
  done_ = std::move(done);
  if (ended_) return Complete(outcome_);
  if (unresponsive_) return;  // the deadline ends it
  absl::Status status;
  {
    std::lock_guard<std::mutex> lock(target_->mu);
    auto it = target_->pinned.find(this);
    if (!target_->alive || it == target_->pinned.end()) {
      status = absl::UnavailableError(StrCat(Context(), ": the destination shut down mid-transfer"));
    } else {
      target_->pinned.erase(it);
      target_->handler->TransferEnded(destination_.lease_id, absl::OkStatus());
    }
  }
  ended_ = true;
  outcome_ = status;
  Complete(status);
}

void InProcessTransferState::CheckDeadline() {
  if (ended_) return;
  Fail(absl::DeadlineExceededError(
      StrCat(Context(), ": deadline passed after ", blocks_copied_, " blocks")));
}

void InProcessTransferState::Fail(const absl::Status& status) {
  if (ended_) return;
  ended_ = true;
  outcome_ = status;
  if (target_ != nullptr) {
    std::lock_guard<std::mutex> lock(target_->mu);
    auto it = target_->pinned.find(this);
    if (target_->alive && it != target_->pinned.end()) {
      target_->pinned.erase(it);
      target_->handler->TransferEnded(destination_.lease_id, status);
    }
  }
  GetLogger("transfer")->debug("{} failed: {}", Context(), status.ToString());
  if (done_) Complete(status);
}

void InProcessTransferState::Complete(const absl::Status& status) {
  if (reported_) return;
  reported_ = true;
  owner_->RecordOutcome(status.ok());
  auto done = std::move(done_);
  done(status);
}

}  // namespace internal

namespace {

using internal::InProcessTransferState;

// The caller's handle. Its Send and Finish hand work to the transport's queue.
class InProcessTransferHandle final : public KvTransfer {
 public:
  InProcessTransferHandle(std::shared_ptr<TimedTaskQueue> queue,
                          std::shared_ptr<InProcessTransferState> state, int64_t local_blocks)
      : queue_(std::move(queue)), state_(std::move(state)), local_blocks_(local_blocks) {}

  ~InProcessTransferHandle() override {
    if (finish_called_.load()) return;
    auto state = state_;
    queue_->Post([state] { state->Fail(absl::CancelledError("kv transfer abandoned before Finish")); });
  }

  void Send(std::span<const BlockCopy> copies) override {
    if (finish_called_.load()) {
      GetLogger("transfer")->error("kv transfer lease={}: Send after Finish ignored",
                                   state_->destination().lease_id);
      return;
    }
    std::vector<BlockCopy> batch(copies.begin(), copies.end());
    absl::Status invalid;
    const size_t n = state_->destination().blocks.size();
    for (const BlockCopy& c : batch) {
      if (c.index < 0 || static_cast<size_t>(c.index) >= n || c.src_block < 0 ||
          c.src_block >= local_blocks_) {
        invalid = absl::InvalidArgumentError(
            StrCat("kv transfer lease=", state_->destination().lease_id, ": bad copy src_block=",
                   c.src_block, " index=", c.index, " (", local_blocks_, " local blocks, ", n,
                   " destination blocks)"));
        break;
      }
    }
    auto state = state_;
    if (!invalid.ok()) {
      queue_->Post([state, invalid] { state->Fail(invalid); });
      return;
    }
    queue_->Post([state, batch = std::move(batch)] { state->Copy(batch); }, state->StepTime());
  }

  void Finish(std::function<void(absl::Status)> done) override {
    if (finish_called_.exchange(true)) {
      done(absl::FailedPreconditionError("kv transfer: Finish called twice"));
      return;
    }
    auto state = state_;
    auto shared_done = std::make_shared<std::function<void(absl::Status)>>(std::move(done));
    if (!queue_->Post([state, shared_done] { state->Finish(std::move(*shared_done)); },
                      state->StepTime())) {
      (*shared_done)(absl::CancelledError("kv transfer: the transport was destroyed"));
    }
  }

 private:
  std::shared_ptr<TimedTaskQueue> queue_;
  std::shared_ptr<InProcessTransferState> state_;
  const int64_t local_blocks_;
  std::atomic<bool> finish_called_{false};
};

uint64_t RandomEpoch() {
  std::random_device rd;
  uint64_t e = 0;
  while (e == 0) e = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return e;
}

}  // namespace

std::string InProcessKvHub::Register(std::shared_ptr<internal::InProcessTarget> target) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string address = StrCat("inproc://", target->worker_id, "/", next_id_++);
  targets_[address] = std::move(target);
  return address;
}

void InProcessKvHub::Unregister(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  targets_.erase(address);
}

std::shared_ptr<internal::InProcessTarget> InProcessKvHub::Find(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = targets_.find(address);
  return it == targets_.end() ? nullptr : it->second;
}

absl::StatusOr<std::unique_ptr<InProcessKvTransport>> InProcessKvTransport::Create(
    const InProcessKvTransportOptions& options) {
  if (options.hub == nullptr) return absl::InvalidArgumentError("InProcessKvTransport: no hub");
  if (options.cache == nullptr || options.cache->host_base() == nullptr) {
    return absl::InvalidArgumentError("InProcessKvTransport: a host-memory KV cache is required");
  }
  if (options.cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block()) {
    return absl::InvalidArgumentError(
        StrCat("InProcessKvTransport: the layout (", options.layout.Describe(),
               ") does not describe the cache"));
  }
  const uint64_t epoch = options.epoch != 0 ? options.epoch : RandomEpoch();
  return std::unique_ptr<InProcessKvTransport>(new InProcessKvTransport(options, epoch));
}

InProcessKvTransport::InProcessKvTransport(const InProcessKvTransportOptions& options,
                                           uint64_t epoch)
    : options_(options), queue_(std::make_shared<TimedTaskQueue>()) {
  target_ = std::make_shared<internal::InProcessTarget>();
  target_->worker_id = options.worker_id;
  target_->epoch = epoch;
  target_->layout = options.layout;
  target_->cache = options.cache;
  target_->handler = options.lease_handler;
  endpoint_.worker_id = options.worker_id;
  endpoint_.epoch = epoch;
  endpoint_.layout = options.layout;
  endpoint_.address = options.hub->Register(target_);
}

InProcessKvTransport::~InProcessKvTransport() {
  TANDEM_CHECK(!queue_->OnQueueThread()) << "InProcessKvTransport destroyed from its own callback";
  // Inbound: stop accepting writes and unpin every lease still being written.
  options_.hub->Unregister(endpoint_.address);
  {
    std::lock_guard<std::mutex> lock(target_->mu);
    target_->alive = false;
    for (auto& [state, lease] : target_->pinned) {
      target_->handler->TransferEnded(
          lease, absl::UnavailableError("kv transfer: the destination transport shut down"));
    }
    target_->pinned.clear();
  }
  // Outbound: fail what is still running, then drain the queue (no completion is lost).
  std::vector<std::weak_ptr<InProcessTransferState>> live;
  {
    std::lock_guard<std::mutex> lock(mu_);
    live.swap(live_);
  }
  queue_->Post([live = std::move(live)] {
    for (const auto& weak : live) {
      if (auto state = weak.lock()) {
        state->Fail(absl::CancelledError("kv transfer: the source transport shut down"));
      }
    }
  });
  queue_->Stop();
}

absl::StatusOr<std::unique_ptr<KvTransfer>> InProcessKvTransport::StartTransfer(
    const KvDestination& destination, absl::Time deadline) {
  if (std::string diff = options_.layout.Mismatch(destination.endpoint.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat("kv transfer lease=", destination.lease_id, ": layout mismatch with worker ",
               destination.endpoint.worker_id, ": ", diff));
  }
  for (int32_t b : destination.blocks) {
    if (b < 0) {
      return absl::InvalidArgumentError(
          StrCat("kv transfer lease=", destination.lease_id, ": negative destination block ", b));
    }
  }
  InProcessFault fault;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_transfer_id_++;
    if (fault_.kind != InProcessFault::Kind::kNone && fault_.transfers != 0) {
      fault = fault_;
      if (fault_.transfers > 0 && --fault_.transfers == 0) fault_ = InProcessFault{};
    }
  }
  auto state = std::make_shared<InProcessTransferState>(this, id, destination, deadline, fault);
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(live_, [](const auto& w) { return w.expired(); });
    live_.push_back(state);
  }
  queue_->Post([state] { state->Handshake(); }, state->StepTime());
  queue_->Post([state] { state->CheckDeadline(); }, deadline);
  return std::unique_ptr<KvTransfer>(
      new InProcessTransferHandle(queue_, std::move(state), options_.cache->num_blocks()));
}

void InProcessKvTransport::InjectFault(const InProcessFault& fault) {
  std::lock_guard<std::mutex> lock(mu_);
  fault_ = fault;
}

void InProcessKvTransport::RecordOutcome(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  ++(ok ? succeeded_ : failed_);
}

int64_t InProcessKvTransport::transfers_succeeded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return succeeded_;
}

int64_t InProcessKvTransport::transfers_failed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

}  // namespace tandem::transfer
