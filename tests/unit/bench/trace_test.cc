#include "bench/trace.h"

#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;

// Parses `text` and compares every record with (arrival_s, input, output).
void ExpectTrace(std::string_view text, const std::vector<std::tuple<double, int, int>>& want, double scale = 1.0,
                 int zero_lengths_raised = 0) {
  auto t = ParseTrace(text, scale);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->records.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(t->records[i].arrival_s, std::get<0>(want[i]), 1e-9) << "record " << i;
    EXPECT_EQ(t->records[i].input_tokens, std::get<1>(want[i])) << "record " << i;
    EXPECT_EQ(t->records[i].output_tokens, std::get<2>(want[i])) << "record " << i;
  }
  EXPECT_EQ(t->zero_lengths_raised, zero_lengths_raised);
}

TEST(Trace, ReadsTandemKeysInSecondsAndMilliseconds) {
  // Times are relative to the first arrival.
  ExpectTrace(
      "{\"arrival_s\": 1.5, \"input_tokens\": 100, \"output_tokens\": 20}\n"
      "{\"arrival_ms\": 2500, \"input_tokens\": 50, \"output_tokens\": 10}\n",
      {{0.0, 100, 20}, {1.0, 50, 10}});
}

TEST(Trace, ReadsMooncakeStyleLines) {
  ExpectTrace(
      "{\"timestamp\": 27482, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47]}\n"
      "{\"timestamp\": 30535, \"input_length\": 6472, \"output_length\": 26, \"hash_ids\": [46]}\n",
      {{0.0, 6955, 52}, {3.053, 6472, 26}});
}

TEST(Trace, ReadsBurstGptStyleJsonAndCsv) {
  // A failed request's 0 response tokens become 1 (and are counted).
  ExpectTrace(
      "{\"Timestamp\": 5, \"Model\": \"ChatGPT\", \"Request tokens\": 472, \"Response tokens\": 18}\n"
      "{\"Timestamp\": 45, \"Model\": \"GPT-4\", \"Request tokens\": 1087, \"Response tokens\": 0}\n",
      {{0.0, 472, 18}, {40.0, 1087, 1}}, 1.0, 1);
  ExpectTrace(
      "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "5,ChatGPT,472,18,490,Conversation log\n"
      "45,ChatGPT,1087,62,1149,Conversation log\n",
      {{0.0, 472, 18}, {40.0, 1087, 62}});
}

TEST(Trace, ScalesTimeAndSortsByArrival) {
  ExpectTrace(
      "{\"arrival_s\": 10, \"input_tokens\": 3, \"output_tokens\": 3}\n"
      "# a comment\n\n"
      "{\"arrival_s\": 4, \"input_tokens\": 1, \"output_tokens\": 1}\n"
      "{\"arrival_s\": 8, \"input_tokens\": 2, \"output_tokens\": 2}\n",
      {{0.0, 1, 1}, {2.0, 2, 2}, {3.0, 3, 3}}, 0.5);  // (8 - 4) * 0.5, (10 - 4) * 0.5
}

TEST(Trace, BadLinesNameTheirLineNumber) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"{\"arrival_s\": 1, \"input_tokens\": 5, \"output_tokens\": 5}\n{oops\n", "line 2: not a JSON object"},
      {"\n{\"input_tokens\": 5, \"output_tokens\": 5}\n", "line 2: no arrival time"},
      {"{\"arrival_s\": 1, \"output_tokens\": 5}\n", "line 1: no input length"},
      {"{\"arrival_s\": 1, \"input_tokens\": 5}\n", "line 1: no output length"},
      {"{\"arrival_s\": 1, \"input_tokens\": -5, \"output_tokens\": 5}\n", "line 1: 'input_tokens' must be"},
      {"{\"arrival_s\": 1, \"input_tokens\": 2.5, \"output_tokens\": 5}\n", "line 1: 'input_tokens' must be"},
      {"{\"arrival_s\": \"soon\", \"input_tokens\": 1, \"output_tokens\": 5}\n", "line 1: 'arrival_s' is not a number"},
      {"Timestamp,Request tokens,Response tokens\n1,2,3\n4,5\n", "line 3: expected 3"},
      {"Timestamp,Request tokens,Response tokens\n1,x,3\n", "line 2:"},
      {"time,in,out\n", "line 1: neither a JSON object nor a BurstGPT CSV header"},
  };
  for (const Case& c : cases) {
    auto t = ParseTrace(c.text);
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_THAT(t.status().message(), HasSubstr(c.message)) << c.text;
  }
}

TEST(Trace, RejectsEmptyTracesAndBadScales) {
  EXPECT_THAT(ParseTrace("\n# nothing\n").status().message(), HasSubstr("no requests"));
  EXPECT_FALSE(ParseTrace("{\"arrival_s\": 1, \"input_tokens\": 5, \"output_tokens\": 5}", 0).ok());
  EXPECT_FALSE(ParseTrace("{\"arrival_s\": 1, \"input_tokens\": 5, \"output_tokens\": 5}", -1).ok());
}

}  // namespace
}  // namespace tandem::bench
