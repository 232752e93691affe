#include "cli/environment.h"

#include <sys/resource.h>

#include <cstdlib>

#include "common/logging.h"
#include "common/strings.h"

namespace tandem::cli {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

ModelStoreOptions ModelStoreOptionsFromEnvironment() {
  ModelStoreOptions options;
  if (std::string dir = Env("TANDEM_MODELS_DIR"); !dir.empty()) {
    options.models_dir = dir;
  } else if (std::string cache = Env("XDG_CACHE_HOME"); cache.starts_with('/')) {
    // The XDG spec says relative values are invalid and must be ignored.
    options.models_dir = StrCat(cache, "/tandem/models");
  } else if (std::string home = Env("HOME"); !home.empty()) {
    options.models_dir = StrCat(home, "/.cache/tandem/models");
  }
  if (std::string python = Env("TANDEM_PYTHON"); !python.empty()) options.python = python;
  return options;
}

void ApplyLogLevelFromEnvironment() {
  if (std::string level = Env("TANDEM_LOG_LEVEL"); !level.empty()) SetLogLevel(level);
}

void RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace tandem::cli
