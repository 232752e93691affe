#include "bench/workload.h"

#include <algorithm>
#include <cmath>

#include "bench/text_util.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::bench {
namespace {

using Kind = LengthDistribution::Kind;

LengthDistribution Fixed(int n) {
  LengthDistribution d;
  d.kind = Kind::kFixed;
  d.value = n;
  return d;
}

LengthDistribution Uniform(int lo, int hi) {
  LengthDistribution d;
  d.kind = Kind::kUniform;
  d.min = lo;
  d.max = hi;
  return d;
}

LengthDistribution LogNormal(double median, double sigma, int lo, int hi) {
  LengthDistribution d;
  d.kind = Kind::kLogNormal;
  d.median = median;
  d.sigma = sigma;
  d.min = lo;
  d.max = hi;
  return d;
}

// The preset's distributions before any key is applied.
absl::StatusOr<WorkloadSpec> Preset(std::string_view name, const WorkloadDefaults& d) {
  WorkloadSpec w;
  w.name = std::string(name);
  if (name == "fixed") {
    w.input = Fixed(d.input_len);
    w.output = Fixed(d.output_len);
  } else if (name == "uniform") {
    w.input = Uniform(std::max(1, d.input_len / 2), std::max(1, d.input_len * 3 / 2));
    w.output = Uniform(std::max(1, d.output_len / 2), std::max(1, d.output_len * 3 / 2));
  } else if (name == "chat") {
    w.input = LogNormal(160, 0.9, 8, 2048);
    w.output = LogNormal(160, 0.7, 8, 1024);
  } else if (name == "summarize") {
    w.input = LogNormal(1536, 0.5, 256, 6144);
    w.output = LogNormal(96, 0.5, 16, 384);
  } else if (name == "shared-prefix") {
    w.num_prefixes = 8;
    w.prefix_tokens = 512;
    w.input = Fixed(64);
    w.output = Fixed(128);
  } else {
    return absl::InvalidArgumentError(
        StrCat("unknown workload '", name, "' (presets: fixed, uniform, chat, summarize, shared-prefix)"));
  }
  return w;
}

// "N" (fixed) or "A-B" (uniform).
absl::StatusOr<LengthDistribution> ParseLengthValue(std::string_view value) {
  if (const size_t dash = value.find('-'); dash != std::string_view::npos && dash > 0) {
    auto lo = ParseInt(value.substr(0, dash));
    auto hi = ParseInt(value.substr(dash + 1));
    if (!lo.ok() || !hi.ok() || *lo < 1 || *hi < *lo || *hi > (1 << 24)) {
      return absl::InvalidArgumentError(StrCat("'", value, "' is not a range A-B with 1 <= A <= B"));
    }
    return Uniform(static_cast<int>(*lo), static_cast<int>(*hi));
  }
  auto n = ParseInt(value);
  if (!n.ok() || *n < 1 || *n > (1 << 24)) {
    return absl::InvalidArgumentError(StrCat("'", value, "' is not a token count >= 1"));
  }
  return Fixed(static_cast<int>(*n));
}

// in_median / in_sigma / in_min / in_max (and out_*): switches `d` to log-normal.
absl::Status ApplyLogNormalKey(std::string_view field, std::string_view value, LengthDistribution* d) {
  auto v = ParseDouble(value);
  if (!v.ok() || !std::isfinite(*v) || *v < 0) {
    return absl::InvalidArgumentError(StrCat("'", value, "' is not a number >= 0"));
  }
  if (d->kind != Kind::kLogNormal) {
    const int center = d->kind == Kind::kFixed ? d->value : (d->min + d->max) / 2;
    *d = LogNormal(center, 0.5, 1, std::max(1, center * 8));
  }
  if (field == "median" && *v >= 1) {
    d->median = *v;
  } else if (field == "sigma") {
    d->sigma = *v;
  } else if ((field == "min" || field == "max") && *v >= 1 && *v <= (1 << 24)) {
    (field == "min" ? d->min : d->max) = static_cast<int>(*v);
  } else {
    return absl::InvalidArgumentError(StrCat("'", value, "' is out of range"));
  }
  return absl::OkStatus();
}

absl::Status ApplyKey(std::string_view key, std::string_view value, WorkloadSpec* w) {
  if (key == "in" || key == "out") {
    TANDEM_ASSIGN_OR_RETURN(LengthDistribution d, ParseLengthValue(value));
    (key == "in" ? w->input : w->output) = d;
    return absl::OkStatus();
  }
  if (key.starts_with("in_") || key.starts_with("out_")) {
    const bool in = key.starts_with("in_");
    return ApplyLogNormalKey(key.substr(in ? 3 : 4), value, in ? &w->input : &w->output);
  }
  if (w->shared_prefix() && (key == "prefixes" || key == "prefix")) {
    auto n = ParseInt(value);
    if (!n.ok() || *n < 1 || *n > (1 << 20)) {
      return absl::InvalidArgumentError(StrCat("'", value, "' must be an integer >= 1"));
    }
    (key == "prefixes" ? w->num_prefixes : w->prefix_tokens) = static_cast<int>(*n);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown key (see --help for the keys of each preset)");
}

}  // namespace

int LengthDistribution::Sample(Rng& rng) const {
  switch (kind) {
    case Kind::kFixed:
      return value;
    case Kind::kUniform:
      return std::uniform_int_distribution<int>(min, max)(rng);
    case Kind::kLogNormal: {
      std::lognormal_distribution<double> dist(std::log(median), sigma);
      const double v = std::round(dist(rng));
      return static_cast<int>(std::clamp(v, static_cast<double>(min), static_cast<double>(max)));
    }
  }
  return value;
}

std::string LengthDistribution::Describe() const {
  switch (kind) {
    case Kind::kFixed:
      return StrCat(value);
    case Kind::kUniform:
      return StrCat("U[", min, ", ", max, "]");
    case Kind::kLogNormal:
      return fmt::format("LogNormal(median {:g}, sigma {:g}) in [{}, {}]", median, sigma, min, max);
  }
  return "";
}

std::string WorkloadSpec::Describe() const {
  if (shared_prefix()) {
    return StrCat(name, ": ", num_prefixes, " shared prefixes of ", prefix_tokens, " tokens + suffix ",
                  input.Describe(), " tokens, output ", output.Describe(), " tokens");
  }
  return StrCat(name, ": input ", input.Describe(), " tokens, output ", output.Describe(), " tokens");
}

absl::StatusOr<WorkloadSpec> ParseWorkload(std::string_view spec, const WorkloadDefaults& defaults) {
  spec = Trim(spec);
  const size_t colon = spec.find(':');
  TANDEM_ASSIGN_OR_RETURN(WorkloadSpec w, Preset(Trim(spec.substr(0, colon)), defaults));
  if (colon != std::string_view::npos) {
    for (std::string_view item : Split(spec.substr(colon + 1), ',')) {
      item = Trim(item);
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      if (eq == std::string_view::npos) {
        return absl::InvalidArgumentError(StrCat("workload '", spec, "': '", item, "' is not key=value"));
      }
      const std::string_view key = Trim(item.substr(0, eq));
      if (auto s = ApplyKey(key, Trim(item.substr(eq + 1)), &w); !s.ok()) {
        return absl::InvalidArgumentError(StrCat("workload '", spec, "', key '", key, "': ", s.message()));
      }
    }
  }
  for (const LengthDistribution* d : {&w.input, &w.output}) {
    if (d->kind != Kind::kFixed && d->min > d->max) {
      return absl::InvalidArgumentError(StrCat("workload '", spec, "': min ", d->min, " > max ", d->max));
    }
    if (d->kind == Kind::kFixed && d->value < 1) {
      return absl::InvalidArgumentError(StrCat("workload '", spec, "': lengths must be >= 1"));
    }
  }
  return w;
}

RequestShape SampleShape(const WorkloadSpec& spec, Rng& rng) {
  RequestShape s;
  if (spec.shared_prefix()) {
    s.prefix_group = std::uniform_int_distribution<int>(0, spec.num_prefixes - 1)(rng);
    s.prefix_tokens = spec.prefix_tokens;
  }
  s.input_tokens = s.prefix_tokens + spec.input.Sample(rng);
  s.output_tokens = spec.output.Sample(rng);
  return s;
}

std::string WorkloadPresetHelp() {
  const WorkloadDefaults d;
  std::string out = "Workload presets (--workload NAME[:key=value,...]):\n";
  for (const char* name : {"fixed", "uniform", "chat", "summarize", "shared-prefix"}) {
    auto w = Preset(name, d);
    if (w.ok()) out += StrCat("  ", w->Describe(), "\n");
  }
  out +=
      "  (fixed and uniform follow --input-len/--output-len; the values above are for the defaults)\n"
      "Keys: in=N | in=A-B, out=N | out=A-B (fixed or uniform); in_median, in_sigma, in_min, in_max,\n"
      "  out_median, out_sigma, out_min, out_max (log-normal: round(exp(N(ln median, sigma))) clipped\n"
      "  to [min, max]); shared-prefix also: prefixes=N, prefix=TOKENS (in = the unique suffix).\n"
      "  e.g. uniform:in=64-512,out=16-256   chat:out_median=64   shared-prefix:prefixes=4,prefix=1024\n";
  return out;
}

}  // namespace tandem::bench
