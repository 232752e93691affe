// The model-fidelity goldens llama.cpp recorded (tools/goldens/model_goldens.py and
// synth_goldens.py write the same shape), and the engine run the fidelity tests compare them with.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "nlohmann/json.hpp"

namespace tandem::testing {

struct FidelityGolden {
  std::string name, kind, text;                      // kind "text" or "chat"
  std::vector<std::pair<std::string, std::string>> messages;  // chat: (role, content)
  std::vector<int32_t> prompt, generated;
  std::vector<std::array<float, 4>> steps;  // one-token path: top1 id, logit, top2 id, logit
  std::vector<std::vector<std::pair<int32_t, float>>> forced;  // batched path: top-5 per position
};

// The "prompts" of a goldens file.
std::vector<FidelityGolden> ParseFidelityGoldens(const nlohmann::json& j);

// Every golden's prompt through `engine` at once, greedy, EOS ignored, as many tokens as the
// golden generated; the tokens by golden name. Empty (and a test failure) on an engine error.
std::map<std::string, std::vector<int32_t>> RunGreedy(Engine& engine, const std::vector<FidelityGolden>& goldens);

}  // namespace tandem::testing
