#include "api/api_error.h"

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

using nlohmann::json;

ApiError Make(int status, std::string type, std::string message, std::string param = {},
              std::string code = {}) {
  ApiError e;
  e.http_status = status;
  e.type = std::move(type);
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

json NullIfEmpty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

}  // namespace

ApiError ApiError::InvalidRequest(std::string message, std::string param, std::string code) {
  return Make(400, "invalid_request_error", std::move(message), std::move(param),
              std::move(code));
}

ApiError ApiError::Unsupported(std::string_view param, std::string_view detail) {
  std::string message = StrCat("'", param, "' is not supported by this server");
  if (!detail.empty()) message += StrCat(": ", detail);
  return InvalidRequest(std::move(message), std::string(param), "unsupported_parameter");
}

ApiError ApiError::InvalidApiKey() {
  return Make(401, "authentication_error",
              "Incorrect API key provided. Pass it as 'Authorization: Bearer <key>'.", {},
              "invalid_api_key");
}

ApiError ApiError::ModelNotFound(std::string_view requested,
                                 const std::vector<std::string>& served_models) {
  std::string served;
  for (const std::string& m : served_models) served += StrCat(served.empty() ? "" : ", ", m);
  return Make(404, "invalid_request_error",
              StrCat("The model '", requested, "' does not exist. This server serves: ",
                     served.empty() ? "(no models)" : served, "."),
              "model", "model_not_found");
}

ApiError ApiError::UnknownRoute(std::string_view method, std::string_view path) {
  return Make(404, "invalid_request_error", StrCat("Invalid URL (", method, " ", path, ")"), {},
              "unknown_url");
}

ApiError ApiError::MethodNotAllowed(std::string_view method, std::string_view path) {
  return Make(405, "invalid_request_error",
              StrCat("Method ", method, " is not allowed for ", path), {},
              "method_not_allowed");
}

ApiError ApiError::PayloadTooLarge(size_t limit_bytes) {
  return Make(413, "invalid_request_error",
              StrCat("Request body is too large: the limit is ", limit_bytes, " bytes"), {},
              "request_too_large");
}

ApiError ApiError::Overloaded(int retry_after_seconds) {
  ApiError e = Make(429, "rate_limit_error", "server is overloaded, retry later", {},
                    "server_overloaded");
  e.retry_after_seconds = retry_after_seconds;
  return e;
}

ApiError ApiError::Unavailable(int retry_after_seconds) {
  ApiError e = Make(503, "server_error", "server is overloaded, retry later", {},
                    "service_unavailable");
  e.retry_after_seconds = retry_after_seconds;
  return e;
}

ApiError ApiError::Internal(std::string_view request_id, std::string_view detail) {
  std::string message =
      StrCat("The server had an error while processing request ", request_id, ".");
  if (!detail.empty()) message += StrCat(" ", detail);
  return Make(500, "server_error", std::move(message), {}, "internal_error");
}

ApiError ApiError::FromStatus(const absl::Status& status, std::string_view request_id) {
  const std::string message = ToStd(status.message()).empty()
                                  ? std::string(absl::StatusCodeToString(status.code()))
                                  : std::string(ToStd(status.message()));
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return InvalidRequest(message);
    case absl::StatusCode::kResourceExhausted: {
      ApiError e = Overloaded(1);  // tandem's own words about capacity: safe and useful to show
      e.message = StrCat("server is overloaded (", message, "); retry later");
      return e;
    }
    case absl::StatusCode::kUnavailable: {
      ApiError e = Unavailable(1);
      e.message = StrCat("service unavailable (", message, "); retry later");
      return e;
    }
    case absl::StatusCode::kDeadlineExceeded:
      return Make(504, "server_error",
                  StrCat("Request ", request_id, " timed out inside the server."), {},
                  "timeout");
    default:
      return Internal(request_id);
  }
}

absl::Status ApiError::ToStatus() const {
  absl::StatusCode code = absl::StatusCode::kInternal;
  switch (http_status) {
    case 400:
    case 413: code = absl::StatusCode::kInvalidArgument; break;
    case 401: code = absl::StatusCode::kUnauthenticated; break;
    case 403: code = absl::StatusCode::kPermissionDenied; break;
    case 404: code = absl::StatusCode::kNotFound; break;
    case 405: code = absl::StatusCode::kUnimplemented; break;
    case 429: code = absl::StatusCode::kResourceExhausted; break;
    case 503: code = absl::StatusCode::kUnavailable; break;
    case 504: code = absl::StatusCode::kDeadlineExceeded; break;
    default: break;
  }
  return absl::Status(code, message);
}

std::string ApiError::ToJson() const {
  json body = {{"error",
                {{"message", message},
                 {"type", type},
                 {"param", NullIfEmpty(param)},
                 {"code", NullIfEmpty(code)}}}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ApiError::ToSseEvent() const { return StrCat("data: ", ToJson(), "\n\n"); }

}  // namespace tandem::api
