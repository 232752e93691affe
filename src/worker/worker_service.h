// The Worker gRPC service (proto/tandem/v1/worker.proto), on gRPC's callback API so that no
// request holds a thread while it waits for the engine or the KV transfer.
//
// Roles: a prefill worker runs Prefill (compute the prompt, send its KV to a decode worker's
// lease chunk by chunk while the next chunk computes, sample the first token); a decode worker
// grants KV leases (ReserveKv) and continues requests from filled leases (Decode); a mixed
// worker does GenerateTokens (and both of the above). A draining worker refuses new work.
//
// The P->D protocol of a Prefill call lives in KvExport (worker/kv_export.h); token streams go
// through rpc::ServerStreamPump. This file is the gRPC glue around them.
//
// Thread-safe; owns nothing but per-call state: the runner, lease table and transport are
// borrowed and must outlive the service.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "rpc/cluster_auth.h"
#include "tandem/kv_transport.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "worker/engine_runner.h"
#include "worker/kv_export.h"
#include "worker/kv_lease_table.h"
#include "worker/worker_metrics.h"

namespace tandem::worker {

struct WorkerServiceOptions {
  v1::WorkerRole role = v1::WORKER_ROLE_MIXED;
  absl::Duration transfer_timeout = absl::Seconds(30);
  int64_t reserve_headroom_blocks = 0;  // blocks kept free for running requests' growth
  std::string transport_name = "ucx";
  int32_t max_reserve_tokens = 0;                   // 0: no bound here (the engine's block count still is)
  absl::Duration max_lease = absl::Minutes(5);      // the longest lease a caller may ask for
  std::string cluster_token;                        // callers must present it (empty: no check)
};

class WorkerService final : public v1::Worker::CallbackService {
 public:
  WorkerService(const WorkerServiceOptions& options, EngineRunner* runner, KvLeaseTable* leases,
                KvTransport* transport, const KvLayoutInfo& layout, WorkerMetrics* metrics);

  v1::WorkerRole role() const { return role_.load(); }
  bool draining() const { return draining_.load(); }
  // True when nothing is in flight: no requests, leases or KV waiting to be sent.
  bool Idle() const;

  grpc::ServerUnaryReactor* ReserveKv(grpc::CallbackServerContext* ctx, const v1::ReserveKvRequest* req,
                                      v1::ReserveKvResponse* resp) override;
  grpc::ServerUnaryReactor* ReleaseKv(grpc::CallbackServerContext* ctx, const v1::ReleaseKvRequest* req,
                                      v1::ReleaseKvResponse* resp) override;
  grpc::ServerUnaryReactor* Prefill(grpc::CallbackServerContext* ctx, const v1::PrefillRequest* req,
                                    v1::PrefillResponse* resp) override;
  grpc::ServerWriteReactor<v1::TokensResponse>* Decode(grpc::CallbackServerContext* ctx,
                                                       const v1::DecodeRequest* req) override;
  grpc::ServerWriteReactor<v1::TokensResponse>* GenerateTokens(grpc::CallbackServerContext* ctx,
                                                               const v1::GenerateTokensRequest* req) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx, const v1::CancelRequest* req,
                                   v1::CancelResponse* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::DrainResponse* resp) override;
  grpc::ServerUnaryReactor* SetRole(grpc::CallbackServerContext* ctx, const v1::SetRoleRequest* req,
                                    v1::SetRoleResponse* resp) override;

 private:
  // OK when the role allows the work and the worker is not draining; `admitted` work (a lease
  // it granted) is accepted while draining too.
  absl::Status CheckAccepting(bool needs_prefill, bool needs_decode, bool admitted = false) const;
  absl::Status CheckReserveRequest(const v1::ReserveKvRequest& req) const;
  // A Prefill call's export settings, or why the call cannot be served.
  absl::StatusOr<KvExportOptions> ExportOptions(const v1::PrefillRequest& req) const;

  // KV exports reach the engine through the runner.
  class RunnerExportEngine final : public KvExportEngine {
   public:
    explicit RunnerExportEngine(EngineRunner* runner) : runner_(runner) {}
    void CancelRequest(const std::string& request_id) override;
    void ReleaseHeldKv(const std::string& request_id) override;
    void Defer(std::function<void()> task) override;

   private:
    EngineRunner* runner_;
  };

  const WorkerServiceOptions options_;
  EngineRunner* runner_;
  KvLeaseTable* leases_;
  KvTransport* transport_;
  const KvLayoutInfo layout_;
  WorkerMetrics* metrics_;
  const rpc::ClusterAuth auth_;
  std::atomic<v1::WorkerRole> role_;
  std::atomic<bool> draining_{false};
  std::atomic<int32_t> outbound_transfers_{0};
  RunnerExportEngine export_engine_;
};

}  // namespace tandem::worker
