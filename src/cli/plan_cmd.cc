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
  std::optional<bench::Summary> at;  // the fixed traffic's or --request-rate's summary
  std::vector<sim::SimWorkerStats> workers;  // of that run
  double duration_s = 0;
  int64_t events = 0;
};

}  // namespace

int PlanCommand(const std::vector<std::string>& args) {
  PlanFlags p;
  FlagSet flags("tandem plan --profile FILE [flags]", std::string(kPlanDescription) + "\n" + bench::WorkloadPresetHelp());
  p.Register(flags);
  if (auto exit_code = ParseArgs(flags, JoinGoodputWords(args), "plan")) return *exit_code;
  if (!flags.positional().empty()) {
    return Fail("plan", StrCat("unexpected argument '", flags.positional().front(), "' (see --help)"), 2);
  }
  if (p.profile.empty()) return Fail("plan", "--profile is required (write one with `tandem profile`)", 2);
  bench::SloSpec slo;
  if (!p.goodput.empty()) {
    auto parsed = bench::ParseSlo(p.goodput);
    if (!parsed.ok()) return Fail("plan", StrCat("--goodput: ", parsed.status().message()), 2);
    slo = *parsed;
  }
  if (p.ttft_slo_ms > 0) slo.ttft_ms = p.ttft_slo_ms;
  if (p.tpot_slo_ms > 0) slo.tpot_ms = p.tpot_slo_ms;
  if (p.ttft_slo_ms < 0 || p.tpot_slo_ms < 0) return Fail("plan", "--ttft-slo and --tpot-slo must be > 0", 2);
  if (slo.empty()) return Fail("plan", "give the SLOs: --ttft-slo MS --tpot-slo MS (or --goodput \"ttft:MS tpot:MS\")", 2);
  if (!(p.attainment > 0 && p.attainment <= 1)) return Fail("plan", "--attainment must be in (0, 1]", 2);
  if (p.max_workers < 1 || p.cpus < 0 || p.max_num_seqs < 1 || p.block_size < 1 || p.kv_cache_mb < 1 ||
      p.local_prefill_threshold < 0 || !(p.hop_ms >= 0) || !(p.queue_timeout_s > 0) || p.search_iters < 0 ||
      !(p.rate_min > 0) || !(p.cost_scale > 0) || p.rate_max < 0 || p.request_rate < 0 || p.min_duration_s < 0) {
    return Fail("plan", "a flag is out of range: counts and sizes >= 1, times and rates >= 0 (--rate-min > 0)", 2);
  }
  auto profile = sim::ReadProfile(p.profile);
  if (!profile.ok()) return Fail("plan", std::string(profile.status().message()), 2);

  sim::PlanSettings settings;
  settings.profile = &*profile;
  settings.cpus = p.cpus;
  settings.block_size = p.block_size;
  settings.kv_cache_bytes = p.kv_cache_mb << 20;
  settings.max_num_seqs = p.max_num_seqs;
  settings.local_prefill_threshold = p.local_prefill_threshold;
  settings.hop_s = p.hop_ms / 1e3;
  settings.cost_scale = p.cost_scale;
  settings.queue_timeout_s = p.queue_timeout_s;
  settings.request_timeout_s = p.traffic.request_timeout_s;
  if (p.token_budget == "auto") {
    if (!profile->token_budget) {
      return Fail("plan", "--token-budget auto needs a profile written with --itl-slo (it has no picked budget)", 2);
    }
    settings.token_budget = *profile->token_budget;
  } else {
    int v = 0;
    if (!absl::SimpleAtoi(p.token_budget, &v) || v < 1) return Fail("plan", "--token-budget must be a count >= 1 or auto", 2);
    settings.token_budget = v;
  }

  // The traffic: fixed (schedule, trace, a bench result) or searched over rates.
  p.traffic.seed = static_cast<uint64_t>(p.seed);
  p.traffic.request_rate = p.request_rate > 0 ? p.request_rate : 1.0;
  p.traffic.slo = slo;
  auto traffic = bench::PrepareTraffic(p.traffic);
  if (!traffic.ok()) return Fail("plan", std::string(traffic.status().message()), 2);
  std::optional<std::vector<sim::SimRequest>> fixed;
  Json measured;
  if (!p.requests_from.empty()) {
    std::ifstream in(p.requests_from);
    if (!in) return Fail("plan", StrCat("cannot read '", p.requests_from, "'"), 2);
    measured = Json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (measured.is_discarded()) return Fail("plan", StrCat("'", p.requests_from, "' is not JSON"), 2);
    auto reqs = sim::RequestsFromBenchResult(measured);
    if (!reqs.ok()) return Fail("plan", StrCat(p.requests_from, ": ", reqs.status().message()), 2);
    fixed = *std::move(reqs);
  } else if (traffic->mode != bench::TrafficSpec::Mode::kRate) {
    fixed = sim::RequestsFromArrivals(bench::DrawTraffic(*traffic, p.traffic.seed));
  } else if (!p.search) {
    if (p.request_rate <= 0) return Fail("plan", "--no-search needs --request-rate (or fixed traffic)", 2);
  }
  const bool searching = !fixed && p.search;

  std::vector<sim::ClusterShape> shapes;
  if (!p.configs.empty()) {
    for (absl::string_view name : absl::StrSplit(p.configs, ',')) {
      auto s = sim::ParseClusterShape(std::string(name));
      if (!s.ok()) return Fail("plan", std::string(s.status().message()), 2);
      shapes.push_back(*s);
    }
  } else {
    shapes = sim::CandidateShapes(p.max_workers, p.cpus > 0);
  }

  sim::GoodputSearchSettings search;
  search.traffic = *traffic;
  search.seed = p.traffic.seed;
  search.slo = slo;
  search.attainment = p.attainment;
  search.rate_min = p.rate_min;
  search.rate_max = p.rate_max;
  search.iterations = p.search_iters;
  search.min_duration_s = p.min_duration_s;

  const auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(); };
  std::vector<Row> rows;
  auto evaluate = [&](const sim::ClusterShape& shape) -> absl::Status {
    Row row;
    row.shape = shape;
    row.threads = sim::ThreadsPerWorker(shape, settings);
    if (searching) {
      TANDEM_ASSIGN_OR_RETURN(row.goodput, sim::FindGoodput(shape, settings, search));
    }
    std::optional<std::vector<sim::SimRequest>> at;
    if (fixed) {
      at = *fixed;
    } else if (p.request_rate > 0) {
      at = sim::RequestsAtRate(search, p.request_rate);
    }
    if (at) {
      TANDEM_ASSIGN_OR_RETURN(sim::SimCluster cluster, sim::BuildCluster(shape, settings));
      TANDEM_ASSIGN_OR_RETURN(sim::SimResult r, sim::Simulate(cluster, *at));
      row.at = bench::Summarize(r.records, r.duration_s, slo);
      row.events = r.events;
      row.workers = r.workers;
      row.duration_s = r.duration_s;
    }
    if (p.progress) {
      std::fprintf(stderr, "[plan +%5.1fs] %-10s %s\n", elapsed(), shape.Name().c_str(),
                   row.goodput ? StrCat("goodput ", Rate(row.goodput->goodput), " req/s (", row.goodput->simulations,
                                        " simulations)").c_str()
                               : row.at ? StrCat("attainment ", Ms(100 * row.at->attainment), "%").c_str() : "");
    }
    rows.push_back(std::move(row));
    return absl::OkStatus();
  };
  for (const sim::ClusterShape& s : shapes) {
    if (absl::Status st = evaluate(s); !st.ok()) return Fail("plan", StrCat(s.Name(), ": ", st.message()));
  }
  auto better = [&](const Row& a, const Row& b) {  // a beats b
    if (searching) return a.goodput->goodput.value_or(0) > b.goodput->goodput.value_or(0);
    return a.at->attainment > b.at->attainment;
  };
  if (p.configs.empty() && searching && p.max_workers > 16) {
    const Row* best = &rows.front();
    for (const Row& r : rows) best = better(r, *best) ? &r : best;
    std::vector<sim::ClusterShape> tried;
    for (const Row& r : rows) tried.push_back(r.shape);
    for (const sim::ClusterShape& s : sim::RefineSplits(p.max_workers, best->shape, tried)) {
      if (absl::Status st = evaluate(s); !st.ok()) return Fail("plan", StrCat(s.Name(), ": ", st.message()));
    }
  }

  // The table.
  const std::string where = p.cpus > 0 ? StrCat(p.cpus, " CPU threads") : StrCat(p.max_workers, " devices");
  std::printf("tandem plan: profile %s (%s), %s, SLO %s at %.0f%%\n", p.profile.c_str(), profile->machine.c_str(),
              where.c_str(), slo.Describe().c_str(), 100 * p.attainment);
  if (fixed) {
    std::printf("traffic: %zu requests (%s)\n", fixed->size(),
                !p.requests_from.empty() ? p.requests_from.c_str() : !p.traffic.schedule.empty() ? "schedule" : "trace");
  } else {
    std::printf("traffic: workload %s, Poisson%s, %d+ requests per probe\n", p.traffic.workload.c_str(),
                p.traffic.burstiness != 1 ? StrCat(" (burstiness ", p.traffic.burstiness, ")").c_str() : "",
                p.traffic.num_prompts);
  }
  std::printf("token budget %d, KV cache %lld MiB per worker, block %d%s\n\n", settings.token_budget,
              static_cast<long long>(p.kv_cache_mb), settings.block_size,
              p.cost_scale != 1 ? StrCat(", iteration times x ", p.cost_scale).c_str() : "");
  const bool show_at = rows.front().at.has_value();
  std::printf("%-11s %7s %7s", "config", "workers", "threads");
  if (searching) std::printf(" %14s %11s", "goodput req/s", "per worker");
  if (show_at) std::printf(" %10s %10s %10s %10s %10s", "attain", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99");
  std::printf("\n");
  const Row* best = &rows.front();
  for (const Row& r : rows) {
    best = better(r, *best) ? &r : best;
    std::printf("%-11s %7d %7s", r.shape.Name().c_str(), r.shape.workers(), r.threads > 0 ? std::to_string(r.threads).c_str() : "-");
    if (searching) {
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
  if (!p.requests_from.empty() && measured.contains("summary")) {
    const Json& s = measured["summary"];
    auto dist = [&](const char* k, const char* f) { return s.contains(k) ? s[k].value(f, 0.0) : 0.0; };
    std::printf("%-11s %7s %7s %9s%% %10s %10s %10s %10s\n", "measured", "", "",
                s.contains("goodput") ? Ms(100 * s["goodput"].value("attainment", 0.0)).c_str() : "-",
                Ms(dist("ttft", "median_ms")).c_str(), Ms(dist("ttft", "p99_ms")).c_str(),
                Ms(dist("tpot", "median_ms")).c_str(), Ms(dist("tpot", "p99_ms")).c_str());
  }
  std::printf("\n");
  if (searching) {
    const Row* colocated = nullptr;
    for (const Row& r : rows) {
      if (r.shape.prefill == 0 && r.shape.decode == 0) colocated = &r;
    }
    if (!best->goodput->goodput) {
      std::printf("No shape meets the SLOs for %.0f%% of requests even at %g req/s.\n", 100 * p.attainment, p.rate_min);
    } else {
      std::printf("Recommended: %s (%d workers), goodput %s req/s, %s req/s per worker", best->shape.Name().c_str(),
                  best->shape.workers(), Rate(best->goodput->goodput).c_str(),
                  Rate(*best->goodput->goodput / best->shape.workers()).c_str());
      if (colocated != nullptr && colocated != best && colocated->goodput->goodput) {
        std::printf("; %.2fx colocated (%s req/s)", *best->goodput->goodput / *colocated->goodput->goodput,
                    Rate(colocated->goodput->goodput).c_str());
      }
      std::printf(".\n");
    }
  } else {
    std::printf("Best at this traffic: %s, attainment %s%%.\n", best->shape.Name().c_str(), Ms(100 * best->at->attainment).c_str());
  }

  if (!p.result_file.empty()) {
    Json out;
    out["kind"] = "tandem-plan";
    out["schema_version"] = 1;
    out["profile"] = p.profile;
    out["settings"] = {{"cpus", p.cpus}, {"cost_scale", p.cost_scale}, {"max_workers", p.max_workers}, {"token_budget", settings.token_budget},
                       {"kv_cache_mb", p.kv_cache_mb}, {"block_size", p.block_size}, {"max_num_seqs", p.max_num_seqs},
                       {"local_prefill_threshold", p.local_prefill_threshold}, {"hop_ms", p.hop_ms},
                       {"slo", slo.Describe()}, {"attainment", p.attainment}, {"seed", p.seed},
                       {"workload", p.traffic.workload}, {"num_prompts", p.traffic.num_prompts},
                       {"request_rate", p.request_rate}, {"requests_from", p.requests_from},
                       {"schedule", p.traffic.schedule}, {"trace", p.traffic.trace_file}};
    out["rows"] = Json::array();
    for (const Row& r : rows) {
      Json row = {{"config", r.shape.Name()}, {"prefill", r.shape.prefill}, {"decode", r.shape.decode},
                  {"mixed", r.shape.mixed}, {"workers", r.shape.workers()}, {"threads", r.threads}};
      if (r.goodput) {
        row["goodput"] = r.goodput->goodput ? Json(*r.goodput->goodput) : Json(nullptr);
        row["goodput_per_worker"] = r.goodput->goodput ? Json(*r.goodput->goodput / r.shape.workers()) : Json(nullptr);
        row["hit_rate_max"] = r.goodput->hit_rate_max;
        row["simulations"] = r.goodput->simulations;
      }
      if (r.at) {
        row["summary"] = bench::SummaryJson(*r.at);
        row["simulated_events"] = r.events;
        Json workers = Json::array();
        const std::vector<std::string> roles = [&] {
          std::vector<std::string> v(r.shape.prefill, "prefill");
          v.resize(r.shape.prefill + r.shape.decode, "decode");
          v.resize(r.shape.workers(), "mixed");
          return v;
        }();
        for (size_t i = 0; i < r.workers.size(); ++i) {
          const sim::SimWorkerStats& w = r.workers[i];
          workers.push_back({{"role", roles.at(i)}, {"busy", r.duration_s > 0 ? w.busy_s / r.duration_s : 0},
                             {"iterations", w.iterations}, {"prefill_tokens", w.prefill_tokens},
                             {"decode_tokens", w.decode_tokens}, {"max_running", w.max_running},
                             {"preemptions", w.preemptions}});
        }
        row["workers"] = std::move(workers);
      }
      out["rows"].push_back(std::move(row));
    }
    out["recommended"] = best->shape.Name();
    if (!p.requests_from.empty() && measured.contains("summary")) out["measured_summary"] = measured["summary"];
    std::ofstream f(p.result_file);
    f << out.dump(1) << "\n";
    if (!f) return Fail("plan", StrCat("cannot write '", p.result_file, "'"));
  }
  return 0;
}

}  // namespace tandem::cli
