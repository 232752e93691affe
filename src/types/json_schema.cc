#include "types/json_schema.h"

#include <algorithm>
#include <set>

#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using Json = nlohmann::json;

constexpr int kMaxSchemaDepth = 32;
constexpr size_t kMaxSchemaNodes = 1024;
constexpr size_t kMaxProperties = 64;

const std::set<std::string, std::less<>>& Annotations() {
  static const auto* names = new std::set<std::string, std::less<>>{
      "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
      "writeOnly"};
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

class Compiler {
 public:
  absl::StatusOr<int32_t> Node(const Json& s, std::string_view path, int depth);
  JsonSchema schema;

 private:
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
    if (!v.is_boolean()) return Refuse(path, "'additionalProperties' other than true or false is not supported");
    node.additional_properties = v.get<bool>();
  } else if (key == "items") {
    auto child = Node(v, Child(path, "items"), depth + 1);
    if (!child.ok()) return child.status();
    node.items = *child;
  } else if (key == "enum" || key == "const") {
    node.has_enum = true;
    for (const Json& value : key == "enum" ? v : Json::array({v})) {
      auto text = EnumText(value, path);
      if (!text.ok()) return text.status();
      node.enum_texts.push_back(*std::move(text));
    }
    if (node.enum_texts.empty()) return Refuse(path, "'enum' lists no value");
  } else if (!Annotations().contains(key)) {
    return Refuse(path, StrCat("'", key, "' is not supported (tandem enforces type, properties, required, "
                               "additionalProperties, items, enum and const)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> Compiler::Node(const Json& s, std::string_view path, int depth) {
  if (depth > kMaxSchemaDepth) return Refuse(path, StrCat("nested deeper than ", kMaxSchemaDepth, " levels"));
  if (s.is_boolean() && s.get<bool>()) return JsonSchema::kAny;
  if (!s.is_object()) return Refuse(path, "a schema must be an object (or true)");
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
  schema.nodes[static_cast<size_t>(index)] = std::move(node);
  return index;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const JsonSchema>> CompileJsonSchema(std::string_view schema_json) {
  const Json s = Json::parse(schema_json, nullptr, /*allow_exceptions=*/false);
  if (s.is_discarded()) return absl::InvalidArgumentError("the schema is not valid JSON");
  Compiler c;
  if (s.is_boolean() && s.get<bool>()) {
    c.schema.nodes.emplace_back();  // true: any object at the root
  } else {
    auto root = c.Node(s, "", 0);
    if (!root.ok()) return root.status();
  }
  const JsonSchemaNode& root = c.schema.nodes[0];
  if ((root.types & kJsonObject) == 0 || root.has_enum) return Refuse("", "the root must accept an object");
  return std::make_shared<const JsonSchema>(std::move(c.schema));
}

}  // namespace tandem
