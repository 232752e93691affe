// The request flow's test fixture: fake workers in a real WorkerRegistry, a clock that moves
// only when the test says so, and an observer that records what the client would see.
#pragma once

#include <map>
#include <optional>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "metrics/registry.h"
#include "router/request_flow.h"
#include "unit/router/fake_worker_client.h"

namespace tandem::router {

using fakes::FakeWorkerClient;

// Time that moves only when the test says so; delayed tasks run from RunNext().
class ManualClock final : public FlowClock {
 public:
  absl::Time Now() override { return now_; }
  bool RunAt(absl::Time at, std::function<void()> task) override {
    if (stopped_) return false;
    tasks_.emplace(at, std::move(task));
    return true;
  }
  // Moves time to the earliest task and runs it; false if there is none.
  bool RunNext() {
    if (tasks_.empty()) return false;
    auto it = tasks_.begin();
    now_ = std::max(now_, it->first);
    auto task = std::move(it->second);
    tasks_.erase(it);
    task();
    return true;
  }
  size_t waiting() const { return tasks_.size(); }
  void Advance(absl::Duration d) { now_ += d; }
  void Stop() { stopped_ = true; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
  std::multimap<absl::Time, std::function<void()>> tasks_;
  bool stopped_ = false;
};

// Records what the client would see, in order.
class RecordingObserver final : public RequestObserver {
 public:
  void OnPromptCached(int32_t n) override {
    cached_prompt_tokens = n;
    cached_before_tokens = tokens.empty();
  }
  void OnPromptLogprobs(std::span<const TokenLogprob> lps) override {
    prompt_logprobs.push_back(static_cast<int>(lps.size()));
    prompt_logprobs_before_tokens = tokens.empty();
  }
  void OnTokens(std::span<const int32_t> tokens, std::span<const TokenLogprob> lps) override {
    this->logprobs.insert(this->logprobs.end(), lps.begin(), lps.end());
    Enter("tokens");
    this->tokens.insert(this->tokens.end(), tokens.begin(), tokens.end());
    if (on_tokens) on_tokens();
    --depth_;
  }
  void OnFinished(FinishReason r, const RequestUsage& u) override {
    Enter("finished");
    reason = r;
    usage = u;
    --depth_;
  }
  void OnFailed(const absl::Status& s) override {
    Enter("failed");
    status = s;
    --depth_;
  }
  // Exactly one of OnFinished / OnFailed, it came last, and no call came inside another.
  bool EndedOnceLast() const {
    int terminal = 0;
    for (const auto& e : events) terminal += e != "tokens";
    return terminal == 1 && events.back() != "tokens" && !nested;
  }
  bool ended() const { return !events.empty() && events.back() != "tokens"; }

  std::vector<std::string> events;
  std::vector<int32_t> tokens;
  FinishReason reason = FinishReason::kNone;
  RequestUsage usage;
  absl::Status status;
  std::function<void()> on_tokens;
  std::optional<int32_t> cached_prompt_tokens;  // OnPromptCached's
  std::vector<TokenLogprob> logprobs;
  bool cached_before_tokens = false;
  std::vector<int> prompt_logprobs;  // per OnPromptLogprobs call: how many
  bool prompt_logprobs_before_tokens = false;
  bool nested = false;  // a method was called while another was running

 private:
  void Enter(const char* event) {
    nested = nested || depth_ > 0;
    ++depth_;
    events.push_back(event);
  }
  int depth_ = 0;
};

class RequestFlowTest : public ::testing::Test {
 protected:
  RequestFlowTest() : metrics_(metrics_registry_) {
    WorkerRegistryOptions o;
    o.model_id = "m";
    o.make_client = [this](const v1::WorkerInfo& info) { return fakes_.at(info.worker_id()); };
    registry_ = std::make_unique<WorkerRegistry>(o);
    options_.metrics = &metrics_;
    options_.admission_timeout = absl::Seconds(1);
  }
  ~RequestFlowTest() override {
    clock_.Stop();
    for (auto& fake : every_fake_) fake->Forget();  // those a test replaced or cleared too
  }

  FakeWorkerClient& AddWorker(const std::string& id, v1::WorkerRole role, int64_t free_blocks = 100,
                              int32_t block_size = 16, uint64_t epoch = 1) {
    auto fake = std::make_shared<FakeWorkerClient>(id, block_size);
    fakes_[id] = fake;
    every_fake_.push_back(fake);
    Register(id, role, free_blocks, block_size, epoch);
    return *fake;
  }

  // The same worker (same fake, same epoch) registering again, as after it was dropped.
  void Register(const std::string& id, v1::WorkerRole role, int64_t free_blocks = 100, int32_t block_size = 16,
                uint64_t epoch = 1) {
    v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_role(role);
    info.set_grpc_address("fake:" + id);
    info.set_model_id("m");
    info.set_epoch(epoch);
    info.mutable_kv_endpoint()->mutable_layout()->set_block_size(block_size);
    v1::WorkerLoad load;
    load.set_free_kv_blocks(free_blocks);
    EXPECT_TRUE(registry_->Register(info, load).ok());
  }

  std::shared_ptr<RequestFlow> Start(int prompt_tokens, int max_tokens = 8, int prompt_logprobs = -1) {
    RouterRequest r;
    r.id = fmt::format("req-{}", next_id_++);
    for (int i = 0; i < prompt_tokens; ++i) r.prompt.push_back(3 + i % 50);
    r.sampling.max_tokens = max_tokens;
    r.sampling.prompt_logprobs = prompt_logprobs;
    return RequestFlow::Start(std::move(r), options_, registry_.get(), &clock_, observer_);
  }

  // Starts a request on prefill worker p and decode worker d and takes it to its decode stream:
  // lease "L<n>" for the n-th reservation on d, first token 7.
  std::shared_ptr<FakeWorkerClient::Stream> StartDecoding(FakeWorkerClient& p, FakeWorkerClient& d,
                                                          std::shared_ptr<RequestFlow>* flow = nullptr,
                                                          int max_tokens = 8) {
    auto started = Start(40, max_tokens);
    if (flow != nullptr) *flow = started;
    d.AnswerReserve(d.reserves.size() - 1, fmt::format("L{}", d.reserves.size()));
    p.AnswerPrefill(p.prefills.size() - 1, 7);
    EXPECT_FALSE(d.decodes.empty());
    return d.decodes.empty() ? nullptr : d.decodes.back();
  }

  int NoPending() const {
    int n = 0;
    for (const auto& [id, f] : fakes_) n += f->pending();
    return n;
  }

  metrics::MetricsRegistry metrics_registry_;
  RouterMetrics metrics_;
  std::map<std::string, std::shared_ptr<FakeWorkerClient>> fakes_;
  std::vector<std::shared_ptr<FakeWorkerClient>> every_fake_;  // for the destructor's Forget
  std::unique_ptr<WorkerRegistry> registry_;
  ManualClock clock_;
  FlowOptions options_;
  std::shared_ptr<RecordingObserver> observer_ = std::make_shared<RecordingObserver>();
  int next_id_ = 0;
};

}  // namespace tandem::router
