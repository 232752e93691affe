// The router's view of its workers: who they are (registration), how loaded they are
// (heartbeats, corrected by the router's own dispatches in between), and which one gets the
// next request. Workers that miss heartbeats for `expiry` are dropped.
//
// Placement (DESIGN.md "Request path"): the decisions are placement.h's pure functions; the
// registry keeps the state they need (entries, heartbeats, the router's own dispatches since the
// last heartbeat, and per prefill worker a PrefixIndex of the prompts sent there) and calls them
// with a snapshot taken under its lock. A worker's index is forgotten when the worker leaves
// (removed, expired, or back with a new epoch: a restarted process has an empty cache).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/admission_stats.h"
#include "router/prefix_index.h"
#include "router/worker_client.h"
#include "tandem/v1/registry.pb.h"

namespace tandem::router {

// Raised once, when the registry drops a worker's registration: it missed its heartbeats, was
// removed, or registered again as a new process (epoch). Requests with calls on that worker
// subscribe to it so that they stop waiting on a worker that is gone (a stopped process answers
// nothing, so no call of theirs would ever fail). Thread-safe; subscribers run on the thread
// that raises it, outside any lock, and must not block.
class WorkerLoss {
 public:
  using Id = uint64_t;
  // Runs `fn` when the worker is lost (at once, on this thread, if it already was). Returns an
  // id for Unsubscribe.
  Id Subscribe(std::function<void()> fn);
  void Unsubscribe(Id id);
  void Raise();
  bool raised() const;
  size_t subscribers() const;

 private:
  mutable std::mutex mu_;
  bool raised_ = false;
  Id next_ = 1;
  std::unordered_map<Id, std::function<void()>> subscribers_;
};

// A registered worker: its identity and a client to call it. Shared by in-flight requests, so
// it stays usable after the worker is dropped from the registry.
struct WorkerHandle {
  v1::WorkerInfo info;
  std::shared_ptr<WorkerClient> client;
  // Shared by the handles of one registration (a role change copies the handle).
  std::shared_ptr<WorkerLoss> loss = std::make_shared<WorkerLoss>();
};

// A prefill worker chosen for a prompt and the tokens counted as its pending work for it (hand
// them back with NotePrefillEnded). worker is null when none fits.
struct PrefillClaim {
  std::shared_ptr<WorkerHandle> worker;
  int64_t pending_tokens = 0;
  int64_t queued_ahead = 0;  // the worker's queued prefill tokens before this claim
};

// What the local-prefill cost rule (placement::PrefillLocallyByCost) needs to know of a prompt:
// the prefill work ahead of its first token on the prefill worker with the least of it (queued
// tokens plus the part of the prompt its prefix cache probably lacks), the same on the
// decode-capable worker with the least queued prefill (its heartbeat's count plus the local
// prefills sent there since, plus the whole prompt), -1 where there is no such worker; and the
// measured prefill rate (0 until a prefill has been timed).
struct PrefillOutlook {
  int64_t disaggregated_tokens = -1;
  int64_t local_tokens = -1;
  double tokens_per_s = 0;
};

struct WorkerRegistryOptions {
  std::string model_id;                        // workers must serve this model
  absl::Duration expiry = absl::Seconds(3);
  int32_t heartbeat_ms = 500;
  // A prefill worker is a candidate only while its queued tokens are within this many of the
  // least loaded one's, whatever its prefix cache holds (placement.h).
  int64_t affinity_slack_tokens = 1024;
  // Block hashes remembered per prefill worker (PrefixIndex); 64k blocks of 16 tokens cover
  // 1M prompt tokens, several times a small worker's cache.
  size_t prefix_index_blocks = 65536;
  // Makes the client for a registering worker (GrpcWorkerClient::Connect to its grpc_address in
  // the router; tests substitute fakes).
  std::function<std::shared_ptr<WorkerClient>(const v1::WorkerInfo& info)> make_client;
  // Called after each registration (a first one, a re-registration, a new process) with the new
  // handle and a function that drops exactly that registration (Drop with its epoch): the router
  // watches the client's connection with it (ConnectionMonitor). Empty: nothing watches.
  std::function<void(const WorkerHandle& handle, std::function<void(const std::string& why)> drop)> watch;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(WorkerRegistryOptions options);

  // FailedPrecondition when the worker serves another model.
  absl::Status Register(const v1::WorkerInfo& info, const v1::WorkerLoad& load);
  // False when the worker is unknown (or registered with another epoch): it must register.
  bool Heartbeat(const std::string& worker_id, uint64_t epoch, v1::WorkerRole role, const v1::WorkerLoad& load);
  void Remove(const std::string& worker_id);
  // Drops the worker if it is still registered as `epoch` (not a restart since), as if it had
  // missed its heartbeats: a request saw its connection break mid-stream, so its other
  // requests should move now rather than at expiry. A live worker registers again at its
  // next heartbeat.
  void Drop(const std::string& worker_id, uint64_t epoch, const std::string& why);
  // The worker was asked to drain: no new work goes to it from now on, before its heartbeat
  // says so. A heartbeat that says it is not draining (its role was changed) clears it.
  void MarkDraining(const std::string& worker_id);
  // Drops workers whose last heartbeat is older than the expiry; returns their ids.
  std::vector<std::string> Expire(absl::Time now);

  // A decode-capable worker (decode or mixed role) for a prompt of `prompt_tokens`, not in
  // `exclude` (placement::PickDecode), or null.
  std::shared_ptr<WorkerHandle> PickDecode(int64_t prompt_tokens, const std::set<std::string>& exclude);
  // A prefill worker (prefill role only) for `prompt`, not in `exclude`, whose KV layout
  // matches `destination` (the decode lease's; null: any), by placement::PickPrefill; or null.
  std::shared_ptr<WorkerHandle> PickPrefill(std::span<const int32_t> prompt, const v1::KvLayout* destination,
                                            const std::set<std::string>& exclude);

  // The router's own dispatches, until the next heartbeat reports them. A prompt sent to a
  // prefill worker also enters that worker's PrefixIndex. Started returns the tokens it counted
  // as that worker's pending work: the prompt less what the index says the worker holds (the
  // worker computes only the rest), at least 1; Ended takes the same count back.
  int64_t NotePrefillStarted(const std::string& worker_id, std::span<const int32_t> prompt);
  // PickPrefill and NotePrefillStarted as one step, so that requests placed at the same moment
  // each see the ones placed before them (no burst herds onto one worker on stale load).
  PrefillClaim ClaimPrefill(std::span<const int32_t> prompt, const v1::KvLayout* destination,
                            const std::set<std::string>& exclude);
  void NotePrefillEnded(const std::string& worker_id, int64_t tokens);
  PrefillOutlook Outlook(std::span<const int32_t> prompt) const;
  // A prefill timed from its claim to its answer: `tokens` of work (the queue ahead of it and
  // its own) in `seconds`. The rate Outlook reports is a moving average of these.
  void NotePrefillTimed(int64_t tokens, double seconds);
  // A decode-capable worker, not in `exclude`, to prefill a prompt of `prompt_tokens` itself
  // and generate (placement::PickLocal), or null. The prompt is counted in its prefill queue and
  // its blocks as taken until its next heartbeat reports them, so the prompts of a burst spread.
  std::shared_ptr<WorkerHandle> ClaimLocal(int64_t prompt_tokens, const std::set<std::string>& exclude);
  void NoteBlocksReserved(const std::string& worker_id, int64_t blocks);
  // A worker's own count of free blocks (from a reservation's answer): fresher than a heartbeat.
  void NoteFreeBlocks(const std::string& worker_id, int64_t free_blocks);
  // A worker refused to reserve for a prompt of `prompt_tokens` for lack of room: it has fewer
  // free blocks than that needs (in its own block size).
  void NoteReserveRefused(const std::string& worker_id, int64_t prompt_tokens);
  // Requests waiting for KV room and how fast they get it (the 429's Retry-After).
  AdmissionStats& admission() { return admission_; }
  // Live, non-draining workers that can decode (decode or mixed role).
  int CountDecodeCapable() const;

  struct Snapshot {
    v1::WorkerInfo info;
    v1::WorkerLoad load;
    double seconds_since_heartbeat;
  };
  std::vector<Snapshot> List() const;
  std::shared_ptr<WorkerHandle> Find(const std::string& worker_id) const;
  // Counts of live workers by role: those taking work, or (draining = true) those draining.
  int CountRole(v1::WorkerRole role, bool draining = false) const;

 private:
  struct Entry {
    std::shared_ptr<WorkerHandle> handle;
    v1::WorkerLoad load;
    absl::Time last_heartbeat;
    int64_t pending_prefill_tokens = 0;  // dispatched since the last heartbeat
    int64_t reserved_since_heartbeat = 0;
    int64_t local_prefill_since_heartbeat = 0;  // tokens sent to prefill locally
    PrefixIndex prefix_index;  // prefill workers: the prompts sent there
  };
  bool Hijacks(const Entry& current, const v1::WorkerInfo& info) const;  // mu_ held
  Entry* PickPrefillLocked(std::span<const int32_t> prompt, const v1::KvLayout* destination,
                           const std::set<std::string>& exclude);            // mu_ held
  int64_t NotePrefillStartedLocked(Entry& e, std::span<const int32_t> prompt);  // mu_ held
  // Erases the worker (only as `epoch`, when given) and raises its WorkerLoss; nullopt if absent.
  struct Gone {
    bool draining = false;  // it had been told to drain (or said it was)
  };
  std::optional<Gone> Unregister(const std::string& worker_id, std::optional<uint64_t> epoch);

  const WorkerRegistryOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> workers_;  // guarded by mu_
  double prefill_tokens_per_s_ = 0;                  // guarded by mu_; 0: nothing timed yet
  AdmissionStats admission_;
};

}  // namespace tandem::router
