#include "bench/request_plan.h"

#include <algorithm>
#include <atomic>
#include <map>

#include "common/status_macros.h"
#include "common/thread_pool.h"
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

namespace {

// The lengths of every request after clipping, and the shared prefix each one starts with.
struct Shapes {
  std::map<std::pair<int, int>, std::string> prefixes;  // (tokens, group) -> text
  std::vector<RequestShape> shapes;
  std::vector<const std::string*> prefix_of;  // into `prefixes` (map nodes do not move)
};

absl::StatusOr<Shapes> ShapeRequests(const std::vector<Arrival>& arrivals, const PromptBuilder& builder,
                                     const RequestSettings& settings, uint64_t seed, PlanStats* stats) {
  Shapes out;
  std::map<const std::string*, int> prefix_min;
  const int plain_min = builder.MinTokens();
  for (const Arrival& a : arrivals) {
    RequestShape shape = a.shape;
    const std::string* prefix = nullptr;
    if (shape.prefix_group >= 0) {
      auto [it, added] = out.prefixes.try_emplace({shape.prefix_tokens, shape.prefix_group});
      if (added) {  // each prefix drawn once, from its own generator
        Rng rng = StreamRng(seed, kPrefixes, shape.prefix_tokens, shape.prefix_group);
        it->second = builder.Words(shape.prefix_tokens, rng);
        prefix_min[&it->second] = builder.MinTokens(it->second);
      }
      prefix = &it->second;
    }
    const int min_input = prefix ? prefix_min[prefix] : plain_min;
    if (settings.context_length > 0 && min_input >= settings.context_length) {
      return absl::InvalidArgumentError(StrCat("the shortest possible prompt (", min_input,
                                               " tokens) does not fit the model's context of ",
                                               settings.context_length, " tokens"));
    }
    if (ClipShape(settings.context_length, min_input, &shape) && stats != nullptr) ++stats->clipped;
    out.shapes.push_back(shape);
    out.prefix_of.push_back(prefix);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<PlannedRequest>> BuildRequests(const std::vector<Arrival>& arrivals,
                                                          const PromptBuilder& builder,
                                                          const RequestSettings& settings, uint64_t seed,
                                                          PlanStats* stats) {
  TANDEM_ASSIGN_OR_RETURN(const Shapes shaped, ShapeRequests(arrivals, builder, settings, seed, stats));
  // The prompts in parallel (the tokenizer is thread-safe), each from its own generator so
  // that the result does not depend on the number of threads.
  std::vector<PlannedRequest> out(arrivals.size());
  std::vector<absl::Status> errors(arrivals.size());
  std::atomic<size_t> next{0};
  ThreadPool pool(0);
  pool.Run([&](int, int) {
    for (size_t i = next++; i < arrivals.size(); i = next++) {
      const RequestShape& shape = shaped.shapes[i];
      Rng rng = StreamRng(seed, kPrompts, static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32));
      auto prompt = builder.Build(shape.input_tokens, rng, shaped.prefix_of[i] ? *shaped.prefix_of[i] : std::string());
      if (!prompt.ok()) {
        errors[i] = prompt.status();
        continue;
      }
      PlannedRequest& r = out[i];
      r.index = static_cast<int>(i);
      r.phase = arrivals[i].phase;
      r.arrival_s = arrivals[i].time_s;
      r.input_tokens = shape.input_tokens;
      r.output_tokens = shape.output_tokens;
      r.body = RequestBody(*prompt, shape.output_tokens, settings);
    }
  });
  for (const absl::Status& e : errors) TANDEM_RETURN_IF_ERROR(e);
  return out;
}

}  // namespace tandem::bench
