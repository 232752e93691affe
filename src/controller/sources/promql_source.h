// PromQLSource: Signals from a Prometheus server's HTTP API, one instant query per field
// (GET {base_url}/api/v1/query?query=...; https://prometheus.io/docs/prometheus/latest/querying/api/).
// Rates cover the configured range window. Every query aggregates to at most one sample: an
// empty result is NaN (no data in the window); an error status fails the read with Prometheus'
// own message. Queries() lists the PromQL, which is also the definition ScrapeSource follows.
//
// A read also fails when Prometheus has no tandem_router_inflight_requests series at all (the
// router is not being scraped), as ScrapeSource fails when the router does not answer: an
// empty cluster view must not read as "zero instances ready".
//
// Thread-safety: Read() from one thread at a time; queries run one after another on it, and
// the first transport error ends the read (so a hung Prometheus costs one timeout per read).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/http_client.h"
#include "controller/core/signal_source.h"

namespace tandem::controller {

// GETs a URL; returns the response whatever its HTTP status (Prometheus puts its error message
// in the JSON body of 4xx/5xx answers), an error only when no response came.
using PromQLFetchFn =
    std::function<absl::StatusOr<HttpClientResponse>(const std::string& url, std::chrono::milliseconds timeout)>;

struct PromQLSourceOptions {
  std::string base_url;        // e.g. "http://prometheus:9090" (a path prefix is kept)
  std::string window = "1m";   // range of rate(): a Prometheus duration such as "30s", "1m30s"
  // Send Read()'s now_s as the query's evaluation `time=` (then now_s must be Unix seconds);
  // false: Prometheus evaluates at its own "now".
  bool send_time = false;
  std::chrono::milliseconds timeout{5000};  // per query
  PromQLFetchFn fetch;                      // empty: HttpFetch GET
};

class PromQLSource final : public SignalSource {
 public:
  // InvalidArgument for a base_url that is not http(s):// or a window that is not a positive
  // Prometheus duration.
  static absl::StatusOr<std::unique_ptr<PromQLSource>> Create(PromQLSourceOptions options);

  std::string name() const override { return "promql"; }
  absl::StatusOr<Signals> Read(double now_s) override;

  // Signal field name (as in Signals; "ready.prefill", "ready.decode" for the counts) → PromQL,
  // in Signals' field order, for `window` (e.g. "1m").
  static std::vector<std::pair<std::string, std::string>> Queries(std::string_view window);

  double window_s() const { return window_s_; }

 private:
  PromQLSource(PromQLSourceOptions options, double window_s);

  // The value of one instant query: NaN for an empty result.
  absl::StatusOr<double> Query(const std::string& field, const std::string& promql, double now_s) const;

  PromQLSourceOptions options_;
  double window_s_;
};

// A Prometheus duration ("90s", "1m30s", "2h", "500ms"; units y w d h m s ms, each at most once,
// largest first) in seconds. InvalidArgument when malformed or zero.
absl::StatusOr<double> ParsePromDurationSeconds(std::string_view text);

// Percent-encodes everything but RFC 3986's unreserved characters, for a query-string value.
std::string UrlEncodeQueryValue(std::string_view text);

}  // namespace tandem::controller
