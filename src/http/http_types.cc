#include "http/http_types.h"

#include <algorithm>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::http {
namespace {

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 9110 §5.6.2: token = 1*tchar.
bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool HasLineBreakOrNul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

void HttpHeaders::Add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void HttpHeaders::Set(std::string_view name, std::string value) {
  std::erase_if(fields_, [&](const Field& f) { return EqualsIgnoreCase(f.first, name); });
  fields_.emplace_back(std::string(name), std::move(value));
}

std::optional<std::string_view> HttpHeaders::Get(std::string_view name) const {
  for (const Field& f : fields_) {
    if (EqualsIgnoreCase(f.first, name)) return f.second;
  }
  return std::nullopt;
}

absl::Status ValidateResponse(int status, std::string_view content_type,
                              const HttpHeaders& headers) {
  if (status < 200 || status > 599) {
    return absl::InvalidArgumentError(StrCat("response status ", status, " not in [200, 599]"));
  }
  if (HasLineBreakOrNul(content_type)) {
    return absl::InvalidArgumentError("content type contains CR, LF or NUL");
  }
  for (const auto& [name, value] : headers) {
    if (!IsToken(name)) return absl::InvalidArgumentError(StrCat("bad header name '", name, "'"));
    if (HasLineBreakOrNul(value)) {
      return absl::InvalidArgumentError(StrCat("header ", name, " contains CR, LF or NUL"));
    }
    for (std::string_view managed : {"Content-Length", "Transfer-Encoding", "Connection"}) {
      if (EqualsIgnoreCase(name, managed)) {
        return absl::InvalidArgumentError(StrCat("header ", name, " is set by the server"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status HttpResponder::Reply(int status, std::string content_type, std::string body,
                                  HttpHeaders headers) {
  TANDEM_RETURN_IF_ERROR(ValidateResponse(status, content_type, headers));
  return DoReply(status, std::move(content_type), std::move(body), std::move(headers));
}

absl::Status HttpResponder::StartStream(int status, std::string content_type, HttpHeaders headers) {
  TANDEM_RETURN_IF_ERROR(ValidateResponse(status, content_type, headers));
  return DoStartStream(status, std::move(content_type), std::move(headers));
}

}  // namespace tandem::http
