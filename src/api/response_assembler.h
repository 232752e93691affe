// Turns one request's generated token ids, as they arrive from a worker, into the text the
// client sees, and decides when the choice is over.
//
// Per token, in order (vLLM's StopChecker order):
//  1. Counted in usage.completion_tokens, whatever follows: the token that ends the choice
//     (end-of-generation, stop token, the one completing a stop string) counts, as in vLLM.
//  2. A stop token (stop_token_ids), or an end-of-generation token (Tokenizer::IsEog) unless
//     ignore_eos: the choice ends with "stop" and the token's text is never shown.
//  3. Otherwise it is detokenized (IncrementalDetokenizer: only complete UTF-8 leaves, special
//     tokens render as nothing — vLLM's skip_special_tokens default) and the text goes
//     through the stop strings (StopStringMatcher): a matched stop string ends the choice
//     with "stop", and neither it nor anything after it is shown.
//     With ignore_eos, EOG tokens take this path too: shown only if the vocabulary does not
//     mark them special (control), which for ChatML's <|im_end|> means never.
//  4. The max_tokens-th token ends the choice with "length" (unless 2 or 3 ended it first).
// When the choice ends, text held back for a possible stop string or an unfinished character
// is released (an unfinished character as U+FFFD). Tokens pushed after the end are ignored:
// a worker may produce a few more before its cancellation lands.
//
// The router cancels the worker request when Push() reports finished before the worker
// reported its own finish (a stop string matched). When the worker ends first (for instance
// at the end of the context), the router calls Finish().
//
// Thread-safety: thread-compatible (one owner, e.g. the request's stream). Ownership: borrows
// the Tokenizer, which must outlive the assembler.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "api/response.h"
#include "types/finish_reason.h"
#include "types/sampling_params.h"
#include "text/detokenizer.h"
#include "text/stop_strings.h"
#include "text/tokenizer.h"

namespace tandem::api {

struct AssemblerOptions {
  int32_t prompt_tokens = 0;  // for usage
  int32_t max_tokens = 16;    // resolved (ResolveMaxTokens), >= 1
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  // Stop strings do not match before this many tokens are generated (vLLM's min_tokens; the
  // engine does not sample stop and end-of-generation tokens before then).
  int32_t min_tokens = 0;
  // Completions' echo: the prompt's text, shown before the generated text (stop strings and
  // max_tokens apply to the generated text only).
  std::string echo;

  static AssemblerOptions From(const GenerationOptions& options, int32_t prompt_tokens,
                               int32_t max_tokens);
};

// What one Push() or Finish() produced.
struct AssembledDelta {
  std::string text;       // new text to show; may be empty
  bool finished = false;  // the choice just ended (true exactly once)
};

// vLLM's prompt_logprobs from the engine's rows (raw[i - 1] scores prompt[i]): entry 0 is null;
// entry i holds prompt[i] with raw[i - 1].logprob, then the first k of raw[i - 1].top ranked 1 ..
// k (prompt[i] once when among them). prompt[i]'s rank is the engine's (TokenLogprob.rank); from
// a row without one, its place in raw[i - 1].top, else unknown (0, shown as null). Entries with
// no row are null.
PromptLogprobsList DescribeRankedPromptLogprobs(const text::Tokenizer& tokenizer, std::span<const int32_t> prompt,
                                                std::span<const TokenLogprob> raw, int32_t k);

class ResponseAssembler {
 public:
  // InvalidArgument for an empty or ill-formed stop string, or max_tokens < 1.
  static absl::StatusOr<std::unique_ptr<ResponseAssembler>> Create(
      const text::Tokenizer& tokenizer, AssemblerOptions options);

  AssembledDelta Push(std::span<const int32_t> token_ids);
  AssembledDelta Push(int32_t token_id) { return Push(std::span<const int32_t>(&token_id, 1)); }

  // The API's view of tokens' log-probabilities (token texts, special tokens by name), with
  // text offsets that run on over every call.
  std::vector<LogprobEntry> DescribeLogprobs(std::span<const int32_t> token_ids,
                                             std::span<const TokenLogprob> logprobs);
  // The echoed prompt's entries: `prompt`'s tokens from text offset 0, the first unscored, token
  // i's log-probabilities from prompt_logprobs[i - 1] (prompt.size() - 1 of them; missing ones
  // unscored).
  std::vector<LogprobEntry> DescribePromptLogprobs(std::span<const int32_t> prompt,
                                                   std::span<const TokenLogprob> prompt_logprobs) const;

  // The worker reported the request's end. kLength maps to "length", everything else to
  // "stop" (the router answers kError/kCancelled with an error instead of using the text).
  // Releases held-back text. A no-op once finished.
  AssembledDelta Finish(FinishReason worker_reason);

  bool finished() const { return finish_.has_value(); }
  // Set once finished().
  std::optional<ApiFinishReason> finish_reason() const { return finish_; }
  Usage usage() const { return {prompt_tokens_, completion_tokens_}; }
  // Everything shown so far: the content of a non-streaming response.
  const std::string& text() const { return text_; }
  // The stop string that ended the choice, if one did (vLLM's stop_reason).
  std::string_view matched_stop() const { return stops_.matched_stop(); }

 private:
  ResponseAssembler(const text::Tokenizer& tokenizer, AssemblerOptions options,
                    text::StopStringMatcher stops);
  bool IsStopToken(int32_t id) const;
  std::string Piece(int32_t id) const;  // a token's text as the log-probabilities show it
  // Releases held-back text and records the finish.
  void End(ApiFinishReason reason, std::string* out);

  const text::Tokenizer& tokenizer_;
  text::IncrementalDetokenizer detokenizer_;
  text::StopStringMatcher stops_;
  std::vector<int32_t> stop_token_ids_;
  bool ignore_eos_;
  int32_t max_tokens_;
  int32_t min_tokens_;
  int32_t prompt_tokens_;
  int32_t completion_tokens_ = 0;
  std::optional<ApiFinishReason> finish_;
  std::string text_;
  std::string echo_;            // not shown yet
  int64_t logprob_offset_ = 0;  // bytes of text described so far (after the echo)
};

}  // namespace tandem::api
