#include "api/json_fields.h"

#include <cmath>
#include <limits>

#include "common/strings.h"
#include "text/unicode.h"

namespace tandem::api::json_fields {
namespace {

// The deepest nesting of arrays and objects in `body` (strings skipped), stopping early once
// past `limit`. A linear scan, so that hostile input never reaches the parser.
int NestingDepth(std::string_view body, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) break;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": keep what follows.
std::string ParseErrorText(const char* what) {
  std::string_view s(what);
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find("] ");
    if (close != std::string_view::npos) s.remove_prefix(close + 2);
  }
  return text::SanitizeUtf8(s);  // it may quote the offending bytes
}

}  // namespace

ApiErrorOr<Json> ParseBody(std::string_view body, size_t max_bytes, int max_depth) {
  if (body.size() > max_bytes) return ApiError::PayloadTooLarge(max_bytes);
  if (NestingDepth(body, max_depth) > max_depth) {
    return ApiError::InvalidRequest(
        StrCat("Request body is nested too deeply: the limit is ", max_depth, " levels"));
  }
  Json parsed;
  try {
    parsed = Json::parse(body.begin(), body.end());
  } catch (const Json::exception& e) {
    return ApiError::InvalidRequest(
        StrCat("Request body is not valid JSON: ", ParseErrorText(e.what())));
  }
  if (!parsed.is_object()) {
    return ApiError::InvalidRequest(
        StrCat("Request body must be a JSON object, got ", DescribeType(parsed)));
  }
  return parsed;
}

const Json* Find(const Json& object, std::string_view name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string DescribeType(const Json& v) {
  switch (v.type()) {
    case Json::value_t::string:
      return "a string";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::null:
      return "null";
    default:
      return "an unexpected value";
  }
}

ApiError TypeError(std::string_view param, std::string_view expected, const Json& got) {
  return ApiError::InvalidRequest(StrCat("Invalid type for '", param, "': expected ", expected,
                                         ", but got ", DescribeType(got), " instead."),
                                  std::string(param), "invalid_type");
}

std::optional<ApiError> ReadBool(const Json& v, std::string_view param, bool* out) {
  if (!v.is_boolean()) return TypeError(param, "a boolean", v);
  *out = v.get<bool>();
  return std::nullopt;
}

std::optional<ApiError> ReadString(const Json& v, std::string_view param, std::string* out) {
  if (!v.is_string()) return TypeError(param, "a string", v);
  *out = v.get_ref<const std::string&>();
  return std::nullopt;
}

std::optional<ApiError> ReadNumber(const Json& v, std::string_view param, double* out) {
  if (!v.is_number()) return TypeError(param, "a number", v);
  const double d = v.get<double>();
  if (!std::isfinite(d)) {
    return ApiError::InvalidRequest(StrCat("'", param, "' must be a finite number"),
                                    std::string(param));
  }
  *out = d;
  return std::nullopt;
}

std::optional<ApiError> ReadInt64(const Json& v, std::string_view param, int64_t* out) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return ApiError::InvalidRequest(StrCat("'", param, "' is too large: ", u),
                                      std::string(param));
    }
    *out = static_cast<int64_t>(u);
    return std::nullopt;
  }
  if (v.is_number_integer()) {
    *out = v.get<int64_t>();
    return std::nullopt;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^63 is the first double past int64's range.
    if (std::isfinite(d) && d == std::floor(d) && d >= -0x1p63 && d < 0x1p63) {
      *out = static_cast<int64_t>(d);
      return std::nullopt;
    }
  }
  return TypeError(param, "an integer", v);
}

std::optional<ApiError> ReadSeed(const Json& v, std::string_view param, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return std::nullopt;
  }
  int64_t i = 0;
  TANDEM_API_RETURN_IF_ERROR(ReadInt64(v, param, &i));
  *out = static_cast<uint64_t>(i);
  return std::nullopt;
}

}  // namespace tandem::api::json_fields
