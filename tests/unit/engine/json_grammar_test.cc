// JSON mode's recogniser and token mask: every prefix of a JSON object is accepted, anything
// else refused at the first byte that breaks it, and the mask allows exactly the tokens whose
// bytes continue the text (end-of-generation only once the object is closed).
#include "engine/json_grammar.h"

#include <bit>
#include <cmath>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

// The length of the longest prefix of `text` the recogniser accepts; sets `complete`.
size_t AcceptedPrefix(std::string_view text, bool* complete = nullptr) {
  JsonRecognizer r;
  size_t i = 0;
  while (i < text.size() && r.Feed(static_cast<uint8_t>(text[i]))) ++i;
  if (complete != nullptr) *complete = r.Complete();
  return i;
}

TEST(JsonRecognizer, AcceptsObjectsWholeAndEveryPrefix) {
  const std::vector<std::string> good = {
      "{}",
      " \n{ } ",
      R"({"a": 1})",
      R"({"a":[1,-2.5e+3,0,0.25,1E9,true,false,null,"x",{},[]]})",
      R"({"nested": {"deeper": {"list": [[], [{}], ["\"quoted\" \\ \/ \b\f\n\r\t \u00e9\u20AC"]]}}})",
      "{\"utf8\": \"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"}",
      R"({"pair": "\ud83d\uDE00"})",
      "{\n  \"pretty\": [\n    1,\n    2\n  ]\n}",
  };
  for (const std::string& text : good) {
    bool complete = false;
    EXPECT_EQ(AcceptedPrefix(text, &complete), text.size()) << text;
    EXPECT_TRUE(complete) << text;
    EXPECT_TRUE(nlohmann::json::parse(text).is_object()) << text;  // the cases themselves are right
    for (size_t n = 0; n + 1 < text.size(); ++n) {
      if (text.substr(n + 1).find_first_not_of(" \n") == std::string::npos) break;  // only trailing space left
      bool prefix_complete = true;
      ASSERT_EQ(AcceptedPrefix(text.substr(0, n), &prefix_complete), n) << text.substr(0, n);
      EXPECT_FALSE(prefix_complete) << text.substr(0, n);
    }
  }
}

TEST(JsonRecognizer, RefusesAtTheFirstByteThatBreaksTheGrammar) {
  struct Case {
    std::string text;
    size_t accepted;  // bytes accepted before the refused one
  };
  const std::vector<Case> bad = {
      {"[1]", 0},                          // json_object: the top level is an object
      {"\"s\"", 0},
      {R"({"a":01})", 6},                  // no leading zeros
      {R"({"a":1,})", 7},                  // no trailing comma
      {R"({"a":[1,]})", 8},
      {R"({'a':1})", 1},                   // double quotes only
      {R"({"a" 1})", 5},                   // a colon after a key
      {R"({"a":tru })", 8},
      {R"({"a":-})", 6},
      {R"({"a":1.})", 7},
      {R"({"a":1e})", 7},
      {R"({"a":1}})", 7},                  // nothing after the closed object
      {R"({"a":1} x)", 8},
      {R"({"a":"\x"})", 7},                // unknown escape
      {R"({"a":"\u12G4"})", 10},
      {R"({"a":"\ud83d"})", 12},            // a high surrogate alone (the fuzzer found it)
      {R"({"a":"\ud83d\u0041"})", 14},     // refused at the first digit a low half cannot have
      {R"({"a":"\ude00"})", 9},             // a low surrogate alone, refused at its second digit
      {R"({"a":"\ud83d\udbff"})", 15},
      {"{\"a\":\"\x01\"}", 6},             // raw control character in a string
      {"{\"a\":\"\xC0\x80\"}", 6},         // overlong UTF-8
      {"{\"a\":\"\xED\xA0\x80\"}", 7},     // a UTF-16 surrogate in UTF-8
      {"{\"a\":\"\xE2\x82\"}", 8},         // a truncated character
      {R"({"a":[}})", 6},                  // mismatched close
      {R"({1:2})", 1},                     // keys are strings
  };
  for (const Case& c : bad) {
    EXPECT_EQ(AcceptedPrefix(c.text), c.accepted) << c.text;
    EXPECT_FALSE(nlohmann::json::accept(c.text) && nlohmann::json::parse(c.text).is_object()) << c.text;
  }
}

TEST(JsonRecognizer, BoundsWhitespaceRunsAndNesting) {
  const std::string spaces(JsonRecognizer::kMaxWhitespaceRun, ' ');
  EXPECT_EQ(AcceptedPrefix(spaces + " {}"), spaces.size());
  EXPECT_EQ(AcceptedPrefix("{" + spaces + "\"a\":1}"), spaces.size() + 7);
  EXPECT_EQ(AcceptedPrefix("{" + spaces + " }"), spaces.size() + 1);
  // One line feed per run: indentation yes, blank lines and carriage returns no.
  EXPECT_EQ(AcceptedPrefix("{\n    \"a\":\n 1\n}"), 15u);
  EXPECT_EQ(AcceptedPrefix("{\n\n"), 2u);
  EXPECT_EQ(AcceptedPrefix("{ \n \n"), 4u);
  EXPECT_EQ(AcceptedPrefix("{\r\n}"), 1u);
  // Whitespace inside strings is text, not a run.
  const std::string long_string = "{\"a\":\"" + spaces + spaces + "\"}";
  EXPECT_EQ(AcceptedPrefix(long_string), long_string.size());
  // Numbers every parser can read: 18 integer digits, 2 exponent digits (the fuzzer found
  // "-2e66666666660000", which nlohmann::json refuses as out of range).
  EXPECT_EQ(AcceptedPrefix(R"({"a":-123456789012345678})"), 25u);
  EXPECT_EQ(AcceptedPrefix(R"({"a":1234567890123456789})"), 23u);
  EXPECT_EQ(AcceptedPrefix(R"({"a":-2e66666666660000})"), 10u);
  EXPECT_EQ(AcceptedPrefix(R"({"a":0.000000000000000000000001e-99})"), 36u);
  std::string deep = "{\"a\":";
  for (int i = 1; i < JsonRecognizer::kMaxDepth; ++i) deep += "[";
  EXPECT_EQ(AcceptedPrefix(deep + "["), deep.size());
}

TEST(JsonRecognizer, AgreesWithAParserOnRandomTexts) {
  // Random strings over JSON's alphabet: whatever the recogniser reads whole and closes is an
  // object to a real parser, and every object the parser accepts is read whole (within the bounds).
  const std::string alphabet = "{}[],:\" 01-.e+tfnrulas\\u";
  std::mt19937 rng(7);
  int objects = 0;
  for (int trial = 0; trial < 200000; ++trial) {
    std::string text = "{";
    const size_t len = 1 + rng() % 12;
    for (size_t i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
    bool complete = false;
    const bool whole = AcceptedPrefix(text, &complete) == text.size();
    const bool parser = nlohmann::json::accept(text) && nlohmann::json::parse(text).is_object();
    EXPECT_EQ(whole && complete, parser) << text;
    objects += parser ? 1 : 0;
  }
  EXPECT_GT(objects, 100);  // the alphabet does produce objects
}

TEST(JsonTokenMask, AllowsExactlyTheTokensThatContinueTheText) {
  //                                0    1    2      3     4    5      6    7   8     9     10
  std::vector<std::string> pieces = {"{", "}", "\"a\"", ":", "1", "1}", "", "x", " ", "\"", "{\"a\":"};
  const std::vector<int32_t> eog = {6};
  JsonTokenMask mask(pieces, eog);
  auto allowed = [&](std::string_view text, std::vector<int32_t> stop_ids = {}) {
    JsonRecognizer r;
    EXPECT_TRUE(r.FeedAll(text)) << text;
    std::vector<float> logits(pieces.size(), 0.0f);
    const int32_t count = mask.Apply(r, logits, stop_ids);
    std::vector<int32_t> ids;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (std::isfinite(logits[i])) ids.push_back(static_cast<int32_t>(i));
    }
    EXPECT_EQ(count, static_cast<int32_t>(ids.size()));
    return ids;
  };
  EXPECT_EQ(allowed(""), (std::vector<int32_t>{0, 8, 10}));
  EXPECT_EQ(allowed("{"), (std::vector<int32_t>{1, 2, 8, 9}));
  EXPECT_EQ(allowed("{\"a\""), (std::vector<int32_t>{3, 8}));
  EXPECT_EQ(allowed("{\"a\":"), (std::vector<int32_t>{0, 2, 4, 5, 8, 9, 10}));
  EXPECT_EQ(allowed("{\"a\":\""), (std::vector<int32_t>{0, 1, 3, 4, 5, 7, 8, 9}));  // string text
  EXPECT_EQ(allowed("{\"a\":1"), (std::vector<int32_t>{1, 4, 5, 8}));
  EXPECT_EQ(allowed("{}"), (std::vector<int32_t>{6}));           // closed: only the end
  EXPECT_EQ(allowed("{}", {7}), (std::vector<int32_t>{6, 7}));   // and stop token ids
  std::vector<float> longer(pieces.size() + 3, 0.0f);          // rows past the pieces: never
  JsonRecognizer start;
  EXPECT_EQ(mask.Apply(start, longer, {}), 3);
  EXPECT_FALSE(std::isfinite(longer.back()));
}

// response_format json_schema: the subset tandem enforces compiles; anything else is refused by
// keyword and path, never accepted silently.
TEST(JsonSchema, CompilesTheEnforcedSubsetAndNamesWhatItRefuses) {
  const char* ok = R"({"type": "object", "title": "person", "properties": {
      "name": {"type": "string", "description": "full name"}, "age": {"type": "integer"},
      "tags": {"type": "array", "items": {"type": "string"}}, "color": {"enum": ["red", "green"]},
      "extra": {"type": ["number", "null"]}, "any": {}}, "required": ["name", "age"], "additionalProperties": false})";
  auto schema = CompileJsonSchema(ok);
  ASSERT_TRUE(schema.ok()) << schema.status();
  const JsonSchemaNode& root = (*schema)->nodes[static_cast<size_t>((*schema)->root)];
  EXPECT_EQ(root.property_names.size(), 6u);
  EXPECT_EQ(std::popcount(root.required_mask), 2);
  EXPECT_FALSE(root.additional_properties);
  struct Bad {
    const char* schema;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {R"({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}})",
       "properties.a: 'pattern' is not supported"},
      {R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/b"}}})", "properties.a: '$ref' \"#/$defs/b\" names no"},
      {R"({"type": "object", "properties": {"a": {"$ref": "http://x/s.json"}}})", "only #/$defs/... and #/definitions/"},
      // A malformed pointer escape (found by fuzz_json_grammar: it used to throw and end the process).
      {R"({"$defs": {"b~": {}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/b~"}}})", "names no definition"},
      {R"({"$defs": {"b": {}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/b~2"}}})", "names no definition"},
      {R"({"$defs": {"b": {"c": {}}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/b/c"}}})",
       "names no definition"},
      {R"({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}},
           "type": "object", "properties": {"head": {"$ref": "#/$defs/n"}}})", "recursive '$ref' \"#/$defs/n\""},
      {R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/b", "minLength": 1}}, "$defs": {"b": {}}})",
       "'minLength' beside '$ref' is not supported"},
      {R"({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"enum": ["x", 1]}]}}})",
       "properties.a: 'anyOf' alternatives must start with different JSON types (anyOf[1] overlaps"},
      {R"({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"maxLength": 3}]}}})",
       "properties.a: 'allOf' with other than one schema is not supported"},
      {R"({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}], "maxLength": 3}}})",
       "'maxLength' beside 'allOf' is not supported"},
      {R"({"anyOf": [{"type": "object"}, {"type": "null"}]})", "the root must be an object schema"},
      {R"({"type": "string"})", "the root must be an object schema"},
      {R"({"type": "object", "required": ["b"]})", "required property \"b\" is not in 'properties'"},
      {R"({"type": "object", "properties": {"a": {"enum": [[1]]}}})", "must be strings, numbers, booleans or null"},
      {R"({"type": "object", "properties": {"a": {"type": "date"}}})", "unknown type \"date\""},
      {R"({"type": "object", "additionalProperties": 1})", "'additionalProperties' must be true, false or a schema"},
      {R"({"type": "object", "additionalProperties": {"type": "integer", "pattern": "x"}})",
       "additionalProperties: 'pattern' is not supported"},
      {R"({"type": "object", "properties": {"a\"b": {}}})", "property names must be printable ASCII"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}})",
       "properties.a: 'minLength' must be a whole number from 0 to"},
      {R"({"type": "object", "properties": {"a": {"type": "array", "maxItems": 1.5}}})", "'maxItems' must be a whole number"},
      {R"({"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}})",
       "'minItems' is greater than 'maxItems': no array fits"},
      {R"({"type": "object", "properties": {"a": {"type": "string", "minLength": 3, "maxLength": 2}}})",
       "'minLength' is greater than 'maxLength'"},
      {R"({"type": "object", "properties": {"a": {"enum": ["x", "yy"], "maxLength": 1}}})",
       "a size bound beside 'enum' or 'const' is not supported"},
      {R"({"type": "object", "properties": {"a": {"type": "number", "minimum": 0}}})",
       "properties.a: 'minimum'/'maximum' are enforced on integers only"},
      {"{not json", "not valid JSON"},
  };
  for (const Bad& b : bad) {
    auto refused = CompileJsonSchema(b.schema);
    ASSERT_FALSE(refused.ok()) << b.schema;
    EXPECT_NE(refused.status().message().find(b.message), std::string::npos) << refused.status();
  }
}

// JSON pointer escapes in a $ref name the definition they spell: ~1 is '/', ~0 is '~'.
TEST(JsonSchema, RefEscapesNameTheirDefinition) {
  auto schema = CompileJsonSchema(R"({"$defs": {"a/b": {"type": "integer"}, "c~d": {"type": "string"}},
      "type": "object", "properties": {"n": {"$ref": "#/$defs/a~1b"}, "s": {"$ref": "#/definitions/c~0d"}},
      "definitions": {"c~d": {"type": "string"}}, "required": ["n", "s"], "additionalProperties": false})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  JsonRecognizer r(schema->get());
  EXPECT_TRUE(r.FeedAll(R"({"n": 12, "s": "x"})"));
  EXPECT_TRUE(r.Complete());
  JsonRecognizer wrong(schema->get());
  EXPECT_FALSE(wrong.FeedAll(R"({"n": "12")")) << "n is an integer";
}

size_t SchemaPrefix(const JsonSchema& schema, std::string_view text, bool* complete = nullptr) {
  JsonRecognizer r(&schema);
  size_t i = 0;
  while (i < text.size() && r.Feed(static_cast<uint8_t>(text[i]))) ++i;
  if (complete != nullptr) *complete = r.Complete();
  return i;
}

// Each text is accepted whole and completes the value.
void ExpectAccepted(const JsonSchema& schema, std::initializer_list<const char*> texts) {
  for (const char* text : texts) {
    bool complete = false;
    EXPECT_EQ(SchemaPrefix(schema, text, &complete), std::string_view(text).size()) << text;
    EXPECT_TRUE(complete) << text;
  }
}

// A text, and the prefix of it read before the byte the schema refuses.
struct Refusal {
  const char* text;
  const char* accepted;
};
void ExpectRefusals(const JsonSchema& schema, std::initializer_list<Refusal> cases) {
  for (const Refusal& c : cases) EXPECT_EQ(SchemaPrefix(schema, c.text), std::string_view(c.accepted).size()) << c.text;
}

// What the openai client's pydantic helper sends: $defs with $ref, Optional fields as anyOf with
// null, every property required and no others.
TEST(JsonRecognizer, FollowsDefinitionsAndOptionalFields) {
  auto schema = CompileJsonSchema(R"({"$defs": {"Pet": {"type": "object", "title": "Pet", "additionalProperties": false,
      "properties": {"kind": {"enum": ["cat", "dog"], "title": "Kind"}}, "required": ["kind"]}},
      "type": "object", "title": "Owner", "additionalProperties": false, "required": ["name", "pet", "nick"],
      "properties": {"name": {"type": "string"}, "pet": {"$ref": "#/$defs/Pet"},
                     "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null},
                     "age": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/Pet"}]}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ExpectAccepted(**schema, {R"({"name": "a", "pet": {"kind": "cat"}, "nick": null})",
                            R"({"nick": "x", "pet": {"kind": "dog"}, "name": "", "age": 3})",
                            R"({"name": "a", "pet": {"kind": "cat"}, "nick": null, "age": {"kind": "dog"}})"});
  EXPECT_EQ(SchemaPrefix(**schema, R"({"nick": 1)"), 9u);                // neither a string nor null
  EXPECT_EQ(SchemaPrefix(**schema, R"({"pet": {"kind": "cow"})"), 19u);  // not in the Pet's enum
  EXPECT_EQ(SchemaPrefix(**schema, R"({"age": 1.5)"), 9u);               // an integer
  EXPECT_EQ(SchemaPrefix(**schema, R"({"pet": {}})"), 9u);               // Pet needs its kind
}

// No accepted prefix is a dead end under a schema either (the review found three).
TEST(JsonRecognizer, NoSchemaLeavesAnAcceptedPrefixWithoutAWayOn) {
  auto closed = CompileJsonSchema(R"({"type": "object", "additionalProperties": false})");
  ASSERT_TRUE(closed.ok()) << closed.status();
  bool complete = false;
  EXPECT_EQ(SchemaPrefix(**closed, R"({")"), 1u);  // no key can follow
  EXPECT_EQ(SchemaPrefix(**closed, "{}", &complete), 2u);
  EXPECT_TRUE(complete);
  // Objects nest as deep as the schema asks, within the recogniser's 32 levels.
  auto chain = [](int levels) {
    std::string s = R"({"type": "object"})";
    for (int i = 1; i < levels; ++i) s = R"({"type": "object", "required": ["a"], "properties": {"a": )" + s + "}}";
    return s;
  };
  auto deepest = CompileJsonSchema(chain(JsonRecognizer::kMaxDepth));
  ASSERT_TRUE(deepest.ok()) << deepest.status();
  std::string text;
  for (int i = 1; i < JsonRecognizer::kMaxDepth; ++i) text += R"({"a":)";
  text += "{}" + std::string(JsonRecognizer::kMaxDepth - 1, '}');
  EXPECT_EQ(SchemaPrefix(**deepest, text, &complete), text.size());
  EXPECT_TRUE(complete);
  EXPECT_FALSE(CompileJsonSchema(chain(JsonRecognizer::kMaxDepth + 1)).ok());
  // Keys of an object open to other properties are any string (escapes, UTF-8), tracked all the same.
  auto open = CompileJsonSchema(R"({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}})");
  ASSERT_TRUE(open.ok()) << open.status();
  const std::string keys = "{\"caf\xC3\xA9\": 1, \"a\\nb\": [], \"id\": 2}";
  EXPECT_EQ(SchemaPrefix(**open, keys, &complete), keys.size());
  EXPECT_TRUE(complete);
  EXPECT_EQ(SchemaPrefix(**open, R"({"x": 1})"), 7u);           // id is still required
  EXPECT_EQ(SchemaPrefix(**open, R"({"id": 1, "id")"), 13u);    // and not twice
  // enum is a list; enum and const both hold; type filters enum values.
  EXPECT_FALSE(CompileJsonSchema(R"({"type": "object", "properties": {"a": {"enum": 5}}})").ok());
  auto both = CompileJsonSchema(R"({"type": "object", "properties": {"a": {"type": "string", "enum": ["x", "y", 1],
                                                                             "const": "y"}}})");
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(SchemaPrefix(**both, R"({"a": "x")"), 7u);
  EXPECT_EQ(SchemaPrefix(**both, R"({"a": 1)"), 6u);
  EXPECT_EQ(SchemaPrefix(**both, R"({"a": "y"})"), 10u);
}

TEST(JsonRecognizer, FollowsASchemaByteByByte) {
  auto schema = CompileJsonSchema(R"({"type": "object", "properties": {
      "name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
      "color": {"enum": ["red", "green", 7]}, "ok": {"type": "boolean"}, "extra": {"type": ["number", "null"]},
      "free": {"type": "object"}}, "required": ["name", "age"], "additionalProperties": false})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ExpectAccepted(**schema, {R"({"name": "Al", "age": 30, "tags": ["a", "b"], "color": "red", "ok": true, "extra": null})",
                            R"({"age":-1,"name":""})", R"({"name":"x","age":2,"extra":1.5e3,"color":7})",
                            R"({"name":"x","age":0,"free":{"anything":[1,{"goes":null}]}})"});
  struct Case {
    const char* text;
    size_t accepted;
  };
  const std::vector<Case> bad = {
      {R"({"nme")", 3},                    // not a prefix of a listed property
      {R"({"other":1})", 3},               // no additional properties ("o" could be "ok")
      {R"({"name":1)", 8},                 // a string, not a number
      {R"({"age":1.5)", 8},                // an integer: no fraction
      {R"({"age":1e3)", 8},
      {R"({"name":"a"})", 11},             // age is required
      {R"({"age":1,"color":"blue")", 18},  // not in the enum
      {R"({"age":1,"color":70)", 18},      // 7, not 70
      {R"({"name":"a","name")", 13},       // no key twice: no unused property starts with n
      {R"({"ok":n)", 6},                   // a boolean, not null
      {R"({"tags":[1)", 9},                // strings only
      {R"({"name":"a","age":1,"tags":[],"color":"red","ok":false,"extra":0,"free":{},)", 74},  // nothing left to add
  };
  for (const Case& c : bad) EXPECT_EQ(SchemaPrefix(**schema, c.text), c.accepted) << c.text;
  // The mask: after `{"age":1,"color":` only the enum's first bytes (or whitespace) remain.
  std::vector<std::string> pieces = {"\"", "\"red\"", "\"blue\"", "7", "70", "1", " ", "null"};
  JsonTokenMask mask(pieces, std::vector<int32_t>{});
  JsonRecognizer r(schema->get());
  ASSERT_TRUE(r.FeedAll(R"({"age":1,"color":)"));
  std::vector<float> logits(pieces.size(), 0.0f);
  mask.Apply(r, logits, {});
  std::vector<std::string> allowed;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (std::isfinite(logits[i])) allowed.push_back(pieces[i]);
  }
  EXPECT_EQ(allowed, (std::vector<std::string>{"\"", "\"red\"", "7", " "}));
}

// minimum/maximum on integers (pydantic's Field(ge=, le=, gt=, lt=)): every digit must leave an
// integer in range reachable, and the number may end only in range.
// allOf of one schema is that schema (pydantic v1 writes {"allOf": [{"$ref": ...}], "description": ...}).
TEST(JsonRecognizer, AnAllOfOfOneSchemaIsThatSchema) {
  auto schema = CompileJsonSchema(R"({"type": "object", "additionalProperties": false, "required": ["pet"],
      "definitions": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}, "required": ["kind"]}},
      "properties": {"pet": {"allOf": [{"$ref": "#/definitions/Pet"}], "description": "the pet"}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  bool complete = false;
  const std::string_view good = R"({"pet":{"kind":"dog"}})";
  EXPECT_EQ(SchemaPrefix(**schema, good, &complete), good.size());
  EXPECT_TRUE(complete);
  EXPECT_EQ(SchemaPrefix(**schema, R"({"pet":{"kind":"cow")"), std::string_view(R"({"pet":{"kind":"c)").size());
  EXPECT_EQ(SchemaPrefix(**schema, R"({"pet":{}})"), std::string_view(R"({"pet":{)").size());  // kind is required
}

TEST(JsonRecognizer, FollowsIntegerBounds) {
  auto schema = CompileJsonSchema(R"({"type": "object", "additionalProperties": false, "properties": {
      "age": {"type": "integer", "minimum": 18, "maximum": 120},
      "delta": {"type": "integer", "exclusiveMinimum": -10, "exclusiveMaximum": 10},
      "big": {"type": ["integer", "null"], "minimum": 1000}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ExpectAccepted(**schema, {R"({"age":18})", R"({"age":120,"delta":-9})", R"({"delta":0})", R"({"delta":-0})",
                            R"({"big":1000})", R"({"big":999999999999999999})", R"({"big":null,"age":99})"});
  ExpectRefusals(**schema, {
      {R"({"age":11})", R"({"age":11)"},     // 11 ends below 18 (110 would do, so 11 is read)
      {R"({"age":17)", R"({"age":1)"},       // neither 17 nor 170 and longer fit
      {R"({"age":0)", R"({"age":)"},         // no integer from 18 to 120 starts with 0
      {R"({"age":-)", R"({"age":)"},         // nor with a minus
      {R"({"age":121)", R"({"age":12)"},     // 121 and longer are too big
      {R"({"age":1200)", R"({"age":120)"},
      {R"({"age":9})", R"({"age":9)"},       // 9 is too small, 90 would do
      {R"({"delta":10)", R"({"delta":1)"},   // exclusive: at most 9
      {R"({"delta":-10)", R"({"delta":-1)"},
      {R"({"delta":5.)", R"({"delta":5)"},   // integers: no fraction
      {R"({"big":-)", R"({"big":)"},
      {R"({"big":999})", R"({"big":999)"},
  });
  for (const char* refused : {R"({"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}})",
                              R"({"type": "object", "properties": {"x": {"minimum": 0}}})",
                              R"({"type": "object", "properties": {"x": {"type": "integer", "minimum": 5, "maximum": 4}}})",
                              R"({"type": "object", "properties": {"x": {"enum": [1, 2], "maximum": 1}}})"}) {
    EXPECT_FALSE(CompileJsonSchema(refused).ok()) << refused;
  }
}

// additionalProperties as a schema (pydantic's dict[str, int]): any other key, its value of that
// schema; the listed properties keep theirs.
TEST(JsonRecognizer, OtherKeysValuesFollowTheAdditionalPropertiesSchema) {
  auto schema = CompileJsonSchema(R"({"type": "object", "properties": {"name": {"type": "string"},
      "scores": {"type": "object", "additionalProperties": {"type": "integer"}}}, "required": ["scores"],
      "additionalProperties": {"type": "array", "items": {"type": "boolean"}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ExpectAccepted(**schema, {R"({"scores":{}})", R"({"scores":{"a":1,"b":-20},"name":"x","flags":[true,false]})",
                            R"({"nam":[],"scores":{"name":3}})"});
  struct Case {
    const char* text;
    size_t accepted;
  };
  const std::vector<Case> bad = {
      {R"({"scores":{"a":"1")", 15},   // the dict's values are integers
      {R"({"scores":{"a":1.5)", 16},
      {R"({"name":3)", 8},             // a listed property keeps its own schema
      {R"({"flags":true)", 9},         // other keys: arrays of booleans
      {R"({"flags":[1)", 10},
  };
  for (const Case& c : bad) EXPECT_EQ(SchemaPrefix(**schema, c.text), c.accepted) << c.text;
}

// minItems / maxItems and minLength / maxLength (what pydantic writes for conlist and constr):
// ']' and the closing quote wait for the minimum, ',' and another character stop at the maximum.
// A string's length is in characters: an escape, a UTF-8 sequence or a surrogate pair is one.
TEST(JsonRecognizer, FollowsSizeBoundsOfArraysAndStrings) {
  auto schema = CompileJsonSchema(R"({"type": "object", "additionalProperties": false, "properties": {
      "code": {"type": "string", "minLength": 2, "maxLength": 3},
      "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
      "glyph": {"type": "string", "maxLength": 1}, "none": {"type": "array", "maxItems": 0}}})");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ExpectAccepted(**schema, {R"({"code":"ab","tags":["x"]})", R"({"code":"abc","tags":["x", "y"],"none":[]})",
                            R"({"code":"\u00e9\n"})", "{\"glyph\":\"\xF0\x9F\x98\x80\"}", R"({"glyph":"\ud83d\ude00"})",
                            R"({"glyph":""})"});
  ExpectRefusals(**schema, {
      {R"({"code":"a")", R"({"code":"a)"},                      // minLength 2
      {R"({"code":"abcd")", R"({"code":"abc)"},                 // maxLength 3
      {R"({"code":"ab\n\t")", R"({"code":"ab\n)"},             // an escape is one character
      {R"({"tags":[])", R"({"tags":[)"},                        // minItems 1
      {R"({"tags":["a","b","c"])", R"({"tags":["a","b")"},      // maxItems 2
      {R"({"none":[1])", R"({"none":[)"},                       // maxItems 0
      {"{\"glyph\":\"\xC3\xA9x\"", "{\"glyph\":\"\xC3\xA9"},  // two bytes, one character; then none
  });
  // The mask steps plain tokens one by one under a maxLength (no fast path past the bound).
  std::vector<std::string> pieces = {"\"", "c", "cd", "b\"", "bc\""};
  JsonTokenMask mask(pieces, std::vector<int32_t>{});
  auto allowed_after = [&](std::string_view text) {
    JsonRecognizer r(schema->get());
    EXPECT_TRUE(r.FeedAll(text)) << text;
    std::vector<float> logits(pieces.size(), 0.0f);
    mask.Apply(r, logits, {});
    std::vector<std::string> allowed;
    for (size_t i = 0; i < pieces.size(); ++i) {
      if (std::isfinite(logits[i])) allowed.push_back(pieces[i]);
    }
    return allowed;
  };
  EXPECT_EQ(allowed_after(R"({"code":"a)"), (std::vector<std::string>{"c", "cd", "b\"", "bc\""}));
  EXPECT_EQ(allowed_after(R"({"code":"ab)"), (std::vector<std::string>{"\"", "c", "b\""}));
}

}  // namespace
}  // namespace tandem
