// The gRPC write pump (rpc/server_stream_pump.h) behind a real loopback server: what a client
// reading the stream sees (every message in order, then the status; coalesced messages that
// still carry every token; an error that does not wait behind queued messages), and that a
// client's cancel stops the stream, reaches the producer, and leaves the producer's handle
// harmless after the call is gone.
#include "rpc/server_stream_pump.h"

#include <chrono>
#include <future>
#include <memory>
#include <vector>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::rpc {
namespace {

using Pump = ServerStreamPump<v1::TokensResponse>;
constexpr auto kWait = std::chrono::seconds(20);  // generous: a hang is what we catch

v1::TokensResponse Tokens(std::initializer_list<int32_t> tokens) {
  v1::TokensResponse msg;
  for (int32_t t : tokens) msg.add_tokens(t);
  return msg;
}

// A Worker service whose GenerateTokens does what the test says.
class ScriptedWorker final : public v1::Worker::CallbackService {
 public:
  std::function<grpc::ServerWriteReactor<v1::TokensResponse>*()> handler;
  grpc::ServerWriteReactor<v1::TokensResponse>* GenerateTokens(grpc::CallbackServerContext*,
                                                               const v1::GenerateTokensRequest*) override {
    return handler();
  }
};

struct Received {
  std::vector<v1::TokensResponse> messages;
  grpc::Status status;
};

class ServerStreamPumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Worker::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1)); }

  Received ReadAll() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kWait);
    auto reader = stub_->GenerateTokens(&ctx, v1::GenerateTokensRequest());
    Received r;
    v1::TokensResponse msg;
    while (reader->Read(&msg)) r.messages.push_back(msg);
    r.status = reader->Finish();
    return r;
  }

  static std::vector<int32_t> AllTokens(const Received& r) {
    std::vector<int32_t> all;
    for (const auto& m : r.messages) all.insert(all.end(), m.tokens().begin(), m.tokens().end());
    return all;
  }

  // The handler writes tokens 0..n-1, one message each, the last with the finish reason and
  // usage, and finishes - all before gRPC has the reactor, so nothing is written yet.
  void WriteBeforeReturning(bool coalesce, int n, grpc::Status status) {
    service_.handler = [coalesce, n, status] {
      auto pump = Pump::Create(coalesce);
      for (int i = 0; i < n; ++i) {
        v1::TokensResponse msg = Tokens({i});
        if (i == n - 1) {
          msg.set_finish_reason(v1::FINISH_REASON_LENGTH);
          msg.mutable_usage()->set_completion_tokens(n);
        }
        pump->Write(std::move(msg));
      }
      pump->Finish(status);
      return pump->reactor();
    };
  }

  std::vector<int32_t> Range(int n) {
    std::vector<int32_t> v(n);
    for (int i = 0; i < n; ++i) v[i] = i;
    return v;
  }

  ScriptedWorker service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Worker::Stub> stub_;
};

TEST_F(ServerStreamPumpTest, EveryMessageArrivesInOrderThenTheStatus) {
  WriteBeforeReturning(/*coalesce=*/false, 100, grpc::Status::OK);
  const Received r = ReadAll();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.messages.size(), 100u);
  EXPECT_EQ(AllTokens(r), Range(100));
  EXPECT_EQ(r.messages.back().finish_reason(), v1::FINISH_REASON_LENGTH);
}

TEST_F(ServerStreamPumpTest, WaitingMessagesAreCoalescedWithoutLosingAToken) {
  // The first write is in flight; the 99 written behind it wait together as one message.
  WriteBeforeReturning(/*coalesce=*/true, 100, grpc::Status::OK);
  const Received r = ReadAll();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(AllTokens(r), Range(100));
  EXPECT_EQ(r.messages.back().finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.messages.back().usage().completion_tokens(), 100);
}

TEST_F(ServerStreamPumpTest, AnErrorDoesNotWaitBehindQueuedMessages) {
  WriteBeforeReturning(/*coalesce=*/false, 5, grpc::Status(grpc::StatusCode::INTERNAL, "the engine failed"));
  const Received r = ReadAll();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(r.status.error_message(), "the engine failed");
  EXPECT_LE(r.messages.size(), 1u) << "only the write already in flight may arrive";
}

TEST_F(ServerStreamPumpTest, AClientCancelReachesTheProducerAndEndsTheCall) {
  std::promise<std::shared_ptr<Pump>> started;
  std::promise<void> cancelled, done;
  service_.handler = [&] {
    auto pump = Pump::Create();
    pump->OnCancel([&] { cancelled.set_value(); });
    pump->OnDone([&] { done.set_value(); });
    pump->Write(Tokens({1}));
    started.set_value(pump);  // the producer keeps the pump; it never finishes by itself
    return pump->reactor();
  };
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kWait);
  auto reader = stub_->GenerateTokens(&ctx, v1::GenerateTokensRequest());
  v1::TokensResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  std::shared_ptr<Pump> pump = started.get_future().get();
  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(cancelled.get_future().wait_for(kWait), std::future_status::ready);
  // The pump finished the call by itself (gRPC needs that before the call can be over).
  EXPECT_EQ(done.get_future().wait_for(kWait), std::future_status::ready);

  // The producer outlives the call: writing and finishing are harmless no-ops now, and a hook
  // registered too late runs at once.
  pump->Write(Tokens({2}));
  pump->Finish(grpc::Status::OK);
  bool late_hook = false;
  pump->OnDone([&] { late_hook = true; });
  EXPECT_TRUE(late_hook);
}

}  // namespace
}  // namespace tandem::rpc
