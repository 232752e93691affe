// Runs a command line through the shell and keeps its exit code and its output (stdout and
// stderr together): for tests that drive the `tandem` binary.
#pragma once

#include <string>

namespace tandem::testing {

struct ShellResult {
  int exit_code = -1;
  std::string output;
};

ShellResult Shell(const std::string& command);

}  // namespace tandem::testing
