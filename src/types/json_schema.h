// The JSON Schema subset tandem enforces while sampling (OpenAI's response_format
// {"type": "json_schema", "json_schema": {"schema": ...}}), compiled to a tree the engine's
// recogniser (engine/json_grammar.h) follows byte by byte.
//
// Enforced: "type" (one name or a list: object, array, string, integer, number, boolean, null),
// "properties" (at most 64 per object; names of printable ASCII without '"' or '\'),
// "required", "additionalProperties" (false: only the listed properties; absent or true: any
// other key with any value; a schema: any other key, its value following that schema, as
// pydantic writes dict[str, X]), "items" (one schema), "enum" and "const"
// (strings without escapes, numbers, booleans, null), "$ref" to "#/$defs/..." or
// "#/definitions/..." (not recursive), "minItems"/"maxItems" on arrays and "minLength"/
// "maxLength" on strings (characters: code points, an escape counting one; not beside enum or
// const), "minimum"/"maximum"/"exclusiveMinimum"/"exclusiveMaximum" on integers ("type":
// "integer"; pydantic's Field(ge=, le=, gt=, lt=); each digit must keep a value in range
// reachable, at most 18 digits), and "anyOf"/"oneOf" whose alternatives start with
// different JSON types (Optional[X]: X or null; the first byte picks one). A schema with no "type" accepts what its
// other keywords allow (properties: an object; items: an array; enum: the listed values; none:
// any JSON value). Annotations are ignored: title, description, default, examples, $schema,
// $id, $comment, deprecated, readOnly, writeOnly, and "strict"/"name" around the schema.
// "allOf" of exactly one schema (that schema: how generators put a description beside a $ref).
// Anything else (allOf of several, not, pattern, format, bounds on non-integers, uniqueItems, a remote or recursive
// $ref, anyOf alternatives of one type, ...) is refused with the keyword's name: a constraint
// tandem would not enforce is never accepted silently. The root must be an object schema (what
// json_object asks too). What the openai client's pydantic helper sends is in this subset.
//
// Thread-safety: immutable after CompileJsonSchema; share it freely.
#pragma once

#include <cstdint>
#include <limits>
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

// The JSON type a value whose text starts with `c` has (a number: kJsonInteger | kJsonNumber,
// the first byte cannot tell them apart; 0: no value starts so).
constexpr uint8_t JsonTypeStartingWith(char c) {
  if (c == '{') return kJsonObject;
  if (c == '[') return kJsonArray;
  if (c == '"') return kJsonString;
  if (c == '-' || (c >= '0' && c <= '9')) return kJsonInteger | kJsonNumber;
  if (c == 't' || c == 'f') return kJsonBoolean;
  if (c == 'n') return kJsonNull;
  return 0;
}

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
  int32_t additional = -1;  // the node other keys' values follow (additionalProperties: a schema); -1: any value
  int32_t items = -1;  // arrays: the elements' node; -1: any value
  // minItems / maxItems (arrays: elements) and minLength / maxLength (strings: characters, i.e.
  // code points; an escape is one); -1: no maximum.
  int32_t min_items = 0;
  int32_t max_items = -1;
  int32_t min_length = 0;
  int32_t max_length = -1;
  // Integers: the range (minimum/maximum, exclusive ones folded in); bounded: either was given.
  bool bounded = false;
  int64_t min_integer = std::numeric_limits<int64_t>::min();
  int64_t max_integer = std::numeric_limits<int64_t>::max();
  // anyOf/oneOf: the alternatives, each with the JSON types its values start with (disjoint:
  // the first byte picks one). A node with alternatives has no other constraint.
  std::vector<std::pair<uint8_t, int32_t>> alternatives;
};

struct JsonSchema {
  std::vector<JsonSchemaNode> nodes;
  int32_t root = 0;                    // the root's node
  static constexpr int32_t kAny = -1;  // "any JSON value" wherever a node index is expected
};

// Compiles a JSON Schema given as JSON text. InvalidArgument names the offending keyword and
// its path ("properties.age.minimum: 'minimum' is not supported").
absl::StatusOr<std::shared_ptr<const JsonSchema>> CompileJsonSchema(std::string_view schema_json);

}  // namespace tandem
