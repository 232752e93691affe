#include "testing/fidelity_goldens.h"

#include "gtest/gtest.h"

namespace tandem::testing {

std::vector<FidelityGolden> ParseFidelityGoldens(const nlohmann::json& j) {
  std::vector<FidelityGolden> out;
  for (const auto& p : j["prompts"]) {
    FidelityGolden g;
    g.name = p["name"];
    g.kind = p.value("kind", "text");
    if (p.contains("text") && p["text"].is_string()) g.text = p["text"];
    if (p.contains("messages") && p["messages"].is_array()) {
      for (const auto& m : p["messages"]) g.messages.emplace_back(m["role"], m["content"]);
    }
    g.prompt = p["prompt_tokens"].get<std::vector<int32_t>>();
    g.generated = p["generated"].get<std::vector<int32_t>>();
    for (const auto& s : p["steps"]) g.steps.push_back({s[0], s[1], s[2], s[3]});
    for (const auto& pos : p["forced_topk"]) {
      std::vector<std::pair<int32_t, float>> top;
      for (const auto& e : pos) top.emplace_back(e[0].get<int32_t>(), e[1].get<float>());
      g.forced.push_back(std::move(top));
    }
    out.push_back(std::move(g));
  }
  return out;
}

std::map<std::string, std::vector<int32_t>> RunGreedy(Engine& engine, const std::vector<FidelityGolden>& goldens) {
  std::map<std::string, std::vector<int32_t>> got;
  for (const FidelityGolden& g : goldens) {
    GenerateRequest r;
    r.id = g.name;
    r.prompt = g.prompt;
    r.sampling.temperature = 0;
    r.sampling.max_tokens = static_cast<int>(g.generated.size());
    r.sampling.ignore_eos = true;
    const absl::Status s = engine.Add(r);
    EXPECT_TRUE(s.ok()) << g.name << ": " << s;
    if (!s.ok()) return {};
  }
  while (engine.HasWork()) {
    auto outs = engine.Step();
    EXPECT_TRUE(outs.ok()) << outs.status();
    if (!outs.ok()) return {};
    for (const auto& o : *outs) got[o.id].insert(got[o.id].end(), o.new_tokens.begin(), o.new_tokens.end());
  }
  return got;
}

}  // namespace tandem::testing
