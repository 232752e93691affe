// Streamed responses (Server-Sent Events over chunked encoding): prompt delivery, order,
// backpressure, and noticing a client that goes away.
#include <atomic>
#include <future>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/http_server.h"
#include "unit/http/test_client.h"

namespace tandem::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace ::tandem::http::testing;
using Clock = std::chrono::steady_clock;

constexpr char kSse[] = "text/event-stream";

// Waits up to `timeout` for `predicate`.
template <typename Predicate>
bool Eventually(Predicate predicate, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// A server whose /stream handler starts an SSE stream, writes `first`, and hands the responder
// to the test.
struct StreamFixture {
  explicit StreamFixture(std::string first = "data: one\n\n",
                         std::function<void(HttpResponder&)> on_request = nullptr) {
    server = StartServer({}, [&, first, on_request](HttpServer& s) {
      s.Handle("POST", "/stream",
               [&, first, on_request](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
                 if (on_request) on_request(*r);
                 EXPECT_TRUE(r->StartStream(200, kSse, {{"Cache-Control", "no-cache"}}).ok());
                 if (!first.empty()) {
                   EXPECT_TRUE(r->Write(first).ok());
                 }
                 handed.set_value(std::move(r));
               });
      s.Handle("GET", "/ping", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
        r->Reply(200, "text/plain", "pong").IgnoreError();
      });
    });
  }
  std::shared_ptr<HttpResponder> Responder() {
    auto future = handed.get_future();
    EXPECT_EQ(future.wait_for(5s), std::future_status::ready);
    return future.get();
  }

  std::promise<std::shared_ptr<HttpResponder>> handed;
  std::unique_ptr<HttpServer> server;
};

TEST(HttpStreamingTest, SseChunkArrivesBeforeTheNextWrite) {
  StreamFixture f;
  TestClient client(f.server->port());
  ASSERT_TRUE(client.Send(RequestText("POST", "/stream", "{\"stream\":true}")));
  // The handler has written only the first event: it must reach the client now, not at End().
  auto first = client.ReadUntil("data: one\n\n");
  ASSERT_TRUE(first.has_value()) << "first event not delivered before End()";
  EXPECT_THAT(*first, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(*first, HasSubstr("Content-Type: text/event-stream\r\n"));
  EXPECT_THAT(*first, HasSubstr("Transfer-Encoding: chunked\r\n"));
  EXPECT_THAT(*first, HasSubstr("Cache-Control: no-cache\r\n"));

  auto r = f.Responder();
  ASSERT_TRUE(r->Write("data: two\n\n").ok());
  auto second = client.ReadUntil("data: two\n\n");
  ASSERT_TRUE(second.has_value());
  EXPECT_THAT(*second, Not(HasSubstr("0\r\n\r\n")));
  ASSERT_TRUE(r->Write("data: [DONE]\n\n").ok());
  ASSERT_TRUE(r->End().ok());
  auto rest = client.ReadUntil("0\r\n\r\n");
  ASSERT_TRUE(rest.has_value());
  EXPECT_THAT(*rest, HasSubstr("data: [DONE]\n\n"));
  EXPECT_TRUE(Eventually([&] { return r->closed(); }));
  EXPECT_EQ(r->Write("late").code(), absl::StatusCode::kCancelled);

  // The connection stays usable after the stream.
  ASSERT_TRUE(client.Send(RequestText("GET", "/ping")));
  auto pong = client.ReadResponse();
  ASSERT_TRUE(pong.has_value());
  EXPECT_EQ(pong->body, "pong");
}

TEST(HttpStreamingTest, WholeStreamParsesAsChunkedResponseInOrder) {
  StreamFixture f("");
  TestClient client(f.server->port());
  ASSERT_TRUE(client.Send(RequestText("POST", "/stream", "x")));
  auto r = f.Responder();
  std::string expected;
  std::thread producer([&] {
    for (int i = 0; i < 2000; ++i)
      ASSERT_TRUE(r->Write("data: " + std::to_string(i) + "\n\n").ok());
    ASSERT_TRUE(r->End().ok());
  });
  for (int i = 0; i < 2000; ++i) expected += "data: " + std::to_string(i) + "\n\n";
  auto response = client.ReadResponse();
  producer.join();
  ASSERT_TRUE(response.has_value());
  EXPECT_TRUE(response->chunked);
  EXPECT_EQ(response->body, expected);
}

TEST(HttpStreamingTest, ClientDisconnectMidStreamFiresOnClosePromptly) {
  std::promise<void> closed;
  StreamFixture f("data: one\n\n",
                  [&](HttpResponder& r) { r.OnClose([&] { closed.set_value(); }); });
  TestClient client(f.server->port());
  ASSERT_TRUE(client.Send(RequestText("POST", "/stream", "{}")));
  ASSERT_TRUE(client.ReadUntil("data: one\n\n").has_value());
  auto r = f.Responder();
  EXPECT_FALSE(r->closed());

  const auto t0 = Clock::now();
  client.Close();
  ASSERT_EQ(closed.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_LT(Clock::now() - t0, 1s) << "disconnect noticed too late to cancel work";
  EXPECT_TRUE(r->closed());
  EXPECT_EQ(r->Write("data: two\n\n").code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(r->End().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(Eventually([&] { return f.server->connection_count() == 0; }));
}

TEST(HttpStreamingTest, DisconnectBeforeAnyResponseFiresOnClose) {
  // A handler still waiting for its first token (a long prefill) learns the client left.
  std::promise<std::shared_ptr<HttpResponder>> handed;
  std::promise<void> closed;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("POST", "/v1/chat/completions",
             [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
               r->OnClose([&] { closed.set_value(); });
               handed.set_value(std::move(r));
             });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("POST", "/v1/chat/completions", "{}")));
  auto r = handed.get_future().get();
  client.Close();
  ASSERT_EQ(closed.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(r->Reply(200, "text/plain", "too late").code(), absl::StatusCode::kCancelled);
}

TEST(HttpStreamingTest, QueuedBytesReportBackpressureAndDrain) {
  StreamFixture f("");
  TestClient client(f.server->port(), /*receive_buffer_bytes=*/4096);
  ASSERT_TRUE(client.Send(RequestText("POST", "/stream", "x")));
  ASSERT_TRUE(client.ReadUntil("\r\n\r\n").has_value());  // response head
  auto r = f.Responder();

  // The client reads nothing: once the socket buffers are full, writes pile up in the queue.
  const std::string chunk(64 << 10, 'x');
  size_t written = 0;
  while (r->queued_bytes() < (2u << 20)) {
    ASSERT_TRUE(r->Write(chunk).ok());
    written += chunk.size();
    ASSERT_LT(written, 512u << 20) << "queued_bytes() never grew";
  }
  EXPECT_GE(r->queued_bytes(), 2u << 20);
  ASSERT_TRUE(r->End().ok());

  // Now the client reads; everything arrives and the queue drains.
  std::string body;
  auto rest = client.ReadUntil("\r\n0\r\n\r\n", 60s);
  ASSERT_TRUE(rest.has_value());
  size_t payload = 0;
  for (size_t pos = 0; pos < rest->size();) {  // sum the chunk sizes
    const size_t eol = rest->find("\r\n", pos);
    const size_t size = std::stoul(rest->substr(pos, eol - pos), nullptr, 16);
    payload += size;
    pos = eol + 2 + size + 2;
    if (size == 0) break;
  }
  EXPECT_EQ(payload, written);
  EXPECT_TRUE(Eventually([&] { return r->queued_bytes() == 0 && r->closed(); }));
}

TEST(HttpStreamingTest, AbandonedStreamIsCutNotCompleted) {
  auto server = StartServer({}, [](HttpServer& s) {
    s.Handle("GET", "/stream", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->StartStream(200, kSse).IgnoreError();
      r->Write("data: partial\n\n").IgnoreError();
      // Dropped without End(): the client must not see a complete response.
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/stream")));
  auto got = client.ReadUntil("data: partial\n\n");
  ASSERT_TRUE(got.has_value());
  const std::string tail = client.ReadFor(2s);  // stops at EOF
  EXPECT_THAT(*got + tail, Not(HasSubstr("0\r\n\r\n")));
  EXPECT_TRUE(client.WaitForClose(1s));
}

TEST(HttpStreamingTest, Http10StreamEndsByClosing) {
  StreamFixture f("a");
  TestClient client(f.server->port());
  ASSERT_TRUE(client.Send("POST /stream HTTP/1.0\r\nContent-Length: 0\r\n\r\n"));
  auto r = f.Responder();
  ASSERT_TRUE(r->Write("b").ok());
  ASSERT_TRUE(r->End().ok());
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_FALSE(response->chunked);
  EXPECT_EQ(response->body, "ab");
}

TEST(HttpStreamingTest, OnCloseAfterTheEndRunsAtOnce) {
  StreamFixture f("");
  TestClient client(f.server->port());
  ASSERT_TRUE(client.Send(RequestText("POST", "/stream", "x")));
  auto r = f.Responder();
  ASSERT_TRUE(r->End().ok());
  ASSERT_TRUE(client.ReadResponse().has_value());
  ASSERT_TRUE(Eventually([&] { return r->closed(); }));
  bool ran = false;
  r->OnClose([&] { ran = true; });
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace tandem::http
