#include "sim/cost_model.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::sim {
namespace {

constexpr int kTerms = 5;  // fixed, per token, per sample, per attention pair, per KV token read

std::array<double, kTerms> Features(const IterationShape& s) {
  return {1.0, static_cast<double>(s.tokens), static_cast<double>(s.sampled),
          static_cast<double>(s.attention_pairs), static_cast<double>(s.kv_read_tokens)};
}

// Solves A x = b for the terms in `active` (Gaussian elimination with partial pivoting);
// false if the system is singular.
bool Solve(std::array<std::array<double, kTerms>, kTerms> a, std::array<double, kTerms> b,
           const std::vector<int>& active, std::array<double, kTerms>* x) {
  const int n = static_cast<int>(active.size());
  std::vector<std::vector<double>> m(n, std::vector<double>(n + 1));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) m[i][j] = a[active[i]][active[j]];
    m[i][n] = b[active[i]];
  }
  for (int c = 0; c < n; ++c) {
    int pivot = c;
    for (int r = c + 1; r < n; ++r) {
      if (std::abs(m[r][c]) > std::abs(m[pivot][c])) pivot = r;
    }
    if (std::abs(m[pivot][c]) < 1e-300) return false;
    std::swap(m[c], m[pivot]);
    for (int r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = m[r][c] / m[c][c];
      for (int k = c; k <= n; ++k) m[r][k] -= f * m[c][k];
    }
  }
  x->fill(0);
  for (int i = 0; i < n; ++i) (*x)[active[i]] = m[i][n] / m[i][i];
  return true;
}

nlohmann::json ShapeJson(const IterationShape& s) {
  return {{"tokens", s.tokens}, {"sampled", s.sampled}, {"attention_pairs", s.attention_pairs},
          {"kv_read_tokens", s.kv_read_tokens}, {"sequences", s.sequences}};
}

}  // namespace

double IterationCost::Seconds(const IterationShape& s) const {
  const double t = fixed_s + per_token_s * static_cast<double>(s.tokens) +
                   per_sample_s * static_cast<double>(s.sampled) +
                   per_attention_s * static_cast<double>(s.attention_pairs) +
                   per_kv_read_s * static_cast<double>(s.kv_read_tokens);
  return std::max(t, min_iteration_s);
}

absl::StatusOr<IterationCost> FitIterationCost(const std::vector<IterationSample>& samples) {
  if (samples.size() < kTerms) {
    return absl::InvalidArgumentError(StrCat("fitting the iteration cost needs at least ", kTerms,
                                             " measured iterations, got ", samples.size()));
  }
  // Weighted normal equations: weight 1/t^2 on the squared error = relative error.
  std::array<std::array<double, kTerms>, kTerms> ata{};
  std::array<double, kTerms> atb{};
  std::array<double, kTerms> scale{};
  for (const IterationSample& s : samples) {
    if (!(s.seconds > 0) || !std::isfinite(s.seconds)) {
      return absl::InvalidArgumentError("a measured iteration time is not a positive number");
    }
    const auto f = Features(s.shape);
    for (int i = 0; i < kTerms; ++i) scale[i] = std::max(scale[i], std::abs(f[i]));
  }
  for (double& s : scale) s = s > 0 ? s : 1;  // columns scaled to [0, 1]: better conditioned
  for (const IterationSample& s : samples) {
    auto f = Features(s.shape);
    for (int i = 0; i < kTerms; ++i) f[i] /= scale[i];
    const double w = 1.0 / (s.seconds * s.seconds);
    for (int i = 0; i < kTerms; ++i) {
      for (int j = 0; j < kTerms; ++j) ata[i][j] += w * f[i] * f[j];
      atb[i] += w * f[i] * s.seconds;
    }
  }
  std::vector<int> active = {0, 1, 2, 3, 4};
  std::array<double, kTerms> x{};
  while (!active.empty()) {
    // A term no sample exercises (all zero) cannot be fitted: leave it out.
    std::erase_if(active, [&](int i) { return ata[i][i] == 0; });
    if (!Solve(ata, atb, active, &x)) {
      return absl::InvalidArgumentError("the measured iterations do not separate the cost terms (singular fit)");
    }
    auto negative = std::min_element(active.begin(), active.end(), [&](int a, int b) { return x[a] < x[b]; });
    if (x[*negative] >= 0) break;
    active.erase(negative);
  }
  IterationCost cost;
  cost.fixed_s = x[0] / scale[0];
  cost.per_token_s = x[1] / scale[1];
  cost.per_sample_s = x[2] / scale[2];
  cost.per_attention_s = x[3] / scale[3];
  cost.per_kv_read_s = x[4] / scale[4];
  return cost;
}

FitQuality Evaluate(const IterationCost& cost, const std::vector<IterationSample>& samples) {
  FitQuality q;
  if (samples.empty()) return q;
  for (const IterationSample& s : samples) {
    const double e = std::abs(cost.Seconds(s.shape) - s.seconds) / s.seconds;
    q.mean_abs_rel_error += e;
    q.max_abs_rel_error = std::max(q.max_abs_rel_error, e);
  }
  q.mean_abs_rel_error /= static_cast<double>(samples.size());
  return q;
}

const WorkerProfile* Profile::ForThreads(int threads) const {
  const WorkerProfile* below = nullptr;
  const WorkerProfile* above = nullptr;
  for (const WorkerProfile& w : workers) {
    if (w.threads == threads) return &w;
    if (w.threads < threads && (below == nullptr || w.threads > below->threads)) below = &w;
    if (w.threads > threads && (above == nullptr || w.threads < above->threads)) above = &w;
  }
  return below != nullptr ? below : above;
}

nlohmann::json ToJson(const Profile& p) {
  nlohmann::json j;
  j["kind"] = "tandem-profile";
  j["schema_version"] = 1;
  j["machine"] = p.machine;
  j["created"] = p.created;
  j["model"] = {{"name", p.model.name},
                {"kv_bytes_per_token", p.model.kv_bytes_per_token},
                {"weight_bytes", p.model.weight_bytes},
                {"context_length", p.model.context_length}};
  j["transfer"] = {{"latency_s", p.transfer.latency_s},
                   {"bytes_per_s", p.transfer.bytes_per_s},
                   {"source", p.transfer.source}};
  if (p.token_budget) {
    j["token_budget"] = {{"budget", *p.token_budget}, {"itl_slo_ms", p.token_budget_itl_slo_ms.value_or(0)}};
  }
  j["workers"] = nlohmann::json::array();
  for (const WorkerProfile& w : p.workers) {
    nlohmann::json samples = nlohmann::json::array();
    for (const IterationSample& s : w.samples) {
      nlohmann::json o = ShapeJson(s.shape);
      o["seconds"] = s.seconds;
      o["kind"] = s.kind;
      samples.push_back(std::move(o));
    }
    j["workers"].push_back({{"device", w.device},
                            {"threads", w.threads},
                            {"iteration_cost",
                             {{"fixed_s", w.cost.fixed_s},
                              {"per_token_s", w.cost.per_token_s},
                              {"per_sample_s", w.cost.per_sample_s},
                              {"per_attention_pair_s", w.cost.per_attention_s},
                              {"per_kv_read_token_s", w.cost.per_kv_read_s},
                              {"min_iteration_s", w.cost.min_iteration_s}}},
                            {"fit", {{"mean_abs_rel_error", w.fit.mean_abs_rel_error},
                                     {"max_abs_rel_error", w.fit.max_abs_rel_error}}},
                            {"samples", std::move(samples)}});
  }
  return j;
}

absl::StatusOr<Profile> ProfileFromJson(const nlohmann::json& j) {
  try {
    if (j.value("kind", "") != "tandem-profile") {
      return absl::InvalidArgumentError("not a tandem profile (\"kind\" is not \"tandem-profile\")");
    }
    Profile p;
    p.machine = j.value("machine", "");
    p.created = j.value("created", "");
    const auto& m = j.at("model");
    p.model.name = m.value("name", "");
    p.model.kv_bytes_per_token = m.at("kv_bytes_per_token").get<int64_t>();
    p.model.weight_bytes = m.value("weight_bytes", int64_t{0});
    p.model.context_length = m.value("context_length", 0);
    if (j.contains("transfer")) {
      const auto& t = j["transfer"];
      p.transfer.latency_s = t.at("latency_s").get<double>();
      p.transfer.bytes_per_s = t.at("bytes_per_s").get<double>();
      p.transfer.source = t.value("source", "");
    }
    if (j.contains("token_budget")) {
      p.token_budget = j["token_budget"].at("budget").get<int>();
      p.token_budget_itl_slo_ms = j["token_budget"].value("itl_slo_ms", 0.0);
    }
    for (const auto& w : j.at("workers")) {
      WorkerProfile wp;
      wp.device = w.value("device", "cpu");
      wp.threads = w.value("threads", 0);
      const auto& c = w.at("iteration_cost");
      wp.cost.fixed_s = c.at("fixed_s").get<double>();
      wp.cost.per_token_s = c.at("per_token_s").get<double>();
      wp.cost.per_sample_s = c.value("per_sample_s", 0.0);
      wp.cost.per_attention_s = c.value("per_attention_pair_s", 0.0);
      wp.cost.per_kv_read_s = c.value("per_kv_read_token_s", 0.0);
      wp.cost.min_iteration_s = c.value("min_iteration_s", 0.0);
      if (w.contains("fit")) {
        wp.fit.mean_abs_rel_error = w["fit"].value("mean_abs_rel_error", 0.0);
        wp.fit.max_abs_rel_error = w["fit"].value("max_abs_rel_error", 0.0);
      }
      for (const auto& s : w.value("samples", nlohmann::json::array())) {
        IterationSample is;
        is.shape.tokens = s.at("tokens").get<int64_t>();
        is.shape.sampled = s.at("sampled").get<int64_t>();
        is.shape.attention_pairs = s.at("attention_pairs").get<int64_t>();
        is.shape.kv_read_tokens = s.value("kv_read_tokens", int64_t{0});
        is.shape.sequences = s.value("sequences", int64_t{0});
        is.seconds = s.at("seconds").get<double>();
        is.kind = s.value("kind", "");
        wp.samples.push_back(is);
      }
      const IterationCost& k = wp.cost;
      for (double v : {k.fixed_s, k.per_token_s, k.per_sample_s, k.per_attention_s, k.per_kv_read_s, k.min_iteration_s}) {
        if (!(v >= 0) || !std::isfinite(v)) {
          return absl::InvalidArgumentError("an iteration cost coefficient is negative or not a number");
        }
      }
      if (k.Seconds(IterationShape{.tokens = 1, .sampled = 1, .attention_pairs = 1, .sequences = 1}) <= 0) {
        return absl::InvalidArgumentError("the iteration cost predicts zero time for an iteration");
      }
      p.workers.push_back(std::move(wp));
    }
    if (p.workers.empty()) return absl::InvalidArgumentError("the profile has no worker entries");
    if (p.model.kv_bytes_per_token <= 0) return absl::InvalidArgumentError("model.kv_bytes_per_token must be > 0");
    if (!(p.transfer.bytes_per_s > 0) || !(p.transfer.latency_s >= 0)) {
      return absl::InvalidArgumentError("transfer.bytes_per_s must be > 0 and transfer.latency_s >= 0");
    }
    return p;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(StrCat("malformed profile: ", e.what()));
  }
}

absl::StatusOr<Profile> ReadProfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat("cannot read profile '", path, "'"));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(StrCat("'", path, "' is not JSON"));
  auto p = ProfileFromJson(j);
  if (!p.ok()) return absl::InvalidArgumentError(StrCat(path, ": ", p.status().message()));
  return p;
}

absl::Status WriteProfile(const Profile& profile, const std::string& path) {
  std::ofstream out(path);
  out << ToJson(profile).dump(1) << "\n";
  out.close();
  if (!out) return absl::UnavailableError(StrCat("cannot write '", path, "'"));
  return absl::OkStatus();
}

std::optional<int> PickTokenBudget(const IterationCost& cost, double itl_slo_s, const std::vector<int>& candidates,
                                   int decodes, int context) {
  std::optional<int> best;
  for (int budget : candidates) {
    IterationShape s;
    const int64_t d = std::min(decodes, budget);
    const int64_t chunk = budget - d;
    s.tokens = budget;
    s.sampled = d;
    s.sequences = d + (chunk > 0 ? 1 : 0);
    s.attention_pairs = d * (context + 1) + chunk * context + chunk * (chunk + 1) / 2;
    s.kv_read_tokens = d * (context + 1) + (chunk > 0 ? context + chunk : 0);
    if (cost.Seconds(s) <= itl_slo_s) best = budget;
  }
  return best;
}

}  // namespace tandem::sim
