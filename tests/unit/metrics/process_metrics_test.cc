// The process_* metrics read this test's own process: they follow what it does.
#include "metrics/process_metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::metrics {
namespace {

using ::testing::HasSubstr;

TEST(ProcessMetricsTest, CpuTimeGrowsWithWork) {
  const auto before = ReadProcessStats();
  ASSERT_TRUE(before.has_value());
  volatile double x = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) x = x + 1.0;
  const auto after = ReadProcessStats();
  ASSERT_TRUE(after.has_value());
  EXPECT_GE(after->cpu_seconds - before->cpu_seconds, 0.1);
}

TEST(ProcessMetricsTest, ResidentMemoryGrowsWhenPagesAreTouched) {
  const auto before = ReadProcessStats();
  ASSERT_TRUE(before.has_value());
  constexpr size_t kBytes = 64u << 20;
  std::unique_ptr<char[]> block(new char[kBytes]);
  std::memset(block.get(), 1, kBytes);
  const auto after = ReadProcessStats();
  ASSERT_TRUE(after.has_value());
  EXPECT_GE(after->resident_bytes - before->resident_bytes, 0.8 * kBytes);
  EXPECT_GE(after->virtual_bytes, after->resident_bytes);
  EXPECT_EQ(block[kBytes - 1], 1);
}

TEST(ProcessMetricsTest, OpenFdsCountTheFilesThisProcessHolds) {
  const auto before = CountOpenFds();
  ASSERT_TRUE(before.has_value());
  const int fd = open("/proc/self/stat", O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(*CountOpenFds(), *before + 1);
  close(fd);
  EXPECT_EQ(*CountOpenFds(), *before);
  ASSERT_TRUE(MaxFds().has_value());
  EXPECT_GT(*MaxFds(), *before);
}

TEST(ProcessMetricsTest, StartTimeIsBeforeNowAndRecent) {
  const auto s = ReadProcessStats();
  ASSERT_TRUE(s.has_value());
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(s->start_time_seconds, now + 1);
  EXPECT_GT(s->start_time_seconds, now - 3600) << "this test process started within the hour";
}

TEST(ProcessMetricsTest, RenderedWithThePrometheusClientsNames) {
  MetricsRegistry registry;
  const auto registrations = RegisterProcessMetrics(registry);
  const std::string text = registry.Render();
  for (const char* name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                           "process_virtual_memory_bytes ", "process_open_fds ", "process_max_fds ",
                           "process_start_time_seconds "}) {
    EXPECT_THAT(text, HasSubstr(std::string("\n") + name)) << text;
  }
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter"));
}

}  // namespace
}  // namespace tandem::metrics
