// The JSON Schema subset tandem enforces while sampling (OpenAI's response_format
// {"type": "json_schema", "json_schema": {"schema": ...}}), compiled to a tree the engine's
// recogniser (engine/json_grammar.h) follows byte by byte.
//
// Enforced: "type" (one name or a list: object, array, string, integer, number, boolean, null),
// "properties" (at most 64 per object; names of printable ASCII without '"' or '\'),
// "required", "additionalProperties" (false: only the listed properties; absent or true: any
// other key with any value; a schema: not supported), "items" (one schema), "enum" and "const"
// (strings without escapes, numbers, booleans, null). A schema with no "type" accepts what its
// other keywords allow (properties: an object; items: an array; enum: the listed values; none:
// any JSON value). Annotations are ignored: title, description, default, examples, $schema,
// $id, $comment, deprecated, readOnly, writeOnly, and "strict"/"name" around the schema.
// Anything else ($ref, anyOf, oneOf, allOf, not, pattern, format, minimum, minLength,
// minItems, ...) is refused with the keyword's name: a constraint tandem would not enforce is
// never accepted silently. The root must accept an object (what json_object asks too).
//
// Thread-safety: immutable after CompileJsonSchema; share it freely.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem {

enum JsonTypeBit : uint8_t {
  kJsonObject = 1,
  kJsonArray = 2,
  kJsonString = 4,
  kJsonInteger = 8,   // a number without fraction or exponent
  kJsonNumber = 16,   // any number (integers included)
  kJsonBoolean = 32,
  kJsonNull = 64,
  kJsonAny = 127,
};

struct JsonSchemaNode {
  uint8_t types = kJsonAny;
  // enum/const: the allowed values as compact JSON texts ("\"red\"", "1", "true", "null").
  bool has_enum = false;
  std::vector<std::string> enum_texts;
  // Objects: the listed properties (node indices into JsonSchema::nodes), which are required,
  // and whether other keys may appear.
  std::vector<std::string> property_names;
  std::vector<int32_t> property_nodes;
  uint64_t required_mask = 0;
  bool additional_properties = true;
  int32_t items = -1;  // arrays: the elements' node; -1: any value
};

struct JsonSchema {
  std::vector<JsonSchemaNode> nodes;  // nodes[0] is the root
  static constexpr int32_t kAny = -1;  // "any JSON value" wherever a node index is expected
};

// Compiles a JSON Schema given as JSON text. InvalidArgument names the offending keyword and
// its path ("properties.age.minimum: 'minimum' is not supported").
absl::StatusOr<std::shared_ptr<const JsonSchema>> CompileJsonSchema(std::string_view schema_json);

}  // namespace tandem
