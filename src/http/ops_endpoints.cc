#include "http/ops_endpoints.h"

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "metrics/buckets.h"
#include "metrics/text_format.h"

namespace tandem::http {
namespace {

constexpr char kPlainText[] = "text/plain; charset=utf-8";

// Methods come from clients: anything unusual is folded into one label value to keep the
// number of series bounded.
std::string MethodLabel(std::string_view method) {
  for (std::string_view known : {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}) {
    if (method == known) return std::string(known);
  }
  return "other";
}

}  // namespace

void RegisterOpsEndpoints(HttpServer& server, std::function<bool()> ready,
                          metrics::MetricsRegistry* registry) {
  server.Handle("GET", "/healthz", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
    r->Reply(200, kPlainText, "ok\n").IgnoreError();
  });
  server.Handle("GET", "/readyz",
                [ready = std::move(ready)](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
                  if (ready == nullptr || ready()) {
                    r->Reply(200, kPlainText, "ready\n").IgnoreError();
                  } else {
                    r->Reply(503, kPlainText, "not ready\n").IgnoreError();
                  }
                });
  if (registry == nullptr) return;
  server.Handle("GET", "/metrics",
                [registry](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
                  r->Reply(200, std::string(metrics::kExpositionContentType), registry->Render())
                      .IgnoreError();
                });
}

void InstrumentHttpServer(HttpServer& server, metrics::MetricsRegistry& registry) {
  auto& requests = registry.AddCounter("tandem_http_requests_total",
                                       "HTTP requests answered, by route, method and status code.",
                                       {"route", "method", "code"});
  auto& durations = metrics::AddLatencyHistogram(
      registry, "tandem_http_request_duration_seconds",
      "Time from a complete HTTP request to the end of its response.", {"route", "method"});
  auto& disconnects = registry.AddCounter(
      "tandem_http_client_disconnects_total",
      "HTTP exchanges that ended because the client disconnected or the server stopped.",
      {"route", "method"});
  server.SetAccessObserver([&requests, &durations, &disconnects](const HttpAccessRecord& record) {
    const std::string route = record.route.empty() ? "unmatched" : std::string(record.route);
    const std::string method = MethodLabel(record.method);
    if (!record.completed) {
      disconnects.With({route, method}).Increment();
      return;
    }
    requests.With({route, method, std::to_string(record.status)}).Increment();
    durations.With({route, method}).Observe(absl::ToDoubleSeconds(record.duration));
  });
}

}  // namespace tandem::http
