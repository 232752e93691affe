// The request a handler receives and the responder it answers through (see http_server.h).
#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace tandem::http {

// Header fields in arrival order, looked up by name case-insensitively (RFC 9110 §5.1).
// A value type; not synchronised.
class HttpHeaders {
 public:
  using Field = std::pair<std::string, std::string>;

  HttpHeaders() = default;
  HttpHeaders(std::initializer_list<Field> fields) : fields_(fields) {}

  // Appends a field (repeated names are kept, in order).
  void Add(std::string name, std::string value);
  // Replaces every field named `name` by one with `value`.
  void Set(std::string_view name, std::string value);
  // The first value of `name`, or nullopt.
  std::optional<std::string_view> Get(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }

  const std::vector<Field>& fields() const { return fields_; }
  std::vector<Field>::const_iterator begin() const { return fields_.begin(); }
  std::vector<Field>::const_iterator end() const { return fields_.end(); }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }

 private:
  std::vector<Field> fields_;
};

// ASCII case-insensitive equality, for header names and tokens.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// A complete HTTP/1.x request as parsed by the server. Owned by the server and valid only during
// the handler call: a handler that answers later copies what it needs.
struct HttpRequest {
  std::string method;  // as sent, e.g. "GET" (methods are case-sensitive)
  std::string target;  // as sent, e.g. "/v1/models?limit=2"
  std::string path;    // target up to '?', e.g. "/v1/models" (not percent-decoded)
  std::string query;   // after '?', without it; empty when absent
  int version = 11;    // 10 for HTTP/1.0, 11 for HTTP/1.1
  HttpHeaders headers;
  std::string body;
  std::string remote_address;  // "ip:port" of the peer
};

// How a handler answers one request: either Reply() once, or StartStream(), any number of
// Write()s and End(). Implemented by the server (and by fakes in tests).
//
// Thread-safety: every method may be called from any thread (a gRPC callback thread, say);
// calls are applied in the order they are made. The handler receives a shared_ptr and may keep
// it to answer asynchronously. If the last reference goes away before a response was started,
// the server answers 500; if it goes away mid-stream without End(), the connection is closed so
// the client sees a truncated (not a complete) response.
//
// Errors: InvalidArgument for a bad status or header; FailedPrecondition when the call does
// not fit the state (a second Reply, Write before StartStream or after End); Cancelled once
// the exchange is over (client disconnected, server stopped, or response already complete) —
// a producer seeing Cancelled should stop its work.
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;

  // A complete response with Content-Length. `status` in [200, 599]; `content_type` empty for
  // none. The server manages Content-Length, Transfer-Encoding and Connection: `headers` must
  // not set them; Date and Server are added unless `headers` has them.
  absl::Status Reply(int status, std::string content_type, std::string body,
                     HttpHeaders headers = {});

  // Starts a streamed response (chunked transfer encoding on HTTP/1.1; on HTTP/1.0 the body is
  // delimited by closing the connection). For Server-Sent Events use "text/event-stream".
  absl::Status StartStream(int status, std::string content_type, HttpHeaders headers = {});

  // Queues `chunk` (sent as soon as the socket takes it; an empty chunk sends nothing).
  absl::Status Write(std::string chunk) { return DoWrite(std::move(chunk)); }

  // Ends the stream; OnClose callbacks run once the last byte is written.
  absl::Status End() { return DoEnd(); }

  // Bytes passed to Write() and not yet written to the socket. A producer slows down or stops
  // when this grows (a client not reading).
  virtual size_t queued_bytes() const = 0;

  // Runs `fn` once, when the exchange is over: the response was written completely, the client
  // disconnected (also noticed while the handler is still working, so it can cancel), or the
  // server stopped. Runs on a server thread; if the exchange is already over, runs `fn` on the
  // calling thread before returning. May be called several times to register several callbacks.
  virtual void OnClose(std::function<void()> fn) = 0;

  // True once the exchange is over (see OnClose).
  virtual bool closed() const = 0;

 protected:
  // Called after the arguments were validated.
  virtual absl::Status DoReply(int status, std::string content_type, std::string body,
                               HttpHeaders headers) = 0;
  virtual absl::Status DoStartStream(int status, std::string content_type, HttpHeaders headers) = 0;
  virtual absl::Status DoWrite(std::string chunk) = 0;
  virtual absl::Status DoEnd() = 0;
};

// Called by the server for each request, on a server thread. Must not block: do slow work
// elsewhere and answer through the responder later.
using HttpHandler = std::function<void(const HttpRequest&, std::shared_ptr<HttpResponder>)>;

// Checks a response status and header fields as Reply()/StartStream() do: status in [200, 599],
// header names are RFC 9110 tokens, values have no CR, LF or NUL, and none of Content-Length,
// Transfer-Encoding, Connection is set.
absl::Status ValidateResponse(int status, std::string_view content_type,
                              const HttpHeaders& headers);

}  // namespace tandem::http
