#include "text/tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <limits>

#include "common/status_macros.h"
#include "text/byte_level.h"
#include "text/unicode.h"

namespace tandem::text {
namespace {

// llama.cpp's llama_token_attr bits (the subset tokenization looks at).
enum TokenAttr : uint8_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1 << 0,
  kAttrUnused = 1 << 1,
  kAttrNormal = 1 << 2,
  kAttrControl = 1 << 3,
  kAttrUserDefined = 1 << 4,
  kAttrByte = 1 << 5,
};

uint8_t AttrOf(int32_t type) {
  switch (static_cast<TokenType>(type)) {
    case TokenType::kNormal:
      return kAttrNormal;
    case TokenType::kUnknown:
      return kAttrUnknown;
    case TokenType::kControl:
      return kAttrControl;
    case TokenType::kUserDefined:
      return kAttrUserDefined;
    case TokenType::kUnused:
      return kAttrUnused;
    case TokenType::kByte:
      return kAttrByte;
    default:
      return kAttrUndefined;
  }
}

// Token texts llama.cpp (llama_vocab::impl::load) recognises. Each found token is made a
// control token; the EOG ones end generation.
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>",        "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>",   "<EOT>",      "_<EOT>",  "[EOT]",         "<｜end▁of▁sentence｜>",
    "<end_of_utterance>"};
constexpr std::string_view kEomTexts[] = {"<|eom_id|>"};
constexpr std::string_view kFimPreTexts[] = {"<|fim_prefix|>",  "<fim-prefix>", "<fim_prefix>",
                                             "<｜fim▁begin｜>", "<PRE>",        "▁<PRE>",
                                             "<|code_prefix|>", "<|prefix|>"};
constexpr std::string_view kFimSufTexts[] = {"<|fim_suffix|>",  "<fim-suffix>", "<fim_suffix>",
                                             "<｜fim▁hole｜>",  "<SUF>",        "▁<SUF>",
                                             "<|code_suffix|>", "<|suffix|>"};
constexpr std::string_view kFimMidTexts[] = {"<|fim_middle|>",  "<fim-middle>", "<fim_middle>",
                                             "<｜fim▁end｜>",   "<MID>",        "▁<MID>",
                                             "<|code_middle|>", "<|middle|>"};
constexpr std::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                             "[PAD]"};
constexpr std::string_view kFimRepTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                             "<REPO>", "<reponame>"};
constexpr std::string_view kFimSepTexts[] = {"<|file_sep|>"};
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",
                                          "<|im_end|>",
                                          "<|end|>",
                                          "<|return|>",
                                          "<|call|>",
                                          "<|flush|>",
                                          "<|calls|>",
                                          "<end_of_turn>",
                                          "<|endoftext|>",
                                          "</s>",
                                          "<|eom_id|>",
                                          "<EOT>",
                                          "_<EOT>",
                                          "[EOT]",
                                          "[EOS]",
                                          "<|end_of_text|>",
                                          "<end_of_utterance>",
                                          "<eos>",
                                          "<turn|>",
                                          "<|tool_response>",
                                          "<｜end▁of▁sentence｜>",
                                          "[e~["};

template <size_t N>
bool OneOf(std::string_view text, const std::string_view (&list)[N]) {
  return std::find(std::begin(list), std::end(list), text) != std::end(list);
}

// llama.cpp's llama_decode_text: a normal token's alphabet text back to bytes; a character
// outside the alphabet renders as "[UNK_BYTE_0x<its UTF-8 in hex><the token text>]".
std::string DecodeNormalToken(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const DecodedCodepoint d = DecodeCodepointLenient(text, pos);
    pos += d.size;
    if (std::optional<uint8_t> b = AlphabetToByte(d.cp)) {
      out.push_back(static_cast<char>(*b));
      continue;
    }
    std::string utf8;
    AppendUtf8(d.cp, &utf8);
    out += "[UNK_BYTE_0x";
    for (char c : utf8) out += fmt::format("{:02x}", static_cast<uint8_t>(c));
    out += text;
    out += "]";
  }
  return out;
}

std::string PieceOf(const std::string& text, uint8_t attr) {
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (attr & kAttrNormal) return DecodeNormalToken(text);
  if (attr & kAttrByte) {  // "<0xAB>"
    const std::string hex = text.size() >= 5 ? text.substr(3, 2) : std::string();
    return std::string(1, static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
  }
  return std::string();  // unused and undefined tokens render nothing
}

absl::StatusOr<int32_t> OptionalId(const gguf::GgufFile& file, std::string_view key) {
  if (!file.Find(key)) return -1;
  TANDEM_ASSIGN_OR_RETURN(uint64_t id, file.GetUint(key));
  if (id > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(
        StrCat(file.path(), ": ", key, " = ", id, " is not a token id"));
  }
  return static_cast<int32_t>(id);
}

absl::Status ValidateConfig(const TokenizerConfig& config) {
  if (config.model != "gpt2" && config.model != "llama") {
    return absl::UnimplementedError(
        StrCat("tokenizer model '", config.model,
               "' is not supported; tandem implements 'gpt2' (byte-level BPE) and 'llama' (SentencePiece)"));
  }
  if (!config.scores.empty() && config.scores.size() < config.tokens.size()) {
    return absl::InvalidArgumentError(
        StrCat("scores has ", config.scores.size(), " entries for ", config.tokens.size(), " tokens"));
  }
  const size_t n = config.tokens.size();
  if (n == 0 || n > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError(StrCat("the vocabulary has ", n, " tokens"));
  }
  if (!config.token_types.empty() && config.token_types.size() < n) {
    return absl::InvalidArgumentError(
        StrCat("token_types has ", config.token_types.size(), " entries for ", n, " tokens"));
  }
  const std::pair<std::string_view, int32_t> ids[] = {{"bos", config.bos_id},
                                                      {"eos", config.eos_id},
                                                      {"eot", config.eot_id},
                                                      {"unk", config.unk_id},
                                                      {"pad", config.pad_id}};
  for (const auto& [name, id] : ids) {
    if (id < -1 || id >= static_cast<int64_t>(n)) {
      return absl::InvalidArgumentError(
          StrCat(name, " token id ", id, " is outside the vocabulary (", n, " tokens)"));
    }
  }
  if (config.add_bos && config.bos_id < 0) {
    return absl::InvalidArgumentError("add_bos is set but the vocabulary has no BOS token");
  }
  if (config.add_eos && config.eos_id < 0) {
    return absl::InvalidArgumentError("add_eos is set but the vocabulary has no EOS token");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerConfig> TokenizerConfigFromGguf(const gguf::GgufFile& file) {
  TokenizerConfig c;
  if (!file.Find("tokenizer.ggml.model")) {
    return absl::InvalidArgumentError(
        StrCat(file.path(), ": no tokenizer in the file (tokenizer.ggml.model is missing)"));
  }
  TANDEM_ASSIGN_OR_RETURN(std::string_view model, file.GetString("tokenizer.ggml.model"));
  c.model = std::string(model);
  if (file.Find("tokenizer.ggml.pre")) {
    TANDEM_ASSIGN_OR_RETURN(std::string_view pre, file.GetString("tokenizer.ggml.pre"));
    c.pre = std::string(pre);
  }
  if (!file.Find("tokenizer.ggml.tokens")) {
    return absl::InvalidArgumentError(
        StrCat(file.path(), ": tokenizer.ggml.tokens (the vocabulary) is missing"));
  }
  TANDEM_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                          file.GetStringArray("tokenizer.ggml.tokens"));
  c.tokens.assign(tokens.begin(), tokens.end());
  if (file.Find("tokenizer.ggml.token_type")) {
    TANDEM_ASSIGN_OR_RETURN(std::vector<int64_t> types,
                            file.GetIntArray("tokenizer.ggml.token_type"));
    c.token_types.assign(types.begin(), types.end());
  }
  if (file.Find("tokenizer.ggml.merges")) {
    TANDEM_ASSIGN_OR_RETURN(std::vector<std::string_view> merges,
                            file.GetStringArray("tokenizer.ggml.merges"));
    c.merges.assign(merges.begin(), merges.end());
  } else if (c.model == "gpt2") {
    return absl::InvalidArgumentError(
        StrCat(file.path(), ": tokenizer.ggml.merges is missing (a gpt2 tokenizer needs it)"));
  }
  TANDEM_ASSIGN_OR_RETURN(c.bos_id, OptionalId(file, "tokenizer.ggml.bos_token_id"));
  TANDEM_ASSIGN_OR_RETURN(c.eos_id, OptionalId(file, "tokenizer.ggml.eos_token_id"));
  TANDEM_ASSIGN_OR_RETURN(c.eot_id, OptionalId(file, "tokenizer.ggml.eot_token_id"));
  TANDEM_ASSIGN_OR_RETURN(c.unk_id, OptionalId(file, "tokenizer.ggml.unknown_token_id"));
  TANDEM_ASSIGN_OR_RETURN(c.pad_id, OptionalId(file, "tokenizer.ggml.padding_token_id"));
  bool default_add_bos = c.model == "llama";
  if (absl::StatusOr<PreTokenizerInfo> pre = LookupPreTokenizer(c.pre); pre.ok() && c.model == "gpt2") {
    default_add_bos = pre->default_add_bos;  // an unknown name is reported by Create
  }
  if (c.model == "llama") {
    if (file.Find("tokenizer.ggml.scores")) {
      TANDEM_ASSIGN_OR_RETURN(c.scores, file.GetFloatArray("tokenizer.ggml.scores"));
    }
    TANDEM_ASSIGN_OR_RETURN(c.add_space_prefix, file.GetBoolOr("tokenizer.ggml.add_space_prefix", true));
    const int32_t n = static_cast<int32_t>(c.tokens.size());
    if (c.bos_id < 0 && n > 1) c.bos_id = 1;
    if (c.eos_id < 0 && n > 2) c.eos_id = 2;
    if (c.unk_id < 0 && n > 0) c.unk_id = 0;
  }
  TANDEM_ASSIGN_OR_RETURN(c.add_bos,
                          file.GetBoolOr("tokenizer.ggml.add_bos_token", default_add_bos));
  TANDEM_ASSIGN_OR_RETURN(c.add_eos, file.GetBoolOr("tokenizer.ggml.add_eos_token", false));
  if (file.Find("tokenizer.chat_template")) {
    TANDEM_ASSIGN_OR_RETURN(std::string_view tmpl, file.GetString("tokenizer.chat_template"));
    c.chat_template = std::string(tmpl);
  }
  return c;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerConfig config) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  TANDEM_RETURN_IF_ERROR(t->Init(std::move(config)));
  return t;
}

absl::Status Tokenizer::Init(TokenizerConfig config) {
  TANDEM_RETURN_IF_ERROR(ValidateConfig(config));
  spm_ = config.model == "llama";
  add_space_prefix_ = config.add_space_prefix;
  if (spm_) {
    pre_name_ = "spm";  // SentencePiece has no pre-tokenizer; tokenizer.ggml.pre is ignored
  } else {
    TANDEM_ASSIGN_OR_RETURN(pre_, LookupPreTokenizer(config.pre));
    pre_name_ = config.pre.empty() ? "default" : config.pre;
  }
  const size_t n = config.tokens.size();
  tokens_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    Token& t = tokens_[i];
    t.text = std::move(config.tokens[i]);
    if (t.text.empty()) t.text = StrCat("[EMPTY_", i, "]");  // as llama.cpp names them
    t.attr = config.token_types.empty() ? uint8_t{kAttrNormal} : AttrOf(config.token_types[i]);
    text_to_id_.insert_or_assign(t.text, static_cast<int32_t>(i));
  }
  bos_id_ = config.bos_id;
  eos_id_ = config.eos_id;
  eot_id_ = config.eot_id;
  add_bos_ = config.add_bos;
  add_eos_ = config.add_eos;
  replace_invalid_utf8_ = config.replace_invalid_utf8;
  chat_template_ = std::move(config.chat_template);
  DetectSpecialTokens();

  std::vector<std::string_view> texts(n);
  for (size_t i = 0; i < n; ++i) {
    texts[i] = tokens_[i].text;
    tokens_[i].piece = spm_ && (tokens_[i].attr & kAttrNormal) ? UnescapeSpmWhitespace(tokens_[i].text)
                                                                : PieceOf(tokens_[i].text, tokens_[i].attr);
  }
  if (spm_) {
    spm_model_ = SpmModel::Build(texts, config.scores, config.unk_id);
  } else {
    bpe_ = BpeModel::Build(texts, config.merges);
  }

  for (size_t i = 0; i < n; ++i) {
    if (tokens_[i].attr & (kAttrControl | kAttrUserDefined | kAttrUnknown)) {
      special_ids_.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(special_ids_.begin(), special_ids_.end(), [&](int32_t a, int32_t b) {
    return tokens_[a].text.size() > tokens_[b].text.size();
  });
  return absl::OkStatus();
}

// EOT, EOM and FIM tokens found by their text when not given, and the end-of-generation set,
// as llama.cpp's llama_vocab::impl::load does. Where llama.cpp takes the first match in hash
// order, this takes the lowest id (they agree whenever a vocabulary has one candidate).
void Tokenizer::DetectSpecialTokens() {
  auto find_first = [&](const auto& list) {
    for (size_t i = 0; i < tokens_.size(); ++i) {
      if (OneOf(tokens_[i].text, list)) return static_cast<int32_t>(i);
    }
    return -1;
  };
  auto mark_control = [&](int32_t id) {
    if (id >= 0) tokens_[id].attr |= kAttrControl;
  };
  if (eot_id_ < 0) {
    eot_id_ = find_first(kEotTexts);
    mark_control(eot_id_);
  }
  const int32_t eom = find_first(kEomTexts);
  mark_control(eom);
  mark_control(find_first(kFimPreTexts));
  mark_control(find_first(kFimSufTexts));
  mark_control(find_first(kFimMidTexts));
  const int32_t fim_pad = find_first(kFimPadTexts);
  const int32_t fim_rep = find_first(kFimRepTexts);
  const int32_t fim_sep = find_first(kFimSepTexts);
  std::vector<int32_t> eog = {eos_id_, eot_id_, eom, fim_pad, fim_rep, fim_sep};
  for (int32_t id : {fim_pad, fim_rep, fim_sep}) mark_control(id);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (OneOf(tokens_[i].text, kEogTexts)) {
      eog.push_back(static_cast<int32_t>(i));
      mark_control(static_cast<int32_t>(i));
    }
  }
  std::erase(eog, -1);
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  eog_ids_ = std::move(eog);
}

namespace {

// Whether [begin, end) lies inside one of the sorted, disjoint ranges.
bool InsideRanges(std::span<const std::pair<size_t, size_t>> ranges, size_t begin, size_t end) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), begin,
                             [](size_t v, const std::pair<size_t, size_t>& r) { return v < r.first; });
  if (it == ranges.begin()) return false;
  --it;
  return begin >= it->first && end <= it->second;
}

}  // namespace

std::vector<Tokenizer::Fragment> Tokenizer::Partition(std::string_view text, bool parse_special,
                                                      std::span<const std::pair<size_t, size_t>>* markup) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({false, -1, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t id : special_ids_) {
    const Token& special = tokens_[id];
    const bool control = (special.attr & (kAttrControl | kAttrUnknown)) != 0;
    if (!parse_special && control) continue;
    const bool restricted = control && markup != nullptr;
    const std::string_view needle = special.text;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.is_token) {
        next.push_back(f);
        continue;
      }
      const size_t end = f.offset + f.length;
      const std::string_view window = text.substr(0, end);
      size_t pos = f.offset;
      for (size_t from = pos, m; (m = window.find(needle, from)) != std::string_view::npos;) {
        if (restricted && !InsideRanges(*markup, m, m + needle.size())) {
          from = m + 1;  // a user's text: stays in the fragment
          continue;
        }
        if (m > pos) next.push_back({false, -1, pos, m - pos});
        next.push_back({true, id, 0, 0});
        pos = from = m + needle.size();
      }
      if (pos < end) next.push_back({false, -1, pos, end - pos});
    }
    frags.swap(next);
  }
  return frags;
}

void Tokenizer::EncodeText(std::string_view text, std::vector<int32_t>* out) const {
  std::vector<uint32_t> cps;
  std::vector<uint32_t> offsets;  // byte offset of each code point, then text.size()
  cps.reserve(text.size());
  offsets.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    const DecodedCodepoint d = DecodeCodepointLenient(text, pos);
    cps.push_back(d.cp);
    offsets.push_back(static_cast<uint32_t>(pos));
    pos += d.size;
  }
  offsets.push_back(static_cast<uint32_t>(text.size()));

  // Lossless: a code point keeps its bytes when the vocabulary has tokens for all of them.
  // Otherwise (always with replace_invalid_utf8) it is written as llama.cpp writes it: U+FFFD
  // for a byte that does not decode, the shortest form for an overlong one.
  auto keeps_bytes = [&](std::string_view bytes) {
    if (replace_invalid_utf8_) return false;
    for (char c : bytes) {
      if (!bpe_.HasByteToken(static_cast<uint8_t>(c))) return false;
    }
    return true;
  };
  std::string word;
  size_t begin = 0;
  for (uint32_t len : PreTokenize(pre_.type, cps)) {
    const size_t end = begin + len;
    const std::string_view raw = text.substr(offsets[begin], offsets[end] - offsets[begin]);
    if (keeps_bytes(raw)) {
      bpe_.EncodeWord(raw, pre_.ignore_merges, out);
    } else {
      word.clear();
      for (size_t i = begin; i < end; ++i) {
        const std::string_view bytes = text.substr(offsets[i], offsets[i + 1] - offsets[i]);
        if (keeps_bytes(bytes)) {
          word.append(bytes);
        } else {
          AppendUtf8(cps[i], &word);
        }
      }
      bpe_.EncodeWord(word, pre_.ignore_merges, out);
    }
    begin = end;
  }
}

void Tokenizer::EncodeFragments(std::string_view text, const std::vector<Fragment>& frags,
                                std::vector<int32_t>* out) const {
  bool prev_special = true;  // SentencePiece: the first fragment gets the space prefix too
  for (const Fragment& f : frags) {
    if (f.is_token) {
      out->push_back(f.token);
      prev_special = true;
    } else if (spm_) {
      const std::string_view piece = text.substr(f.offset, f.length);
      spm_model_.Encode(EscapeSpmWhitespace(add_space_prefix_ && prev_special ? StrCat(" ", piece) : std::string(piece)),
                        out);
      prev_special = false;
    } else {
      EncodeText(text.substr(f.offset, f.length), out);
    }
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && add_bos_) out.push_back(bos_id_);
  EncodeFragments(text, Partition(text, parse_special), &out);
  if (add_special && add_eos_) out.push_back(eos_id_);
  return out;
}

std::vector<int32_t> Tokenizer::EncodeChat(std::string_view text,
                                           std::span<const std::pair<size_t, size_t>> markup) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  EncodeFragments(text, Partition(text, /*parse_special=*/true, &markup), &out);
  return out;
}

void Tokenizer::AppendPiece(int32_t id, bool render_special, std::string* out) const {
  if (id < 0 || id >= vocab_size()) return;
  const Token& t = tokens_[id];
  if (!render_special && (t.attr & (kAttrControl | kAttrUnknown))) return;
  out->append(t.piece);
}

std::vector<std::string> Tokenizer::AllPieces() const {
  std::vector<std::string> pieces(tokens_.size());
  for (size_t id = 0; id < pieces.size(); ++id) pieces[id] = TokenToPiece(static_cast<int32_t>(id), false);
  return pieces;
}

std::string Tokenizer::TokenToPiece(int32_t id, bool render_special) const {
  std::string out;
  AppendPiece(id, render_special, &out);
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) AppendPiece(id, render_special, &out);
  return out;
}

bool Tokenizer::IsEog(int32_t id) const {
  return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && (tokens_[id].attr & (kAttrControl | kAttrUnknown));
}

bool Tokenizer::HasByteToken(uint8_t byte) const {
  return spm_ ? spm_model_.HasByteToken(byte) : bpe_.HasByteToken(byte);
}

std::optional<int32_t> Tokenizer::FindToken(std::string_view text) const {
  auto it = text_to_id_.find(text);
  if (it == text_to_id_.end()) return std::nullopt;
  return it->second;
}

std::string_view Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return tokens_[id].text;
}

}  // namespace tandem::text
