// An asynchronous HTTP/1.1 server (Boost.Beast parsing, Boost.Asio I/O) for /metrics, /healthz,
// /readyz in every process and for the router's OpenAI-compatible API, Server-Sent Events
// included. Connections are served by a small pool of I/O threads (`threads`), never a thread
// each, so thousands of idle or streaming connections cost sockets and buffers only.
//
// Per connection, requests are handled one at a time in arrival order (keep-alive; pipelined
// requests wait until the previous response is complete). The server answers by itself:
// 404 (no route), 405 with Allow (route exists, method does not), 400 (malformed request),
// 413 (body over max_body_bytes), 431 (header section over max_header_bytes), 505 (HTTP
// version), 500 (handler dropped its responder without answering), 503 (max_connections open). A connection idle for
// idle_timeout, a request not received completely within read_timeout, or a client taking
// longer than idle_timeout to accept one batch (<= 256 KiB) of response bytes closes the
// connection. While a handler works, the server keeps reading the socket, so a client that
// disconnects (EOF or reset, as Go's net/http and nginx read it) is noticed at once
// (HttpResponder::OnClose) and the handler can cancel its work.
//
// Thread-safety: Handle*/SetAccessObserver before Start(); Start/Stop from one thread at a time
// and never from a handler (Stop joins the I/O threads); port/connection_count from any thread.
// Handlers run on the I/O threads and must not block (see HttpHandler).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "http/http_types.h"

namespace tandem::http {

struct HttpServerOptions {
  std::string address = "0.0.0.0";
  int port = 0;  // 0: an ephemeral port, see HttpServer::port()
  int threads = 2;
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 8 << 20;
  absl::Duration idle_timeout = absl::Seconds(60);
  absl::Duration read_timeout = absl::Seconds(30);
  std::string server_name = "tandem";  // Server header; empty for none
  // Open connections at most; one more is answered 503 (Retry-After: 1) and closed at once, so a
  // flood of idle sockets cannot exhaust the process's file descriptors.
  size_t max_connections = 4096;
};

// One finished exchange, reported to the access observer (request metrics).
struct HttpAccessRecord {
  std::string_view method;  // empty when the request could not be parsed
  std::string_view path;
  std::string_view route;   // the matched registration ("/v1/*" for a prefix); empty if none
  int status = 0;           // 0 when no response was started
  absl::Duration duration;  // from the complete request to the end of the exchange
  bool completed = false;   // false: client disconnected or server stopped first
};

namespace internal {
class ServerCore;
}  // namespace internal

class HttpServer {
 public:
  // InvalidArgument for bad options (address not an IP literal, port outside [0, 65535],
  // threads < 1, zero limits or timeouts). Does not bind yet.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(HttpServerOptions options);

  // Stops with no grace period if still running.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes `method` requests for exactly `path` (no query) to `handler`. Registering the same
  // pair twice or after Start() is a bug (CHECK).
  void Handle(std::string method, std::string path, HttpHandler handler);
  // Routes `method` requests whose path starts with `prefix`; the longest prefix wins and any
  // exact route shadows prefixes.
  void HandlePrefix(std::string method, std::string prefix, HttpHandler handler);

  // Called on an I/O thread after every exchange (also 404s and rejected requests). Must be
  // cheap and must not block. Before Start().
  void SetAccessObserver(std::function<void(const HttpAccessRecord&)> observer);

  // Binds, listens and starts the I/O threads. Unavailable when the address cannot be bound
  // (e.g. the port is in use); FailedPrecondition when called twice.
  absl::Status Start();

  // The bound port (the real one when options.port was 0); 0 before Start().
  int port() const;

  // Stops accepting and closes idle connections at once; responses in progress may finish
  // (their connections then close) for up to `grace`, after which every connection is closed
  // (OnClose callbacks run). Returns when the I/O threads have exited. Idempotent.
  void Stop(absl::Duration grace);

  // Open connections (diagnostics and tests).
  size_t connection_count() const;

 private:
  explicit HttpServer(std::unique_ptr<internal::ServerCore> core);

  std::unique_ptr<internal::ServerCore> core_;
};

}  // namespace tandem::http
