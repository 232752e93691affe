// The error responses a client sees: status, OpenAI error type and code, and a message that
// says what to do.
#include "api/api_error.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::api {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

TEST(ApiErrorTest, BodyIsOpenAisErrorObject) {
  const ApiError e = ApiError::InvalidRequest("bad \"x\"", "max_tokens", "invalid_value");
  EXPECT_EQ(e.http_status, 400);
  const json j = json::parse(e.ToJson());
  EXPECT_EQ(j, (json{{"error",
                      {{"message", "bad \"x\""},
                       {"type", "invalid_request_error"},
                       {"param", "max_tokens"},
                       {"code", "invalid_value"}}}}));
  const json no_param = json::parse(ApiError::InvalidRequest("m").ToJson());
  EXPECT_TRUE(no_param["error"]["param"].is_null());
  EXPECT_TRUE(no_param["error"]["code"].is_null());
}

TEST(ApiErrorTest, Constructors) {
  const ApiError key = ApiError::InvalidApiKey();
  EXPECT_EQ(key.http_status, 401);
  EXPECT_EQ(key.type, "authentication_error");
  EXPECT_EQ(key.code, "invalid_api_key");

  const ApiError model = ApiError::ModelNotFound("gpt-4", {"smollm2", "qwen"});
  EXPECT_EQ(model.http_status, 404);
  EXPECT_EQ(model.code, "model_not_found");
  EXPECT_EQ(model.param, "model");
  EXPECT_THAT(model.message, HasSubstr("'gpt-4' does not exist"));
  EXPECT_THAT(model.message, HasSubstr("smollm2, qwen"));

  const ApiError route = ApiError::UnknownRoute("POST", "/v1/embeddings");
  EXPECT_EQ(route.http_status, 404);
  EXPECT_THAT(route.message, HasSubstr("POST /v1/embeddings"));
  EXPECT_EQ(ApiError::MethodNotAllowed("GET", "/v1/completions").http_status, 405);
  EXPECT_EQ(ApiError::PayloadTooLarge(10).http_status, 413);

  const ApiError busy = ApiError::Overloaded(3);
  EXPECT_EQ(busy.http_status, 429);
  EXPECT_EQ(busy.retry_after_seconds, 3);
  EXPECT_EQ(busy.message, "server is overloaded, retry later");
  const ApiError down = ApiError::Unavailable(5);
  EXPECT_EQ(down.http_status, 503);
  EXPECT_EQ(down.retry_after_seconds, 5);
  EXPECT_EQ(down.message, "server is overloaded, retry later");

  const ApiError internal = ApiError::Internal("req-123");
  EXPECT_EQ(internal.http_status, 500);
  EXPECT_EQ(internal.type, "server_error");
  EXPECT_THAT(internal.message, HasSubstr("req-123"));

  const ApiError unsupported = ApiError::Unsupported("echo");
  EXPECT_EQ(unsupported.http_status, 400);
  EXPECT_EQ(unsupported.param, "echo");
  EXPECT_THAT(unsupported.message, HasSubstr("'echo' is not supported"));
}

TEST(ApiErrorTest, FromStatusKeepsInternalsPrivate) {
  EXPECT_EQ(ApiError::FromStatus(absl::InvalidArgumentError("bad id"), "r").http_status, 400);
  EXPECT_EQ(ApiError::FromStatus(absl::ResourceExhaustedError("queue full"), "r").http_status,
            429);
  EXPECT_EQ(ApiError::FromStatus(absl::UnavailableError("no workers"), "r").http_status, 503);
  // Capacity problems say what is missing.
  EXPECT_THAT(ApiError::FromStatus(absl::UnavailableError("no decode worker is available"), "r").message,
              HasSubstr("no decode worker is available"));
  EXPECT_THAT(ApiError::FromStatus(absl::ResourceExhaustedError("queue full"), "r").message, HasSubstr("queue full"));
  EXPECT_EQ(ApiError::FromStatus(absl::DeadlineExceededError("slow"), "r").http_status, 504);
  const ApiError internal = ApiError::FromStatus(absl::InternalError("segment 0x7f secret"), "r1");
  EXPECT_EQ(internal.http_status, 500);
  EXPECT_THAT(internal.message, HasSubstr("r1"));
  EXPECT_THAT(internal.message, ::testing::Not(HasSubstr("secret")));
}

// The gRPC door answers with the same error class and message as the HTTP door.
TEST(ApiErrorTest, ToStatusIsTheSameErrorForGrpc) {
  const ApiError invalid = ApiError::InvalidRequest("'top_p' must be in (0, 1], got 2", "top_p");
  EXPECT_EQ(invalid.ToStatus(), absl::InvalidArgumentError(invalid.message));
  EXPECT_EQ(ApiError::InvalidApiKey().ToStatus().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ApiError::ModelNotFound("gpt", {"m"}).ToStatus().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ApiError::PayloadTooLarge(10).ToStatus().code(), absl::StatusCode::kInvalidArgument);
  // Back and forth: the HTTP status survives for the classes FromStatus knows.
  for (const ApiError& e : {invalid, ApiError::Overloaded(1), ApiError::Unavailable(1), ApiError::Internal("r")}) {
    EXPECT_EQ(ApiError::FromStatus(e.ToStatus(), "r").http_status, e.http_status) << e.message;
  }
  EXPECT_EQ(ApiError::FromStatus(absl::DeadlineExceededError("x"), "r").ToStatus().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(ApiErrorTest, SseEvent) {
  const std::string event = ApiError::Overloaded(1).ToSseEvent();
  ASSERT_TRUE(event.starts_with("data: {"));
  ASSERT_TRUE(event.ends_with("}\n\n"));
  EXPECT_EQ(json::parse(event.substr(6))["error"]["type"], "rate_limit_error");
}

TEST(ApiErrorTest, ApiErrorOrHoldsOneOrTheOther) {
  ApiErrorOr<int> v = 5;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 5);
  ApiErrorOr<int> e = ApiError::InvalidRequest("no");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, "no");
}

}  // namespace
}  // namespace tandem::api
