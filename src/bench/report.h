// The run's report: the table printed on the terminal (laid out as vLLM's `bench serve`
// prints it, so the numbers can be compared side by side) and the JSON written to
// --result-file (schema in docs/bench.md).
//
// Pure functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bench/goodput_search.h"
#include "bench/metrics.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {

// The table: counts, duration, throughputs, mean/median/P90/P99 of TTFT, TPOT, ITL and E2EL,
// goodput and attainment when an SLO was given, failures by kind (HTTP statuses by code).
std::string FormatSummaryTable(const Summary& summary, const std::string& title = "Serving Benchmark Result");

// {"mean_ms", "median_ms", "p90_ms", "p99_ms", "std_ms", "max_ms", "count"}.
nlohmann::json DistributionJson(const Distribution& d);
// Every field of the summary (see docs/bench.md).
nlohmann::json SummaryJson(const Summary& summary);
// One request: times in milliseconds, its ITLs, failure kind and whether it met the SLO.
nlohmann::json RecordJson(const RequestRecord& record, const std::optional<SloSpec>& slo);
// The search: options, every probe (rate, attainment per repeat, mean, passed), the result.
nlohmann::json SearchJson(const GoodputSearchOptions& options, const GoodputSearchResult& result);

// One line per probe, for the terminal.
std::string FormatProbe(const GoodputProbe& probe, double target);
// The search's conclusion, for the terminal.
std::string FormatSearchResult(const GoodputSearchOptions& options, const GoodputSearchResult& result);

}  // namespace tandem::bench
