#include "testing/test_cluster.h"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>

#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/backends/cpu/cpu_backend.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "unit/http/test_client.h"
#include "text/tokenizer.h"

namespace tandem::testing {

absl::StatusOr<std::unique_ptr<TestCluster>> TestCluster::Start(const ClusterSpec& spec) {
  auto c = std::unique_ptr<TestCluster>(new TestCluster());
  c->spec_ = spec;
  TANDEM_ASSIGN_OR_RETURN(c->file_, gguf::GgufFile::Open(spec.model_path));
  TANDEM_ASSIGN_OR_RETURN(auto tok_config, text::TokenizerConfigFromGguf(*c->file_));
  TANDEM_ASSIGN_OR_RETURN(auto tokenizer, text::Tokenizer::Create(std::move(tok_config)));
  c->eog_ids_ = tokenizer->eog_ids();
  c->token_pieces_ = tokenizer->AllPieces();
  c->hub_ = std::make_shared<transfer::InProcessKvHub>();

  router::RouterOptions ro;
  ro.bind_host = "127.0.0.1";
  ro.http_port = 0;
  ro.grpc_port = 0;
  ro.internal_port = 0;
  ro.local_prefill_threshold = spec.local_prefill_threshold;
  ro.heartbeat_ms = 100;
  ro.worker_expiry = spec.worker_expiry;
  ro.api_key = spec.api_key;
  ro.cluster_token = spec.cluster_token;
  ro.admin_api = spec.admin_api;
  ro.queue_timeout = spec.queue_timeout;
  ro.max_migrations = spec.max_migrations;
  ro.default_max_tokens = spec.default_max_tokens;
  for (int i = 0; i < std::max(1, spec.routers); ++i) {
    TANDEM_ASSIGN_OR_RETURN(auto router, router::RouterProcess::Start(ro, *c->file_));
    c->router_grpc_ports_.push_back(router->grpc_port());
    c->routers_.push_back(std::move(router));
  }
  for (int i = 0; i < spec.prefill; ++i) TANDEM_RETURN_IF_ERROR(c->AddWorker(v1::WORKER_ROLE_PREFILL));
  for (int i = 0; i < spec.decode; ++i) TANDEM_RETURN_IF_ERROR(c->AddWorker(v1::WORKER_ROLE_DECODE));
  for (int i = 0; i < spec.mixed; ++i) TANDEM_RETURN_IF_ERROR(c->AddWorker(v1::WORKER_ROLE_MIXED));
  TANDEM_RETURN_IF_ERROR(c->WaitReady());
  return c;
}

TestCluster::~TestCluster() {
  for (auto& w : workers_) {
    if (w) w->Stop(absl::ZeroDuration());
  }
  workers_.clear();
  for (auto& r : routers_) {
    if (r) r->Stop(absl::ZeroDuration());
  }
}

void TestCluster::StopRouter(int i) {
  if (!routers_[i]) return;
  routers_[i]->Stop(absl::ZeroDuration());
  routers_[i].reset();
}

absl::StatusOr<std::unique_ptr<Engine>> TestCluster::NewEngine(WorkerShape shape) const {
  EngineOptions eo;
  eo.num_kv_blocks = shape.kv_blocks > 0 ? shape.kv_blocks : spec_.kv_blocks;
  if (shape.block_size > 0) eo.block_size = shape.block_size;
  eo.scheduler.token_budget = spec_.token_budget;
  eo.scheduler.max_num_seqs = spec_.max_num_seqs;
  eo.eog_token_ids = eog_ids_;
  eo.token_pieces = token_pieces_;
  TANDEM_ASSIGN_OR_RETURN(auto backend, cpu::CpuBackend::Create({.threads = spec_.threads}));
  return Engine::Create(*file_, std::move(backend), eo);
}

absl::Status TestCluster::AddWorker(v1::WorkerRole role, WorkerShape shape) {
  TANDEM_ASSIGN_OR_RETURN(auto engine, NewEngine(shape));
  worker::WorkerOptions wo;
  wo.role = role;
  wo.worker_id = StrCat(role == v1::WORKER_ROLE_PREFILL  ? "prefill-"
                        : role == v1::WORKER_ROLE_DECODE ? "decode-"
                                                         : "mixed-",
                        next_worker_++);
  wo.bind_host = "127.0.0.1";
  for (const auto& r : routers_) {
    if (r) wo.router_address += StrCat(wo.router_address.empty() ? "" : ",", "127.0.0.1:", r->internal_port());
  }
  wo.heartbeat_interval = absl::Milliseconds(100);
  wo.service.transfer_timeout = spec_.transfer_timeout;
  wo.service.cluster_token = spec_.cluster_token;
  transfer::TransportOptions transport;
  transport.medium = spec_.ucx ? "ucx" : "inprocess";
  transport.ucx_tls = "tcp,sm,self";
  transport.in_process_hub = hub_;
  TANDEM_ASSIGN_OR_RETURN(auto w, worker::WorkerProcess::Start(wo, *file_, std::move(engine), transport));
  transports_.push_back(dynamic_cast<transfer::InProcessKvTransport*>(&w->transport()));  // null with UCX
  workers_.push_back(std::move(w));
  return absl::OkStatus();
}

void TestCluster::KillWorker(int i) {
  if (!workers_[i]) return;
  workers_[i]->Stop(absl::ZeroDuration());
  workers_[i].reset();
  transports_[i] = nullptr;
}

int TestCluster::FindWorker(v1::WorkerRole role) const {
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i] && workers_[i]->service().role() == role) return static_cast<int>(i);
  }
  return -1;
}

absl::Status TestCluster::WaitReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    size_t live = 0, known = 0;
    bool routers_ready = true;
    for (const auto& w : workers_) {
      if (!w) continue;
      ++live;
      bool everywhere = w->Ready();
      for (const auto& r : routers_) everywhere = everywhere && (!r || r->registry().Find(w->worker_id()) != nullptr);
      known += everywhere;
    }
    for (const auto& r : routers_) routers_ready = routers_ready && (!r || r->Ready());
    if (known == live && routers_ready) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(StrCat(known, " of ", live, " workers registered after ",
                                                absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::unique_ptr<v1::TandemGenerate::Stub> TestCluster::NewGenerateStub(int router) const {
  return v1::TandemGenerate::NewStub(grpc::CreateChannel(StrCat("127.0.0.1:", router_grpc_ports_[router]),
                                                         grpc::InsecureChannelCredentials()));
}

GenerateResult TestCluster::Generate(const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                                     absl::Duration timeout, const std::string& authorization, int router) {
  auto stub = NewGenerateStub(router);
  v1::GenerateRequest req;
  req.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  auto* sp = req.mutable_sampling();
  sp->set_max_tokens(sampling.max_tokens);
  sp->set_temperature(sampling.temperature);
  sp->set_top_p(sampling.top_p);
  sp->set_top_k(sampling.top_k);
  if (sampling.seed.has_value()) sp->set_seed(*sampling.seed);
  sp->set_ignore_eos(sampling.ignore_eos);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  auto reader = stub->Generate(&ctx, req);
  GenerateResult result;
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    result.tokens.insert(result.tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
    result.text += msg.text();
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      result.finish = msg.finish_reason();
      result.usage = msg.usage();
    }
  }
  result.status = reader->Finish();
  return result;
}

absl::StatusOr<std::string> TestCluster::RouterMetrics(int r) const {
  if (!routers_[r]) return absl::FailedPreconditionError(StrCat("router ", r, " was stopped"));
  auto resp = http::testing::Fetch(routers_[r]->http_port(), "GET", "/metrics");
  if (!resp.has_value() || resp->status != 200) return absl::UnavailableError(StrCat("GET /metrics of router ", r));
  return resp->body;
}

absl::StatusOr<std::string> TestCluster::Metrics(int i) const {
  const int port = i < 0 ? routers_[0]->http_port() : workers_[i]->http_port();
  auto resp = http::testing::Fetch(port, "GET", "/metrics");
  if (!resp.has_value()) return absl::UnavailableError(StrCat("GET /metrics on port ", port, " failed"));
  if (resp->status != 200) return absl::InternalError(StrCat("GET /metrics: HTTP ", resp->status));
  return resp->body;
}

absl::StatusOr<double> TestCluster::FreeBlocksFromMetrics(int i) const {
  TANDEM_ASSIGN_OR_RETURN(std::string page, Metrics(i));
  return MetricValue(page, "tandem_worker_kv_blocks{state=\"free\"}");
}

absl::StatusOr<double> MetricValue(const std::string& page, const std::string& series) {
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    // Workers label every sample with their role; `series` names it without that label.
    if (auto at = line.find("role=\""); at != std::string::npos && at > 0 && line[at - 1] == '{') {
      const size_t end = line.find('"', at + 6);
      if (end != std::string::npos) {
        const bool last = line[end + 1] == '}';
        line.erase(last ? at - 1 : at, last ? end + 3 - at : end + 2 - at);
      }
    }
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return absl::NotFoundError(StrCat("no sample ", series, " on the page"));
}

}  // namespace tandem::testing
