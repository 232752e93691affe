// Turning one streamed OpenAI response into a RequestRecord, without any I/O:
//  * SseParser: Server-Sent Events framing (WHATWG HTML §9.2): lines end in LF, CRLF or CR;
//    "data:" lines (one leading space dropped) are joined with LF; a blank line ends an
//    event; comments (":") and other fields are ignored.
//  * ParseStreamEvent: one event's data: "[DONE]", an error object, or a completion chunk
//    (text, delta.content or delta.reasoning_content; usage).
//  * StreamRecorder: the request's state machine - status, events with their arrival times,
//    the end of the response or a transport failure - deciding the FailureKind.
//
// Thread-compatible: one owner per request.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "bench/metrics.h"

namespace tandem::bench {

class SseParser {
 public:
  // Appends `bytes` and returns the data of every event they complete, in order.
  std::vector<std::string> Feed(std::string_view bytes);
  // Bytes of an unfinished line or event are held.
  bool has_partial() const { return !line_.empty() || has_data_; }

 private:
  void EndLine(std::vector<std::string>* events);

  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
};

struct StreamEvent {
  bool done = false;       // "[DONE]"
  bool malformed = false;  // not JSON, or not an object
  std::optional<std::string> error;  // an {"error": ...} event's message
  bool has_content = false;          // a chunk with non-empty text or delta content
  std::optional<int> prompt_tokens, completion_tokens;  // from "usage"
};
StreamEvent ParseStreamEvent(std::string_view data);

class StreamRecorder {
 public:
  // `record` is owned by the caller and must outlive the recorder; its index, input and
  // requested output lengths are set by the caller. `exact_length`: a usage.completion_tokens
  // other than the requested length fails the request (kLengthMismatch).
  explicit StreamRecorder(RequestRecord* record, bool exact_length = true)
      : record_(record), exact_length_(exact_length) {}

  // The response head arrived (`t`: seconds since sending). A status other than 200 fails the
  // request (its body is collected for the message); a 200 that is not text/event-stream is a
  // bad response (the server did not stream).
  void OnHead(int status, std::string_view content_type);
  // Response body bytes that arrived at `t`.
  void OnBody(std::string_view bytes, double t);
  // The response ended at `t`: `transport` is OK for a complete body, DeadlineExceeded for a
  // timeout, Unavailable for a connection that could not be made, anything else for a
  // connection lost mid-response. Decides the record's failure kind and output tokens.
  void OnEnd(const absl::Status& transport, double t);

  bool finished() const { return finished_; }

 private:
  void OnEvent(std::string_view data, double t);
  void Fail(FailureKind kind, std::string message);

  RequestRecord* record_;
  bool exact_length_;
  SseParser sse_;
  bool streaming_ = false;  // a 200 event stream
  bool done_ = false;       // [DONE] seen
  bool finished_ = false;
  int content_chunks_ = 0;
  std::string error_body_;  // start of a non-200 or non-stream body
};

}  // namespace tandem::bench
