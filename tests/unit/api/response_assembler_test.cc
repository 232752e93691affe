// What a client sees of generated tokens: stop strings never shown even across tokens, EOG
// hidden, whole characters only, the right finish_reason and usage. A hand-made vocabulary
// for the exact cases, then the real SmolLM2 tokenizer ($TANDEM_MODEL).
#include "api/response_assembler.h"

#include <mutex>
#include <random>

#include "common/check.h"
#include "gguf/gguf_file.h"
#include "gtest/gtest.h"
#include "testing/model_paths.h"
#include "text/unicode.h"
#include "unit/text/text_test_util.h"

namespace tandem::api {
namespace {

using text::TokenType;

// Bytes 0..255, then:
constexpr int32_t kHello = 256;  // "Hello"
constexpr int32_t kWor = 257;    // " wor"
constexpr int32_t kLd = 258;     // "ld"
constexpr int32_t kEmoji1 = 259;  // first half of 😀 (F0 9F 98 80)
constexpr int32_t kEmoji2 = 260;  // second half

struct Vocab {
  std::unique_ptr<text::Tokenizer> tokenizer;
  int32_t im_end = -1;    // control, EOG
  int32_t fake_eos = -1;  // EOS marked as a normal token: visible text
};

const Vocab& SmallVocab() {
  static const Vocab* vocab = [] {
    text::testing::SmallVocab v({"Hello", " wor", "ld", "\xf0\x9f", "\x98\x80"});
    auto* out = new Vocab;
    out->im_end = v.AddSpecial("<|im_end|>", TokenType::kControl);
    out->fake_eos = v.AddSpecial("[END]", TokenType::kNormal);
    v.config.eos_id = out->fake_eos;
    out->tokenizer = v.Build();
    TANDEM_CHECK(out->tokenizer != nullptr);
    return out;
  }();
  return *vocab;
}

std::unique_ptr<ResponseAssembler> Make(AssemblerOptions options,
                                        const text::Tokenizer& t = *SmallVocab().tokenizer) {
  auto a = ResponseAssembler::Create(t, std::move(options));
  TANDEM_CHECK(a.ok()) << a.status().ToString();
  return *std::move(a);
}

AssemblerOptions Options(int32_t max_tokens, std::vector<std::string> stop = {}) {
  AssemblerOptions o;
  o.prompt_tokens = 10;
  o.max_tokens = max_tokens;
  o.stop = std::move(stop);
  return o;
}

TEST(ResponseAssemblerTest, StopStringAcrossTokensIsNeverShown) {
  auto a = Make(Options(100, {"world"}));
  AssembledDelta d = a->Push(kHello);
  EXPECT_EQ(d.text, "Hello");
  d = a->Push(kWor);
  EXPECT_EQ(d.text, " ");  // "wor" might be the start of "world"
  EXPECT_FALSE(d.finished);
  d = a->Push(kLd);
  EXPECT_EQ(d.text, "");
  EXPECT_TRUE(d.finished);  // the router cancels the worker request now
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
  EXPECT_EQ(a->matched_stop(), "world");
  EXPECT_EQ(a->text(), "Hello ");
  EXPECT_EQ(a->usage().completion_tokens, 3);  // up to and including the stop
  EXPECT_EQ(a->usage().prompt_tokens, 10);
  EXPECT_EQ(a->usage().total_tokens(), 13);
  // Tokens the worker produced before the cancel landed change nothing.
  d = a->Push(std::vector<int32_t>{'!', '!'});
  EXPECT_EQ(d.text, "");
  EXPECT_FALSE(d.finished);
  EXPECT_EQ(a->usage().completion_tokens, 3);
  d = a->Finish(FinishReason::kLength);
  EXPECT_FALSE(d.finished);
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
}

// vLLM's min_tokens: a stop string completed by one of the first min_tokens tokens is shown and
// does not end the choice; one completed by a later token does, even if it began earlier.
TEST(ResponseAssemblerTest, StopStringsMatchOnlyFromMinTokensOn) {
  AssemblerOptions o = Options(100, {"world"});
  o.min_tokens = 4;
  auto a = Make(o);
  EXPECT_EQ(a->Push(std::vector<int32_t>{kWor, kLd}).text, " world");  // tokens 1-2: not yet
  EXPECT_FALSE(a->finished());
  AssembledDelta d = a->Push(kWor);  // token 3: "wor" held, it may start "world"
  EXPECT_EQ(d.text, " ");
  d = a->Push(kLd);  // token 4 completes "world": now it counts
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(a->text(), " world ");
  EXPECT_EQ(a->matched_stop(), "world");
  EXPECT_EQ(a->usage().completion_tokens, 4);
}

// Completions' echo: the prompt first; a stop string inside the prompt does not end the answer.
TEST(ResponseAssemblerTest, EchoLeadsTheTextAndIsNotMatchedByStopStrings) {
  AssemblerOptions o = Options(100, {"world"});
  o.echo = "Say world:";
  auto a = Make(o);
  AssembledDelta d = a->Push(kHello);
  EXPECT_EQ(d.text, "Say world:Hello");
  EXPECT_FALSE(d.finished);
  d = a->Push(std::vector<int32_t>{kWor, kLd});
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(a->text(), "Say world:Hello ");
  EXPECT_EQ(a->usage().completion_tokens, 3);
  auto silent = Make(o);  // the worker ends before any token: the echo still comes
  EXPECT_EQ(silent->Finish(FinishReason::kStop).text, "Say world:");
}

TEST(ResponseAssemblerTest, HeldTextIsShownWhenTheStopDoesNotFollow) {
  auto a = Make(Options(100, {"world"}));
  EXPECT_EQ(a->Push(kWor).text, " ");
  EXPECT_EQ(a->Push('m').text, "worm");
  EXPECT_EQ(a->Push(kWor).text, " ");
  // The worker ends (e.g. the context is full) while "wor" is held: it is shown.
  const AssembledDelta d = a->Finish(FinishReason::kLength);
  EXPECT_EQ(d.text, "wor");
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kLength);
  EXPECT_EQ(a->text(), " worm wor");
}

TEST(ResponseAssemblerTest, SeveralTokensInOnePushStopAtTheStopString) {
  auto a = Make(Options(100, {"world"}));
  const AssembledDelta d = a->Push(std::vector<int32_t>{kHello, kWor, kLd, '!', '!'});
  EXPECT_EQ(d.text, "Hello ");
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(a->usage().completion_tokens, 3);
}

TEST(ResponseAssemblerTest, MaxTokensFinishesWithLength) {
  auto a = Make(Options(3, {"zzz"}));
  EXPECT_FALSE(a->Push('a').finished);
  EXPECT_FALSE(a->Push('b').finished);
  const AssembledDelta d = a->Push('z');
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(d.text, "z");  // held for "zzz", released at the end
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kLength);
  EXPECT_EQ(a->text(), "abz");
  EXPECT_EQ(a->usage().completion_tokens, 3);
}

TEST(ResponseAssemblerTest, StopStringOnTheLastAllowedTokenIsStop) {
  auto a = Make(Options(3, {"world"}));
  a->Push(kHello);
  a->Push(kWor);
  EXPECT_TRUE(a->Push(kLd).finished);
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
}

TEST(ResponseAssemblerTest, EndOfGenerationFinishesWithStopAndIsHidden) {
  const Vocab& v = SmallVocab();
  auto a = Make(Options(100, {"lo!"}));
  EXPECT_EQ(a->Push(kHello).text, "Hel");  // "lo" held for "lo!"
  const AssembledDelta d = a->Push(v.im_end);
  EXPECT_EQ(d.text, "lo");  // released; <|im_end|> itself is never shown
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
  EXPECT_EQ(a->text(), "Hello");
  EXPECT_EQ(a->usage().completion_tokens, 2);  // the EOG token counts (vLLM)

  // An EOS token the vocabulary marks normal is hidden too.
  auto b = Make(Options(100));
  b->Push('x');
  EXPECT_TRUE(b->Push(v.fake_eos).finished);
  EXPECT_EQ(b->text(), "x");
}

TEST(ResponseAssemblerTest, IgnoreEosKeepsGoingAndShowsOnlyNonSpecialEogText) {
  const Vocab& v = SmallVocab();
  AssemblerOptions o = Options(4);
  o.ignore_eos = true;
  auto a = Make(o);
  EXPECT_FALSE(a->Push(v.im_end).finished);  // control token: renders as nothing
  EXPECT_FALSE(a->Push('a').finished);
  EXPECT_EQ(a->Push(v.fake_eos).text, "[END]");  // a normal token: its text is shown
  EXPECT_TRUE(a->Push('b').finished);
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kLength);
  EXPECT_EQ(a->text(), "a[END]b");
}

TEST(ResponseAssemblerTest, StopTokenIdsEndWithStopEvenWithIgnoreEos) {
  AssemblerOptions o = Options(100);
  o.ignore_eos = true;
  o.stop_token_ids = {'.'};
  auto a = Make(o);
  a->Push(kHello);
  const AssembledDelta d = a->Push('.');
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(d.text, "");
  EXPECT_EQ(a->text(), "Hello");
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
  EXPECT_EQ(a->usage().completion_tokens, 2);
}

TEST(ResponseAssemblerTest, CharacterSplitAcrossTokensIsEmittedWhole) {
  auto a = Make(Options(100));
  EXPECT_EQ(a->Push('a').text, "a");
  EXPECT_EQ(a->Push(kEmoji1).text, "");
  EXPECT_EQ(a->Push(kEmoji2).text, "\xf0\x9f\x98\x80");
  // Cut off in the middle of a character: the client gets U+FFFD, never a broken byte.
  auto b = Make(Options(2));
  b->Push('a');
  const AssembledDelta d = b->Push(kEmoji1);
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(d.text, "\xef\xbf\xbd");
  EXPECT_EQ(b->finish_reason(), ApiFinishReason::kLength);
}

TEST(ResponseAssemblerTest, WorkerFinishWithoutHeldText) {
  auto a = Make(Options(100));
  a->Push(kHello);
  const AssembledDelta d = a->Finish(FinishReason::kStop);
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(d.text, "");
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
  EXPECT_EQ(a->usage().completion_tokens, 1);
}

TEST(ResponseAssemblerTest, RejectsBadOptions) {
  const text::Tokenizer& t = *SmallVocab().tokenizer;
  EXPECT_FALSE(ResponseAssembler::Create(t, Options(0)).ok());
  EXPECT_FALSE(ResponseAssembler::Create(t, Options(5, {""})).ok());
}

// vLLM's prompt_logprobs from the engine's rows: the first token null, then the prompt token with
// its own log-probability and the engine's rank (from a row without one, e.g. an older peer's:
// its place in the row's top list, unknown (0) outside it), then the k best ranked 1 .. k, the
// prompt token not twice.
TEST(ResponseAssemblerTest, RankedPromptLogprobsPutThePromptTokenFirst) {
  const text::Tokenizer& t = *SmallVocab().tokenizer;
  const std::vector<int32_t> prompt = {kHello, kWor, kLd, 'x'};
  const std::vector<TokenLogprob> raw = {
      {.logprob = -2.0f, .top = {{kLd, -0.5f}, {'a', -1.0f}, {kWor, -2.0f}}},  // " wor": 3rd
      {.logprob = -0.1f, .top = {{kLd, -0.1f}, {'b', -3.0f}, {'c', -4.0f}}},   // "ld": 1st
      {.logprob = -7.0f, .rank = 17, .top = {{'y', -0.2f}, {'z', -2.5f}, {'w', -3.0f}}},  // "x": 17th
  };
  const PromptLogprobsList list = DescribeRankedPromptLogprobs(t, prompt, raw, /*k=*/2);
  ASSERT_EQ(list.size(), prompt.size());
  EXPECT_FALSE(list[0].has_value());
  auto ids = [](const std::optional<std::vector<RankedLogprob>>& e) {
    std::vector<std::pair<int32_t, int32_t>> out;  // (id, rank)
    for (const RankedLogprob& c : *e) out.emplace_back(c.token_id, c.rank);
    return out;
  };
  using Ranked = std::vector<std::pair<int32_t, int32_t>>;
  ASSERT_TRUE(list[1].has_value());
  EXPECT_EQ(ids(list[1]), (Ranked{{kWor, 3}, {kLd, 1}, {'a', 2}}));  // top 2 shown, the prompt's rank from the 3rd
  EXPECT_EQ((*list[1])[0].logprob, -2.0f);
  EXPECT_EQ((*list[1])[0].decoded_token, " wor");
  EXPECT_EQ((*list[1])[1].decoded_token, "ld");
  EXPECT_EQ(ids(list[2]), (Ranked{{kLd, 1}, {'b', 2}}));
  EXPECT_EQ(ids(list[3]), (Ranked{{'x', 17}, {'y', 1}, {'z', 2}}));
  std::vector<TokenLogprob> unranked = raw;
  unranked[2].rank = 0;  // outside the top list and no rank given: unknown
  EXPECT_EQ(ids(DescribeRankedPromptLogprobs(t, prompt, unranked, 2)[3]), (Ranked{{'x', 0}, {'y', 1}, {'z', 2}}));
  EXPECT_EQ((*list[3])[0].logprob, -7.0f);
  // k = 0: the prompt token alone; rows missing (a short answer) leave null entries.
  const PromptLogprobsList zero = DescribeRankedPromptLogprobs(t, prompt, std::span(raw).first(1), 0);
  EXPECT_EQ(ids(zero[1]), (Ranked{{kWor, 3}}));
  EXPECT_FALSE(zero[2].has_value());
  EXPECT_FALSE(zero[3].has_value());
}

TEST(ResponseAssemblerTest, RandomStreamsShowExactlyTheTextBeforeTheFirstStop) {
  const Vocab& v = SmallVocab();
  std::mt19937 rng(99);
  const std::vector<int32_t> pool = {kHello, kWor, kLd, kEmoji1, kEmoji2, 'o', 'l', ' ', 'w'};
  for (int round = 0; round < 2000; ++round) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (int32_t& id : ids) id = pool[rng() % pool.size()];
    const int32_t max_tokens = 1 + static_cast<int32_t>(rng() % 12);
    auto a = Make(Options(max_tokens, {"world", "lo w"}));
    std::string streamed;
    bool finished = false;
    for (int32_t id : ids) {
      const AssembledDelta d = a->Push(id);
      ASSERT_TRUE(text::IsValidUtf8(d.text));
      streamed += d.text;
      ASSERT_FALSE(finished && d.finished) << "finished reported twice";
      finished |= d.finished;
    }
    if (!finished) streamed += a->Finish(FinishReason::kStop).text;
    // The reference: decode the tokens the choice consumed, cut at the first stop string.
    const size_t consumed = std::min<size_t>(ids.size(), max_tokens);
    const std::string full = text::SanitizeUtf8(v.tokenizer->Decode(
        std::span<const int32_t>(ids.data(), consumed), /*render_special=*/false));
    size_t cut = full.size();
    for (size_t end = 1; end <= full.size() && cut == full.size(); ++end) {
      for (const char* stop : {"lo w", "world"}) {
        const std::string_view s(stop);
        if (s.size() <= end && std::string_view(full).substr(end - s.size(), s.size()) == s) {
          cut = std::min(cut, end - s.size());
        }
      }
    }
    ASSERT_EQ(streamed, full.substr(0, cut)) << "round " << round;
    ASSERT_EQ(a->text(), streamed);
    EXPECT_LE(a->usage().completion_tokens, max_tokens);
  }
}

// --- the real tokenizer -------------------------------------------------------------------

const text::Tokenizer& SmolLm2(const std::string& path) {
  static std::once_flag once;
  static text::Tokenizer* tokenizer = nullptr;
  std::call_once(once, [&] {
    auto file = gguf::GgufFile::Open(path);
    TANDEM_CHECK(file.ok()) << file.status().ToString();
    auto config = text::TokenizerConfigFromGguf(**file);
    TANDEM_CHECK(config.ok()) << config.status().ToString();
    auto t = text::Tokenizer::Create(*std::move(config));
    TANDEM_CHECK(t.ok()) << t.status().ToString();
    tokenizer = t->release();
  });
  return *tokenizer;
}

// Streams `ids` one token at a time; returns what the client saw.
std::string StreamAll(ResponseAssembler& a, const std::vector<int32_t>& ids) {
  std::string seen;
  for (int32_t id : ids) {
    const AssembledDelta d = a.Push(id);
    EXPECT_TRUE(text::IsValidUtf8(d.text)) << text::testing::Escaped(d.text);
    seen += d.text;
    if (d.finished) break;
  }
  if (!a.finished()) seen += a.Finish(FinishReason::kLength).text;
  return seen;
}

TEST(ResponseAssemblerSmolLm2Test, ChatReplyEndsAtImEndWhichIsHidden) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  const text::Tokenizer& t = SmolLm2(model);
  const std::vector<int32_t> ids =
      t.Encode("Sure! Here it is: caf\xc3\xa9 \xf0\x9f\x98\x80.<|im_end|>\n<|im_start|>user",
               /*add_special=*/false, /*parse_special=*/true);
  auto a = Make(Options(1000), t);
  EXPECT_EQ(StreamAll(*a, ids), "Sure! Here it is: caf\xc3\xa9 \xf0\x9f\x98\x80.");
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
  // Counted up to and including <|im_end|> (id 2).
  size_t n = 0;
  while (ids[n] != 2) ++n;
  EXPECT_EQ(a->usage().completion_tokens, static_cast<int32_t>(n + 1));
}

TEST(ResponseAssemblerSmolLm2Test, StopStringSpanningTokens) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  const text::Tokenizer& t = SmolLm2(model);
  const std::string stop = "Observation:";
  const std::vector<int32_t> ids = t.Encode(
      "Thought: I should look it up.\nObservation: 42 \xf0\x9f\x98\x80", false, false);
  // No single token holds the whole stop string: matching it needs the held-back text.
  for (int32_t id : ids) {
    EXPECT_EQ(t.TokenToPiece(id, false).find(stop), std::string::npos) << id;
  }
  auto a = Make(Options(1000, {stop}), t);
  EXPECT_EQ(StreamAll(*a, ids), "Thought: I should look it up.\n");
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kStop);
  EXPECT_LT(a->usage().completion_tokens, static_cast<int32_t>(ids.size()));
}

TEST(ResponseAssemblerSmolLm2Test, EmojiSplitOverByteTokensArrivesWhole) {
  TANDEM_MODEL_PATH_OR_SKIP(model);
  const text::Tokenizer& t = SmolLm2(model);
  const std::string text = "\xf0\x9f\xa6\x99 and \xe4\xbd\xa0\xe5\xa5\xbd";  // 🦙 and 你好
  const std::vector<int32_t> ids = t.Encode(text, false, false);
  size_t partial_tokens = 0;  // tokens that are not whole characters
  for (int32_t id : ids) partial_tokens += !text::IsValidUtf8(t.TokenToPiece(id, false));
  EXPECT_GE(partial_tokens, 2u);
  auto a = Make(Options(1000), t);
  std::vector<std::string> deltas;
  for (int32_t id : ids) deltas.push_back(a->Push(id).text);
  for (const std::string& d : deltas) EXPECT_TRUE(text::IsValidUtf8(d));
  a->Finish(FinishReason::kLength);
  EXPECT_EQ(a->text(), text);
  EXPECT_EQ(a->finish_reason(), ApiFinishReason::kLength);
}

}  // namespace
}  // namespace tandem::api
