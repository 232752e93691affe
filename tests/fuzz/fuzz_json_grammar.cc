// JSON mode's recogniser and token mask (engine/json_grammar.h) and the schema compiler
// (types/json_schema.h) on hostile input: a client's schema and whatever bytes a model emits.
// Input: a schema's JSON text, a 0x00 byte, then the output bytes (no 0x00: no schema, plain
// json_object). Each output byte is fed; a refused one is skipped (the state must be as before).
//
// Checked: whatever the recogniser reads whole and calls complete is one JSON object to a real
// parser, with every required property of the schema's root, its listed properties' size bounds
// and, when it allows no others, no other key; every token the mask allows (pieces cut from the
// input) is one the recogniser reads.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json_grammar.h"
#include "fuzz_support.h"
#include "nlohmann/json.hpp"
#include "types/json_schema.h"

namespace {

using tandem::JsonRecognizer;

void CheckComplete(const std::string& text, const tandem::JsonSchema* schema) {
  const nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!value.is_discarded() && value.is_object());
  if (schema == nullptr) return;
  const tandem::JsonSchemaNode& root = schema->nodes[static_cast<size_t>(schema->root)];
  for (size_t i = 0; i < root.property_names.size(); ++i) {
    if ((root.required_mask >> i & 1) != 0) FUZZ_CHECK(value.contains(root.property_names[i]));
  }
  // The size bounds of the root's listed properties (minItems, maxItems, minLength, maxLength).
  for (size_t i = 0; i < root.property_names.size(); ++i) {
    const auto it = value.find(root.property_names[i]);
    const int32_t index = root.property_nodes[i];
    if (it == value.end() || index < 0) continue;
    const tandem::JsonSchemaNode& n = schema->nodes[static_cast<size_t>(index)];
    if (!n.alternatives.empty()) continue;
    if (it->is_array()) {
      FUZZ_CHECK(static_cast<int64_t>(it->size()) >= n.min_items);
      FUZZ_CHECK(n.max_items < 0 || static_cast<int64_t>(it->size()) <= n.max_items);
    } else if (it->is_string()) {
      int64_t chars = 0;  // code points: the bytes that are not UTF-8 continuation bytes
      for (char ch : it->get<std::string>()) chars += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
      FUZZ_CHECK(chars >= n.min_length);
      FUZZ_CHECK(n.max_length < 0 || chars <= n.max_length);
    }
  }
  if (root.additional_properties) return;
  for (const auto& [key, v] : value.items()) {
    FUZZ_CHECK(std::find(root.property_names.begin(), root.property_names.end(), key) != root.property_names.end());
  }
}

void CheckMask(const JsonRecognizer& state, std::string_view bytes) {
  std::vector<std::string> pieces = {"", "{", "}", "\"", " ", "\n"};
  for (size_t i = 0; i + 3 <= bytes.size() && pieces.size() < 64; i += 3) pieces.emplace_back(bytes.substr(i, 1 + bytes[i] % 3));
  const std::vector<int32_t> eog = {0};
  tandem::JsonTokenMask mask(pieces, eog);
  std::vector<float> logits(pieces.size() + 2, 0.0f);
  const int32_t allowed = mask.Apply(state, logits, {});
  int32_t finite = 0;
  for (size_t id = 0; id < logits.size(); ++id) {
    if (!std::isfinite(logits[id])) continue;
    ++finite;
    FUZZ_CHECK(id < pieces.size());
    JsonRecognizer copy = state;
    if (id == 0) {
      FUZZ_CHECK(state.Complete());
    } else {
      FUZZ_CHECK(!state.Complete() && copy.FeedAll(pieces[id]));
    }
  }
  FUZZ_CHECK(finite == allowed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::shared_ptr<const tandem::JsonSchema> schema;
  std::string_view output = input;
  if (const size_t split = input.find('\0'); split != std::string_view::npos) {
    auto compiled = tandem::CompileJsonSchema(input.substr(0, split));
    if (!compiled.ok()) {
      FUZZ_CHECK(!compiled.status().message().empty());
      return 0;
    }
    schema = *compiled;
    output = input.substr(split + 1);
  }
  JsonRecognizer r(schema.get());
  std::string accepted;
  for (char c : output) {
    if (r.Feed(static_cast<uint8_t>(c))) {
      accepted.push_back(c);
    } else {
      FUZZ_CHECK(!r.Feed(static_cast<uint8_t>(c)));  // refused again: the state did not move
    }
  }
  if (r.Complete()) CheckComplete(accepted, schema.get());
  CheckMask(r, output);
  return 0;
}
