// Progress of a long copy shown on a terminal or in a log: on a TTY one line rewritten in place
// ("extracting X  45%  44.3/98.4 MB"); otherwise one line at each quarter, so that captured
// logs stay short. Not thread-safe; one per copy.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace tandem {

class ProgressLine {
 public:
  // Writes to `out` (not owned), in place when `in_place` is set. A disabled line writes
  // nothing.
  ProgressLine(std::string label, std::FILE* out, bool in_place, bool enabled = true);
  // Writes to stderr, in place when stderr is a terminal.
  static ProgressLine ForStderr(std::string label, bool enabled);

  ~ProgressLine() { Finish(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  void Update(uint64_t done, uint64_t total);
  // Ends the in-place line. Idempotent.
  void Finish();

 private:
  std::string label_;
  std::FILE* out_;
  bool in_place_;
  bool enabled_;
  int last_shown_;  // percent in place, quarter otherwise
  bool line_open_ = false;
};

}  // namespace tandem
