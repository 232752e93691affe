#include "bench/trace.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;

TEST(Trace, ReadsTandemKeysInSecondsAndMilliseconds) {
  auto t = ParseTrace(
      "{\"arrival_s\": 1.5, \"input_tokens\": 100, \"output_tokens\": 20}\n"
      "{\"arrival_ms\": 2500, \"input_tokens\": 50, \"output_tokens\": 10}\n");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->records.size(), 2u);
  EXPECT_DOUBLE_EQ(t->records[0].arrival_s, 0.0);  // relative to the first arrival
  EXPECT_DOUBLE_EQ(t->records[1].arrival_s, 1.0);
  EXPECT_EQ(t->records[0].input_tokens, 100);
  EXPECT_EQ(t->records[1].output_tokens, 10);
}

TEST(Trace, ReadsMooncakeStyleLines) {
  auto t = ParseTrace(
      "{\"timestamp\": 27482, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47]}\n"
      "{\"timestamp\": 30535, \"input_length\": 6472, \"output_length\": 26, \"hash_ids\": [46]}\n");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->records.size(), 2u);
  EXPECT_DOUBLE_EQ(t->records[1].arrival_s, 3.053);
  EXPECT_EQ(t->records[0].input_tokens, 6955);
  EXPECT_EQ(t->records[1].output_tokens, 26);
}

TEST(Trace, ReadsBurstGptStyleJsonAndCsv) {
  auto json = ParseTrace(
      "{\"Timestamp\": 5, \"Model\": \"ChatGPT\", \"Request tokens\": 472, \"Response tokens\": 18}\n"
      "{\"Timestamp\": 45, \"Model\": \"GPT-4\", \"Request tokens\": 1087, \"Response tokens\": 0}\n");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_DOUBLE_EQ(json->records[1].arrival_s, 40.0);
  EXPECT_EQ(json->records[0].input_tokens, 472);
  EXPECT_EQ(json->records[1].output_tokens, 1);  // a failed request's 0 becomes 1
  EXPECT_EQ(json->zero_lengths_raised, 1);

  auto csv = ParseTrace(
      "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
      "5,ChatGPT,472,18,490,Conversation log\n"
      "45,ChatGPT,1087,62,1149,Conversation log\n");
  ASSERT_TRUE(csv.ok()) << csv.status();
  ASSERT_EQ(csv->records.size(), 2u);
  EXPECT_DOUBLE_EQ(csv->records[1].arrival_s, 40.0);
  EXPECT_EQ(csv->records[1].input_tokens, 1087);
  EXPECT_EQ(csv->records[1].output_tokens, 62);
}

TEST(Trace, ScalesTimeAndSortsByArrival) {
  auto t = ParseTrace(
      "{\"arrival_s\": 10, \"input_tokens\": 3, \"output_tokens\": 3}\n"
      "# a comment\n\n"
      "{\"arrival_s\": 4, \"input_tokens\": 1, \"output_tokens\": 1}\n"
      "{\"arrival_s\": 8, \"input_tokens\": 2, \"output_tokens\": 2}\n",
      0.5);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->records.size(), 3u);
  EXPECT_EQ(t->records[0].input_tokens, 1);
  EXPECT_DOUBLE_EQ(t->records[1].arrival_s, 2.0);  // (8 - 4) * 0.5
  EXPECT_DOUBLE_EQ(t->records[2].arrival_s, 3.0);
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
