// SSE framing, OpenAI stream events, and how a response becomes a RequestRecord (each failure
// kind), without sockets.
#include "bench/stream_recorder.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(SseParser, SplitsEventsWhereverTheBytesAreCut) {
  const std::string stream = "data: {\"a\":1}\n\n: keep-alive comment\n\ndata: two\ndata: lines\n\ndata: [DONE]\n\n";
  for (size_t cut = 1; cut < stream.size(); ++cut) {
    SseParser p;
    auto events = p.Feed(std::string_view(stream).substr(0, cut));
    auto rest = p.Feed(std::string_view(stream).substr(cut));
    events.insert(events.end(), rest.begin(), rest.end());
    EXPECT_THAT(events, ElementsAre("{\"a\":1}", "two\nlines", "[DONE]")) << "cut at " << cut;
    EXPECT_FALSE(p.has_partial());
  }
}

TEST(SseParser, AcceptsCrLfAndCrAndIgnoresOtherFields) {
  SseParser p;
  EXPECT_THAT(p.Feed("event: x\r\ndata:no-space\r\nid: 7\r\n\r\ndata: cr\r\r"), ElementsAre("no-space", "cr"));
  EXPECT_THAT(p.Feed("dataset: nope\n\n"), ElementsAre());  // not a data field
  EXPECT_THAT(p.Feed("data: partial"), ElementsAre());
  EXPECT_TRUE(p.has_partial());
}

TEST(StreamEvent, ReadsDoneContentUsageAndErrors) {
  EXPECT_TRUE(ParseStreamEvent("[DONE]").done);
  EXPECT_TRUE(ParseStreamEvent(R"({"choices":[{"index":0,"text":" hi"}]})").has_content);
  EXPECT_FALSE(ParseStreamEvent(R"({"choices":[{"index":0,"text":"","finish_reason":"length"}]})").has_content);
  EXPECT_TRUE(ParseStreamEvent(R"({"choices":[{"delta":{"content":"x"}}]})").has_content);
  EXPECT_TRUE(ParseStreamEvent(R"({"choices":[{"delta":{"reasoning_content":"x"}}]})").has_content);
  // A chat stream's first chunk carries the role only: not a token.
  EXPECT_FALSE(ParseStreamEvent(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})").has_content);
  const StreamEvent usage =
      ParseStreamEvent(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}})");
  EXPECT_EQ(usage.prompt_tokens, 12);
  EXPECT_EQ(usage.completion_tokens, 5);
  EXPECT_EQ(ParseStreamEvent(R"({"error":{"message":"KV transfer failed","code":500}})").error, "KV transfer failed");
  EXPECT_TRUE(ParseStreamEvent("not json").malformed);
  EXPECT_TRUE(ParseStreamEvent("[1,2]").malformed);
}

class RecorderTest : public ::testing::Test {
 protected:
  RecorderTest() {
    record_.output_tokens_requested = 3;
    record_.input_tokens = 8;
  }
  static std::string Token(const char* text) {
    return std::string("data: {\"choices\":[{\"index\":0,\"text\":\"") + text + "\"}]}\n\n";
  }
  // A response with one head and one body read at 0.1 s, ending at 0.2 s with `transport`.
  static void Replay(RequestRecord* record, int status, const char* type, const std::string& body,
                     const absl::Status& transport = absl::OkStatus(), bool exact_length = true) {
    StreamRecorder r(record, exact_length);
    r.OnHead(status, type);
    r.OnBody(body, 0.1);
    r.OnEnd(transport, 0.2);
  }
  static std::string Usage(int prompt, int completion) {
    return "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":" + std::to_string(prompt) +
           ",\"completion_tokens\":" + std::to_string(completion) + "}}\n\n";
  }
  RequestRecord record_;
};

TEST_F(RecorderTest, ACompleteStreamSucceeds) {
  StreamRecorder r(&record_);
  r.OnHead(200, "text/event-stream; charset=utf-8");
  r.OnBody(Token("a"), 0.10);
  r.OnBody(Token("b") + Token("c"), 0.15);  // two chunks in one read: same stamp
  r.OnBody(Usage(8, 3) + "data: [DONE]\n\n", 0.16);
  r.OnEnd(absl::OkStatus(), 0.17);
  EXPECT_TRUE(record_.ok()) << record_.error;
  EXPECT_THAT(record_.chunk_s, ElementsAre(0.10, 0.15, 0.15));
  EXPECT_EQ(record_.output_tokens, 3);
  EXPECT_EQ(record_.prompt_tokens_reported, 8);
  EXPECT_DOUBLE_EQ(record_.end_s, 0.17);
  EXPECT_EQ(record_.http_status, 200);
}

TEST_F(RecorderTest, WithoutDoneTheStreamIsTruncated) {
  Replay(&record_, 200, "text/event-stream", Token("a"));
  EXPECT_EQ(record_.failure, FailureKind::kTruncated);
  EXPECT_THAT(record_.error, HasSubstr("[DONE]"));
}

TEST_F(RecorderTest, ALostConnectionMidStreamIsTruncated) {
  Replay(&record_, 200, "text/event-stream", Token("a"),
         absl::AbortedError("connection lost during the response: end of stream"));
  EXPECT_EQ(record_.failure, FailureKind::kTruncated);
}

TEST_F(RecorderTest, HttpStatusKeepsTheCodeAndTheBody) {
  Replay(&record_, 503, "application/json", R"({"error":{"message":"no decode worker"}})");
  EXPECT_EQ(record_.failure, FailureKind::kHttpStatus);
  EXPECT_EQ(record_.http_status, 503);
  EXPECT_THAT(record_.error, HasSubstr("HTTP 503"));
  EXPECT_THAT(record_.error, HasSubstr("no decode worker"));
}

TEST_F(RecorderTest, ANonStreamingAnswerIsABadResponse) {
  Replay(&record_, 200, "application/json", R"({"choices":[{"text":"abc"}]})");
  EXPECT_EQ(record_.failure, FailureKind::kBadResponse);
  EXPECT_THAT(record_.error, HasSubstr("text/event-stream"));
}

TEST_F(RecorderTest, ErrorEventsAndMalformedEventsFail) {
  Replay(&record_, 200, "text/event-stream",
         Token("a") + "data: {\"error\":{\"message\":\"worker died\"}}\n\ndata: [DONE]\n\n");
  EXPECT_EQ(record_.failure, FailureKind::kStreamError);
  EXPECT_EQ(record_.error, "worker died");

  RequestRecord other;
  Replay(&other, 200, "text/event-stream", "data: <html>\n\n");
  EXPECT_EQ(other.failure, FailureKind::kBadResponse);
}

TEST_F(RecorderTest, TimeoutsAndConnectErrors) {
  StreamRecorder t(&record_);
  t.OnEnd(absl::DeadlineExceededError("no complete response within 1 s"), 1.0);
  EXPECT_EQ(record_.failure, FailureKind::kTimeout);

  RequestRecord other;
  StreamRecorder c(&other);
  c.OnEnd(absl::UnavailableError("cannot connect: Connection refused"), 0.001);
  EXPECT_EQ(other.failure, FailureKind::kConnect);
  EXPECT_THAT(other.error, HasSubstr("refused"));
}

TEST_F(RecorderTest, ADifferentCompletionLengthIsAMismatchUnlessNotAskedFor) {
  const std::string body = Token("a") + Usage(8, 1) + "data: [DONE]\n\n";
  Replay(&record_, 200, "text/event-stream", body);
  EXPECT_EQ(record_.failure, FailureKind::kLengthMismatch);
  EXPECT_THAT(record_.error, HasSubstr("asked for 3"));

  RequestRecord lenient;
  lenient.output_tokens_requested = 3;
  Replay(&lenient, 200, "text/event-stream", body, absl::OkStatus(), /*exact_length=*/false);
  EXPECT_TRUE(lenient.ok());
  EXPECT_EQ(lenient.output_tokens, 1);
}

TEST_F(RecorderTest, WithoutUsageTheChunksAreCounted) {
  Replay(&record_, 200, "text/event-stream", Token("a") + Token("b") + "data: [DONE]\n\n");
  EXPECT_TRUE(record_.ok());
  EXPECT_FALSE(record_.usage_reported);
  EXPECT_EQ(record_.output_tokens, 2);
  EXPECT_EQ(record_.prompt_tokens_reported, -1);
}

}  // namespace
}  // namespace tandem::bench
