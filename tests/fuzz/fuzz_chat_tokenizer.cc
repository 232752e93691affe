// Chat templates and the tokenizer on fuzzed conversations, with the vocabulary of the tiny
// synthetic model the tests use (synth/synthetic_model.h, written once to a temp file and loaded
// with LoadTextModel as the router loads a model), under each pre-tokenizer family; then the
// streaming side: the incremental detokenizer and stop strings. The llama-spm model's
// SentencePiece vocabulary and Llama 2 template get every input too.
//
// Input: byte 0 picks the tokenizer, the template and the flags; byte 1 the stop string's length
// and the streaming piece size; the rest is messages separated by 0x1E, each "role 0x1F content".
// The last message's content also serves as a Jinja template source for FromJinja and as raw
// token ids for the detokenizer.
//
// Checked (the properties text/*.h promise): Render() is Apply() with the template's own bytes
// marked, and EncodeChat() of it (the router's path) parses control tokens only there, never in
// a message; every id is in the vocabulary; Decode(Encode(s)) == s without special-token
// parsing (this vocabulary has all 256 bytes); the incremental
// detokenizer's output is SanitizeUtf8(Decode(ids)); stop strings give the same output however
// the text is cut into pieces, and that output is a prefix of the text.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "gguf/gguf_file.h"
#include "synth/synthetic_model.h"
#include "text/chat_template.h"
#include "text/detokenizer.h"
#include "text/spm_model.h"
#include "text/stop_strings.h"
#include "text/text_model.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace {

using namespace tandem::text;

struct Fixture {
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;  // 8: 4 pre-tokenizers x replace_invalid_utf8
  std::vector<ChatTemplate> templates;                 // 4
  std::unique_ptr<Tokenizer> spm;                      // the llama-spm model's SentencePiece vocabulary
  ChatTemplate llama2 = ChatTemplate::ChatMl();        // its [INST] template
};

// The tiny model's tokenizer config (of synthetic architecture `arch`), read back from the
// GGUF the tests would use.
TokenizerConfig TinyModelConfig(const char* arch = "llama") {
  char dir[] = "/tmp/tandem-fuzz-XXXXXX";
  if (mkdtemp(dir) == nullptr) std::abort();
  const std::string path = std::string(dir) + "/tiny.gguf";
  tandem::synth::SyntheticModelSpec spec;
  spec.num_layers = 1;
  spec.hidden_size = 32;
  spec.ffn_size = 32;
  spec.arch = arch;
  FUZZ_CHECK(tandem::synth::WriteSyntheticModel(spec, path).ok());
  auto file = tandem::gguf::GgufFile::Open(path);
  FUZZ_CHECK(file.ok());
  auto model = LoadTextModel(**file);  // the router's path; must succeed on the tiny model
  FUZZ_CHECK(model.ok());
  auto config = TokenizerConfigFromGguf(**file);
  FUZZ_CHECK(config.ok());
  std::remove(path.c_str());
  rmdir(dir);
  return *std::move(config);
}

const Fixture& GetFixture() {
  static const Fixture* fixture = [] {
    auto* f = new Fixture;
    const TokenizerConfig base = TinyModelConfig();
    for (const char* pre : {"smollm", "gpt2", "llama-bpe", "default"}) {
      for (bool replace : {false, true}) {
        TokenizerConfig c = base;
        c.pre = pre;
        c.replace_invalid_utf8 = replace;
        if (std::string_view(pre) == "llama-bpe") {  // Llama 3's control tokens too
          for (const char* t : {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) {
            c.tokens.push_back(t);
            c.token_types.push_back(static_cast<int32_t>(TokenType::kControl));
          }
        }
        auto t = Tokenizer::Create(std::move(c));
        FUZZ_CHECK(t.ok());
        f->tokenizers.push_back(*std::move(t));
      }
    }
    auto chatml = ChatTemplate::FromJinja(f->tokenizers[0]->chat_template());
    auto smollm = ChatTemplate::FromJinja(
        "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI "
        "assistant.<|im_end|>\\n' }}{% endif %}{% for message in messages %}{{'<|im_start|>' + "
        "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
    auto llama3 = ChatTemplate::FromJinja(
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}",
        "<|begin_of_text|>");
    FUZZ_CHECK(chatml.ok() && smollm.ok() && llama3.ok());
    f->templates = {*chatml, *smollm, *llama3, ChatTemplate::ChatMl()};
    auto spm = Tokenizer::Create(TinyModelConfig("llama-spm"));
    FUZZ_CHECK(spm.ok());
    f->spm = *std::move(spm);
    auto llama2 = ChatTemplate::FromJinja(f->spm->chat_template(), "<s>", "</s>");
    FUZZ_CHECK(llama2.ok());
    f->llama2 = *llama2;
    return f;
  }();
  return *fixture;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// The chat's ids (Tokenizer::EncodeChat) are in the vocabulary, decode back to the text in
// lossless mode, and have a control token only where the template wrote one: a message's
// content or role can never become "<|im_start|>" (prompt injection).
void CheckChatEncoding(const Tokenizer& tok, const RenderedChat& chat, const std::vector<int32_t>& ids,
                       const std::vector<ChatMessage>& messages, bool lossless) {
  for (size_t i = 0; i < chat.markup.size(); ++i) {
    FUZZ_CHECK(chat.markup[i].first < chat.markup[i].second && chat.markup[i].second <= chat.text.size());
    if (i > 0) FUZZ_CHECK(chat.markup[i - 1].second < chat.markup[i].first);  // sorted, disjoint, merged
  }
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
  if (!lossless) return;  // ill-formed UTF-8 became U+FFFD: the pieces no longer line up with the text
  FUZZ_CHECK(tok.Decode(ids, /*render_special=*/true) == chat.text);
  size_t offset = 0;
  for (int32_t id : ids) {
    const size_t length = tok.TokenToPiece(id, /*render_special=*/true).size();
    if (tok.IsSpecial(id)) {
      bool inside = false;
      for (const auto& [begin, end] : chat.markup) inside |= offset >= begin && offset + length <= end;
      FUZZ_CHECK(inside);
    }
    offset += length;
  }
  bool angle = false;  // every control token's text starts with '<'
  for (const ChatMessage& m : messages) angle |= m.role.find('<') != std::string::npos || m.content.find('<') != std::string::npos;
  if (!angle) FUZZ_CHECK(ids == tok.Encode(chat.text, false, /*parse_special=*/true));
}

// Detokenizing `ids` one at a time gives SanitizeUtf8 of the whole decoding.
void CheckDetokenizer(const Tokenizer& tok, const std::vector<int32_t>& ids, bool render_special) {
  IncrementalDetokenizer detok(tok, render_special);
  std::string streamed;
  for (int32_t id : ids) {
    streamed += detok.Push(id);
    FUZZ_CHECK(detok.pending_bytes() <= 3);
  }
  streamed += detok.Flush();
  FUZZ_CHECK(streamed == SanitizeUtf8(tok.Decode(ids, render_special)));
}

// Stop strings: the same output whether `text` comes at once or in `piece`-byte pieces.
void CheckStops(std::string_view text, std::string stop, size_t piece) {
  std::vector<std::string> stops;
  if (!stop.empty()) stops.push_back(std::move(stop));
  auto whole = StopStringMatcher::Create(stops);
  auto pieces = StopStringMatcher::Create(stops);
  FUZZ_CHECK(whole.ok() && pieces.ok());
  std::string a = whole->Push(text);
  a += whole->Flush();
  std::string b;
  for (size_t i = 0; i < text.size(); i += piece) b += pieces->Push(text.substr(i, piece));
  b += pieces->Flush();
  FUZZ_CHECK(a == b);
  FUZZ_CHECK(whole->stopped() == pieces->stopped());
  FUZZ_CHECK(text.substr(0, a.size()) == a);
  if (!whole->stopped()) FUZZ_CHECK(a == text);
}

// SentencePiece: ids in the vocabulary; without special-token parsing well-formed text
// survives (U+2581 as a space), behind the one space SentencePiece puts before it; the chat's ids have a control token
// only where the template wrote one.
void CheckSpm(const Fixture& f, const std::vector<ChatMessage>& messages, const std::string& last,
              bool render_special) {
  const Tokenizer& tok = *f.spm;
  const std::vector<int32_t> plain = tok.Encode(last, /*add_special=*/true, /*parse_special=*/false);
  for (int32_t id : plain) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
  // Well-formed UTF-8 only: a truncated sequence swallows the next bytes into one symbol (as in
  // llama.cpp), which can cut an escaped space's three bytes apart. A "▁" the text itself holds
  // comes back as a space, as in llama.cpp (SentencePiece cannot tell the two apart).
  if (SanitizeUtf8(last) == last) {
    FUZZ_CHECK(tok.Decode(plain, /*render_special=*/false) ==
               (last.empty() ? "" : UnescapeSpmWhitespace(" " + last)));
  }
  const RenderedChat chat = f.llama2.Render(messages, false);
  const std::vector<int32_t> ids = tok.EncodeChat(chat.text, chat.markup);
  for (int32_t id : ids) {
    FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
    if (tok.IsSpecial(id)) FUZZ_CHECK(id == tok.bos_id() || id == tok.eos_id());
  }
  size_t specials = 0;
  for (int32_t id : ids) specials += tok.IsSpecial(id);
  size_t turns = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    turns += messages[i].role == "user" || messages[i].role == "assistant";
  }
  FUZZ_CHECK(specials == turns);  // one BOS per user turn, one EOS per answer: none from content
  CheckDetokenizer(tok, ids, render_special);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  const Fixture& f = GetFixture();
  if (size < 2) return 0;
  const uint8_t flags = data[0], stream = data[1];
  const Tokenizer& tok = *f.tokenizers[flags & 7];
  const ChatTemplate& tmpl = f.templates[(flags >> 3) & 3];
  const bool add_generation_prompt = flags & 0x20, add_special = flags & 0x40, render_special = flags & 0x80;

  std::vector<ChatMessage> messages;
  for (std::string_view record : Split(std::string_view(reinterpret_cast<const char*>(data) + 2, size - 2), '\x1e')) {
    const size_t sep = record.find('\x1f');
    if (sep == std::string_view::npos) {
      messages.push_back({"user", std::string(record)});
    } else {
      messages.push_back({std::string(record.substr(0, sep)), std::string(record.substr(sep + 1))});
    }
  }
  const std::string& last = messages.back().content;
  (void)ChatTemplate::FromJinja(last, "<s>");

  const RenderedChat chat = tmpl.Render(messages, add_generation_prompt);
  FUZZ_CHECK(chat.text == tmpl.Apply(messages, add_generation_prompt));
  const std::vector<int32_t> ids = tok.EncodeChat(chat.text, chat.markup);  // the router's path
  CheckChatEncoding(tok, chat, ids, messages, /*lossless=*/!(flags & 1));
  CheckDetokenizer(tok, ids, render_special);
  for (int32_t id : tok.Encode(chat.text, add_special, /*parse_special=*/true)) {
    FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
  }

  const std::vector<int32_t> plain = tok.Encode(last, /*add_special=*/false, /*parse_special=*/false);
  if (!(flags & 1)) FUZZ_CHECK(tok.Decode(plain, /*render_special=*/true) == last);  // lossless mode

  std::vector<int32_t> raw;  // ids as a model might sample them, a few outside the vocabulary
  for (size_t i = 0; i + 1 < last.size(); i += 2) {
    raw.push_back(static_cast<int32_t>((static_cast<uint8_t>(last[i]) << 8 | static_cast<uint8_t>(last[i + 1])) %
                                       (tok.vocab_size() + 8)) - 4);
  }
  CheckDetokenizer(tok, raw, render_special);

  const std::string text = SanitizeUtf8(tok.Decode(raw, render_special));
  const size_t stop_len = stream & 15;
  CheckStops(text, SanitizeUtf8(last.substr(0, stop_len)), 1 + (stream >> 4));  // API stops are UTF-8
  CheckSpm(f, messages, last, render_special);
  return 0;
}
