// Reading one HTTP/1.x request (RFC 9112) out of the bytes a connection received, with
// Boost.Beast's parser under the server's limits: the step between the socket and the handler.
// The server's connections (connection.cc) parse every request through it, and so does the
// fuzz target (tests/fuzz/fuzz_http_request.cc), which feeds it raw bytes without a socket.
//
// Use: Feed() the unparsed input (as much as has arrived; it may stop mid-request) and drop the
// bytes it consumed; repeat while it answers kNeedMore. kComplete: TakeRequest(); kRejected:
// rejection() is what the server answers. One request per RequestParser: make a new one (or
// Reset()) for the next request on the connection.
//
// Thread-safety: none; one connection's strand uses it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "http/http_types.h"

namespace tandem::http::internal {

struct RequestLimits {
  size_t max_header_bytes = 16 << 10;  // the request line and header fields, final CRLF included
  size_t max_body_bytes = 8 << 20;     // after removing chunked coding
};

// What the server answers by itself to a request it could not read: 431 for a header section
// over the limit, 413 for a body over the limit, 400 for anything malformed.
struct RequestRejection {
  int status = 400;
  std::string body;           // text/plain, for the client
  std::string parse_error;    // the parser's message, for the log
};

class RequestParser {
 public:
  enum class State {
    kNeedMore,  // the request is not complete yet; Feed more input
    kComplete,  // TakeRequest()
    kRejected,  // rejection(); the connection answers it and closes
  };

  explicit RequestParser(RequestLimits limits);

  // Parses as much of `input` as it can and returns how many leading bytes it consumed (the
  // caller drops them and passes the rest again with more input). Once the state is kComplete
  // or kRejected, consumes nothing; bytes after a complete request belong to the next one.
  size_t Feed(std::string_view input);
  State state() const { return state_; }

  // The header section is complete and the client waits for "100 Continue" before the body
  // (RFC 9110 §10.1.1: HTTP/1.1 and "Expect: 100-continue").
  bool ExpectsContinue() const;

  // kComplete only: the request (remote_address left empty), and whether the client asked to
  // keep the connection open.
  HttpRequest TakeRequest();
  bool keep_alive() const { return keep_alive_; }

  // kRejected only.
  const RequestRejection& rejection() const { return rejection_; }

  // Starts over for the next request with the same limits.
  void Reset();

 private:
  using BeastParser = boost::beast::http::request_parser<boost::beast::http::string_body>;
  void Reject(const boost::system::error_code& error);

  RequestLimits limits_;
  std::optional<BeastParser> parser_;
  size_t header_bytes_ = 0;  // of this request, up to the end of its header section
  State state_ = State::kNeedMore;
  bool keep_alive_ = false;
  RequestRejection rejection_;
};

// Splits a request target into path and query. Absolute-form targets ("http://host/p?q",
// RFC 9112 §3.2.2) keep only the path.
void SplitTarget(std::string_view target, std::string* path, std::string* query);

}  // namespace tandem::http::internal
