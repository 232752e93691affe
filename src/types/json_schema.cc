#include "types/json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using Json = nlohmann::json;

// Nested schemas (properties, items, anyOf, $ref each add a level): objects and arrays then nest
// at most one deeper than this, within the recogniser's 32 levels (JsonRecognizer::kMaxDepth).
constexpr int kMaxSchemaDepth = 31;
constexpr size_t kMaxSchemaNodes = 1024;
constexpr size_t kMaxProperties = 64;
// minLength / maxLength / minItems / maxItems at most this (a count the recogniser keeps in 32 bits).
constexpr int32_t kMaxSizeBound = 1 << 20;

const std::set<std::string, std::less<>>& Annotations() {
  static const auto* names = new std::set<std::string, std::less<>>{
      "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
      "writeOnly", "$defs", "definitions"};  // definitions are compiled where a $ref names them
  return *names;
}

absl::Status Refuse(std::string_view path, std::string_view what) {
  return absl::InvalidArgumentError(StrCat(path.empty() ? "the schema" : path, ": ", what));
}

std::string Child(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : StrCat(path, ".", key);
}

absl::StatusOr<uint8_t> TypeBit(const Json& name, std::string_view path) {
  static const std::pair<const char*, uint8_t> kNames[] = {
      {"object", kJsonObject},   {"array", kJsonArray},     {"string", kJsonString}, {"integer", kJsonInteger},
      {"number", kJsonNumber},   {"boolean", kJsonBoolean}, {"null", kJsonNull}};
  if (name.is_string()) {
    for (const auto& [n, bit] : kNames) {
      if (name == n) return bit;
    }
  }
  return Refuse(path, StrCat("unknown type ", name.dump()));
}

// The compact text of an enum/const value, or an error for what the recogniser cannot match.
absl::StatusOr<std::string> EnumText(const Json& v, std::string_view path) {
  if (v.is_object() || v.is_array()) return Refuse(path, "enum and const values must be strings, numbers, booleans or null");
  std::string text = v.dump();
  if (v.is_string() && (text.find('\\') != std::string::npos || text.size() > 256)) {
    return Refuse(path, "enum and const strings must need no escapes and be at most 254 bytes");
  }
  return text;
}

// The JSON types a value of `node` can start with (integer and number count as one: the same
// first bytes).
uint8_t StartTypes(const JsonSchema& schema, int32_t index) {
  if (index < 0) return kJsonAny;
  const JsonSchemaNode& n = schema.nodes[static_cast<size_t>(index)];
  uint8_t types = n.types;
  if (n.has_enum) {
    types = 0;
    for (const std::string& t : n.enum_texts) types |= JsonTypeStartingWith(t[0]);
  }
  if ((types & (kJsonInteger | kJsonNumber)) != 0) types |= kJsonInteger | kJsonNumber;
  return types;
}

class Compiler {
 public:
  explicit Compiler(const Json& root) : root_(root) {}
  absl::StatusOr<int32_t> Node(const Json& s, std::string_view path, int depth);
  JsonSchema schema;

 private:
  absl::StatusOr<int32_t> Ref(const Json& s, std::string_view path, int depth);
  absl::StatusOr<int32_t> AnyOf(const Json& s, const std::string& key, std::string_view path, int depth);
  const Json& root_;
  std::map<std::string, int32_t, std::less<>> refs_;  // compiled $refs
  std::set<std::string, std::less<>> resolving_;      // $refs being compiled (recursion)

  absl::Status Keyword(const std::string& key, const Json& v, std::string_view path, int depth, JsonSchemaNode& node,
                       bool& typed);
  absl::Status Properties(const Json& v, std::string_view path, int depth, JsonSchemaNode& node);
};

absl::Status Compiler::Properties(const Json& v, std::string_view path, int depth, JsonSchemaNode& node) {
  if (!v.is_object()) return Refuse(path, "'properties' must be an object");
  if (v.size() > kMaxProperties) return Refuse(path, StrCat("at most ", kMaxProperties, " properties per object"));
  for (const auto& [name, sub] : v.items()) {
    const bool printable = std::all_of(name.begin(), name.end(), [](char c) {
      return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
    });
    if (name.empty() || !printable) {
      return Refuse(path, StrCat("property names must be printable ASCII without quotes or backslashes, got ",
                                 Json(name).dump()));
    }
    auto child = Node(sub, Child(path, name), depth + 1);
    if (!child.ok()) return child.status();
    node.property_names.push_back(name);
    node.property_nodes.push_back(*child);
  }
  return absl::OkStatus();
}

// minimum/maximum and their exclusive forms as the integer range they allow (only integers are
// enforced: CheckSizes refuses them on other types).
absl::Status IntegerBound(const std::string& key, const Json& v, std::string_view path, JsonSchemaNode& node) {
  if (!v.is_number()) return Refuse(path, StrCat("'", key, "' must be a number"));
  // The recogniser reads at most 18 digits: the widest range it can enforce.
  constexpr double kWidest = 999999999999999999.0;
  const double x = std::clamp(v.get<double>(), -kWidest, kWidest);
  node.bounded = true;
  if (key == "minimum" || key == "exclusiveMinimum") {
    const double lo = key == "minimum" ? std::ceil(x) : std::floor(x) + 1;
    node.min_integer = std::max(node.min_integer, static_cast<int64_t>(lo));
  } else {
    const double hi = key == "maximum" ? std::floor(x) : std::ceil(x) - 1;
    node.max_integer = std::min(node.max_integer, static_cast<int64_t>(hi));
  }
  return absl::OkStatus();
}

absl::Status Compiler::Keyword(const std::string& key, const Json& v, std::string_view path, int depth,
                               JsonSchemaNode& node, bool& typed) {
  if (key == "type") {
    typed = true;
    node.types = 0;
    for (const Json& name : v.is_array() ? v : Json::array({v})) {
      auto bit = TypeBit(name, path);
      if (!bit.ok()) return bit.status();
      node.types |= *bit;
    }
    if (node.types == 0) return Refuse(path, "'type' lists no type");
  } else if (key == "properties") {
    return Properties(v, Child(path, "properties"), depth, node);
  } else if (key == "required") {
    if (!v.is_array()) return Refuse(path, "'required' must be a list of property names");
  } else if (key == "additionalProperties") {
    if (v.is_boolean()) {
      node.additional_properties = v.get<bool>();
    } else if (v.is_object()) {
      auto child = Node(v, Child(path, "additionalProperties"), depth + 1);
      if (!child.ok()) return child.status();
      node.additional_properties = true;
      node.additional = *child;
    } else {
      return Refuse(path, "'additionalProperties' must be true, false or a schema");
    }
  } else if (key == "items") {
    auto child = Node(v, Child(path, "items"), depth + 1);
    if (!child.ok()) return child.status();
    node.items = *child;
  } else if (key == "enum" || key == "const") {
    if (key == "enum" && !v.is_array()) return Refuse(path, "'enum' must be a list of values");
    std::vector<std::string> texts;
    for (const Json& value : key == "enum" ? v : Json::array({v})) {
      auto text = EnumText(value, path);
      if (!text.ok()) return text.status();
      texts.push_back(*std::move(text));
    }
    if (node.has_enum) {  // enum and const: both hold
      std::erase_if(texts, [&](const std::string& t) {
        return std::find(node.enum_texts.begin(), node.enum_texts.end(), t) == node.enum_texts.end();
      });
    }
    node.has_enum = true;
    node.enum_texts = std::move(texts);
    if (node.enum_texts.empty()) return Refuse(path, StrCat("'", key, "' leaves no value"));
  } else if (key == "minLength" || key == "maxLength" || key == "minItems" || key == "maxItems") {
    // Sizes: a whole non-negative number (pydantic writes 3, some writers 3.0).
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() != std::floor(v.get<double>()) ||
        v.get<double>() > kMaxSizeBound) {
      return Refuse(path, StrCat("'", key, "' must be a whole number from 0 to ", kMaxSizeBound));
    }
    const auto bound = static_cast<int32_t>(v.get<double>());
    if (key == "minLength") node.min_length = bound;
    if (key == "maxLength") node.max_length = bound;
    if (key == "minItems") node.min_items = bound;
    if (key == "maxItems") node.max_items = bound;
  } else if (key == "minimum" || key == "maximum" || key == "exclusiveMinimum" || key == "exclusiveMaximum") {
    return IntegerBound(key, v, path, node);
  } else if (!Annotations().contains(key)) {
    return Refuse(path, StrCat("'", key, "' is not supported (tandem enforces type, properties, required, "
                               "additionalProperties, items, enum, const, minLength, maxLength, minItems, "
                               "maxItems, and minimum/maximum on integers)"));
  }
  return absl::OkStatus();
}

// The size bounds fit together and with the other keywords.
absl::Status CheckSizes(const JsonSchemaNode& node, std::string_view path) {
  if (node.bounded && ((node.types & kJsonNumber) != 0 || (node.types & kJsonInteger) == 0)) {
    return Refuse(path, "'minimum'/'maximum' are enforced on integers only (\"type\": \"integer\")");
  }
  if (node.bounded && node.min_integer > node.max_integer) {
    return Refuse(path, "the minimum is greater than the maximum: no integer fits");
  }
  if (node.max_length >= 0 && node.min_length > node.max_length) {
    return Refuse(path, "'minLength' is greater than 'maxLength': no string fits");
  }
  if (node.max_items >= 0 && node.min_items > node.max_items) {
    return Refuse(path, "'minItems' is greater than 'maxItems': no array fits");
  }
  if (node.has_enum && (node.bounded || node.min_length > 0 || node.max_length >= 0 || node.min_items > 0 ||
                        node.max_items >= 0)) {
    return Refuse(path, "a size bound beside 'enum' or 'const' is not supported (list only the values that fit)");
  }
  return absl::OkStatus();
}

// Siblings of $ref or anyOf: annotations only (anything else would be a second constraint).
absl::Status OnlyAnnotationsBeside(const Json& s, std::string_view keyword, std::string_view path) {
  for (const auto& [key, v] : s.items()) {
    if (key != keyword && !Annotations().contains(key)) {
      return Refuse(path, StrCat("'", key, "' beside '", keyword, "' is not supported"));
    }
  }
  return absl::OkStatus();
}

// The schema a local $ref names: "#/$defs/<name>" or "#/definitions/<name>", <name> one JSON
// pointer token (~0 is '~', ~1 is '/'). Null when it names none or is malformed. Read here, not
// through nlohmann's json_pointer, which throws on a malformed escape.
const Json* Definition(const Json& root, std::string_view ref) {
  for (std::string_view section : {"$defs", "definitions"}) {
    const std::string prefix = StrCat("#/", section, "/");
    if (!ref.starts_with(prefix)) continue;
    const std::string_view token = ref.substr(prefix.size());
    std::string name;
    for (size_t i = 0; i < token.size(); ++i) {
      if (token[i] == '/') return nullptr;  // a pointer into a definition: not supported
      if (token[i] != '~') {
        name += token[i];
      } else if (i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
        name += token[++i] == '0' ? '~' : '/';
      } else {
        return nullptr;
      }
    }
    const auto defs = root.find(section);
    if (defs == root.end() || !defs->is_object()) return nullptr;
    const auto it = defs->find(name);
    return it == defs->end() ? nullptr : &*it;
  }
  return nullptr;
}

// "$ref": "#/$defs/Name" (or "#/definitions/Name"): the named schema, compiled once; recursion is
// refused (a recursive grammar is more than this recogniser follows).
absl::StatusOr<int32_t> Compiler::Ref(const Json& s, std::string_view path, int depth) {
  if (absl::Status st = OnlyAnnotationsBeside(s, "$ref", path); !st.ok()) return st;
  const Json& ref = s["$ref"];
  const bool local = ref.is_string() && (ref.get_ref<const std::string&>().starts_with("#/$defs/") ||
                                         ref.get_ref<const std::string&>().starts_with("#/definitions/"));
  if (!local) return Refuse(path, StrCat("'$ref' ", ref.dump(), " is not supported (only #/$defs/... and #/definitions/...)"));
  const std::string& name = ref.get_ref<const std::string&>();
  if (auto it = refs_.find(name); it != refs_.end()) return it->second;
  if (resolving_.contains(name)) return Refuse(path, StrCat("recursive '$ref' ", ref.dump(), " is not supported"));
  const Json* definition = Definition(root_, name);
  if (definition == nullptr) return Refuse(path, StrCat("'$ref' ", ref.dump(), " names no definition"));
  resolving_.insert(name);
  auto index = Node(*definition, name.substr(2), depth + 1);
  resolving_.erase(name);
  if (index.ok()) refs_[name] = *index;
  return index;
}

// anyOf/oneOf whose alternatives start with different JSON types (Optional[X] is X or null): the
// first byte of a value picks the alternative, so they are exclusive and anyOf means oneOf.
absl::StatusOr<int32_t> Compiler::AnyOf(const Json& s, const std::string& key, std::string_view path, int depth) {
  if (absl::Status st = OnlyAnnotationsBeside(s, key, path); !st.ok()) return st;
  const Json& alternatives = s[key];
  if (!alternatives.is_array() || alternatives.empty()) return Refuse(path, StrCat("'", key, "' must be a non-empty list"));
  JsonSchemaNode node;
  node.types = 0;
  for (size_t i = 0; i < alternatives.size(); ++i) {
    auto alt = Node(alternatives[i], StrCat(Child(path, key), "[", i, "]"), depth + 1);
    if (!alt.ok()) return alt.status();
    const uint8_t types = StartTypes(schema, *alt);
    if ((types & node.types) != 0) {
      return Refuse(path, StrCat("'", key, "' alternatives must start with different JSON types (", key, "[", i,
                                 "] overlaps an earlier one)"));
    }
    node.types |= types;
    node.alternatives.emplace_back(types, *alt);
  }
  if (schema.nodes.size() >= kMaxSchemaNodes) return Refuse(path, StrCat("more than ", kMaxSchemaNodes, " schemas"));
  schema.nodes.push_back(std::move(node));
  return static_cast<int32_t>(schema.nodes.size() - 1);
}

absl::StatusOr<int32_t> Compiler::Node(const Json& s, std::string_view path, int depth) {
  if (depth > kMaxSchemaDepth) return Refuse(path, StrCat("nested deeper than ", kMaxSchemaDepth, " levels"));
  if (s.is_boolean() && s.get<bool>()) return JsonSchema::kAny;
  if (!s.is_object()) return Refuse(path, "a schema must be an object (or true)");
  if (s.contains("$ref")) return Ref(s, path, depth);
  if (s.contains("allOf")) {
    // One schema in a list (how pydantic v1 and other generators put a description beside a
    // $ref): that schema. More would need their intersection.
    if (absl::Status st = OnlyAnnotationsBeside(s, "allOf", path); !st.ok()) return st;
    const Json& all = s["allOf"];
    if (!all.is_array() || all.size() != 1) return Refuse(path, "'allOf' with other than one schema is not supported");
    return Node(all[0], Child(path, "allOf[0]"), depth + 1);
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (s.contains(key)) return AnyOf(s, key, path, depth);
  }
  if (schema.nodes.size() >= kMaxSchemaNodes) return Refuse(path, StrCat("more than ", kMaxSchemaNodes, " schemas"));
  const int32_t index = static_cast<int32_t>(schema.nodes.size());
  schema.nodes.emplace_back();
  JsonSchemaNode node;
  bool typed = false;
  for (const auto& [key, v] : s.items()) {
    if (absl::Status st = Keyword(key, v, path, depth, node, typed); !st.ok()) return st;
  }
  if (const auto it = s.find("required"); it != s.end()) {
    for (const Json& name : *it) {
      const auto pos = std::find(node.property_names.begin(), node.property_names.end(), name);
      if (!name.is_string() || pos == node.property_names.end()) {
        return Refuse(path, StrCat("required property ", name.dump(), " is not in 'properties'"));
      }
      node.required_mask |= uint64_t{1} << (pos - node.property_names.begin());
    }
  }
  if (!typed) {  // what the other keywords imply
    if (!node.property_names.empty() || s.contains("additionalProperties")) node.types = kJsonObject;
    if (s.contains("items")) node.types = kJsonArray;
  }
  if ((node.types & kJsonNumber) != 0) node.types |= kJsonInteger;
  if (absl::Status st = CheckSizes(node, path); !st.ok()) return st;
  if (node.has_enum && typed) {  // "type" holds too: only the values of an allowed type
    std::erase_if(node.enum_texts, [&](const std::string& t) {
      uint8_t type = JsonTypeStartingWith(t[0]);
      // A number is an integer unless it has a fraction or exponent ("number" has the integer bit).
      if ((type & kJsonNumber) != 0) type = t.find_first_of(".eE") != std::string::npos ? kJsonNumber : kJsonInteger;
      return (node.types & type) == 0;
    });
    if (node.enum_texts.empty()) return Refuse(path, "no 'enum' or 'const' value has an allowed 'type'");
  }
  schema.nodes[static_cast<size_t>(index)] = std::move(node);
  return index;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const JsonSchema>> CompileJsonSchema(std::string_view schema_json) {
  const Json s = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded()) return absl::InvalidArgumentError("the schema is not valid JSON");
  Compiler c(s);
  c.schema.nodes.emplace_back();  // the root: any object unless the schema says more
  if (!(s.is_boolean() && s.get<bool>())) {
    auto root = c.Node(s, "", 0);
    if (!root.ok()) return root.status();
    if (*root < 0) {
      c.schema.root = 0;  // {} or true: any object
    } else {
      c.schema.root = *root;
    }
  }
  const JsonSchemaNode& root = c.schema.nodes[static_cast<size_t>(c.schema.root)];
  if ((root.types & kJsonObject) == 0 || root.has_enum || !root.alternatives.empty()) {
    return Refuse("", "the root must be an object schema");
  }
  return std::make_shared<const JsonSchema>(std::move(c.schema));
}

}  // namespace tandem
