#include "bench/stream_recorder.h"

#include <algorithm>
#include <cctype>

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxErrorBody = 512;

bool NonEmptyString(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

std::optional<int> IntField(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int>();
}

std::string ErrorMessage(const Json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object()) {
    auto it = error.find("message");
    if (it != error.end() && it->is_string()) return it->get<std::string>();
  }
  return error.dump();
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  return std::equal(prefix.begin(), prefix.end(), s.begin(),
                    [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

}  // namespace

std::vector<std::string> SseParser::Feed(std::string_view bytes) {
  std::vector<std::string> events;
  for (const char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the LF of a CRLF
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      EndLine(&events);
    } else {
      line_ += c;
    }
  }
  return events;
}

void SseParser::EndLine(std::vector<std::string>* events) {
  if (line_.empty()) {  // a blank line dispatches the event
    if (has_data_) events->push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  std::string_view line = line_;
  if (line.starts_with("data")) {
    std::string_view value;
    if (line.size() == 4) {
      value = {};
    } else if (line[4] == ':') {
      value = line.substr(5);
      if (value.starts_with(' ')) value.remove_prefix(1);
    } else {
      line_.clear();
      return;  // a field named e.g. "dataset": ignored
    }
    if (has_data_) data_ += '\n';
    data_ += value;
    has_data_ = true;
  }
  line_.clear();
}

StreamEvent ParseStreamEvent(std::string_view data) {
  StreamEvent e;
  if (data == "[DONE]") {
    e.done = true;
    return e;
  }
  const Json j = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    e.malformed = true;
    return e;
  }
  if (auto it = j.find("error"); it != j.end() && !it->is_null()) e.error = ErrorMessage(*it);
  if (auto it = j.find("choices"); it != j.end() && it->is_array()) {
    for (const Json& choice : *it) {
      if (!choice.is_object()) continue;
      if (NonEmptyString(choice, "text")) e.has_content = true;
      if (auto d = choice.find("delta"); d != choice.end() && d->is_object()) {
        if (NonEmptyString(*d, "content") || NonEmptyString(*d, "reasoning_content")) e.has_content = true;
      }
    }
  }
  if (auto it = j.find("usage"); it != j.end() && it->is_object()) {
    e.prompt_tokens = IntField(*it, "prompt_tokens");
    e.completion_tokens = IntField(*it, "completion_tokens");
  }
  return e;
}

void StreamRecorder::Fail(FailureKind kind, std::string message) {
  if (record_->failure != FailureKind::kNone) return;
  record_->failure = kind;
  record_->error = std::move(message);
}

void StreamRecorder::OnHead(int status, std::string_view content_type) {
  record_->http_status = status;
  if (status != 200) {
    Fail(FailureKind::kHttpStatus, StrCat("HTTP ", status));
    return;
  }
  if (!StartsWithIgnoreCase(content_type, "text/event-stream")) {
    Fail(FailureKind::kBadResponse,
         StrCat("the response is not a stream (Content-Type '", content_type, "', expected text/event-stream)"));
    return;
  }
  streaming_ = true;
}

void StreamRecorder::OnBody(std::string_view bytes, double t) {
  if (!streaming_) {
    error_body_.append(bytes.substr(0, kMaxErrorBody - std::min(kMaxErrorBody, error_body_.size())));
    return;
  }
  for (const std::string& data : sse_.Feed(bytes)) OnEvent(data, t);
}

void StreamRecorder::OnEvent(std::string_view data, double t) {
  const StreamEvent e = ParseStreamEvent(data);
  if (e.done) {
    done_ = true;
    return;
  }
  if (e.malformed) {
    Fail(FailureKind::kBadResponse, StrCat("a stream event is not a JSON object: ", data.substr(0, 200)));
    return;
  }
  if (e.error) Fail(FailureKind::kStreamError, *e.error);
  if (e.has_content) {
    record_->chunk_s.push_back(t);
    ++content_chunks_;
  }
  if (e.prompt_tokens) record_->prompt_tokens_reported = *e.prompt_tokens;
  if (e.completion_tokens) {
    record_->output_tokens = *e.completion_tokens;
    record_->usage_reported = true;
  }
}

void StreamRecorder::OnEnd(const absl::Status& transport, double t) {
  if (finished_) return;
  finished_ = true;
  record_->end_s = t;
  if (!error_body_.empty() && record_->failure != FailureKind::kNone) {
    record_->error += StrCat(": ", error_body_);
  }
  if (!transport.ok()) {
    const FailureKind kind = absl::IsDeadlineExceeded(transport) ? FailureKind::kTimeout
                             : absl::IsUnavailable(transport)    ? FailureKind::kConnect
                                                                 : FailureKind::kTruncated;
    Fail(kind, std::string(transport.message()));
  } else if (streaming_ && !done_) {
    Fail(FailureKind::kTruncated, "the stream ended without 'data: [DONE]'");
  }
  if (!record_->usage_reported) record_->output_tokens = content_chunks_;
  if (exact_length_ && record_->ok() && record_->usage_reported &&
      record_->output_tokens != record_->output_tokens_requested) {
    Fail(FailureKind::kLengthMismatch, StrCat("usage.completion_tokens is ", record_->output_tokens, ", asked for ",
                                              record_->output_tokens_requested, " (ignore_eos not honoured?)"));
  }
}

}  // namespace tandem::bench
