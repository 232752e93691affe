#include "engine/scheduler.h"

#include <algorithm>

#include "common/check.h"

namespace tandem {
namespace {

bool RunsBefore(const Sequence* a, const Sequence* b) {
  return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
}

}  // namespace

IterationShape DescribeIteration(const SchedulerOutput& plan) {
  IterationShape shape;
  for (const ScheduledChunk& chunk : plan.chunks) {
    const int64_t n = chunk.num_tokens;
    shape.tokens += n;
    shape.sampled += chunk.samples ? 1 : 0;
    shape.attention_pairs += n * chunk.seq->num_computed + n * (n + 1) / 2;
    shape.kv_read_tokens += chunk.seq->num_computed + n;
    ++shape.sequences;
  }
  return shape;
}

Scheduler::Scheduler(const SchedulerOptions& options, BlockManager& blocks)
    : options_(options), blocks_(blocks) {
  TANDEM_CHECK_GT(options_.token_budget, 0);
  TANDEM_CHECK_GT(options_.max_num_seqs, 0);
}

void Scheduler::InsertWaiting(Sequence* seq, bool front) {
  // Keep the queue ordered by priority; within a priority, preempted sequences go first.
  auto it = waiting_.begin();
  if (front) {
    while (it != waiting_.end() && (*it)->priority < seq->priority) ++it;
  } else {
    while (it != waiting_.end() && (*it)->priority <= seq->priority) ++it;
  }
  waiting_.insert(it, seq);
}

void Scheduler::Add(Sequence* seq) { InsertWaiting(seq, /*front=*/false); }

void Scheduler::AddRunning(Sequence* seq) {
  seq->running = true;
  running_.push_back(seq);
}

void Scheduler::ReleaseBlocks(Sequence* seq) {
  for (int32_t b : seq->block_table) blocks_.Release(b);
  seq->block_table.clear();
  seq->num_computed = 0;
  seq->num_registered_blocks = 0;
}

void Scheduler::Remove(Sequence* seq) {
  if (seq->running) {
    running_.erase(std::find(running_.begin(), running_.end(), seq));
    seq->running = false;
  } else if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  ReleaseBlocks(seq);
}

std::vector<int32_t> Scheduler::RemoveKeepingBlocks(Sequence* seq) {
  if (seq->running) {
    running_.erase(std::find(running_.begin(), running_.end(), seq));
    seq->running = false;
  } else if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  std::vector<int32_t> blocks = std::move(seq->block_table);
  seq->block_table.clear();
  seq->num_computed = 0;
  seq->num_registered_blocks = 0;
  return blocks;
}

int64_t Scheduler::BlocksMissing(const Sequence* seq, int32_t num_tokens) const {
  const int64_t needed = (num_tokens + blocks_.block_size() - 1) / blocks_.block_size();
  return std::max<int64_t>(0, needed - static_cast<int64_t>(seq->block_table.size()));
}

bool Scheduler::EnsureBlocks(Sequence* seq, int32_t num_tokens) {
  const size_t needed = (num_tokens + blocks_.block_size() - 1) / blocks_.block_size();
  while (seq->block_table.size() < needed) {
    auto b = blocks_.Allocate();
    if (!b) return false;
    seq->block_table.push_back(*b);
  }
  return true;
}

void Scheduler::Preempt(Sequence* seq) {
  TANDEM_DCHECK(seq->running);
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  seq->running = false;
  ReleaseBlocks(seq);
  seq->draft.clear();
  ++seq->num_preemptions;
  InsertWaiting(seq, /*front=*/true);
}

void Scheduler::ComputeBlockHashes(Sequence* seq, int32_t num_full_blocks) {
  const int bs = blocks_.block_size();
  while (static_cast<int32_t>(seq->block_hashes.size()) < num_full_blocks) {
    const size_t i = seq->block_hashes.size();
    const BlockHash* parent = i == 0 ? nullptr : &seq->block_hashes[i - 1];
    seq->block_hashes.push_back(blocks_.HashBlock(
        parent, std::span<const int32_t>(seq->tokens.data() + i * bs, bs)));
  }
}

void Scheduler::TakePrefixHits(Sequence* seq) {
  seq->num_prefix_hit_tokens = 0;
  if (!blocks_.prefix_cache_enabled()) return;
  // At least the last known token must run to produce logits.
  int32_t max_blocks = (static_cast<int32_t>(seq->tokens.size()) - 1) / blocks_.block_size();
  // Prompt log-probabilities need the logits of every position not scored yet: no hit past those.
  if (seq->sampling.prompt_logprobs >= 0) {
    max_blocks = std::min(max_blocks, (seq->prompt_logprobs_next - 1) / blocks_.block_size());
  }
  ComputeBlockHashes(seq, max_blocks);
  for (int32_t i = 0; i < max_blocks; ++i) {
    auto b = blocks_.Lookup(seq->block_hashes[i]);
    if (!b) break;
    seq->block_table.push_back(*b);
  }
  seq->num_computed = static_cast<int32_t>(seq->block_table.size()) * blocks_.block_size();
  seq->num_registered_blocks = static_cast<int32_t>(seq->block_table.size());
  seq->num_prefix_hit_tokens = seq->num_computed;
}

void Scheduler::OnComputed(Sequence* seq) {
  if (!blocks_.prefix_cache_enabled()) return;
  const int32_t full = seq->num_computed / blocks_.block_size();
  ComputeBlockHashes(seq, full);
  for (int32_t i = seq->num_registered_blocks; i < full; ++i) {
    blocks_.Register(seq->block_table[i], seq->block_hashes[i]);
  }
  seq->num_registered_blocks = std::max(seq->num_registered_blocks, full);
}

namespace {

// Prompt tokens a request scoring its prompt (sampling.prompt_logprobs) runs per iteration at
// most: each makes a row of logits (vocab_size floats: 192 KiB for a 49k vocabulary), so this
// bounds the iteration's logits at 24 MiB instead of the whole token budget's.
constexpr int32_t kScoredTokensPerStep = 128;

// The tokens of `seq` to run with `budget` left (a decoding sequence's draft included).
int32_t ChunkOf(const Sequence* seq, int32_t budget) {
  const int32_t draft = seq->num_uncomputed() == 1 ? static_cast<int32_t>(seq->draft.size()) : 0;
  int32_t want = std::min(seq->num_uncomputed() + draft, budget);
  if (seq->sampling.prompt_logprobs >= 0 && seq->prompt_logprobs_next < seq->prompt_len) {
    want = std::min(want, kScoredTokensPerStep);
  }
  return want;
}

}  // namespace

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int32_t budget = options_.token_budget;
  std::vector<Sequence*> order = running_;
  std::sort(order.begin(), order.end(), RunsBefore);
  std::vector<Sequence*> scheduled;
  auto record = [&](Sequence* seq, int32_t want) {
    out.chunks.push_back({seq, want, seq->num_computed + want >= static_cast<int32_t>(seq->tokens.size())});
    scheduled.push_back(seq);
    seq->draft.resize(std::max(0, want - seq->num_uncomputed()));  // the draft tokens that fit
    budget -= want;
    (seq->num_uncomputed() == 1 ? out.num_decode_tokens : out.num_prefill_tokens) += want;
  };

  auto victim_for = [&](Sequence* self) -> Sequence* {
    Sequence* victim = nullptr;
    for (Sequence* s : running_) {
      if (s == self || std::find(scheduled.begin(), scheduled.end(), s) != scheduled.end()) continue;
      if (victim == nullptr || RunsBefore(victim, s)) victim = s;
    }
    return victim;
  };
  // `reserve`: budget kept for the decodes after this one (a draft only takes what they leave).
  auto schedule_running = [&](Sequence* seq, int32_t reserve) {
    if (!seq->running || budget == 0) return;
    int32_t want = ChunkOf(seq, std::max(1, budget - reserve));
    // A draft never takes a block that the decodes after this one (one block each at most) may
    // need: without room it is dropped, never a reason to preempt.
    if (want > seq->num_uncomputed() && BlocksMissing(seq, seq->num_computed + want) + reserve > blocks_.num_available()) {
      seq->draft.clear();
      want = ChunkOf(seq, budget);
    }
    while (!EnsureBlocks(seq, seq->num_computed + want)) {
      Sequence* victim = victim_for(seq);
      if (victim == nullptr) victim = seq;
      Preempt(victim);
      out.preempted.push_back(victim);
      if (victim == seq) return;
    }
    record(seq, want);
  };
  // 1. Decodes first: they are what keeps inter-token latency steady. Each gets its one token
  // before any gets a draft.
  int32_t decodes_left = static_cast<int32_t>(
      std::count_if(order.begin(), order.end(), [](const Sequence* s) { return s->num_uncomputed() == 1; }));
  for (Sequence* seq : order) {
    if (seq->num_uncomputed() == 1) schedule_running(seq, --decodes_left);
  }
  // 2. Sequences part-way through their prefill (or recompute).
  for (Sequence* seq : order) {
    if (seq->num_uncomputed() > 1) schedule_running(seq, 0);
  }
  // 3. New sequences, while there is budget, room in the batch and KV blocks.
  while (budget > 0 && !waiting_.empty() &&
         static_cast<int>(running_.size()) < options_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    if (seq->block_table.empty()) TakePrefixHits(seq);
    const int32_t want = ChunkOf(seq, budget);
    if (!EnsureBlocks(seq, seq->num_computed + want)) {
      ReleaseBlocks(seq);  // do not sit on cache hits or blocks while waiting
      break;
    }
    waiting_.pop_front();
    seq->running = true;
    running_.push_back(seq);
    record(seq, want);
  }
  out.num_tokens = options_.token_budget - budget;
  return out;
}

}  // namespace tandem
