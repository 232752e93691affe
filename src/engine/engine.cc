#include "engine/engine.h"

#include <algorithm>
#include <limits>
#include <chrono>
#include <random>

#include "common/check.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem {

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const gguf::GgufFile& file,
                                                       std::unique_ptr<Backend> backend,
                                                       const EngineOptions& options) {
  if (options.block_size <= 0 || options.block_size > 1024) {
    return absl::InvalidArgumentError(StrCat("block size ", options.block_size, " is out of range"));
  }
  auto engine = std::unique_ptr<Engine>(new Engine());
  engine->options_ = options;
  engine->backend_ = std::move(backend);
  TANDEM_ASSIGN_OR_RETURN(engine->model_, LlamaModel::Load(file, *engine->backend_));
  const ModelConfig& c = engine->model_->config();
  engine->max_model_len_ = options.max_model_len > 0 ? std::min(options.max_model_len, c.context_length)
                                                     : c.context_length;
  const KvCacheLayout layout = engine->model_->kv_layout(options.block_size);
  int64_t num_blocks = options.num_kv_blocks;
  if (num_blocks <= 0) num_blocks = options.kv_cache_bytes / layout.bytes_per_block();
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(StrCat("the KV cache of ", options.kv_cache_bytes,
                                             " bytes holds no block of ", layout.bytes_per_block(), " bytes"));
  }
  TANDEM_ASSIGN_OR_RETURN(engine->cache_, engine->backend_->CreateKvCache(layout, num_blocks));
  BlockManagerOptions bm;
  bm.num_blocks = num_blocks;
  bm.block_size = options.block_size;
  bm.enable_prefix_cache = options.enable_prefix_cache;
  bm.hash_salt = StrCat(c.architecture, "|", c.name, "|", file.file_size());
  engine->blocks_ = std::make_unique<BlockManager>(bm);
  SchedulerOptions so = options.scheduler;
  so.max_num_seqs = std::min(so.max_num_seqs, so.token_budget);  // every decode fits an iteration
  engine->scheduler_ = std::make_unique<Scheduler>(so, *engine->blocks_);
  engine->is_eog_.assign(c.vocab_size, false);
  for (int32_t id : options.eog_token_ids) {
    if (id >= 0 && id < c.vocab_size) engine->is_eog_[id] = true;
  }
  if (!options.token_pieces.empty()) {
    // Rows of the model's output past the tokenizer's tokens (padding) get no bytes: never allowed.
    std::vector<std::string> pieces = std::move(engine->options_.token_pieces);
    pieces.resize(static_cast<size_t>(c.vocab_size));
    engine->json_mask_ = std::make_unique<const JsonTokenMask>(std::move(pieces), options.eog_token_ids);
    engine->options_.token_pieces.clear();  // the mask keeps them
  }
  const SpeculativeOptions& spec = options.speculative;
  if (spec.num_draft_tokens > 0) {
    if (spec.num_draft_tokens > 64 || spec.min_ngram < 1 || spec.max_ngram < spec.min_ngram || spec.max_decoding < 1 ||
        !(spec.draft_cost >= 0 && spec.draft_cost < 1)) {
      return absl::InvalidArgumentError(StrCat("speculative decoding: ", spec.num_draft_tokens, " draft tokens (1-64), n-grams ",
                                               spec.min_ngram, "-", spec.max_ngram, ", at most ", spec.max_decoding,
                                               " decoding sequences (>= 1), draft cost ", spec.draft_cost,
                                               " ([0, 1)) is out of range"));
    }
    engine->proposer_ = std::make_unique<const NgramProposer>(spec.min_ngram, spec.max_ngram);
  }
  GetLogger("engine")->info(
      "model {}; backend {}; weights {:.1f} MiB; KV cache {} blocks x {} tokens ({:.1f} MiB); "
      "token budget {}, max {} sequences, max model length {}",
      c.Summary(), engine->backend_->name(), engine->weight_bytes() / 1048576.0, num_blocks,
      options.block_size, num_blocks * layout.bytes_per_block() / 1048576.0, so.token_budget,
      so.max_num_seqs, engine->max_model_len_);
  return engine;
}

// One draw per sampled token at most: anything else is not a sampler position (and skipping
// billions of draws would stall the engine thread).
absl::Status Engine::ValidateRngDraws(int64_t draws) const {
  if (draws < 0 || draws > max_model_len_) {
    return absl::InvalidArgumentError(StrCat("rng_draws ", draws, " is outside [0, ", max_model_len_, "]"));
  }
  return absl::OkStatus();
}

absl::Status Engine::Validate(const GenerateRequest& request) const {
  const ModelConfig& c = model_->config();
  if (request.id.empty()) return absl::InvalidArgumentError("request id is empty");
  if (sequences_.contains(request.id) || held_kv_.contains(request.id)) {
    return absl::AlreadyExistsError(StrCat("request ", request.id, " already exists"));
  }
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= c.vocab_size) {
      return absl::InvalidArgumentError(StrCat("token id ", t, " is outside the vocabulary [0, ",
                                               c.vocab_size, ")"));
    }
  }
  TANDEM_RETURN_IF_ERROR(request.sampling.Validate(c.vocab_size));
  if (request.sampling.json() && json_mask_ == nullptr) {
    return absl::InvalidArgumentError("JSON output needs the vocabulary's token texts, which this engine was not given");
  }
  TANDEM_RETURN_IF_ERROR(ValidateRngDraws(request.rng_draws));
  if (static_cast<size_t>(request.sampling.output_in_prompt) >= request.prompt.size()) {
    return absl::InvalidArgumentError(StrCat("output_in_prompt ", request.sampling.output_in_prompt,
                                             " leaves no prompt of the ", request.prompt.size(), " tokens"));
  }
  const int64_t total = static_cast<int64_t>(request.prompt.size()) + request.sampling.max_tokens;
  if (total > max_model_len_) {
    return absl::InvalidArgumentError(StrCat("the prompt (", request.prompt.size(), " tokens) plus max_tokens (",
                                             request.sampling.max_tokens, ") exceeds the context length of ",
                                             max_model_len_, " tokens"));
  }
  const int64_t blocks_needed = (static_cast<int64_t>(request.prompt.size()) + 1 + options_.block_size - 1) /
                                options_.block_size;
  if (blocks_needed > blocks_->num_blocks()) {
    return absl::ResourceExhaustedError(StrCat("the prompt needs ", blocks_needed,
                                               " KV blocks but the cache has only ", blocks_->num_blocks()));
  }
  return absl::OkStatus();
}

namespace {

// json_schema: the compiled schema (null for the other formats).
absl::StatusOr<std::shared_ptr<const JsonSchema>> SchemaOf(const SamplingParams& p) {
  if (p.response_format != ResponseFormat::kJsonSchema) return nullptr;
  auto schema = CompileJsonSchema(p.json_schema);
  if (!schema.ok()) return absl::InvalidArgumentError(StrCat("json_schema: ", schema.status().message()));
  return schema;
}

void AttachSchema(Sequence& seq, std::shared_ptr<const JsonSchema> schema) {
  seq.schema = std::move(schema);
  seq.json = JsonRecognizer(seq.schema.get());
}

}  // namespace

absl::Status Engine::Add(GenerateRequest request) {
  TANDEM_RETURN_IF_ERROR(Validate(request));
  TANDEM_ASSIGN_OR_RETURN(auto schema, SchemaOf(request.sampling));
  const uint64_t seed = request.sampling.seed.value_or(std::random_device{}() * 0x9e3779b97f4a7c15ULL ^
                                                       std::random_device{}());
  auto seq = std::make_unique<Sequence>(request.id, std::move(request.prompt), std::move(request.sampling),
                                        request.priority, next_arrival_++, seed);
  seq->hold_kv = request.hold_kv;
  seq->report_progress = request.report_progress;
  seq->rng.Discard(request.rng_draws);
  AttachSchema(*seq, std::move(schema));
  scheduler_->Add(seq.get());
  sequences_.emplace(seq->id, std::move(seq));
  return absl::OkStatus();
}

bool Engine::Cancel(const std::string& id) {
  if (ReleaseHeldKv(id)) return true;
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return false;
  RequestOutput out;
  out.id = id;
  Finish(it->second.get(), FinishReason::kCancelled, &out);
  pending_outputs_.push_back(std::move(out));
  return true;
}

void Engine::Finish(Sequence* seq, FinishReason reason, RequestOutput* out) {
  seq->finish = reason;
  out->finish = reason;
  out->prompt_tokens = seq->prompt_len;
  out->generated_tokens = seq->num_generated();
  out->cached_prompt_tokens = seq->num_prefix_hit_tokens;
  ++(reason == FinishReason::kCancelled ? counters_.cancelled : counters_.finished);
  if (seq->hold_kv && reason != FinishReason::kCancelled) {
    std::vector<int32_t> blocks = scheduler_->RemoveKeepingBlocks(seq);
    reserved_blocks_ += static_cast<int64_t>(blocks.size());
    held_kv_[seq->id] = std::move(blocks);
  } else {
    scheduler_->Remove(seq);
  }
  sequences_.erase(seq->id);  // destroys seq
}

bool Engine::ShouldStop(const Sequence& seq, int32_t token) const {
  for (int32_t s : seq.sampling.stop_token_ids) {
    if (s == token) return true;
  }
  // A closed JSON object allows only end tokens: the answer is over even under ignore_eos.
  if (seq.sampling.json() && seq.json.Complete() && is_eog_[token]) return true;
  return !seq.sampling.ignore_eos && is_eog_[token];
}

void Engine::BuildBatch(const SchedulerOutput& plan) {
  const int bs = options_.block_size;
  batch_.Clear();
  prompt_rows_.clear();
  for (const ScheduledChunk& chunk : plan.chunks) {
    Sequence* seq = chunk.seq;
    ForwardSequence fs;
    fs.query_start = batch_.num_tokens();
    fs.query_len = chunk.num_tokens;
    fs.context_len = seq->num_computed + chunk.num_tokens;
    fs.block_table = seq->block_table;
    const int32_t known = static_cast<int32_t>(seq->tokens.size());
    for (int32_t j = 0; j < chunk.num_tokens; ++j) {
      const int32_t pos = seq->num_computed + j;
      batch_.tokens.push_back(pos < known ? seq->tokens[pos] : seq->draft[pos - known]);
      batch_.positions.push_back(pos);
      batch_.slot_mapping.push_back(seq->block_table[pos / bs] * bs + pos % bs);
    }
    // Prompt log-probabilities: the row at position p scores prompt token p + 1, in order.
    int32_t prompt_rows = 0;
    if (seq->sampling.prompt_logprobs >= 0) {
      for (int32_t j = 0, next = seq->prompt_logprobs_next; j < chunk.num_tokens && next < seq->prompt_len; ++j) {
        if (seq->num_computed + j + 1 != next) continue;
        batch_.logit_rows.push_back(fs.query_start + j);
        ++next;
        ++prompt_rows;
      }
    }
    prompt_rows_.push_back(prompt_rows);
    // The last known token's row, then one per draft token (each may be the next one's).
    if (chunk.samples) {
      for (int32_t j = known - 1 - seq->num_computed; j < chunk.num_tokens; ++j) batch_.logit_rows.push_back(fs.query_start + j);
    }
    batch_.sequences.push_back(std::move(fs));
  }
}

int32_t Engine::Sample(Sequence* seq, std::span<const float> row, RequestOutput* out) {
  const SamplingParams& p = seq->sampling;
  int32_t token = 0;
  // min_tokens: the output so far, counting what a resumed request generated before.
  const int64_t output = static_cast<int64_t>(seq->tokens.size()) - seq->prompt_len + p.output_in_prompt;
  const bool hold_stops = output < p.min_tokens;
  if (!p.modifies_logits() && !hold_stops) {
    token = SampleToken(row, p, seq->rng, sample_scratch_);
  } else {
    if (p.has_penalties()) seq->history.Update(seq->tokens, static_cast<size_t>(seq->prompt_len - p.output_in_prompt));
    modified_logits_.assign(row.begin(), row.end());
    ApplyLogitModifiers(modified_logits_, p, seq->history);
    if (hold_stops) {
      constexpr float kNever = -std::numeric_limits<float>::infinity();
      if (!p.ignore_eos) {
        for (int32_t id : options_.eog_token_ids) {
          if (id >= 0 && static_cast<size_t>(id) < modified_logits_.size()) modified_logits_[id] = kNever;
        }
      }
      for (int32_t id : p.stop_token_ids) modified_logits_[id] = kNever;
    }
    if (p.json()) ConstrainJson(seq, modified_logits_);
    token = SampleToken(modified_logits_, p, seq->rng, sample_scratch_);
  }
  // The model's own distribution: the raw row, before modifiers and temperature.
  if (p.logprobs >= 0) out->logprobs.push_back(ComputeLogprobs(row, token, p.logprobs, sample_scratch_));
  return token;
}

void Engine::ConstrainJson(Sequence* seq, std::span<float> logits) {
  const SamplingParams& p = seq->sampling;
  // The output starts where the prompt's resumed part (output_in_prompt) does.
  const size_t output_start = static_cast<size_t>(seq->prompt_len - p.output_in_prompt);
  if (seq->json_consumed < output_start) seq->json_consumed = output_start;
  for (; seq->json_consumed < seq->tokens.size(); ++seq->json_consumed) {
    // A token the grammar refuses (only a resumed prompt could hold one) is skipped.
    seq->json.FeedAll(json_mask_->piece(seq->tokens[seq->json_consumed]));
  }
  // Once the object is closed only end tokens are left; if min_tokens held those back, or the
  // vocabulary has no token for any byte the grammar allows, nothing is: then the answer ends.
  json_mask_->Apply(seq->json, logits, p.stop_token_ids);
  const bool any = std::any_of(logits.begin(), logits.end(), [](float x) { return x > -std::numeric_limits<float>::infinity(); });
  if (any) return;
  for (int32_t id : options_.eog_token_ids) {
    if (id >= 0 && static_cast<size_t>(id) < logits.size()) logits[id] = 0.0f;
  }
}

void Engine::SampleChunk(Sequence* seq, const float* rows, RequestOutput* out) {
  const int vocab = model_->config().vocab_size;
  const int32_t drafted = static_cast<int32_t>(seq->draft.size());
  seq->num_computed = static_cast<int32_t>(seq->tokens.size());  // the known tokens' KV is in
  FinishReason finish = FinishReason::kNone;
  int32_t kept = 0;
  for (int32_t j = 0; j <= drafted && finish == FinishReason::kNone; ++j) {
    const int32_t token = Sample(seq, std::span<const float>(rows + static_cast<size_t>(j) * vocab, vocab), out);
    seq->tokens.push_back(token);
    out->new_tokens.push_back(token);
    ++counters_.generated_tokens;
    if (ShouldStop(*seq, token)) {
      finish = FinishReason::kStop;
    } else if (seq->num_generated() >= seq->sampling.max_tokens ||
               static_cast<int>(seq->tokens.size()) >= max_model_len_) {
      finish = FinishReason::kLength;
    }
    // A draft token the sampler picked: its KV (computed for it) is right and the next row is
    // the distribution after it. Any other token ends the run.
    if (j == drafted || token != seq->draft[j]) break;
    ++seq->num_computed;
    ++kept;
  }
  counters_.draft_tokens += drafted;
  counters_.accepted_draft_tokens += kept;
  // Decode tokens count what decode iterations produced: draft tokens run but not kept do not
  // (they are in draft_tokens), so that tokens per busy second stays an output rate.
  counters_.decode_tokens -= 1 + drafted - static_cast<int64_t>(out->new_tokens.size());
  if (drafted > 0) seq->drafts.Verified(drafted, kept);
  seq->draft.clear();
  scheduler_->OnComputed(seq);
  out->id = seq->id;
  out->prompt_tokens = seq->prompt_len;
  out->generated_tokens = seq->num_generated();
  out->cached_prompt_tokens = seq->num_prefix_hit_tokens;
  out->num_computed = seq->num_computed;
  out->rng_draws = static_cast<int32_t>(seq->rng.draws());
  out->prompt_logprobs = std::move(seq->prompt_logprobs);
  seq->prompt_logprobs.clear();
  if (finish != FinishReason::kNone) Finish(seq, finish, out);
}

void Engine::ProposeDrafts() {
  if (proposer_ == nullptr) return;
  const std::vector<Sequence*>& running = scheduler_->running();
  const auto decoding = std::count_if(running.begin(), running.end(), [](const Sequence* s) { return s->num_uncomputed() == 1; });
  for (Sequence* seq : running) {
    seq->draft.clear();
    if (decoding > options_.speculative.max_decoding || seq->num_uncomputed() != 1 || !seq->sampling.speculative) continue;
    // Every token of a verified draft plus the one after it must fit max_tokens and the context.
    const int64_t room = std::min<int64_t>(seq->sampling.max_tokens - seq->num_generated(),
                                           max_model_len_ - static_cast<int64_t>(seq->tokens.size())) - 1;
    const int cap = static_cast<int>(std::min<int64_t>(options_.speculative.num_draft_tokens, room));
    const int len = DraftLength(seq->drafts, cap, options_.speculative.draft_cost);
    if (len > 0) proposer_->Propose(seq->tokens, len, &seq->draft);
    if (seq->draft.empty()) seq->drafts.Idle();
  }
}

absl::StatusOr<std::vector<RequestOutput>> Engine::Step() {
  const auto start = std::chrono::steady_clock::now();
  std::vector<RequestOutput> outputs = std::move(pending_outputs_);
  pending_outputs_.clear();
  ProposeDrafts();
  SchedulerOutput plan = scheduler_->Schedule();
  last_step_ = {};
  last_step_.num_preempted = static_cast<int32_t>(plan.preempted.size());
  counters_.preemptions += static_cast<int64_t>(plan.preempted.size());
  if (plan.chunks.empty()) return outputs;
  ++counters_.steps;
  last_step_.shape = DescribeIteration(plan);
  counters_.prefill_tokens += plan.num_prefill_tokens;
  counters_.decode_tokens += plan.num_decode_tokens;
  for (const ScheduledChunk& chunk : plan.chunks) {
    if (chunk.seq->num_computed == chunk.seq->num_prefix_hit_tokens && chunk.seq->num_prefix_hit_tokens > 0 &&
        chunk.seq->num_generated() == 0) {
      counters_.prefix_hit_tokens += chunk.seq->num_prefix_hit_tokens;
    }
  }

  BuildBatch(plan);
  const int vocab = model_->config().vocab_size;
  logits_.resize(batch_.logit_rows.size() * static_cast<size_t>(vocab));
  TANDEM_RETURN_IF_ERROR(model_->Forward(batch_, *cache_, logits_.data()));

  size_t logit_row = 0;
  for (size_t c = 0; c < plan.chunks.size(); ++c) {
    const ScheduledChunk& chunk = plan.chunks[c];
    Sequence* seq = chunk.seq;
    for (int32_t r = 0; r < prompt_rows_[c]; ++r) {
      std::span<const float> row(logits_.data() + logit_row++ * static_cast<size_t>(vocab), vocab);
      seq->prompt_logprobs.push_back(ComputeLogprobs(row, seq->tokens[seq->prompt_logprobs_next++],
                                                     seq->sampling.prompt_logprobs, sample_scratch_));
    }
    if (!chunk.samples) {
      seq->num_computed += chunk.num_tokens;
      scheduler_->OnComputed(seq);
      if (seq->report_progress) {
        RequestOutput progress;
        progress.id = seq->id;
        progress.prompt_tokens = seq->prompt_len;
        progress.num_computed = seq->num_computed;
        outputs.push_back(std::move(progress));
      }
      continue;
    }
    RequestOutput out;
    const size_t rows = 1 + seq->draft.size();
    SampleChunk(seq, logits_.data() + logit_row * static_cast<size_t>(vocab), &out);  // may destroy seq
    logit_row += rows;
    outputs.push_back(std::move(out));
  }
  last_step_.num_tokens = plan.num_tokens;
  last_step_.num_decode_tokens = plan.num_decode_tokens;
  last_step_.num_prefill_tokens = plan.num_prefill_tokens;
  last_step_.num_sequences = static_cast<int32_t>(plan.chunks.size());
  last_step_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outputs;
}

absl::Status Engine::AddPrefilled(GenerateRequest request, std::vector<int32_t> blocks, int32_t first_token,
                                  int32_t rng_draws) {
  TANDEM_RETURN_IF_ERROR(Validate(request));
  const int bs = options_.block_size;
  const size_t prompt_blocks = (request.prompt.size() + bs - 1) / bs;
  if (blocks.size() < prompt_blocks) {
    return absl::InvalidArgumentError(StrCat("the prompt needs ", prompt_blocks, " KV blocks but ", blocks.size(),
                                             " were given"));
  }
  if (first_token < 0 || first_token >= model_->config().vocab_size) {
    return absl::InvalidArgumentError(StrCat("first token ", first_token, " is outside the vocabulary"));
  }
  if (request.sampling.max_tokens <= 1) {
    return absl::InvalidArgumentError("max_tokens is reached by the first token: nothing to decode");
  }
  TANDEM_RETURN_IF_ERROR(ValidateRngDraws(rng_draws));
  TANDEM_ASSIGN_OR_RETURN(auto schema, SchemaOf(request.sampling));
  for (int32_t b : blocks) {
    if (b < 0 || b >= blocks_->num_blocks() || blocks_->refcount(b) != 1) {
      return absl::InvalidArgumentError(StrCat("block ", b, " is not an allocated block of this engine"));
    }
  }
  const uint64_t seed = request.sampling.seed.value_or(std::random_device{}());
  const int32_t prompt_len = static_cast<int32_t>(request.prompt.size());
  auto seq = std::make_unique<Sequence>(request.id, std::move(request.prompt), std::move(request.sampling),
                                        request.priority, next_arrival_++, seed);
  seq->tokens.push_back(first_token);
  seq->num_computed = prompt_len;
  // The prompt was computed (and, if asked, scored) elsewhere: a recompute after a preemption
  // here scores nothing again and may take prefix-cache hits.
  seq->prompt_logprobs_next = seq->prompt_len;
  AttachSchema(*seq, std::move(schema));
  // Blocks beyond the prompt's are not needed yet: give them back.
  while (blocks.size() > prompt_blocks) {
    blocks_->Release(blocks.back());
    blocks.pop_back();
    --reserved_blocks_;
  }
  reserved_blocks_ -= static_cast<int64_t>(blocks.size());
  seq->block_table = std::move(blocks);
  seq->rng.Discard(rng_draws);
  seq->report_progress = request.report_progress;
  scheduler_->AddRunning(seq.get());
  scheduler_->OnComputed(seq.get());  // full prompt blocks join the prefix cache
  ++counters_.generated_tokens;
  sequences_.emplace(seq->id, std::move(seq));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Engine::AllocateKvBlocks(int32_t num_tokens, int64_t headroom_blocks) {
  if (num_tokens <= 0) return absl::InvalidArgumentError("a KV reservation needs at least one token");
  const int64_t needed = (int64_t{num_tokens} + options_.block_size - 1) / options_.block_size;
  if (blocks_->num_available() < needed + headroom_blocks) {
    return absl::ResourceExhaustedError(StrCat("not enough free KV blocks: ", needed, " needed (+", headroom_blocks,
                                               " headroom), ", blocks_->num_available(), " available"));
  }
  std::vector<int32_t> out;
  out.reserve(needed);
  for (int64_t i = 0; i < needed; ++i) out.push_back(*blocks_->Allocate());
  reserved_blocks_ += needed;
  return out;
}

void Engine::FreeKvBlocks(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) blocks_->Release(b);
  reserved_blocks_ -= static_cast<int64_t>(blocks.size());
}

std::vector<int32_t> Engine::BlockTable(const std::string& id) const {
  if (auto it = sequences_.find(id); it != sequences_.end()) return it->second->block_table;
  if (auto it = held_kv_.find(id); it != held_kv_.end()) return it->second;
  return {};
}

bool Engine::ReleaseHeldKv(const std::string& id) {
  auto it = held_kv_.find(id);
  if (it == held_kv_.end()) return false;
  FreeKvBlocks(it->second);
  held_kv_.erase(it);
  return true;
}

EngineLoad Engine::Load() const {
  EngineLoad load;
  for (const Sequence* s : scheduler_->waiting()) load.queued_prefill_tokens += s->num_uncomputed();
  for (const Sequence* s : scheduler_->running()) {
    if (s->num_uncomputed() > 1) load.queued_prefill_tokens += s->num_uncomputed();
  }
  load.running = static_cast<int32_t>(scheduler_->num_running());
  load.waiting = static_cast<int32_t>(scheduler_->num_waiting());
  load.free_blocks = blocks_->num_available();
  load.reserved_blocks = reserved_blocks_;
  load.total_blocks = blocks_->num_blocks();
  return load;
}

absl::StatusOr<std::vector<float>> Engine::ScoreTokens(const std::vector<int32_t>& tokens,
                                                       int chunk_size, int first_row) {
  const ModelConfig& c = model_->config();
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to score");
  if (first_row < 0 || first_row >= static_cast<int>(tokens.size())) {
    return absl::InvalidArgumentError(StrCat("first row ", first_row, " is outside the ", tokens.size(), " tokens"));
  }
  if (chunk_size < 1) return absl::InvalidArgumentError("the chunk size must be at least 1");
  if (static_cast<int>(tokens.size()) > max_model_len_) {
    return absl::InvalidArgumentError(StrCat(tokens.size(), " tokens exceed the context length of ", max_model_len_));
  }
  for (int32_t t : tokens) {
    if (t < 0 || t >= c.vocab_size) return absl::InvalidArgumentError(StrCat("token id ", t, " is out of range"));
  }
  const int bs = options_.block_size;
  std::vector<int32_t> table;
  auto release = [&] {
    for (int32_t b : table) blocks_->Release(b);
  };
  for (size_t i = 0; i < (tokens.size() + bs - 1) / bs; ++i) {
    auto b = blocks_->Allocate();
    if (!b) {
      release();
      return absl::ResourceExhaustedError("not enough free KV blocks to score the tokens");
    }
    table.push_back(*b);
  }
  std::vector<float> all((tokens.size() - first_row) * static_cast<size_t>(c.vocab_size));
  ForwardBatch batch;
  for (size_t start = 0; start < tokens.size(); start += chunk_size) {
    const int32_t n = static_cast<int32_t>(std::min<size_t>(chunk_size, tokens.size() - start));
    batch.Clear();
    ForwardSequence fs;
    fs.query_start = 0;
    fs.query_len = n;
    fs.context_len = static_cast<int32_t>(start) + n;
    fs.block_table = table;
    for (int32_t j = 0; j < n; ++j) {
      const int32_t pos = static_cast<int32_t>(start) + j;
      batch.tokens.push_back(tokens[pos]);
      batch.positions.push_back(pos);
      batch.slot_mapping.push_back(table[pos / bs] * bs + pos % bs);
      if (pos >= first_row) batch.logit_rows.push_back(j);
    }
    batch.sequences.push_back(std::move(fs));
    const size_t out_row = std::max<size_t>(start, first_row) - first_row;  // the first row this chunk writes
    absl::Status s = model_->Forward(batch, *cache_, all.data() + out_row * c.vocab_size);
    if (!s.ok()) {
      release();
      return s;
    }
  }
  release();
  return all;
}

}  // namespace tandem
