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
