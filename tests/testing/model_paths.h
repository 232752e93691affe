// Locating the real model for tests that need it.
#pragma once

#include <string>

namespace tandem::testing {

// The bundled model's path from $TANDEM_MODEL, or "" when unset. Tests call
// TANDEM_REQUIRE_MODEL_OR_SKIP() which skips when there is no model, unless
// $TANDEM_REQUIRE_MODEL=1 (set by `make test`), in which case a missing model fails the test.
std::string BundledModelPath();
bool ModelRequired();

}  // namespace tandem::testing

#define TANDEM_MODEL_PATH_OR_SKIP(var)                                                     \
  const std::string var = ::tandem::testing::BundledModelPath();                           \
  if (var.empty()) {                                                                       \
    if (::tandem::testing::ModelRequired()) {                                              \
      FAIL() << "TANDEM_MODEL is not set but TANDEM_REQUIRE_MODEL=1";                       \
    }                                                                                      \
    GTEST_SKIP() << "set TANDEM_MODEL to the bundled model's path to run this test";       \
  }
