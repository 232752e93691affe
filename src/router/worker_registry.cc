#include "router/worker_registry.h"

#include <cstring>

#include "common/logging.h"
#include "common/sha256.h"
#include "common/strings.h"

namespace tandem::router {
namespace {

bool CanDecode(v1::WorkerRole r) { return r == v1::WORKER_ROLE_DECODE || r == v1::WORKER_ROLE_MIXED; }

// Rendezvous hash of (key, worker): the same prefix prefers the same worker.
uint64_t Rendezvous(uint64_t key, const std::string& worker_id) {
  Sha256 h;
  h.Update(&key, sizeof key);
  h.Update(worker_id);
  const Sha256Digest d = h.Finish();
  uint64_t v;
  std::memcpy(&v, d.data(), sizeof v);
  return v;
}

}  // namespace

WorkerRegistry::WorkerRegistry(WorkerRegistryOptions options) : options_(std::move(options)) {}

absl::Status WorkerRegistry::Register(const v1::WorkerInfo& info, const v1::WorkerLoad& load) {
  if (!options_.model_id.empty() && info.model_id() != options_.model_id) {
    return absl::FailedPreconditionError(StrCat("worker ", info.worker_id(), " serves model ", info.model_id(),
                                                "; this router serves ", options_.model_id));
  }
  if (info.worker_id().empty() || info.grpc_address().empty()) {
    return absl::InvalidArgumentError("a worker needs an id and a gRPC address");
  }
  auto handle = std::make_shared<WorkerHandle>();
  handle->info = info;
  handle->stub = options_.make_stub(info.grpc_address());
  std::lock_guard<std::mutex> lock(mu_);
  const bool known = workers_.contains(info.worker_id());
  workers_[info.worker_id()] = Entry{std::move(handle), load, absl::Now(), 0, 0};
  GetLogger("router")->info("{} worker {} ({}) at {}", known ? "re-registered" : "registered", info.worker_id(),
                            v1::WorkerRole_Name(info.role()), info.grpc_address());
  return absl::OkStatus();
}

bool WorkerRegistry::Heartbeat(const std::string& worker_id, uint64_t epoch, v1::WorkerRole role,
                               const v1::WorkerLoad& load) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end() || it->second.handle->info.epoch() != epoch) return false;
  Entry& e = it->second;
  e.load = load;
  e.last_heartbeat = absl::Now();
  e.pending_prefill_tokens = 0;
  e.reserved_since_heartbeat = 0;
  if (role != v1::WORKER_ROLE_UNSPECIFIED && role != e.handle->info.role()) {
    auto handle = std::make_shared<WorkerHandle>(*e.handle);  // in-flight requests keep the old one
    handle->info.set_role(role);
    e.handle = std::move(handle);
    GetLogger("router")->info("worker {} now has the {} role", worker_id, v1::WorkerRole_Name(role));
  }
  return true;
}

void WorkerRegistry::Remove(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  workers_.erase(worker_id);
}

std::vector<std::string> WorkerRegistry::Expire(absl::Time now) {
  std::vector<std::string> gone;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (now - it->second.last_heartbeat > options_.expiry) {
      GetLogger("router")->warn("worker {} missed its heartbeats for {}: dropped", it->first,
                                absl::FormatDuration(now - it->second.last_heartbeat));
      gone.push_back(it->first);
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  return gone;
}

std::shared_ptr<WorkerHandle> WorkerRegistry::PickDecode(int64_t blocks_needed, const std::set<std::string>& exclude) {
  std::lock_guard<std::mutex> lock(mu_);
  const Entry* best = nullptr;
  int64_t best_free = 0;
  bool best_fits = false;
  for (const auto& [id, e] : workers_) {
    if (exclude.contains(id) || e.load.draining() || !CanDecode(e.handle->info.role())) continue;
    const int64_t free = e.load.free_kv_blocks() - e.reserved_since_heartbeat;
    const bool fits = free >= blocks_needed;
    if (best == nullptr || (fits && !best_fits) || (fits == best_fits && free > best_free)) {
      best = &e;
      best_free = free;
      best_fits = fits;
    }
  }
  return best ? best->handle : nullptr;
}

std::shared_ptr<WorkerHandle> WorkerRegistry::PickPrefill(uint64_t affinity_key, int64_t prompt_tokens,
                                                          const std::set<std::string>& exclude) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t least = INT64_MAX;
  for (const auto& [id, e] : workers_) {
    if (exclude.contains(id) || e.load.draining() || e.handle->info.role() != v1::WORKER_ROLE_PREFILL) continue;
    least = std::min(least, e.load.queued_prefill_tokens() + e.pending_prefill_tokens);
  }
  if (least == INT64_MAX) return nullptr;
  const Entry* best = nullptr;
  uint64_t best_score = 0;
  for (const auto& [id, e] : workers_) {
    if (exclude.contains(id) || e.load.draining() || e.handle->info.role() != v1::WORKER_ROLE_PREFILL) continue;
    const int64_t queued = e.load.queued_prefill_tokens() + e.pending_prefill_tokens;
    if (queued > least + options_.affinity_slack_tokens) continue;
    const uint64_t score = Rendezvous(affinity_key, id);
    if (best == nullptr || score > best_score) {
      best = &e;
      best_score = score;
    }
  }
  return best->handle;
}

void WorkerRegistry::NotePrefillStarted(const std::string& worker_id, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) it->second.pending_prefill_tokens += tokens;
}

void WorkerRegistry::NotePrefillEnded(const std::string& worker_id, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) {
    it->second.pending_prefill_tokens = std::max<int64_t>(0, it->second.pending_prefill_tokens - tokens);
  }
}

void WorkerRegistry::NoteBlocksReserved(const std::string& worker_id, int64_t blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) it->second.reserved_since_heartbeat += blocks;
}

void WorkerRegistry::NoteFreeBlocks(const std::string& worker_id, int64_t free_blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) {
    it->second.load.set_free_kv_blocks(free_blocks);
    it->second.reserved_since_heartbeat = 0;
  }
}

void WorkerRegistry::NoteReserveRefused(const std::string& worker_id, int64_t blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) {
    Entry& e = it->second;
    const int64_t free = e.load.free_kv_blocks() - e.reserved_since_heartbeat;
    if (free >= blocks) e.reserved_since_heartbeat += free - blocks + 1;
  }
}

int WorkerRegistry::CountDecodeCapable() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [id, e] : workers_) n += !e.load.draining() && CanDecode(e.handle->info.role());
  return n;
}

std::vector<WorkerRegistry::Snapshot> WorkerRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Snapshot> out;
  const absl::Time now = absl::Now();
  for (const auto& [id, e] : workers_) {
    out.push_back({e.handle->info, e.load, absl::ToDoubleSeconds(now - e.last_heartbeat)});
  }
  return out;
}

std::shared_ptr<WorkerHandle> WorkerRegistry::Find(const std::string& worker_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : it->second.handle;
}

void WorkerRegistry::MarkDraining(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) it->second.load.set_draining(true);
}

int WorkerRegistry::CountRole(v1::WorkerRole role, bool draining) const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [id, e] : workers_) n += e.load.draining() == draining && e.handle->info.role() == role;
  return n;
}

}  // namespace tandem::router
