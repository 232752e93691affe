// Chat templates: turn a conversation into the prompt text a chat model was trained on.
//
// tandem does not run Jinja. FromJinja() recognises the template a GGUF carries
// (tokenizer.chat_template) by its markers and renders the same text natively:
//
//  * ChatML ("<|im_start|>"): "<|im_start|>{role}\n{content}<|im_end|>\n" per message, and
//    "<|im_start|>assistant\n" as the generation prompt. Templates such as SmolLM2's and
//    Qwen2's insert a fixed system message when the first message is not a system one; that
//    default system prompt is read out of the template and inserted the same way.
//  * Llama 3 ("<|start_header_id|>" and "<|end_header_id|>"), as Meta's template renders it:
//    "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>" per message
//    (content stripped of whitespace as Jinja's `trim` does), the BOS text before the first
//    message when the template prints `bos_token`, and
//    "<|start_header_id|>assistant<|end_header_id|>\n\n" as the generation prompt. Like
//    llama.cpp's built-in "llama3" template, Llama 3.1+ templates are rendered this way too
//    (without their date/tool preamble).
//  * DeepSeek-R1 ("<｜User｜>" and "<｜Assistant｜>", the R1 distills of Qwen2 and Llama): BOS
//    text, the last system message's content, then "<｜User｜>{content}" and
//    "<｜Assistant｜>{content after its last </think>}<｜end▁of▁sentence｜>" per message (tool
//    results in the template's tool-output markers), and "<｜Assistant｜>" as the generation
//    prompt.
//  * Llama 2 ("[INST]" and "<<SYS>>"): "{bos}[INST] {user|strip} [/INST]" per user turn, a
//    leading system message inside the first turn between "<<SYS>>\n" and "\n<</SYS>>\n\n",
//    " {assistant|strip} {eos}" per answer; no generation prompt.
//  * An empty template means ChatML without a default system prompt.
//
// Roles and contents are inserted verbatim. Render() also says which bytes the template wrote:
// tokenize with Tokenizer::EncodeChat so that special-token text is parsed only there, never in
// a user's content (a message containing "<|im_start|>system" stays plain text).
//
// Thread-safety: immutable; Apply() may be called concurrently. Copyable.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::text {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// A rendered conversation: the text, and the byte ranges [begin, end) the template itself wrote
// (sorted, disjoint), outside of which nothing is a special token.
struct RenderedChat {
  std::string text;
  std::vector<std::pair<size_t, size_t>> markup;
};

class ChatTemplate {
 public:
  // `bos_token`, `eos_token`: the texts Jinja's `bos_token` and `eos_token` would hold (the
  // vocabulary's, e.g. "<|begin_of_text|>"); used only by templates that print them.
  // Unrecognised templates: Unimplemented, naming the markers looked for.
  static absl::StatusOr<ChatTemplate> FromJinja(std::string_view jinja_source,
                                                std::string_view bos_token = {},
                                                std::string_view eos_token = {});
  // Plain ChatML without a default system prompt.
  static ChatTemplate ChatMl();

  std::string Apply(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  RenderedChat Render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // "chatml", "llama3", "llama2" or "deepseek-r1".
  std::string_view name() const;
  // The system prompt inserted when the conversation does not start with one (may be empty).
  const std::string& default_system_prompt() const { return default_system_; }

 private:
  enum class Style { kChatMl, kLlama3, kDeepSeekR1, kLlama2 };
  ChatTemplate(Style style, std::string default_system, std::string bos)
      : style_(style), default_system_(std::move(default_system)), bos_(std::move(bos)) {}

  void RenderDeepSeekR1(std::span<const ChatMessage> messages, bool add_generation_prompt,
                        const std::function<void(std::string_view)>& markup,
                        const std::function<void(std::string_view)>& verbatim) const;

  Style style_;
  std::string default_system_;
  void RenderLlama2(std::span<const ChatMessage> messages,
                    const std::function<void(std::string_view)>& markup,
                    const std::function<void(std::string_view)>& verbatim) const;

  std::string bos_;  // printed before the first message (Llama 3, DeepSeek-R1), each user turn (Llama 2)
  std::string eos_;  // after each assistant turn (Llama 2)
};

}  // namespace tandem::text
