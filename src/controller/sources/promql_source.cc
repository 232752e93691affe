#include "controller/sources/promql_source.h"

#include <cmath>
#include <cstdint>
#include <optional>

#include "common/status_macros.h"
#include "common/strings.h"
#include "controller/sources/prom_text.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace tandem::controller {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kReadyPrefill = "ready.prefill";
constexpr std::string_view kReadyDecode = "ready.decode";
// Without this series Prometheus is not scraping the router; see the header.
constexpr std::string_view kRouterPresence = "inflight_requests";

// The Signals member each floating-point field name stands for.
double Signals::*MemberOf(std::string_view field) {
  for (const SignalField& f : kSignalFields) {
    if (f.name == field) return f.member;
  }
  return nullptr;
}

const Json* Member(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string StringMember(const Json& j, const char* key) {
  const Json* m = Member(j, key);
  return m != nullptr && m->is_string() ? m->get<std::string>() : std::string();
}

// Prometheus' errorType → the closest status code.
absl::StatusCode CodeOfErrorType(std::string_view type) {
  if (type == "bad_data") return absl::StatusCode::kInvalidArgument;
  if (type == "timeout") return absl::StatusCode::kDeadlineExceeded;
  if (type == "canceled") return absl::StatusCode::kCancelled;
  if (type == "unavailable") return absl::StatusCode::kUnavailable;
  if (type == "not_found") return absl::StatusCode::kNotFound;
  if (type == "execution" || type == "internal") return absl::StatusCode::kInternal;
  return absl::StatusCode::kUnknown;
}

// A [timestamp, "value"] pair's value.
std::optional<double> PairValue(const Json* pair) {
  if (pair == nullptr || !pair->is_array() || pair->size() != 2 || !(*pair)[1].is_string()) return std::nullopt;
  return ParsePromValue((*pair)[1].get<std::string>());
}

std::string Start(std::string_view body) { return std::string(body.substr(0, 200)); }

// The single value of an instant query's answer; nullopt for an empty vector.
absl::StatusOr<std::optional<double>> ParseQueryResponse(const HttpClientResponse& response, std::string_view context) {
  const Json j = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  const bool http_ok = response.status >= 200 && response.status < 300;
  if (j.is_discarded() || !j.is_object()) {
    if (!http_ok) {
      return absl::UnavailableError(StrCat(context, ": HTTP ", response.status, ": ", Start(response.body)));
    }
    return absl::InternalError(StrCat(context, ": the answer is not a JSON object: ", Start(response.body)));
  }
  const std::string status = StringMember(j, "status");
  if (status == "error") {
    const std::string type = StringMember(j, "errorType");
    return absl::Status(CodeOfErrorType(type), StrCat(context, ": Prometheus error (", type.empty() ? "unknown" : type,
                                                      "): ", StringMember(j, "error")));
  }
  if (status != "success" || !http_ok) {
    return absl::UnavailableError(StrCat(context, ": HTTP ", response.status, ", status '", status, "'"));
  }
  const Json* data = Member(j, "data");
  const std::string type = data != nullptr ? StringMember(*data, "resultType") : std::string();
  const Json* result = data != nullptr ? Member(*data, "result") : nullptr;
  std::optional<double> value;
  if (type == "vector" && result != nullptr && result->is_array()) {
    if (result->empty()) return std::optional<double>();
    if (result->size() > 1) {
      return absl::FailedPreconditionError(StrCat(context, ": ", result->size(), " series, expected at most one"));
    }
    value = PairValue(Member((*result)[0], "value"));
  } else if (type == "scalar") {
    value = PairValue(result);
  } else {
    return absl::InternalError(StrCat(context, ": unexpected result (type '", type, "')"));
  }
  if (!value) return absl::InternalError(StrCat(context, ": malformed sample value: ", Start(response.body)));
  return value;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> PromQLSource::Queries(std::string_view window) {
  auto rate = [&](std::string_view series) { return StrCat("rate(", series, "[", window, "])"); };
  auto sum_rate = [&](std::string_view series) { return StrCat("sum(", rate(series), ")"); };
  // A ratio that is empty (NaN) where the denominator is 0 rather than ±Inf.
  auto ratio = [](std::string_view a, std::string_view b) { return StrCat(a, " / (", b, " > 0)"); };
  auto quantile = [&](std::string_view q, std::string_view histogram) {
    return StrCat("histogram_quantile(", q, ", sum by (le) (", rate(StrCat(histogram, "_bucket")), "))");
  };
  const std::string decode_roles = R"(role=~"decode|mixed")";
  const std::string busy_prefill = R"(tandem_worker_busy_seconds_total{role="prefill"})";
  const std::string busy_decode = StrCat("tandem_worker_busy_seconds_total{", decode_roles, "}");
  const std::string iterations = StrCat(R"({phase="decode",)", decode_roles, "}");
  const std::string kv_blocks = StrCat("tandem_worker_kv_blocks{", decode_roles);

  return {
      {"arrival_rate", sum_rate("tandem_router_prompt_tokens_count")},
      {"prompt_tokens_mean",
       ratio(sum_rate("tandem_router_prompt_tokens_sum"), sum_rate("tandem_router_prompt_tokens_count"))},
      {"output_tokens_mean",
       ratio(sum_rate("tandem_router_generated_tokens_sum"), sum_rate("tandem_router_generated_tokens_count"))},
      {"prompt_tokens_p50", quantile("0.5", "tandem_router_prompt_tokens")},
      {"prompt_tokens_p90", quantile("0.9", "tandem_router_prompt_tokens")},
      {"prompt_tokens_p99", quantile("0.99", "tandem_router_prompt_tokens")},
      {"output_tokens_p50", quantile("0.5", "tandem_router_generated_tokens")},
      {"output_tokens_p90", quantile("0.9", "tandem_router_generated_tokens")},
      {"output_tokens_p99", quantile("0.99", "tandem_router_generated_tokens")},
      {"prompt_token_rate", sum_rate("tandem_router_prompt_tokens_sum")},
      {"prompt_cached_fraction",
       ratio(sum_rate("tandem_worker_prefix_cache_hit_tokens_total"),
             StrCat(sum_rate("tandem_worker_prefix_cache_hit_tokens_total"), " + ",
                    sum_rate(R"(tandem_worker_tokens_total{phase="prefill"})")))},
      {"ttft_p50", quantile("0.5", "tandem_router_ttft_seconds")},
      {"ttft_p90", quantile("0.9", "tandem_router_ttft_seconds")},
      {"ttft_p99", quantile("0.99", "tandem_router_ttft_seconds")},
      {"itl_p50", quantile("0.5", "tandem_router_itl_seconds")},
      {"itl_p99", quantile("0.99", "tandem_router_itl_seconds")},
      {"tpot_p90", quantile("0.9", "tandem_router_tpot_seconds")},
      {"tpot_p99", quantile("0.99", "tandem_router_tpot_seconds")},
      {"queue_p99", quantile("0.99", "tandem_router_queue_seconds")},
      {"inflight_requests", "sum(tandem_router_inflight_requests)"},
      {"queued_prefill_tokens", R"(sum(tandem_worker_queued_prefill_tokens{role=~"prefill|mixed"}))"},
      {"kv_utilization",
       ratio(StrCat("sum(", kv_blocks, R"(,state=~"used|reserved"}))"), StrCat("sum(", kv_blocks, "})"))},
      {"prefill_tokens_per_busy_second",
       ratio(sum_rate(R"(tandem_worker_tokens_total{phase="prefill",role="prefill"})"), sum_rate(busy_prefill))},
      {"decode_tokens_per_busy_second",
       ratio(sum_rate(StrCat(R"(tandem_worker_tokens_total{phase="decode",)", decode_roles, "}")),
             sum_rate(busy_decode))},
      {"prefill_busy_fraction", StrCat("avg(", rate(busy_prefill), ")")},
      {"decode_busy_fraction", StrCat("avg(", rate(busy_decode), ")")},
      {"decode_iteration_mean_s", ratio(sum_rate(StrCat("tandem_worker_iteration_seconds_sum", iterations)),
                                        sum_rate(StrCat("tandem_worker_iteration_seconds_count", iterations)))},
      // The most any one router counts (every router of a set counts every worker).
      {std::string(kReadyPrefill), R"(max(sum by (instance) (tandem_router_workers{state="ready",role="prefill"})))"},
      {std::string(kReadyDecode),
       StrCat(R"(max(sum by (instance) (tandem_router_workers{state="ready",)", decode_roles, "}))")},
  };
}

absl::StatusOr<std::unique_ptr<PromQLSource>> PromQLSource::Create(PromQLSourceOptions options) {
  if (!options.base_url.starts_with("http://") && !options.base_url.starts_with("https://")) {
    return absl::InvalidArgumentError(StrCat("Prometheus URL '", options.base_url, "' is not http:// or https://"));
  }
  while (options.base_url.ends_with('/')) options.base_url.pop_back();
  absl::StatusOr<double> window_s = ParsePromDurationSeconds(options.window);
  if (!window_s.ok()) return absl::InvalidArgumentError(StrCat("PromQL window: ", window_s.status().message()));
  if (!options.fetch) {
    options.fetch = [](const std::string& url, std::chrono::milliseconds timeout) {
      HttpClientRequest request;
      request.url = url;
      request.timeout = timeout;
      return HttpFetch(request);
    };
  }
  return std::unique_ptr<PromQLSource>(new PromQLSource(std::move(options), *window_s));
}

PromQLSource::PromQLSource(PromQLSourceOptions options, double window_s)
    : options_(std::move(options)), window_s_(window_s) {}

absl::StatusOr<double> PromQLSource::Query(const std::string& field, const std::string& promql, double now_s) const {
  std::string url = StrCat(options_.base_url, "/api/v1/query?query=", UrlEncodeQueryValue(promql));
  if (options_.send_time) url += fmt::format("&time={:.3f}", now_s);
  const std::string context = StrCat("PromQL for ", field, " (", promql, ")");
  absl::StatusOr<HttpClientResponse> response = options_.fetch(url, options_.timeout);
  if (!response.ok()) {
    return absl::Status(response.status().code(), StrCat(context, ": ", response.status().message()));
  }
  TANDEM_ASSIGN_OR_RETURN(std::optional<double> value, ParseQueryResponse(*response, context));
  if (!value && field == kRouterPresence) {
    return absl::UnavailableError(
        StrCat(context, ": no series; Prometheus has no data from the router (is it scraping the router?)"));
  }
  return value.value_or(kNoData);
}

absl::StatusOr<Signals> PromQLSource::Read(double now_s) {
  Signals s;
  s.time_s = now_s;
  s.window_s = window_s_;
  for (const auto& [field, promql] : Queries(options_.window)) {
    TANDEM_ASSIGN_OR_RETURN(const double value, Query(field, promql, now_s));
    if (field == kReadyPrefill || field == kReadyDecode) {
      const int count = HasData(value) ? static_cast<int>(std::llround(value)) : 0;
      (field == kReadyPrefill ? s.ready.prefill : s.ready.decode) = count;
    } else if (double Signals::*member = MemberOf(field); member != nullptr) {
      s.*member = value;
    }
  }
  return s;
}

absl::StatusOr<double> ParsePromDurationSeconds(std::string_view text) {
  struct Unit {
    std::string_view name;
    double seconds;
  };
  // Largest first; "ms" before "m" so that the longer name wins.
  static constexpr Unit kUnits[] = {{"y", 365 * 86400.0}, {"w", 7 * 86400.0}, {"d", 86400.0}, {"h", 3600.0},
                                    {"ms", 0.001},        {"m", 60.0},        {"s", 1.0}};
  // Order in which units may follow one another (index into kUnits by magnitude).
  auto rank = [](std::string_view unit) {
    static constexpr std::string_view kOrder[] = {"y", "w", "d", "h", "m", "s", "ms"};
    for (int i = 0; i < 7; ++i) {
      if (kOrder[i] == unit) return i;
    }
    return -1;
  };
  auto bad = [&] {
    return absl::InvalidArgumentError(StrCat("'", text, "' is not a Prometheus duration such as 30s, 1m or 1h30m"));
  };
  double total = 0;
  int last_rank = -1;
  size_t pos = 0;
  if (text.empty()) return bad();
  while (pos < text.size()) {
    uint64_t n = 0;
    const size_t digits_start = pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (n > (UINT64_MAX - 9) / 10) return bad();
      n = n * 10 + static_cast<uint64_t>(text[pos++] - '0');
    }
    if (pos == digits_start) return bad();
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (text.substr(pos).starts_with(u.name)) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr || rank(unit->name) <= last_rank) return bad();
    last_rank = rank(unit->name);
    pos += unit->name.size();
    total += static_cast<double>(n) * unit->seconds;
  }
  if (!(total > 0)) return bad();
  return total;
}

std::string UrlEncodeQueryValue(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '_' || c == '.' || c == '~';
    if (unreserved) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace tandem::controller
