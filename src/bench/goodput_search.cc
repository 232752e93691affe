#include "bench/goodput_search.h"

#include <cmath>
#include <numeric>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::bench {

absl::Status ValidateGoodputSearch(const GoodputSearchOptions& o) {
  if (!(o.attainment > 0 && o.attainment <= 1)) {
    return absl::InvalidArgumentError(StrCat("--attainment must be in (0, 1], not ", o.attainment));
  }
  if (!(o.rate_min > 0) || !(o.rate_max > o.rate_min) || !std::isfinite(o.rate_max)) {
    return absl::InvalidArgumentError(
        StrCat("need 0 < --rate-min < --rate-max (finite), not ", o.rate_min, " and ", o.rate_max));
  }
  if (o.iterations < 0) return absl::InvalidArgumentError("--search-iters must be >= 0");
  if (o.repeats < 1) return absl::InvalidArgumentError("--repeats must be >= 1");
  return absl::OkStatus();
}

absl::StatusOr<GoodputSearchResult> FindMaxRate(const GoodputSearchOptions& options, const AttainmentProbe& probe,
                                                const std::function<void(const GoodputProbe&)>& on_probe) {
  TANDEM_RETURN_IF_ERROR(ValidateGoodputSearch(options));
  GoodputSearchResult result;
  auto run = [&](double rate) -> absl::StatusOr<bool> {
    GoodputProbe p;
    p.rate = rate;
    for (int r = 0; r < options.repeats; ++r) {
      TANDEM_ASSIGN_OR_RETURN(double a, probe(rate, r));
      p.attainments.push_back(a);
    }
    p.mean_attainment = std::accumulate(p.attainments.begin(), p.attainments.end(), 0.0) / options.repeats;
    p.passed = p.mean_attainment >= options.attainment;
    result.probes.push_back(p);
    if (on_probe) on_probe(p);
    return p.passed;
  };
  TANDEM_ASSIGN_OR_RETURN(bool max_passes, run(options.rate_max));
  if (max_passes) {
    result.max_rate = options.rate_max;
    result.hit_rate_max = true;
    return result;
  }
  TANDEM_ASSIGN_OR_RETURN(bool min_passes, run(options.rate_min));
  if (!min_passes) return result;
  double lo = options.rate_min, hi = options.rate_max;  // lo passes, hi fails
  for (int i = 0; i < options.iterations; ++i) {
    const double mid = (lo + hi) / 2;
    TANDEM_ASSIGN_OR_RETURN(bool passes, run(mid));
    (passes ? lo : hi) = mid;
  }
  result.max_rate = lo;
  return result;
}

}  // namespace tandem::bench
