// One named spdlog logger per component, all writing to stderr (stdout is kept for program
// output such as generated text). Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "spdlog/spdlog.h"

namespace tandem {

// Returns the logger for `component` (e.g. "engine", "gguf"), creating it on first use.
// The level comes from TANDEM_LOG_LEVEL (trace|debug|info|warn|error|off; default info) unless
// SetLogLevel was called.
std::shared_ptr<spdlog::logger> GetLogger(const std::string& component);

// Sets the level of every existing and future logger. Accepts the names above.
void SetLogLevel(const std::string& level);

}  // namespace tandem
