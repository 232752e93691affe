// Speculative decoding's drafts: tokens proposed to follow a sequence, which the engine runs
// through the model together with its last token in one pass and keeps while the sampler picks
// them (engine.cc, Engine::Step).
//
// Verification: every position's token is sampled from its own row of logits with the request's
// own sampler and random stream, exactly as without speculation, and a draft token is kept only
// if it equals the sampled one; the first that differs ends the run (the sampled token is kept,
// the rows after it are dropped). With a deterministic draft (a point mass q on the proposed
// token x) this is the standard rejection rule: accepting x with probability min(1, p(x)/q(x)) =
// p(x) and otherwise drawing from the residual max(0, p - q), normalised (= p without x), gives the
// same distribution as one draw from p and a comparison with x. Unlike the rejection rule with
// fresh uniforms, it also uses the same random draws per output token as decoding without
// speculation, so greedy and seeded outputs are identical with and without it, and a request
// resumed elsewhere (rng_draws) continues the same stream.
//
// Thread-safety: the proposers are immutable after construction.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tandem {

struct SpeculativeOptions {
  int num_draft_tokens = 0;  // tokens proposed per sequence and iteration at most; 0 = off
  // Prompt lookup (n-gram): the last max_ngram .. min_ngram tokens are looked for earlier in the
  // sequence (prompt and output), longest first. (A lone repeated token is a poor guess: in open
  // chat 1-gram drafts were kept 5-17% of the time here, bench/speculative_bench.py.)
  int min_ngram = 2;
  int max_ngram = 3;
  // Drafts only while at most this many sequences are decoding: verifying a draft costs a row of
  // compute per token, which a batch that already streams the weights once pays in full.
  int max_decoding = 4;
  // What running one draft token costs, as a fraction of a decode iteration (0: always propose
  // num_draft_tokens). Each sequence proposes the i-th draft token only while a^i >= draft_cost,
  // a being its estimated chance that a draft token is kept (DraftLength): a token's expected
  // saving (a^i of an iteration) must pay for it. 0.25 is what one draft token cost on the 2-core
  // CPU this was measured on (0.19-0.48 over 24 runs, median 0.28).
  double draft_cost = 0.25;
};

// Per sequence: how often its draft tokens were kept (counts decayed, so the estimate follows the
// text: copying, then free writing).
struct DraftRecord {
  double kept = 0;    // draft tokens kept
  double missed = 0;  // drafts that ended at a token the sampler did not pick
  // After a verified draft of `drafted` tokens of which the first `kept` were kept.
  void Verified(int drafted, int kept_now) {
    kept = 0.8 * kept + kept_now;
    missed = 0.8 * missed + (kept_now < drafted ? 1 : 0);
  }
  // An iteration without a draft: the record fades toward the prior (0.5), so that a sequence
  // that stopped drafting tries again now and then.
  void Idle() {
    kept *= 0.9;
    missed *= 0.9;
  }
  // The chance a draft token is kept, from kept / (kept + missed) with one of each as prior (a
  // geometric run: each token kept with the same chance until the first miss).
  double KeepRate() const { return (kept + 1) / (kept + missed + 2); }
};

// How many draft tokens (0 .. max_tokens) to propose for a sequence with this record.
int DraftLength(const DraftRecord& record, int max_tokens, double draft_cost);

// The interface a draft source implements (n-gram lookup here; a small draft model with the same
// vocabulary would be another).
class DraftProposer {
 public:
  virtual ~DraftProposer() = default;
  // Appends to `draft` at most `max_tokens` tokens proposed to follow `tokens` (none when it has
  // no guess).
  virtual void Propose(std::span<const int32_t> tokens, int max_tokens, std::vector<int32_t>* draft) const = 0;
};

// Prompt-lookup drafting: finds the latest earlier occurrence of the sequence's last n tokens (n
// from max_ngram down to min_ngram) with max_tokens tokens after it (else the occurrence with the
// most), and proposes those tokens. Costs O(length x n) comparisons per call, no model.
class NgramProposer : public DraftProposer {
 public:
  NgramProposer(int min_ngram, int max_ngram);
  void Propose(std::span<const int32_t> tokens, int max_tokens, std::vector<int32_t>* draft) const override;

 private:
  int min_ngram_;
  int max_ngram_;
};

}  // namespace tandem
