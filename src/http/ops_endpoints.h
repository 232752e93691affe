// The operational endpoints every tandem process serves (DESIGN.md, Observability), and HTTP
// request metrics. A separate target (tandem_http_ops) so that tandem_http does not depend on
// tandem_metrics.
#pragma once

#include <functional>

#include "http/http_server.h"
#include "metrics/registry.h"

namespace tandem::http {

// Registers on `server` (before Start()):
//   GET /healthz -> 200 "ok" (the process is alive and serving HTTP)
//   GET /readyz  -> 200 "ready", or 503 "not ready" when `ready` returns false; `ready` may be
//                   null (always ready). Called on an I/O thread per probe: keep it cheap.
//   GET /metrics -> 200, text/plain; version=0.0.4; charset=utf-8, `registry->Render()`;
//                   not registered when `registry` is null.
// `registry` is not owned and must outlive the server.
void RegisterOpsEndpoints(HttpServer& server, std::function<bool()> ready,
                          metrics::MetricsRegistry* registry);

// Counts and times the server's requests in `registry` (which must outlive the server):
//   tandem_http_requests_total{route,method,code}         (route: the registered path, or
//                                                           "unmatched")
//   tandem_http_request_duration_seconds{route,method}    (streams: until the last byte)
//   tandem_http_client_disconnects_total{route,method}    (exchanges the client abandoned)
// Sets the server's access observer; call before Start().
void InstrumentHttpServer(HttpServer& server, metrics::MetricsRegistry& registry);

}  // namespace tandem::http
