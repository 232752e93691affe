#include "http/connection.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "http/wire_format.h"

namespace tandem::http::internal {
namespace {

using boost::system::error_code;

constexpr size_t kReadChunkBytes = 8 << 10;
// While a response is in progress, input beyond this (pipelined requests) is left in the
// socket: TCP flow control pushes back on the client.
constexpr size_t kMaxPipelinedBytes = 64 << 10;
// Queued output is written in batches of about this size, so that the write timeout measures
// how long a client takes to accept one batch, not the whole backlog.
constexpr size_t kMaxWriteBatchBytes = 256 << 10;
constexpr std::string_view kPlainText = "text/plain; charset=utf-8";

spdlog::logger& Log() {
  static const std::shared_ptr<spdlog::logger> logger = GetLogger("http");
  return *logger;
}

std::string EndpointString(const tcp::socket& socket) {
  error_code ec;
  const tcp::endpoint ep = socket.remote_endpoint(ec);
  if (ec) return "unknown";
  return StrCat(ep.address().to_string(), ":", ep.port());
}

template <typename Fn>
void RunUserCallback(Fn&& fn, std::string_view what) {
  try {
    fn();
  } catch (const std::exception& e) {
    Log().error("{} threw error=\"{}\"", what, e.what());
  } catch (...) {
    Log().error("{} threw a non-standard exception", what);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Exchange: the state of one request's response shared between the responder (any thread) and
// the connection (its strand). Every call that changes the response posts to the strand while
// holding mu_, so the strand sees the calls in the order they were made.

class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  struct RequestInfo {
    std::string method;
    std::string path;
    std::string route;
    std::string request_id;
    int version = 11;
    bool keep_alive = true;  // what the client asked for
  };

  Exchange(std::weak_ptr<Connection> connection, RequestInfo info)
      : info(std::move(info)), connection_(std::move(connection)) {}

  absl::Status Reply(int status, std::string content_type, std::string body, HttpHeaders headers) {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_RETURN_IF_ERROR(CheckOpen());
    if (state_ != State::kNone) {
      return absl::FailedPreconditionError("a response was already started");
    }
    state_ = State::kReplied;
    return Post([self = shared_from_this(), status, ct = std::move(content_type),
                 body = std::move(body), headers = std::move(headers)](Connection& c) mutable {
      c.SendReply(self.get(), status, std::move(ct), std::move(body), std::move(headers));
    });
  }

  absl::Status StartStream(int status, std::string content_type, HttpHeaders headers) {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_RETURN_IF_ERROR(CheckOpen());
    if (state_ != State::kNone) {
      return absl::FailedPreconditionError("a response was already started");
    }
    state_ = State::kStreaming;
    return Post([self = shared_from_this(), status, ct = std::move(content_type),
                 headers = std::move(headers)](Connection& c) mutable {
      c.SendStreamHead(self.get(), status, std::move(ct), std::move(headers));
    });
  }

  absl::Status Write(std::string chunk) {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_RETURN_IF_ERROR(CheckOpen());
    if (state_ != State::kStreaming) {
      return absl::FailedPreconditionError("Write() needs StartStream() and no End()");
    }
    if (chunk.empty()) return absl::OkStatus();
    queued_bytes_.fetch_add(chunk.size(), std::memory_order_relaxed);
    return Post([self = shared_from_this(), chunk = std::move(chunk)](Connection& c) mutable {
      c.SendChunk(self.get(), std::move(chunk));
    });
  }

  absl::Status End() {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_RETURN_IF_ERROR(CheckOpen());
    if (state_ != State::kStreaming) {
      return absl::FailedPreconditionError("End() needs StartStream() and no End()");
    }
    state_ = State::kEnded;
    return Post([self = shared_from_this()](Connection& c) { c.SendStreamEnd(self.get()); });
  }

  // The handler let go of the responder: answer 500 if it never answered, cut the connection
  // if it left a stream unfinished.
  void ResponderGone() {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    if (state_ == State::kNone) {
      state_ = State::kReplied;
      Log().warn("handler dropped its responder without answering method={} path={}", info.method,
                 info.path);
      Post([self = shared_from_this()](Connection& c) {
        c.SendReply(self.get(), 500, std::string(kPlainText),
                    "internal error: the handler did not answer\n", {});
      }).IgnoreError();
    } else if (state_ == State::kStreaming) {
      state_ = State::kEnded;
      Log().warn("handler dropped its responder mid-stream method={} path={}", info.method,
                 info.path);
      Post([self = shared_from_this()](Connection& c) { c.AbortStream(self.get()); }).IgnoreError();
    }
  }

  void OnClose(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!closed_) {
        on_close_.push_back(std::move(fn));
        return;
      }
    }
    RunUserCallback(fn, "OnClose callback");
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

  size_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }
  void WrittenBytes(size_t n) { queued_bytes_.fetch_sub(n, std::memory_order_relaxed); }

  // Strand only: the exchange is over. Runs the OnClose callbacks.
  void MarkClosed() {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
      queued_bytes_.store(0, std::memory_order_relaxed);
      callbacks.swap(on_close_);
    }
    for (auto& fn : callbacks) RunUserCallback(fn, "OnClose callback");
  }

  // Immutable after construction.
  const RequestInfo info;
  const Clock::time_point start = Clock::now();
  // Strand only.
  int status = 0;

 private:
  enum class State { kNone, kReplied, kStreaming, kEnded };

  absl::Status CheckOpen() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return absl::CancelledError("the HTTP exchange is over (client gone?)");
    return absl::OkStatus();
  }

  // Posts `fn` to the connection's strand. The strong reference lives only in the posted
  // function, so the connection (and with it an executor of the server's I/O context) never
  // outlives the server through this thread; an Exchange holds no executor for the same reason.
  // Closing the exchange takes mu_, so the connection cannot close while this posts.
  template <typename Fn>
  absl::Status Post(Fn&& fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::shared_ptr<Connection> connection = connection_.lock();
    if (connection == nullptr) return absl::CancelledError("the HTTP connection is gone");
    const net::any_io_executor& strand = connection->strand_;
    net::post(strand, [connection = std::move(connection), fn = std::forward<Fn>(fn)]() mutable {
      fn(*connection);
    });
    return absl::OkStatus();
  }

  const std::weak_ptr<Connection> connection_;
  mutable std::mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kNone;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> on_close_ ABSL_GUARDED_BY(mu_);
  std::atomic<size_t> queued_bytes_{0};
};

namespace {

class ServerResponder final : public HttpResponder {
 public:
  explicit ServerResponder(std::shared_ptr<Exchange> exchange) : exchange_(std::move(exchange)) {}
  ~ServerResponder() override { exchange_->ResponderGone(); }

  size_t queued_bytes() const override { return exchange_->queued_bytes(); }
  void OnClose(std::function<void()> fn) override { exchange_->OnClose(std::move(fn)); }
  bool closed() const override { return exchange_->closed(); }

 protected:
  absl::Status DoReply(int status, std::string content_type, std::string body,
                       HttpHeaders headers) override {
    return exchange_->Reply(status, std::move(content_type), std::move(body), std::move(headers));
  }
  absl::Status DoStartStream(int status, std::string content_type, HttpHeaders headers) override {
    return exchange_->StartStream(status, std::move(content_type), std::move(headers));
  }
  absl::Status DoWrite(std::string chunk) override { return exchange_->Write(std::move(chunk)); }
  absl::Status DoEnd() override { return exchange_->End(); }

 private:
  const std::shared_ptr<Exchange> exchange_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Connection: lifecycle.

Connection::Connection(ConnectionHost* host, tcp::socket socket)
    : host_(host),
      config_(host->config()),
      strand_(socket.get_executor()),
      socket_(std::move(socket)),
      timer_(strand_),
      remote_(EndpointString(socket_)),
      read_chunk_(kReadChunkBytes),
      parser_(RequestLimits{.max_header_bytes = config_.max_header_bytes,
                            .max_body_bytes = config_.max_body_bytes}) {}

Connection::~Connection() {
  // Reached on a server thread after Close(), or while the I/O context is destroyed with
  // handlers still queued. Either way the exchange must read as over.
  if (exchange_ != nullptr) exchange_->MarkClosed();
}

void Connection::Start() {
  net::post(strand_, [self = shared_from_this()] {
    Log().trace("connection opened remote={}", self->remote_);
    self->BeginRequest();
  });
}

void Connection::Shutdown() {
  net::post(strand_, [self = shared_from_this()] {
    self->shutting_down_ = true;
    if (self->phase_ != Phase::kResponding) self->Close("server stopping");
  });
}

void Connection::ForceClose() {
  net::post(strand_, [self = shared_from_this()] { self->Close("server stopped"); });
}

void Connection::Close(std::string_view reason) {
  if (closed_) return;
  closed_ = true;
  auto self = shared_from_this();
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  timer_.cancel();
  if (exchange_ != nullptr) FinishExchange(/*completed=*/false);
  queue_.clear();
  Log().trace("connection closed remote={} reason=\"{}\"", remote_, reason);
  host_->OnConnectionClosed(this);
}

void Connection::FinishExchange(bool completed) {
  std::shared_ptr<Exchange> exchange = std::move(exchange_);
  exchange->MarkClosed();
  const Clock::duration elapsed = Clock::now() - exchange->start;
  const Exchange::RequestInfo& info = exchange->info;
  Log().debug("request method={} path={} status={} duration_ms={:.3f} remote={} outcome={}{}{}",
              info.method, info.path, exchange->status,
              std::chrono::duration<double, std::milli>(elapsed).count(), remote_,
              completed ? "complete" : "aborted",
              info.request_id.empty() ? "" : " request_id=", info.request_id);
  HttpAccessRecord record;
  record.method = info.method;
  record.path = info.path;
  record.route = info.route;
  record.status = exchange->status;
  record.duration = absl::FromChrono(elapsed);
  record.completed = completed;
  RunUserCallback([&] { host_->OnAccess(record); }, "access observer");
}

// ---------------------------------------------------------------------------------------------
// Reading and parsing.

void Connection::BeginRequest() {
  if (closed_) return;
  phase_ = Phase::kReadingRequest;
  parser_.Reset();
  request_started_ = false;
  continue_sent_ = false;
  SetDeadline(Clock::now() + config_.idle_timeout);
  ProcessInput();
  EnsureReading();
}

void Connection::ProcessInput() {
  if (phase_ != Phase::kReadingRequest || input_.size() == 0) return;
  if (!request_started_) {
    request_started_ = true;
    SetDeadline(Clock::now() + config_.read_timeout);
  }
  const auto data = input_.data();
  input_.consume(parser_.Feed(std::string_view(static_cast<const char*>(data.data()), data.size())));
  switch (parser_.state()) {
    case RequestParser::State::kRejected:
      RejectRequest(parser_.rejection());
      return;
    case RequestParser::State::kComplete:
      Dispatch();
      return;
    case RequestParser::State::kNeedMore:
      break;
  }
  MaybeSendContinue();
}

// RFC 9110 §10.1.1: a client that sent "Expect: 100-continue" waits for this before the body.
void Connection::MaybeSendContinue() {
  if (continue_sent_ || !parser_.ExpectsContinue()) return;
  continue_sent_ = true;
  Enqueue({.head = "HTTP/1.1 100 Continue\r\n\r\n"});
}

void Connection::RejectRequest(const RequestRejection& rejection) {
  Log().debug("request rejected status={} error=\"{}\" remote={}", rejection.status,
              rejection.parse_error, remote_);
  HttpAccessRecord record;
  record.status = rejection.status;
  record.duration = absl::ZeroDuration();
  record.completed = true;
  RunUserCallback([&] { host_->OnAccess(record); }, "access observer");

  phase_ = Phase::kResponding;
  keep_alive_ = false;
  ResponseHead head;
  head.status = rejection.status;
  head.content_type = kPlainText;
  head.content_length = rejection.body.size();
  head.keep_alive = false;
  head.server_name = config_.server_name;
  Enqueue({.head = SerializeResponseHead(head, absl::Now()), .body = rejection.body, .ends_response = true});
}

void Connection::Dispatch() {
  const bool keep_alive = parser_.keep_alive();
  HttpRequest request = parser_.TakeRequest();
  request.remote_address = remote_;
  phase_ = Phase::kResponding;
  SetDeadline(Clock::time_point::max());

  RouteTable::Match match = host_->routes().Find(request.method, request.path);
  Exchange::RequestInfo info;
  info.method = request.method;
  info.path = request.path;
  info.route = match.route;
  info.request_id = std::string(request.headers.Get("x-request-id").value_or(""));
  info.version = request.version;
  info.keep_alive = keep_alive;
  exchange_ = std::make_shared<Exchange>(weak_from_this(), std::move(info));
  auto responder = std::make_shared<ServerResponder>(exchange_);
  EnsureReading();  // notice a disconnect while the handler works

  if (request.version != 10 && request.version != 11) {
    responder->Reply(505, std::string(kPlainText), "HTTP version not supported\n").IgnoreError();
    return;
  }
  switch (match.result) {
    case RouteTable::Match::Result::kFound:
      RunUserCallback([&] { (*match.handler)(request, std::move(responder)); },
                      StrCat("handler for ", request.method, " ", request.path));
      break;
    case RouteTable::Match::Result::kNotFound:
      responder->Reply(404, std::string(kPlainText), "not found\n").IgnoreError();
      break;
    case RouteTable::Match::Result::kMethodNotAllowed:
      responder
          ->Reply(405, std::string(kPlainText), "method not allowed\n", {{"Allow", match.allow}})
          .IgnoreError();
      break;
  }
}

void Connection::EnsureReading() {
  if (closed_ || reading_) return;
  if (phase_ == Phase::kResponding && input_.size() >= kMaxPipelinedBytes) return;
  reading_ = true;
  socket_.async_read_some(
      net::buffer(read_chunk_),
      [self = shared_from_this()](error_code ec, size_t bytes) { self->OnRead(ec, bytes); });
}

void Connection::OnRead(error_code ec, size_t bytes) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    // While responding, EOF or a reset means the client is gone: OnClose lets the handler
    // cancel its work.
    Close(phase_ == Phase::kResponding ? "client disconnected" : ec.message());
    return;
  }
  if (phase_ != Phase::kLingering) {
    auto space = input_.prepare(bytes);
    std::memcpy(space.data(), read_chunk_.data(), bytes);
    input_.commit(bytes);
    if (phase_ == Phase::kReadingRequest) ProcessInput();
  }
  EnsureReading();
}

// ---------------------------------------------------------------------------------------------
// Writing.

bool Connection::IsCurrent(const Exchange* exchange) const {
  return !closed_ && exchange_ != nullptr && exchange_.get() == exchange;
}

void Connection::SendReply(const Exchange* exchange, int status, std::string content_type,
                           std::string body, HttpHeaders headers) {
  if (!IsCurrent(exchange)) return;
  exchange_->status = status;
  keep_alive_ = exchange_->info.keep_alive && !shutting_down_ && !host_->stopping() &&
                (exchange_->info.version == 10 || exchange_->info.version == 11) && status != 505;
  ResponseHead head;
  head.status = status;
  head.version = exchange_->info.version;
  head.content_type = content_type;
  head.headers = &headers;
  head.content_length = body.size();
  head.keep_alive = keep_alive_;
  head.server_name = config_.server_name;
  if (exchange_->info.method == "HEAD") body.clear();  // RFC 9110 §9.3.2: no content
  Enqueue({.head = SerializeResponseHead(head, absl::Now()),
           .body = std::move(body),
           .ends_response = true});
}

void Connection::SendStreamHead(const Exchange* exchange, int status, std::string content_type,
                                HttpHeaders headers) {
  if (!IsCurrent(exchange)) return;
  exchange_->status = status;
  // HTTP/1.0 has no chunked coding: the body ends when the connection closes.
  chunked_ = exchange_->info.version == 11;
  keep_alive_ = chunked_ && exchange_->info.keep_alive && !shutting_down_ && !host_->stopping();
  ResponseHead head;
  head.status = status;
  head.version = exchange_->info.version;
  head.content_type = content_type;
  head.headers = &headers;
  head.framing = chunked_ ? ResponseHead::Framing::kChunked : ResponseHead::Framing::kUntilClose;
  head.keep_alive = keep_alive_;
  head.server_name = config_.server_name;
  Enqueue({.head = SerializeResponseHead(head, absl::Now())});
}

void Connection::SendChunk(const Exchange* exchange, std::string chunk) {
  if (!IsCurrent(exchange)) return;
  const size_t size = chunk.size();
  Enqueue({.head = chunked_ ? ChunkSizeLine(size) : std::string(),
           .body = std::move(chunk),
           .tail = chunked_ ? kChunkDataEnd : std::string_view(),
           .payload = size});
}

void Connection::SendStreamEnd(const Exchange* exchange) {
  if (!IsCurrent(exchange)) return;
  Enqueue({.head = chunked_ ? std::string(kLastChunk) : std::string(), .ends_response = true});
}

// What was written still goes out; then the connection closes without the last chunk, so the
// client sees a truncated response rather than a complete one.
void Connection::AbortStream(const Exchange* exchange) {
  if (!IsCurrent(exchange)) return;
  Enqueue({.close_after = true});
}

void Connection::Enqueue(Outgoing item) {
  if (closed_) return;
  queue_.push_back(std::move(item));
  DoWrite();
}

void Connection::DoWrite() {
  if (writing_ || queue_.empty() || closed_) return;
  writing_ = true;
  std::vector<net::const_buffer> buffers;
  buffers.reserve(queue_.size() * 3);
  in_flight_.clear();
  size_t batch_bytes = 0;
  while (!queue_.empty() && (in_flight_.empty() || batch_bytes < kMaxWriteBatchBytes)) {
    const Outgoing& item = queue_.front();
    batch_bytes += item.head.size() + item.body.size() + item.tail.size();
    in_flight_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  for (const Outgoing& item : in_flight_) {
    if (!item.head.empty()) buffers.push_back(net::buffer(item.head));
    if (!item.body.empty()) buffers.push_back(net::buffer(item.body));
    if (!item.tail.empty()) buffers.push_back(net::buffer(item.tail.data(), item.tail.size()));
  }
  if (phase_ == Phase::kResponding) SetDeadline(Clock::now() + config_.write_timeout);
  net::async_write(
      socket_, std::move(buffers),
      [self = shared_from_this()](error_code ec, size_t bytes) { self->OnWrite(ec, bytes); });
}

void Connection::OnWrite(error_code ec, size_t bytes) {
  writing_ = false;
  if (closed_) return;
  if (ec) {
    Close(StrCat("write failed: ", ec.message()));
    return;
  }
  bool response_done = false;
  bool close = false;
  for (const Outgoing& item : in_flight_) {
    if (item.payload > 0 && exchange_ != nullptr) exchange_->WrittenBytes(item.payload);
    response_done = response_done || item.ends_response;
    close = close || item.close_after;
  }
  in_flight_.clear();
  if (close) {
    Close("handler abandoned the stream");
    return;
  }
  if (response_done) {
    ResponseComplete();
    return;
  }
  if (phase_ == Phase::kResponding && queue_.empty()) SetDeadline(Clock::time_point::max());
  DoWrite();
}

void Connection::ResponseComplete() {
  if (exchange_ != nullptr) FinishExchange(/*completed=*/true);
  if (shutting_down_ || host_->stopping()) {
    Close("server stopping");
  } else if (!keep_alive_) {
    StartLingering();
  } else {
    BeginRequest();
  }
}

// Closing right after the final response could reset the connection while the client is still
// sending (a rejected body) and destroy the response in flight; shut down our side and drain.
void Connection::StartLingering() {
  phase_ = Phase::kLingering;
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  input_.clear();
  SetDeadline(Clock::now() + config_.linger_timeout);
  EnsureReading();
}

// ---------------------------------------------------------------------------------------------
// Timeouts.

void Connection::SetDeadline(Clock::time_point deadline) {
  deadline_ = deadline;
  if (closed_ || deadline == Clock::time_point::max()) return;  // a pending wait finds no deadline
  if (timer_waiting_ && timer_.expiry() <= deadline) return;    // fires first, then re-checks
  timer_.expires_at(deadline);  // cancels a pending wait, whose generation is now stale
  StartTimerWait();
}

void Connection::StartTimerWait() {
  timer_waiting_ = true;
  const uint64_t generation = ++timer_generation_;
  timer_.async_wait(
      [self = shared_from_this(), generation](error_code ec) { self->OnTimer(ec, generation); });
}

void Connection::OnTimer(error_code ec, uint64_t generation) {
  if (generation != timer_generation_) return;
  timer_waiting_ = false;
  if (closed_ || deadline_ == Clock::time_point::max()) return;
  if (Clock::now() < deadline_) {
    timer_.expires_at(deadline_);
    StartTimerWait();
    return;
  }
  switch (phase_) {
    case Phase::kReadingRequest:
      Close(request_started_ ? "read timeout" : "idle timeout");
      break;
    case Phase::kResponding:
      Close("write timeout (client not reading)");
      break;
    case Phase::kLingering:
      Close("done");
      break;
  }
}

}  // namespace tandem::http::internal
