#include "controller/loop/daemon.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "controller/sources/promql_source.h"
#include "controller/sources/scrape_source.h"
#include "http/ops_endpoints.h"
#include "metrics/process_metrics.h"

namespace tandem::controller {
namespace {

std::string RoleOf(v1::WorkerRole r) {
  switch (r) {
    case v1::WORKER_ROLE_PREFILL: return "prefill";
    case v1::WORKER_ROLE_DECODE: return "decode";
    default: return "mixed";
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SignalSource>> MakeSignalSource(const DaemonOptions& options, AdminClient* admin) {
  if (options.source == "scrape") {
    if (options.router_http.empty()) return absl::InvalidArgumentError("--router-http is needed to scrape the router");
    // One target per router (routers serving the same workers: their addresses, comma-separated).
    std::vector<ScrapeTarget> routers;
    for (absl::string_view r : absl::StrSplit(options.router_http, ',', absl::SkipWhitespace())) {
      routers.push_back({StrCat("http://", absl::StripAsciiWhitespace(r), "/metrics"), "router"});
    }
    return std::make_unique<ScrapeSource>([routers, admin] {
      std::vector<ScrapeTarget> targets = routers;
      auto workers = admin->ListWorkers();
      if (!workers.ok()) {
        GetLogger("controller")->warn("listing the workers: {}", workers.status().message());
        return targets;
      }
      for (const auto& w : *workers) {
        targets.push_back({StrCat("http://", w.info().http_address(), "/metrics"), RoleOf(w.info().role())});
      }
      return targets;
    });
  }
  if (options.source == "prometheus") {
    if (options.prometheus_url.empty()) return absl::InvalidArgumentError("--source prometheus needs --prometheus-url");
    PromQLSourceOptions po;
    po.base_url = options.prometheus_url;
    po.window = options.window;
    TANDEM_ASSIGN_OR_RETURN(auto source, PromQLSource::Create(po));
    return std::unique_ptr<SignalSource>(std::move(source));
  }
  return absl::InvalidArgumentError(StrCat("unknown --source '", options.source, "' (scrape or prometheus)"));
}

absl::StatusOr<std::unique_ptr<ControllerDaemon>> ControllerDaemon::Create(DaemonOptions options, Actuator* actuator,
                                                                           AdminClient* admin) {
  std::unique_ptr<ControllerDaemon> d(new ControllerDaemon());
  d->options_ = options;
  d->registry_ = std::make_unique<metrics::MetricsRegistry>();
  d->process_metrics_ = metrics::RegisterProcessMetrics(*d->registry_);
  TANDEM_RETURN_IF_ERROR(ValidatePlannerConfig(options.loop.planner));
  TANDEM_RETURN_IF_ERROR(ValidateClassifierOptions(options.loop.classifier));
  TANDEM_ASSIGN_OR_RETURN(d->source_, MakeSignalSource(options, admin));
  if (!options.decision_log.empty()) {
    TANDEM_ASSIGN_OR_RETURN(d->log_, DecisionLog::Open(options.decision_log));
  }
  d->controller_ =
      std::make_unique<Controller>(options.loop, d->source_.get(), actuator, d->log_.get(), d->registry_.get());
  if (options.restore_drained_after_s > 0 && admin != nullptr && !options.loop.dry_run) {
    d->guard_ = std::make_unique<DrainedOutGuard>(admin, actuator, absl::Seconds(options.restore_drained_after_s));
    d->controller_->SetDrainedOutGuard(d->guard_.get());
  }

  http::HttpServerOptions ho;
  ho.address = options.bind;
  ho.port = options.http_port;
  ho.threads = 1;
  TANDEM_ASSIGN_OR_RETURN(d->http_server_, http::HttpServer::Create(ho));
  http::RegisterOpsEndpoints(*d->http_server_, nullptr, d->registry_.get());
  TANDEM_RETURN_IF_ERROR(d->http_server_->Start());
  return d;
}

ControllerDaemon::~ControllerDaemon() {
  Stop();
  if (http_server_) http_server_->Stop(absl::Milliseconds(200));
}

void ControllerDaemon::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { controller_->Run(); });
}

void ControllerDaemon::Stop() {
  if (controller_) controller_->Stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tandem::controller
