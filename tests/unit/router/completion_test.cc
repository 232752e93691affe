// A request's choices (n, best_of) as its client sees them: every choice's text under its own
// index, the answer once all have ended, the later choices started only after the first has its
// first token (so that they find its prompt in the prefix cache), best_of's pick by mean
// log-probability, and one failure or a client gone stopping every choice.
#include "router/completion.h"

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/check.h"
#include "gtest/gtest.h"
#include "metrics/registry.h"
#include "unit/text/text_test_util.h"

namespace tandem::router {
namespace {

const text::Tokenizer& Bytes() {  // ids 0..255: the bytes themselves
  static const text::Tokenizer* t = text::testing::SmallVocab({}).Build().release();
  return *t;
}

std::vector<std::unique_ptr<api::ResponseAssembler>> Assemblers(int n, int32_t max_tokens) {
  std::vector<std::unique_ptr<api::ResponseAssembler>> out;
  for (int i = 0; i < n; ++i) {
    api::AssemblerOptions o;
    o.prompt_tokens = 7;
    o.max_tokens = max_tokens;
    auto a = api::ResponseAssembler::Create(Bytes(), o);
    TANDEM_CHECK(a.ok());
    out.push_back(*std::move(a));
  }
  return out;
}

std::vector<int32_t> Ids(std::string_view s) { return {s.begin(), s.end()}; }

// What the door would have written.
struct Recorded {
  std::vector<std::pair<int32_t, std::string>> deltas;  // (choice, text), non-empty texts
  std::vector<int32_t> raw_logprobs;                    // per Delta: how many it carried
  std::vector<int32_t> choice_ends;
  // PromptLogprobs calls: (choice, the shown entries' log-probabilities, -1 for an unscored
  // one), and the order of calls (P) and non-empty deltas (D) per choice.
  std::vector<std::pair<int32_t, std::vector<float>>> prompt_logprobs;
  std::vector<std::string> order;
  std::optional<CompletionEnd> end;
  std::map<int32_t, std::string> end_texts;  // copies: CompletionEnd's views die with the completion
  int failures = 0;
};

class RecordingEncoder final : public CompletionEncoder {
 public:
  explicit RecordingEncoder(Recorded* out) : out_(out) {}
  void Delta(int32_t choice, std::string_view text, std::span<const int32_t>, std::span<const TokenLogprob> raw,
             const std::vector<api::LogprobEntry>&) override {
    if (!text.empty()) out_->deltas.emplace_back(choice, std::string(text));
    if (!text.empty()) out_->order.push_back("D" + std::to_string(choice));
    out_->raw_logprobs.push_back(static_cast<int32_t>(raw.size()));
  }
  void PromptLogprobs(int32_t choice, std::span<const int32_t> prompt, std::span<const TokenLogprob> raw,
                      const std::vector<api::LogprobEntry>& shown) override {
    std::vector<float> values;
    for (const api::LogprobEntry& e : shown) values.push_back(e.unscored ? -1.0f : e.logprob);
    EXPECT_EQ(raw.size() + 1, prompt.size());
    out_->prompt_logprobs.emplace_back(choice, std::move(values));
    out_->order.push_back("P" + std::to_string(choice));
  }
  void ChoiceEnd(int32_t choice, api::ApiFinishReason) override { out_->choice_ends.push_back(choice); }
  void End(const CompletionEnd& end) override {
    out_->end = end;
    for (const ChoiceResult& c : end.choices) out_->end_texts[c.choice] = std::string(c.text);
  }
  void Fail(const absl::Status&, const api::ApiError&) override { ++out_->failures; }

 private:
  Recorded* out_;
};

class CompletionTest : public ::testing::Test {
 protected:
  std::shared_ptr<Completion> Make(int generated, int returned, int32_t max_tokens, bool show_logprobs = false) {
    auto c = std::make_shared<Completion>("r1", "/v1/completions", Assemblers(generated, max_tokens), returned,
                                          show_logprobs, std::make_unique<RecordingEncoder>(&rec_), &metrics_);
    c->SetStarter([this](int32_t choice) { started_.push_back(choice); });
    for (int i = 0; i < generated; ++i) c->SetCancel(i, [this, i] { cancelled_.push_back(i); });
    return c;
  }

  metrics::MetricsRegistry registry_;
  RouterMetrics metrics_{registry_};
  Recorded rec_;
  std::vector<int32_t> started_;
  std::vector<int32_t> cancelled_;
};

TEST_F(CompletionTest, LaterChoicesStartAfterTheFirstHasTokensAndTheAnswerWaitsForAll) {
  auto c = Make(3, 3, /*max_tokens=*/2);
  EXPECT_TRUE(started_.empty());  // choice 0 alone computes the prompt
  c->OnTokens(0, Ids("a"), {});
  EXPECT_EQ(started_, (std::vector<int32_t>{1, 2}));
  c->OnTokens(2, Ids("xy"), {});  // max_tokens: choice 2 is complete
  c->OnTokens(1, Ids("p"), {});
  c->OnFinished(1, FinishReason::kStop, {});
  EXPECT_FALSE(rec_.end.has_value());
  EXPECT_EQ(rec_.choice_ends, (std::vector<int32_t>{2, 1}));
  c->OnTokens(0, Ids("b"), {});
  ASSERT_TRUE(rec_.end.has_value());
  EXPECT_EQ(rec_.end->last, 0);
  ASSERT_EQ(rec_.end->choices.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rec_.end->choices[i].choice, i);
  EXPECT_EQ(rec_.end_texts, (std::map<int32_t, std::string>{{0, "ab"}, {1, "p"}, {2, "xy"}}));
  EXPECT_EQ(rec_.end->choices[1].finish, api::ApiFinishReason::kStop);
  EXPECT_EQ(rec_.end->choices[2].finish, api::ApiFinishReason::kLength);
  EXPECT_EQ(rec_.end->usage.prompt_tokens, 7);      // the prompt counts once
  EXPECT_EQ(rec_.end->usage.completion_tokens, 5);  // every choice's tokens
  EXPECT_EQ(started_.size(), 2u);                   // started once
  // The deltas kept their choices.
  EXPECT_EQ(rec_.deltas, (std::vector<std::pair<int32_t, std::string>>{{0, "a"}, {2, "xy"}, {1, "p"}, {0, "b"}}));
}

TEST_F(CompletionTest, BestOfReturnsTheHighestMeanLogprobAndHidesUnaskedLogprobs) {
  auto c = Make(3, 1, /*max_tokens=*/2);
  const std::vector<TokenLogprob> low = {{.logprob = -3.0f}, {.logprob = -3.0f}};
  const std::vector<TokenLogprob> high = {{.logprob = -0.5f}, {.logprob = -1.5f}};
  const std::vector<TokenLogprob> mid = {{.logprob = -1.0f}, {.logprob = -2.0f}};
  c->OnTokens(0, Ids("aa"), low);
  c->OnTokens(1, Ids("bb"), high);
  c->OnTokens(2, Ids("cc"), mid);
  ASSERT_TRUE(rec_.end.has_value());
  ASSERT_EQ(rec_.end->choices.size(), 1u);
  EXPECT_EQ(rec_.end->choices[0].choice, 1);
  EXPECT_EQ(rec_.end_texts.at(1), "bb");
  EXPECT_EQ(rec_.end->usage.completion_tokens, 6);  // all three were generated
  for (int32_t n : rec_.raw_logprobs) EXPECT_EQ(n, 0);  // the client did not ask for them
}

TEST_F(CompletionTest, OneChoiceFailingFailsTheRequestAndStopsTheOthers) {
  auto c = Make(3, 3, 4);
  c->OnTokens(0, Ids("a"), {});
  c->OnFailed(2, absl::UnavailableError("worker gone"));
  EXPECT_EQ(rec_.failures, 1);
  EXPECT_EQ(cancelled_, (std::vector<int32_t>{0, 1, 2}));
  c->OnTokens(1, Ids("b"), {});  // late tokens change nothing
  c->OnFinished(0, FinishReason::kStop, {});
  EXPECT_FALSE(rec_.end.has_value());
  EXPECT_EQ(rec_.failures, 1);
}

TEST_F(CompletionTest, AClientGoneBeforeTheFirstTokenNeverStartsTheOthers) {
  auto c = Make(2, 2, 4);
  c->Close();
  EXPECT_EQ(cancelled_, (std::vector<int32_t>{0, 1}));
  c->OnTokens(0, Ids("a"), {});
  EXPECT_TRUE(started_.empty());
  EXPECT_TRUE(rec_.deltas.empty());
}

TEST_F(CompletionTest, OneChoiceIsAnsweredAsBefore) {
  auto c = Make(1, 1, 2);
  c->OnPromptCached(0, 5);
  c->OnTokens(0, Ids("hi"), {});
  ASSERT_TRUE(rec_.end.has_value());
  EXPECT_TRUE(rec_.choice_ends.empty());
  EXPECT_EQ(rec_.end_texts.at(0), "hi");
  EXPECT_EQ(rec_.end->usage.cached_tokens, 5);
  EXPECT_EQ(cancelled_, (std::vector<int32_t>{0}));  // max_tokens reached: the worker may stop
}

// Tokens that arrive together (speculative decoding keeps several per iteration) share the gap
// before them: the inter-token histogram counts each token, at gap / k.
TEST_F(CompletionTest, TokensArrivingTogetherEachCountAsAnInterTokenGap) {
  auto c = Make(1, 1, 10);
  auto count = [this] {
    const std::string text = registry_.Render();
    const size_t at = text.find("tandem_router_itl_seconds_count ");
    return at == std::string::npos ? -1 : std::stoi(text.substr(at + 32));
  };
  c->OnTokens(0, Ids("a"), {});  // the first token: time to first token, no gap
  EXPECT_EQ(count(), 0);
  c->OnTokens(0, Ids("bcd"), {});
  EXPECT_EQ(count(), 3);
  c->OnTokens(0, Ids("e"), {});
  EXPECT_EQ(count(), 4);
}

// Each finished request of two or more tokens adds its time per output token after the first to
// the TPOT histogram, once, when it ends: (last token - first token) / (tokens - 1).
TEST_F(CompletionTest, AFinishedRequestObservesItsTimePerOutputTokenOnce) {
  auto series = [this](std::string_view name) {
    const std::string text = registry_.Render();
    const size_t at = text.find(std::string(name) + " ");
    return at == std::string::npos ? -1.0 : std::stod(text.substr(at + name.size() + 1));
  };
  auto c = Make(1, 1, 3);
  c->OnTokens(0, Ids("a"), {});
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  c->OnTokens(0, Ids("b"), {});
  EXPECT_EQ(series("tandem_router_tpot_seconds_count"), 0);  // not before the request ends
  c->OnTokens(0, Ids("c"), {});
  ASSERT_TRUE(rec_.end.has_value());
  EXPECT_EQ(series("tandem_router_tpot_seconds_count"), 1);
  const double tpot = series("tandem_router_tpot_seconds_sum");
  EXPECT_GE(tpot, 0.040 / 2);  // at least the 40 ms over the two tokens after the first
  EXPECT_LT(tpot, 1.0);
  // One token has no pace.
  auto one = Make(1, 1, 1);
  one->OnTokens(0, Ids("z"), {});
  EXPECT_EQ(series("tandem_router_tpot_seconds_count"), 1);
}

// Echo with logprobs: choice 0's flow brings the prompt's log-probabilities; every choice's answer
// starts with them (once, before its first text), the first prompt token unscored.
TEST_F(CompletionTest, ThePromptsLogprobsLeadEveryChoiceOnce) {
  auto c = Make(2, 2, /*max_tokens=*/2, /*show_logprobs=*/true);
  c->ExpectPromptLogprobs(Ids("abc"), /*echoed=*/true);
  const std::vector<TokenLogprob> prompt = {{.logprob = -0.25f}, {.logprob = -2.0f}};
  c->OnPromptLogprobs(0, prompt);
  const std::vector<TokenLogprob> one = {{.logprob = -0.5f}};
  c->OnTokens(0, Ids("x"), one);
  c->OnTokens(1, Ids("y"), one);
  c->OnTokens(0, Ids("z"), one);
  c->OnTokens(1, Ids("w"), one);
  ASSERT_TRUE(rec_.end.has_value());
  const std::vector<float> shown = {-1.0f, -0.25f, -2.0f};
  EXPECT_EQ(rec_.prompt_logprobs,
            (std::vector<std::pair<int32_t, std::vector<float>>>{{0, shown}, {1, shown}}));
  EXPECT_EQ(rec_.order, (std::vector<std::string>{"P0", "D0", "P1", "D1", "D0", "D1"}));
}

// A worker that answered without them (or with a wrong count, which the flow drops) fails the
// request with a clear error instead of an answer missing its prompt's entries.
TEST_F(CompletionTest, MissingPromptLogprobsFailTheRequest) {
  auto c = Make(1, 1, /*max_tokens=*/4, /*show_logprobs=*/true);
  c->ExpectPromptLogprobs(Ids("abc"), /*echoed=*/true);
  const std::vector<TokenLogprob> one = {{.logprob = -0.5f}};
  c->OnTokens(0, Ids("x"), one);
  EXPECT_EQ(rec_.failures, 1);
  EXPECT_TRUE(rec_.deltas.empty());
  EXPECT_EQ(cancelled_, (std::vector<int32_t>{0}));
  c->OnTokens(0, Ids("y"), one);  // ignored: the request is over
  EXPECT_TRUE(rec_.deltas.empty());
}

}  // namespace
}  // namespace tandem::router
