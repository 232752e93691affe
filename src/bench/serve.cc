#include "bench/serve.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/load_runner.h"
#include "bench/preflight.h"
#include "bench/report.h"
#include "bench/text_util.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

// Everything one run produced.
struct RunOutcome {
  PlanStats stats;
  std::vector<PlannedRequest> plan;
  LoadRunResult result;
  Summary summary;
};

// The progress line on stderr: rewritten in place on a terminal, a line every 10 s otherwise.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::FILE* err) : err_(err), tty_(isatty(fileno(err)) != 0) {}

  void operator()(const LoadProgress& p) {
    if (!tty_ && !p.done && p.elapsed_s < next_line_s_) return;
    next_line_s_ = p.elapsed_s + 10;
    std::string line =
        fmt::format("sent {}/{}  finished {}  failed {}  in flight {}  elapsed {:.1f} s  rate {:.2f} req/s",
                    p.sent, p.total, p.finished, p.failed, p.in_flight, p.elapsed_s, p.send_rate);
    if (p.interrupted && !p.done) line += "  (interrupted: waiting for the requests in flight; again to quit)";
    if (tty_) {
      std::fprintf(err_, "\r\033[K%s%s", line.c_str(), p.done ? "\n" : "");
    } else {
      std::fprintf(err_, "%s\n", line.c_str());
    }
    std::fflush(err_);
  }

 private:
  std::FILE* err_;
  bool tty_;
  double next_line_s_ = 0;
};

std::string DescribeTraffic(const TrafficSpec& t, const ServeOptions& o) {
  switch (t.mode) {
    case TrafficSpec::Mode::kRate: {
      std::string arrivals = std::isinf(t.process.rate) ? "all at once"
                             : t.process.burstiness == 1.0
                                 ? StrCat("Poisson at ", FormatRate(t.process.rate), " req/s")
                                 : fmt::format("gamma at {} req/s, burstiness {:g}", FormatRate(t.process.rate),
                                               t.process.burstiness);
      return StrCat(t.num_prompts, " requests, ", arrivals, "; ", t.workload.Describe());
    }
    case TrafficSpec::Mode::kSchedule: {
      std::string out = fmt::format("schedule of {} phases, {:g} s, burstiness {:g}:", t.schedule.size(),
                                    ScheduleDuration(t.schedule), t.process.burstiness);
      for (size_t i = 0; i < t.schedule.size(); ++i) {
        out += fmt::format("\n  phase {}: {:g} s at {} req/s; {}", i, t.schedule[i].duration_s,
                           FormatRate(t.schedule[i].rate), t.phase_workloads[i].Describe());
      }
      return out;
    }
    case TrafficSpec::Mode::kTrace:
      return fmt::format("trace {} ({} requests over {:.1f} s, time scale {:g})", o.trace_file,
                         t.trace.records.size(), t.trace.records.back().arrival_s, o.trace_time_scale);
  }
  return "";
}

Json ConfigJson(const ServeOptions& o, const TrafficSpec& t, const ServeContext& c) {
  Json j = {{"base_url", o.base_url},       {"endpoint", o.endpoint},
            {"num_prompts", o.num_prompts}, {"request_rate", std::isinf(o.request_rate) ? Json("inf") : Json(o.request_rate)},
            {"burstiness", o.burstiness},   {"max_concurrency", o.max_concurrency},
            {"seed", o.seed},               {"workload", o.workload},
            {"input_len", o.lengths.input_len}, {"output_len", o.lengths.output_len},
            {"schedule", o.schedule},       {"trace", o.trace_file},
            {"trace_time_scale", o.trace_time_scale}, {"ignore_eos", o.ignore_eos},
            {"temperature", o.temperature}, {"request_timeout_s", o.request_timeout_s},
            {"tokenizer", c.tokenizer_path}, {"traffic", DescribeTraffic(t, o)}};
  if (o.slo) j["goodput"] = o.slo->Describe();
  return j;
}

// Per-phase summaries of a scheduled run (each over its phase's duration).
Json PhaseSummaries(const TrafficSpec& t, const RunOutcome& run, std::FILE* out, const std::optional<SloSpec>& slo) {
  Json phases = Json::array();
  for (size_t p = 0; p < t.schedule.size(); ++p) {
    std::vector<RequestRecord> mine;
    for (const RequestRecord& r : run.result.records) {
      if (r.phase == static_cast<int>(p)) mine.push_back(r);
    }
    const Summary s = Summarize(mine, t.schedule[p].duration_s, slo);
    Json j = SummaryJson(s);
    j["phase"] = p;
    j["rate"] = t.schedule[p].rate;
    j["duration_s"] = t.schedule[p].duration_s;
    j["workload"] = t.phase_workloads[p].Describe();
    phases.push_back(std::move(j));
    std::fprintf(out, "phase %zu: sent %d ok %d  TTFT p50/p99 %.0f/%.0f ms  TPOT p50/p99 %.1f/%.1f ms%s\n", p, s.sent,
                 s.completed, s.ttft.median, s.ttft.p99, s.tpot.median, s.tpot.p99,
                 slo ? fmt::format("  attainment {:.1f}%", 100 * s.attainment).c_str() : "");
  }
  return phases;
}

absl::Status WriteJson(const std::string& path, const Json& j) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return absl::UnavailableError(StrCat("cannot write the result file ", path));
  f << j.dump(2) << "\n";
  f.close();
  if (!f) return absl::UnavailableError(StrCat("cannot write the result file ", path));
  return absl::OkStatus();
}

class Benchmark {
 public:
  Benchmark(const ServeOptions& o, const ServeContext& c, BaseUrl url, ServerInfo info,
            std::unique_ptr<PromptBuilder> builder)
      : o_(o), c_(c), url_(std::move(url)), info_(std::move(info)), builder_(std::move(builder)) {
    settings_.model = info_.model;
    settings_.chat = o.chat();
    settings_.context_length = info_.max_model_len > 0 ? info_.max_model_len : c.tokenizer_context_length;
    settings_.ignore_eos = o.ignore_eos;
    settings_.temperature = o.temperature;
    load_.path = o.endpoint;
    if (!o.api_key.empty()) load_.headers.emplace_back("Authorization", StrCat("Bearer ", o.api_key));
    load_.max_concurrency = o.max_concurrency;
    load_.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.request_timeout_s * 1e3));
    load_.exact_output_length = o.ignore_eos;
    load_.stop_on_interrupt = true;
    if (o.progress) load_.on_progress = ProgressPrinter(c.err);
  }

  absl::StatusOr<RunOutcome> Run(const TrafficSpec& traffic, uint64_t seed) {
    RunOutcome run;
    TANDEM_ASSIGN_OR_RETURN(run.plan, BuildRequests(DrawTraffic(traffic, seed), *builder_, settings_, seed, &run.stats));
    if (run.stats.clipped > 0) {
      std::fprintf(c_.err, "note: %d requests had their lengths clipped to the context of %d tokens (or raised to "
                   "the shortest possible prompt)\n", run.stats.clipped, settings_.context_length);
    }
    if (load_started_ == absl::InfinitePast()) load_started_ = absl::Now();
    TANDEM_ASSIGN_OR_RETURN(run.result, RunLoad(url_, run.plan, load_));
    run.summary = Summarize(run.result.records, run.result.duration_s, o_.slo);
    return run;
  }

  Json Header(const TrafficSpec& traffic) const {
    Json j = {{"tool", "tandem bench serve"},
              {"schema_version", 1},
              // When the first request of the (first) run was about to go, and when the file was written.
              {"started_at", absl::FormatTime(absl::RFC3339_full, load_started_, absl::UTCTimeZone())},
              {"finished_at", absl::FormatTime(absl::RFC3339_full, absl::Now(), absl::UTCTimeZone())},
              {"config", ConfigJson(o_, traffic, c_)},
              {"server", {{"base_url", url_.ToString()}, {"model", info_.model},
                          {"max_model_len", settings_.context_length}}}};
    return j;
  }

  void Announce(const TrafficSpec& traffic) const {
    std::fprintf(c_.err, "tandem bench serve: %s %s, model '%s'%s\n%s\n", url_.ToString().c_str(),
                 o_.endpoint.c_str(), info_.model.c_str(),
                 settings_.context_length > 0 ? StrCat(", context ", settings_.context_length).c_str() : "",
                 DescribeTraffic(traffic, o_).c_str());
  }

  absl::Status Single(const TrafficSpec& traffic) {
    Announce(traffic);
    TANDEM_ASSIGN_OR_RETURN(RunOutcome run, Run(traffic, o_.seed));
    std::fputs(FormatSummaryTable(run.summary).c_str(), c_.out);
    Json j = Header(traffic);
    j["plan"] = {{"requests", run.plan.size()}, {"clipped", run.stats.clipped}};
    j["interrupted"] = run.result.interrupted;
    j["summary"] = SummaryJson(run.summary);
    if (traffic.mode == TrafficSpec::Mode::kSchedule) j["phases"] = PhaseSummaries(traffic, run, c_.out, o_.slo);
    if (o_.save_requests) {
      Json records = Json::array();
      for (const RequestRecord& r : run.result.records) records.push_back(RecordJson(r, o_.slo));
      j["requests"] = std::move(records);
    }
    std::fflush(c_.out);
    if (!o_.result_file.empty()) TANDEM_RETURN_IF_ERROR(WriteJson(o_.result_file, j));
    if (run.result.interrupted) {
      return absl::CancelledError(StrCat("interrupted after sending ", run.summary.sent, " of ", run.plan.size(),
                                         " requests (the report covers those)"));
    }
    if (run.summary.completed == 0) {
      return absl::AbortedError(StrCat("all ", run.summary.sent, " requests failed (",
                                       run.result.records.front().error, ")"));
    }
    return absl::OkStatus();
  }

  absl::Status Search(TrafficSpec traffic) {
    traffic.process.rate = o_.search.rate_max;
    Announce(traffic);
    std::fprintf(c_.err, "goodput search: rates in [%s, %s] req/s, %d bisection steps, %d run(s) per rate, target %.0f%%\n",
                 FormatRate(o_.search.rate_min).c_str(), FormatRate(o_.search.rate_max).c_str(),
                 o_.search.iterations, o_.search.repeats, 100 * o_.search.attainment);
    Json runs = Json::array();
    // Each probed rate draws fresh prompts (seed + 1000 k + repeat for the k-th rate probed): with
    // the same prompts every probe after the first would be served from the prefix cache the
    // previous one filled, and look far faster than new traffic would be.
    int rates_probed = 0;
    double last_rate = -1;
    auto probe = [&](double rate, int repeat) -> absl::StatusOr<double> {
      if (rate != last_rate) ++rates_probed, last_rate = rate;
      traffic.process.rate = rate;
      const uint64_t seed = o_.seed + 1000 * static_cast<uint64_t>(rates_probed - 1) + static_cast<uint64_t>(repeat);
      TANDEM_ASSIGN_OR_RETURN(RunOutcome run, Run(traffic, seed));
      if (run.result.interrupted) return absl::CancelledError("interrupted: the search stopped");
      Json s = SummaryJson(run.summary);
      runs.push_back({{"rate", rate}, {"repeat", repeat}, {"seed", seed}, {"summary", std::move(s)}});
      std::fprintf(c_.out, "  rate %s req/s, run %d: attainment %.1f%% (%d/%d good), TTFT p50 %.0f ms, TPOT p50 %.1f ms\n",
                   FormatRate(rate).c_str(), repeat + 1, 100 * run.summary.attainment, run.summary.good,
                   run.summary.sent, run.summary.ttft.median, run.summary.tpot.median);
      std::fflush(c_.out);
      return run.summary.attainment;
    };
    auto on_probe = [&](const GoodputProbe& p) {
      std::fputs(FormatProbe(p, o_.search.attainment).c_str(), c_.out);
      std::fflush(c_.out);
    };
    absl::StatusOr<GoodputSearchResult> result = FindMaxRate(o_.search, probe, on_probe);
    Json j = Header(traffic);
    if (result.ok()) {
      std::fputs(FormatSearchResult(o_.search, *result).c_str(), c_.out);
      j["search"] = SearchJson(o_.search, *result);
    } else {
      // A search that stopped part way (Ctrl-C, a probe that failed) still leaves its finished runs.
      j["search"] = {{"error", result.status().ToString()}};
    }
    j["search"]["runs"] = std::move(runs);
    if (!o_.result_file.empty()) TANDEM_RETURN_IF_ERROR(WriteJson(o_.result_file, j));
    return result.status();
  }

 private:
  const ServeOptions& o_;
  const ServeContext& c_;
  BaseUrl url_;
  ServerInfo info_;
  std::unique_ptr<PromptBuilder> builder_;
  RequestSettings settings_;
  LoadRunOptions load_;
  absl::Time load_started_ = absl::InfinitePast();
};

absl::StatusOr<std::vector<SchedulePhase>> LoadSchedule(const std::string& spec) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(spec, ec)) {
    TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(spec));
    return ParseSchedule(text);
  }
  return ParseSchedule(spec);
}

absl::Status ValidateOptions(const ServeOptions& o) {
  if (!o.schedule.empty() && !o.trace_file.empty()) {
    return absl::InvalidArgumentError("--schedule and --trace cannot be combined");
  }
  if (o.find_max_rate && (!o.schedule.empty() || !o.trace_file.empty())) {
    return absl::InvalidArgumentError("--find-max-rate probes request rates: it cannot be combined with --schedule or --trace");
  }
  if (o.find_max_rate && !o.slo) return absl::InvalidArgumentError("--find-max-rate needs --goodput (the SLOs)");
  if (o.find_max_rate) TANDEM_RETURN_IF_ERROR(ValidateGoodputSearch(o.search));
  if (o.num_prompts < 1) return absl::InvalidArgumentError("--num-prompts must be >= 1");
  if (o.max_concurrency < 0) return absl::InvalidArgumentError("--max-concurrency must be >= 0 (0: no limit)");
  if (!(o.request_timeout_s > 0)) return absl::InvalidArgumentError("--request-timeout must be > 0");
  if (o.endpoint.empty() || o.endpoint.front() != '/') {
    return absl::InvalidArgumentError(StrCat("--endpoint '", o.endpoint, "' must be a path such as /v1/completions"));
  }
  if (o.lengths.input_len < 1 || o.lengths.output_len < 1) {
    return absl::InvalidArgumentError("--input-len and --output-len must be >= 1");
  }
  return ParseBaseUrl(o.base_url).status();
}

}  // namespace

bool ServeOptions::chat() const { return endpoint.ends_with("/chat/completions"); }

absl::StatusOr<TrafficSpec> PrepareTraffic(const ServeOptions& o) {
  TANDEM_RETURN_IF_ERROR(ValidateOptions(o));
  TrafficSpec t;
  t.process = {o.request_rate, o.burstiness};
  TANDEM_RETURN_IF_ERROR(ValidateArrivalProcess(t.process));
  t.num_prompts = o.num_prompts;
  TANDEM_ASSIGN_OR_RETURN(t.workload, ParseWorkload(o.workload, o.lengths));
  if (!o.schedule.empty()) {
    t.mode = TrafficSpec::Mode::kSchedule;
    TANDEM_ASSIGN_OR_RETURN(t.schedule, LoadSchedule(o.schedule));
    for (size_t i = 0; i < t.schedule.size(); ++i) {
      if (t.schedule[i].workload.empty()) {
        t.phase_workloads.push_back(t.workload);
        continue;
      }
      auto w = ParseWorkload(t.schedule[i].workload, o.lengths);
      if (!w.ok()) return absl::InvalidArgumentError(StrCat("schedule phase ", i + 1, ": ", w.status().message()));
      t.phase_workloads.push_back(*std::move(w));
    }
  } else if (!o.trace_file.empty()) {
    t.mode = TrafficSpec::Mode::kTrace;
    TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(o.trace_file));
    auto trace = ParseTrace(text, o.trace_time_scale);
    if (!trace.ok()) return absl::InvalidArgumentError(StrCat(o.trace_file, ": ", trace.status().message()));
    t.trace = *std::move(trace);
  }
  return t;
}

absl::Status RunServeBenchmark(const ServeOptions& o, const TrafficSpec& traffic, const ServeContext& c) {
  TANDEM_ASSIGN_OR_RETURN(BaseUrl url, ParseBaseUrl(o.base_url));
  if (url.path_prefix.ends_with("/v1")) {
    url.path_prefix.resize(url.path_prefix.size() - 3);
    std::fprintf(c.err, "note: --base-url is the server's root; dropped the trailing /v1\n");
  }
  std::vector<std::pair<std::string, std::string>> headers;
  if (!o.api_key.empty()) headers.emplace_back("Authorization", StrCat("Bearer ", o.api_key));
  TANDEM_ASSIGN_OR_RETURN(ServerInfo info, Preflight(url, headers, o.model));
  if (!info.note.empty()) std::fprintf(c.err, "note: %s\n", info.note.c_str());
  if (o.chat() && c.chat_template == nullptr) {
    return absl::InvalidArgumentError("a chat endpoint needs the model's chat template");
  }
  TANDEM_ASSIGN_OR_RETURN(auto builder, PromptBuilder::Create(c.tokenizer, o.chat() ? c.chat_template : nullptr));
  Benchmark bench(o, c, url, std::move(info), std::move(builder));
  return o.find_max_rate ? bench.Search(traffic) : bench.Single(traffic);
}

}  // namespace tandem::bench
