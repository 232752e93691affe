// The tokenizers of GGUF "gpt2" vocabularies (byte-level BPE: SmolLM2, Llama 3, Qwen2,
// GPT-2...) and "llama" vocabularies (SentencePiece: Llama 2, Mistral, TinyLlama), matching
// llama.cpp's tokenization token for token. "gpt2":
//
//  1. Special-token partition: the text is cut around occurrences of special tokens' texts,
//     the longest texts first (llama.cpp's tokenizer_st_partition). With parse_special, control,
//     unknown and user-defined tokens are matched; without it only user-defined ones.
//  2. Each remaining piece is decoded from UTF-8 and split into words by the vocabulary's
//     pre-tokenizer (text/pretokenizer.h).
//  3. Each word is encoded with byte-level BPE (text/bpe_model.h).
//  4. With add_special, BOS/EOS are added when the vocabulary asks for them.
//
// "llama" (SentencePiece): step 1 as above; each text fragment gets a leading space when it
// starts the text or follows a special token (add_space_prefix, on unless the file says
// otherwise), spaces become U+2581, and the fragment is merged by token scores with byte
// fallback (text/spm_model.h). Pieces render U+2581 as a space. BOS is added by default.
//
// Ill-formed UTF-8: llama.cpp replaces every byte that does not decode with U+FFFD before BPE
// (and rewrites overlong forms to their shortest form), so such text does not survive a
// round trip there. By default tandem keeps the original bytes instead (the words are cut
// where llama.cpp cuts them, but encoded from the bytes that were there) whenever the
// vocabulary has tokens for them, and does what llama.cpp does otherwise. Hence
// Decode(Encode(s)) == s for every byte string s when parse_special is false, provided every
// byte of s has a token (HasByteToken): true of all 256 bytes in complete byte-level
// vocabularies (GPT-2, Llama 3); SmolLM2's lacks 21 (0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1
// 0xF1 0xF2 0xF5..0xFF), which are dropped as llama.cpp drops them. Ids differ from
// llama.cpp only for ill-formed input; TokenizerConfig::replace_invalid_utf8 gives llama.cpp's
// ids for it too. Well-formed UTF-8 is tokenized identically either way.
//
// Thread-safety: a Tokenizer is immutable after Create(); all const methods may be called
// concurrently from any number of threads. It owns a copy of everything it needs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/strings.h"
#include "gguf/gguf_file.h"
#include "text/bpe_model.h"
#include "text/pretokenizer.h"
#include "text/spm_model.h"

namespace tandem::text {

// Values of GGUF's tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// What a tokenizer is made from: the `tokenizer.*` metadata of a GGUF file.
struct TokenizerConfig {
  std::string model;                 // tokenizer.ggml.model: "gpt2" or "llama"
  std::string pre;                   // tokenizer.ggml.pre; empty means "default"
  std::vector<std::string> tokens;   // in the byte-level alphabet ("Ġthe"); index = id
  std::vector<int32_t> token_types;  // TokenType per token; empty: all normal
  std::vector<std::string> merges;   // "left right", in rank order ("gpt2")
  std::vector<float> scores;         // per token ("llama"); empty: all 0
  bool add_space_prefix = true;      // "llama": a space before the text and after specials
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, unk_id = -1, pad_id = -1;  // -1: none
  bool add_bos = false, add_eos = false;  // what Encode(add_special=true) adds
  std::string chat_template;              // tokenizer.chat_template (Jinja), may be empty
  // false: ill-formed UTF-8 keeps its bytes where the vocabulary has tokens for them
  // (lossless). true: as llama.cpp, each byte that does not decode becomes U+FFFD and
  // overlong forms their shortest form.
  bool replace_invalid_utf8 = false;
};

// Reads the tokenizer.ggml.* keys and tokenizer.chat_template. `model` and `tokens` (and
// `merges` for "gpt2") are required; the rest is optional. add_bos defaults as llama.cpp's
// does (true for the Llama-3 family and for "llama" vocabularies) when the file does not say;
// "llama" vocabularies default to BOS 1, EOS 2 and UNK 0 as in llama.cpp.
absl::StatusOr<TokenizerConfig> TokenizerConfigFromGguf(const gguf::GgufFile& file);

class Tokenizer {
 public:
  // Errors: Unimplemented for a model other than "gpt2" and "llama"; InvalidArgument for an unknown
  // pre-tokenizer (the message lists the supported ones), token_types shorter than tokens,
  // special ids outside the vocabulary, or add_bos/add_eos without a BOS/EOS id.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerConfig config);

  // Token ids of `text` (any bytes). add_special: prepend BOS / append EOS as the vocabulary
  // asks (add_bos/add_eos). parse_special: special tokens' texts in `text` become those
  // tokens; otherwise they are encoded as ordinary text (user-defined tokens always match).
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special) const;
  // A chat template's output: control tokens are parsed only where their whole text lies inside
  // one of the `markup` byte ranges (sorted, disjoint); elsewhere their text is ordinary text.
  // Equal to Encode(text, false, true) when no control-token text occurs outside the markup.
  std::vector<int32_t> EncodeChat(std::string_view text, std::span<const std::pair<size_t, size_t>> markup) const;

  // The bytes a token stands for (not necessarily complete UTF-8: a multi-byte character can
  // be split over tokens). Control and unknown tokens render their text only when
  // render_special, else nothing. Ids outside [0, vocab_size()) render nothing.
  std::string TokenToPiece(int32_t id, bool render_special) const;
  void AppendPiece(int32_t id, bool render_special, std::string* out) const;
  // TokenToPiece(id, false) of every id, in id order (what constrained decoding matches).
  std::vector<std::string> AllPieces() const;
  // The concatenation of the tokens' pieces (llama.cpp's token_to_piece for each id; no
  // clean-up of spaces). Ids outside the vocabulary are skipped.
  std::string Decode(std::span<const int32_t> ids, bool render_special) const;

  // End-of-generation tokens: EOS, EOT and the tokens llama.cpp treats as such by their text
  // (<|im_end|>, <|endoftext|>, <|eot_id|>, <|end|>, <end_of_turn>, ...; also FIM
  // repo/pad/file-separator tokens), sorted.
  bool IsEog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }
  // Control or unknown tokens: the ones TokenToPiece hides unless render_special.
  bool IsSpecial(int32_t id) const;
  // Whether `byte` can be encoded at all: the vocabulary has a token for it alone.
  bool HasByteToken(uint8_t byte) const;
  // The id of the token whose vocabulary text is `text` (as stored: "<|im_end|>", "Ġthe").
  std::optional<int32_t> FindToken(std::string_view text) const;
  // The token's vocabulary text; empty for ids outside the vocabulary.
  std::string_view token_text(int32_t id) const;

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t eot_id() const { return eot_id_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  std::string_view pre_tokenizer() const { return pre_name_; }  // "spm" for SentencePiece
  bool sentencepiece() const { return spm_; }  // a "llama" (SentencePiece) vocabulary
  const std::string& chat_template() const { return chat_template_; }

 private:
  struct Token {
    std::string text;   // as in the vocabulary
    std::string piece;  // the bytes it renders as (with render_special)
    uint8_t attr = 0;   // TokenAttr bits
  };
  struct Fragment {
    bool is_token;
    int32_t token;
    size_t offset, length;  // into the text, when !is_token
  };

  Tokenizer() = default;
  absl::Status Init(TokenizerConfig config);
  void DetectSpecialTokens();
  // markup: when not null, control tokens match only inside these ranges (see EncodeChat).
  std::vector<Fragment> Partition(std::string_view text, bool parse_special,
                                  std::span<const std::pair<size_t, size_t>>* markup = nullptr) const;
  void EncodeText(std::string_view text, std::vector<int32_t>* out) const;
  // The fragments' tokens (special tokens as they are, text through BPE or SentencePiece).
  void EncodeFragments(std::string_view text, const std::vector<Fragment>& frags,
                       std::vector<int32_t>* out) const;

  std::vector<Token> tokens_;
  StringMap<int32_t> text_to_id_;
  bool spm_ = false;  // "llama" vocabulary: spm_model_, else bpe_
  bool add_space_prefix_ = true;
  BpeModel bpe_;
  SpmModel spm_model_;
  PreTokenizerInfo pre_;
  std::string pre_name_;
  std::vector<int32_t> special_ids_;  // matched in text, longest text first
  std::vector<int32_t> eog_ids_;
  int32_t bos_id_ = -1, eos_id_ = -1, eot_id_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  bool replace_invalid_utf8_ = false;
  std::string chat_template_;
};

}  // namespace tandem::text
