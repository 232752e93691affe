#include "testing/model_paths.h"

#include <cstdlib>
#include <string>

namespace tandem::testing {

std::string BundledModelPath() {
  const char* p = std::getenv("TANDEM_MODEL");
  return p ? std::string(p) : std::string();
}

bool ModelRequired() {
  const char* p = std::getenv("TANDEM_REQUIRE_MODEL");
  return p != nullptr && std::string(p) == "1";
}

}  // namespace tandem::testing
