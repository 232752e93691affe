// Signals: one reading of the cluster's traffic, latency, pressure and capacity, as the
// controller's sources produce it (direct scrape of /metrics, or PromQL against Prometheus).
// Rates and means cover the window since the previous reading (direct scrape) or the PromQL
// range (Prometheus); a value without data in its window is NaN (no requests → no TTFT).
#pragma once

#include <cmath>
#include <limits>
#include <string>

namespace tandem::controller {

inline constexpr double kNoData = std::numeric_limits<double>::quiet_NaN();
inline bool HasData(double v) { return !std::isnan(v); }

enum class Role { kPrefill, kDecode };
inline const char* RoleName(Role r) { return r == Role::kPrefill ? "prefill" : "decode"; }

struct InstanceCounts {
  int prefill = 0;
  int decode = 0;
  friend bool operator==(const InstanceCounts&, const InstanceCounts&) = default;
};

struct Signals {
  double time_s = 0;     // when the reading was taken (seconds, monotonic within a source)
  double window_s = 0;   // the span the rates and means cover

  // Traffic, at the router.
  double arrival_rate = kNoData;         // requests/s arriving
  double prompt_tokens_mean = kNoData;   // per request arrived
  double output_tokens_mean = kNoData;   // generated tokens per request finished
  // The length distributions of the window: quantiles of the router's prompt and generated
  // token histograms (interpolated inside their power-of-two buckets, as histogram_quantile
  // does). What the planner's simulation (--plan-by simulation) draws request lengths from.
  double prompt_tokens_p50 = kNoData;
  double prompt_tokens_p90 = kNoData;
  double prompt_tokens_p99 = kNoData;
  double output_tokens_p50 = kNoData;
  double output_tokens_p90 = kNoData;
  double output_tokens_p99 = kNoData;
  double prompt_token_rate = kNoData;    // prompt tokens/s arriving (arrival_rate × prompt mean)
  // Share of the prompt tokens the workers served from a prefix cache instead of computing
  // them, 0..1: hit tokens / (hit tokens + prefill tokens computed), over all workers.
  double prompt_cached_fraction = kNoData;

  // Latency, at the router (seconds).
  double ttft_p50 = kNoData;
  double ttft_p90 = kNoData;
  double ttft_p99 = kNoData;
  double itl_p50 = kNoData;
  double itl_p99 = kNoData;
  double tpot_p90 = kNoData;             // per request: (last token − first) / (tokens − 1)
  double tpot_p99 = kNoData;
  double queue_p99 = kNoData;            // router wait for a decode worker with KV room

  // Pressure.
  double inflight_requests = kNoData;     // router
  double queued_prefill_tokens = kNoData; // sum over workers doing prefill
  double kv_utilization = kNoData;        // decode workers: (used + reserved) / total blocks, 0..1

  // Measured capacity, from the workers' own iteration time (per instance, while busy).
  double prefill_tokens_per_busy_second = kNoData;  // prefill workers: prompt tokens / prefill iteration s
  double decode_tokens_per_busy_second = kNoData;   // decode workers: tokens / decode iteration s
  double prefill_busy_fraction = kNoData;  // mean over prefill workers of busy s / wall s, 0..1
  double decode_busy_fraction = kNoData;
  double decode_iteration_mean_s = kNoData;  // mean decode iteration time (≈ ITL a decode adds)

  // Instances the router sees ready, by role (a mixed worker counts as decode).
  InstanceCounts ready;
};

// One measurement field of Signals, by its name in the decision log, the metrics and PromQL.
struct SignalField {
  const char* name;
  double Signals::*member;
};

// Every double measurement field of Signals, in declaration order (time_s and window_s, which
// are not measurements, are not listed).
inline constexpr SignalField kSignalFields[] = {
    {"arrival_rate", &Signals::arrival_rate},
    {"prompt_tokens_mean", &Signals::prompt_tokens_mean},
    {"output_tokens_mean", &Signals::output_tokens_mean},
    {"prompt_tokens_p50", &Signals::prompt_tokens_p50},
    {"prompt_tokens_p90", &Signals::prompt_tokens_p90},
    {"prompt_tokens_p99", &Signals::prompt_tokens_p99},
    {"output_tokens_p50", &Signals::output_tokens_p50},
    {"output_tokens_p90", &Signals::output_tokens_p90},
    {"output_tokens_p99", &Signals::output_tokens_p99},
    {"prompt_token_rate", &Signals::prompt_token_rate},
    {"prompt_cached_fraction", &Signals::prompt_cached_fraction},
    {"ttft_p50", &Signals::ttft_p50},
    {"ttft_p90", &Signals::ttft_p90},
    {"ttft_p99", &Signals::ttft_p99},
    {"itl_p50", &Signals::itl_p50},
    {"itl_p99", &Signals::itl_p99},
    {"tpot_p90", &Signals::tpot_p90},
    {"tpot_p99", &Signals::tpot_p99},
    {"queue_p99", &Signals::queue_p99},
    {"inflight_requests", &Signals::inflight_requests},
    {"queued_prefill_tokens", &Signals::queued_prefill_tokens},
    {"kv_utilization", &Signals::kv_utilization},
    {"prefill_tokens_per_busy_second", &Signals::prefill_tokens_per_busy_second},
    {"decode_tokens_per_busy_second", &Signals::decode_tokens_per_busy_second},
    {"prefill_busy_fraction", &Signals::prefill_busy_fraction},
    {"decode_busy_fraction", &Signals::decode_busy_fraction},
    {"decode_iteration_mean_s", &Signals::decode_iteration_mean_s},
};

}  // namespace tandem::controller
