#include "sim/simulator.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <queue>
#include <unordered_map>

#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/block_manager.h"
#include "engine/sequence.h"
#include "router/placement.h"

namespace tandem::sim {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPrefill: return "prefill";
    case Role::kDecode: return "decode";
    case Role::kMixed: return "mixed";
  }
  return "?";
}

namespace {

constexpr double kBackoffStart = 0.010;  // the router's WaitForRoom backoff
constexpr double kBackoffMax = 0.200;

enum class EventType { kArrive, kReserve, kStartPrefill, kStartLocal, kStepDone, kTransferDone, kStartDecode };

struct Event {
  double t = 0;
  uint64_t order = 0;  // FIFO among equal times: the simulation is deterministic
  EventType type = EventType::kArrive;
  int a = 0;  // request, or worker for kStepDone
  int b = 0;  // worker
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : order > o.order; }
};

struct WorkerState {
  const SimWorker* spec = nullptr;
  std::unique_ptr<BlockManager> blocks;
  std::unique_ptr<Scheduler> scheduler;
  bool busy = false;
  SchedulerOutput plan;
  double link_free_s = 0;      // when this worker's outgoing KV link is next idle
  int64_t queued_prefill = 0;  // prompt tokens sent here to prefill and not yet computed
  SimWorkerStats stats;
};

struct RequestState {
  SimRequest req;
  int decode_worker = -1;
  int prefill_worker = -1;
  std::vector<int32_t> lease;       // blocks reserved on the decode worker
  std::vector<int32_t> held;        // prefill worker blocks held until the hand-off ends
  std::unique_ptr<Sequence> seq;    // the engine sequence currently standing for it
  std::optional<double> wait_start;
  double backoff = kBackoffStart;
  double transfer_done_s = 0;       // when the last KV chunk is on the decode worker
  int64_t uncomputed_prefill = 0;   // prompt tokens still counted in queued_prefill
  double prefill_sent_s = 0;        // when the Prefill call went out
  int64_t prefill_work = 0;         // the tokens queued ahead of it at the claim plus its own
  bool disaggregated = false;
  bool finished = false;
  bench::RequestRecord record;
};

class Sim {
 public:
  explicit Sim(const SimCluster& c) : c_(c) {}

  absl::StatusOr<SimResult> Run(const std::vector<SimRequest>& requests) {
    TANDEM_RETURN_IF_ERROR(Setup(requests));
    for (size_t i = 0; i < requests.size(); ++i) Push(requests[i].arrival_s, EventType::kArrive, static_cast<int>(i));
    while (!events_.empty()) {
      const Event e = events_.top();
      events_.pop();
      ++num_events_;
      now_ = e.t;
      Handle(e);
    }
    SimResult out;
    out.events = num_events_;
    for (RequestState& r : reqs_) {
      if (!r.finished && r.record.failure == bench::FailureKind::kNone) {
        r.record.failure = bench::FailureKind::kTruncated;
        r.record.error = "never finished (simulator)";
      }
      if (r.record.ok() && r.record.end_s > c_.request_timeout_s) {
        r.record.failure = bench::FailureKind::kTimeout;
        r.record.error = "past the request timeout";
      }
      out.duration_s = std::max(out.duration_s, r.req.arrival_s + r.record.end_s);
      out.records.push_back(std::move(r.record));
    }
    for (WorkerState& w : workers_) out.workers.push_back(w.stats);
    return out;
  }

 private:
  absl::Status Setup(const std::vector<SimRequest>& requests) {
    int decode_capable = 0;
    int64_t largest_decode_blocks = 0;
    for (const SimWorker& w : c_.workers) {
      if (w.num_blocks <= 0 || w.block_size <= 0) {
        return absl::InvalidArgumentError("every simulated worker needs KV blocks");
      }
      WorkerState s;
      s.spec = &w;
      BlockManagerOptions bo;
      bo.num_blocks = w.num_blocks;
      bo.block_size = w.block_size;
      bo.enable_prefix_cache = false;
      s.blocks = std::make_unique<BlockManager>(bo);
      s.scheduler = std::make_unique<Scheduler>(w.scheduler, *s.blocks);
      workers_.push_back(std::move(s));
      worker_ids_.push_back(StrCat("w", 1000 + worker_ids_.size()));  // placement's tie-break key
      if (w.role == Role::kPrefill) {
        ++num_prefill_;
      } else {
        ++decode_capable;
        largest_decode_blocks = std::max(largest_decode_blocks, w.num_blocks * w.block_size);
      }
    }
    if (decode_capable == 0) return absl::InvalidArgumentError("the cluster has no decode or mixed worker");
    reqs_.resize(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      const SimRequest& r = requests[i];
      if (r.input_tokens < 1 || r.output_tokens < 1) {
        return absl::InvalidArgumentError(StrCat("request ", i, " has no input or no output tokens"));
      }
      if (static_cast<int64_t>(r.input_tokens) + r.output_tokens > largest_decode_blocks) {
        return absl::InvalidArgumentError(StrCat("request ", i, " (", r.input_tokens, " + ", r.output_tokens,
                                                 " tokens) never fits a decode worker's KV cache of ",
                                                 largest_decode_blocks, " tokens"));
      }
      RequestState& s = reqs_[i];
      s.req = r;
      s.record.index = static_cast<int>(i);
      s.record.phase = r.phase;
      s.record.scheduled_s = s.record.sent_s = r.arrival_s;
      s.record.input_tokens = r.input_tokens;
      s.record.output_tokens_requested = r.output_tokens;
      s.record.prompt_tokens_reported = r.input_tokens;
      s.record.usage_reported = true;
    }
    return absl::OkStatus();
  }

  void Push(double t, EventType type, int a, int b = 0) { events_.push(Event{t, next_order_++, type, a, b}); }

  void Handle(const Event& e) {
    switch (e.type) {
      case EventType::kArrive: return Arrive(e.a);
      case EventType::kReserve: return Reserve(e.a);
      case EventType::kStartPrefill: return StartPrefill(e.a);
      case EventType::kStartLocal: return StartLocal(e.a);
      case EventType::kStepDone: return StepDone(e.a);
      case EventType::kTransferDone: return TransferDone(e.a);
      case EventType::kStartDecode: return StartDecode(e.a);
    }
  }

  std::unique_ptr<Sequence> NewSequence(int request, int num_tokens, int max_tokens) {
    SamplingParams params;
    params.max_tokens = max_tokens;
    auto seq = std::make_unique<Sequence>(std::to_string(request), std::vector<int32_t>(num_tokens, 0),
                                          std::move(params), 0, next_arrival_++, 0);
    owner_[seq.get()] = request;
    return seq;
  }

  // The decode-capable worker the router chooses for `tokens` prompt tokens: PickLocal when the
  // worker prefills them itself, else PickDecode.
  int PickDecode(int64_t tokens, bool local = false) {
    std::vector<router::placement::DecodeCandidate> candidates;
    std::vector<int> index;
    for (size_t i = 0; i < workers_.size(); ++i) {
      const WorkerState& w = workers_[i];
      if (w.spec->role == Role::kPrefill) continue;
      candidates.push_back({worker_ids_.at(i), w.spec->block_size, w.blocks->num_available(), w.queued_prefill});
      index.push_back(static_cast<int>(i));
    }
    const int pick =
        local ? router::placement::PickLocal(candidates, tokens) : router::placement::PickDecode(candidates, tokens);
    return pick < 0 ? -1 : index[pick];
  }

  int PickPrefill(int request, int64_t tokens) {
    std::vector<router::placement::PrefillCandidate> candidates;
    std::vector<int> index;
    for (size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i].spec->role != Role::kPrefill) continue;
      candidates.push_back({worker_ids_.at(i), workers_[i].queued_prefill, 0});
      index.push_back(static_cast<int>(i));
    }
    const int pick = router::placement::PickPrefill(candidates, tokens, static_cast<uint64_t>(request) * 0x9E3779B97F4A7C15ull,
                                                    c_.affinity_slack_tokens);
    return pick < 0 ? -1 : index[pick];
  }

  // PrefillLocallyByCost with the router's view: the least queued prefill on each side.
  bool LocalByCost(int64_t tokens) {
    if (!(c_.local_prefill_ttft_slo_s > 0)) return false;
    router::placement::PrefillCostInputs in;
    in.ttft_slo_s = c_.local_prefill_ttft_slo_s;
    in.tokens_per_s = prefill_rate_;
    const auto least = [](int64_t& best, int64_t v) { best = best < 0 ? v : std::min(best, v); };
    for (const WorkerState& w : workers_) {
      least(w.spec->role == Role::kPrefill ? in.disaggregated_tokens : in.local_tokens, w.queued_prefill + tokens);
    }
    return router::placement::PrefillLocallyByCost(in);
  }

  void Arrive(int r) {
    RequestState& s = reqs_[r];
    const bool by_rule = router::placement::PrefillLocally(s.req.input_tokens, c_.local_prefill_threshold, num_prefill_);
    const bool by_cost = !by_rule && LocalByCost(s.req.input_tokens);
    if (by_rule || by_cost) {
      s.decode_worker = PickDecode(s.req.input_tokens, /*local=*/true);
      workers_[s.decode_worker].queued_prefill += s.req.input_tokens;
      s.uncomputed_prefill = s.req.input_tokens;
      workers_[s.decode_worker].stats.local_by_cost += by_cost ? 1 : 0;
      Push(now_ + c_.hop_s, EventType::kStartLocal, r);
      return;
    }
    s.disaggregated = true;
    Push(now_ + c_.hop_s, EventType::kReserve, r);
  }

  void Fail(int r, bench::FailureKind kind, int http_status, std::string error) {
    RequestState& s = reqs_[r];
    s.record.failure = kind;
    s.record.http_status = http_status;
    s.record.error = std::move(error);
    s.record.end_s = now_ - s.req.arrival_s;
    s.finished = true;
  }

  // ReserveKv: blocks for the prompt on the chosen decode worker, or wait for room.
  void Reserve(int r) {
    RequestState& s = reqs_[r];
    const int w = PickDecode(s.req.input_tokens);
    WorkerState& d = workers_[w];
    const int64_t need = router::placement::BlocksFor(s.req.input_tokens, d.spec->block_size);
    if (d.blocks->num_available() >= need) {
      for (int64_t i = 0; i < need; ++i) s.lease.push_back(*d.blocks->Allocate());
      s.decode_worker = w;
      const int p = PickPrefill(r, s.req.input_tokens);
      s.prefill_worker = p;
      s.prefill_work = workers_[p].queued_prefill + s.req.input_tokens;
      s.prefill_sent_s = now_ + 2 * c_.hop_s;
      workers_[p].queued_prefill += s.req.input_tokens;
      s.uncomputed_prefill = s.req.input_tokens;
      // The reservation's answer, then the Prefill call.
      Push(now_ + 2 * c_.hop_s, EventType::kStartPrefill, r);
      return;
    }
    if (!s.wait_start) s.wait_start = now_;
    if (now_ - *s.wait_start >= c_.queue_timeout_s) {
      Fail(r, bench::FailureKind::kHttpStatus, 429, "no decode worker had room within the queue timeout");
      return;
    }
    Push(now_ + s.backoff + c_.hop_s, EventType::kReserve, r);
    s.backoff = std::min(s.backoff * 2, kBackoffMax);
  }

  void StartPrefill(int r) {
    RequestState& s = reqs_[r];
    s.seq = NewSequence(r, s.req.input_tokens, 1);
    s.seq->hold_kv = true;
    WorkerState& w = workers_[s.prefill_worker];
    w.scheduler->Add(s.seq.get());
    Kick(s.prefill_worker);
  }

  void StartLocal(int r) {
    RequestState& s = reqs_[r];
    s.seq = NewSequence(r, s.req.input_tokens, s.req.output_tokens);
    workers_[s.decode_worker].scheduler->Add(s.seq.get());
    Kick(s.decode_worker);
  }

  void StartDecode(int r) {
    RequestState& s = reqs_[r];
    s.seq = NewSequence(r, s.req.input_tokens, s.req.output_tokens);
    s.seq->tokens.push_back(0);  // the first token, sampled by the prefill worker
    s.seq->num_computed = s.req.input_tokens;
    s.seq->block_table = std::move(s.lease);
    s.lease.clear();
    workers_[s.decode_worker].scheduler->AddRunning(s.seq.get());
    Kick(s.decode_worker);
  }

  void Kick(int wi) {
    WorkerState& w = workers_[wi];
    if (w.busy) return;
    w.plan = w.scheduler->Schedule();
    w.stats.preemptions += static_cast<int64_t>(w.plan.preempted.size());
    if (w.plan.chunks.empty()) return;
    w.busy = true;
    const double seconds = w.spec->cost.Seconds(DescribeIteration(w.plan));
    w.stats.busy_s += seconds;
    ++w.stats.iterations;
    w.stats.prefill_tokens += w.plan.num_prefill_tokens;
    w.stats.decode_tokens += w.plan.num_decode_tokens;
    w.stats.max_running = std::max<int64_t>(w.stats.max_running, w.scheduler->num_running());
    Push(now_ + seconds, EventType::kStepDone, wi);
  }

  void Token(RequestState& s, double at) {
    if (c_.record_every_token || s.record.chunk_s.empty()) s.record.chunk_s.push_back(at - s.req.arrival_s);
    ++s.record.output_tokens;
    s.record.end_s = at - s.req.arrival_s;
  }

  void StepDone(int wi) {
    WorkerState& w = workers_[wi];
    w.busy = false;
    const bool prefill_role = w.spec->role == Role::kPrefill;
    for (const ScheduledChunk& chunk : w.plan.chunks) {
      Sequence* seq = chunk.seq;
      const int r = owner_.at(seq);
      RequestState& s = reqs_[r];
      seq->num_computed += chunk.num_tokens;
      const int64_t fresh = std::min<int64_t>(chunk.num_tokens, s.uncomputed_prefill);
      s.uncomputed_prefill -= fresh;
      w.queued_prefill -= fresh;
      if (prefill_role) {
        // The chunk's KV goes out over this worker's link behind what is already queued.
        w.link_free_s = std::max(w.link_free_s, now_) +
                        static_cast<double>(chunk.num_tokens * c_.kv_bytes_per_token) / c_.transfer.bytes_per_s;
        s.transfer_done_s = w.link_free_s + c_.transfer.latency_s;
      }
      if (!chunk.samples) continue;
      seq->tokens.push_back(0);
      if (prefill_role) {
        // The first token: the hand-off finishes, then the Prefill call returns it.
        s.held = w.scheduler->RemoveKeepingBlocks(seq);
        owner_.erase(seq);
        Push(std::max(s.transfer_done_s, now_), EventType::kTransferDone, r);
        continue;
      }
      Token(s, now_ + c_.hop_s);
      if (seq->num_generated() >= s.req.output_tokens) {
        w.scheduler->Remove(seq);
        owner_.erase(seq);
        s.seq.reset();
        s.finished = true;
      }
    }
    w.plan = SchedulerOutput();
    Kick(wi);
  }

  void TransferDone(int r) {
    RequestState& s = reqs_[r];
    WorkerState& p = workers_[s.prefill_worker];
    for (int32_t b : s.held) p.blocks->Release(b);
    s.held.clear();
    s.seq.reset();
    Kick(s.prefill_worker);  // blocks came back: a waiting prefill may fit now
    prefill_rate_ = router::placement::NextPrefillRate(prefill_rate_, s.prefill_work, now_ + c_.hop_s - s.prefill_sent_s);
    Token(s, now_ + c_.hop_s);
    if (s.req.output_tokens <= 1) {
      WorkerState& d = workers_[s.decode_worker];
      for (int32_t b : s.lease) d.blocks->Release(b);
      s.lease.clear();
      s.finished = true;
      Kick(s.decode_worker);
      return;
    }
    Push(now_ + 2 * c_.hop_s, EventType::kStartDecode, r);
  }

  const SimCluster& c_;
  std::vector<WorkerState> workers_;
  std::vector<std::string> worker_ids_;
  std::vector<RequestState> reqs_;
  std::unordered_map<const Sequence*, int> owner_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t next_order_ = 0;
  uint64_t next_arrival_ = 0;
  int num_prefill_ = 0;
  double prefill_rate_ = 0;  // tokens/s, measured as the router measures it (NextPrefillRate)
  double now_ = 0;
  int64_t num_events_ = 0;
};

}  // namespace

absl::StatusOr<SimResult> Simulate(const SimCluster& cluster, const std::vector<SimRequest>& requests) {
  Sim sim(cluster);
  return sim.Run(requests);
}

double Attainment(const SimResult& result, const bench::SloSpec& slo) {
  if (result.records.empty()) return 1.0;
  int64_t good = 0;
  for (const bench::RequestRecord& r : result.records) good += bench::MeetsSlo(r, slo) ? 1 : 0;
  return static_cast<double>(good) / static_cast<double>(result.records.size());
}

}  // namespace tandem::sim
