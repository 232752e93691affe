// Routing and response serialisation, without sockets.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/router.h"
#include "http/wire_format.h"

namespace tandem::http {
namespace {

HttpHandler Noop() {
  return [](const HttpRequest&, std::shared_ptr<HttpResponder>) {};
}

TEST(RouterTest, ExactThenLongestPrefixThen405Then404) {
  Router router;
  router.Add("GET", "/v1/models", Noop());
  router.Add("POST", "/v1/chat/completions", Noop());
  router.AddPrefix("GET", "/v1/", Noop());
  router.AddPrefix("DELETE", "/v1/models/", Noop());

  auto exact = router.Find("GET", "/v1/models");
  EXPECT_EQ(exact.result, Router::Match::Result::kFound);
  EXPECT_EQ(exact.route, "/v1/models");

  auto prefix = router.Find("DELETE", "/v1/models/m1");
  EXPECT_EQ(prefix.result, Router::Match::Result::kFound);
  EXPECT_EQ(prefix.route, "/v1/models/*");

  // The longest prefix owns the path: GET is not allowed there, even though /v1/ has GET.
  auto longest = router.Find("GET", "/v1/models/m1");
  EXPECT_EQ(longest.result, Router::Match::Result::kMethodNotAllowed);
  EXPECT_EQ(longest.allow, "DELETE");

  auto wrong_method = router.Find("GET", "/v1/chat/completions");
  EXPECT_EQ(wrong_method.result, Router::Match::Result::kMethodNotAllowed);
  EXPECT_EQ(wrong_method.allow, "POST");

  EXPECT_EQ(router.Find("GET", "/v2").result, Router::Match::Result::kNotFound);
  EXPECT_EQ(router.Find("get", "/v1/models").result, Router::Match::Result::kMethodNotAllowed);
}

TEST(RouterDeathTest, DuplicateRouteIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Router router;
  router.Add("GET", "/x", Noop());
  EXPECT_DEATH(router.Add("GET", "/x", Noop()), "registered twice");
  EXPECT_DEATH(router.Add("GET", "relative", Noop()), "");
}

TEST(WireFormatTest, ResponseHeadWithContentLength) {
  HttpHeaders headers{{"X-Request-Id", "abc"}};
  ResponseHead head;
  head.status = 404;
  head.content_type = "text/plain";
  head.headers = &headers;
  head.content_length = 10;
  head.server_name = "tandem";
  EXPECT_EQ(SerializeResponseHead(head, absl::FromUnixSeconds(784111777)),
            "HTTP/1.1 404 Not Found\r\n"
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
            "Server: tandem\r\n"
            "Content-Type: text/plain\r\n"
            "X-Request-Id: abc\r\n"
            "Content-Length: 10\r\n"
            "\r\n");
}

TEST(WireFormatTest, ChunkedClosingAndHttp10) {
  HttpHeaders headers{{"Date", "fixed"}};
  ResponseHead head;
  head.headers = &headers;
  head.framing = ResponseHead::Framing::kChunked;
  head.keep_alive = false;
  EXPECT_EQ(SerializeResponseHead(head, absl::Now()),
            "HTTP/1.1 200 OK\r\nDate: fixed\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n");
  head.version = 10;
  head.framing = ResponseHead::Framing::kUntilClose;
  EXPECT_EQ(SerializeResponseHead(head, absl::Now()), "HTTP/1.0 200 OK\r\nDate: fixed\r\n\r\n");
  head.keep_alive = true;
  head.framing = ResponseHead::Framing::kContentLength;
  EXPECT_EQ(
      SerializeResponseHead(head, absl::Now()),
      "HTTP/1.0 200 OK\r\nDate: fixed\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(ChunkSizeLine(0x1f4), "1f4\r\n");
}

TEST(HttpHeadersTest, CaseInsensitiveLookupKeepsOrder) {
  HttpHeaders headers;
  headers.Add("Content-Type", "a");
  headers.Add("x-multi", "1");
  headers.Add("X-Multi", "2");
  EXPECT_EQ(headers.Get("content-type"), "a");
  EXPECT_EQ(headers.Get("X-MULTI"), "1");
  EXPECT_FALSE(headers.Get("missing").has_value());
  headers.Set("x-multi", "3");
  EXPECT_EQ(headers.size(), 2u);
  EXPECT_EQ(headers.Get("X-Multi"), "3");
}

}  // namespace
}  // namespace tandem::http
