// Checks the exposition text with Prometheus' own linter, `promtool check metrics` (Debian
// package `prometheus`). Skipped when promtool is missing unless TANDEM_REQUIRE_PROMTOOL=1.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "metrics/buckets.h"
#include "metrics/registry.h"

namespace tandem::metrics {
namespace {

std::string FindPromtool() {
  if (const char* env = std::getenv("PROMTOOL"); env != nullptr && *env != '\0') return env;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate = dirs.substr(start, end - start) + "/promtool";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CommandResult RunShell(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) result.output.append(buf, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST(PromtoolTest, EveryKindOfMetricPassesPromtoolCheckMetrics) {
  const std::string promtool = FindPromtool();
  if (promtool.empty()) {
    const char* require = std::getenv("TANDEM_REQUIRE_PROMTOOL");
    if (require != nullptr && std::string(require) == "1") {
      FAIL() << "promtool not found in PATH but TANDEM_REQUIRE_PROMTOOL=1";
    }
    GTEST_SKIP() << "promtool not found (apt-get install prometheus); set "
                    "TANDEM_REQUIRE_PROMTOOL=1 to make this a failure";
  }

  MetricsRegistry registry;
  auto& requests =
      registry.AddCounter("tandem_router_requests_total",
                          "Requests received, by model and status code.", {"model", "code"});
  requests.With({"smollm2", "200"}).Increment(12);
  requests.With({"quote\"back\\slash\nnewline", "500"}).Increment();
  registry.AddGauge("tandem_engine_running_sequences", "Sequences in the running batch.")
      .With()
      .Set(3);
  auto& ttft =
      AddLatencyHistogram(registry, "tandem_router_time_to_first_token_seconds",
                          "Time from request arrival to the first streamed token.", {"model"});
  for (double v : {0.001, 0.02, 0.3, 4.0, 100.0}) ttft.With({"smollm2"}).Observe(v);
  registry
      .AddHistogram("tandem_transfer_kv_bytes", "KV bytes per transfer.",
                    ExponentialBuckets(4096, 4, 8))
      .With()
      .Observe(1 << 20);
  auto free_blocks = registry
                         .AddCallbackGauge("tandem_engine_kv_free_blocks",
                                           "Free KV cache blocks.\nRead from the engine.")
                         .Register({}, [] { return 1024.0; });
  auto steps =
      registry.AddCallbackCounter("tandem_engine_steps_total", "Engine steps run.", {"phase"})
          .Register({"decode"}, [] { return 77.0; });

  const std::string text = registry.Render();
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() /
      ("tandem_promtool_test_" + std::to_string(::getpid()) + ".prom");
  {
    std::ofstream out(file, std::ios::binary);
    out << text;
    ASSERT_TRUE(out.good());
  }
  const CommandResult result =
      RunShell("'" + promtool + "' check metrics < '" + file.string() + "'");
  std::filesystem::remove(file);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- rendered ---\n" << text;
  EXPECT_EQ(result.output, "") << "--- rendered ---\n" << text;
}

}  // namespace
}  // namespace tandem::metrics
