#include "router/registry_service.h"

#include "common/strings.h"
#include "rpc/convert.h"

namespace tandem::router {
namespace {

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* r = ctx->DefaultReactor();
  r->Finish(rpc::ToGrpc(s));
  return r;
}

}  // namespace

grpc::ServerUnaryReactor* RegistryService::Register(grpc::CallbackServerContext* ctx, const v1::RegisterRequest* req,
                                                    v1::RegisterResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx, "Registry/Register"); !s.ok()) return Reply(ctx, s);
  resp->set_heartbeat_ms(heartbeat_ms_);
  return Reply(ctx, registry_->Register(req->info(), req->load()));
}

grpc::ServerUnaryReactor* RegistryService::Heartbeat(grpc::CallbackServerContext* ctx, const v1::HeartbeatRequest* req,
                                                     v1::HeartbeatResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx, "Registry/Heartbeat"); !s.ok()) return Reply(ctx, s);
  resp->set_known(registry_->Heartbeat(req->worker_id(), req->epoch(), req->role(), req->load()));
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* RouterAdminService::ListWorkers(grpc::CallbackServerContext* ctx,
                                                          const v1::ListWorkersRequest*,
                                                          v1::ListWorkersResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx, "RouterAdmin/ListWorkers"); !s.ok()) return Reply(ctx, s);
  for (const auto& w : registry_->List()) {
    auto* s = resp->add_workers();
    *s->mutable_info() = w.info;
    *s->mutable_load() = w.load;
    s->set_seconds_since_heartbeat(w.seconds_since_heartbeat);
  }
  return Reply(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* RouterAdminService::DrainWorker(grpc::CallbackServerContext* ctx,
                                                          const v1::DrainWorkerRequest* req,
                                                          v1::DrainWorkerResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx, "RouterAdmin/DrainWorker"); !s.ok()) return Reply(ctx, s);
  auto worker = registry_->Find(req->worker_id());
  if (!worker) return Reply(ctx, absl::NotFoundError(StrCat("no worker ", req->worker_id())));
  registry_->MarkDraining(req->worker_id());
  auto* reactor = ctx->DefaultReactor();
  worker->client->Drain(absl::Now() + absl::Seconds(5), [reactor, resp](absl::StatusOr<v1::DrainResponse> r) {
    if (r.ok()) resp->set_drained(r->drained());
    reactor->Finish(rpc::ToGrpc(r.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* RouterAdminService::SetWorkerRole(grpc::CallbackServerContext* ctx,
                                                            const v1::SetWorkerRoleRequest* req,
                                                            v1::SetWorkerRoleResponse*) {
  if (absl::Status s = auth_->Check(*ctx, "RouterAdmin/SetWorkerRole"); !s.ok()) return Reply(ctx, s);
  auto worker = registry_->Find(req->worker_id());
  if (!worker) return Reply(ctx, absl::NotFoundError(StrCat("no worker ", req->worker_id())));
  auto* reactor = ctx->DefaultReactor();
  worker->client->SetRole(req->role(), absl::Now() + absl::Seconds(5),
                          [reactor](absl::Status s) { reactor->Finish(rpc::ToGrpc(s)); });
  return reactor;
}

}  // namespace tandem::router
