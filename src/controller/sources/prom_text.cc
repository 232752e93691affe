#include "controller/sources/prom_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>
#include <utility>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::controller {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsMetricNameChar(char c, bool first) { return IsLetter(c) || c == '_' || c == ':' || (!first && IsDigit(c)); }
bool IsLabelNameChar(char c, bool first) { return IsLetter(c) || c == '_' || (!first && IsDigit(c)); }

// The start of a line for an error message, printable ASCII only.
std::string Excerpt(std::string_view line) {
  constexpr size_t kMax = 80;
  std::string out;
  for (size_t i = 0; i < line.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (line.size() > kMax) out.append("...");
  return out;
}

// One line of the exposition, consumed left to right. Every read checks the bound.
class LineReader {
 public:
  LineReader(std::string_view line, int line_number) : line_(line), line_number_(line_number) {}

  bool AtEnd() const { return pos_ >= line_.size(); }
  char Peek() const { return AtEnd() ? '\0' : line_[pos_]; }
  void Advance() { if (!AtEnd()) ++pos_; }
  void SkipBlanks() {
    while (!AtEnd() && IsBlank(line_[pos_])) ++pos_;
  }
  std::string_view Rest() const { return AtEnd() ? std::string_view() : line_.substr(pos_); }

  // A run of characters up to the next blank (or the end of the line).
  std::string_view Token() {
    const size_t start = pos_;
    while (!AtEnd() && !IsBlank(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }

  template <typename CharPred>
  std::string_view Name(CharPred is_name_char) {
    const size_t start = pos_;
    while (!AtEnd() && is_name_char(line_[pos_], pos_ == start)) ++pos_;
    return line_.substr(start, pos_ - start);
  }

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(StrCat("line ", line_number_, ", column ", pos_ + 1, ": ", what,
                                             " in '", Excerpt(line_), "'"));
  }

 private:
  const std::string_view line_;
  const int line_number_;
  size_t pos_ = 0;
};

absl::StatusOr<std::string> ReadLabelValue(LineReader& in) {
  if (in.Peek() != '"') return in.Error("expected '\"' to open the label value");
  in.Advance();
  std::string value;
  while (true) {
    if (in.AtEnd()) return in.Error("unterminated label value");
    const char c = in.Peek();
    in.Advance();
    if (c == '"') return value;
    if (c != '\\') {
      value.push_back(c);
      continue;
    }
    if (in.AtEnd()) return in.Error("unterminated escape in a label value");
    const char e = in.Peek();
    switch (e) {
      case '\\': value.push_back('\\'); break;
      case '"': value.push_back('"'); break;
      case 'n': value.push_back('\n'); break;
      default: return in.Error(StrCat("invalid escape '\\", std::string(1, e), "' in a label value"));
    }
    in.Advance();
  }
}

absl::Status ReadLabels(LineReader& in, PromLabels* labels) {
  in.Advance();  // '{'
  while (true) {
    in.SkipBlanks();
    if (in.Peek() == '}') break;
    const std::string_view name = in.Name(IsLabelNameChar);
    if (name.empty()) return in.Error("expected a label name or '}'");
    in.SkipBlanks();
    if (in.Peek() != '=') return in.Error(StrCat("expected '=' after label name '", name, "'"));
    in.Advance();
    in.SkipBlanks();
    TANDEM_ASSIGN_OR_RETURN(std::string value, ReadLabelValue(in));
    if (!labels->emplace(std::string(name), std::move(value)).second) {
      return in.Error(StrCat("duplicate label '", name, "'"));
    }
    in.SkipBlanks();
    if (in.Peek() == ',') {
      in.Advance();
      continue;
    }
    if (in.Peek() != '}') return in.Error("expected ',' or '}' after a label");
    break;
  }
  in.Advance();  // '}'
  return absl::OkStatus();
}

absl::Status ReadSample(LineReader& in, PromExposition* out) {
  PromSample sample;
  sample.name = std::string(in.Name(IsMetricNameChar));
  if (sample.name.empty()) return in.Error("expected a metric name");
  if (!in.AtEnd() && !IsBlank(in.Peek()) && in.Peek() != '{') return in.Error("invalid character in the metric name");
  in.SkipBlanks();
  if (in.Peek() == '{') TANDEM_RETURN_IF_ERROR(ReadLabels(in, &sample.labels));
  in.SkipBlanks();
  const std::string_view value = in.Token();
  if (value.empty()) return in.Error(StrCat("expected a value for '", sample.name, "'"));
  const std::optional<double> parsed = ParsePromValue(value);
  if (!parsed) return in.Error(StrCat("invalid value '", Excerpt(value), "'"));
  sample.value = *parsed;
  in.SkipBlanks();
  if (!in.AtEnd()) {
    const std::string_view ts = in.Token();
    int64_t ms = 0;
    const auto [end, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), ms);
    if (ec != std::errc() || end != ts.data() + ts.size()) {
      return in.Error(StrCat("invalid timestamp '", Excerpt(ts), "'"));
    }
    sample.timestamp_ms = ms;
    in.SkipBlanks();
    if (!in.AtEnd()) return in.Error("unexpected text after the timestamp");
  }
  out->samples.push_back(std::move(sample));
  return absl::OkStatus();
}

std::string UnescapeHelp(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '\\' || text[i + 1] == 'n')) {
      out.push_back(text[i + 1] == 'n' ? '\n' : '\\');
      ++i;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

std::optional<PromType> TypeFromName(std::string_view name) {
  if (name == "counter") return PromType::kCounter;
  if (name == "gauge") return PromType::kGauge;
  if (name == "histogram") return PromType::kHistogram;
  if (name == "summary") return PromType::kSummary;
  if (name == "untyped") return PromType::kUntyped;
  return std::nullopt;
}

// A line whose first non-blank character is '#': HELP, TYPE or a plain comment.
absl::Status ReadCommentLine(LineReader& in, PromExposition* out) {
  in.Advance();  // '#'
  in.SkipBlanks();
  const std::string_view keyword = in.Token();
  if (keyword != "HELP" && keyword != "TYPE") return absl::OkStatus();  // a comment
  in.SkipBlanks();
  const std::string name(in.Name(IsMetricNameChar));
  if (name.empty()) return in.Error(StrCat("expected a metric name after # ", keyword));
  if (!in.AtEnd() && !IsBlank(in.Peek())) return in.Error(StrCat("invalid metric name after # ", keyword));
  in.SkipBlanks();
  if (keyword == "HELP") {
    if (!out->help.emplace(name, UnescapeHelp(in.Rest())).second) {
      return in.Error(StrCat("second HELP line for '", name, "'"));
    }
    return absl::OkStatus();
  }
  const std::string_view type_name = in.Token();
  const std::optional<PromType> type = TypeFromName(type_name);
  if (!type) return in.Error(StrCat("unknown metric type '", Excerpt(type_name), "'"));
  in.SkipBlanks();
  if (!in.AtEnd()) return in.Error("unexpected text after the metric type");
  if (!out->types.emplace(name, *type).second) return in.Error(StrCat("second TYPE line for '", name, "'"));
  return absl::OkStatus();
}

bool HasSuffix(std::string_view s, std::string_view suffix, std::string_view* base) {
  if (s.size() <= suffix.size() || !s.ends_with(suffix)) return false;
  *base = s.substr(0, s.size() - suffix.size());
  return true;
}

}  // namespace

PromType PromExposition::TypeOf(std::string_view sample_name) const {
  if (auto it = types.find(sample_name); it != types.end()) return it->second;
  std::string_view base;
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (!HasSuffix(sample_name, suffix, &base)) continue;
    auto it = types.find(base);
    if (it == types.end()) continue;
    if (it->second == PromType::kHistogram) return it->second;
    if (it->second == PromType::kSummary && suffix != "_bucket") return it->second;
  }
  return PromType::kUntyped;
}

absl::StatusOr<PromExposition> ParsePromText(std::string_view text) {
  PromExposition out;
  int line_number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    LineReader in(line, line_number);
    in.SkipBlanks();
    if (in.AtEnd()) continue;
    if (in.Peek() == '#') {
      TANDEM_RETURN_IF_ERROR(ReadCommentLine(in, &out));
    } else {
      TANDEM_RETURN_IF_ERROR(ReadSample(in, &out));
    }
  }
  return out;
}

std::optional<double> ParsePromValue(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  // from_chars takes no sign of its own here, and "nan(payload)" is not a Prometheus value.
  if (text.empty() || text[0] == '+' || text[0] == '-' || text.find('(') != std::string_view::npos) {
    return std::nullopt;
  }
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return negative ? -value : value;
}

bool LabelMatcher::Matches(const PromLabels& labels) const {
  auto it = labels.find(name);
  const std::string_view actual = it == labels.end() ? std::string_view() : std::string_view(it->second);
  return std::find(values.begin(), values.end(), actual) != values.end();
}

bool MatchesAll(const PromLabels& labels, const LabelMatchers& matchers) {
  return std::all_of(matchers.begin(), matchers.end(), [&](const LabelMatcher& m) { return m.Matches(labels); });
}

std::optional<double> SumSamples(const std::vector<PromSample>& samples, std::string_view name,
                                 const LabelMatchers& matchers) {
  std::optional<double> sum;
  for (const PromSample& s : samples) {
    if (s.name != name || !MatchesAll(s.labels, matchers)) continue;
    sum = sum.value_or(0) + s.value;
  }
  return sum;
}

absl::StatusOr<std::vector<HistogramBucket>> CumulativeBuckets(const std::vector<PromSample>& samples,
                                                              std::string_view histogram,
                                                              const LabelMatchers& matchers) {
  const std::string bucket_name = StrCat(histogram, "_bucket");
  std::map<double, double> by_bound;
  for (const PromSample& s : samples) {
    if (s.name != bucket_name || !MatchesAll(s.labels, matchers)) continue;
    auto le = s.labels.find("le");
    if (le == s.labels.end()) return absl::InvalidArgumentError(StrCat(bucket_name, " sample without an 'le' label"));
    const std::optional<double> bound = ParsePromValue(le->second);
    if (!bound || std::isnan(*bound)) {
      return absl::InvalidArgumentError(StrCat(bucket_name, " sample with le=\"", Excerpt(le->second),
                                               "\", which is not a bucket bound"));
    }
    by_bound[*bound] += s.value;
  }
  std::vector<HistogramBucket> out;
  out.reserve(by_bound.size());
  for (const auto& [bound, count] : by_bound) out.push_back({bound, count});
  return out;
}

double HistogramQuantile(double q, std::vector<HistogramBucket> buckets) {
  if (std::isnan(q)) return std::numeric_limits<double>::quiet_NaN();
  if (q < 0) return -std::numeric_limits<double>::infinity();
  if (q > 1) return std::numeric_limits<double>::infinity();
  std::sort(buckets.begin(), buckets.end(),
            [](const HistogramBucket& a, const HistogramBucket& b) { return a.upper_bound < b.upper_bound; });
  if (buckets.size() < 2 || !std::isinf(buckets.back().upper_bound) || buckets.back().upper_bound < 0) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  // Counts read from different series may be torn; a cumulative count never decreases.
  for (size_t i = 1; i < buckets.size(); ++i) buckets[i].count = std::max(buckets[i].count, buckets[i - 1].count);

  const double observations = buckets.back().count;
  if (!(observations > 0)) return std::numeric_limits<double>::quiet_NaN();
  double rank = q * observations;
  // The first finite bucket holding the rank; the +Inf bucket when none does.
  size_t b = 0;
  while (b < buckets.size() - 1 && buckets[b].count < rank) ++b;
  if (b == buckets.size() - 1) return buckets[b - 1].upper_bound;
  if (b == 0 && buckets[0].upper_bound <= 0) return buckets[0].upper_bound;

  double bucket_start = 0;
  double count = buckets[b].count;
  if (b > 0) {
    bucket_start = buckets[b - 1].upper_bound;
    count -= buckets[b - 1].count;
    rank -= buckets[b - 1].count;
  }
  return bucket_start + (buckets[b].upper_bound - bucket_start) * (rank / count);
}

}  // namespace tandem::controller
