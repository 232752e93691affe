// The router's gRPC services for workers (Registry: register, heartbeat) and operators
// (RouterAdmin: list, drain, set role). Thread-safe; the registry is borrowed.
#pragma once

#include "router/worker_registry.h"
#include "rpc/cluster_auth.h"
#include "tandem/v1/registry.grpc.pb.h"

namespace tandem::router {

class RegistryService final : public v1::Registry::CallbackService {
 public:
  // `auth` checks every caller's cluster token (borrowed).
  RegistryService(WorkerRegistry* registry, int32_t heartbeat_ms, const rpc::ClusterAuth* auth)
      : registry_(registry), heartbeat_ms_(heartbeat_ms), auth_(auth) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
                                     v1::RegisterResponse* resp) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx, const v1::HeartbeatRequest* req,
                                      v1::HeartbeatResponse* resp) override;

 private:
  WorkerRegistry* registry_;
  int32_t heartbeat_ms_;
  const rpc::ClusterAuth* auth_;
};

class RouterAdminService final : public v1::RouterAdmin::CallbackService {
 public:
  RouterAdminService(WorkerRegistry* registry, const rpc::ClusterAuth* auth) : registry_(registry), auth_(auth) {}
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx, const v1::ListWorkersRequest* req,
                                        v1::ListWorkersResponse* resp) override;
  // Asks the worker to drain; answers with whether it has nothing in flight any more.
  grpc::ServerUnaryReactor* DrainWorker(grpc::CallbackServerContext* ctx, const v1::DrainWorkerRequest* req,
                                        v1::DrainWorkerResponse* resp) override;
  grpc::ServerUnaryReactor* SetWorkerRole(grpc::CallbackServerContext* ctx, const v1::SetWorkerRoleRequest* req,
                                          v1::SetWorkerRoleResponse* resp) override;

 private:
  WorkerRegistry* registry_;
  const rpc::ClusterAuth* auth_;
};

}  // namespace tandem::router
