// What every fuzz target shares: quiet logs (a parser that logs each rejected input would spend
// the run writing to stderr) and FUZZ_CHECK, which stops the run with the input saved when a
// property the code promises does not hold. Not a library: header-only, fuzz targets only.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "common/logging.h"

namespace tandem::fuzz {

inline void QuietLogs() {
  static const bool done = [] {
    SetLogLevel("off");
    return true;
  }();
  (void)done;
}

}  // namespace tandem::fuzz

// Aborts (libFuzzer reports a crash and writes the input) when `cond` is false.
#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)
