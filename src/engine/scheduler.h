// Continuous batching with stall-free chunked prefill (Sarathi-Serve, OSDI'24 §4): every
// iteration first takes one token for each running sequence that is decoding, then chunks of
// sequences still prefilling (or recomputing after preemption), then new sequences, until the
// per-iteration token budget is spent. Prefix-cache hits are taken when a sequence is admitted.
// When KV blocks run out, the lowest-priority, latest-arrived running sequence is preempted by
// recompute (its blocks are freed and it goes back to the front of the waiting queue).
//
// Thread-safety: none; owned by the engine's step thread. Sequences are owned by the engine;
// the scheduler keeps pointers to them until Remove().
#pragma once

#include <deque>
#include <vector>

#include "engine/block_manager.h"
#include "engine/sequence.h"

namespace tandem {

struct SchedulerOptions {
  int token_budget = 512;   // tokens per iteration (Sarathi-Serve's tau)
  int max_num_seqs = 256;   // sequences per iteration
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t num_tokens = 0;   // tokens[seq->num_computed, + num_tokens) run this iteration
  bool samples = false;     // the chunk reaches the end of the known tokens: sample one
};

struct SchedulerOutput {
  std::vector<ScheduledChunk> chunks;
  std::vector<Sequence*> preempted;  // sent back to waiting during this call
  int32_t num_tokens = 0;
  int32_t num_decode_tokens = 0;
  int32_t num_prefill_tokens = 0;
};

// The work in one scheduled iteration, in the terms of the iteration cost model (src/sim):
// tokens run through the layers, rows that produce logits and are sampled, attention work =
// query-key pairs (a chunk of n tokens after c computed ones attends to n*c + n*(n+1)/2 keys),
// and KV read = the cached tokens every chunk's attention reads (c + n: what bounds decode
// attention on a GPU, where a chunk reads its context once whatever its length). Call before
// the iteration runs (num_computed is the context).
struct IterationShape {
  int64_t tokens = 0;
  int64_t sampled = 0;
  int64_t attention_pairs = 0;
  int64_t sequences = 0;
  int64_t kv_read_tokens = 0;
};
IterationShape DescribeIteration(const SchedulerOutput& plan);

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, BlockManager& blocks);

  // Queues a new sequence (ordered by priority, then arrival).
  void Add(Sequence* seq);
  // Adds a sequence that already holds its blocks and computed KV (imported from a prefill
  // worker) straight to the running set.
  void AddRunning(Sequence* seq);
  // Forgets a sequence (finished or cancelled) and releases its blocks.
  void Remove(Sequence* seq);
  // Forgets a sequence but hands its block table to the caller instead of releasing it.
  std::vector<int32_t> RemoveKeepingBlocks(Sequence* seq);
  SchedulerOutput Schedule();

  // After an iteration ran: registers the sequence's newly completed full blocks in the
  // prefix cache.
  void OnComputed(Sequence* seq);

  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const std::vector<Sequence*>& running() const { return running_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  // Makes sure `seq` has blocks for its first `num_tokens` tokens; false if blocks ran out.
  bool EnsureBlocks(Sequence* seq, int32_t num_tokens);
  // Blocks `seq` lacks for its first `num_tokens` tokens.
  int64_t BlocksMissing(const Sequence* seq, int32_t num_tokens) const;
  void ReleaseBlocks(Sequence* seq);
  void Preempt(Sequence* seq);
  // Picks the running sequence to preempt: lowest priority, then latest arrival.
  Sequence* PickVictim();
  // Takes prefix-cache hits for a sequence that has no blocks yet.
  void TakePrefixHits(Sequence* seq);
  void ComputeBlockHashes(Sequence* seq, int32_t num_full_blocks);
  void InsertWaiting(Sequence* seq, bool front);

  SchedulerOptions options_;
  BlockManager& blocks_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;
};

}  // namespace tandem
