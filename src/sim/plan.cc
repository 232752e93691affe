#include "sim/plan.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "bench/goodput_search.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::sim {
namespace {

std::optional<int> ParseCount(std::string_view s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

std::string ClusterShape::Name() const {
  if (prefill == 0 && decode == 0) return mixed == 1 ? "colocated" : StrCat(mixed, "mixed");
  if (mixed == 0) return StrCat(prefill, "p", decode, "d");
  return StrCat(prefill, "p", decode, "d", mixed, "m");
}

absl::StatusOr<ClusterShape> ParseClusterShape(std::string_view text) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        StrCat("cluster shape '", text, "' is not colocated, NpMd (e.g. 1p1d) or Nmixed (e.g. 2mixed)"));
  };
  ClusterShape s;
  if (text == "colocated") {
    s.mixed = 1;
    return s;
  }
  if (text.ends_with("mixed")) {
    auto n = ParseCount(text.substr(0, text.size() - 5));
    if (!n || *n < 1) return bad();
    s.mixed = *n;
    return s;
  }
  const size_t p = text.find('p');
  if (p == std::string_view::npos || !text.ends_with("d")) return bad();
  auto n = ParseCount(text.substr(0, p));
  auto m = ParseCount(text.substr(p + 1, text.size() - p - 2));
  if (!n || !m || *n < 1 || *m < 1) return bad();
  s.prefill = *n;
  s.decode = *m;
  return s;
}

int ThreadsPerWorker(const ClusterShape& shape, const PlanSettings& settings) {
  if (settings.cpus <= 0) return 0;
  return std::max(1, settings.cpus / std::max(1, shape.workers()));
}

absl::StatusOr<SimCluster> BuildCluster(const ClusterShape& shape, const PlanSettings& settings) {
  if (settings.profile == nullptr) return absl::InvalidArgumentError("no profile");
  if (shape.workers() < 1) return absl::InvalidArgumentError("a cluster needs at least one worker");
  const Profile& p = *settings.profile;
  const WorkerProfile* wp = settings.cpus > 0 ? p.ForThreads(ThreadsPerWorker(shape, settings)) : &p.workers.front();
  if (wp == nullptr) return absl::InvalidArgumentError("the profile has no worker entry");
  const int64_t block_bytes = p.model.kv_bytes_per_token * settings.block_size;
  SimWorker w;
  w.cost = wp->cost;
  for (double* c : {&w.cost.fixed_s, &w.cost.per_token_s, &w.cost.per_sample_s, &w.cost.per_attention_s,
                    &w.cost.per_kv_read_s, &w.cost.min_iteration_s}) {
    *c *= settings.cost_scale;
  }
  w.block_size = settings.block_size;
  w.num_blocks = settings.kv_cache_bytes / block_bytes;
  w.scheduler.token_budget = settings.token_budget;
  w.scheduler.max_num_seqs = settings.max_num_seqs;
  if (w.num_blocks < 1) {
    return absl::InvalidArgumentError(StrCat("a KV cache of ", settings.kv_cache_bytes >> 20, " MiB holds no block of ",
                                             block_bytes, " bytes"));
  }
  SimCluster c;
  c.local_prefill_threshold = settings.local_prefill_threshold;
  c.local_prefill_ttft_slo_s = settings.local_prefill_ttft_slo_s;
  c.kv_bytes_per_token = p.model.kv_bytes_per_token;
  c.transfer = p.transfer;
  c.hop_s = settings.hop_s;
  c.queue_timeout_s = settings.queue_timeout_s;
  c.request_timeout_s = settings.request_timeout_s;
  for (int i = 0; i < shape.prefill; ++i) c.workers.push_back(w), c.workers.back().role = Role::kPrefill;
  for (int i = 0; i < shape.decode; ++i) c.workers.push_back(w), c.workers.back().role = Role::kDecode;
  for (int i = 0; i < shape.mixed; ++i) c.workers.push_back(w), c.workers.back().role = Role::kMixed;
  return c;
}

std::vector<SimRequest> RequestsFromArrivals(const std::vector<bench::Arrival>& arrivals) {
  std::vector<SimRequest> out;
  out.reserve(arrivals.size());
  for (const bench::Arrival& a : arrivals) {
    SimRequest r;
    r.arrival_s = a.time_s;
    r.input_tokens = std::max(1, a.shape.input_tokens + (a.shape.prefix_group >= 0 ? a.shape.prefix_tokens : 0));
    r.output_tokens = std::max(1, a.shape.output_tokens);
    r.phase = a.phase;
    out.push_back(r);
  }
  return out;
}

absl::StatusOr<std::vector<SimRequest>> RequestsFromBenchResult(const nlohmann::json& result) {
  if (!result.is_object() || !result.contains("requests") || !result["requests"].is_array()) {
    return absl::InvalidArgumentError(
        "not a `tandem bench serve` result with per-request records (\"requests\"; run it without --no-save-requests)");
  }
  std::vector<SimRequest> out;
  try {
    for (const auto& r : result["requests"]) {
      SimRequest s;
      s.arrival_s = r.at("scheduled_s").get<double>();
      s.input_tokens = r.at("input_tokens").get<int>();
      s.output_tokens = r.at("output_tokens_requested").get<int>();
      s.phase = r.value("phase", 0);
      if (s.input_tokens < 1 || s.output_tokens < 1) {
        return absl::InvalidArgumentError("a request record has no input or output tokens");
      }
      out.push_back(s);
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(StrCat("malformed request record: ", e.what()));
  }
  if (out.empty()) return absl::InvalidArgumentError("the result file has no request records");
  std::stable_sort(out.begin(), out.end(), [](const SimRequest& a, const SimRequest& b) { return a.arrival_s < b.arrival_s; });
  return out;
}

std::vector<SimRequest> RequestsAtRate(const GoodputSearchSettings& settings, double rate) {
  bench::TrafficSpec t = settings.traffic;
  t.mode = bench::TrafficSpec::Mode::kRate;
  t.process.rate = rate;
  if (settings.min_duration_s > 0) {
    t.num_prompts = std::max<int>(t.num_prompts, static_cast<int>(std::ceil(rate * settings.min_duration_s)));
  }
  return RequestsFromArrivals(bench::DrawTraffic(t, settings.seed));
}

absl::StatusOr<ShapeGoodput> FindGoodput(const ClusterShape& shape, const PlanSettings& plan,
                                         const GoodputSearchSettings& search) {
  TANDEM_ASSIGN_OR_RETURN(SimCluster cluster, BuildCluster(shape, plan));
  cluster.record_every_token = false;  // attainment needs TTFT and TPOT only
  ShapeGoodput out;
  out.shape = shape;
  out.threads = ThreadsPerWorker(shape, plan);
  auto attainment = [&](double rate, int /*repeat*/) -> absl::StatusOr<double> {
    ++out.simulations;
    TANDEM_ASSIGN_OR_RETURN(SimResult r, Simulate(cluster, RequestsAtRate(search, rate)));
    return Attainment(r, search.slo);
  };
  bench::GoodputSearchOptions o;
  o.attainment = search.attainment;
  o.rate_min = search.rate_min;
  o.iterations = search.iterations;
  o.rate_max = search.rate_max;
  if (o.rate_max <= 0) {
    // Bracket: double from rate_min until a rate fails (at most 2^20 x rate_min).
    double lo = search.rate_min;
    TANDEM_ASSIGN_OR_RETURN(double a, attainment(lo, 0));
    if (a < search.attainment) return out;  // not even the lowest rate
    double hi = lo * 2;
    for (int i = 0; i < 20; ++i, hi *= 2) {
      TANDEM_ASSIGN_OR_RETURN(a, attainment(hi, 0));
      if (a < search.attainment) break;
      lo = hi;
    }
    o.rate_min = lo;
    o.rate_max = hi;
  }
  TANDEM_ASSIGN_OR_RETURN(bench::GoodputSearchResult r, bench::FindMaxRate(o, attainment));
  out.goodput = r.max_rate;
  out.hit_rate_max = r.hit_rate_max;
  return out;
}

std::vector<ClusterShape> CandidateShapes(int max_workers, bool cpu_budget) {
  std::vector<ClusterShape> out;
  ClusterShape colocated;
  colocated.mixed = cpu_budget ? 1 : max_workers;
  out.push_back(colocated);
  if (max_workers < 2) return out;
  const int step = std::max(1, (max_workers - 1 + 15) / 16);
  for (int p = 1; p < max_workers; p += step) out.push_back({p, max_workers - p, 0});
  if ((max_workers - 1 - 1) % step != 0) out.push_back({max_workers - 1, 1, 0});
  return out;
}

std::vector<ClusterShape> RefineSplits(int max_workers, const ClusterShape& best, const std::vector<ClusterShape>& tried) {
  std::set<int> seen;
  for (const ClusterShape& s : tried) {
    if (s.mixed == 0) seen.insert(s.prefill);
  }
  std::vector<ClusterShape> out;
  if (best.mixed != 0) return out;
  const int step = std::max(1, (max_workers - 1 + 15) / 16);
  for (int p = std::max(1, best.prefill - step + 1); p <= std::min(max_workers - 1, best.prefill + step - 1); ++p) {
    if (!seen.contains(p)) out.push_back({p, max_workers - p, 0});
  }
  return out;
}

}  // namespace tandem::sim
