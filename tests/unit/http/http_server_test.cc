// Requests and replies: routing, bodies, keep-alive, pipelining, asynchronous answers and the
// server's own answers (404, 405, 500).
#include "http/http_server.h"

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/http/test_client.h"

namespace tandem::http {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace ::tandem::http::testing;

constexpr char kText[] = "text/plain";

// Echoes what the server parsed, one field per line.
void EchoRequest(const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
  std::string body = "method=" + req.method + "\npath=" + req.path + "\nquery=" + req.query +
                     "\nbody=" + req.body +
                     "\nx-custom=" + std::string(req.headers.Get("X-CUSTOM").value_or("<none>")) +
                     "\nremote=" + req.remote_address + "\n";
  r->Reply(200, kText, std::move(body), {{"X-Echo", "yes"}}).IgnoreError();
}

TEST(HttpServerTest, GetAndPostWithBodies) {
  auto server = StartServer({}, [](HttpServer& s) {
    s.Handle("GET", "/echo", EchoRequest);
    s.Handle("POST", "/echo", EchoRequest);
  });
  auto get = Fetch(server->port(), "GET", "/echo?a=1&b=two", "", {"x-custom: Value"});
  ASSERT_TRUE(get.has_value());
  EXPECT_EQ(get->status, 200);
  EXPECT_THAT(get->body, HasSubstr("method=GET\npath=/echo\nquery=a=1&b=two\nbody=\n"));
  EXPECT_THAT(get->body, HasSubstr("x-custom=Value\n"));
  EXPECT_THAT(get->body, HasSubstr("remote=127.0.0.1:"));
  EXPECT_EQ(get->headers.Get("content-type"), "text/plain");
  EXPECT_EQ(get->headers.Get("x-echo"), "yes");
  EXPECT_EQ(get->headers.Get("Server"), "tandem");
  EXPECT_TRUE(get->headers.Has("Date"));

  const std::string payload(100000, 'p');
  auto post = Fetch(server->port(), "POST", "/echo", payload);
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->status, 200);
  EXPECT_THAT(post->body, HasSubstr("method=POST\n"));
  EXPECT_THAT(post->body, HasSubstr("body=" + payload + "\n"));
}

TEST(HttpServerTest, ChunkedRequestBodyIsDecoded) {
  auto server = StartServer({}, [](HttpServer& s) { s.Handle("POST", "/echo", EchoRequest); });
  TestClient client(server->port());
  ASSERT_TRUE(
      client.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(response->body, HasSubstr("body=hello world\n"));
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  std::atomic<int> calls{0};
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/n", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, std::to_string(++calls)).IgnoreError();
    });
  });
  TestClient client(server->port());
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(client.Send(RequestText("GET", "/n")));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.has_value()) << "request " << i;
    EXPECT_EQ(response->body, std::to_string(i));
    EXPECT_TRUE(response->keep_alive);
  }
  EXPECT_EQ(server->connection_count(), 1u);
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  // /slow answers later from another thread; /fast at once. Pipelined slow, fast, slow must
  // come back in that order.
  std::vector<std::thread> repliers;
  std::mutex mu;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/slow", [&](const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
      std::lock_guard<std::mutex> lock(mu);
      repliers.emplace_back([r, q = req.query] {
        std::this_thread::sleep_for(30ms);
        r->Reply(200, kText, "slow " + q).IgnoreError();
      });
    });
    s.Handle("GET", "/fast", [](const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, "fast " + req.query).IgnoreError();
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/slow?1") + RequestText("GET", "/fast?2") +
                          RequestText("GET", "/slow?3")));
  for (const char* expected : {"slow 1", "fast 2", "slow 3"}) {
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.has_value()) << expected;
    EXPECT_EQ(response->body, expected);
  }
  std::lock_guard<std::mutex> lock(mu);
  for (auto& t : repliers) t.join();
}

TEST(HttpServerTest, AsyncReplyFromAnotherThread) {
  std::promise<std::shared_ptr<HttpResponder>> handed_over;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("POST", "/v1/completions", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      handed_over.set_value(std::move(r));  // e.g. to a gRPC callback
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("POST", "/v1/completions", "{}")));
  std::thread worker([&] {
    auto responder = handed_over.get_future().get();
    std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(responder->Reply(200, "application/json", "{\"ok\":true}").ok());
  });
  auto response = client.ReadResponse();
  worker.join();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "{\"ok\":true}");
  EXPECT_EQ(response->headers.Get("Content-Type"), "application/json");
}

TEST(HttpServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  auto noop = [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
    r->Reply(200, kText, "ok").IgnoreError();
  };
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/thing", noop);
    s.Handle("PUT", "/thing", noop);
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/nothing") + RequestText("DELETE", "/thing") +
                          RequestText("GET", "/thing")));
  auto not_found = client.ReadResponse();
  ASSERT_TRUE(not_found.has_value());
  EXPECT_EQ(not_found->status, 404);
  auto not_allowed = client.ReadResponse();
  ASSERT_TRUE(not_allowed.has_value());
  EXPECT_EQ(not_allowed->status, 405);
  EXPECT_EQ(not_allowed->headers.Get("Allow"), "GET, PUT");
  auto ok = client.ReadResponse();  // the connection survived both
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, 200);
}

TEST(HttpServerTest, PrefixRoutesAndExactRoutesShadowingThem) {
  auto reply_with = [](std::string text) {
    return [text](const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, text + " " + req.path).IgnoreError();
    };
  };
  auto server = StartServer({}, [&](HttpServer& s) {
    s.HandlePrefix("GET", "/v1/", reply_with("v1"));
    s.HandlePrefix("GET", "/v1/models/", reply_with("models"));
    s.Handle("GET", "/v1/models/special", reply_with("exact"));
  });
  EXPECT_EQ(Fetch(server->port(), "GET", "/v1/anything")->body, "v1 /v1/anything");
  EXPECT_EQ(Fetch(server->port(), "GET", "/v1/models/x")->body, "models /v1/models/x");
  EXPECT_EQ(Fetch(server->port(), "GET", "/v1/models/special")->body, "exact /v1/models/special");
  EXPECT_EQ(Fetch(server->port(), "GET", "/v2/x")->status, 404);
  EXPECT_EQ(Fetch(server->port(), "POST", "/v1/x", "b")->status, 405);
}

TEST(HttpServerTest, DroppedResponderGets500AndServerKeepsServing) {
  auto server = StartServer({}, [](HttpServer& s) {
    s.Handle("GET", "/forgetful", [](const HttpRequest&, std::shared_ptr<HttpResponder>) {});
    s.Handle("GET", "/throws", [](const HttpRequest&, std::shared_ptr<HttpResponder>) {
      throw std::runtime_error("boom");
    });
    s.Handle("GET", "/ok", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, "ok").IgnoreError();
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/forgetful") + RequestText("GET", "/throws") +
                          RequestText("GET", "/ok")));
  EXPECT_EQ(client.ReadResponse()->status, 500);
  EXPECT_EQ(client.ReadResponse()->status, 500);
  EXPECT_EQ(client.ReadResponse()->status, 200);
}

TEST(HttpServerTest, ResponderReportsMisuse) {
  std::promise<std::vector<absl::Status>> results;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/misuse", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      std::vector<absl::Status> out;
      out.push_back(r->Write("early"));                                              // 0
      out.push_back(r->End());                                                       // 1
      out.push_back(r->Reply(99, kText, "x"));                                       // 2
      out.push_back(r->Reply(200, kText, "x", {{"Content-Length", "1"}}));           // 3
      out.push_back(r->Reply(200, kText, "x", {{"X-Evil", "a\r\nSet-Cookie: b"}}));  // 4
      out.push_back(r->Reply(200, kText, "x", {{"Bad Name", "v"}}));                 // 5
      out.push_back(r->Reply(200, kText, "first"));                                  // 6
      out.push_back(r->Reply(200, kText, "second"));                                 // 7
      out.push_back(r->StartStream(200, kText));                                     // 8
      results.set_value(std::move(out));
    });
  });
  auto response = Fetch(server->port(), "GET", "/misuse");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "first");
  EXPECT_FALSE(response->headers.Has("Set-Cookie"));
  const auto statuses = results.get_future().get();
  EXPECT_EQ(statuses[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(statuses[1].code(), absl::StatusCode::kFailedPrecondition);
  for (int i : {2, 3, 4, 5}) EXPECT_EQ(statuses[i].code(), absl::StatusCode::kInvalidArgument) << i;
  EXPECT_TRUE(statuses[6].ok());
  EXPECT_EQ(statuses[7].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(statuses[8].code(), absl::StatusCode::kFailedPrecondition);
}

TEST(HttpServerTest, Http10ClosesUnlessKeepAliveAsked) {
  auto server = StartServer({}, [](HttpServer& s) {
    s.Handle("GET", "/", [](const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, "v" + std::to_string(req.version)).IgnoreError();
    });
  });
  {
    TestClient client(server->port());
    ASSERT_TRUE(client.Send("GET / HTTP/1.0\r\n\r\n"));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->body, "v10");
    EXPECT_EQ(response->version, 10);
    EXPECT_TRUE(client.WaitForClose(2s));
  }
  {
    TestClient client(server->port());
    ASSERT_TRUE(client.Send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->headers.Get("Connection"), "keep-alive");
    ASSERT_TRUE(client.Send("GET / HTTP/1.0\r\n\r\n"));
    EXPECT_EQ(client.ReadResponse()->body, "v10");
  }
  {
    TestClient client(server->port());  // HTTP/1.1 with Connection: close
    ASSERT_TRUE(client.Send(RequestText("GET", "/", "", {"Connection: close"})));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->headers.Get("Connection"), "close");
    EXPECT_TRUE(client.WaitForClose(2s));
  }
}

TEST(HttpServerTest, HeadGetsHeadersWithoutBody) {
  auto server = StartServer({}, [](HttpServer& s) {
    s.Handle("HEAD", "/x", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, "twelve bytes").IgnoreError();
    });
    s.Handle("GET", "/y", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->Reply(200, kText, "y").IgnoreError();
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send("HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n" + RequestText("GET", "/y")));
  auto raw = client.ReadUntil("\r\n\r\ny");
  ASSERT_TRUE(raw.has_value());
  EXPECT_THAT(*raw, HasSubstr("Content-Length: 12\r\n"));
  EXPECT_THAT(*raw, Not(HasSubstr("twelve")));
}

TEST(HttpServerTest, ExpectContinueGetsInterimResponse) {
  auto server = StartServer({}, [](HttpServer& s) { s.Handle("POST", "/echo", EchoRequest); });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = client.ReadResponse(2s);
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.Send("data"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(response->body, HasSubstr("body=data\n"));
}

TEST(HttpServerTest, PortZeroGivesARealPortAndBusyPortFails) {
  auto server = StartServer({}, nullptr);
  EXPECT_GT(server->port(), 0);
  TestClient client(server->port());
  EXPECT_TRUE(client.ok());

  HttpServerOptions taken;
  taken.address = "127.0.0.1";
  taken.port = server->port();
  auto second = HttpServer::Create(taken);
  ASSERT_TRUE(second.ok());
  const absl::Status status = (*second)->Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ((*second)->port(), 0);
}

TEST(HttpServerTest, CreateRejectsBadOptions) {
  HttpServerOptions bad_address;
  bad_address.address = "localhost:80";
  EXPECT_EQ(HttpServer::Create(bad_address).status().code(), absl::StatusCode::kInvalidArgument);
  HttpServerOptions bad_port;
  bad_port.port = 70000;
  EXPECT_EQ(HttpServer::Create(bad_port).status().code(), absl::StatusCode::kInvalidArgument);
  HttpServerOptions no_threads;
  no_threads.threads = 0;
  EXPECT_EQ(HttpServer::Create(no_threads).status().code(), absl::StatusCode::kInvalidArgument);
  HttpServerOptions no_timeout;
  no_timeout.idle_timeout = absl::ZeroDuration();
  EXPECT_EQ(HttpServer::Create(no_timeout).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpServerTest, AccessObserverSeesEveryExchange) {
  std::mutex mu;
  std::vector<std::string> seen;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/a", [](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->Reply(201, kText, "").IgnoreError();
    });
    s.SetAccessObserver([&](const HttpAccessRecord& record) {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(std::string(record.method) + " " + std::string(record.route) + " " +
                     std::to_string(record.status) + (record.completed ? "" : " aborted"));
    });
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/a") + RequestText("GET", "/b")));
  ASSERT_TRUE(client.ReadResponse().has_value());
  ASSERT_TRUE(client.ReadResponse().has_value());
  server->Stop(absl::Seconds(1));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(seen, ::testing::ElementsAre("GET /a 201", "GET  404"));
}

}  // namespace
}  // namespace tandem::http
