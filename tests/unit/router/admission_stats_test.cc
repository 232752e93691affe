// The 429's Retry-After: requests waiting for KV room over the recent admission rate.
#include "router/admission_stats.h"

#include "gtest/gtest.h"

namespace tandem::router {
namespace {

TEST(AdmissionStatsTest, RetryAfterIsTheQueueOverTheAdmissionRate) {
  AdmissionStats s;
  EXPECT_EQ(s.RetryAfterSeconds(), 5);  // nothing measured yet
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i <= 10; ++i) s.NoteAdmittedAfterWait(t0 + absl::Seconds(2 * i));  // one every 2 s
  EXPECT_EQ(s.RetryAfterSeconds(), 2);  // nobody waiting: the next slot
  s.NoteWaiting(+5);
  EXPECT_EQ(s.RetryAfterSeconds(), 12);  // 6 requests to admit, 2 s apart
  s.NoteWaiting(+100);
  EXPECT_EQ(s.RetryAfterSeconds(), 60);  // capped
  s.NoteWaiting(-1000);
  EXPECT_EQ(s.RetryAfterSeconds(), 2);  // never below zero waiting
}

TEST(AdmissionStatsTest, TheRetryAfterTravelsWithTheStatus) {
  AdmissionStats s;
  const absl::Status refused = s.WithRetryAfter(absl::ResourceExhaustedError("full"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfterOf(refused), 5);
  EXPECT_EQ(RetryAfterOf(absl::ResourceExhaustedError("full")), 0);
}

}  // namespace
}  // namespace tandem::router
