#include "http/http_server.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "common/check.h"
#include "common/logging.h"
#include "common/strings.h"
#include "http/connection.h"

namespace tandem::http {
namespace internal {
namespace {

using boost::system::error_code;

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = GetLogger("http");
  return *logger;
}

Clock::duration ToClock(absl::Duration d) {
  return std::chrono::duration_cast<Clock::duration>(absl::ToChronoNanoseconds(d));
}

// After an accept error such as EMFILE, retry after this instead of spinning.
constexpr std::chrono::milliseconds kAcceptBackoff(100);
// How long Stop() waits for force-closed connections to finish closing.
constexpr std::chrono::seconds kForceCloseWait(5);

}  // namespace

// The server's state behind the pimpl: the I/O context and threads, the acceptor and the table
// of open connections. The acceptor lives on its own strand; the table is guarded by mu_.
class ServerCore final : public ConnectionHost {
 public:
  ServerCore(HttpServerOptions options, net::ip::address address)
      : options_(std::move(options)),
        address_(address),
        io_(std::max(options_.threads, 1)),
        acceptor_(net::make_strand(io_)),
        accept_backoff_(acceptor_.get_executor()) {
    config_.max_header_bytes = options_.max_header_bytes;
    config_.max_body_bytes = options_.max_body_bytes;
    config_.idle_timeout = ToClock(options_.idle_timeout);
    config_.read_timeout = ToClock(options_.read_timeout);
    config_.write_timeout = ToClock(options_.idle_timeout);
    config_.linger_timeout = std::min(config_.linger_timeout, config_.idle_timeout);
    config_.server_name = options_.server_name;
  }

  ~ServerCore() override { Stop(absl::ZeroDuration()); }

  RouteTable& mutable_routes() {
    TANDEM_CHECK(!started_) << "routes must be registered before Start()";
    return routes_;
  }

  void SetAccessObserver(std::function<void(const HttpAccessRecord&)> observer) {
    TANDEM_CHECK(!started_) << "SetAccessObserver() must be called before Start()";
    observer_ = std::move(observer);
  }

  absl::Status Start();
  void Stop(absl::Duration grace);
  int port() const { return port_.load(); }

  size_t connection_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return connections_.size();
  }

  // ConnectionHost.
  const ConnectionConfig& config() const override { return config_; }
  const RouteTable& routes() const override { return routes_; }
  bool stopping() const override { return stopping_.load(std::memory_order_acquire); }
  void OnAccess(const HttpAccessRecord& record) override {
    if (observer_) observer_(record);
  }
  void OnConnectionClosed(Connection* connection) override;

 private:
  void DoAccept();
  void OnAccept(error_code ec, tcp::socket socket);
  void RefuseOverCap(tcp::socket socket);
  std::vector<std::shared_ptr<Connection>> SnapshotConnections() const;
  // Waits until no connection is open or `deadline`; true if none is open.
  bool WaitForNoConnections(std::optional<Clock::time_point> deadline);

  const HttpServerOptions options_;
  const net::ip::address address_;
  ConnectionConfig config_;
  RouteTable routes_;
  std::function<void(const HttpAccessRecord&)> observer_;

  // Declared first among the I/O objects so that it is destroyed last.
  net::io_context io_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_backoff_;
  std::atomic<uint64_t> refused_over_cap_{0};
  std::vector<std::thread> threads_;

  std::atomic<int> port_{0};
  std::atomic<bool> stopping_{false};
  bool started_ = false;  // Start/Stop are called from one thread at a time
  bool stopped_ = false;

  mutable std::mutex mu_;
  std::condition_variable no_connections_;
  std::unordered_map<Connection*, std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

absl::Status ServerCore::Start() {
  if (started_) return absl::FailedPreconditionError("HttpServer::Start() called twice");
  const tcp::endpoint endpoint(address_, static_cast<unsigned short>(options_.port));
  const std::string where = StrCat(options_.address, ":", options_.port);
  error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    acceptor_.close(ignored);
    return absl::UnavailableError(StrCat("cannot listen on ", where, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint(ec).port();
  started_ = true;
  work_.emplace(io_.get_executor());
  threads_.reserve(options_.threads);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] {
      // A handler that throws must not take the server down (nor std::terminate the process).
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          Log().error("exception escaped an HTTP I/O handler error=\"{}\"", e.what());
        } catch (...) {
          Log().error("exception escaped an HTTP I/O handler");
        }
      }
    });
  }
  net::post(acceptor_.get_executor(), [this] { DoAccept(); });
  Log().info("http server listening address={} port={} threads={}", options_.address, port(),
             options_.threads);
  return absl::OkStatus();
}

void ServerCore::DoAccept() {
  acceptor_.async_accept(net::make_strand(io_), [this](error_code ec, tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void ServerCore::OnAccept(error_code ec, tcp::socket socket) {
  if (stopping()) return;  // `socket` closes as it goes out of scope
  if (ec) {
    if (ec == net::error::operation_aborted) return;
    // EMFILE and the like: back off instead of spinning; the pending connections wait in the
    // listen backlog.
    Log().warn("accept failed error=\"{}\"; retrying in {}ms", ec.message(),
               kAcceptBackoff.count());
    accept_backoff_.expires_after(kAcceptBackoff);
    accept_backoff_.async_wait([this](error_code wait_ec) {
      if (!wait_ec && !stopping()) DoAccept();
    });
    return;
  }
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);  // stream chunks leave at once
  if (connection_count() >= options_.max_connections) {
    RefuseOverCap(std::move(socket));
    DoAccept();
    return;
  }
  auto connection = std::make_shared<Connection>(this, std::move(socket));
  {
    // Checked under mu_ so that Stop() either sees this connection or we see Stop().
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping()) return;
    connections_.emplace(connection.get(), connection);
  }
  connection->Start();
  DoAccept();
}

// Over the connection cap: a short 503 into the fresh socket's empty send buffer (it cannot
// block), then close. Logged once per burst, not per connection.
void ServerCore::RefuseOverCap(tcp::socket socket) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\n"
      "Content-Length: 33\r\n\r\ntoo many open connections; retry\n";
  error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(net::buffer(kBusy.data(), kBusy.size()), ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
  if (refused_over_cap_.fetch_add(1) % 1000 == 0) {
    Log().warn("refused a connection: {} open, the cap is {} (logged every 1000)", connection_count(),
               options_.max_connections);
  }
}

void ServerCore::OnConnectionClosed(Connection* connection) {
  std::shared_ptr<Connection> released;  // destroyed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  auto it = connections_.find(connection);
  if (it == connections_.end()) return;
  released = std::move(it->second);
  connections_.erase(it);
  if (connections_.empty()) no_connections_.notify_all();
}

std::vector<std::shared_ptr<Connection>> ServerCore::SnapshotConnections() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Connection>> out;
  out.reserve(connections_.size());
  for (const auto& [ptr, connection] : connections_) out.push_back(connection);
  return out;
}

bool ServerCore::WaitForNoConnections(std::optional<Clock::time_point> deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  auto none = [&] { return connections_.empty(); };
  if (!deadline.has_value()) {
    no_connections_.wait(lock, none);
    return true;
  }
  return no_connections_.wait_until(lock, *deadline, none);
}

void ServerCore::Stop(absl::Duration grace) {
  if (!started_ || stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_.store(true, std::memory_order_release);
  }
  net::post(acceptor_.get_executor(), [this] {
    error_code ignored;
    acceptor_.close(ignored);
    accept_backoff_.cancel();
  });
  for (const auto& connection : SnapshotConnections()) connection->Shutdown();
  std::optional<Clock::time_point> deadline;
  if (grace != absl::InfiniteDuration()) {
    deadline = Clock::now() + ToClock(std::max(grace, absl::ZeroDuration()));
  }
  if (!WaitForNoConnections(deadline)) {
    const auto remaining = SnapshotConnections();
    Log().info("http server grace period over; closing connections count={}", remaining.size());
    for (const auto& connection : remaining) connection->ForceClose();
    if (!WaitForNoConnections(Clock::now() + kForceCloseWait)) {
      Log().error("http connections did not close; a handler may be blocking an I/O thread");
    }
  }
  work_.reset();
  io_.stop();
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
  {
    // Connections left (only if a handler blocked) die with their queued handlers.
    std::lock_guard<std::mutex> lock(mu_);
    connections_.clear();
  }
  Log().info("http server stopped port={}", port());
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(HttpServerOptions options) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(options.address, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        StrCat("HttpServerOptions.address '", options.address, "' is not an IP address"));
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(StrCat("HttpServerOptions.port ", options.port));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(StrCat("HttpServerOptions.threads ", options.threads));
  }
  if (options.max_header_bytes == 0 || options.max_body_bytes == 0 ||
      options.idle_timeout <= absl::ZeroDuration() ||
      options.read_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("HttpServerOptions limits and timeouts must be positive");
  }
  auto core = std::make_unique<internal::ServerCore>(std::move(options), address);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(core)));
}

HttpServer::HttpServer(std::unique_ptr<internal::ServerCore> core) : core_(std::move(core)) {}

HttpServer::~HttpServer() = default;

void HttpServer::Handle(std::string method, std::string path, HttpHandler handler) {
  core_->mutable_routes().Add(std::move(method), std::move(path), std::move(handler));
}

void HttpServer::HandlePrefix(std::string method, std::string prefix, HttpHandler handler) {
  core_->mutable_routes().AddPrefix(std::move(method), std::move(prefix), std::move(handler));
}

void HttpServer::SetAccessObserver(std::function<void(const HttpAccessRecord&)> observer) {
  core_->SetAccessObserver(std::move(observer));
}

absl::Status HttpServer::Start() { return core_->Start(); }

int HttpServer::port() const { return core_->port(); }

void HttpServer::Stop(absl::Duration grace) { core_->Stop(grace); }

size_t HttpServer::connection_count() const { return core_->connection_count(); }

}  // namespace tandem::http
