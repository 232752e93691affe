#include "unit/http/test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "common/check.h"
#include "fmt/format.h"

namespace tandem::http::testing {

namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

TestClient::TestClient(int port, int receive_buffer_bytes) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  if (receive_buffer_bytes > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof(receive_buffer_bytes));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

TestClient::~TestClient() { Close(); }

void TestClient::ShutdownWrite() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void TestClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool TestClient::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

int TestClient::ReadSome(std::chrono::milliseconds timeout) {
  if (fd_ < 0) return -1;
  pollfd p{fd_, POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (ready <= 0) return -1;
  char buf[16384];
  const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n < 0) return errno == ECONNRESET ? 0 : -1;
  pending_.append(buf, static_cast<size_t>(n));
  return static_cast<int>(n);
}

std::optional<TestResponse> TestClient::ReadResponse(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1ull << 30);
  parser.eager(true);
  for (;;) {
    boost::system::error_code ec;
    if (!pending_.empty()) {
      const size_t used = parser.put(boost::asio::buffer(pending_), ec);
      pending_.erase(0, used);
      if (ec && ec != bhttp::error::need_more) return std::nullopt;
      if (parser.is_done()) break;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    const int n = ReadSome(left);
    if (n < 0) return std::nullopt;
    if (n == 0) {  // EOF: completes a body delimited by the connection's end
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return std::nullopt;
      break;
    }
  }
  auto message = parser.release();
  TestResponse response;
  response.status = static_cast<int>(message.result_int());
  response.version = message.version();
  for (const auto& field : message) {
    response.headers.Add(std::string(field.name_string()), std::string(field.value()));
  }
  response.body = std::move(message.body());
  response.keep_alive = message.keep_alive();
  response.chunked = message.chunked();
  return response;
}

std::optional<std::string> TestClient::ReadUntil(std::string_view needle,
                                                 std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  size_t searched = 0;  // no match starts before this
  while (pending_.find(needle, searched) == std::string::npos) {
    searched = pending_.size() >= needle.size() ? pending_.size() - needle.size() + 1 : 0;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (ReadSome(left) <= 0) return std::nullopt;
  }
  return std::exchange(pending_, std::string());
}

bool TestClient::WaitForClose(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    const int n = ReadSome(left);
    if (n == 0) return true;
    if (n < 0) return false;
    pending_.clear();
  }
}

std::string TestClient::ReadFor(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || ReadSome(left) <= 0) break;
  }
  return std::exchange(pending_, std::string());
}

std::string RequestText(std::string_view method, std::string_view target, std::string_view body,
                        const std::vector<std::string>& extra) {
  std::string text = fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\n", method, target);
  for (const std::string& line : extra) text += line + "\r\n";
  if (!body.empty() || method == "POST") text += fmt::format("Content-Length: {}\r\n", body.size());
  text += "\r\n";
  text += body;
  return text;
}

std::optional<TestResponse> Fetch(int port, std::string_view method, std::string_view target,
                                  std::string_view body, const std::vector<std::string>& extra) {
  TestClient client(port);
  if (!client.ok() || !client.Send(RequestText(method, target, body, extra))) return std::nullopt;
  return client.ReadResponse();
}

std::unique_ptr<HttpServer> StartServer(HttpServerOptions options,
                                        const std::function<void(HttpServer&)>& routes) {
  options.address = "127.0.0.1";
  options.port = 0;
  auto server = HttpServer::Create(std::move(options));
  TANDEM_CHECK(server.ok()) << server.status().ToString();
  if (routes) routes(**server);
  const absl::Status started = (*server)->Start();
  TANDEM_CHECK(started.ok()) << started.ToString();
  return *std::move(server);
}

long RaiseFileLimit(long n) {
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur == RLIM_INFINITY || static_cast<long>(limit.rlim_cur) >= n) {
    return static_cast<long>(limit.rlim_cur);
  }
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? n : std::min<rlim_t>(n, limit.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &limit);
  ::getrlimit(RLIMIT_NOFILE, &limit);
  return static_cast<long>(limit.rlim_cur);
}

}  // namespace tandem::http::testing
