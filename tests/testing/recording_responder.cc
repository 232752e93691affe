#include "testing/recording_responder.h"

#include <utility>

namespace tandem::http {
namespace {

absl::Status Over() { return absl::CancelledError("the HTTP exchange is over (client gone?)"); }

}  // namespace

RecordingResponder::Response RecordingResponder::response() const {
  std::lock_guard<std::mutex> lock(mu_);
  return response_;
}

bool RecordingResponder::WaitUntilClosed(absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return closed_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             [&] { return callbacks_done_; });
}

void RecordingResponder::Disconnect() {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return;
  response_.disconnected = true;
  CloseLocked(lock);
}

void RecordingResponder::set_queued_bytes(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  queued_bytes_ = bytes;
}

size_t RecordingResponder::queued_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_bytes_;
}

void RecordingResponder::OnClose(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) {
      on_close_.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

bool RecordingResponder::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

absl::Status RecordingResponder::DoReply(int status, std::string content_type, std::string body,
                                         HttpHeaders headers) {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return Over();
  if (response_.status != 0) return absl::FailedPreconditionError("a response was already started");
  response_.status = status;
  response_.content_type = std::move(content_type);
  response_.headers = std::move(headers);
  response_.body = std::move(body);
  response_.complete = true;
  CloseLocked(lock);
  return absl::OkStatus();
}

absl::Status RecordingResponder::DoStartStream(int status, std::string content_type,
                                               HttpHeaders headers) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return Over();
  if (response_.status != 0) return absl::FailedPreconditionError("a response was already started");
  response_.status = status;
  response_.content_type = std::move(content_type);
  response_.headers = std::move(headers);
  response_.streamed = true;
  return absl::OkStatus();
}

absl::Status RecordingResponder::DoWrite(std::string chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return Over();
  if (!response_.streamed || response_.complete) {
    return absl::FailedPreconditionError("Write() needs StartStream() and no End()");
  }
  if (chunk.empty()) return absl::OkStatus();
  response_.body += chunk;
  response_.chunks.push_back(std::move(chunk));
  return absl::OkStatus();
}

absl::Status RecordingResponder::DoEnd() {
  std::unique_lock<std::mutex> lock(mu_);
  if (closed_) return Over();
  if (!response_.streamed || response_.complete) {
    return absl::FailedPreconditionError("End() needs StartStream() and no End()");
  }
  response_.complete = true;
  CloseLocked(lock);
  return absl::OkStatus();
}

void RecordingResponder::CloseLocked(std::unique_lock<std::mutex>& lock) {
  closed_ = true;
  std::vector<std::function<void()>> callbacks = std::move(on_close_);
  on_close_.clear();
  lock.unlock();
  for (auto& fn : callbacks) fn();
  lock.lock();
  callbacks_done_ = true;  // WaitUntilClosed() returns after the callbacks ran
  closed_cv_.notify_all();
  lock.unlock();
}

}  // namespace tandem::http
