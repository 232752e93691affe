#include "modelstore/progress_line.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

using ::testing::HasSubstr;

// Runs `body` with a ProgressLine writing into a temporary file and returns what it wrote.
template <typename Body>
std::string Capture(bool in_place, bool enabled, Body body) {
  std::FILE* f = std::tmpfile();
  {
    ProgressLine line("extracting m.gguf", f, in_place, enabled);
    body(line);
  }
  std::string out(static_cast<size_t>(std::ftell(f)), '\0');
  std::rewind(f);
  out.resize(std::fread(out.data(), 1, out.size(), f));
  std::fclose(f);
  return out;
}

void Feed(ProgressLine& line, uint64_t total, uint64_t piece) {
  for (uint64_t done = piece; done < total + piece; done += piece) {
    line.Update(std::min(done, total), total);
  }
}

TEST(ProgressLineTest, LogOutputIsOneLinePerQuarter) {
  const std::string out =
      Capture(false, true, [](ProgressLine& l) { Feed(l, 100'000'000, 1 << 20); });
  EXPECT_EQ(out,
            "extracting m.gguf 25% (25.2/100.0 MB)\n"
            "extracting m.gguf 50% (50.3/100.0 MB)\n"
            "extracting m.gguf 75% (75.5/100.0 MB)\n"
            "extracting m.gguf 100% (100.0/100.0 MB)\n");
}

TEST(ProgressLineTest, TerminalOutputRewritesOneLine) {
  const std::string out =
      Capture(true, true, [](ProgressLine& l) { Feed(l, 100'000'000, 1 << 20); });
  EXPECT_THAT(out, HasSubstr("\rextracting m.gguf  50%  50.3/100.0 MB"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
  EXPECT_EQ(out.back(), '\n');
  const std::string fine = Capture(true, true, [](ProgressLine& l) { Feed(l, 1000, 1); });
  EXPECT_EQ(std::count(fine.begin(), fine.end(), '\r'), 101);  // once per percent, 0 to 100
}

TEST(ProgressLineTest, DisabledWritesNothing) {
  EXPECT_EQ(Capture(true, false, [](ProgressLine& l) { Feed(l, 1000, 10); }), "");
  EXPECT_EQ(Capture(false, false, [](ProgressLine& l) { Feed(l, 1000, 10); }), "");
}

}  // namespace
}  // namespace tandem
