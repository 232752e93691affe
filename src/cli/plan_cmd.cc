// `tandem plan`: simulates clusters of prefill, decode and mixed workers from a profile
// (`tandem profile`) under a workload and recommends the prefill:decode split (src/sim/).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/metrics.h"
#include "bench/report.h"
#include "bench/serve.h"
#include "bench/workload.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "sim/plan.h"

namespace tandem::cli {
namespace {

using Json = nlohmann::json;

constexpr const char* kPlanDescription =
    R"(Simulates tandem clusters - the router, prefill, decode and mixed workers, the engine's own
chunked-prefill scheduler and KV accounting, the router's placement rules, KV hand-offs - with
the iteration costs a profile measured (`tandem profile`), under a workload, and recommends the
prefill:decode split for your SLOs. It runs in seconds and sizes clusters far larger than the
machine it runs on.

What it tries: with --max-workers N, colocated serving (on a CPU budget, --cpus C: one mixed
worker with all C threads; on devices: N mixed workers) and every split P prefill + (N - P)
decode workers (for N > 16 about 16 of them, then the neighbours of the best). --configs names
the shapes instead: colocated, NpMd (1p1d, 2p3d), Nmixed. On a CPU budget every worker of a
shape gets C / workers threads (at least 1), as bench/compare.py starts them; the profile entry
for that thread count is used.

For each shape it finds the goodput (DistServe): the highest request rate at which at least
--attainment of the requests meet --ttft-slo and --tpot-slo, by simulation (doubling from
--rate-min until a rate fails, then --search-iters bisections); each probe simulates
--num-prompts requests of --workload (at least --min-duration seconds of traffic). With
--request-rate it also reports attainment and latency percentiles at that rate.

Fixed traffic instead of a search: --schedule or --trace (as `tandem bench serve`), or
--requests-from RESULT.json, the requests a `tandem bench serve` run sent (arrival times and
lengths); the measured summary in that file is printed beside the prediction. --no-search
with --request-rate simulates that rate only.

The cost of the recommended shape is its goodput per worker. Not simulated: the adaptive
controller (shapes are fixed during a run), prefix caching, heartbeat staleness, HTTP and
tokenization costs, contention between workers beyond what the profile measured.
Exit status: 0 ok, 1 a simulation failed, 2 usage error.
)";

struct PlanFlags {
  std::string profile;
  bench::ServeOptions traffic;
  int64_t seed = 0;
  std::string requests_from;
  std::string goodput;
  double ttft_slo_ms = 0;
  double tpot_slo_ms = 0;
  double attainment = 0.9;
  int max_workers = 2;
  int cpus = 0;
  std::string configs;
  std::string token_budget = "512";
  int max_num_seqs = 64;
  int block_size = 16;
  int64_t kv_cache_mb = 256;
  int local_prefill_threshold = 0;
  double local_prefill_ttft_slo_ms = 0;
  double hop_ms = 0.5;
  double cost_scale = 1.0;
  double queue_timeout_s = 60;
  double request_rate = 0;
  bool search = true;
  double rate_min = 0.01;
  double rate_max = 0;
  int search_iters = 8;
  double min_duration_s = 60;
  std::string result_file;
  bool progress = true;

  void Register(FlagSet& f) {
    bench::ServeOptions& o = traffic;
    o.num_prompts = 1000;
    f.String("profile", &profile, "the cost model: a file `tandem profile` wrote (required)");
    f.String("workload", &o.workload, "length distribution: fixed, uniform, chat, summarize, shared-prefix[:key=value,...] (as bench serve)");
    f.Int("input-len", &o.lengths.input_len, "input tokens for the fixed workload");
    f.Int("output-len", &o.lengths.output_len, "output tokens for the fixed workload");
    f.Int("num-prompts", &o.num_prompts, "requests per simulated run (at least --min-duration seconds of them)");
    f.Float("request-rate", &request_rate, "also report attainment and latencies at this rate, req/s (0: only the goodput)");
    f.Float("burstiness", &o.burstiness, "gamma shape of the interarrival times: 1 = Poisson, < 1 burstier");
    f.Int("seed", &seed, "seed of arrivals and lengths (the same as bench serve's for the same traffic)");
    f.String("schedule", &o.schedule, "simulate this rate schedule instead of searching (bench serve's format)");
    f.String("trace", &o.trace_file, "simulate this trace instead of searching (bench serve's formats)");
    f.Float("trace-time-scale", &o.trace_time_scale, "multiply trace times by this");
    f.String("requests-from", &requests_from, "simulate the requests of this `bench serve` result file and compare");
    f.String("goodput", &goodput, "SLOs as bench serve takes them, e.g. \"ttft:2000 tpot:100\"");
    f.Float("ttft-slo", &ttft_slo_ms, "time-to-first-token SLO, ms");
    f.Float("tpot-slo", &tpot_slo_ms, "time-per-output-token SLO, ms");
    f.Float("attainment", &attainment, "share of requests that must meet the SLOs");
    f.Int("max-workers", &max_workers, "workers to split (prefill + decode), or mixed workers when colocated on devices");
    f.Int("cpus", &cpus, "a CPU budget: threads split evenly between a shape's workers (0: one device per worker)");
    f.String("configs", &configs, "comma-separated shapes to simulate instead of the candidates (colocated, 1p1d, 2mixed)");
    f.String("token-budget", &token_budget, "tokens per iteration of every worker, or auto: the profile's ITL-picked budget");
    f.Int("max-num-seqs", &max_num_seqs, "sequences per iteration");
    f.Int("block-size", &block_size, "tokens per KV block");
    f.Int("kv-cache-mb", &kv_cache_mb, "KV cache per worker, MiB");
    f.Int("local-prefill-threshold", &local_prefill_threshold, "prompts shorter than this prefill on the decode worker");
    f.Float("local-prefill-ttft-slo", &local_prefill_ttft_slo_ms,
            "the router's conditional disaggregation by cost, ms (see `tandem router --help`; 0: off)");
    f.Float("hop-ms", &hop_ms, "latency of one router <-> worker message, ms");
    f.Float("cost-scale", &cost_scale,
            "multiply every iteration time by this: a calibration for workers that share a machine with the "
            "router, the load generator and each other (measured TPOT / predicted TPOT of a low-rate run)");
    f.Float("queue-timeout", &queue_timeout_s, "seconds a request may wait for KV room before HTTP 429");
    f.Float("request-timeout", &traffic.request_timeout_s, "seconds after which a request counts as timed out");
    f.Bool("search", &search, "search each shape's goodput (--no-search: only --request-rate)");
    f.Float("rate-min", &rate_min, "lowest rate the search probes, req/s");
    f.Float("rate-max", &rate_max, "highest rate the search probes (0: double from --rate-min until a rate fails)");
    f.Int("search-iters", &search_iters, "bisection steps");
    f.Float("min-duration", &min_duration_s, "each probe simulates at least this many seconds of arrivals");
    f.String("result-file", &result_file, "write the table, settings and predicted summaries as JSON here");
    f.Bool("progress", &progress, "show each shape's progress on stderr");
  }
};

std::string Ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v >= 100 ? "%.0f" : "%.1f", v);
  return buf;
}

std::string Rate(const std::optional<double>& v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", *v);
  return buf;
}

struct Row {
  sim::ClusterShape shape;
  int threads = 0;
  std::optional<sim::ShapeGoodput> goodput;
  std::optional<bench::Summary> at;          // the fixed traffic's or --request-rate's summary
  std::vector<sim::SimWorkerStats> workers;  // of that run
  double duration_s = 0;
  int64_t events = 0;
};

// Everything the flags resolve to; errors are usage errors (exit 2).
struct PlanInputs {
  bench::SloSpec slo;
  sim::Profile profile;
  sim::PlanSettings settings;
  sim::GoodputSearchSettings search;
  std::optional<std::vector<sim::SimRequest>> fixed;  // fixed traffic, or none: search / --request-rate
  Json measured;                                      // the --requests-from file
  std::vector<sim::ClusterShape> shapes;
  bool searching = false;
};

absl::StatusOr<bench::SloSpec> ResolveSlo(const PlanFlags& p) {
  bench::SloSpec slo;
  if (!p.goodput.empty()) {
    auto parsed = bench::ParseSlo(p.goodput);
    if (!parsed.ok()) return absl::InvalidArgumentError(StrCat("--goodput: ", parsed.status().message()));
    slo = *parsed;
  }
  if (p.ttft_slo_ms < 0 || p.tpot_slo_ms < 0) return absl::InvalidArgumentError("--ttft-slo and --tpot-slo must be > 0");
  if (p.ttft_slo_ms > 0) slo.ttft_ms = p.ttft_slo_ms;
  if (p.tpot_slo_ms > 0) slo.tpot_ms = p.tpot_slo_ms;
  if (slo.empty()) {
    return absl::InvalidArgumentError("give the SLOs: --ttft-slo MS --tpot-slo MS (or --goodput \"ttft:MS tpot:MS\")");
  }
  return slo;
}

absl::Status CheckRanges(const PlanFlags& p) {
  if (p.profile.empty()) return absl::InvalidArgumentError("--profile is required (write one with `tandem profile`)");
  if (!(p.attainment > 0 && p.attainment <= 1)) return absl::InvalidArgumentError("--attainment must be in (0, 1]");
  if (p.max_workers < 1 || p.cpus < 0 || p.max_num_seqs < 1 || p.block_size < 1 || p.kv_cache_mb < 1 ||
      p.local_prefill_threshold < 0 || !(p.local_prefill_ttft_slo_ms >= 0) || !(p.hop_ms >= 0) || !(p.queue_timeout_s > 0) || p.search_iters < 0 ||
      !(p.rate_min > 0) || !(p.cost_scale > 0) || p.rate_max < 0 || p.request_rate < 0 || p.min_duration_s < 0) {
    return absl::InvalidArgumentError("a flag is out of range: counts and sizes >= 1, times and rates >= 0 (--rate-min > 0)");
  }
  return absl::OkStatus();
}

absl::Status ResolveSettings(const PlanFlags& p, PlanInputs* in) {
  sim::PlanSettings& s = in->settings;
  s.profile = &in->profile;
  s.cpus = p.cpus;
  s.block_size = p.block_size;
  s.kv_cache_bytes = p.kv_cache_mb << 20;
  s.max_num_seqs = p.max_num_seqs;
  s.local_prefill_threshold = p.local_prefill_threshold;
  s.local_prefill_ttft_slo_s = p.local_prefill_ttft_slo_ms / 1e3;
  s.hop_s = p.hop_ms / 1e3;
  s.cost_scale = p.cost_scale;
  s.queue_timeout_s = p.queue_timeout_s;
  s.request_timeout_s = p.traffic.request_timeout_s;
  if (p.token_budget == "auto") {
    if (!in->profile.token_budget) {
      return absl::InvalidArgumentError("--token-budget auto needs a profile written with --itl-slo (it has no picked budget)");
    }
    s.token_budget = *in->profile.token_budget;
  } else if (!absl::SimpleAtoi(p.token_budget, &s.token_budget) || s.token_budget < 1) {
    return absl::InvalidArgumentError("--token-budget must be a count >= 1 or auto");
  }
  return absl::OkStatus();
}

// The traffic: fixed (schedule, trace, a bench result) or searched over rates.
absl::Status ResolveTraffic(PlanFlags& p, PlanInputs* in) {
  p.traffic.seed = static_cast<uint64_t>(p.seed);
  p.traffic.request_rate = p.request_rate > 0 ? p.request_rate : 1.0;
  p.traffic.slo = in->slo;
  TANDEM_ASSIGN_OR_RETURN(bench::TrafficSpec traffic, bench::PrepareTraffic(p.traffic));
  if (!p.requests_from.empty()) {
    std::ifstream f(p.requests_from);
    if (!f) return absl::InvalidArgumentError(StrCat("cannot read '", p.requests_from, "'"));
    in->measured = Json::parse(f, nullptr, /*allow_exceptions=*/false);
    if (in->measured.is_discarded()) return absl::InvalidArgumentError(StrCat("'", p.requests_from, "' is not JSON"));
    auto reqs = sim::RequestsFromBenchResult(in->measured);
    if (!reqs.ok()) return absl::InvalidArgumentError(StrCat(p.requests_from, ": ", reqs.status().message()));
    in->fixed = *std::move(reqs);
  } else if (traffic.mode != bench::TrafficSpec::Mode::kRate) {
    in->fixed = sim::RequestsFromArrivals(bench::DrawTraffic(traffic, p.traffic.seed));
  } else if (!p.search && p.request_rate <= 0) {
    return absl::InvalidArgumentError("--no-search needs --request-rate (or fixed traffic)");
  }
  in->searching = !in->fixed && p.search;
  sim::GoodputSearchSettings& g = in->search;
  g.traffic = traffic;
  g.seed = p.traffic.seed;
  g.slo = in->slo;
  g.attainment = p.attainment;
  g.rate_min = p.rate_min;
  g.rate_max = p.rate_max;
  g.iterations = p.search_iters;
  g.min_duration_s = p.min_duration_s;
  return absl::OkStatus();
}

absl::Status ResolveShapes(const PlanFlags& p, PlanInputs* in) {
  if (p.configs.empty()) {
    in->shapes = sim::CandidateShapes(p.max_workers, p.cpus > 0);
    return absl::OkStatus();
  }
  for (absl::string_view name : absl::StrSplit(p.configs, ',')) {
    TANDEM_ASSIGN_OR_RETURN(sim::ClusterShape s, sim::ParseClusterShape(std::string(name)));
    in->shapes.push_back(s);
  }
  return absl::OkStatus();
}

absl::StatusOr<Row> Evaluate(const sim::ClusterShape& shape, const PlanFlags& p, const PlanInputs& in) {
  Row row;
  row.shape = shape;
  row.threads = sim::ThreadsPerWorker(shape, in.settings);
  if (in.searching) {
    TANDEM_ASSIGN_OR_RETURN(row.goodput, sim::FindGoodput(shape, in.settings, in.search));
  }
  std::optional<std::vector<sim::SimRequest>> at;
  if (in.fixed) {
    at = *in.fixed;
  } else if (p.request_rate > 0) {
    at = sim::RequestsAtRate(in.search, p.request_rate);
  }
  if (at) {
    TANDEM_ASSIGN_OR_RETURN(sim::SimCluster cluster, sim::BuildCluster(shape, in.settings));
    TANDEM_ASSIGN_OR_RETURN(sim::SimResult r, sim::Simulate(cluster, *at));
    row.at = bench::Summarize(r.records, r.duration_s, in.slo);
    row.events = r.events;
    row.workers = r.workers;
    row.duration_s = r.duration_s;
  }
  return row;
}

bool Beats(const Row& a, const Row& b, bool searching) {
  if (searching) return a.goodput->goodput.value_or(0) > b.goodput->goodput.value_or(0);
  return a.at->attainment > b.at->attainment;
}

const Row& Best(const std::vector<Row>& rows, bool searching) {
  const Row* best = &rows.front();
  for (const Row& r : rows) best = Beats(r, *best, searching) ? &r : best;
  return *best;
}

absl::StatusOr<std::vector<Row>> EvaluateAll(const PlanFlags& p, const PlanInputs& in) {
  const auto started = std::chrono::steady_clock::now();
  std::vector<Row> rows;
  auto one = [&](const sim::ClusterShape& s) -> absl::Status {
    auto row = Evaluate(s, p, in);
    if (!row.ok()) return absl::Status(row.status().code(), StrCat(s.Name(), ": ", row.status().message()));
    if (p.progress) {
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::string what;
      if (row->goodput) what = StrCat("goodput ", Rate(row->goodput->goodput), " req/s (", row->goodput->simulations, " simulations)");
      else if (row->at) what = StrCat("attainment ", Ms(100 * row->at->attainment), "%");
      std::fprintf(stderr, "[plan +%5.1fs] %-10s %s\n", t, s.Name().c_str(), what.c_str());
    }
    rows.push_back(*std::move(row));
    return absl::OkStatus();
  };
  for (const sim::ClusterShape& s : in.shapes) TANDEM_RETURN_IF_ERROR(one(s));
  if (p.configs.empty() && in.searching && p.max_workers > 16) {
    std::vector<sim::ClusterShape> tried;
    for (const Row& r : rows) tried.push_back(r.shape);
    const sim::ClusterShape best = Best(rows, true).shape;
    for (const sim::ClusterShape& s : sim::RefineSplits(p.max_workers, best, tried)) TANDEM_RETURN_IF_ERROR(one(s));
  }
  return rows;
}

void PrintHeader(const PlanFlags& p, const PlanInputs& in) {
  const std::string where = p.cpus > 0 ? StrCat(p.cpus, " CPU threads") : StrCat(p.max_workers, " devices");
  std::printf("tandem plan: profile %s (%s), %s, SLO %s at %.0f%%\n", p.profile.c_str(), in.profile.machine.c_str(),
              where.c_str(), in.slo.Describe().c_str(), 100 * p.attainment);
  if (in.fixed) {
    std::printf("traffic: %zu requests (%s)\n", in.fixed->size(),
                !p.requests_from.empty() ? p.requests_from.c_str() : !p.traffic.schedule.empty() ? "schedule" : "trace");
  } else {
    std::printf("traffic: workload %s, Poisson%s, %d+ requests per probe\n", p.traffic.workload.c_str(),
                p.traffic.burstiness != 1 ? StrCat(" (burstiness ", p.traffic.burstiness, ")").c_str() : "",
                p.traffic.num_prompts);
  }
  std::printf("token budget %d, KV cache %lld MiB per worker, block %d%s\n\n", in.settings.token_budget,
              static_cast<long long>(p.kv_cache_mb), in.settings.block_size,
              p.cost_scale != 1 ? StrCat(", iteration times x ", p.cost_scale).c_str() : "");
}

void PrintTable(const std::vector<Row>& rows, const PlanInputs& in) {
  const bool show_at = rows.front().at.has_value();
  std::printf("%-11s %7s %7s", "config", "workers", "threads");
  if (in.searching) std::printf(" %14s %11s", "goodput req/s", "per worker");
  if (show_at) std::printf(" %10s %10s %10s %10s %10s", "attain", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99");
  std::printf("\n");
  for (const Row& r : rows) {
    std::printf("%-11s %7d %7s", r.shape.Name().c_str(), r.shape.workers(), r.threads > 0 ? std::to_string(r.threads).c_str() : "-");
    if (in.searching) {
      std::optional<double> per;
      if (r.goodput->goodput) per = *r.goodput->goodput / r.shape.workers();
      std::printf(" %13s%s %11s", Rate(r.goodput->goodput).c_str(), r.goodput->hit_rate_max ? "+" : " ", Rate(per).c_str());
    }
    if (show_at) {
      std::printf(" %9s%% %10s %10s %10s %10s", Ms(100 * r.at->attainment).c_str(), Ms(r.at->ttft.median).c_str(),
                  Ms(r.at->ttft.p99).c_str(), Ms(r.at->tpot.median).c_str(), Ms(r.at->tpot.p99).c_str());
    }
    std::printf("\n");
  }
  if (in.measured.contains("summary")) {
    const Json& s = in.measured["summary"];
    auto dist = [&](const char* k, const char* f) { return s.contains(k) ? s[k].value(f, 0.0) : 0.0; };
    std::printf("%-11s %7s %7s %9s%% %10s %10s %10s %10s\n", "measured", "", "",
                s.contains("goodput") ? Ms(100 * s["goodput"].value("attainment", 0.0)).c_str() : "-",
                Ms(dist("ttft", "median_ms")).c_str(), Ms(dist("ttft", "p99_ms")).c_str(),
                Ms(dist("tpot", "median_ms")).c_str(), Ms(dist("tpot", "p99_ms")).c_str());
  }
  std::printf("\n");
}

void PrintRecommendation(const std::vector<Row>& rows, const PlanFlags& p, const PlanInputs& in) {
  const Row& best = Best(rows, in.searching);
  if (!in.searching) {
    std::printf("Best at this traffic: %s, attainment %s%%.\n", best.shape.Name().c_str(), Ms(100 * best.at->attainment).c_str());
    return;
  }
  if (!best.goodput->goodput) {
    std::printf("No shape meets the SLOs for %.0f%% of requests even at %g req/s.\n", 100 * p.attainment, p.rate_min);
    return;
  }
  const Row* colocated = nullptr;
  for (const Row& r : rows) {
    if (r.shape.prefill == 0 && r.shape.decode == 0) colocated = &r;
  }
  std::printf("Recommended: %s (%d workers), goodput %s req/s, %s req/s per worker", best.shape.Name().c_str(),
              best.shape.workers(), Rate(best.goodput->goodput).c_str(),
              Rate(*best.goodput->goodput / best.shape.workers()).c_str());
  if (colocated != nullptr && colocated != &best && colocated->goodput->goodput) {
    std::printf("; %.2fx colocated (%s req/s)", *best.goodput->goodput / *colocated->goodput->goodput,
                Rate(colocated->goodput->goodput).c_str());
  }
  std::printf(".\n");
}

Json RowJson(const Row& r) {
  Json row = {{"config", r.shape.Name()}, {"prefill", r.shape.prefill}, {"decode", r.shape.decode},
              {"mixed", r.shape.mixed}, {"workers", r.shape.workers()}, {"threads", r.threads}};
  if (r.goodput) {
    row["goodput"] = r.goodput->goodput ? Json(*r.goodput->goodput) : Json(nullptr);
    row["goodput_per_worker"] = r.goodput->goodput ? Json(*r.goodput->goodput / r.shape.workers()) : Json(nullptr);
    row["hit_rate_max"] = r.goodput->hit_rate_max;
    row["simulations"] = r.goodput->simulations;
  }
  if (!r.at) return row;
  row["summary"] = bench::SummaryJson(*r.at);
  row["simulated_events"] = r.events;
  Json workers = Json::array();
  for (size_t i = 0; i < r.workers.size(); ++i) {
    const sim::SimWorkerStats& w = r.workers[i];
    const int k = static_cast<int>(i);
    const char* role = k < r.shape.prefill ? "prefill" : k < r.shape.prefill + r.shape.decode ? "decode" : "mixed";
    workers.push_back({{"role", role}, {"busy", r.duration_s > 0 ? w.busy_s / r.duration_s : 0},
                       {"iterations", w.iterations}, {"prefill_tokens", w.prefill_tokens},
                       {"decode_tokens", w.decode_tokens}, {"max_running", w.max_running},
                       {"preemptions", w.preemptions}, {"local_by_cost", w.local_by_cost}});
  }
  row["workers"] = std::move(workers);
  return row;
}

absl::Status WriteResult(const std::vector<Row>& rows, const PlanFlags& p, const PlanInputs& in) {
  Json out;
  out["kind"] = "tandem-plan";
  out["schema_version"] = 1;
  out["profile"] = p.profile;
  out["settings"] = {{"cpus", p.cpus}, {"cost_scale", p.cost_scale}, {"max_workers", p.max_workers},
                     {"token_budget", in.settings.token_budget}, {"kv_cache_mb", p.kv_cache_mb},
                     {"block_size", p.block_size}, {"max_num_seqs", p.max_num_seqs},
                     {"local_prefill_threshold", p.local_prefill_threshold},
                     {"local_prefill_ttft_slo_ms", p.local_prefill_ttft_slo_ms}, {"hop_ms", p.hop_ms},
                     {"slo", in.slo.Describe()}, {"attainment", p.attainment}, {"seed", p.seed},
                     {"workload", p.traffic.workload}, {"num_prompts", p.traffic.num_prompts},
                     {"request_rate", p.request_rate}, {"requests_from", p.requests_from},
                     {"schedule", p.traffic.schedule}, {"trace", p.traffic.trace_file}};
  out["rows"] = Json::array();
  for (const Row& r : rows) out["rows"].push_back(RowJson(r));
  out["recommended"] = Best(rows, in.searching).shape.Name();
  if (in.measured.contains("summary")) out["measured_summary"] = in.measured["summary"];
  std::ofstream f(p.result_file);
  f << out.dump(1) << "\n";
  if (!f) return absl::UnavailableError(StrCat("cannot write '", p.result_file, "'"));
  return absl::OkStatus();
}

}  // namespace

int PlanCommand(const std::vector<std::string>& args) {
  PlanFlags p;
  FlagSet flags("tandem plan --profile FILE [flags]", std::string(kPlanDescription) + "\n" + bench::WorkloadPresetHelp());
  p.Register(flags);
  if (auto exit_code = ParseArgs(flags, JoinGoodputWords(args), "plan")) return *exit_code;
  if (!flags.positional().empty()) {
    return Fail("plan", StrCat("unexpected argument '", flags.positional().front(), "' (see --help)"), 2);
  }
  PlanInputs in;
  if (absl::Status s = CheckRanges(p); !s.ok()) return Fail("plan", std::string(s.message()), 2);
  auto slo = ResolveSlo(p);
  if (!slo.ok()) return Fail("plan", std::string(slo.status().message()), 2);
  in.slo = *slo;
  auto profile = sim::ReadProfile(p.profile);
  if (!profile.ok()) return Fail("plan", std::string(profile.status().message()), 2);
  in.profile = *std::move(profile);
  for (absl::Status s : {ResolveSettings(p, &in), ResolveTraffic(p, &in), ResolveShapes(p, &in)}) {
    if (!s.ok()) return Fail("plan", std::string(s.message()), 2);
  }
  auto rows = EvaluateAll(p, in);
  if (!rows.ok()) return Fail("plan", std::string(rows.status().message()));
  PrintHeader(p, in);
  PrintTable(*rows, in);
  PrintRecommendation(*rows, p, in);
  if (!p.result_file.empty()) {
    if (absl::Status s = WriteResult(*rows, p, in); !s.ok()) return Fail("plan", std::string(s.message()));
  }
  return 0;
}

}  // namespace tandem::cli
