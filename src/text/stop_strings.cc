#include "text/stop_strings.h"

#include <algorithm>

#include "absl/status/status.h"
#include "common/strings.h"
#include "text/unicode.h"

namespace tandem::text {
namespace {

// KMP failure function: f[i] = length of the longest proper prefix of s[0..i] that is also
// a suffix of it.
std::vector<uint32_t> FailureFunction(std::string_view s) {
  std::vector<uint32_t> f(s.size(), 0);
  uint32_t k = 0;
  for (size_t i = 1; i < s.size(); ++i) {
    while (k > 0 && s[i] != s[k]) k = f[k - 1];
    if (s[i] == s[k]) ++k;
    f[i] = k;
  }
  return f;
}

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

absl::StatusOr<StopStringMatcher> StopStringMatcher::Create(std::vector<std::string> stops) {
  StopStringMatcher m;
  for (size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty()) {
      return absl::InvalidArgumentError(StrCat("stop string ", i, " is empty"));
    }
    if (!IsValidUtf8(stops[i])) {
      return absl::InvalidArgumentError(StrCat("stop string ", i, " is not valid UTF-8"));
    }
    m.failure_.push_back(FailureFunction(stops[i]));
  }
  m.stops_ = std::move(stops);
  m.state_.assign(m.stops_.size(), 0);
  return m;
}

std::string StopStringMatcher::Push(std::string_view piece) {
  if (stopped()) return {};
  const size_t first_new = pending_.size();
  pending_.append(piece);
  // Invariant: pending_ holds at least the last state_[s] bytes for every stop, so a match
  // found here starts inside pending_.
  for (size_t i = first_new; i < pending_.size(); ++i) {
    const char c = pending_[i];
    int best = -1;
    size_t best_len = 0;
    for (size_t s = 0; s < stops_.size(); ++s) {
      const std::string& stop = stops_[s];
      uint32_t k = state_[s];
      while (k > 0 && stop[k] != c) k = failure_[s][k - 1];
      if (stop[k] == c) ++k;
      if (k == stop.size()) {
        if (armed_ && stop.size() > best_len) {
          best = static_cast<int>(s);
          best_len = stop.size();
        }
        k = failure_[s][k - 1];
      }
      state_[s] = k;
    }
    if (best >= 0) {
      matched_ = best;
      std::string out = pending_.substr(0, i + 1 - best_len);
      pending_.clear();
      return out;
    }
  }
  // Hold back the longest tail that is a prefix of some stop, and an unfinished character.
  size_t hold = IncompleteUtf8Tail(pending_);
  for (uint32_t k : state_) hold = std::max<size_t>(hold, k);
  size_t cut = pending_.size() - hold;
  for (int n = 0; n < 3 && cut > 0 && cut < pending_.size() && IsContinuationByte(pending_[cut]);
       ++n) {
    --cut;  // never end inside a character
  }
  std::string out = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return out;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  if (!stopped()) out.swap(pending_);
  pending_.clear();
  std::fill(state_.begin(), state_.end(), 0);
  return out;
}

std::string_view StopStringMatcher::matched_stop() const {
  return matched_ >= 0 ? std::string_view(stops_[matched_]) : std::string_view();
}

}  // namespace tandem::text
