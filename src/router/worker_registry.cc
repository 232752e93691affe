#include "router/worker_registry.h"

#include <map>

#include "absl/cleanup/cleanup.h"

#include "common/logging.h"
#include "common/strings.h"
#include "router/placement.h"

namespace tandem::router {
namespace {

bool CanDecode(v1::WorkerRole r) { return r == v1::WORKER_ROLE_DECODE || r == v1::WORKER_ROLE_MIXED; }

}  // namespace

WorkerLoss::Id WorkerLoss::Subscribe(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!raised_) {
      const Id id = next_++;
      subscribers_.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();
  return 0;
}

void WorkerLoss::Unsubscribe(Id id) {
  std::lock_guard<std::mutex> lock(mu_);
  subscribers_.erase(id);
}

void WorkerLoss::Raise() {
  std::unordered_map<Id, std::function<void()>> subscribers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (raised_) return;
    raised_ = true;
    subscribers.swap(subscribers_);
  }
  for (auto& [id, fn] : subscribers) fn();
}

bool WorkerLoss::raised() const {
  std::lock_guard<std::mutex> lock(mu_);
  return raised_;
}

size_t WorkerLoss::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size();
}

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
  handle->client = options_.make_client(info);
  std::shared_ptr<WorkerLoss> replaced;  // raised after the lock is let go
  absl::Cleanup raise_replaced = [&replaced] {
    if (replaced) replaced->Raise();
  };
  std::unique_lock<std::mutex> lock(mu_);
  auto it = workers_.find(info.worker_id());
  const bool known = it != workers_.end();
  if (known && Hijacks(it->second, info)) {
    GetLogger("router")->warn("refused a registration as worker={} from {}: that worker is alive at {}",
                              info.worker_id(), info.grpc_address(), it->second.handle->info.grpc_address());
    return absl::AlreadyExistsError(StrCat("worker id ", info.worker_id(), " is registered by a live worker at ",
                                           it->second.handle->info.grpc_address(),
                                           "; a worker may only replace its own registration"));
  }
  Entry entry{std::move(handle), load, absl::Now(), 0, 0, 0, PrefixIndex(options_.prefix_index_blocks)};
  // The same process registering again (the router restarted, or it missed a heartbeat) still
  // has its prefix cache; a new epoch is a new process with an empty one.
  if (known && it->second.handle->info.epoch() == info.epoch()) {
    entry.prefix_index = std::move(it->second.prefix_index);
    // Its requests go on: the same process still runs them.
    if (!it->second.handle->loss->raised()) entry.handle->loss = it->second.handle->loss;
  } else if (known) {
    replaced = it->second.handle->loss;  // a new process: the old one's calls will never answer
  }
  std::shared_ptr<WorkerHandle> registered = entry.handle;
  workers_.insert_or_assign(info.worker_id(), std::move(entry));
  GetLogger("router")->info("{} worker={} role={} address={} block_size={}", known ? "re-registered" : "registered",
                            info.worker_id(), v1::WorkerRole_Name(info.role()), info.grpc_address(),
                            placement::BlockSizeOf(info));
  lock.unlock();
  if (options_.watch) {
    options_.watch(*registered, [this, id = info.worker_id(), epoch = info.epoch()](const std::string& why) {
      Drop(id, epoch, why);
    });
  }
  return absl::OkStatus();
}

// A registration under a live worker's id is that worker's own when it comes from the same
// address (the process registering again, or its restart, which the old process no longer
// holds the port for); from elsewhere it is an attempt to take the worker's traffic. A worker that missed its heartbeats may be replaced.
bool WorkerRegistry::Hijacks(const Entry& current, const v1::WorkerInfo& info) const {
  if (current.handle->info.grpc_address() == info.grpc_address()) return false;
  return absl::Now() - current.last_heartbeat <= options_.expiry;
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
  e.local_prefill_since_heartbeat = 0;
  if (role != v1::WORKER_ROLE_UNSPECIFIED && role != e.handle->info.role()) {
    auto handle = std::make_shared<WorkerHandle>(*e.handle);  // in-flight requests keep the old one
    handle->info.set_role(role);
    e.handle = std::move(handle);
    GetLogger("router")->info("worker={} now has the {} role", worker_id, v1::WorkerRole_Name(role));
  }
  return true;
}

std::optional<WorkerRegistry::Gone> WorkerRegistry::Unregister(const std::string& worker_id, std::optional<uint64_t> epoch) {
  std::shared_ptr<WorkerLoss> loss;
  Gone gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workers_.find(worker_id);
    if (it == workers_.end() || (epoch.has_value() && it->second.handle->info.epoch() != *epoch)) return std::nullopt;
    loss = it->second.handle->loss;
    gone.draining = it->second.load.draining();
    workers_.erase(it);
  }
  loss->Raise();
  return gone;
}

void WorkerRegistry::Remove(const std::string& worker_id) { Unregister(worker_id, std::nullopt); }

void WorkerRegistry::Drop(const std::string& worker_id, uint64_t epoch, const std::string& why) {
  const std::optional<Gone> gone = Unregister(worker_id, epoch);
  if (!gone) return;
  // A worker told to drain is expected to go (scale-down, role change by replacement): not a fault.
  if (gone->draining) {
    GetLogger("router")->info("worker={} left after draining: {}", worker_id, why);
  } else {
    GetLogger("router")->warn("worker={} dropped: {}", worker_id, why);
  }
}

std::vector<std::string> WorkerRegistry::Expire(absl::Time now) {
  std::vector<std::string> gone;
  std::vector<std::shared_ptr<WorkerLoss>> lost;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (now - it->second.last_heartbeat > options_.expiry) {
        GetLogger("router")->warn("worker={} missed its heartbeats for {}: dropped", it->first,
                                  absl::FormatDuration(now - it->second.last_heartbeat));
        gone.push_back(it->first);
        lost.push_back(it->second.handle->loss);
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& loss : lost) loss->Raise();
  return gone;
}

std::shared_ptr<WorkerHandle> WorkerRegistry::PickDecode(int64_t prompt_tokens, const std::set<std::string>& exclude) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<placement::DecodeCandidate> candidates;
  std::vector<const Entry*> entries;
  for (const auto& [id, e] : workers_) {
    if (exclude.contains(id) || e.load.draining() || !CanDecode(e.handle->info.role())) continue;
    candidates.push_back({id, placement::BlockSizeOf(e.handle->info),
                          e.load.free_kv_blocks() - e.reserved_since_heartbeat});
    entries.push_back(&e);
  }
  const int i = placement::PickDecode(candidates, prompt_tokens);
  return i < 0 ? nullptr : entries[i]->handle;
}

WorkerRegistry::Entry* WorkerRegistry::PickPrefillLocked(std::span<const int32_t> prompt,
                                                         const v1::KvLayout* destination,
                                                         const std::set<std::string>& exclude) {
  std::map<int32_t, std::vector<uint64_t>> chains;  // by block size: one entry in a uniform cluster
  std::vector<placement::PrefillCandidate> candidates;
  std::vector<Entry*> entries;
  for (auto& [id, e] : workers_) {
    const v1::WorkerInfo& info = e.handle->info;
    if (exclude.contains(id) || e.load.draining() || info.role() != v1::WORKER_ROLE_PREFILL) continue;
    if (destination != nullptr && !placement::KvLayoutsMatch(info.kv_endpoint().layout(), *destination)) continue;
    const int32_t block_size = placement::BlockSizeOf(info);
    auto chain = chains.find(block_size);
    if (chain == chains.end()) chain = chains.emplace(block_size, placement::BlockChain(prompt, block_size)).first;
    candidates.push_back({id, e.load.queued_prefill_tokens() + e.pending_prefill_tokens,
                          e.prefix_index.MatchedBlocks(chain->second) * block_size});
    entries.push_back(&e);
  }
  const int i = placement::PickPrefill(candidates, static_cast<int64_t>(prompt.size()), placement::PromptKey(prompt),
                                       options_.affinity_slack_tokens);
  return i < 0 ? nullptr : entries[i];
}

int64_t WorkerRegistry::NotePrefillStartedLocked(Entry& e, std::span<const int32_t> prompt) {
  const int32_t block_size = placement::BlockSizeOf(e.handle->info);
  const std::vector<uint64_t> chain = placement::BlockChain(prompt, block_size);
  const int64_t cached = e.prefix_index.MatchedBlocks(chain) * block_size;
  const int64_t pending = std::max<int64_t>(1, static_cast<int64_t>(prompt.size()) - cached);
  e.pending_prefill_tokens += pending;
  e.prefix_index.Insert(chain);
  return pending;
}

std::shared_ptr<WorkerHandle> WorkerRegistry::PickPrefill(std::span<const int32_t> prompt,
                                                          const v1::KvLayout* destination,
                                                          const std::set<std::string>& exclude) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = PickPrefillLocked(prompt, destination, exclude);
  return e == nullptr ? nullptr : e->handle;
}

int64_t WorkerRegistry::NotePrefillStarted(const std::string& worker_id, std::span<const int32_t> prompt) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? 0 : NotePrefillStartedLocked(it->second, prompt);
}

PrefillClaim WorkerRegistry::ClaimPrefill(std::span<const int32_t> prompt, const v1::KvLayout* destination,
                                          const std::set<std::string>& exclude) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* e = PickPrefillLocked(prompt, destination, exclude);
  if (e == nullptr) return {};
  const int64_t ahead = e->load.queued_prefill_tokens() + e->pending_prefill_tokens;
  return {e->handle, NotePrefillStartedLocked(*e, prompt), ahead};
}

PrefillOutlook WorkerRegistry::Outlook(std::span<const int32_t> prompt) const {
  std::lock_guard<std::mutex> lock(mu_);
  PrefillOutlook out;
  out.tokens_per_s = prefill_tokens_per_s_;
  const auto least = [](int64_t& best, int64_t v) { best = best < 0 ? v : std::min(best, v); };
  const int64_t n = static_cast<int64_t>(prompt.size());
  for (const auto& [id, e] : workers_) {
    if (e.load.draining()) continue;
    const v1::WorkerRole role = e.handle->info.role();
    if (role == v1::WORKER_ROLE_PREFILL) {
      const int32_t block_size = placement::BlockSizeOf(e.handle->info);
      const int64_t cached = e.prefix_index.MatchedBlocks(placement::BlockChain(prompt, block_size)) * block_size;
      least(out.disaggregated_tokens,
            e.load.queued_prefill_tokens() + e.pending_prefill_tokens + std::max<int64_t>(1, n - cached));
    } else if (CanDecode(role)) {
      least(out.local_tokens, e.load.queued_prefill_tokens() + e.local_prefill_since_heartbeat + n);
    }
  }
  return out;
}

void WorkerRegistry::NotePrefillTimed(int64_t tokens, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  prefill_tokens_per_s_ = placement::NextPrefillRate(prefill_tokens_per_s_, tokens, seconds);
}

std::shared_ptr<WorkerHandle> WorkerRegistry::ClaimLocal(int64_t prompt_tokens, const std::set<std::string>& exclude) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<placement::DecodeCandidate> candidates;
  std::vector<Entry*> entries;
  for (auto& [id, e] : workers_) {
    if (exclude.contains(id) || e.load.draining() || !CanDecode(e.handle->info.role())) continue;
    candidates.push_back({id, placement::BlockSizeOf(e.handle->info), e.load.free_kv_blocks() - e.reserved_since_heartbeat,
                          e.load.queued_prefill_tokens() + e.local_prefill_since_heartbeat});
    entries.push_back(&e);
  }
  const int i = placement::PickLocal(candidates, prompt_tokens);
  if (i < 0) return nullptr;
  Entry& e = *entries[i];
  e.local_prefill_since_heartbeat += prompt_tokens;
  e.reserved_since_heartbeat += placement::BlocksFor(prompt_tokens, placement::BlockSizeOf(e.handle->info));
  return e.handle;
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

void WorkerRegistry::NoteReserveRefused(const std::string& worker_id, int64_t prompt_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = workers_.find(worker_id); it != workers_.end()) {
    Entry& e = it->second;
    const int64_t blocks = placement::BlocksFor(prompt_tokens, placement::BlockSizeOf(e.handle->info));
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
