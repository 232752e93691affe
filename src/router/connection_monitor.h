// ConnectionMonitor: tells the router at once that a worker process is gone, instead of after
// its heartbeats stop for the registry's expiry (3 s). It watches each worker's gRPC channel:
// when a channel that was connected loses its connection (the peer's kernel closes the socket
// when the process dies, kill -9 included), it tries to connect again at once; a refused
// connection (nothing listens on the port any more) calls the watch's `lost` callback, once.
// A process that is alive but stopped (SIGSTOP) or slow keeps its connection and is left to
// the heartbeats; a reconnect that succeeds (the channel went idle, or a blip) calls nothing.
//
// Thread-safe. One thread waits on gRPC's connectivity notifications for every channel. No
// callback runs once the destructor has returned; the destructor does not wait for pending
// notifications (they finish on the background thread, which then exits).
#pragma once

#include <functional>
#include <memory>
#include <thread>

#include "grpcpp/channel.h"

namespace tandem::router {

class ConnectionMonitor {
 public:
  ConnectionMonitor();
  ~ConnectionMonitor();
  ConnectionMonitor(const ConnectionMonitor&) = delete;
  ConnectionMonitor& operator=(const ConnectionMonitor&) = delete;

  // Starts connecting `channel` now and watches it. `lost` runs on the monitor's thread and must
  // not block or call Watch. A channel nobody else holds any more is forgotten within
  // kRecheckInterval.
  void Watch(std::shared_ptr<grpc::Channel> channel, std::function<void()> lost);

  static constexpr auto kRecheckInterval = std::chrono::seconds(5);

 private:
  struct State;
  struct Watched;
  static void Loop(std::shared_ptr<State> state);
  static void Handle(State& state, Watched* w, bool changed);  // state.mu held; may delete w

  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace tandem::router
