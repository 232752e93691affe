#include "modelstore/progress_line.h"

#include <unistd.h>

#include "fmt/format.h"

namespace tandem {

ProgressLine::ProgressLine(std::string label, std::FILE* out, bool in_place, bool enabled)
    : label_(std::move(label)),
      out_(out),
      in_place_(in_place),
      enabled_(enabled),
      // A log gets lines at 25, 50, 75 and 100%; a terminal sees every percent from 0.
      last_shown_(in_place ? -1 : 0) {}

ProgressLine ProgressLine::ForStderr(std::string label, bool enabled) {
  return ProgressLine(std::move(label), stderr, ::isatty(STDERR_FILENO) == 1, enabled);
}

void ProgressLine::Update(uint64_t done, uint64_t total) {
  if (!enabled_ || out_ == nullptr) return;
  const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
  const int step = in_place_ ? percent : percent / 25;
  if (step <= last_shown_) return;
  last_shown_ = step;
  const std::string amount = fmt::format("{:.1f}/{:.1f} MB", done / 1e6, total / 1e6);
  if (in_place_) {
    // \33[K clears what a longer previous line left behind.
    fmt::print(out_, "\r{} {:3d}%  {}\33[K", label_, percent, amount);
    line_open_ = true;
  } else {
    fmt::print(out_, "{} {}% ({})\n", label_, percent, amount);
  }
  std::fflush(out_);
}

void ProgressLine::Finish() {
  if (!line_open_) return;
  std::fputc('\n', out_);
  std::fflush(out_);
  line_open_ = false;
}

}  // namespace tandem
