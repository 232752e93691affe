#include "router/router.h"

#include <chrono>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "metrics/process_metrics.h"
#include "text/text_model.h"
#include "types/model_info.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "http/ops_endpoints.h"
#include "router/grpc_worker_client.h"

namespace tandem::router {

std::string DefaultServedModelName(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (name.size() > 5 && name.ends_with(".gguf")) name.resize(name.size() - 5);
  // Drop a trailing quantization tag such as ".Q4_1" or "-q8_0".
  if (auto dot = name.find_last_of(".-"); dot != std::string::npos) {
    const std::string tag = name.substr(dot + 1);
    if (!tag.empty() && (tag[0] == 'Q' || tag[0] == 'q' || tag == "F16" || tag == "f16" || tag == "F32" ||
                         tag == "f32" || tag == "BF16" || tag == "bf16")) {
      name.resize(dot);
    }
  }
  return name;
}

absl::StatusOr<std::unique_ptr<RouterProcess>> RouterProcess::Start(const RouterOptions& options,
                                                                     const gguf::GgufFile& file) {
  auto r = std::unique_ptr<RouterProcess>(new RouterProcess());
  r->options_ = options;
  r->served_model_ = options.served_model.empty() ? DefaultServedModelName(file.path()) : options.served_model;
  TANDEM_ASSIGN_OR_RETURN(ModelInfo model, ReadModelInfo(file));
  TANDEM_ASSIGN_OR_RETURN(text::TextModel text_model, text::LoadTextModel(file));
  r->tokenizer_ = std::move(text_model.tokenizer);

  WorkerRegistryOptions ro;
  ro.model_id = model.id;
  ro.expiry = options.worker_expiry;
  ro.heartbeat_ms = options.heartbeat_ms;
  ro.make_client = [token = options.cluster_token](const v1::WorkerInfo& info) {
    return GrpcWorkerClient::Connect(info.grpc_address(), token);
  };
  // A worker process that dies closes its connections: it is dropped (its requests migrate, its
  // leases' prefills are cancelled) at once rather than after the heartbeat expiry.
  r->monitor_ = std::make_unique<ConnectionMonitor>();
  ro.watch = [monitor = r->monitor_.get()](const WorkerHandle& handle,
                                           std::function<void(const std::string&)> drop) {
    const auto* grpc_client = dynamic_cast<const GrpcWorkerClient*>(handle.client.get());
    if (grpc_client == nullptr || grpc_client->channel() == nullptr) return;
    monitor->Watch(grpc_client->channel(), [drop = std::move(drop)] {
      drop("its connection closed and connecting again was refused (the process is gone)");
    });
  };
  r->registry_ = std::make_unique<WorkerRegistry>(ro);
  r->metrics_registry_ = std::make_unique<metrics::MetricsRegistry>();
  r->process_metrics_ = metrics::RegisterProcessMetrics(*r->metrics_registry_);
  r->metrics_ = std::make_unique<RouterMetrics>(*r->metrics_registry_);
  WorkerRegistry* reg = r->registry_.get();
  r->RegisterWorkerGauges();

  FrontendOptions fo;
  fo.served_model = r->served_model_;
  fo.context_length = model.context_length;
  fo.default_max_tokens = options.default_max_tokens;
  fo.created_unix_seconds = absl::ToUnixSeconds(absl::Now());
  fo.request_timeout = options.request_timeout;
  fo.flow.local_prefill_threshold = options.local_prefill_threshold;
  fo.flow.local_prefill_ttft_slo = options.local_prefill_ttft_slo;
  fo.flow.admission_timeout = options.queue_timeout;
  fo.flow.max_migrations = options.max_migrations;
  fo.flow.metrics = r->metrics_.get();
  fo.api_key = options.api_key;
  r->timer_ = std::make_unique<TimedTaskQueue>();
  r->frontend_ = std::make_unique<Frontend>(fo, r->tokenizer_.get(), std::move(text_model.chat_template), reg,
                                            r->timer_.get(),
                                            r->metrics_.get());
  r->generate_service_ = std::make_unique<GenerateService>(r->frontend_.get());
  r->auth_ = std::make_unique<rpc::ClusterAuth>(options.cluster_token, r->metrics_->unauthenticated);
  r->registry_service_ = std::make_unique<RegistryService>(reg, options.heartbeat_ms, r->auth_.get());
  r->admin_service_ = std::make_unique<RouterAdminService>(reg, r->auth_.get());

  TANDEM_RETURN_IF_ERROR(r->StartServers());
  RouterProcess* self = r.get();
  r->expiry_thread_ = std::thread([self] {
    while (!self->stop_.load()) {
      self->registry_->Expire(absl::Now());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  GetLogger("router")->info("router serving model '{}' (id {}): HTTP on {}:{}, gRPC Generate on {}:{}, internal "
                            "gRPC (Registry, RouterAdmin) on {}:{}",
                            r->served_model_, ro.model_id, options.bind_host, r->http_port_, options.bind_host,
                            r->grpc_port_, r->InternalHost(), r->internal_port_);
  return r;
}

void RouterProcess::RegisterWorkerGauges() {
  WorkerRegistry* reg = registry_.get();
  auto& workers = metrics_registry_->AddCallbackGauge(
      "tandem_router_workers", "Registered workers by role and state (ready: taking work; draining)",
      {"role", "state"});
  for (auto [name, role] : {std::pair{"prefill", v1::WORKER_ROLE_PREFILL}, std::pair{"decode", v1::WORKER_ROLE_DECODE},
                            std::pair{"mixed", v1::WORKER_ROLE_MIXED}}) {
    callbacks_.push_back(workers.Register({name, "ready"}, [reg, role] { return reg->CountRole(role); }));
    callbacks_.push_back(
        workers.Register({name, "draining"}, [reg, role] { return reg->CountRole(role, /*draining=*/true); }));
  }
}

std::string RouterProcess::InternalHost() const {
  return options_.internal_bind_host.empty() ? options_.bind_host : options_.internal_bind_host;
}

absl::StatusOr<std::unique_ptr<grpc::Server>> RouterProcess::ServeGrpc(const std::string& host, int port,
                                                                       std::vector<grpc::Service*> services,
                                                                       int* bound) {
  grpc::ServerBuilder builder;
  // gRPC listens with SO_REUSEPORT by default: a second router on the same port would silently
  // share it with the first. A port that is taken is an error here.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(StrCat(host, ":", port), grpc::InsecureServerCredentials(), bound);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || *bound == 0) return absl::UnavailableError(StrCat("cannot listen for gRPC on ", host, ":", port));
  return server;
}

absl::Status RouterProcess::StartServers() {
  grpc::EnableDefaultHealthCheckService(true);  // grpc.health.v1 on both ports
  TANDEM_ASSIGN_OR_RETURN(grpc_server_,
                          ServeGrpc(options_.bind_host, options_.grpc_port, {generate_service_.get()}, &grpc_port_));
  std::vector<grpc::Service*> internal = {registry_service_.get()};
  if (options_.admin_api) internal.push_back(admin_service_.get());
  TANDEM_ASSIGN_OR_RETURN(internal_grpc_server_,
                          ServeGrpc(InternalHost(), options_.internal_port, std::move(internal), &internal_port_));
  http::HttpServerOptions ho;
  ho.address = options_.bind_host;
  ho.port = options_.http_port;
  ho.threads = options_.http_threads;
  TANDEM_ASSIGN_OR_RETURN(http_server_, http::HttpServer::Create(ho));
  frontend_->RegisterHttp(*http_server_);
  http::RegisterOpsEndpoints(*http_server_, [this] { return Ready(); }, metrics_registry_.get());
  TANDEM_RETURN_IF_ERROR(http_server_->Start());
  http_port_ = http_server_->port();
  return absl::OkStatus();
}

RouterProcess::~RouterProcess() { Stop(absl::ZeroDuration()); }

bool RouterProcess::Ready() const {
  const int decode = registry_->CountRole(v1::WORKER_ROLE_DECODE);
  const int mixed = registry_->CountRole(v1::WORKER_ROLE_MIXED);
  const int prefill = registry_->CountRole(v1::WORKER_ROLE_PREFILL);
  return mixed > 0 || (decode > 0 && prefill > 0) || (decode > 0 && options_.local_prefill_threshold > 0);
}

void RouterProcess::Stop(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true);
  if (expiry_thread_.joinable()) expiry_thread_.join();
  // Start may have failed part way (a port taken): stop what exists.
  if (http_server_) http_server_->Stop(grace);
  if (timer_) timer_->Stop();  // requests still waiting for KV room fail: the router is shutting down
  for (grpc::Server* server : {grpc_server_.get(), internal_grpc_server_.get()}) {
    if (server == nullptr) continue;
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(absl::ToInt64Milliseconds(grace) + 100));
  }
  GetLogger("router")->info("router stopped");
}

}  // namespace tandem::router
