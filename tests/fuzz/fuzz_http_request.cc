// The HTTP/1.1 request parser as the server's connections run it (http/request_parser.h): raw
// bytes in, requests (pipelined ones included) or the server's own 400/413/431 out.
//
// Each input is parsed three ways: whole with the server's default limits; whole with small
// limits (so that fuzzed input reaches the header and body limits); and in pieces of 1 to 64
// bytes with the same small limits, as a slow client's reads arrive. Checked: no request body
// over the limit, a target split into path and query that joins back, and the same requests
// whether the bytes came at once or in pieces.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "http/request_parser.h"

namespace {

using tandem::http::HttpRequest;
using tandem::http::internal::RequestLimits;
using tandem::http::internal::RequestParser;

// What one parse of a byte stream produced, request after request.
struct Outcome {
  std::vector<std::string> events;  // one line per request, then the verdict on what follows
  std::vector<std::string> requests() const { return {events.begin(), events.end() - 1}; }
  void Add(const HttpRequest& r, bool keep_alive) {
    std::string line = r.method + " " + r.target + " " + std::to_string(r.version) + " ka=" +
                       std::to_string(keep_alive) + " body=" + r.body;
    for (const auto& [name, value] : r.headers) line += "|" + name + ":" + value;
    events.push_back(std::move(line));
  }
};

void CheckRequest(const HttpRequest& r, const RequestLimits& limits) {
  FUZZ_CHECK(r.body.size() <= limits.max_body_bytes);
  FUZZ_CHECK(r.path.find('?') == std::string::npos);
  if (!r.target.empty() && r.target[0] == '/') {
    const bool has_query = r.target.find('?') != std::string::npos;
    FUZZ_CHECK(r.path + (has_query ? "?" + r.query : "") == r.target);
  }
}

// Feeds `input` in pieces whose sizes come from `piece_sizes` (empty: all at once), keeping the
// unparsed bytes as the connection does, and starting a new request after each complete one.
Outcome Parse(std::string_view input, const RequestLimits& limits, std::string_view piece_sizes) {
  Outcome out;
  RequestParser parser(limits);
  std::string pending;
  size_t offset = 0, piece = 0;
  while (offset < input.size() || !pending.empty()) {
    if (offset < input.size()) {
      size_t n = input.size() - offset;
      if (!piece_sizes.empty()) n = std::min<size_t>(n, 1 + (piece_sizes[piece++ % piece_sizes.size()] & 63));
      pending.append(input.substr(offset, n));
      offset += n;
    }
    const size_t used = parser.Feed(pending);
    FUZZ_CHECK(used <= pending.size());
    pending.erase(0, used);
    (void)parser.ExpectsContinue();
    if (parser.state() == RequestParser::State::kRejected) {
      const int status = parser.rejection().status;
      FUZZ_CHECK(status == 400 || status == 413 || status == 431);
      FUZZ_CHECK(!parser.rejection().body.empty());
      out.events.push_back("rejected");
      return out;  // the connection answers and closes
    }
    if (parser.state() == RequestParser::State::kComplete) {
      const bool keep_alive = parser.keep_alive();
      HttpRequest request = parser.TakeRequest();
      CheckRequest(request, limits);
      out.Add(request, keep_alive);
      parser.Reset();
      continue;  // a pipelined request may follow in `pending`
    }
    if (offset >= input.size()) break;  // needs bytes that never come
  }
  out.events.push_back("incomplete");  // also when nothing follows the last request
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Parse(input, RequestLimits{}, {});
  const RequestLimits small{.max_header_bytes = 512, .max_body_bytes = 64};
  const Outcome whole = Parse(input, small, {});
  // Piece sizes from the input itself, so a crash reproduces from the saved input alone.
  const Outcome pieces = Parse(input, small, input.substr(input.size() / 2));
  // The same requests. What follows them may be judged differently: where the input ends
  // mid-request, Beast can spot a bad byte in an incomplete line when it scans it all at once; and
  // a header both too long and malformed is found too long in pieces, malformed at once.
  FUZZ_CHECK(whole.requests() == pieces.requests());
  return 0;
}
