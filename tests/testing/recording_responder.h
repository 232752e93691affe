// RecordingResponder: an HttpResponder that records what a handler answers, so handlers (the
// router's OpenAI endpoints, say) can be unit-tested without sockets. It follows the server's
// rules: the same errors for misuse, OnClose once the response is complete or the "client"
// disconnects (Disconnect()), and Cancelled afterwards.
//
// Thread-safety: all methods are thread-safe; OnClose callbacks run on the thread that
// completes the response or calls Disconnect(), outside the lock.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "http/http_types.h"

namespace tandem::http {

class RecordingResponder final : public HttpResponder {
 public:
  struct Response {
    int status = 0;  // 0 until Reply() or StartStream()
    std::string content_type;
    HttpHeaders headers;
    std::string body;                 // Reply()'s body, or the chunks concatenated
    std::vector<std::string> chunks;  // each Write() of a stream
    bool streamed = false;
    bool complete = false;      // Reply() or End() happened
    bool disconnected = false;  // Disconnect() happened first
  };

  RecordingResponder() = default;

  // What was answered so far.
  Response response() const;

  // Waits until the response is complete or the client disconnected, and the OnClose callbacks
  // registered before that ran; false on timeout.
  bool WaitUntilClosed(absl::Duration timeout) const;

  // The client goes away: OnClose callbacks run and later calls return Cancelled.
  void Disconnect();

  // What queued_bytes() reports, to test a producer's backpressure handling.
  void set_queued_bytes(size_t bytes);

  size_t queued_bytes() const override;
  void OnClose(std::function<void()> fn) override;
  bool closed() const override;

 protected:
  absl::Status DoReply(int status, std::string content_type, std::string body,
                       HttpHeaders headers) override;
  absl::Status DoStartStream(int status, std::string content_type, HttpHeaders headers) override;
  absl::Status DoWrite(std::string chunk) override;
  absl::Status DoEnd() override;

 private:
  // Marks the exchange over and runs the callbacks; takes `lock` (on mu_) and releases it.
  void CloseLocked(std::unique_lock<std::mutex>& lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  mutable std::condition_variable closed_cv_;
  Response response_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool callbacks_done_ ABSL_GUARDED_BY(mu_) = false;
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::function<void()>> on_close_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::http
