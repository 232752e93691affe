// The router's view of its workers: who they are (registration), how loaded they are
// (heartbeats, corrected by the router's own dispatches in between), and which one gets the
// next request. Workers that miss heartbeats for `expiry` are dropped.
//
// Placement (DESIGN.md "Request path"): the decode worker is chosen first, by most free KV
// blocks (it must hold the prompt plus headroom); the prefill worker second, by fewest queued
// prefill tokens, preferring the same worker for the same prompt prefix among those within
// `affinity_slack_tokens` of the least loaded (prefix-cache hits).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/v1/registry.pb.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::router {

// A registered worker: its identity and a gRPC stub to it. Shared by in-flight requests, so it
// stays usable after the worker is dropped from the registry.
struct WorkerHandle {
  v1::WorkerInfo info;
  std::shared_ptr<v1::Worker::Stub> stub;
};

struct WorkerRegistryOptions {
  std::string model_id;                        // workers must serve this model
  absl::Duration expiry = absl::Seconds(3);
  int32_t heartbeat_ms = 500;
  int64_t affinity_slack_tokens = 1024;
  // Makes the stub for a worker's gRPC address (tests substitute in-process channels).
  std::function<std::shared_ptr<v1::Worker::Stub>(const std::string& address)> make_stub;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(WorkerRegistryOptions options);

  // FailedPrecondition when the worker serves another model.
  absl::Status Register(const v1::WorkerInfo& info, const v1::WorkerLoad& load);
  // False when the worker is unknown (or registered with another epoch): it must register.
  bool Heartbeat(const std::string& worker_id, uint64_t epoch, v1::WorkerRole role, const v1::WorkerLoad& load);
  void Remove(const std::string& worker_id);
  // The worker was asked to drain: no new work goes to it from now on, before its heartbeat
  // says so. A heartbeat that says it is not draining (its role was changed) clears it.
  void MarkDraining(const std::string& worker_id);
  // Drops workers whose last heartbeat is older than the expiry; returns their ids.
  std::vector<std::string> Expire(absl::Time now);

  // A decode-capable worker (decode or mixed role): the one with the most free KV blocks among
  // those with room for `blocks_needed`; if none seems to have room, still the one with the
  // most (the router's view may be stale: the worker has the last word). Null if none.
  std::shared_ptr<WorkerHandle> PickDecode(int64_t blocks_needed, const std::set<std::string>& exclude);
  // A prefill worker (prefill role only), or null.
  std::shared_ptr<WorkerHandle> PickPrefill(uint64_t affinity_key, int64_t prompt_tokens,
                                            const std::set<std::string>& exclude);

  // The router's own dispatches, until the next heartbeat reports them.
  void NotePrefillStarted(const std::string& worker_id, int64_t tokens);
  void NotePrefillEnded(const std::string& worker_id, int64_t tokens);
  void NoteBlocksReserved(const std::string& worker_id, int64_t blocks);
  // A worker's own count of free blocks (from a reservation's answer): fresher than a heartbeat.
  void NoteFreeBlocks(const std::string& worker_id, int64_t free_blocks);
  // A worker refused `blocks` for lack of room: it has fewer free.
  void NoteReserveRefused(const std::string& worker_id, int64_t blocks);
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
  };

  const WorkerRegistryOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> workers_;  // guarded by mu_
};

}  // namespace tandem::router
