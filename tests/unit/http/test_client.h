// A blocking loopback HTTP client for the server tests: POSIX sockets with poll() timeouts (so a
// server bug fails a test instead of hanging it) and Beast's parser for responses.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/http_server.h"
#include "http/http_types.h"

namespace tandem::http::testing {

using std::chrono_literals::operator""ms;
using std::chrono_literals::operator""s;

struct TestResponse {
  int status = 0;
  int version = 11;
  HttpHeaders headers;
  std::string body;  // de-chunked
  bool keep_alive = true;
  bool chunked = false;
};

class TestClient {
 public:
  // Connects to 127.0.0.1:port; ok() tells whether it worked. `receive_buffer_bytes` > 0 sets
  // SO_RCVBUF first (a small one makes the server's writes back up quickly).
  explicit TestClient(int port, int receive_buffer_bytes = 0);
  ~TestClient();
  TestClient(TestClient&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), pending_(std::move(other.pending_)) {}
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Sends all of `bytes`; false on error.
  bool Send(std::string_view bytes);
  // Reads one response; nullopt on timeout, EOF or a malformed response.
  std::optional<TestResponse> ReadResponse(std::chrono::milliseconds timeout = 5s);
  // Reads until the bytes received (and not yet consumed) contain `needle`; returns them all
  // and consumes them. nullopt on timeout or EOF before that. Linear in the bytes read.
  std::optional<std::string> ReadUntil(std::string_view needle,
                                       std::chrono::milliseconds timeout = 5s);
  // True if the server closes the connection (EOF or reset) within `timeout`, discarding any
  // bytes that arrive first.
  bool WaitForClose(std::chrono::milliseconds timeout = 5s);
  // Raw bytes that arrive within `timeout` (stops early at EOF).
  std::string ReadFor(std::chrono::milliseconds timeout);
  // Half-closes: the server reads EOF after what was sent.
  void ShutdownWrite();
  void Close();

 private:
  // Appends what arrives within `timeout` to pending_: >0 bytes read, 0 on EOF, -1 on timeout or
  // error.
  int ReadSome(std::chrono::milliseconds timeout);

  int fd_ = -1;
  std::string pending_;
};

// "METHOD target HTTP/1.1" with Host, Content-Length when there is a body, and `extra` lines
// (each "Name: value").
std::string RequestText(std::string_view method, std::string_view target,
                        std::string_view body = "", const std::vector<std::string>& extra = {});

// One request on a fresh connection.
std::optional<TestResponse> Fetch(int port, std::string_view method, std::string_view target,
                                  std::string_view body = "",
                                  const std::vector<std::string>& extra = {});

// Creates and starts a server on 127.0.0.1:0 after `routes` registered its handlers.
std::unique_ptr<HttpServer> StartServer(HttpServerOptions options,
                                        const std::function<void(HttpServer&)>& routes);

// Raises the soft RLIMIT_NOFILE to at least `n` (up to the hard limit); returns the new limit.
long RaiseFileLimit(long n);

}  // namespace tandem::http::testing
