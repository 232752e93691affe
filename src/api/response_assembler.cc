#include "api/response_assembler.h"

#include <algorithm>
#include <utility>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::api {

namespace {

// A token's text as the log-probabilities show it (special tokens by name).
std::string TokenPiece(const text::Tokenizer& tokenizer, int32_t id) {
  return id >= 0 && id < tokenizer.vocab_size() ? tokenizer.TokenToPiece(id, /*render_special=*/true) : "";
}

}  // namespace

PromptLogprobsList DescribeRankedPromptLogprobs(const text::Tokenizer& tokenizer, std::span<const int32_t> prompt,
                                                std::span<const TokenLogprob> raw, int32_t k) {
  PromptLogprobsList out(prompt.size());
  for (size_t i = 1; i < prompt.size() && i <= raw.size(); ++i) {
    const TokenLogprob& row = raw[i - 1];
    const int32_t token = prompt[i];
    int32_t rank = row.rank;  // the engine's; a peer that sends none: its place in the top list
    for (size_t j = 0; j < row.top.size() && rank == 0; ++j) {
      if (row.top[j].first == token) rank = static_cast<int32_t>(j + 1);
    }
    std::vector<RankedLogprob>& entry = out[i].emplace();
    entry.push_back({token, row.logprob, rank, TokenPiece(tokenizer, token)});
    const size_t shown = std::min(row.top.size(), static_cast<size_t>(std::max(k, 0)));
    for (size_t j = 0; j < shown; ++j) {
      const auto& [id, lp] = row.top[j];
      if (id != token) entry.push_back({id, lp, static_cast<int32_t>(j + 1), TokenPiece(tokenizer, id)});
    }
  }
  return out;
}

AssemblerOptions AssemblerOptions::From(const GenerationOptions& options, int32_t prompt_tokens,
                                        int32_t max_tokens) {
  AssemblerOptions o;
  o.prompt_tokens = prompt_tokens;
  o.max_tokens = max_tokens;
  o.stop = options.stop;
  o.stop_token_ids = options.stop_token_ids;
  o.ignore_eos = options.ignore_eos;
  o.min_tokens = options.min_tokens;
  return o;
}

absl::StatusOr<std::unique_ptr<ResponseAssembler>> ResponseAssembler::Create(
    const text::Tokenizer& tokenizer, AssemblerOptions options) {
  if (options.max_tokens < 1) {
    return absl::InvalidArgumentError(StrCat("max_tokens must be >= 1, got ", options.max_tokens));
  }
  TANDEM_ASSIGN_OR_RETURN(text::StopStringMatcher stops,
                          text::StopStringMatcher::Create(std::move(options.stop)));
  return std::unique_ptr<ResponseAssembler>(
      new ResponseAssembler(tokenizer, std::move(options), std::move(stops)));
}

ResponseAssembler::ResponseAssembler(const text::Tokenizer& tokenizer, AssemblerOptions options,
                                     text::StopStringMatcher stops)
    : tokenizer_(tokenizer),
      detokenizer_(tokenizer, /*render_special=*/false),
      stops_(std::move(stops)),
      stop_token_ids_(std::move(options.stop_token_ids)),
      ignore_eos_(options.ignore_eos),
      max_tokens_(options.max_tokens),
      min_tokens_(options.min_tokens),
      prompt_tokens_(options.prompt_tokens),
      echo_(std::move(options.echo)),
      logprob_offset_(static_cast<int64_t>(echo_.size())) {
  std::sort(stop_token_ids_.begin(), stop_token_ids_.end());
}

bool ResponseAssembler::IsStopToken(int32_t id) const {
  if (std::binary_search(stop_token_ids_.begin(), stop_token_ids_.end(), id)) return true;
  return !ignore_eos_ && tokenizer_.IsEog(id);
}

AssembledDelta ResponseAssembler::Push(std::span<const int32_t> token_ids) {
  AssembledDelta out;
  out.text = std::exchange(echo_, std::string());
  for (int32_t id : token_ids) {
    if (finished()) break;
    ++completion_tokens_;
    if (IsStopToken(id)) {
      End(ApiFinishReason::kStop, &out.text);
    } else {
      stops_.set_armed(completion_tokens_ >= min_tokens_);
      out.text += stops_.Push(detokenizer_.Push(id));
      if (stops_.stopped()) {
        End(ApiFinishReason::kStop, &out.text);
      } else if (completion_tokens_ >= max_tokens_) {
        End(ApiFinishReason::kLength, &out.text);
      }
    }
    out.finished = finished();
  }
  text_ += out.text;
  return out;
}

std::string ResponseAssembler::Piece(int32_t id) const { return TokenPiece(tokenizer_, id); }

std::vector<LogprobEntry> ResponseAssembler::DescribePromptLogprobs(std::span<const int32_t> prompt,
                                                                   std::span<const TokenLogprob> prompt_logprobs) const {
  std::vector<LogprobEntry> out;
  int64_t offset = 0;
  for (size_t i = 0; i < prompt.size(); ++i) {
    LogprobEntry e;
    e.token = Piece(prompt[i]);
    e.text_offset = offset;
    offset += static_cast<int64_t>(e.token.size());
    if (i == 0 || i > prompt_logprobs.size()) {
      e.unscored = true;
    } else {
      e.logprob = prompt_logprobs[i - 1].logprob;
      for (const auto& [id, lp] : prompt_logprobs[i - 1].top) e.top.emplace_back(Piece(id), lp);
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<LogprobEntry> ResponseAssembler::DescribeLogprobs(std::span<const int32_t> token_ids,
                                                             std::span<const TokenLogprob> logprobs) {
  std::vector<LogprobEntry> out;
  for (size_t i = 0; i < std::min(token_ids.size(), logprobs.size()); ++i) {
    LogprobEntry e;
    e.token = Piece(token_ids[i]);
    e.logprob = logprobs[i].logprob;
    for (const auto& [id, lp] : logprobs[i].top) e.top.emplace_back(Piece(id), lp);
    e.text_offset = logprob_offset_;
    logprob_offset_ += static_cast<int64_t>(e.token.size());
    out.push_back(std::move(e));
  }
  return out;
}

AssembledDelta ResponseAssembler::Finish(FinishReason worker_reason) {
  AssembledDelta out;
  if (finished()) return out;
  out.text = std::exchange(echo_, std::string());
  End(worker_reason == FinishReason::kLength ? ApiFinishReason::kLength : ApiFinishReason::kStop,
      &out.text);
  out.finished = true;
  text_ += out.text;
  return out;
}

void ResponseAssembler::End(ApiFinishReason reason, std::string* out) {
  if (!stops_.stopped()) {
    *out += stops_.Push(detokenizer_.Flush());
    *out += stops_.Flush();
  }
  // A stop string completed by the released text still counts as a stop.
  finish_ = stops_.stopped() ? ApiFinishReason::kStop : reason;
}

}  // namespace tandem::api
