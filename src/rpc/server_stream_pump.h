// The write side of one server-streaming gRPC call (callback API), written once for every
// stream tandem serves (the worker's token streams, the router's public Generate stream).
//
// Producers on any thread Write() messages and Finish() once. The pump keeps one StartWrite in
// flight at a time (gRPC allows no more), finishes the call after the last queued message (an
// error status drops what is still waiting: the client gets the error at once), and stops
// writing when the client cancels or a write fails (the call then finishes with CANCELLED or
// UNAVAILABLE by itself, as gRPC requires every call to be finished). After that, Write and
// Finish are no-ops, so a producer never needs to know whether the client is still there.
//
// Coalescing (Create(/*coalesce=*/true)): a message written while an earlier one still waits
// unsent is merged into the waiting one (protobuf MergeFrom: repeated fields appended, set
// scalars and sub-messages taken), so a slow reader gets fewer, larger messages instead of an
// ever-growing queue of small ones.
//
// Ownership: the pump is shared (producers hold it by shared_ptr); its reactor belongs to gRPC
// (returned from the service method, deleted in OnDone) and keeps the pump alive until then.
// Whichever side ends first, the other touches nothing freed.
// Thread-safety: every public method may be called from any thread. The OnCancel/OnDone hooks
// run on gRPC threads (or at once on the registering thread if that moment has passed),
// without the pump's lock held; they may call Write/Finish.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace tandem::rpc {

template <typename Message>
class ServerStreamPump : public std::enable_shared_from_this<ServerStreamPump<Message>> {
 public:
  static std::shared_ptr<ServerStreamPump> Create(bool coalesce = false) {
    auto pump = std::shared_ptr<ServerStreamPump>(new ServerStreamPump(coalesce));
    pump->reactor_ = new Reactor(pump);
    return pump;
  }

  // The reactor to return from the service method (exactly once).
  grpc::ServerWriteReactor<Message>* reactor() {
    std::lock_guard<std::mutex> lock(mu_);
    return reactor_;
  }

  // `fn` runs once if the client cancels (or the deadline passes) before the call is over.
  void OnCancel(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_ && !cancelled_) return;  // over without a cancel: it never will be
      if (!cancelled_) {
        on_cancel_ = std::move(fn);
        return;
      }
    }
    fn();
  }
  // `fn` runs once when the call is over, however it ended.
  void OnDone(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!done_) {
        on_done_ = std::move(fn);
        return;
      }
    }
    fn();
  }

  void Write(Message message) {
    std::lock_guard<std::mutex> lock(mu_);
    if (reactor_ == nullptr || finishing_) return;
    const size_t in_flight = writing_ ? 1 : 0;
    if (coalesce_ && queue_.size() > in_flight) {
      queue_.back().MergeFrom(message);
    } else {
      queue_.push_back(std::move(message));
    }
    Pump();
  }

  // Finishes the call with `status`: after every queued message when OK, at once (dropping
  // messages not yet started) otherwise. Only the first call counts.
  void Finish(const grpc::Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    StartFinishing(status);
  }

 private:
  class Reactor final : public grpc::ServerWriteReactor<Message> {
   public:
    explicit Reactor(std::shared_ptr<ServerStreamPump> pump) : pump_(std::move(pump)) {}
    void OnWriteDone(bool ok) override { pump_->WriteDone(ok); }
    void OnCancel() override { pump_->Cancelled(); }
    void OnDone() override {
      pump_->Done();
      delete this;
    }

   private:
    const std::shared_ptr<ServerStreamPump> pump_;
  };

  explicit ServerStreamPump(bool coalesce) : coalesce_(coalesce) {}

  void StartFinishing(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reactor_ == nullptr || finishing_) return;
    finishing_ = true;
    status_ = status;
    if (!status.ok()) DropWaiting();
    Pump();
  }

  // Drops the messages not yet started (the one in flight must stay until OnWriteDone).
  void DropWaiting() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    queue_.erase(queue_.begin() + (writing_ ? 1 : 0), queue_.end());
  }

  // Starts the next write, or finishes once nothing is left. The message in flight stays at the
  // queue's front until OnWriteDone: gRPC reads it until then.
  void Pump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (reactor_ == nullptr || writing_ || finish_started_) return;
    if (!queue_.empty()) {
      writing_ = true;
      reactor_->StartWrite(&queue_.front());
    } else if (finishing_) {
      finish_started_ = true;
      reactor_->Finish(status_);
    }
  }

  void WriteDone(bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) {  // the stream broke: nothing more can be delivered
      queue_.clear();
      if (!finishing_) {
        finishing_ = true;
        status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream broke");
      }
    }
    Pump();
  }

  void Cancelled() {
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      hook = std::move(on_cancel_);
      DropWaiting();  // nobody will read them
      StartFinishing(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client"));
    }
    if (hook) hook();
  }

  void Done() {
    std::function<void()> hook;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      reactor_ = nullptr;
      queue_.clear();
      hook = std::move(on_done_);
      on_cancel_ = nullptr;  // hooks may hold what holds the pump: let go of them
    }
    if (hook) hook();
  }

  const bool coalesce_;
  std::mutex mu_;
  Reactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;  // null once the call is over
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);   // front: in flight while writing_
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;      // no more messages are accepted
  bool finish_started_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_done_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::rpc
