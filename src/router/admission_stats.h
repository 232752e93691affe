// How long a refused client should wait before it retries: the requests now waiting for KV room
// on a decode worker, over the rate at which waiting requests have recently been admitted. The
// router's 429 carries it as Retry-After (rather than a fixed second).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tandem::router {

class AdmissionStats {
 public:
  // A request started (+1) or stopped (-1) waiting for room.
  void NoteWaiting(int delta);
  // A request that had waited got its KV room.
  void NoteAdmittedAfterWait(absl::Time now);
  // ceil((waiting + 1) / admissions per second), within [1, 60]; 5 before any admission.
  int RetryAfterSeconds() const;

  // The payload key under which a refusal carries its Retry-After (seconds, decimal text).
  static constexpr char kRetryAfterPayload[] = "tandem.dev/retry-after";
  // `status` with RetryAfterSeconds() attached.
  absl::Status WithRetryAfter(absl::Status status) const;

 private:
  mutable std::mutex mu_;
  int64_t waiting_ = 0;
  absl::Time last_admitted_ = absl::InfinitePast();
  double mean_interval_s_ = 0;  // EWMA of the time between admissions; 0: none yet
};

// The Retry-After a status carries (AdmissionStats::WithRetryAfter), or 0.
int RetryAfterOf(const absl::Status& status);

}  // namespace tandem::router
