// One prefill request's KV hand-off to a decode worker (DESIGN.md "Request path", steps 2-3):
// the prefill side of the P->D protocol, apart from the engine and from gRPC.
//
// The engine reports progress (OnProgress: tokens whose KV is complete, the request's block
// table, and at the end the first token); the export
//  * starts the transfer with the first computed chunk, not when the call arrives: the transfer
//    deadline bounds the hand-off, not the time the prompt waits in this worker's queue;
//  * sends each newly complete block, in order, while the next chunk computes;
//  * fails when the engine preempted the request (num_computed fell below what was already
//    sent: those blocks may be recomputed differently; the router retries elsewhere), when the
//    engine cancelled or failed it, or when the transfer cannot start;
//  * on the last output, sends the remaining blocks and finishes the transfer; when the
//    transport confirms every block arrived, the engine releases the KV it held for the
//    transfer and the export reports the first token, the sampler's draws, usage and timings.
// Cancel() ends it from outside (the client went away, the engine refused the request).
//
// Exactly-once: `done` is called once, with OK or the reason; after that every call is a
// no-op, including a transfer callback that arrives late. On every failure the engine is told
// to cancel the request (which frees its sequence or its held KV). A transfer is never
// destroyed inside its own callback: it is handed to KvExportEngine::Defer.
//
// Thread-safety: every method may be called from any thread (the engine thread for progress,
// gRPC threads for Cancel, the transport's thread for Finish's callback). `done` and the
// engine hooks are called without the export's lock held.
// Ownership: the transport and the engine hooks are borrowed and must outlive the export's
// activity; the export owns its transfer. Hold it by shared_ptr (the transfer's callback
// keeps it alive).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "tandem/kv_transport.h"

namespace tandem::worker {

// What an export asks of the engine that computes its request. Implementations post the work
// to the engine thread; calls come from any thread and must not block.
class KvExportEngine {
 public:
  virtual ~KvExportEngine() = default;
  // Stops computing the request and frees its blocks, or the KV it holds once finished.
  virtual void CancelRequest(const std::string& request_id) = 0;
  // Frees the KV a finished request held for the transfer (the hand-off is complete).
  virtual void ReleaseHeldKv(const std::string& request_id) = 0;
  // Runs `task` soon on another thread (never the caller's transport callback).
  virtual void Defer(std::function<void()> task) = 0;
};

struct KvExportOptions {
  std::string request_id;
  KvDestination destination;     // the decode worker's lease; covers the prompt's blocks
  int32_t prompt_tokens = 0;
  int32_t block_size = 16;       // tokens per KV block
  int64_t block_bytes = 0;       // bytes per KV block (for the report)
  absl::Duration transfer_timeout = absl::Seconds(30);  // from the first chunk to the ack
};

// How an export ended. The fields are filled as far as the export got.
struct KvExportResult {
  bool computed = false;        // the engine finished the prompt (the fields below are set)
  int32_t first_token = -1;
  int32_t rng_draws = 0;
  std::optional<TokenLogprob> first_logprob;  // when the request asked for logprobs
  std::vector<TokenLogprob> prompt_logprobs;  // when it asked for prompt_logprobs
  FinishReason finish = FinishReason::kNone;  // the first token's: kStop when it ends the request
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;
  double prefill_seconds = 0;   // from the export's creation to the last output
  bool transfer_ended = false;  // the transport reported the transfer's outcome (OK or not)
  absl::StatusCode transfer_code = absl::StatusCode::kOk;  // that outcome's code
  double transfer_seconds = 0;  // from the first block sent to that outcome
  int64_t transfer_bytes = 0;
};

class KvExport : public std::enable_shared_from_this<KvExport> {
 public:
  using Done = std::function<void(const absl::Status&, const KvExportResult&)>;

  static std::shared_ptr<KvExport> Create(KvExportOptions options, KvTransport* transport,
                                          KvExportEngine* engine, Done done);

  // One engine output for the request (engine thread). `block_table` is the request's block
  // table at that moment (logical block i -> local block).
  void OnProgress(const RequestOutput& out, std::span<const int32_t> block_table);
  // Ends the export with `status` unless it already ended.
  void Cancel(const absl::Status& status);

  int32_t prompt_blocks() const { return prompt_blocks_; }

 private:
  using Clock = std::chrono::steady_clock;

  KvExport(KvExportOptions options, KvTransport* transport, KvExportEngine* engine, Done done);
  // The failure this output means, if any; starts the transfer with the first chunk.
  absl::Status Check(const RequestOutput& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendReady(int32_t ready, std::span<const int32_t> block_table) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordFinish(const RequestOutput& out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TransferFinished(const absl::Status& status);
  // Ends the export once: drops the transfer (deferred), cancels the engine request on
  // failure, calls `done`.
  void End(const absl::Status& status);

  const KvExportOptions options_;
  const int32_t prompt_blocks_;
  KvTransport* const transport_;
  KvExportEngine* const engine_;
  const Clock::time_point start_ = Clock::now();

  std::mutex mu_;
  Done done_ ABSL_GUARDED_BY(mu_);  // null once ended
  std::shared_ptr<KvTransfer> transfer_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called on the transfer
  int32_t sent_ ABSL_GUARDED_BY(mu_) = 0;        // logical blocks sent
  Clock::time_point first_send_ ABSL_GUARDED_BY(mu_);
  KvExportResult result_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::worker
