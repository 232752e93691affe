// JSON mode (OpenAI's response_format {"type": "json_object"}): constrained decoding that lets
// the sampler pick only tokens that keep the output a prefix of one JSON object (RFC 8259), and
// end-of-generation only once the object is closed.
//
// JsonRecognizer reads the output byte by byte (a pushdown recogniser: a mode, a stack of open
// objects/arrays, and the UTF-8 state inside strings). It accepts exactly the prefixes of
//   ws* object ws*
// where strings hold valid UTF-8 and no raw control characters, numbers follow RFC 8259, and
// literals are true/false/null. Two bounds keep a weak model from running away within the
// grammar (OpenAI warns of the "endless whitespace" failure): outside strings, at most
// kMaxWhitespaceRun consecutive whitespace bytes with at most one line feed among them (no blank
// lines; a line feed and up to 39 spaces of indentation) and no carriage return; at most kMaxDepth open objects/arrays.
// Numbers have at most kMaxIntegerDigits before the point and kMaxExponentDigits in the
// exponent, so that every parser reads them (an int64, or a finite double): RFC 8259 lets
// parsers refuse what they cannot represent, and some do.
//
// With a JsonSchema (types/json_schema.h: response_format json_schema) the recogniser also
// follows the schema: a value's first byte must start a type the schema allows (integers take no
// fraction or exponent), keys of an object with listed properties are matched against the ones
// not yet used (only those, unless additionalProperties), '}' waits for every required one,
// enum/const values are matched byte by byte against their JSON texts, an array's ']' waits for
// minItems elements and ',' stops at maxItems, and a string's closing quote waits for minLength
// characters (code points; an escape is one) and a character past maxLength is refused.
//
// JsonTokenMask knows each token's bytes (the tokenizer's pieces) and, for a recogniser state,
// sets the logits of the tokens that would break the grammar to -inf. Tokens with no bytes
// (control tokens) are never allowed, except the end-of-generation ones once the object is
// complete; then only those are allowed (the answer ends rather than trailing whitespace).
//
// Thread-safety: JsonRecognizer is a value; a JsonTokenMask is immutable after construction and
// shared by the engine's sequences.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "types/json_schema.h"

namespace tandem {

class JsonRecognizer {
 public:
  static constexpr int kMaxWhitespaceRun = 40;
  static constexpr int kMaxDepth = 32;
  static constexpr int kMaxIntegerDigits = 18;
  static constexpr int kMaxExponentDigits = 2;

  // `schema` (null: any object) must outlive the recogniser and its copies.
  explicit JsonRecognizer(const JsonSchema* schema = nullptr) : schema_(schema) {}

  // Reads one byte. Returns false, and leaves the state unchanged, when the byte cannot
  // continue a JSON object text.
  bool Feed(uint8_t c);
  // Feed for each byte; false (state unchanged) when one is refused.
  bool FeedAll(std::string_view bytes);
  // A whole object has been read (only whitespace may follow).
  bool Complete() const { return mode_ == Mode::kDone; }
  // Inside a string with no escape or multi-byte character pending: any run of printable ASCII
  // other than '"' and '\' keeps the state as it is.
  // (Not under a maxLength: each character counts.)
  bool InPlainString() const {
    return mode_ == Mode::kString && utf8_left_ == 0 && !(key_ && StrictKey()) && str_max_ < 0;
  }

 private:
  enum class Mode : uint8_t {
    kStart,          // before the top-level object: whitespace or '{'
    kObjectFirst,    // after '{': whitespace, '"' (a key) or '}'
    kObjectKey,      // after ',' in an object: whitespace or '"'
    kColon,          // after a key: whitespace or ':'
    kValue,          // after ':' or ',' in an array: a value
    kArrayFirst,     // after '[': a value or ']'
    kAfterValue,     // whitespace, ',' or the close of the innermost container
    kString,         // inside a string (key_ says whether it is a key)
    kEscape,         // after '\'
    kUnicode,        // inside \uXXXX (hex_left_ digits to go; code_ so far)
    kLowBackslash,   // after a high surrogate's \uXXXX: the '\' of its low half
    kLowU,           // then its 'u'
    kNumMinus,       // after '-': a digit
    kNumZero,        // a leading 0: '.', 'e' or the end
    kNumInt,         // integer digits
    kNumDot,         // after '.': a digit
    kNumFrac,        // fraction digits
    kNumExp,         // after 'e': sign or digit
    kNumExpSign,     // after the exponent's sign: a digit
    kNumExpDigits,   // exponent digits
    kLiteral,        // inside true/false/null
    kEnum,           // inside an enum/const value (buf_ so far)
    kDone,           // the object is closed
  };

  friend class JsonTokenMask;  // steps scratch copies without the restore on refusal

  bool Step(uint8_t c);  // may leave the state half-changed when it returns false
  bool StepNumber(uint8_t c);
  bool StartValue(uint8_t c);
  bool AfterValue(uint8_t c);
  bool StringByte(uint8_t c);
  bool UnicodeDigit(uint8_t c);
  bool StepEscape(uint8_t c);
  bool Whitespace(uint8_t c);
  void CloseValue();
  // Schema hooks (no-ops without a schema).
  const JsonSchemaNode* NodeAt(int32_t index) const;
  const JsonSchemaNode* TopNode() const { return frames_.empty() ? nullptr : NodeAt(frames_.back().node); }
  int32_t ValueNode() const;  // the schema of the value about to start
  bool KeyConstrained() const { return schema_ != nullptr && TopNode() != nullptr; }
  // A key of a schema's object that allows only its listed properties.
  bool StrictKey() const { return KeyConstrained() && !TopNode()->additional_properties; }
  bool SchemaAllowsStart(const JsonSchemaNode* n, uint8_t c);  // n: the value's schema (null: any)
  // A bounded integer (minimum/maximum): whether some integer within the bounds starts with the
  // digits read so far (sign, magnitude, digit count), and whether the number read is one.
  bool IntegerMayReach(bool negative, int64_t magnitude, int digits) const;
  bool IntegerInRange() const;
  bool IntegerDigit(bool negative, int64_t magnitude, int digits);  // records it when it may reach
  bool KeyByte(uint8_t c);
  bool KeyEnd();
  bool MayClose() const;  // '}' of the innermost object: every required key seen
  bool MayAddKey() const;
  // Arrays: ']' once minItems elements are in; another element while under maxItems.
  bool ArrayMayClose() const;
  bool ArrayMayAdd() const;
  void StartString(const JsonSchemaNode* n);  // a string value: its length bounds
  bool EnumByte(uint8_t c);
  void Open(uint8_t c, int32_t node);  // node: the container's schema
  // anyOf/oneOf: the alternative a value starting with `c` follows (false: none).
  bool PickAlternative(uint8_t c, int32_t* index) const;
  void Close();

  struct Frame {
    int32_t node = JsonSchema::kAny;  // the container's schema
    uint64_t seen = 0;                // properties used so far (objects)
    int32_t key = -1;                 // the property whose value comes next; -1: another key
    int32_t count = 0;                // elements started so far (arrays)
  };

  Mode mode_ = Mode::kStart;
  bool key_ = false;                 // the string being read is an object key
  uint8_t ws_run_ = 0;               // consecutive whitespace bytes outside strings
  bool newline_in_run_ = false;      // the run has its line feed
  uint8_t hex_left_ = 0;             // kUnicode
  uint16_t code_ = 0;                // kUnicode: the code unit so far
  bool low_due_ = false;             // kUnicode: this one must be a low surrogate
  uint8_t digits_ = 0;               // digits of the number's integer part or exponent so far
  uint8_t utf8_left_ = 0;            // continuation bytes still due in a string
  uint8_t utf8_lo_ = 0x80;           // the next continuation byte's range (overlongs, surrogates)
  uint8_t utf8_hi_ = 0xBF;
  const char* literal_ = nullptr;    // kLiteral: the rest of the literal still due
  std::string stack_;                // '{' and '[' of the open containers
  const JsonSchema* schema_ = nullptr;
  std::vector<Frame> frames_;        // with a schema: one per open container
  std::string buf_;                  // a constrained key's or an enum value's bytes so far
  int32_t enum_node_ = JsonSchema::kAny;
  bool integer_ = false;             // the number being read may not have a fraction or exponent
  int32_t str_len_ = 0;              // characters of the string value so far
  int32_t str_min_ = 0;              // its minLength
  int32_t str_max_ = -1;             // its maxLength (-1: none; keys have none)
  bool int_bounded_ = false;         // the number being read is an integer with bounds
  bool int_negative_ = false;
  int64_t int_magnitude_ = 0;        // its digits so far
  int64_t int_min_ = 0;              // its bounds (int_bounded_)
  int64_t int_max_ = 0;
};

class JsonTokenMask {
 public:
  // pieces[id]: the bytes token id stands for (empty for control tokens); eog_ids: the
  // end-of-generation tokens.
  JsonTokenMask(std::vector<std::string> pieces, std::span<const int32_t> eog_ids);

  int32_t vocab_size() const { return static_cast<int32_t>(pieces_.size()); }
  // Sets logits[id] = -inf for every token the grammar does not allow after `state`;
  // `also_at_end` (stop_token_ids) are allowed with the end-of-generation tokens once complete.
  // Returns the number of tokens left allowed.
  int32_t Apply(const JsonRecognizer& state, std::span<float> logits, std::span<const int32_t> also_at_end) const;
  const std::string& piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }

 private:
  std::vector<std::string> pieces_;
  std::vector<uint8_t> plain_;  // the piece is printable ASCII without '"' or '\'
  std::vector<uint8_t> eog_;
};

}  // namespace tandem
