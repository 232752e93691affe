#include "http/wire_format.h"

#include <iterator>

#include "fmt/format.h"

namespace tandem::http {

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 499:
      return "Client Closed Request";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string HttpDate(absl::Time time) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", time, absl::UTCTimeZone());
}

std::string SerializeResponseHead(const ResponseHead& head, absl::Time now) {
  std::string out;
  out.reserve(256);
  auto it = std::back_inserter(out);
  fmt::format_to(it, "HTTP/1.{} {} {}\r\n", head.version == 10 ? 0 : 1, head.status,
                 ReasonPhrase(head.status));
  const HttpHeaders empty;
  const HttpHeaders& headers = head.headers != nullptr ? *head.headers : empty;
  if (!headers.Has("Date")) fmt::format_to(it, "Date: {}\r\n", HttpDate(now));
  if (!head.server_name.empty() && !headers.Has("Server")) {
    fmt::format_to(it, "Server: {}\r\n", head.server_name);
  }
  if (!head.content_type.empty()) fmt::format_to(it, "Content-Type: {}\r\n", head.content_type);
  for (const auto& [name, value] : headers) fmt::format_to(it, "{}: {}\r\n", name, value);
  switch (head.framing) {
    case ResponseHead::Framing::kContentLength:
      fmt::format_to(it, "Content-Length: {}\r\n", head.content_length);
      break;
    case ResponseHead::Framing::kChunked:
      out.append("Transfer-Encoding: chunked\r\n");
      break;
    case ResponseHead::Framing::kUntilClose:
      break;
  }
  // HTTP/1.1 persists by default and HTTP/1.0 does not (RFC 9112 §9.3).
  if (head.version == 10 && head.keep_alive) out.append("Connection: keep-alive\r\n");
  if (head.version != 10 && !head.keep_alive) out.append("Connection: close\r\n");
  out.append("\r\n");
  return out;
}

std::string ChunkSizeLine(size_t size) { return fmt::format("{:x}\r\n", size); }

}  // namespace tandem::http
