// Errors of the OpenAI-compatible HTTP API: an HTTP status plus OpenAI's error body
//   {"error": {"message": ..., "type": ..., "param": ... | null, "code": ... | null}}
// which the `openai` client turns into BadRequestError, AuthenticationError, NotFoundError,
// RateLimitError, InternalServerError... with .param and .code set from the body.
//
// Thread-safety: a value type; const methods may be called concurrently.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "common/check.h"

namespace tandem::api {

struct ApiError {
  int http_status = 500;
  std::string type;     // "invalid_request_error", "authentication_error", ...
  std::string message;  // for people; names the offending field and value
  std::string param;    // the request field at fault ("messages[1].role"); empty: null
  std::string code;     // machine-readable ("model_not_found"); empty: null
  int retry_after_seconds = 0;  // > 0: send a Retry-After header with this value

  // 400 invalid_request_error.
  static ApiError InvalidRequest(std::string message, std::string param = {},
                                 std::string code = {});
  // 400 for a field tandem does not implement; the message names it.
  static ApiError Unsupported(std::string_view param, std::string_view detail = {});
  // 401 authentication_error, code invalid_api_key.
  static ApiError InvalidApiKey();
  // 404 model_not_found; the message names the models this server serves.
  static ApiError ModelNotFound(std::string_view requested,
                                const std::vector<std::string>& served_models);
  // 404 for a path the API does not have.
  static ApiError UnknownRoute(std::string_view method, std::string_view path);
  // 405 for a known path used with the wrong method.
  static ApiError MethodNotAllowed(std::string_view method, std::string_view path);
  // 413 for a body larger than `limit_bytes`.
  static ApiError PayloadTooLarge(size_t limit_bytes);
  // 429 (queues full: the client should slow down) with Retry-After.
  static ApiError Overloaded(int retry_after_seconds);
  // 503 (no worker can take the request now: none registered, all draining) with Retry-After.
  static ApiError Unavailable(int retry_after_seconds);
  // 500 server_error. The message carries the request id so that an operator can find the
  // request's log lines; `detail` (optional) is appended and must not leak internals.
  static ApiError Internal(std::string_view request_id, std::string_view detail = {});
  // A Status from inside tandem: InvalidArgument/OutOfRange -> 400, ResourceExhausted -> 429,
  // Unavailable -> 503 (these messages are shown: they say what is missing), DeadlineExceeded
  // -> 504, anything else -> 500 (message not exposed).
  static ApiError FromStatus(const absl::Status& status, std::string_view request_id);

  // The same error as a Status, for the gRPC door (rpc::ToGrpc then gives the gRPC code):
  // 400 and 413 -> InvalidArgument, 401 -> Unauthenticated, 403 -> PermissionDenied, 404 ->
  // NotFound, 405 -> Unimplemented, 429 -> ResourceExhausted, 503 -> Unavailable, 504 ->
  // DeadlineExceeded, anything else -> Internal; the message is the same. FromStatus of the
  // result gives back the same HTTP status for 400, 429, 503, 504 and 500.
  absl::Status ToStatus() const;

  // The JSON body, {"error": {...}}.
  std::string ToJson() const;
  // The same object as one server-sent event, for failures after a stream has started:
  // "data: {\"error\": {...}}\n\n". The `openai` client raises APIError on it.
  std::string ToSseEvent() const;
};

// A value or the ApiError that explains why there is none (the API layer's StatusOr).
template <typename T>
class [[nodiscard]] ApiErrorOr {
 public:
  ApiErrorOr(T value) : v_(std::move(value)) {}           // NOLINT: implicit like StatusOr
  ApiErrorOr(ApiError error) : v_(std::move(error)) {}    // NOLINT
  bool ok() const { return v_.index() == 0; }
  const T& value() const& {
    TANDEM_CHECK(ok()) << "value() of an error: " << error().message;
    return std::get<0>(v_);
  }
  T& value() & {
    TANDEM_CHECK(ok()) << "value() of an error: " << error().message;
    return std::get<0>(v_);
  }
  T&& value() && {
    TANDEM_CHECK(ok()) << "value() of an error: " << error().message;
    return std::get<0>(std::move(v_));
  }
  const ApiError& error() const {
    TANDEM_CHECK(!ok()) << "error() of a value";
    return std::get<1>(v_);
  }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<T, ApiError> v_;
};

}  // namespace tandem::api
