// Runs a child process and waits for it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {

struct SubprocessOptions {
  // Send the child's stdout to our stderr (keeps our stdout for program output).
  bool stdout_to_stderr = false;
};

// Runs argv[0] (searched in PATH) with `argv` and returns its exit code. A child killed by a
// signal is an error.
absl::StatusOr<int> RunSubprocess(const std::vector<std::string>& argv,
                                  const SubprocessOptions& options = {});

}  // namespace tandem
