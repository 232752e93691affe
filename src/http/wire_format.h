// Serialising HTTP/1.1 responses (RFC 9112): the status line and header section, and chunked
// transfer coding. Pure functions, thread-safe. Requests are parsed with Boost.Beast.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "http/http_types.h"

namespace tandem::http {

// The reason phrase of `status` ("Not Found"), or "Unknown".
std::string_view ReasonPhrase(int status);

// An IMF-fixdate for the Date header, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
std::string HttpDate(absl::Time time);

struct ResponseHead {
  enum class Framing {
    kContentLength,  // Content-Length: content_length
    kChunked,        // Transfer-Encoding: chunked
    kUntilClose,     // neither; the body ends when the connection closes (HTTP/1.0 streams)
  };

  int status = 200;
  int version = 11;               // of the request: 10 or 11
  std::string_view content_type;  // empty: no Content-Type
  const HttpHeaders* headers = nullptr;
  Framing framing = Framing::kContentLength;
  size_t content_length = 0;
  bool keep_alive = true;
  std::string_view server_name;  // empty: no Server header
};

// "HTTP/1.1 <status> <reason>\r\n" + fields + "\r\n". Adds Date and Server unless `headers`
// has them, and a Connection field when the persistence differs from the version's default.
std::string SerializeResponseHead(const ResponseHead& head, absl::Time now);

// The chunk-size line that precedes `size` bytes of chunk data: "<hex>\r\n".
std::string ChunkSizeLine(size_t size);
inline constexpr std::string_view kChunkDataEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace tandem::http
