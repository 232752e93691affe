// Hostile and heavy load: limits, malformed input, timeouts, many connections, and Stop().
#include <atomic>
#include <future>
#include <random>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/http_server.h"
#include "unit/http/test_client.h"

namespace tandem::http {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using namespace ::tandem::http::testing;
using Clock = std::chrono::steady_clock;

void Ok(const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
  r->Reply(200, "text/plain", "ok " + std::to_string(req.body.size())).IgnoreError();
}

void ExpectServing(const HttpServer& server) {
  auto response = Fetch(server.port(), "GET", "/ok");
  ASSERT_TRUE(response.has_value()) << "server stopped serving";
  EXPECT_EQ(response->status, 200);
}

std::unique_ptr<HttpServer> OkServer(HttpServerOptions options = {}) {
  return StartServer(std::move(options), [](HttpServer& s) {
    s.Handle("GET", "/ok", Ok);
    s.Handle("POST", "/ok", Ok);
  });
}

TEST(HttpLimitsTest, OversizeHeaderGets431AndServerKeepsServing) {
  HttpServerOptions options;
  options.max_header_bytes = 1024;
  auto server = OkServer(options);
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/ok", "", {"X-Big: " + std::string(4000, 'a')})));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 431);
  EXPECT_EQ(response->headers.Get("Connection"), "close");
  EXPECT_TRUE(client.WaitForClose(3s));
  // Just under the limit is fine.
  auto fits = Fetch(server->port(), "GET", "/ok", "", {"X-Big: " + std::string(800, 'a')});
  ASSERT_TRUE(fits.has_value());
  EXPECT_EQ(fits->status, 200);
}

// Past max_connections a new connection gets a 503 with Retry-After and is closed; the open
// ones are served, and room frees up as they close.
TEST(HttpLimitsTest, ConnectionsOverTheCapGet503AndRoomFreesUp) {
  HttpServerOptions options;
  options.max_connections = 2;
  auto server = OkServer(options);
  auto first = std::make_unique<TestClient>(server->port());
  TestClient second(server->port());
  ASSERT_TRUE(first->Send(RequestText("GET", "/ok", "", {})));
  ASSERT_TRUE(first->ReadResponse().has_value());  // both are open and counted now
  ASSERT_TRUE(second.Send(RequestText("GET", "/ok", "", {})));
  ASSERT_TRUE(second.ReadResponse().has_value());
  TestClient third(server->port());
  auto refused = third.ReadResponse(3s);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->headers.Get("Retry-After"), "1");
  EXPECT_TRUE(third.WaitForClose(3s));
  first.reset();
  std::optional<int> status;
  for (int i = 0; i < 50 && status != 200; ++i) {  // the server notices the close
    auto r = Fetch(server->port(), "GET", "/ok", "", {});
    status = r.has_value() ? std::optional<int>(r->status) : std::nullopt;
    if (status != 200) std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(status, 200);
}

TEST(HttpLimitsTest, OversizeBodyGets413WithoutReadingIt) {
  HttpServerOptions options;
  options.max_body_bytes = 1 << 20;
  auto server = OkServer(options);
  {
    // Declared too large: answered from the header alone, before any body byte is sent.
    TestClient client(server->port());
    ASSERT_TRUE(client.Send("POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n"));
    auto response = client.ReadResponse(2s);
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 413);
  }
  {
    // Chunked, found too large on the way; the client still gets the answer, not a reset.
    TestClient client(server->port());
    std::string request = "POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 40; ++i) request += "8000\r\n" + std::string(0x8000, 'b') + "\r\n";
    request += "0\r\n\r\n";
    ASSERT_TRUE(client.Send(request));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 413);
  }
  auto at_limit = Fetch(server->port(), "POST", "/ok", std::string(1 << 20, 'c'));
  ASSERT_TRUE(at_limit.has_value());
  EXPECT_EQ(at_limit->body, "ok 1048576");
}

TEST(HttpLimitsTest, MalformedRequestsGet400OrCloseAndNeverCrash) {
  auto server = OkServer();
  const std::vector<std::string> bad = {
      "GARBAGE\r\n\r\n",
      "GET\r\n\r\n",
      "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\x02\r\n\r\n",
      "GET / HTTP/1.1\r\n\x00\x00\x00\r\n\r\n",
      "G\xffT / HTTP/1.1\r\n\r\n",
      "GET / HTTP/12.7\r\n\r\n",
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // a TLS ClientHello
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",                               // HTTP/2 preface
  };
  for (const std::string& input : bad) {
    TestClient client(server->port());
    ASSERT_TRUE(client.Send(input));
    client.ShutdownWrite();  // an incomplete request then ends in EOF instead of a timeout
    const auto t0 = Clock::now();
    const std::string reply = client.ReadFor(3s);
    EXPECT_LT(Clock::now() - t0, 2s) << "connection left open: " << ::testing::PrintToString(input);
    if (!reply.empty()) {
      EXPECT_THAT(reply, AnyOf(HasSubstr("HTTP/1.1 400 "), HasSubstr("HTTP/1.1 404 "),
                               HasSubstr("HTTP/1.1 505 ")))
          << "input: " << ::testing::PrintToString(input);
    }
  }
  ExpectServing(*server);

  // Seeded random bytes, some after a valid request line.
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(1, 3000);
  for (int i = 0; i < 100; ++i) {
    std::string input = i % 2 == 0 ? "POST /ok HTTP/1.1\r\n" : "";
    const int n = length(rng);
    for (int j = 0; j < n; ++j) input.push_back(static_cast<char>(byte(rng)));
    TestClient client(server->port());
    ASSERT_TRUE(client.ok());
    client.Send(input);  // the server may close before reading everything
  }
  ExpectServing(*server);
}

TEST(HttpLimitsTest, IdleConnectionsCloseAfterIdleTimeout) {
  HttpServerOptions options;
  options.idle_timeout = absl::Milliseconds(200);
  auto server = OkServer(options);
  TestClient client(server->port());
  // One request, then silence: the keep-alive connection is closed after ~200ms.
  ASSERT_TRUE(client.Send(RequestText("GET", "/ok")));
  ASSERT_TRUE(client.ReadResponse().has_value());
  const auto t0 = Clock::now();
  EXPECT_TRUE(client.WaitForClose(3s));
  EXPECT_GE(Clock::now() - t0, 150ms);
}

TEST(HttpLimitsTest, SlowRequestClosedAfterReadTimeout) {
  HttpServerOptions options;
  options.read_timeout = absl::Milliseconds(300);
  auto server = OkServer(options);
  TestClient client(server->port());
  const auto t0 = Clock::now();
  ASSERT_TRUE(client.Send("GET /ok HTTP/1.1\r\nHo"));  // and nothing more
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE(client.Send("st: a\r\n"));  // trickling does not extend the deadline
  EXPECT_TRUE(client.WaitForClose(3s));
  EXPECT_GE(Clock::now() - t0, 250ms);
  ExpectServing(*server);
}

TEST(HttpLimitsTest, ThousandsOfIdleConnectionsDoNotBlockService) {
  constexpr int kIdle = 2000;
  if (RaiseFileLimit(2 * kIdle + 200) < 2 * kIdle + 100) {
    GTEST_SKIP() << "RLIMIT_NOFILE too low for " << kIdle << " connections";
  }
  auto server = OkServer();
  std::vector<TestClient> idle;
  idle.reserve(kIdle);
  for (int i = 0; i < kIdle; ++i) {
    idle.emplace_back(server->port());
    ASSERT_TRUE(idle.back().ok()) << "connection " << i;
  }
  const auto deadline = Clock::now() + 20s;
  while (server->connection_count() < static_cast<size_t>(kIdle) && Clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(server->connection_count(), static_cast<size_t>(kIdle));

  const auto t0 = Clock::now();
  ExpectServing(*server);
  EXPECT_LT(Clock::now() - t0, 1s);
  // The idle ones are still alive and usable.
  for (int i : {0, kIdle / 2, kIdle - 1}) {
    ASSERT_TRUE(idle[i].Send(RequestText("GET", "/ok")));
    auto response = idle[i].ReadResponse();
    ASSERT_TRUE(response.has_value()) << i;
    EXPECT_EQ(response->status, 200);
  }
  const auto stop0 = Clock::now();
  server->Stop(absl::Seconds(10));  // idle connections do not hold Stop() up
  EXPECT_LT(Clock::now() - stop0, 3s);
}

TEST(HttpLimitsTest, StopWithOpenStreamCompletesWithinGrace) {
  std::promise<std::shared_ptr<HttpResponder>> handed;
  std::promise<void> closed;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/stream", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->OnClose([&] { closed.set_value(); });
      r->StartStream(200, "text/event-stream").IgnoreError();
      r->Write("data: 1\n\n").IgnoreError();
      handed.set_value(std::move(r));  // never ended
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/stream")));
  ASSERT_TRUE(client.ReadUntil("data: 1\n\n").has_value());
  auto r = handed.get_future().get();

  const auto t0 = Clock::now();
  server->Stop(absl::Milliseconds(300));
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, 250ms) << "the stream got no grace period";
  EXPECT_LT(took, 2s);
  EXPECT_EQ(closed.get_future().wait_for(0s), std::future_status::ready);
  EXPECT_TRUE(r->closed());
  EXPECT_EQ(r->Write("data: 2\n\n").code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(client.WaitForClose(1s));
  EXPECT_EQ(server->connection_count(), 0u);
}

TEST(HttpLimitsTest, StopLetsAnInFlightResponseFinish) {
  std::thread replier;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/slow", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      replier = std::thread([r] {
        std::this_thread::sleep_for(150ms);
        r->Reply(200, "text/plain", "finished").IgnoreError();
      });
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/slow")));
  std::this_thread::sleep_for(30ms);  // the handler has run
  const auto t0 = Clock::now();
  server->Stop(absl::Seconds(10));
  EXPECT_LT(Clock::now() - t0, 3s);
  replier.join();
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "finished");
  EXPECT_EQ(response->headers.Get("Connection"), "close");
  // New connections are refused once stopped.
  TestClient late(server->port());
  EXPECT_TRUE(!late.ok() || !late.Send(RequestText("GET", "/slow")) || late.WaitForClose(1s));
}

TEST(HttpLimitsTest, DestroyingARunningServerIsSafeWithRespondersAlive) {
  std::shared_ptr<HttpResponder> kept;
  {
    std::promise<std::shared_ptr<HttpResponder>> handed;
    auto server = StartServer({}, [&](HttpServer& s) {
      s.Handle("GET", "/hold", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
        handed.set_value(std::move(r));
      });
    });
    TestClient client(server->port());
    ASSERT_TRUE(client.Send(RequestText("GET", "/hold")));
    auto future = handed.get_future();
    ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
    kept = future.get();
  }  // server destroyed (no grace) while the responder is held
  EXPECT_TRUE(kept->closed());
  EXPECT_EQ(kept->Reply(200, "text/plain", "x").code(), absl::StatusCode::kCancelled);
  kept.reset();  // must not touch the dead server
}

}  // namespace
}  // namespace tandem::http
