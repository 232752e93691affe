// The CUDA IPC medium's control channel on its own (no GPU): frames cross a Unix socket in both
// directions, a closed or silent connection is reported, and nothing is delivered after Close.
#include "transfer/cuda_ipc/socket_channel.h"

#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "transfer/cuda_ipc/cuda_ipc_wire.h"

namespace tandem::transfer {
namespace {

// What a channel's handlers heard, and a way to wait for it.
class Heard {
 public:
  SocketChannel::Handlers Handlers() {
    return {[this](ConnectionId c, std::string f) { Add(c, std::move(f), absl::OkStatus()); },
            [this](ConnectionId c, absl::Status s) { Add(c, "", std::move(s)); }};
  }
  // Waits until `n` events were heard (false after 10 s).
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return events_.size() >= n; });
  }
  struct Event {
    ConnectionId conn;
    std::string frame;
    absl::Status lost;  // OK for a frame
  };
  Event at(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.at(i);
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }

 private:
  void Add(ConnectionId c, std::string f, absl::Status s) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back({c, std::move(f), std::move(s)});
    }
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

std::string SocketPath(const std::string& name) {
  return "/tmp/tandem-socket-channel-test-" + std::to_string(::getpid()) + "-" + name + ".sock";
}

TEST(SocketChannelTest, FramesCrossBothWaysAndTheEndIsReported) {
  TaskLoop loop;
  loop.Start(nullptr);
  Heard at_server, at_client;
  SocketChannel server(&loop, at_server.Handlers(), absl::Seconds(10));
  SocketChannel client(&loop, at_client.Handlers(), absl::Seconds(10));
  const std::string path = SocketPath("both-ways");
  ASSERT_TRUE(server.Listen(path).ok());
  auto conn = client.Connect(path);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(client.Send(*conn, "hello").ok());
  ASSERT_TRUE(at_server.WaitFor(1));
  const ConnectionId accepted = at_server.at(0).conn;
  EXPECT_EQ(at_server.at(0).frame, "hello");
  ASSERT_TRUE(server.Send(accepted, "answer").ok());
  ASSERT_TRUE(at_client.WaitFor(1));
  EXPECT_EQ(at_client.at(0).conn, *conn);
  EXPECT_EQ(at_client.at(0).frame, "answer");

  client.Close(*conn);
  EXPECT_FALSE(client.IsOpen(*conn));
  EXPECT_FALSE(client.Send(*conn, "late").ok());
  ASSERT_TRUE(at_server.WaitFor(2));
  EXPECT_EQ(at_server.at(1).conn, accepted);
  EXPECT_EQ(at_server.at(1).lost.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(at_client.size(), 1u) << "the closing side heard of its own connection after Close";
  loop.Stop(nullptr);
}

TEST(SocketChannelTest, AnAcceptedConnectionThatSaysNothingIsDropped) {
  TaskLoop loop;
  loop.Start(nullptr);
  Heard at_server;
  SocketChannel server(&loop, at_server.Handlers(), absl::Milliseconds(100));
  const std::string path = SocketPath("silent");
  ASSERT_TRUE(server.Listen(path).ok());
  auto fd = cuda_ipc::ConnectUnix(path);
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(at_server.WaitFor(1));
  EXPECT_EQ(at_server.at(0).lost.code(), absl::StatusCode::kDeadlineExceeded);
  ::close(*fd);
  loop.Stop(nullptr);
}

TEST(SocketChannelTest, ShutdownRemovesTheSocketAndRefusesNewConnections) {
  TaskLoop loop;
  loop.Start(nullptr);
  Heard heard;
  SocketChannel server(&loop, heard.Handlers(), absl::Seconds(10));
  const std::string path = SocketPath("shutdown");
  ASSERT_TRUE(server.Listen(path).ok());
  server.Shutdown();
  EXPECT_EQ(cuda_ipc::ConnectUnix(path).status().code(), absl::StatusCode::kUnavailable);
  loop.Stop(nullptr);
}

}  // namespace
}  // namespace tandem::transfer
