// Chat templates (tokenizer_goldens_test.cc also compares with jinja2's rendering).
#include "text/chat_template.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::text {
namespace {

using ::testing::HasSubstr;

// tokenizer.chat_template of SmolLM2-135M-Instruct, as the GGUF holds it.
constexpr std::string_view kSmolLm2Template =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

TEST(ChatTemplateTest, SmolLm2InsertsItsDefaultSystemPrompt) {
  auto t = ChatTemplate::FromJinja(kSmolLm2Template);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "chatml");
  EXPECT_EQ(t->default_system_prompt(),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  const std::vector<ChatMessage> hi = {{"user", "Hi"}};
  EXPECT_EQ(t->Apply(hi, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, ExplicitSystemMessageReplacesTheDefault) {
  auto t = ChatTemplate::FromJinja(kSmolLm2Template);
  ASSERT_TRUE(t.ok());
  const std::vector<ChatMessage> msgs = {
      {"system", "Be terse."}, {"user", "Hi"}, {"assistant", "Hello."}};
  EXPECT_EQ(t->Apply(msgs, false),
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n");
}

TEST(ChatTemplateTest, EmptyTemplateIsChatMlWithoutDefaultSystemPrompt) {
  auto t = ChatTemplate::FromJinja("");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->name(), "chatml");
  const std::vector<ChatMessage> hi = {{"user", "Hi"}};
  EXPECT_EQ(t->Apply(hi, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(ChatTemplate::ChatMl().Apply(hi, true), t->Apply(hi, true));
  EXPECT_EQ(t->Apply({}, true), "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, RenderMarksOnlyTheTemplatesOwnText) {
  auto t = ChatTemplate::FromJinja(kSmolLm2Template);
  ASSERT_TRUE(t.ok());
  const std::vector<ChatMessage> msgs = {{"user", "<|im_end|>"}};
  RenderedChat chat = t->Render(msgs, true);
  EXPECT_EQ(chat.text, t->Apply(msgs, true));
  std::string marked;
  for (auto [b, e] : chat.markup) marked += chat.text.substr(b, e - b) + "|";
  // The role and the content are outside the markup; the default system prompt is the template's.
  EXPECT_EQ(marked,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>|\n|<|im_end|>\n<|im_start|>assistant\n|");
}

TEST(ChatTemplateTest, EscapedNewlinesInTheDefaultPromptAreUnescaped) {
  auto t = ChatTemplate::FromJinja(
      "{% if messages[0]['role'] != 'system' %}{{ \"<|im_start|>system\\nLine one.\\nIt's "
      "two.<|im_end|>\\n\" }}{% endif %}{% for m in messages %}...<|im_start|>{% endfor %}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->default_system_prompt(), "Line one.\nIt's two.");
}

TEST(ChatTemplateTest, Llama3TrimsContentAndPrintsBos) {
  const std::string src =
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
      "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
      "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
  auto t = ChatTemplate::FromJinja(src, "<|begin_of_text|>");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->name(), "llama3");
  const std::vector<ChatMessage> msgs = {{"system", " Be brief.\n"}, {"user", "\tHi  "}};
  EXPECT_EQ(t->Apply(msgs, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Without bos_token in the template, no BOS text.
  auto no_bos = ChatTemplate::FromJinja("<|start_header_id|>{{ x }}<|end_header_id|>", "<s>");
  ASSERT_TRUE(no_bos.ok());
  EXPECT_EQ(no_bos->Apply(std::vector<ChatMessage>{{"user", "x"}}, false),
            "<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
}

// DeepSeek-R1 distills (qwen2 and llama files). Expected texts: what jinja2 renders with the
// template of DeepSeek-R1-Distill-Qwen-7B's GGUF for the same messages and bos_token "<BOS>".
TEST(ChatTemplateTest, DeepSeekR1) {
  auto t = ChatTemplate::FromJinja(
      "{{bos_token}}{{ns.system_prompt}}{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>'}}", "<BOS>");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "deepseek-r1");
  EXPECT_EQ(t->Apply(std::vector<ChatMessage>{{"user", "Hi"}}, true), "<BOS><｜User｜>Hi<｜Assistant｜>");
  // The last system message is the system prompt, wherever it is; reasoning before </think>
  // is dropped from earlier answers.
  const std::vector<ChatMessage> turns = {{"system", "A"},
                                          {"user", " u1 "},
                                          {"assistant", "<think>x</think>\n\nAnswer"},
                                          {"system", "B"},
                                          {"user", "u2"}};
  EXPECT_EQ(t->Apply(turns, true),
            "<BOS>B<｜User｜> u1 <｜Assistant｜>\n\nAnswer<｜end▁of▁sentence｜><｜User｜>u2<｜Assistant｜>");
  const std::vector<ChatMessage> tools = {
      {"user", "q"}, {"tool", "r1"}, {"tool", "r2"}, {"assistant", "done"}, {"tool", "r3"}};
  EXPECT_EQ(t->Apply(tools, true),
            "<BOS><｜User｜>q<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>r1<｜tool▁output▁end｜>\n"
            "<｜tool▁output▁begin｜>r2<｜tool▁output▁end｜><｜tool▁outputs▁end｜>done<｜end▁of▁sentence｜>\n"
            "<｜tool▁output▁begin｜>r3<｜tool▁output▁end｜><｜tool▁outputs▁end｜>");
  // A user's text that looks like markup stays outside the markup ranges.
  const RenderedChat r = t->Render(std::vector<ChatMessage>{{"user", "<｜Assistant｜>"}}, false);
  ASSERT_EQ(r.markup.size(), 1u);
  EXPECT_EQ(r.text.substr(r.markup[0].first, r.markup[0].second - r.markup[0].first), "<BOS><｜User｜>");
}

// Llama 2: BOS before every user turn, EOS after every answer, the system block inside the
// first turn, each turn's content stripped at its two ends (with the system block in front, the
// user text's leading space stays, as Jinja's strip() leaves it). A user's "</s>" stays text (outside the markup).
TEST(ChatTemplateTest, Llama2) {
  auto t = ChatTemplate::FromJinja("{{ bos_token + '[INST] ' }}<<SYS>>{{ eos_token }}", "<s>", "</s>");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name(), "llama2");
  const std::vector<ChatMessage> msgs = {
      {"system", "Be brief."}, {"user", " Hi \n"}, {"assistant", "Hello! "}, {"user", "2+2?"}};
  EXPECT_EQ(t->Apply(msgs, true),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
  const RenderedChat r = t->Render(std::vector<ChatMessage>{{"user", "</s><s>"}}, true);
  EXPECT_EQ(r.text, "<s>[INST] </s><s> [/INST]");
  ASSERT_EQ(r.markup.size(), 1u);
  EXPECT_EQ(r.markup[0], std::make_pair(size_t{0}, size_t{3}));
}

TEST(ChatTemplateTest, UnknownTemplateIsUnimplementedAndNamesTheMarkers) {
  auto t =
      ChatTemplate::FromJinja("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("<|im_start|>"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("<|start_header_id|>"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("[INST]"));
}

}  // namespace
}  // namespace tandem::text
