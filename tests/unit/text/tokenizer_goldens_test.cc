// tandem's tokenizer against llama.cpp's on the real SmolLM2 vocabulary, and its chat templates
// against jinja2. The goldens come from tools/goldens/tokenizer_goldens.py (llama-cpp-python);
// tests that need the model read it from $TANDEM_MODEL.
#include <chrono>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "common/check.h"
#include "common/sha256.h"
#include "gguf/gguf_file.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "text/chat_template.h"
#include "text/detokenizer.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "testing/model_paths.h"
#include "unit/text/text_test_util.h"

namespace tandem::text {
namespace {

using nlohmann::json;
using testing::Escaped;

json LoadGoldens(const std::string& name) {
  const std::string path = std::string(TANDEM_SOURCE_DIR) + "/tests/data/tokenizer/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

std::string Base64Decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) continue;  // '=' padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string TextOf(const json& c) {
  if (c.contains("text")) return c["text"].get<std::string>();
  return Base64Decode(c["text_b64"].get<std::string>());
}

// The SmolLM2 tokenizer config, read once per process.
const TokenizerConfig& SmolLm2Config(const std::string& path) {
  static std::once_flag once;
  static TokenizerConfig* config = nullptr;
  std::call_once(once, [&] {
    auto file = gguf::GgufFile::Open(path);
    TANDEM_CHECK(file.ok()) << file.status().ToString();
    auto c = TokenizerConfigFromGguf(**file);
    TANDEM_CHECK(c.ok()) << c.status().ToString();
    config = new TokenizerConfig(*std::move(c));
  });
  return *config;
}

std::unique_ptr<Tokenizer> MakeTokenizer(TokenizerConfig config) {
  auto t = Tokenizer::Create(std::move(config));
  TANDEM_CHECK(t.ok()) << t.status().ToString();
  return *std::move(t);
}

// "" when equal, else where and how they differ, with the tokens' pieces.
std::string Diff(const Tokenizer& t, const std::vector<int32_t>& got,
                 const std::vector<int32_t>& want) {
  if (got == want) return "";
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  auto show = [&](const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t k = i; k < ids.size() && k < i + 6; ++k) {
      s += fmt::format("{}'{}' ", ids[k], Escaped(t.TokenToPiece(ids[k], true)));
    }
    return s;
  };
  return fmt::format(
      "first difference at token {} of {} (llama.cpp has {})\n  tandem:    {}\n"
      "  llama.cpp: {}",
      i, got.size(), want.size(), show(got), show(want));
}

// Checks every case of a goldens file. Valid UTF-8 must give llama.cpp's ids with the
// default (lossless) tokenizer; everything must give them with replace_invalid_utf8.
void ExpectIdsMatch(const json& goldens, TokenizerConfig config, size_t* checked) {
  config.replace_invalid_utf8 = false;
  auto lossless = MakeTokenizer(config);
  config.replace_invalid_utf8 = true;
  auto replacing = MakeTokenizer(config);
  for (const json& c : goldens["cases"]) {
    const std::string text = TextOf(c);
    const bool add = c["add_special"].get<bool>();
    const bool parse = c["parse_special"].get<bool>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const std::string where = fmt::format("text \"{}\" add_special={} parse_special={}",
                                          Escaped(text.substr(0, 200)), add, parse);
    std::string diff = Diff(*replacing, replacing->Encode(text, add, parse), want);
    EXPECT_EQ(diff, "") << where << " (replace_invalid_utf8)";
    if (IsValidUtf8(text)) {
      diff = Diff(*lossless, lossless->Encode(text, add, parse), want);
      EXPECT_EQ(diff, "") << where;
    }
    ++*checked;
  }
}

class TokenizerGoldensTest : public ::testing::Test {
 protected:
  static const json& Goldens() {
    static const json* g = new json(LoadGoldens("smollm2_goldens.json"));
    return *g;
  }
};

TEST_F(TokenizerGoldensTest, SmolLm2IdsMatchLlamaCpp) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  size_t checked = 0;
  ExpectIdsMatch(Goldens(), SmolLm2Config(model), &checked);
  EXPECT_GE(checked, 500u);
}

TEST_F(TokenizerGoldensTest, SmolLm2RoundTripsEveryGoldenString) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  size_t exact = 0;
  for (const json& c : Goldens()["cases"]) {
    const std::string text = TextOf(c);
    const std::vector<int32_t> plain = t->Encode(text, false, false);
    bool representable = true;
    for (unsigned char b : text) representable &= t->HasByteToken(b);
    if (!representable) {
      // SmolLM2 has no token for bytes like 0x1D or 0xFF: they are lost, as in llama.cpp.
      if (IsValidUtf8(text) && !c["parse_special"].get<bool>()) {
        EXPECT_EQ(t->Decode(plain, false), t->Decode(c["ids"].get<std::vector<int32_t>>(), false))
            << Escaped(text.substr(0, 200));
      }
      continue;
    }
    EXPECT_EQ(t->Decode(plain, false), text) << Escaped(text.substr(0, 200));
    // With special tokens parsed, they come back when rendered.
    EXPECT_EQ(t->Decode(t->Encode(text, false, true), true), text) << Escaped(text.substr(0, 200));
    ++exact;
  }
  EXPECT_GE(exact, 460u);
}

TEST_F(TokenizerGoldensTest, SmolLm2RoundTripsRandomBytes) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  std::vector<char> bytes;  // those the vocabulary can represent
  for (int b = 0; b < 256; ++b) {
    if (t->HasByteToken(static_cast<uint8_t>(b))) bytes.push_back(static_cast<char>(b));
  }
  std::mt19937 rng(2024);
  for (int i = 0; i < 3000; ++i) {
    std::string s(rng() % 64, '\0');
    // Mix uniformly random bytes with runs of ASCII and UTF-8 lead/continuation bytes.
    for (char& c : s)
      c = rng() % 3 == 0 ? bytes[rng() % bytes.size()]
                         : "a 1\n\xc3\xa9\xe4\xb8\x80\xf0\x9f"[rng() % 12];
    ASSERT_EQ(Escaped(t->Decode(t->Encode(s, false, false), false)), Escaped(s));
  }
}

TEST_F(TokenizerGoldensTest, SmolLm2LacksSomeByteTokens) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  std::vector<int> missing;
  for (int b = 0; b < 256; ++b) {
    if (!t->HasByteToken(static_cast<uint8_t>(b))) missing.push_back(b);
  }
  EXPECT_EQ(missing,
            (std::vector<int>{0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, 0xF5,
                              0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF}));
  // Such a byte in ill-formed text becomes U+FFFD, as llama.cpp makes it, instead of vanishing;
  // an ill-formed byte that has a token keeps it.
  EXPECT_EQ(t->Decode(t->Encode("a\xff"
                                "b",
                                false, false),
                      false),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(t->Decode(t->Encode("a\x80"
                                "b",
                                false, false),
                      false),
            "a\x80"
            "b");
}

TEST_F(TokenizerGoldensTest, SmolLm2DetokenizeMatchesLlamaCpp) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  for (const json& d : Goldens()["detokenize"]) {
    const auto ids = d["ids"].get<std::vector<int32_t>>();
    const bool special = d["render_special"].get<bool>();
    EXPECT_EQ(Escaped(t->Decode(ids, special)),
              Escaped(Base64Decode(d["text_b64"].get<std::string>())))
        << "render_special=" << special;
  }
}

TEST_F(TokenizerGoldensTest, SmolLm2EveryPieceMatchesLlamaCpp) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  const json& pieces = Goldens()["pieces"];
  for (const json& s : pieces["samples"]) {
    const int32_t id = s["id"].get<int32_t>();
    EXPECT_EQ(t->TokenToPiece(id, true), Base64Decode(s["special_b64"].get<std::string>())) << id;
    EXPECT_EQ(t->TokenToPiece(id, false), Base64Decode(s["plain_b64"].get<std::string>())) << id;
  }
  for (bool special : {true, false}) {
    Sha256 h;
    for (int32_t id = 0; id < t->vocab_size(); ++id) {
      const std::string p = t->TokenToPiece(id, special);
      const uint32_t len = static_cast<uint32_t>(p.size());  // little-endian, as struct "<I"
      const uint8_t le[4] = {uint8_t(len), uint8_t(len >> 8), uint8_t(len >> 16),
                             uint8_t(len >> 24)};
      h.Update(le, 4);
      h.Update(p);
    }
    EXPECT_EQ(ToHex(h.Finish()),
              pieces[special ? "sha256_special" : "sha256_plain"].get<std::string>())
        << "render_special=" << special;
  }
}

TEST_F(TokenizerGoldensTest, SmolLm2SpecialTokens) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  const TokenizerConfig& config = SmolLm2Config(model);
  auto t = MakeTokenizer(config);
  EXPECT_EQ(t->vocab_size(), 49152);
  EXPECT_EQ(t->pre_tokenizer(), "smollm");
  EXPECT_EQ(t->bos_id(), Goldens()["bos_id"].get<int32_t>());
  EXPECT_EQ(t->eos_id(), Goldens()["eos_id"].get<int32_t>());
  EXPECT_EQ(t->add_bos(), Goldens()["add_bos"].get<bool>());
  EXPECT_EQ(t->eog_ids(), Goldens()["eog_ids"].get<std::vector<int32_t>>());  // 0, 2, 4
  EXPECT_TRUE(t->IsEog(2));
  EXPECT_FALSE(t->IsEog(1));
  EXPECT_EQ(t->FindToken("<|im_start|>"), 1);
  EXPECT_EQ(t->FindToken("<|im_end|>"), 2);
  for (int32_t id = 0; id < 17; ++id) EXPECT_TRUE(t->IsSpecial(id)) << id;
  EXPECT_FALSE(t->IsSpecial(17));
  EXPECT_EQ(t->chat_template(), Goldens()["chat_templates"]["smollm2"].get<std::string>());
}

void ExpectVariantMatches(const std::string& file, const std::string& model) {
  const json goldens = LoadGoldens(file);
  TokenizerConfig config = SmolLm2Config(model);
  config.pre = goldens["pre"].get<std::string>();
  // The variant GGUF had no add_bos key for llama-bpe: llama.cpp applied its default.
  auto info = LookupPreTokenizer(config.pre);
  ASSERT_TRUE(info.ok()) << info.status();
  if (config.pre == "llama-bpe") {
    EXPECT_EQ(info->default_add_bos, goldens["add_bos"].get<bool>());
  }
  config.add_bos = goldens["add_bos"].get<bool>();
  size_t checked = 0;
  ExpectIdsMatch(goldens, config, &checked);
  EXPECT_GE(checked, 200u);
  EXPECT_EQ(MakeTokenizer(config)->eog_ids(), goldens["eog_ids"].get<std::vector<int32_t>>());
}

TEST_F(TokenizerGoldensTest, Gpt2PreTokenizerIdsMatchLlamaCpp) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  ExpectVariantMatches("smollm2_gpt2_goldens.json", model);
}

TEST_F(TokenizerGoldensTest, LlamaBpePreTokenizerIdsMatchLlamaCpp) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  ExpectVariantMatches("smollm2_llama_bpe_goldens.json", model);
}

TEST_F(TokenizerGoldensTest, DefaultPreTokenizerIdsMatchLlamaCpp) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  ExpectVariantMatches("smollm2_default_goldens.json", model);
}

TEST_F(TokenizerGoldensTest, ConcurrentEncodingGivesTheSameIds) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> want;
  for (const json& c : Goldens()["cases"]) {
    texts.push_back(TextOf(c));
    want.push_back(t->Encode(texts.back(), false, true));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (size_t i = k; i < texts.size() * 2; ++i) {
        const size_t j = i % texts.size();
        if (t->Encode(texts[j], false, true) != want[j]) ++mismatches[k];
        if (t->Decode(want[j], true).size() > texts[j].size() + 64) ++mismatches[k];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

double SecondsToEncode(const Tokenizer& t, const std::string& text) {
  double best = 1e9;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = t.Encode(text, false, false);
    const std::chrono::duration<double> d = std::chrono::steady_clock::now() - start;
    best = std::min(best, d.count());
    EXPECT_FALSE(ids.empty());
  }
  return best;
}

TEST_F(TokenizerGoldensTest, EncodingTimeGrowsLinearly) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  std::string longest;
  for (const json& c : Goldens()["cases"]) {
    const std::string text = TextOf(c);
    if (text.size() > longest.size()) longest = text;
  }
  ASSERT_GE(longest.size(), 4000u);
  // The longest golden text, 16 times over, and single huge words (one BPE run each).
  std::string big;
  for (int i = 0; i < 16; ++i) big += longest;
  for (const auto& [small, large] : std::vector<std::pair<std::string, std::string>>{
           {longest, big},
           {std::string(4000, 'a'), std::string(64000, 'a')},
           {std::string(4000, ' '), std::string(64000, ' ')}}) {
    const double t_small = SecondsToEncode(*t, small);
    const double t_large = SecondsToEncode(*t, large);
    // 16x the input: linear (or n log n) takes ~16-25x; quadratic would take ~256x.
    EXPECT_LT(t_large, 80 * t_small + 0.05)
        << "small " << t_small << " s, large " << t_large << " s for " << large.size() << " bytes";
    EXPECT_LT(t_large, 5.0);
  }
}

TEST_F(TokenizerGoldensTest, DetokenizerStreamsSplitEmojiWhole) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  auto t = MakeTokenizer(SmolLm2Config(model));
  const std::string text = "Family: 👩‍👩‍👧‍👦, flag 🇯🇵, 中文 and é!";
  const std::vector<int32_t> ids = t->Encode(text, false, false);
  IncrementalDetokenizer d(*t);
  std::string streamed;
  int held = 0;
  for (int32_t id : ids) {
    const std::string out = d.Push(id);
    EXPECT_TRUE(IsValidUtf8(out)) << Escaped(out);
    if (out.empty()) ++held;  // a token that ended inside a character
    streamed += out;
  }
  streamed += d.Flush();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(streamed, t->Decode(ids, false));
  EXPECT_GT(held, 0) << "expected some emoji to span several tokens";
}

// ---------------------------------------------------------------------------------------------
// No model needed.

TEST(TokenizerSplitGoldensTest, PreTokenizersSplitLikeLlamaCpp) {
  const json goldens = LoadGoldens("pretokenizer_splits.json");
  const auto strings = goldens["strings"].get<std::vector<std::string>>();
  size_t checked = 0;
  for (const auto& [name, splits] : goldens["splits"].items()) {
    auto info = LookupPreTokenizer(name);
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_EQ(splits.size(), strings.size());
    for (size_t i = 0; i < strings.size(); ++i) {
      const std::string& s = strings[i];
      std::vector<uint32_t> cps, offsets;
      for (size_t pos = 0; pos < s.size();) {
        const DecodedCodepoint d = DecodeCodepointLenient(s, pos);
        cps.push_back(d.cp);
        offsets.push_back(static_cast<uint32_t>(pos));
        pos += d.size;
      }
      offsets.push_back(static_cast<uint32_t>(s.size()));
      std::vector<uint32_t> got;
      size_t begin = 0;
      for (uint32_t len : PreTokenize(info->type, cps)) {
        got.push_back(offsets[begin + len] - offsets[begin]);
        begin += len;
      }
      EXPECT_EQ(got, splits[i].get<std::vector<uint32_t>>())
          << name << ": \"" << Escaped(s) << "\" (word lengths in bytes)";
      ++checked;
    }
  }
  EXPECT_GE(checked, 4 * 400u);
}

TEST(ChatTemplateGoldensTest, MatchesJinja2Rendering) {
  const json goldens = LoadGoldens("smollm2_goldens.json");
  size_t checked = 0;
  for (const json& c : goldens["chat"]) {
    const std::string name = c["template"].get<std::string>();
    auto tmpl = ChatTemplate::FromJinja(goldens["chat_templates"][name].get<std::string>(),
                                        c["bos_token"].get<std::string>());
    ASSERT_TRUE(tmpl.ok()) << name << ": " << tmpl.status();
    EXPECT_EQ(tmpl->name(), name == "llama3" ? "llama3" : "chatml");
    std::vector<ChatMessage> messages;
    for (const json& m : c["messages"]) {
      messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    const bool gen = c["add_generation_prompt"].get<bool>();
    EXPECT_EQ(Escaped(tmpl->Apply(messages, gen)), Escaped(c["expected"].get<std::string>()))
        << name << " with " << c["messages"].dump() << " add_generation_prompt=" << gen;
    ++checked;
  }
  EXPECT_GE(checked, 60u);
}

}  // namespace
}  // namespace tandem::text
