// Where a request goes (DESIGN.md "Request path", docs/request-path.md): pure functions over
// plain values. No locks, no RPCs, no clock: the registry takes a snapshot of its workers under
// its lock and asks these functions; tests call them directly.
//
// Block arithmetic: a prompt of n tokens needs ceil(n / block_size) KV blocks on a worker, with
// the block size that worker ADVERTISES (WorkerInfo.kv_endpoint.layout.block_size). Workers of
// one cluster may differ (e.g. one started with --block-size 32); free KV is compared in tokens
// (free blocks x block size) so that a worker with few large blocks is not mistaken for a full one.
//
// Decode placement: among decode-capable workers, those with room for the prompt's blocks come
// first, then the most free KV tokens; if none seems to have room, still the one with the most
// (the router's view may be stale: the worker has the last word and answers RESOURCE_EXHAUSTED).
//
// Prefill placement (prefix affinity, after SGLang's cache-aware router and Dynamo's KV router):
// the router keeps per prefill worker an approximate view of its prefix cache, the chained
// hashes of the full blocks of the prompts it sent there (PrefixIndex). A request's chain is
// matched against each candidate, which gives the prompt tokens that candidate probably has
// cached. Among the candidates whose queued prefill tokens are within `slack` of the least
// loaded, the one with the least work ahead of this request's first token wins:
//     cost = queued tokens + prompt tokens not cached there.
// So a longer match wins when it saves more than the extra queue it costs (a multi-turn
// conversation sticks to the worker that holds its history), equal matches go to the least
// loaded, and a worker beyond the slack is never chosen whatever it holds. Why not "longest
// match first, then load": every chat request begins with the same chat template and system
// prompt, so whichever worker got the first request would hold the longest match for all the
// others and, under a load below the slack, receive every one of them while the others idle;
// with the cost rule a shared 64-token prefix is worth 64 queued tokens, not the whole worker.
// Ties (equal cost) are broken by rendezvous hashing of the whole prompt with the worker id:
// deterministic, and different prompts spread evenly.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tandem/v1/common.pb.h"
#include "tandem/v1/registry.pb.h"

namespace tandem::router::placement {

// The block size assumed for a worker that advertises none (the engine's default).
inline constexpr int32_t kAssumedBlockSize = 16;

// The KV block size worker `info` advertises, or kAssumedBlockSize.
int32_t BlockSizeOf(const v1::WorkerInfo& info);
// KV blocks holding `tokens` tokens at `block_size` tokens per block.
int64_t BlocksFor(int64_t tokens, int32_t block_size);

// Conditional disaggregation: the prompt is prefilled on the decode (or mixed) worker that will
// generate, with no KV hand-off, when no prefill worker is available or the prompt is shorter
// than the threshold (0: never by length).
bool PrefillLocally(int64_t prompt_tokens, int32_t local_prefill_threshold, int prefill_workers);

// Conditional disaggregation by cost (the router's --local-prefill-ttft-slo): the prompt is
// prefilled on the decode worker when going through a prefill worker is predicted to miss the
// TTFT SLO and prefilling locally is predicted to meet it. A prediction is the prefill work
// ahead of the request's first token, this prompt's included, over the measured prefill rate.
// The same rate is assumed on both sides (workers of one cluster run on the same hardware);
// when both sides would miss, the prompt stays disaggregated (a local prefill would slow the
// decode worker's other streams for a first token that is late anyway).
struct PrefillCostInputs {
  double ttft_slo_s = 0;             // <= 0: the rule is off
  double waited_s = 0;               // time the request has spent already
  double tokens_per_s = 0;           // measured prefill rate; <= 0: not known yet (rule off)
  int64_t disaggregated_tokens = -1;  // ahead of the first token on the best prefill worker; < 0: none
  int64_t local_tokens = -1;          // ahead of it on the least-queued decode-capable worker; < 0: none
};
bool PrefillLocallyByCost(const PrefillCostInputs& in);
// The measured prefill rate after one more timed prefill (`tokens` of work in `seconds`): a
// moving average (the newest sample's weight 0.25, so a few prefills follow a change); `current`
// 0 means none yet. Samples without time are ignored.
double NextPrefillRate(double current, int64_t tokens, double seconds);

// Whether a prefill worker with KV layout `prefill` can write into a lease on a decode worker
// with layout `decode` (the workers refuse a hand-off whose layouts differ in any field).
bool KvLayoutsMatch(const v1::KvLayout& prefill, const v1::KvLayout& decode);

struct DecodeCandidate {
  std::string_view worker_id;
  int32_t block_size = kAssumedBlockSize;
  int64_t free_blocks = 0;            // the router's estimate
  int64_t queued_prefill_tokens = 0;  // prompt tokens waiting or running there (PickLocal only)
};
// The index in `candidates` of the decode worker for a prompt of `prompt_tokens`, or -1 if
// there is none. Equal candidates: the smaller worker id.
int PickDecode(std::span<const DecodeCandidate> candidates, int64_t prompt_tokens);
// The same for a prompt the decode worker will also prefill (local prefill): those with room
// first, then the least prefill queued ahead of this prompt's first token, then the most free
// KV, then the smaller id. Free KV alone would send every local prompt of a burst to the same
// worker (its prefill queue is not yet in its free blocks) while another mixed worker idles.
int PickLocal(std::span<const DecodeCandidate> candidates, int64_t prompt_tokens);

// The chained hashes of the prompt's full blocks at `block_size`: element i identifies tokens
// [0, (i + 1) * block_size), so two prompts share a hash exactly when they share that prefix
// (up to 64-bit collisions, harmless here: a wrong guess costs a cache miss).
std::vector<uint64_t> BlockChain(std::span<const int32_t> prompt, int32_t block_size);
// A hash of the whole prompt (partial last block included), for tie-breaking.
uint64_t PromptKey(std::span<const int32_t> prompt);

struct PrefillCandidate {
  std::string_view worker_id;
  int64_t queued_tokens = 0;  // prefill tokens waiting or running there
  int64_t cached_tokens = 0;  // prompt tokens its prefix cache probably holds
};
// The index in `candidates` of the prefill worker (rule above), or -1 if there is none.
int PickPrefill(std::span<const PrefillCandidate> candidates, int64_t prompt_tokens, uint64_t prompt_key,
                int64_t slack_tokens);

}  // namespace tandem::router::placement
