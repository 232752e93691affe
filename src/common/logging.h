// One named spdlog logger per component, all writing to stderr (stdout is kept for program
// output such as generated text). Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "spdlog/spdlog.h"

namespace tandem {

// Returns the logger for `component` (e.g. "engine", "gguf"), creating it on first use.
// The level is info until SetLogLevel is called (the `tandem` executable applies
// $TANDEM_LOG_LEVEL at start: cli/environment.h).
std::shared_ptr<spdlog::logger> GetLogger(const std::string& component);

// Sets the level of every existing and future logger: trace, debug, info, warn, error or off.
void SetLogLevel(const std::string& level);

}  // namespace tandem
