#include "worker/worker.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "http/ops_endpoints.h"
#include "metrics/process_metrics.h"
#include "rpc/convert.h"

namespace tandem::worker {
namespace {

std::string RoleName(v1::WorkerRole role) {
  switch (role) {
    case v1::WORKER_ROLE_PREFILL: return "prefill";
    case v1::WORKER_ROLE_DECODE: return "decode";
    default: return "mixed";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(const WorkerOptions& options,
                                                                     const gguf::GgufFile& file,
                                                                     std::unique_ptr<Engine> engine,
                                                                     const transfer::TransportOptions& transport) {
  auto w = std::unique_ptr<WorkerProcess>(new WorkerProcess());
  w->options_ = options;
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  w->worker_id_ = options.worker_id.empty() ? StrCat(RoleName(options.role), "-", host, "-", ::getpid())
                                            : options.worker_id;
  w->model_id_ = ModelIdentity(file);
  w->context_length_ = engine->max_model_len();
  KvLayoutInfo layout;
  layout.model_id = w->model_id_;
  layout.layout = engine->kv_cache().layout();
  layout.block_format = std::string(engine->kv_cache().block_format());

  w->leases_ = std::make_unique<KvLeaseTable>(KvLeaseTable::Options{});
  transfer::TransportOptions transport_options = transport;
  transport_options.cache = &engine->kv_cache();
  transport_options.layout = layout;
  transport_options.lease_handler = w->leases_.get();
  transport_options.worker_id = w->worker_id_;
  TANDEM_ASSIGN_OR_RETURN(w->transport_, transfer::MakeTransport(transport_options));
  w->epoch_ = w->transport_->local_endpoint().epoch;
  w->runner_ = std::make_unique<EngineRunner>(std::move(engine), w->leases_.get());
  w->registry_ = std::make_unique<metrics::MetricsRegistry>();
  w->process_metrics_ = metrics::RegisterProcessMetrics(*w->registry_);
  EngineRunner* runner = w->runner_.get();
  w->metrics_ = std::make_unique<WorkerMetrics>(*w->registry_, RoleName(options.role),
                                                [runner] { return runner->load(); },
                                                [runner] { return runner->counters(); },
                                                [runner] { return runner->leases_expired(); },
                                                [runner] { return runner->task_failures(); });
  WorkerMetrics* metrics = w->metrics_.get();
  runner->SetStepObserver([metrics](const StepStats& step) { metrics->StepDone(step); });
  WorkerServiceOptions so = options.service;
  so.role = options.role;
  so.transport_name = std::string(w->transport_->name());
  so.max_reserve_tokens = w->context_length_;
  w->service_ = std::make_unique<WorkerService>(so, w->runner_.get(), w->leases_.get(), w->transport_.get(), layout,
                                                w->metrics_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a taken port is an error, not shared
  builder.AddListeningPort(StrCat(options.bind_host, ":", options.grpc_port), grpc::InsecureServerCredentials(),
                           &w->grpc_port_);
  builder.RegisterService(w->service_.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  w->grpc_server_ = builder.BuildAndStart();
  if (!w->grpc_server_ || w->grpc_port_ == 0) {
    return absl::UnavailableError(StrCat("cannot listen for gRPC on ", options.bind_host, ":", options.grpc_port));
  }

  http::HttpServerOptions ho;
  ho.address = options.bind_host;
  ho.port = options.http_port;
  ho.threads = 1;
  TANDEM_ASSIGN_OR_RETURN(w->http_server_, http::HttpServer::Create(ho));
  WorkerProcess* self = w.get();
  http::RegisterOpsEndpoints(*w->http_server_, [self] { return self->Ready(); }, w->registry_.get());
  TANDEM_RETURN_IF_ERROR(w->http_server_->Start());
  w->http_port_ = w->http_server_->port();

  w->StartRegistrations(options);
  GetLogger("worker")->info("worker {} ({}) serving gRPC on {}:{}, HTTP on {}:{}, KV transport {}; model {}",
                            w->worker_id_, RoleName(options.role), options.advertise_host, w->grpc_port_,
                            options.advertise_host, w->http_port_, w->transport_->name(), w->model_id_);
  return w;
}

void WorkerProcess::StartRegistrations(const WorkerOptions& options) {
  std::set<std::string, std::less<>> routers;
  for (absl::string_view r : absl::StrSplit(options.router_address, ',', absl::SkipWhitespace())) {
    const absl::string_view address = absl::StripAsciiWhitespace(r);
    if (!routers.emplace(address).second) continue;
    RouterRegistration::Options ro;
    ro.router_address = std::string(address);
    ro.cluster_token = options.service.cluster_token;
    ro.interval = options.heartbeat_interval;
    registrations_.push_back(
        std::make_unique<RouterRegistration>(ro, [this] { return Info(); }, [this] { return Load(); }));
    registrations_.back()->Start();
  }
}

WorkerProcess::~WorkerProcess() { Stop(absl::ZeroDuration()); }

bool WorkerProcess::Ready() const {
  if (stopped_ || service_->draining()) return false;
  // Ready once one router knows it (without routers: at once); each keeps trying on its own.
  if (registrations_.empty()) return true;
  for (const auto& r : registrations_) {
    if (r->registered()) return true;
  }
  return false;
}

v1::WorkerInfo WorkerProcess::Info() const {
  v1::WorkerInfo info;
  info.set_worker_id(worker_id_);
  info.set_role(service_->role());
  info.set_grpc_address(StrCat(options_.advertise_host, ":", grpc_port_));
  info.set_http_address(StrCat(options_.advertise_host, ":", http_port_));
  info.set_model_id(model_id_);
  *info.mutable_kv_endpoint() = rpc::ToProto(transport_->local_endpoint(), transport_->name());
  info.set_context_length(context_length_);
  info.set_epoch(epoch_);
  return info;
}

v1::WorkerLoad WorkerProcess::Load() const {
  const EngineLoad l = runner_->load();
  v1::WorkerLoad load;
  load.set_queued_prefill_tokens(l.queued_prefill_tokens);
  load.set_running(l.running);
  load.set_waiting(l.waiting);
  load.set_free_kv_blocks(l.free_blocks);
  load.set_reserved_kv_blocks(l.reserved_blocks);
  load.set_total_kv_blocks(l.total_blocks);
  load.set_draining(service_->draining());
  load.set_inflight_requests(runner_->inflight());
  return load;
}

void WorkerProcess::Stop(absl::Duration grace) {
  if (stopped_) return;
  stopped_ = true;
  auto log = GetLogger("worker");
  for (auto& r : registrations_) r->Stop();
  // Drain: finish what is in flight (including KV still being sent) before shutting down.
  const absl::Time deadline = absl::Now() + grace;
  while (!service_->Idle() && absl::Now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!service_->Idle()) log->warn("stopping with work still in flight after {}", absl::FormatDuration(grace));
  // Calls still open after this are cancelled (their clients see the worker go away).
  grpc_server_->Shutdown(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(std::min<int64_t>(500, absl::ToInt64Milliseconds(grace))));
  http_server_->Stop(absl::Milliseconds(200));
  transport_.reset();  // reads the engine's KV cache: goes before the engine
  runner_.reset();
  log->info("worker {} stopped", worker_id_);
}

}  // namespace tandem::worker
