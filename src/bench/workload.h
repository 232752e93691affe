// What each request asks for: input and output lengths in tokens, drawn from a workload.
//
// A workload spec is "<preset>[:key=value,...]". Presets (their parameters are also printed
// by `tandem bench serve --help`, from WorkloadPresetHelp()):
//   fixed          input = --input-len, output = --output-len
//   uniform        input ~ U[--input-len/2, 3*--input-len/2], output likewise from --output-len
//   chat           short prompts, medium answers (ShareGPT-like):
//                    input  ~ LogNormal(median 160, sigma 0.9) clipped to [8, 2048]
//                    output ~ LogNormal(median 160, sigma 0.7) clipped to [8, 1024]
//   summarize      long prompts, short answers:
//                    input  ~ LogNormal(median 1536, sigma 0.5) clipped to [256, 6144]
//                    output ~ LogNormal(median 96, sigma 0.5) clipped to [16, 384]
//   shared-prefix  `prefixes` (8) distinct system prompts of `prefix` (512) tokens, one drawn
//                  uniformly per request, followed by a unique suffix of `in` (64) tokens;
//                  output `out` (128) tokens
// Keys (any preset): in=N or in=A-B and out=N or out=A-B (fixed or uniform lengths);
// in_median, in_sigma, in_min, in_max and out_median, out_sigma, out_min, out_max (log-normal:
// round(exp(N(ln median, sigma))) clipped to [min, max]); for shared-prefix also prefixes and
// prefix. Example: "uniform:in=64-512,out=16-256", "chat:out_median=64".
//
// Pure functions; sampling uses the generator it is given.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "bench/arrivals.h"

namespace tandem::bench {

struct LengthDistribution {
  enum class Kind { kFixed, kUniform, kLogNormal };
  Kind kind = Kind::kFixed;
  int value = 0;         // kFixed
  int min = 1, max = 1;  // kUniform range; kLogNormal clip range (inclusive)
  double median = 1, sigma = 0;  // kLogNormal

  int Sample(Rng& rng) const;
  // "128", "U[64, 512]", "LogNormal(median 160, sigma 0.9) in [8, 2048]".
  std::string Describe() const;
};

struct WorkloadSpec {
  std::string name;  // the preset
  LengthDistribution input;   // for shared-prefix: the unique suffix after the prefix
  LengthDistribution output;
  int num_prefixes = 0;   // > 0: shared-prefix
  int prefix_tokens = 0;

  bool shared_prefix() const { return num_prefixes > 0; }
  // One line: the preset and its distributions.
  std::string Describe() const;
};

// The lengths that --input-len/--output-len give the fixed and uniform presets.
struct WorkloadDefaults {
  int input_len = 1024;
  int output_len = 128;
};

// InvalidArgument naming the preset, key or value that is wrong.
absl::StatusOr<WorkloadSpec> ParseWorkload(std::string_view spec, const WorkloadDefaults& defaults);

// One request's lengths. For shared-prefix, input_tokens includes the prefix.
struct RequestShape {
  int input_tokens = 0;
  int output_tokens = 0;
  int prefix_group = -1;  // which shared prefix; -1: none
  int prefix_tokens = 0;
};
RequestShape SampleShape(const WorkloadSpec& spec, Rng& rng);

// The --help text describing the presets and keys.
std::string WorkloadPresetHelp();

}  // namespace tandem::bench
