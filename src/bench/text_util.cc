#include "bench/text_util.h"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/strings.h"

namespace tandem::bench {

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(sep, start);
    if (end == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

std::string_view Trim(std::string_view text) {
  const char* ws = " \t\r\n\f\v";
  const size_t first = text.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(ws) - first + 1);
}

absl::StatusOr<double> ParseDouble(std::string_view text) {
  const std::string s(Trim(text));
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE) {
    return absl::InvalidArgumentError(StrCat("'", text, "' is not a number"));
  }
  return v;
}

absl::StatusOr<int64_t> ParseInt(std::string_view text) {
  const std::string s(Trim(text));
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE) {
    return absl::InvalidArgumentError(StrCat("'", text, "' is not an integer"));
  }
  return static_cast<int64_t>(v);
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::UnavailableError(StrCat("cannot read ", path));
  return ss.str();
}

}  // namespace tandem::bench
