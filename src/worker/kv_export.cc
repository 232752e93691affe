#include "worker/kv_export.h"

#include <utility>
#include <vector>

#include "common/logging.h"
#include "common/strings.h"

namespace tandem::worker {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int32_t BlocksFor(int32_t tokens, int32_t block_size) {
  return block_size > 0 ? (tokens + block_size - 1) / block_size : 0;
}

}  // namespace

std::shared_ptr<KvExport> KvExport::Create(KvExportOptions options, KvTransport* transport,
                                           KvExportEngine* engine, Done done) {
  return std::shared_ptr<KvExport>(new KvExport(std::move(options), transport, engine, std::move(done)));
}

KvExport::KvExport(KvExportOptions options, KvTransport* transport, KvExportEngine* engine, Done done)
    : options_(std::move(options)),
      prompt_blocks_(BlocksFor(options_.prompt_tokens, options_.block_size)),
      transport_(transport),
      engine_(engine),
      done_(std::move(done)) {}

void KvExport::OnProgress(const RequestOutput& out, std::span<const int32_t> block_table) {
  absl::Status failure;
  std::shared_ptr<KvTransfer> finishing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ == nullptr || finishing_) return;  // ended, or the last output was seen
    failure = Check(out);
    if (failure.ok()) {
      const bool last = out.finish != FinishReason::kNone;
      SendReady(last ? prompt_blocks_ : out.num_computed / options_.block_size, block_table);
      if (last && sent_ < prompt_blocks_) {
        failure = absl::InternalError(StrCat("the engine's block table has ", block_table.size(),
                                             " blocks; the prompt needs ", prompt_blocks_));
      } else if (last) {
        RecordFinish(out);
        finishing_ = true;
        finishing = transfer_;
      }
    }
  }
  if (!failure.ok()) return End(failure);
  if (finishing == nullptr) return;
  // Outside the lock: a transport may call back at once. The callback keeps the export alive.
  finishing->Finish([self = shared_from_this()](absl::Status s) { self->TransferFinished(s); });
}

absl::Status KvExport::Check(const RequestOutput& out) {
  if (out.finish == FinishReason::kCancelled) return absl::AbortedError("the prefill was cancelled");
  if (out.finish == FinishReason::kError) return absl::AbortedError("the engine failed during the prefill");
  if (transfer_ == nullptr) {
    auto transfer = transport_->StartTransfer(options_.destination, absl::Now() + options_.transfer_timeout);
    if (!transfer.ok()) return transfer.status();
    transfer_ = std::move(*transfer);
  }
  if (out.finish == FinishReason::kNone && out.num_computed < sent_ * options_.block_size) {
    // Preempted and recomputing from scratch: blocks already sent may be stale. Give up; the
    // router retries elsewhere.
    return absl::UnavailableError("the prefill was preempted for lack of KV blocks; retry");
  }
  return absl::OkStatus();
}

void KvExport::SendReady(int32_t ready, std::span<const int32_t> block_table) {
  std::vector<BlockCopy> copies;
  for (int32_t i = sent_; i < ready && i < static_cast<int32_t>(block_table.size()); ++i) {
    copies.push_back({block_table[static_cast<size_t>(i)], i});
  }
  if (copies.empty()) return;
  if (sent_ == 0) first_send_ = Clock::now();
  transfer_->Send(copies);
  sent_ += static_cast<int32_t>(copies.size());
  result_.transfer_bytes += static_cast<int64_t>(copies.size()) * options_.block_bytes;
}

void KvExport::RecordFinish(const RequestOutput& out) {
  result_.computed = true;
  result_.first_token = out.new_tokens.empty() ? -1 : out.new_tokens[0];
  result_.rng_draws = out.rng_draws;
  if (!out.logprobs.empty()) result_.first_logprob = out.logprobs[0];
  result_.prompt_logprobs = out.prompt_logprobs;
  result_.finish = out.finish;
  result_.prompt_tokens = out.prompt_tokens;
  result_.cached_prompt_tokens = out.cached_prompt_tokens;
  result_.prefill_seconds = SecondsSince(start_);
}

void KvExport::TransferFinished(const absl::Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ == nullptr) return;  // cancelled meanwhile: the engine already freed the KV
    result_.transfer_ended = true;
    result_.transfer_code = status.code();
    result_.transfer_seconds = sent_ > 0 ? SecondsSince(first_send_) : 0.0;
  }
  if (!status.ok()) return End(absl::UnavailableError(StrCat("KV transfer failed: ", status.message())));
  engine_->ReleaseHeldKv(options_.request_id);
  End(absl::OkStatus());
}

void KvExport::Cancel(const absl::Status& status) { End(status); }

void KvExport::End(const absl::Status& status) {
  Done done;
  std::shared_ptr<KvTransfer> transfer;
  KvExportResult result;
  int32_t sent = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ == nullptr) return;
    done = std::move(done_);
    done_ = nullptr;
    transfer = std::move(transfer_);
    result = result_;
    sent = sent_;
  }
  // Dropping an unfinished transfer aborts it; never inside one of its own callbacks.
  if (transfer != nullptr) engine_->Defer([transfer = std::move(transfer)] {});
  auto log = GetLogger("worker");
  if (status.ok()) {
    log->debug("request={} KV sent: {} blocks, {} bytes in {:.4f} s", options_.request_id, sent,
               result.transfer_bytes, result.transfer_seconds);
  } else {
    engine_->CancelRequest(options_.request_id);  // frees the sequence or its held KV
    log->info("request={} prefill ended after {} of {} blocks sent: {}", options_.request_id, sent,
              prompt_blocks_, status.ToString());
  }
  done(status, result);
}

}  // namespace tandem::worker
