#include "http/request_parser.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "boost/asio/buffer.hpp"
#include "boost/beast/http/error.hpp"
#include "common/strings.h"

namespace tandem::http::internal {

namespace bhttp = boost::beast::http;

RequestParser::RequestParser(RequestLimits limits) : limits_(limits) { Reset(); }

void RequestParser::Reset() {
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(std::min<size_t>(limits_.max_header_bytes, UINT32_MAX)));
  parser_->body_limit(static_cast<uint64_t>(limits_.max_body_bytes));
  // Not eager: put() stops at the end of the header, so that its size is known (see Feed).
  parser_->eager(false);
  header_bytes_ = 0;
  state_ = State::kNeedMore;
  keep_alive_ = false;
  rejection_ = {};
}

size_t RequestParser::Feed(std::string_view input) {
  size_t consumed = 0;
  while (state_ == State::kNeedMore && consumed < input.size()) {
    const bool in_header = !parser_->is_header_done();
    boost::system::error_code ec;
    const size_t used =
        parser_->put(boost::asio::const_buffer(input.data() + consumed, input.size() - consumed), ec);
    consumed += used;
    if (in_header) header_bytes_ += used;
    if (ec == bhttp::error::need_more) break;
    // Beast applies its header limit to the whole header only while the header is incomplete;
    // one that arrives complete in one read may exceed it by the length of the request line.
    if (!ec && in_header && parser_->is_header_done() && header_bytes_ > limits_.max_header_bytes) {
      ec = bhttp::error::header_limit;
    }
    if (ec) {
      Reject(ec);
      break;
    }
    if (parser_->is_done()) {
      state_ = State::kComplete;
      keep_alive_ = parser_->get().keep_alive();
      break;
    }
    if (used == 0) break;
  }
  return consumed;
}

bool RequestParser::ExpectsContinue() const {
  if (state_ != State::kNeedMore || !parser_->is_header_done() || parser_->is_done()) return false;
  const auto& request = parser_->get();
  if (request.version() != 11) return false;
  const auto expect = request.find(bhttp::field::expect);
  return expect != request.end() && EqualsIgnoreCase(expect->value(), "100-continue");
}

HttpRequest RequestParser::TakeRequest() {
  auto message = parser_->release();
  HttpRequest request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  SplitTarget(request.target, &request.path, &request.query);
  request.version = message.version();
  for (const auto& field : message) {
    request.headers.Add(std::string(field.name_string()), std::string(field.value()));
  }
  request.body = std::move(message.body());
  return request;
}

void RequestParser::Reject(const boost::system::error_code& error) {
  state_ = State::kRejected;
  rejection_.parse_error = error.message();
  if (error == bhttp::error::header_limit) {
    rejection_.status = 431;
    rejection_.body = StrCat("request header section larger than ", limits_.max_header_bytes, " bytes\n");
  } else if (error == bhttp::error::body_limit) {
    rejection_.status = 413;
    rejection_.body = StrCat("request body larger than ", limits_.max_body_bytes, " bytes\n");
  } else {
    rejection_.status = 400;
    rejection_.body = StrCat("bad request: ", rejection_.parse_error, "\n");
  }
}

void SplitTarget(std::string_view target, std::string* path, std::string* query) {
  if (!target.starts_with('/')) {
    if (const size_t scheme = target.find("://"); scheme != std::string_view::npos) {
      const size_t slash = target.find('/', scheme + 3);
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
    }
  }
  const size_t q = target.find('?');
  *path = std::string(target.substr(0, q));
  *query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
}

}  // namespace tandem::http::internal
