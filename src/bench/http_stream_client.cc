#include "bench/http_stream_client.h"

#include <cstdint>
#include <limits>
#include <optional>

#include "bench/text_util.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/buffer_body.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kMaxIdleConnections = 4096;
constexpr size_t kReadChunk = 16 << 10;

}  // namespace

std::string BaseUrl::ToString() const { return StrCat("http://", host, ":", port, path_prefix); }

absl::StatusOr<BaseUrl> ParseBaseUrl(std::string_view url) {
  url = Trim(url);
  if (url.starts_with("https://")) {
    return absl::InvalidArgumentError(
        StrCat("'", url, "': https is not supported; run the benchmark against the server's plain http port "
               "or through a TLS-terminating proxy"));
  }
  if (!url.starts_with("http://")) {
    return absl::InvalidArgumentError(StrCat("'", url, "' is not an http:// URL (e.g. http://127.0.0.1:8000)"));
  }
  url.remove_prefix(7);
  const size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  BaseUrl out;
  if (slash != std::string_view::npos) {
    std::string_view path = url.substr(slash);
    while (!path.empty() && path.back() == '/') path.remove_suffix(1);
    out.path_prefix = std::string(path);
  }
  std::string_view host = authority;
  if (authority.starts_with('[')) {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError(StrCat("bad IPv6 host in '", url, "'"));
    host = authority.substr(1, close - 1);
    authority.remove_prefix(close + 1);
    if (!authority.empty() && !authority.starts_with(':')) {
      return absl::InvalidArgumentError(StrCat("bad host in '", url, "'"));
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    authority.remove_prefix(colon);
  } else {
    authority = {};
  }
  if (authority.starts_with(':')) {
    auto port = ParseInt(authority.substr(1));
    if (!port.ok() || *port < 1 || *port > 65535) {
      return absl::InvalidArgumentError(StrCat("bad port '", authority.substr(1), "' in the URL"));
    }
    out.port = static_cast<int>(*port);
  }
  if (host.empty()) return absl::InvalidArgumentError("the URL has no host");
  out.host = std::string(host);
  return out;
}

class HttpStreamClient::Impl {
 public:
  Impl(net::io_context& io, BaseUrl url, tcp::resolver::results_type endpoints)
      : io(io), url(std::move(url)), endpoints(std::move(endpoints)) {}

  std::unique_ptr<tcp::socket> TakeIdle() {
    while (!idle.empty()) {
      std::unique_ptr<tcp::socket> s = std::move(idle.back());
      idle.pop_back();
      if (s->is_open()) return s;
    }
    return nullptr;
  }
  void ReturnIdle(std::unique_ptr<tcp::socket> s) {
    if (!closed && idle.size() < kMaxIdleConnections) idle.push_back(std::move(s));
  }

  net::io_context& io;
  const BaseUrl url;
  const tcp::resolver::results_type endpoints;
  std::vector<std::unique_ptr<tcp::socket>> idle;
  bool closed = false;
};

namespace {

// One request/response. Owned by the pending asynchronous operations (shared_from_this).
class Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(std::shared_ptr<HttpStreamClient::Impl> client, ClientRequest request, ResponseCallbacks callbacks)
      : client_(std::move(client)),
        callbacks_(std::move(callbacks)),
        timeout_(request.timeout),
        timer_(client_->io) {
    const http::verb verb = http::string_to_verb(request.method);
    request_ = http::request<http::string_body>(verb == http::verb::unknown ? http::verb::get : verb,
                                                client_->url.path_prefix + request.path, 11);
    request_.set(http::field::host, StrCat(client_->url.host, ":", client_->url.port));
    request_.set(http::field::user_agent, "tandem-bench/0.1");
    if (!request.body.empty()) request_.set(http::field::content_type, "application/json");
    for (auto& [name, value] : request.headers) request_.set(name, value);
    request_.body() = std::move(request.body);
    request_.prepare_payload();
  }

  void Start() {
    timer_.expires_after(timeout_);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->Finish(absl::DeadlineExceededError(fmt::format("no complete response within {:g} s",
                                                                    self->timeout_.count() / 1e3)));
    });
    socket_ = client_->TakeIdle();
    if (socket_) {
      reused_ = true;
      Write();
    } else {
      Connect();
    }
  }

 private:
  void Connect() {
    reused_ = false;
    socket_ = std::make_unique<tcp::socket>(client_->io);
    net::async_connect(*socket_, client_->endpoints,
                       [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
                         if (self->finished_) return;
                         if (ec) {
                           return self->Finish(absl::UnavailableError(StrCat(
                               "cannot connect to ", self->client_->url.ToString(), ": ", ec.message())));
                         }
                         beast::error_code ignored;
                         self->socket_->set_option(tcp::no_delay(true), ignored);
                         self->Write();
                       });
  }

  void Write() {
    http::async_write(*socket_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->OnEarlyError(ec);
      self->ReadHead();
    });
  }

  void ReadHead() {
    buffer_.clear();
    parser_.emplace();
    // Unlimited (a stream can be long). Not boost::none: Boost 1.74 compares Content-Length
    // against the optional, and any length is "greater" than none.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    parser_->eager(true);
    http::async_read_header(*socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->OnEarlyError(ec);
      if (self->finished_) return;
      const auto& head = self->parser_->get();
      if (self->callbacks_.on_head) {
        self->callbacks_.on_head(static_cast<int>(head.result_int()), head[http::field::content_type]);
      }
      self->ReadBody();
    });
  }

  void ReadBody() {
    if (finished_) return;
    if (parser_->is_done()) return Complete();
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof chunk_;
    http::async_read_some(*socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (self->finished_) return;
      const size_t got = sizeof self->chunk_ - self->parser_->get().body().size;
      if (got > 0 && self->callbacks_.on_body) self->callbacks_.on_body(std::string_view(self->chunk_, got));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) {
        return self->Finish(absl::AbortedError(StrCat("connection lost during the response: ", ec.message())));
      }
      self->ReadBody();
    });
  }

  // Before any response byte: a reused keep-alive connection the server had closed is retried
  // once on a new connection; otherwise the exchange fails.
  void OnEarlyError(beast::error_code ec) {
    if (finished_) return;
    if (reused_) {
      beast::error_code ignored;
      socket_->close(ignored);
      return Connect();
    }
    Finish(absl::AbortedError(StrCat("connection closed before the response: ", ec.message())));
  }

  void Complete() {
    const bool reusable = parser_->keep_alive() && buffer_.size() == 0;
    finished_ = true;
    timer_.cancel();
    if (reusable) {
      client_->ReturnIdle(std::move(socket_));
    } else {
      beast::error_code ignored;
      socket_->close(ignored);
    }
    if (callbacks_.on_end) callbacks_.on_end(absl::OkStatus());
  }

  void Finish(const absl::Status& status) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    if (socket_) {
      beast::error_code ignored;
      socket_->close(ignored);
    }
    if (callbacks_.on_end) callbacks_.on_end(status);
  }

  std::shared_ptr<HttpStreamClient::Impl> client_;
  ResponseCallbacks callbacks_;
  std::chrono::milliseconds timeout_;
  net::steady_timer timer_;
  http::request<http::string_body> request_;
  std::unique_ptr<tcp::socket> socket_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  char chunk_[kReadChunk];
  bool reused_ = false;
  bool finished_ = false;
};

}  // namespace

HttpStreamClient::HttpStreamClient(BaseUrl url, std::shared_ptr<Impl> impl)
    : url_(std::move(url)), impl_(std::move(impl)) {}

HttpStreamClient::~HttpStreamClient() {
  CloseIdle();
  impl_->closed = true;  // connections of exchanges still in flight are not pooled
}

absl::StatusOr<std::unique_ptr<HttpStreamClient>> HttpStreamClient::Create(net::io_context& io, BaseUrl url) {
  tcp::resolver resolver(io);
  beast::error_code ec;
  auto endpoints = resolver.resolve(url.host, std::to_string(url.port), ec);
  if (ec) return absl::UnavailableError(StrCat("cannot resolve host '", url.host, "': ", ec.message()));
  auto impl = std::make_shared<Impl>(io, url, std::move(endpoints));
  return std::unique_ptr<HttpStreamClient>(new HttpStreamClient(std::move(url), std::move(impl)));
}

void HttpStreamClient::Send(ClientRequest request, ResponseCallbacks callbacks) {
  std::make_shared<Exchange>(impl_, std::move(request), std::move(callbacks))->Start();
}

void HttpStreamClient::CloseIdle() {
  for (auto& s : impl_->idle) {
    beast::error_code ignored;
    s->close(ignored);
  }
  impl_->idle.clear();
}

absl::StatusOr<SimpleResponse> HttpGet(const BaseUrl& url, const std::string& path,
                                       const std::vector<std::pair<std::string, std::string>>& headers,
                                       std::chrono::milliseconds timeout, size_t max_body) {
  net::io_context io;
  TANDEM_ASSIGN_OR_RETURN(auto client, HttpStreamClient::Create(io, url));
  SimpleResponse response;
  absl::Status end = absl::InternalError("no response");
  ClientRequest request;
  request.method = "GET";
  request.path = path;
  request.headers = headers;
  request.timeout = timeout;
  ResponseCallbacks cb;
  cb.on_head = [&](int status, std::string_view type) {
    response.status = status;
    response.content_type = std::string(type);
  };
  cb.on_body = [&](std::string_view bytes) {
    response.body.append(bytes.substr(0, max_body - std::min(max_body, response.body.size())));
  };
  cb.on_end = [&](const absl::Status& s) { end = s; };
  client->Send(std::move(request), std::move(cb));
  io.run();
  client->CloseIdle();
  if (!end.ok()) return end;
  return response;
}

}  // namespace tandem::bench
