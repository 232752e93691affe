// Runs a planned load against a server: sends each request at its arrival time (open loop),
// streams every response and records what each one measured. One thread, one io_context:
// arrival timers, sockets, parsing and progress all run on the calling thread, and a chunk is
// stamped when its read completes.
//
// Concurrency: with max_concurrency > 0 at most that many requests are in flight; a request
// that arrives while all slots are taken waits for one (as vLLM's semaphore), and its
// measurements start when it is sent (the wait is in sent_s - scheduled_s). With every arrival
// at t = 0 (request rate inf) this is a closed loop keeping max_concurrency requests in flight.
//
// Thread-safety: RunLoad blocks the calling thread until every request has ended; callbacks
// run on that thread.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/http_stream_client.h"
#include "bench/metrics.h"

namespace tandem::bench {

// One request, ready to send.
struct PlannedRequest {
  int index = 0;
  int phase = 0;
  double arrival_s = 0;  // from the start of the run
  int input_tokens = 0;
  int output_tokens = 0;  // max_tokens asked for
  std::string body;       // the JSON request body
};

struct LoadProgress {
  int total = 0, sent = 0, finished = 0, failed = 0, in_flight = 0;
  double elapsed_s = 0;
  double send_rate = 0;  // requests sent per second over the last few seconds
  bool done = false;     // the last report of the run
  bool interrupted = false;  // a signal stopped the sending
};

struct LoadRunOptions {
  std::string path = "/v1/completions";
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Authorization
  int max_concurrency = 0;  // 0: no limit
  std::chrono::milliseconds request_timeout{600'000};
  // A completion_tokens other than max_tokens fails the request (with ignore_eos).
  bool exact_output_length = true;
  // SIGINT or SIGTERM during the run: stop sending, let the requests in flight finish and
  // return what was sent (a second signal exits the process with status 130).
  bool stop_on_interrupt = false;
  // Called on the run's thread every progress_interval and once at the end; may be empty.
  std::function<void(const LoadProgress&)> on_progress;
  std::chrono::milliseconds progress_interval{500};
};

struct LoadRunResult {
  std::vector<RequestRecord> records;  // the requests sent, in plan order
  bool interrupted = false;            // stopped early by a signal (stop_on_interrupt)
  double duration_s = 0;               // start of the run to the end of the last request
};

// Unavailable when the host cannot be resolved; request failures are in the records.
absl::StatusOr<LoadRunResult> RunLoad(const BaseUrl& url, const std::vector<PlannedRequest>& plan,
                                      const LoadRunOptions& options);

}  // namespace tandem::bench
