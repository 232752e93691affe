// RequestParser (http/request_parser.h) on its own: the limits, pipelining and 100-continue the
// server relies on, whichever way the bytes are cut into reads.
#include "http/request_parser.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tandem::http::internal {
namespace {

// Feeds `input` in reads of `piece` bytes (0: all at once) as a connection does, and returns
// one line per complete request and "rejected <status>" or "incomplete" at the end.
std::vector<std::string> ParseAll(const std::string& input, RequestLimits limits, size_t piece = 0) {
  std::vector<std::string> out;
  RequestParser parser(limits);
  std::string pending;
  size_t offset = 0;
  while (offset < input.size() || !pending.empty()) {
    const size_t n = piece == 0 ? input.size() - offset : std::min(piece, input.size() - offset);
    pending += input.substr(offset, n);
    offset += n;
    pending.erase(0, parser.Feed(pending));
    if (parser.state() == RequestParser::State::kRejected) {
      out.push_back("rejected " + std::to_string(parser.rejection().status));
      return out;
    }
    if (parser.state() == RequestParser::State::kComplete) {
      HttpRequest r = parser.TakeRequest();
      out.push_back(r.method + " " + r.path + " " + r.body);
      parser.Reset();
      continue;
    }
    if (offset >= input.size()) break;
  }
  out.push_back("incomplete");
  return out;
}

std::string Get(size_t header_bytes) {
  const std::string start = "GET /ok HTTP/1.1\r\nX: ";
  return start + std::string(header_bytes - start.size() - 4, 'a') + "\r\n\r\n";
}

TEST(RequestParserTest, PipelinedRequestsAndBodies) {
  const std::string input =
      "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
      "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
      "GET /c HTTP/1.1\r\n\r\n";
  const std::vector<std::string> expected = {"POST /a abc", "POST /b hi", "GET /c ", "incomplete"};
  for (size_t piece : {0, 1, 7}) EXPECT_EQ(ParseAll(input, {}, piece), expected) << piece;
}

TEST(RequestParserTest, BodyOverTheLimitIs413) {
  const RequestLimits limits{.max_header_bytes = 1024, .max_body_bytes = 4};
  EXPECT_EQ(ParseAll("POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", limits).back(), "rejected 413");
  EXPECT_EQ(ParseAll("POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", limits).front(), "POST /a abcd");
  EXPECT_EQ(ParseAll("POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
                     limits, 1).back(),
            "rejected 413");
}

// Fuzzer finding (fuzz_http_request): a header section over max_header_bytes was accepted when
// it arrived in one read (Beast limits only the fields after the request line then), and refused
// with 431 when it arrived in pieces.
TEST(RequestParserTest, HeaderOverTheLimitIs431HoweverItArrives) {
  const RequestLimits limits{.max_header_bytes = 512, .max_body_bytes = 64};
  for (size_t piece : {0, 1, 100}) {
    EXPECT_EQ(ParseAll(Get(513), limits, piece).back(), "rejected 431") << piece;
    EXPECT_EQ(ParseAll(Get(512), limits, piece).front(), "GET /ok ") << piece;
  }
  std::ifstream file(std::string(TANDEM_SOURCE_DIR) +
                         "/tests/fuzz/corpus/fuzz_http_request/regression_header_limit_one_read",
                     std::ios::binary);
  ASSERT_TRUE(file.good());
  std::stringstream crash;
  crash << file.rdbuf();
  EXPECT_EQ(ParseAll(crash.str(), limits), ParseAll(crash.str(), limits, 1));
  EXPECT_EQ(ParseAll(crash.str(), limits).back(), "rejected 431");
}

TEST(RequestParserTest, ExpectsContinueAfterTheHeaderOnly) {
  RequestParser parser(RequestLimits{});
  const std::string head = "POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  EXPECT_EQ(parser.Feed(head.substr(0, 10)), 0u);
  EXPECT_FALSE(parser.ExpectsContinue());
  EXPECT_EQ(parser.Feed(head), head.size());
  EXPECT_TRUE(parser.ExpectsContinue());
  EXPECT_EQ(parser.Feed("ok"), 2u);
  EXPECT_EQ(parser.state(), RequestParser::State::kComplete);
  EXPECT_FALSE(parser.ExpectsContinue());
}

}  // namespace
}  // namespace tandem::http::internal
