#include "router/connection_monitor.h"

#include <chrono>
#include <mutex>

#include "grpcpp/completion_queue.h"

namespace tandem::router {

struct ConnectionMonitor::State {
  std::mutex mu;
  bool stopped = false;
  grpc::CompletionQueue cq;
};

struct ConnectionMonitor::Watched {
  std::shared_ptr<grpc::Channel> channel;
  std::function<void()> lost;
  grpc_connectivity_state last = GRPC_CHANNEL_IDLE;
  bool was_ready = false;  // it has been connected: losing that connection is what counts
};

namespace {

void Arm(grpc::CompletionQueue& cq, grpc::Channel& channel, grpc_connectivity_state last, void* tag) {
  channel.NotifyOnStateChange(last, std::chrono::system_clock::now() + ConnectionMonitor::kRecheckInterval, &cq,
                              tag);
}

}  // namespace

ConnectionMonitor::ConnectionMonitor() : state_(std::make_shared<State>()) { thread_ = std::thread(Loop, state_); }

ConnectionMonitor::~ConnectionMonitor() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopped = true;
    state_->cq.Shutdown();  // under mu: nothing is armed after it
  }
  // Pending notifications end at their deadline at the latest; the thread then exits on its
  // own, holding the state until then.
  thread_.detach();
}

void ConnectionMonitor::Watch(std::shared_ptr<grpc::Channel> channel, std::function<void()> lost) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->stopped) return;
  auto* w = new Watched{std::move(channel), std::move(lost)};
  w->last = w->channel->GetState(/*try_to_connect=*/true);
  w->was_ready = w->last == GRPC_CHANNEL_READY;
  Arm(state_->cq, *w->channel, w->last, w);
}

void ConnectionMonitor::Loop(std::shared_ptr<State> state) {
  void* tag = nullptr;
  bool changed = false;
  while (state->cq.Next(&tag, &changed)) {
    auto* w = static_cast<Watched*>(tag);
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->stopped) {
      delete w;
      continue;
    }
    Handle(*state, w, changed);
  }
}

void ConnectionMonitor::Handle(State& state, Watched* w, bool /*changed*/) {
  // A channel only this monitor still holds belongs to a client that is gone (the client and
  // its stub hold the other references).
  if (w->channel.use_count() == 1) {
    delete w;
    return;
  }
  grpc_connectivity_state now = w->channel->GetState(false);
  if (now == GRPC_CHANNEL_READY) {
    w->was_ready = true;
  } else if (w->was_ready) {
    if (now == GRPC_CHANNEL_TRANSIENT_FAILURE || now == GRPC_CHANNEL_SHUTDOWN) {
      // Connected before, and connecting again failed: no process listens there any more.
      w->lost();
      delete w;
      return;
    }
    // The connection closed (IDLE): connect again now, so a dead peer shows at once.
    if (now == GRPC_CHANNEL_IDLE) now = w->channel->GetState(/*try_to_connect=*/true);
  }
  w->last = now;
  Arm(state.cq, *w->channel, w->last, w);
}

}  // namespace tandem::router
