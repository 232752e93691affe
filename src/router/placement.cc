#include "router/placement.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>

#include "common/sha256.h"

namespace tandem::router::placement {
namespace {

// splitmix64's finaliser: a cheap 64-bit mix whose every output bit depends on every input bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

constexpr uint64_t kChainSeed = 0x74616e64656d2d31ULL;  // "tandem-1"

uint64_t Extend(uint64_t h, int32_t token) { return Mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(token)) + 1)); }

// Rendezvous (highest random weight) hash of (key, worker): a stable preference order of the
// workers per key, which moves only the keys of a worker that comes or goes.
uint64_t Rendezvous(uint64_t key, std::string_view worker_id) {
  Sha256 h;
  h.Update(&key, sizeof key);
  h.Update(worker_id);
  const Sha256Digest d = h.Finish();
  uint64_t v;
  std::memcpy(&v, d.data(), sizeof v);
  return v;
}

}  // namespace

int32_t BlockSizeOf(const v1::WorkerInfo& info) {
  const int32_t advertised = info.kv_endpoint().layout().block_size();
  return advertised > 0 ? advertised : kAssumedBlockSize;
}

int64_t BlocksFor(int64_t tokens, int32_t block_size) {
  if (block_size <= 0) block_size = kAssumedBlockSize;
  return (std::max<int64_t>(tokens, 0) + block_size - 1) / block_size;
}

bool PrefillLocally(int64_t prompt_tokens, int32_t local_prefill_threshold, int prefill_workers) {
  return prefill_workers <= 0 || prompt_tokens < local_prefill_threshold;
}

bool PrefillLocallyByCost(const PrefillCostInputs& in) {
  if (!(in.ttft_slo_s > 0) || !(in.tokens_per_s > 0) || in.disaggregated_tokens < 0 || in.local_tokens < 0) {
    return false;
  }
  const double left = in.ttft_slo_s - in.waited_s;
  const double disaggregated = static_cast<double>(in.disaggregated_tokens) / in.tokens_per_s;
  const double local = static_cast<double>(in.local_tokens) / in.tokens_per_s;
  return disaggregated > left && local <= left;
}

double NextPrefillRate(double current, int64_t tokens, double seconds) {
  if (tokens <= 0 || !(seconds > 0)) return current;
  constexpr double kWeight = 0.25;
  const double rate = static_cast<double>(tokens) / seconds;
  return current > 0 ? (1 - kWeight) * current + kWeight * rate : rate;
}

bool KvLayoutsMatch(const v1::KvLayout& prefill, const v1::KvLayout& decode) {
  return prefill.model_id() == decode.model_id() && prefill.num_layers() == decode.num_layers() &&
         prefill.num_kv_heads() == decode.num_kv_heads() && prefill.head_dim() == decode.head_dim() &&
         prefill.block_size() == decode.block_size() && prefill.dtype() == decode.dtype() &&
         prefill.block_format() == decode.block_format();
}

int PickDecode(std::span<const DecodeCandidate> candidates, int64_t prompt_tokens) {
  int best = -1;
  bool best_fits = false;
  int64_t best_free_tokens = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const DecodeCandidate& c = candidates[i];
    const bool fits = c.free_blocks >= BlocksFor(prompt_tokens, c.block_size);
    const int64_t free_tokens = c.free_blocks * c.block_size;
    bool better = best < 0 || (fits && !best_fits);
    if (!better && fits == best_fits) {
      better = free_tokens > best_free_tokens ||
               (free_tokens == best_free_tokens && c.worker_id < candidates[best].worker_id);
    }
    if (better) {
      best = static_cast<int>(i);
      best_fits = fits;
      best_free_tokens = free_tokens;
    }
  }
  return best;
}

int PickLocal(std::span<const DecodeCandidate> candidates, int64_t prompt_tokens) {
  int best = -1;
  const auto key = [prompt_tokens](const DecodeCandidate& c) {
    const bool fits = c.free_blocks >= BlocksFor(prompt_tokens, c.block_size);
    return std::make_tuple(!fits, c.queued_prefill_tokens, -c.free_blocks * c.block_size, c.worker_id);
  };
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (best < 0 || key(candidates[i]) < key(candidates[best])) best = static_cast<int>(i);
  }
  return best;
}

std::vector<uint64_t> BlockChain(std::span<const int32_t> prompt, int32_t block_size) {
  std::vector<uint64_t> chain;
  if (block_size <= 0) return chain;
  chain.reserve(prompt.size() / block_size);
  uint64_t h = Mix(kChainSeed ^ static_cast<uint64_t>(block_size));
  for (size_t i = 0; i < prompt.size(); ++i) {
    h = Extend(h, prompt[i]);
    if ((i + 1) % static_cast<size_t>(block_size) == 0) chain.push_back(h);
  }
  return chain;
}

uint64_t PromptKey(std::span<const int32_t> prompt) {
  uint64_t h = kChainSeed;
  for (int32_t t : prompt) h = Extend(h, t);
  return Extend(h, static_cast<int32_t>(prompt.size()));
}

int PickPrefill(std::span<const PrefillCandidate> candidates, int64_t prompt_tokens, uint64_t prompt_key,
                int64_t slack_tokens) {
  int64_t least = std::numeric_limits<int64_t>::max();
  for (const PrefillCandidate& c : candidates) least = std::min(least, c.queued_tokens);
  int best = -1;
  int64_t best_cost = 0;
  uint64_t best_rank = 0;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const PrefillCandidate& c = candidates[i];
    if (c.queued_tokens > least + slack_tokens) continue;
    const int64_t cost = c.queued_tokens + std::max<int64_t>(0, prompt_tokens - c.cached_tokens);
    const uint64_t rank = Rendezvous(prompt_key, c.worker_id);
    if (best < 0 || cost < best_cost || (cost == best_cost && rank > best_rank)) {
      best = static_cast<int>(i);
      best_cost = cost;
      best_rank = rank;
    }
  }
  return best;
}

}  // namespace tandem::router::placement
