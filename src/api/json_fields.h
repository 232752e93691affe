// Typed reads of JSON request fields that turn every wrong type or value into the ApiError a
// client should get (OpenAI's wording: "Invalid type for 'max_tokens': expected an integer,
// but got a string instead."). Internal to src/api/.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "api/api_error.h"
#include "nlohmann/json.hpp"

// Returns the ApiError from the enclosing function when `expr` (std::optional<ApiError>)
// holds one.
#define TANDEM_API_RETURN_IF_ERROR(expr)                              \
  do {                                                                \
    if (std::optional<::tandem::api::ApiError> api_error_ = (expr)) { \
      return *std::move(api_error_);                                  \
    }                                                                 \
  } while (0)

namespace tandem::api::json_fields {

using Json = nlohmann::json;

// Parses a request body: 413 above `max_bytes`, 400 for nesting deeper than `max_depth`,
// malformed JSON (including ill-formed UTF-8) or a top level that is not an object.
ApiErrorOr<Json> ParseBody(std::string_view body, size_t max_bytes, int max_depth);

// The field, or nullptr when it is absent or null (OpenAI treats null as "not given").
const Json* Find(const Json& object, std::string_view name);

// "a string", "an integer", "a number", "a boolean", "an array", "an object", "null".
std::string DescribeType(const Json& v);
ApiError TypeError(std::string_view param, std::string_view expected, const Json& got);

std::optional<ApiError> ReadBool(const Json& v, std::string_view param, bool* out);
std::optional<ApiError> ReadString(const Json& v, std::string_view param, std::string* out);
std::optional<ApiError> ReadNumber(const Json& v, std::string_view param, double* out);
// A JSON integer, or a float without fraction, within int64 (uint64 for ReadUint64).
std::optional<ApiError> ReadInt64(const Json& v, std::string_view param, int64_t* out);
// For seeds: any integer in [-2^63, 2^64), negative ones as their two's complement.
std::optional<ApiError> ReadSeed(const Json& v, std::string_view param, uint64_t* out);

}  // namespace tandem::api::json_fields
