// String helpers. Debian's Abseil is built with its own absl::string_view (not std's), so
// tandem uses std::string_view throughout and builds messages with fmt, never absl::StrCat.
#pragma once

#include <functional>
#include <iterator>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "fmt/format.h"

namespace tandem {

// Concatenates the text form of every argument (anything fmt can format).
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (fmt::format_to(std::back_inserter(out), "{}", args), ...);
  return out;
}

inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

// Heterogeneous-lookup hash for string-keyed maps (find by std::string_view without a copy).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

}  // namespace tandem

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  auto format(absl::string_view s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<std::string_view> {
  auto format(const absl::Status& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(s.ToString(), ctx);
  }
};
