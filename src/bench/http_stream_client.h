// The load generator's HTTP/1.1 client: asynchronous (Boost.Beast on one Boost.Asio
// io_context), streaming response bodies to the caller as bytes arrive, with keep-alive
// connections reused between requests (as vLLM's aiohttp session does) so a long run does not
// pile up TIME_WAIT sockets.
//
// Why Beast and not libcurl's multi interface: the server side of tandem already speaks Beast,
// so the client shares its parser and build; arrivals, timeouts, progress and every socket
// live on one io_context, so the time a chunk is read is the time it is stamped (no polling
// interval between the socket and the clock); and the code stays typed C++ with no callback
// trampolines through void*. Plain http:// only: put a TLS-terminating proxy in front of an
// https:// endpoint (ParseBaseUrl says so).
//
// Thread-safety: a client and everything it calls back run on the io_context's thread; Send()
// must be called there too (or before the io_context runs). The client must outlive the
// io_context's run.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"

namespace tandem::bench {

// http://host[:port][/prefix]: requests go to prefix + endpoint path.
struct BaseUrl {
  std::string host;
  int port = 80;
  std::string path_prefix;  // no trailing '/'

  std::string ToString() const;  // "http://host:port/prefix"
};

// InvalidArgument (usage) for anything but http://host[:port][/path]; https:// is refused
// with the advice to use a TLS-terminating proxy.
absl::StatusOr<BaseUrl> ParseBaseUrl(std::string_view url);

struct ClientRequest {
  std::string method = "POST";
  std::string path;  // appended to the base URL's prefix, e.g. "/v1/completions"
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{600'000};  // from sending to the end of the response
};

// How a response arrives: on_head once (if a response came), on_body any number of times,
// on_end exactly once. on_end's status: OK when the body is complete; Unavailable when no
// connection could be made; DeadlineExceeded when the timeout passed; Aborted when the
// connection was lost before or during the response.
struct ResponseCallbacks {
  std::function<void(int status, std::string_view content_type)> on_head;
  std::function<void(std::string_view bytes)> on_body;
  std::function<void(const absl::Status& status)> on_end;
};

class HttpStreamClient {
 public:
  // Resolves the host once (Unavailable when it cannot be resolved).
  static absl::StatusOr<std::unique_ptr<HttpStreamClient>> Create(boost::asio::io_context& io, BaseUrl url);
  ~HttpStreamClient();
  HttpStreamClient(const HttpStreamClient&) = delete;
  HttpStreamClient& operator=(const HttpStreamClient&) = delete;

  void Send(ClientRequest request, ResponseCallbacks callbacks);

  // Closes idle keep-alive connections (requests in flight continue).
  void CloseIdle();

  const BaseUrl& url() const { return url_; }

  class Impl;

 private:
  HttpStreamClient(BaseUrl url, std::shared_ptr<Impl> impl);
  BaseUrl url_;
  std::shared_ptr<Impl> impl_;  // shared with the exchanges in flight
};

// One blocking GET on a private io_context (the preflight): the status and the body (up to
// `max_body` bytes), or the transport error as above.
struct SimpleResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};
absl::StatusOr<SimpleResponse> HttpGet(const BaseUrl& url, const std::string& path,
                                       const std::vector<std::pair<std::string, std::string>>& headers,
                                       std::chrono::milliseconds timeout, size_t max_body = 1 << 20);

}  // namespace tandem::bench
