#include "router/admission_stats.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tandem::router {

void AdmissionStats::NoteWaiting(int delta) {
  std::lock_guard<std::mutex> lock(mu_);
  waiting_ = std::max<int64_t>(0, waiting_ + delta);
}

void AdmissionStats::NoteAdmittedAfterWait(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (last_admitted_ != absl::InfinitePast()) {
    const double interval = absl::ToDoubleSeconds(now - last_admitted_);
    mean_interval_s_ = mean_interval_s_ == 0 ? interval : 0.8 * mean_interval_s_ + 0.2 * interval;
  }
  last_admitted_ = now;
}

int AdmissionStats::RetryAfterSeconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (mean_interval_s_ <= 0) return 5;
  const double seconds = static_cast<double>(waiting_ + 1) * mean_interval_s_;
  return static_cast<int>(std::clamp(std::ceil(seconds), 1.0, 60.0));
}

absl::Status AdmissionStats::WithRetryAfter(absl::Status status) const {
  status.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(RetryAfterSeconds())));
  return status;
}

int RetryAfterOf(const absl::Status& status) {
  const auto payload = status.GetPayload(AdmissionStats::kRetryAfterPayload);
  if (!payload.has_value()) return 0;
  const std::string text(*payload);
  int seconds = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || seconds > 3600) return 0;
    seconds = seconds * 10 + (c - '0');
  }
  return seconds;
}

}  // namespace tandem::router
