#include "common/logging.h"

#include <mutex>

#include "spdlog/sinks/stdout_color_sinks.h"

namespace tandem {
namespace {

std::mutex& LoggerMutex() {
  static std::mutex mu;
  return mu;
}

spdlog::level::level_enum& CurrentLevel() {
  // main applies $TANDEM_LOG_LEVEL (cli/environment.h) through SetLogLevel.
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

}  // namespace

std::shared_ptr<spdlog::logger> GetLogger(const std::string& component) {
  std::lock_guard<std::mutex> lock(LoggerMutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ [%n] %v");
  logger->set_level(CurrentLevel());
  return logger;
}

void SetLogLevel(const std::string& level) {
  std::lock_guard<std::mutex> lock(LoggerMutex());
  CurrentLevel() = spdlog::level::from_str(level);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(CurrentLevel()); });
}

}  // namespace tandem
