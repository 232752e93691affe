#include "controller/sizing/sim_sizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>

#include "bench/metrics.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "fmt/format.h"

namespace tandem::controller {
namespace {

constexpr double kQuantiles[5] = {0, 0.5, 0.9, 0.99, 1};

// The (prefill, decode) counts as the simulator's shape: no prefill worker is that many mixed
// workers (decode workers compute prompts when there is no prefill worker).
sim::ClusterShape ShapeOf(const InstanceCounts& c) {
  if (c.prefill == 0) return {0, 0, c.decode};
  return {c.prefill, c.decode, 0};
}

std::string Name(const InstanceCounts& c) { return StrCat(c.prefill, "p", c.decode, "d"); }

// `n` quantile points, one per stratum, in an order shuffled by `rng`.
std::vector<double> Strata(int n, std::mt19937_64& rng) {
  std::vector<double> u(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) u[static_cast<size_t>(i)] = (i + 0.5) / n;
  std::shuffle(u.begin(), u.end(), rng);
  return u;
}

}  // namespace

std::optional<LengthSampler> LengthSampler::FromMoments(double mean, double p50, double p90, double p99) {
  if (!HasData(mean) || !(mean > 0)) return std::nullopt;
  LengthSampler s;
  if (!HasData(p50) || !HasData(p90) || !HasData(p99) || !(p50 > 0)) {
    std::fill(std::begin(s.knots_), std::end(s.knots_), mean);
    return s;
  }
  p90 = std::max(p90, p50);
  p99 = std::max(p99, p90);
  s.knots_[0] = std::clamp(2 * p50 - p90, 1.0, p50);
  s.knots_[1] = p50;
  s.knots_[2] = p90;
  s.knots_[3] = p99;
  s.knots_[4] = p99 + (p99 - p90);
  s.scale_ = std::clamp(mean / s.Area(), 0.25, 4.0);
  return s;
}

int LengthSampler::At(double u) const {
  u = std::clamp(u, 0.0, 1.0);
  int i = 0;
  while (i < 3 && u > kQuantiles[i + 1]) ++i;
  const double t = (u - kQuantiles[i]) / (kQuantiles[i + 1] - kQuantiles[i]);
  const double v = (knots_[i] + t * (knots_[i + 1] - knots_[i])) * scale_;
  return static_cast<int>(std::max(1.0, std::min(std::round(v), 1e7)));
}

double LengthSampler::Area() const {
  double area = 0;
  for (int i = 0; i < 4; ++i) area += (kQuantiles[i + 1] - kQuantiles[i]) * (knots_[i] + knots_[i + 1]) / 2;
  return area;
}

double LengthSampler::mean() const {
  return Area() * scale_;
}

absl::Status ValidateSimSizerOptions(const SimSizerOptions& o) {
  if (o.profile.workers.empty()) return absl::InvalidArgumentError("the profile has no worker entry");
  if (o.profile.model.kv_bytes_per_token <= 0) return absl::InvalidArgumentError("the profile has no KV size per token");
  if (!(o.attainment > 0 && o.attainment <= 1)) {
    return absl::InvalidArgumentError(StrCat("attainment must be in (0, 1] (got ", o.attainment, ")"));
  }
  if (!(o.prefill_cost > 0) || !(o.decode_cost > 0)) {
    return absl::InvalidArgumentError("the prefill and decode worker costs must be > 0");
  }
  if (!(o.switch_margin >= 0 && o.switch_margin <= 1) || !(o.down_margin >= 0 && o.down_margin <= 1)) {
    return absl::InvalidArgumentError("the switch and scale-down margins must be in [0, 1]");
  }
  if (!(o.horizon_s > 0) || o.min_requests < 1 || o.max_requests < o.min_requests) {
    return absl::InvalidArgumentError("the simulated horizon must be > 0 s and 1 <= min requests <= max requests");
  }
  if (o.warmup_readings < 0) return absl::InvalidArgumentError("warm-up readings must be >= 0");
  if (o.plan.cpus < 0 || o.threads_per_worker < 0) return absl::InvalidArgumentError("CPUs and threads must be >= 0");
  const int64_t block_bytes = o.profile.model.kv_bytes_per_token * o.plan.block_size;
  if (o.plan.block_size < 1 || o.plan.kv_cache_bytes / std::max<int64_t>(block_bytes, 1) < 2) {
    return absl::InvalidArgumentError("the simulated KV cache holds fewer than two blocks");
  }
  return absl::OkStatus();
}

SimSizer::SimSizer(SimSizerOptions options) : options_(std::move(options)) { options_.plan.profile = &options_.profile; }

absl::StatusOr<std::unique_ptr<SimSizer>> SimSizer::Create(SimSizerOptions options) {
  TANDEM_RETURN_IF_ERROR(ValidateSimSizerOptions(options));
  return std::unique_ptr<SimSizer>(new SimSizer(std::move(options)));
}

std::vector<sim::SimRequest> SimSizer::Requests(const Signals& s, double rate) const {
  std::vector<sim::SimRequest> out;
  const auto prompt = LengthSampler::FromMoments(s.prompt_tokens_mean, s.prompt_tokens_p50, s.prompt_tokens_p90,
                                                 s.prompt_tokens_p99);
  const auto output = LengthSampler::FromMoments(s.output_tokens_mean, s.output_tokens_p50, s.output_tokens_p90,
                                                 s.output_tokens_p99);
  if (!prompt || !output || !(rate > 0)) return out;
  const double uncached = HasData(s.prompt_cached_fraction) ? 1 - std::clamp(s.prompt_cached_fraction, 0.0, 1.0) : 1;
  const int n = std::clamp(static_cast<int>(std::ceil(rate * options_.horizon_s)), options_.min_requests,
                           options_.max_requests);
  const int64_t block = options_.plan.block_size;
  const int64_t blocks = options_.plan.kv_cache_bytes / (options_.profile.model.kv_bytes_per_token * block);
  int64_t longest = blocks * block - block;  // what one decode worker's KV can hold
  if (options_.profile.model.context_length > 0) longest = std::min<int64_t>(longest, options_.profile.model.context_length);
  std::mt19937_64 rng(options_.seed);
  const std::vector<double> pu = Strata(n, rng), ou = Strata(n, rng);
  std::exponential_distribution<double> gap(rate);
  double t = 0;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    sim::SimRequest r;
    t += gap(rng);
    r.arrival_s = t;
    r.output_tokens = static_cast<int>(std::min<int64_t>(output->At(ou[static_cast<size_t>(i)]), longest / 2));
    const double computed = prompt->At(pu[static_cast<size_t>(i)]) * uncached;
    r.input_tokens = static_cast<int>(std::clamp<int64_t>(std::llround(computed), 1, longest - r.output_tokens));
    out.push_back(r);
  }
  return out;
}

SimSizer::Sharing SimSizer::SharingOf(const InstanceCounts& counts) const {
  Sharing out;
  const int workers = std::max(1, counts.prefill + counts.decode);
  if (options_.plan.cpus <= 0) return out;
  out.threads = options_.threads_per_worker > 0 ? options_.threads_per_worker : std::max(1, options_.plan.cpus / workers);
  out.slowdown = std::max(1.0, static_cast<double>(workers) * out.threads / options_.plan.cpus);
  return out;
}

double SimSizer::MeasuredScale(const Signals& s, const InstanceCounts& current) const {
  const Sharing sharing = SharingOf(current);
  const sim::WorkerProfile* wp =
      sharing.threads > 0 ? options_.profile.ForThreads(sharing.threads) : &options_.profile.workers.front();
  if (wp == nullptr) return kNoData;
  std::vector<double> ratios;
  // Decode: the mean decode iteration against the profile's for that batch at the mean context.
  const double batch = s.decode_tokens_per_busy_second * s.decode_iteration_mean_s;
  const double context = s.prompt_tokens_mean + s.output_tokens_mean / 2;
  if (HasData(batch) && batch >= 0.5 && HasData(context) && s.decode_iteration_mean_s > 0) {
    const auto b = static_cast<int64_t>(std::llround(batch));
    const auto pairs = static_cast<int64_t>(std::llround(batch * context));
    const double predicted = wp->cost.Seconds({.tokens = b, .sampled = b, .attention_pairs = pairs, .sequences = b,
                                               .kv_read_tokens = pairs});
    if (predicted > 0) ratios.push_back(s.decode_iteration_mean_s / (predicted * sharing.slowdown));
  }
  // Prefill: the prefill workers' tokens per busy second against the profile's for a chunk of
  // the mean prompt (at most the token budget).
  const double chunk = std::min<double>(options_.plan.token_budget, s.prompt_tokens_mean);
  if (HasData(s.prefill_tokens_per_busy_second) && s.prefill_tokens_per_busy_second > 0 && HasData(chunk) && chunk >= 1) {
    const auto n = static_cast<int64_t>(std::llround(chunk));
    const double predicted = wp->cost.Seconds({.tokens = n, .sampled = 1, .attention_pairs = n * (n + 1) / 2, .sequences = 1});
    if (predicted > 0) ratios.push_back(chunk / s.prefill_tokens_per_busy_second / (predicted * sharing.slowdown));
  }
  if (ratios.empty()) return kNoData;
  double log_sum = 0;
  for (double r : ratios) log_sum += std::log(r);
  return std::clamp(std::exp(log_sum / static_cast<double>(ratios.size())), 0.25, 4.0);
}

void SimSizer::Calibrate(const Signals& s, const InstanceCounts& current) {
  if (!options_.calibrate || s.time_s == calibrated_at_) return;
  calibrated_at_ = s.time_s;
  const double measured = MeasuredScale(s, current);
  if (!HasData(measured)) return;
  scale_ = HasData(scale_) ? std::exp(0.7 * std::log(scale_) + 0.3 * std::log(measured)) : measured;
  ++calibrations_;
}

absl::StatusOr<double> SimSizer::Attainment(const InstanceCounts& counts, const std::vector<sim::SimRequest>& requests,
                                            const PlannerConfig& config) const {
  const sim::ClusterShape shape = ShapeOf(counts);
  sim::PlanSettings plan = options_.plan;
  if (HasData(scale_)) plan.cost_scale *= scale_;
  if (plan.cpus > 0) {
    const Sharing sharing = SharingOf(counts);
    plan.cost_scale *= sharing.slowdown;
    plan.cpus = sharing.threads * shape.workers();  // BuildCluster gives each worker cpus ÷ workers threads
  }
  TANDEM_ASSIGN_OR_RETURN(sim::SimCluster cluster, sim::BuildCluster(shape, plan));
  cluster.record_every_token = false;
  TANDEM_ASSIGN_OR_RETURN(sim::SimResult result, sim::Simulate(cluster, requests));
  bench::SloSpec slo;
  slo.ttft_ms = config.ttft_slo_s * 1000;
  slo.tpot_ms = config.itl_slo_s * 1000;
  return sim::Attainment(result, slo);
}

std::vector<InstanceCounts> SimSizer::Candidates(const PlannerConfig& c) const {
  std::vector<InstanceCounts> out;
  for (int p = c.min_prefill; p <= c.max_prefill; ++p) {
    for (int d = std::max(c.min_decode, 1); d <= c.max_decode && p + d <= c.max_total_instances; ++d) {
      out.push_back({p, d});
    }
  }
  const auto key = [&](const InstanceCounts& x) { return std::tuple(Cost(x), x.prefill + x.decode, x.prefill); };
  std::stable_sort(out.begin(), out.end(), [&](const InstanceCounts& a, const InstanceCounts& b) { return key(a) < key(b); });
  return out;
}

std::optional<SizedCounts> SimSizer::Size(const Signals& s, double rate, const PlannerConfig& config,
                                          const InstanceCounts& current) {
  const std::vector<InstanceCounts> candidates = Candidates(config);
  if (candidates.empty()) return std::nullopt;
  Calibrate(s, current);
  if (options_.calibrate && calibrations_ < options_.warmup_readings) return std::nullopt;
  SizedCounts out;
  out.rate = rate;
  if (!(rate > 0)) {
    out.counts = candidates.front();
    out.attainment = 1;
    out.meets_target = true;
    out.detail = StrCat("no traffic: the cheapest shape ", Name(out.counts));
    return out;
  }
  const std::vector<sim::SimRequest> requests = Requests(s, rate);
  if (requests.empty()) return std::nullopt;
  std::vector<std::pair<InstanceCounts, double>> tried;  // in the order simulated
  const auto attainment = [&](const InstanceCounts& c) -> std::optional<double> {
    for (const auto& [t, a] : tried) {
      if (t == c) return a;
    }
    ++out.shapes_tried;
    absl::StatusOr<double> a = Attainment(c, requests, config);
    if (!a.ok()) {
      GetLogger("controller")->warn("sizing: simulating {} failed: {}", Name(c), a.status().message());
      return std::nullopt;
    }
    tried.emplace_back(c, *a);
    return *a;
  };
  const bool current_is_candidate = std::find(candidates.begin(), candidates.end(), current) != candidates.end();
  std::optional<std::pair<InstanceCounts, double>> best;
  for (const InstanceCounts& c : candidates) {
    const std::optional<double> a = attainment(c);
    if (!a) continue;
    if (!best || *a > best->second) best = {c, *a};
    // A shape cheaper than the running one must clear the target by down_margin: the
    // prediction moves with every reading of the lengths, a scale-down should not.
    const bool cheaper = current_is_candidate && Cost(c) < Cost(current);
    if (*a < std::min(1.0, options_.attainment + (cheaper ? options_.down_margin : 0))) continue;
    out.meets_target = true;
    best = {c, *a};
    // An equally cheap shape that also meets the target: keep what runs.
    if (current_is_candidate && !(current == c) && Cost(current) == Cost(c)) {
      if (const auto held = attainment(current); held && *held >= options_.attainment) best = {current, *held};
    }
    break;
  }
  if (!best) return std::nullopt;
  if (!out.meets_target && current_is_candidate && !(best->first == current)) {
    // Nothing meets the target: move only for a clear gain, not for the noise between the
    // shapes' shortfalls.
    const std::optional<double> held = attainment(current);
    if (held && best->second - *held < options_.switch_margin) best = {current, *held};
  }
  out.counts = best->first;
  out.attainment = best->second;
  std::string list;
  for (const auto& [c, a] : tried) list += fmt::format("{}{} {:.0f}%", list.empty() ? "" : ", ", Name(c), 100 * a);
  out.detail = fmt::format("simulated {:.3g} req/s ({} requests, profile costs x{}): {} -> {} ({} the {:.0f}% target)",
                           rate, requests.size(), HasData(scale_) ? fmt::format("{:.2f} as measured", scale_) : "1",
                           list, Name(out.counts), out.meets_target ? "meets" : "best below", 100 * options_.attainment);
  return out;
}

double SimSizer::Cost(const InstanceCounts& c) const {
  return c.prefill * options_.prefill_cost + c.decode * options_.decode_cost;
}

}  // namespace tandem::controller
