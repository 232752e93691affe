#include "engine/json_grammar.h"

#include <algorithm>
#include <array>
#include <limits>

namespace tandem {
namespace {

bool IsWhitespace(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool IsHex(uint8_t c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool IsPlainStringByte(uint8_t c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

}  // namespace

bool JsonRecognizer::Feed(uint8_t c) {
  JsonRecognizer saved = *this;
  if (Step(c)) return true;
  *this = std::move(saved);
  return false;
}

bool JsonRecognizer::FeedAll(std::string_view bytes) {
  JsonRecognizer saved = *this;
  for (char ch : bytes) {
    if (!Step(static_cast<uint8_t>(ch))) {
      *this = std::move(saved);
      return false;
    }
  }
  return true;
}

bool JsonRecognizer::Whitespace(uint8_t c) {
  if (ws_run_ >= kMaxWhitespaceRun || c == '\r') return false;
  if (c == '\n') {
    if (newline_in_run_) return false;
    newline_in_run_ = true;
  }
  ++ws_run_;
  return true;
}

void JsonRecognizer::CloseValue() { mode_ = stack_.empty() ? Mode::kDone : Mode::kAfterValue; }

bool JsonRecognizer::StartValue(uint8_t c) {
  int32_t index = JsonSchema::kAny;
  if (schema_ != nullptr) {
    index = ValueNode();
    if (!PickAlternative(c, &index)) return false;
    const JsonSchemaNode* n = NodeAt(index);
    if (n != nullptr && n->has_enum) {  // matched against the listed texts from the first byte
      enum_node_ = index;
      buf_.clear();
      mode_ = Mode::kEnum;
      return EnumByte(c);
    }
    if (!SchemaAllowsStart(n, c)) return false;
  }
  switch (c) {
    case '{':
    case '[':
      if (stack_.size() >= kMaxDepth) return false;
      Open(c, index);
      mode_ = c == '{' ? Mode::kObjectFirst : Mode::kArrayFirst;
      return true;
    case '"':
      mode_ = Mode::kString;
      key_ = false;
      StartString(schema_ != nullptr ? NodeAt(index) : nullptr);
      return true;
    case '-':
      if (int_bounded_ && int_min_ > 0) return false;
      int_negative_ = true;
      int_magnitude_ = 0;
      mode_ = Mode::kNumMinus;
      return true;
    case '0':
      if (!IntegerDigit(false, 0, 1)) return false;
      mode_ = Mode::kNumZero;
      return true;
    case 't': literal_ = "rue"; mode_ = Mode::kLiteral; return true;
    case 'f': literal_ = "alse"; mode_ = Mode::kLiteral; return true;
    case 'n': literal_ = "ull"; mode_ = Mode::kLiteral; return true;
    default:
      if (c < '1' || c > '9' || !IntegerDigit(false, c - '0', 1)) return false;
      mode_ = Mode::kNumInt;
      digits_ = 1;
      return true;
  }
}

bool JsonRecognizer::AfterValue(uint8_t c) {
  mode_ = Mode::kAfterValue;
  if (IsWhitespace(c)) return Whitespace(c);
  const char open = stack_.back();  // never empty here: a value closing the last one is kDone
  if (c == ',') {
    if (open == '{' && !MayAddKey()) return false;
    if (open == '[') {
      if (!ArrayMayAdd()) return false;
      if (!frames_.empty()) ++frames_.back().count;  // a ',' commits to one more element
    }
    mode_ = open == '{' ? Mode::kObjectKey : Mode::kValue;
    return true;
  }
  if ((c == '}' && open == '{' && MayClose()) || (c == ']' && open == '[' && ArrayMayClose())) {
    Close();
    return true;
  }
  return false;
}

bool JsonRecognizer::StringByte(uint8_t c) {
  if (utf8_left_ > 0) {
    if (c < utf8_lo_ || c > utf8_hi_) return false;
    --utf8_left_;
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xBF;
    return true;
  }
  if (key_ && StrictKey()) return KeyByte(c);
  const bool tracked = key_ && KeyConstrained();  // any key of a schema's object is recorded
  if (c == '"') {
    if (tracked) return KeyEnd();
    if (key_) {
      mode_ = Mode::kColon;
    } else {
      if (str_len_ < str_min_) return false;  // minLength
      CloseValue();
    }
    return true;
  }
  if (str_max_ >= 0 && str_len_ >= str_max_) return false;  // a character past maxLength
  if (tracked) buf_.push_back(static_cast<char>(c));  // an escape never matches a listed name
  ++str_len_;  // a new character: an escape, an ASCII byte or a UTF-8 lead byte (checked below)
  if (c == '\\') {
    mode_ = Mode::kEscape;
    return true;
  }
  if (c < 0x80) return c >= 0x20;
  // UTF-8 lead bytes (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
  if (c >= 0xC2 && c <= 0xDF) {
    utf8_left_ = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    utf8_left_ = 2;
    if (c == 0xE0) utf8_lo_ = 0xA0;
    if (c == 0xED) utf8_hi_ = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    utf8_left_ = 3;
    if (c == 0xF0) utf8_lo_ = 0x90;
    if (c == 0xF4) utf8_hi_ = 0x8F;
  } else {
    return false;
  }
  return true;
}

// \uXXXX: a UTF-16 surrogate must come in a pair (high, then \u and low), as strict parsers ask.
// Each digit is checked as it comes, so no accepted prefix is a dead end: a low half's first two
// digits must be D and C..F; elsewhere D followed by C..F (a lone low half) is refused.
bool JsonRecognizer::UnicodeDigit(uint8_t c) {
  if (!IsHex(c)) return false;
  const int value = IsDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
  if (hex_left_ == 4 && low_due_ && value != 0xD) return false;
  if (hex_left_ == 3 && code_ == 0xD && low_due_ != (value >= 0xC)) return false;
  code_ = static_cast<uint16_t>(code_ * 16 + value);
  if (--hex_left_ > 0) return true;
  const bool high = code_ >= 0xD800 && code_ <= 0xDBFF;
  const bool low = code_ >= 0xDC00 && code_ <= 0xDFFF;
  if (low != low_due_) return false;
  low_due_ = false;
  mode_ = high ? Mode::kLowBackslash : Mode::kString;
  return true;
}

// Inside an escape: after the backslash, the uXXXX digits, and a high surrogate's low half.
bool JsonRecognizer::StepEscape(uint8_t c) {
  switch (mode_) {
    case Mode::kEscape:
      if (c == 'u') {
        mode_ = Mode::kUnicode;
        hex_left_ = 4;
        code_ = 0;
        return true;
      }
      if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' && c != 't') return false;
      mode_ = Mode::kString;
      return true;
    case Mode::kUnicode: return UnicodeDigit(c);
    case Mode::kLowBackslash:
      if (c != '\\') return false;
      mode_ = Mode::kLowU;
      return true;
    case Mode::kLowU:
      if (c != 'u') return false;
      mode_ = Mode::kUnicode;
      hex_left_ = 4;
      code_ = 0;
      low_due_ = true;
      return true;
    default:
      return false;
  }
}

bool JsonRecognizer::Step(uint8_t c) {
  const bool ws = IsWhitespace(c);
  bool ok = false;
  switch (mode_) {
    case Mode::kStart:
      if (ws) return Whitespace(c);
      ok = c == '{' && StartValue(c);
      break;
    case Mode::kObjectFirst:
    case Mode::kObjectKey:
      if (ws) return Whitespace(c);
      if (c == '"' && MayAddKey()) {
        mode_ = Mode::kString;
        key_ = true;
        StartString(nullptr);
        buf_.clear();
        ok = true;
      } else if (c == '}' && mode_ == Mode::kObjectFirst && MayClose()) {
        Close();
        ok = true;
      }
      break;
    case Mode::kColon:
      if (ws) return Whitespace(c);
      ok = c == ':';
      if (ok) mode_ = Mode::kValue;
      break;
    case Mode::kValue:
      if (ws) return Whitespace(c);
      ok = StartValue(c);
      break;
    case Mode::kArrayFirst:
      if (ws) return Whitespace(c);
      if (c == ']') {
        ok = ArrayMayClose();
        if (ok) Close();
      } else if (ArrayMayAdd()) {
        if (!frames_.empty()) ++frames_.back().count;
        ok = StartValue(c);
      }
      break;
    case Mode::kAfterValue: ok = AfterValue(c); break;
    case Mode::kString: return StringByte(c);
    case Mode::kEscape:
    case Mode::kUnicode:
    case Mode::kLowBackslash:
    case Mode::kLowU:
      return StepEscape(c);
    case Mode::kLiteral:
      if (c != static_cast<uint8_t>(*literal_)) return false;
      if (*++literal_ == '\0') CloseValue();
      ok = true;
      break;
    case Mode::kEnum:
      ok = EnumByte(c);
      break;
    case Mode::kDone:
      return ws && Whitespace(c);
    default:
      ok = StepNumber(c);
      break;
  }
  if (ok && !ws) {
    ws_run_ = 0;
    newline_in_run_ = false;
  }
  return ok;
}

bool JsonRecognizer::StepNumber(uint8_t c) {
  const bool digit = IsDigit(c);
  const bool exp = c == 'e' || c == 'E';
  switch (mode_) {
    case Mode::kNumMinus:
      if (!digit || !IntegerDigit(true, c - '0', 1)) return false;
      mode_ = c == '0' ? Mode::kNumZero : Mode::kNumInt;
      digits_ = 1;
      return true;
    case Mode::kNumZero:
    case Mode::kNumInt:
    case Mode::kNumFrac:
      if (digit && mode_ == Mode::kNumFrac) return true;
      if (digit && mode_ == Mode::kNumInt) {
        if (++digits_ > kMaxIntegerDigits) return false;
        return !int_bounded_ || IntegerDigit(int_negative_, int_magnitude_ * 10 + (c - '0'), digits_);
      }
      if (c == '.' && mode_ != Mode::kNumFrac && !integer_) {
        mode_ = Mode::kNumDot;
        return true;
      }
      if (exp && !integer_) {
        mode_ = Mode::kNumExp;
        return true;
      }
      if (int_bounded_ && !IntegerInRange()) return false;
      return AfterValue(c);  // the number ends here
    case Mode::kNumDot:
      if (!digit) return false;
      mode_ = Mode::kNumFrac;
      return true;
    case Mode::kNumExp:
      if (c == '+' || c == '-') {
        mode_ = Mode::kNumExpSign;
        return true;
      }
      [[fallthrough]];
    case Mode::kNumExpSign:
      if (!digit) return false;
      mode_ = Mode::kNumExpDigits;
      digits_ = 1;
      return true;
    case Mode::kNumExpDigits:
      if (digit) return ++digits_ <= kMaxExponentDigits;
      return AfterValue(c);
    default:
      return false;
  }
}

void JsonRecognizer::Open(uint8_t c, int32_t node) {
  if (schema_ != nullptr) frames_.push_back({node, 0, -1});
  stack_.push_back(static_cast<char>(c));
}

void JsonRecognizer::Close() {
  stack_.pop_back();
  if (schema_ != nullptr) frames_.pop_back();
  CloseValue();
}

const JsonSchemaNode* JsonRecognizer::NodeAt(int32_t index) const {
  if (schema_ == nullptr || index < 0 || static_cast<size_t>(index) >= schema_->nodes.size()) return nullptr;
  return &schema_->nodes[static_cast<size_t>(index)];
}

int32_t JsonRecognizer::ValueNode() const {
  if (frames_.empty()) return schema_->root;
  const JsonSchemaNode* n = TopNode();
  if (n == nullptr) return JsonSchema::kAny;
  if (stack_.back() == '[') return n->items;
  const int32_t key = frames_.back().key;
  return key >= 0 ? n->property_nodes[static_cast<size_t>(key)] : n->additional;
}

bool JsonRecognizer::PickAlternative(uint8_t c, int32_t* index) const {
  const JsonSchemaNode* n = NodeAt(*index);
  if (n == nullptr || n->alternatives.empty()) return true;
  const uint8_t type = JsonTypeStartingWith(static_cast<char>(c));
  for (const auto& [types, alt] : n->alternatives) {
    if ((types & type) != 0) {
      *index = alt;
      return true;
    }
  }
  return false;
}

bool JsonRecognizer::SchemaAllowsStart(const JsonSchemaNode* n, uint8_t c) {
  integer_ = false;
  int_bounded_ = false;
  if (n == nullptr) return true;
  const uint8_t type = JsonTypeStartingWith(static_cast<char>(c));
  integer_ = (n->types & kJsonNumber) == 0;
  int_bounded_ = n->bounded;
  int_min_ = n->min_integer;
  int_max_ = n->max_integer;
  return (n->types & type) != 0;
}

// The integers that start with these digits: the magnitude itself, then every longer one,
// [m·10^k, (m+1)·10^k − 1] for k more digits (none after a leading 0), up to 18 digits in all.
bool JsonRecognizer::IntegerMayReach(bool negative, int64_t magnitude, int digits) const {
  int64_t scale = 1;
  for (int k = 0; digits + k <= kMaxIntegerDigits; ++k, scale *= 10) {
    const int64_t lo = magnitude * scale;
    const int64_t hi = (magnitude + 1) * scale - 1;
    const int64_t from = negative ? -hi : lo;
    const int64_t to = negative ? -lo : hi;
    if (from <= int_max_ && to >= int_min_) return true;
    if (magnitude == 0) break;  // "0" and "-0" take no more digits
  }
  return false;
}

bool JsonRecognizer::IntegerInRange() const {
  const int64_t v = int_negative_ ? -int_magnitude_ : int_magnitude_;
  return v >= int_min_ && v <= int_max_;
}

bool JsonRecognizer::IntegerDigit(bool negative, int64_t magnitude, int digits) {
  if (!int_bounded_) return true;
  if (!IntegerMayReach(negative, magnitude, digits)) return false;
  int_negative_ = negative;
  int_magnitude_ = magnitude;
  return true;
}

// A key of an object that allows only its listed properties: a prefix of an unused one.
bool JsonRecognizer::KeyByte(uint8_t c) {
  if (c == '"') return KeyEnd();
  if (c < 0x20 || c >= 0x7F || c == '\\') return false;  // listed names are plain ASCII
  const JsonSchemaNode* n = TopNode();
  buf_.push_back(static_cast<char>(c));
  for (size_t i = 0; i < n->property_names.size(); ++i) {
    if ((frames_.back().seen >> i & 1) == 0 && n->property_names[i].starts_with(buf_)) return true;
  }
  buf_.pop_back();
  return false;
}

bool JsonRecognizer::KeyEnd() {
  const JsonSchemaNode* n = TopNode();
  Frame& f = frames_.back();
  const auto it = std::find(n->property_names.begin(), n->property_names.end(), buf_);
  if (it == n->property_names.end()) {
    if (!n->additional_properties) return false;
    f.key = -1;
  } else {
    const auto i = static_cast<size_t>(it - n->property_names.begin());
    if ((f.seen >> i & 1) != 0) return false;  // no key twice
    f.seen |= uint64_t{1} << i;
    f.key = static_cast<int32_t>(i);
  }
  mode_ = Mode::kColon;
  return true;
}

bool JsonRecognizer::MayClose() const {
  const JsonSchemaNode* n = TopNode();
  return n == nullptr || (frames_.back().seen & n->required_mask) == n->required_mask;
}

bool JsonRecognizer::MayAddKey() const {
  const JsonSchemaNode* n = TopNode();
  if (n == nullptr || n->additional_properties) return true;
  const size_t count = n->property_names.size();
  const uint64_t all = count >= 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
  return (frames_.back().seen & all) != all;
}

bool JsonRecognizer::ArrayMayClose() const {
  const JsonSchemaNode* n = TopNode();
  return n == nullptr || frames_.back().count >= n->min_items;
}

bool JsonRecognizer::ArrayMayAdd() const {
  const JsonSchemaNode* n = TopNode();
  return n == nullptr || n->max_items < 0 || frames_.back().count < n->max_items;
}

void JsonRecognizer::StartString(const JsonSchemaNode* n) {
  str_len_ = 0;
  str_min_ = n != nullptr ? n->min_length : 0;
  str_max_ = n != nullptr ? n->max_length : -1;
}

bool JsonRecognizer::EnumByte(uint8_t c) {
  const JsonSchemaNode* n = NodeAt(enum_node_);
  buf_.push_back(static_cast<char>(c));
  for (const std::string& text : n->enum_texts) {
    if (!text.starts_with(buf_)) continue;
    if (text.size() == buf_.size() && text.back() == '"') CloseValue();  // a string ends with its quote
    return true;
  }
  buf_.pop_back();
  // A number, true, false or null ends at the byte after it.
  if (std::find(n->enum_texts.begin(), n->enum_texts.end(), buf_) == n->enum_texts.end()) return false;
  CloseValue();
  return AfterValue(c);
}

JsonTokenMask::JsonTokenMask(std::vector<std::string> pieces, std::span<const int32_t> eog_ids)
    : pieces_(std::move(pieces)), plain_(pieces_.size(), 0), eog_(pieces_.size(), 0) {
  for (size_t id = 0; id < pieces_.size(); ++id) {
    bool plain = !pieces_[id].empty();
    for (char ch : pieces_[id]) plain = plain && IsPlainStringByte(static_cast<uint8_t>(ch));
    plain_[id] = plain ? 1 : 0;
  }
  for (int32_t id : eog_ids) {
    if (id >= 0 && static_cast<size_t>(id) < eog_.size()) eog_[static_cast<size_t>(id)] = 1;
  }
}

int32_t JsonTokenMask::Apply(const JsonRecognizer& state, std::span<float> logits,
                             std::span<const int32_t> also_at_end) const {
  constexpr float kNever = -std::numeric_limits<float>::infinity();
  const size_t n = std::min(logits.size(), pieces_.size());
  for (size_t id = n; id < logits.size(); ++id) logits[id] = kNever;
  int32_t allowed = 0;
  if (state.Complete()) {
    for (size_t id = 0; id < n; ++id) {
      bool end = eog_[id] != 0;
      for (int32_t s : also_at_end) end = end || static_cast<size_t>(s) == id;
      if (end) {
        ++allowed;
      } else {
        logits[id] = kNever;
      }
    }
    return allowed;
  }
  std::array<bool, 256> first_ok{};
  for (int b = 0; b < 256; ++b) {
    JsonRecognizer s = state;
    first_ok[static_cast<size_t>(b)] = s.Step(static_cast<uint8_t>(b));
  }
  const bool plain_string = state.InPlainString();
  JsonRecognizer scratch;
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = pieces_[id];
    bool ok = !piece.empty() && first_ok[static_cast<uint8_t>(piece[0])];
    if (ok && piece.size() > 1 && !(plain_string && plain_[id])) {
      scratch = state;
      for (size_t i = 0; ok && i < piece.size(); ++i) ok = scratch.Step(static_cast<uint8_t>(piece[i]));
    }
    if (ok) {
      ++allowed;
    } else {
      logits[id] = kNever;
    }
  }
  return allowed;
}

}  // namespace tandem
