#include "testing/recording_responder.h"

#include <thread>

#include "gtest/gtest.h"

namespace tandem::http {
namespace {

// A handler as the router would write one: streams two events from another thread and stops
// when the client goes away.
void StreamTwoEvents(const HttpRequest&, std::shared_ptr<HttpResponder> r) {
  std::thread([r] {
    if (!r->StartStream(200, "text/event-stream").ok()) return;
    for (const char* event : {"data: a\n\n", "data: b\n\n"}) {
      if (!r->Write(event).ok()) return;
    }
    r->End().IgnoreError();
  }).detach();
}

TEST(RecordingResponderTest, RecordsAStreamFromAnotherThread) {
  auto responder = std::make_shared<RecordingResponder>();
  bool closed_callback = false;
  responder->OnClose([&] { closed_callback = true; });
  StreamTwoEvents(HttpRequest(), responder);
  ASSERT_TRUE(responder->WaitUntilClosed(absl::Seconds(5)));
  const auto response = responder->response();
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "text/event-stream");
  EXPECT_TRUE(response.streamed);
  EXPECT_TRUE(response.complete);
  EXPECT_EQ(response.chunks, (std::vector<std::string>{"data: a\n\n", "data: b\n\n"}));
  EXPECT_EQ(response.body, "data: a\n\ndata: b\n\n");
  EXPECT_TRUE(closed_callback);
  EXPECT_EQ(responder->Write("x").code(), absl::StatusCode::kCancelled);
}

TEST(RecordingResponderTest, SameRulesAsTheServer) {
  RecordingResponder r;
  EXPECT_EQ(r.Write("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.Reply(200, "text/plain", "x", {{"Content-Length", "1"}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(r.Reply(404, "text/plain", "nope").ok());
  EXPECT_TRUE(r.closed());
  EXPECT_EQ(r.Reply(200, "text/plain", "again").code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(r.response().status, 404);
}

TEST(RecordingResponderTest, DisconnectCancelsTheProducer) {
  RecordingResponder r;
  int calls = 0;
  r.OnClose([&] { ++calls; });
  ASSERT_TRUE(r.StartStream(200, "text/event-stream").ok());
  r.Disconnect();
  r.Disconnect();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.Write("late").code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(r.response().disconnected);
  EXPECT_FALSE(r.response().complete);
  r.OnClose([&] { ++calls; });  // already over: runs at once
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace tandem::http
