// Routing and response serialisation, without sockets.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/route_table.h"
#include "http/wire_format.h"

namespace tandem::http {
namespace {

HttpHandler Noop() {
  return [](const HttpRequest&, std::shared_ptr<HttpResponder>) {};
}

TEST(RouteTableTest, ExactThenLongestPrefixThen405Then404) {
  RouteTable routes;
  routes.Add("GET", "/v1/models", Noop());
  routes.Add("POST", "/v1/chat/completions", Noop());
  routes.AddPrefix("GET", "/v1/", Noop());
  routes.AddPrefix("DELETE", "/v1/models/", Noop());

  auto exact = routes.Find("GET", "/v1/models");
  EXPECT_EQ(exact.result, RouteTable::Match::Result::kFound);
  EXPECT_EQ(exact.route, "/v1/models");

  auto prefix = routes.Find("DELETE", "/v1/models/m1");
  EXPECT_EQ(prefix.result, RouteTable::Match::Result::kFound);
  EXPECT_EQ(prefix.route, "/v1/models/*");

  // The longest prefix owns the path: GET is not allowed there, even though /v1/ has GET.
  auto longest = routes.Find("GET", "/v1/models/m1");
  EXPECT_EQ(longest.result, RouteTable::Match::Result::kMethodNotAllowed);
  EXPECT_EQ(longest.allow, "DELETE");

  auto wrong_method = routes.Find("GET", "/v1/chat/completions");
  EXPECT_EQ(wrong_method.result, RouteTable::Match::Result::kMethodNotAllowed);
  EXPECT_EQ(wrong_method.allow, "POST");

  EXPECT_EQ(routes.Find("GET", "/v2").result, RouteTable::Match::Result::kNotFound);
  EXPECT_EQ(routes.Find("get", "/v1/models").result, RouteTable::Match::Result::kMethodNotAllowed);
}

TEST(RouterDeathTest, DuplicateRouteIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  RouteTable routes;
  routes.Add("GET", "/x", Noop());
  EXPECT_DEATH(routes.Add("GET", "/x", Noop()), "registered twice");
  EXPECT_DEATH(routes.Add("GET", "relative", Noop()), "");
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
