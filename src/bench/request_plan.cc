#include "bench/request_plan.h"

#include <algorithm>
#include <map>

#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

// Separate, reproducible generators per purpose.
enum Stream : uint32_t { kArrivals = 1, kLengths = 2, kPrompts = 3, kPrefixes = 4 };

Rng StreamRng(uint64_t seed, uint32_t stream, uint32_t a = 0, uint32_t b = 0) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), stream, a, b};
  return Rng(seq);
}

}  // namespace

std::vector<Arrival> DrawTraffic(const TrafficSpec& traffic, uint64_t seed) {
  Rng arrival_rng = StreamRng(seed, kArrivals);
  Rng length_rng = StreamRng(seed, kLengths);
  std::vector<Arrival> out;
  switch (traffic.mode) {
    case TrafficSpec::Mode::kRate:
      for (double t : GammaArrivals(traffic.process, traffic.num_prompts, arrival_rng)) {
        out.push_back({t, 0, SampleShape(traffic.workload, length_rng)});
      }
      break;
    case TrafficSpec::Mode::kSchedule:
      for (const ScheduledArrival& a : ScheduleArrivals(traffic.schedule, traffic.process.burstiness, arrival_rng)) {
        out.push_back({a.time_s, a.phase, SampleShape(traffic.phase_workloads[a.phase], length_rng)});
      }
      break;
    case TrafficSpec::Mode::kTrace:
      for (const TraceRecord& r : traffic.trace.records) {
        Arrival a;
        a.time_s = r.arrival_s;
        a.shape.input_tokens = r.input_tokens;
        a.shape.output_tokens = r.output_tokens;
        out.push_back(a);
      }
      break;
  }
  return out;
}

bool ClipShape(int context_length, int min_input, RequestShape* s) {
  const RequestShape before = *s;
  s->input_tokens = std::max(s->input_tokens, min_input);
  if (context_length > 0 && s->input_tokens + s->output_tokens > context_length) {
    const int cut = std::max(context_length - s->output_tokens, context_length / 2);
    s->input_tokens = std::max(std::min(s->input_tokens, cut), min_input);
    s->output_tokens = std::max(1, std::min(s->output_tokens, context_length - s->input_tokens));
  }
  return s->input_tokens != before.input_tokens || s->output_tokens != before.output_tokens;
}

std::string RequestBody(const Prompt& prompt, int max_tokens, const RequestSettings& settings) {
  using Json = nlohmann::json;
  Json body = Json::object();
  if (!settings.model.empty()) body["model"] = settings.model;
  if (settings.chat) {
    Json messages = Json::array();
    if (!prompt.system.empty()) messages.push_back({{"role", "system"}, {"content", prompt.system}});
    messages.push_back({{"role", "user"}, {"content", prompt.text}});
    body["messages"] = std::move(messages);
  } else {
    body["prompt"] = prompt.text;
  }
  body["max_tokens"] = max_tokens;
  if (settings.ignore_eos) body["ignore_eos"] = true;
  body["temperature"] = settings.temperature;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

absl::StatusOr<std::vector<PlannedRequest>> BuildRequests(const std::vector<Arrival>& arrivals,
                                                          const PromptBuilder& builder,
                                                          const RequestSettings& settings, uint64_t seed,
                                                          PlanStats* stats) {
  Rng prompt_rng = StreamRng(seed, kPrompts);
  struct PrefixInfo {
    std::string text;
    int min_input = 0;
  };
  std::map<std::pair<int, int>, PrefixInfo> prefixes;  // (tokens, group) -> text
  const int plain_min = builder.MinTokens();
  std::vector<PlannedRequest> out;
  out.reserve(arrivals.size());
  for (size_t i = 0; i < arrivals.size(); ++i) {
    RequestShape shape = arrivals[i].shape;
    const PrefixInfo* prefix = nullptr;
    if (shape.prefix_group >= 0) {
      auto [it, added] = prefixes.try_emplace({shape.prefix_tokens, shape.prefix_group});
      if (added) {
        Rng rng = StreamRng(seed, kPrefixes, shape.prefix_tokens, shape.prefix_group);
        it->second.text = builder.Words(shape.prefix_tokens, rng);
        it->second.min_input = builder.MinTokens(it->second.text);
      }
      prefix = &it->second;
    }
    const int min_input = prefix ? prefix->min_input : plain_min;
    if (settings.context_length > 0 && min_input >= settings.context_length) {
      return absl::InvalidArgumentError(StrCat("the shortest possible prompt (", min_input,
                                               " tokens) does not fit the model's context of ",
                                               settings.context_length, " tokens"));
    }
    if (ClipShape(settings.context_length, min_input, &shape) && stats != nullptr) ++stats->clipped;
    TANDEM_ASSIGN_OR_RETURN(Prompt prompt,
                            builder.Build(shape.input_tokens, prompt_rng, prefix ? prefix->text : std::string()));
    PlannedRequest r;
    r.index = static_cast<int>(i);
    r.phase = arrivals[i].phase;
    r.arrival_s = arrivals[i].time_s;
    r.input_tokens = shape.input_tokens;
    r.output_tokens = shape.output_tokens;
    r.body = RequestBody(prompt, shape.output_tokens, settings);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace tandem::bench
