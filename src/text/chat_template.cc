#include "text/chat_template.h"

#include <functional>
#include <optional>

#include "common/strings.h"
#include "text/unicode.h"

namespace tandem::text {
namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";
constexpr std::string_view kStartHeader = "<|start_header_id|>";
constexpr std::string_view kEndHeader = "<|end_header_id|>";
constexpr std::string_view kEotId = "<|eot_id|>";
constexpr std::string_view kInst = "[INST]";
constexpr std::string_view kSys = "<<SYS>>";
// DeepSeek-R1 (and its Qwen/Llama distills): full-width bars, U+2581 for spaces.
constexpr std::string_view kDsUser = "<\uFF5CUser\uFF5C>";
constexpr std::string_view kDsAssistant = "<\uFF5CAssistant\uFF5C>";
constexpr std::string_view kDsEnd = "<\uFF5Cend\u2581of\u2581sentence\uFF5C>";
constexpr std::string_view kDsOutputsBegin = "<\uFF5Ctool\u2581outputs\u2581begin\uFF5C>";
constexpr std::string_view kDsOutputsEnd = "<\uFF5Ctool\u2581outputs\u2581end\uFF5C>";
constexpr std::string_view kDsOutputBegin = "<\uFF5Ctool\u2581output\u2581begin\uFF5C>";
constexpr std::string_view kDsOutputEnd = "<\uFF5Ctool\u2581output\u2581end\uFF5C>";

// Undoes the escapes of a Jinja (Python-style) string literal body; nullopt when the body
// holds an unescaped `quote` (the text is then not one literal).
std::optional<std::string> UnescapeLiteral(std::string_view body, char quote) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c == quote) return std::nullopt;
    if (c != '\\' || i + 1 == body.size()) {
      out.push_back(c);
      continue;
    }
    const char e = body[++i];
    switch (e) {
      case 'n':
        out.push_back('\n');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case '\\':
      case '\'':
      case '"':
        out.push_back(e);
        break;
      default:
        out.push_back('\\');
        out.push_back(e);
        break;
    }
  }
  return out;
}

// The fixed system message a ChatML template prints, as in SmolLM2's
//   {% if loop.first and messages[0]['role'] != 'system' %}
//   {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>\n' }}
// i.e. a string literal starting with "<|im_start|>system" and a newline (a real one or
// "\n") whose text runs to "<|im_end|>" inside the same literal.
std::string FindDefaultSystemPrompt(std::string_view src) {
  const std::string marker = StrCat(kImStart, "system");
  for (size_t pos = src.find(marker); pos != std::string_view::npos;
       pos = src.find(marker, pos + 1)) {
    if (pos == 0 || (src[pos - 1] != '\'' && src[pos - 1] != '"')) continue;
    const char quote = src[pos - 1];
    size_t p = pos + marker.size();
    if (src.substr(p, 1) == "\n") {
      p += 1;
    } else if (src.substr(p, 2) == "\\n") {
      p += 2;
    } else {
      continue;
    }
    const size_t end = src.find(kImEnd, p);
    if (end == std::string_view::npos) continue;
    if (std::optional<std::string> text = UnescapeLiteral(src.substr(p, end - p), quote)) {
      return *text;
    }
  }
  return std::string();
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromJinja(std::string_view src, std::string_view bos_token,
                                                     std::string_view eos_token) {
  if (src.empty()) return ChatMl();
  if (src.find(kImStart) != std::string_view::npos) {
    return ChatTemplate(Style::kChatMl, FindDefaultSystemPrompt(src), std::string());
  }
  if (src.find(kStartHeader) != std::string_view::npos &&
      src.find(kEndHeader) != std::string_view::npos) {
    const bool prints_bos = src.find("bos_token") != std::string_view::npos;
    return ChatTemplate(Style::kLlama3, std::string(),
                        prints_bos ? std::string(bos_token) : std::string());
  }
  if (src.find(kInst) != std::string_view::npos && src.find(kSys) != std::string_view::npos) {
    ChatTemplate t(Style::kLlama2, std::string(), std::string(bos_token));
    t.eos_ = std::string(eos_token);
    return t;
  }
  if (src.find(kDsUser) != std::string_view::npos && src.find(kDsAssistant) != std::string_view::npos) {
    const bool prints_bos = src.find("bos_token") != std::string_view::npos;
    return ChatTemplate(Style::kDeepSeekR1, std::string(),
                        prints_bos ? std::string(bos_token) : std::string());
  }
  return absl::UnimplementedError(
      StrCat("unsupported chat template: it contains none of the markers tandem knows ('", kImStart,
             "' for ChatML, '", kStartHeader, "' with '", kEndHeader, "' for Llama 3, '", kInst,
             "' with '", kSys, "' for Llama 2, '", kDsUser, "' with '", kDsAssistant,
             "' for DeepSeek-R1); template starts with: ", SanitizeUtf8(src.substr(0, 120))));
}

ChatTemplate ChatTemplate::ChatMl() {
  return ChatTemplate(Style::kChatMl, std::string(), std::string());
}

std::string_view ChatTemplate::name() const {
  switch (style_) {
    case Style::kChatMl:
      return "chatml";
    case Style::kLlama3:
      return "llama3";
    case Style::kDeepSeekR1:
      return "deepseek-r1";
    case Style::kLlama2:
      return "llama2";
  }
  return "chatml";
}

std::string ChatTemplate::Apply(std::span<const ChatMessage> messages,
                                bool add_generation_prompt) const {
  return Render(messages, add_generation_prompt).text;
}

RenderedChat ChatTemplate::Render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  RenderedChat out;
  // The template's own text: the only place special tokens may be parsed.
  auto markup = [&out](std::string_view s) {
    if (s.empty()) return;
    const size_t begin = out.text.size();
    out.text += s;
    if (!out.markup.empty() && out.markup.back().second == begin) {
      out.markup.back().second = out.text.size();
    } else {
      out.markup.emplace_back(begin, out.text.size());
    }
  };
  auto verbatim = [&out](std::string_view s) { out.text += s; };  // roles and contents
  if (style_ == Style::kChatMl) {
    if (!default_system_.empty() && !messages.empty() && messages[0].role != "system") {
      markup(kImStart);
      markup("system\n");
      markup(default_system_);
      markup(kImEnd);
      markup("\n");
    }
    for (const ChatMessage& m : messages) {
      markup(kImStart);
      verbatim(m.role);
      markup("\n");
      verbatim(m.content);
      markup(kImEnd);
      markup("\n");
    }
    if (add_generation_prompt) markup(StrCat(kImStart, "assistant\n"));
    return out;
  }
  if (style_ == Style::kDeepSeekR1) {
    RenderDeepSeekR1(messages, add_generation_prompt, markup, verbatim);
    return out;
  }
  if (style_ == Style::kLlama2) {
    RenderLlama2(messages, markup, verbatim);
    return out;
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) markup(bos_);
    markup(kStartHeader);
    verbatim(messages[i].role);
    markup(kEndHeader);
    markup("\n\n");
    verbatim(TrimPythonWhitespace(messages[i].content));
    markup(kEotId);
  }
  if (add_generation_prompt) markup(StrCat(kStartHeader, "assistant", kEndHeader, "\n\n"));
  return out;
}

// DeepSeek-R1's template: BOS, the last system message's content as it is, then per message
// "<｜User｜>"+content or "<｜Assistant｜>"+content (after its last "</think>") +
// "<｜end▁of▁sentence｜>"; tool results wrapped in its tool-output markers; other roles print
// nothing. Generation prompt: "<｜Assistant｜>" (not after a tool result).
void ChatTemplate::RenderDeepSeekR1(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                    const std::function<void(std::string_view)>& markup,
                                    const std::function<void(std::string_view)>& verbatim) const {
  markup(bos_);
  const ChatMessage* system = nullptr;
  for (const ChatMessage& m : messages) {
    if (m.role == "system") system = &m;
  }
  if (system != nullptr) verbatim(system->content);
  bool is_tool = false, first_output = true;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") {
      is_tool = false;
      markup(kDsUser);
      verbatim(m.content);
    } else if (m.role == "assistant" && is_tool) {
      markup(kDsOutputsEnd);
      verbatim(m.content);
      markup(kDsEnd);
      is_tool = false;
    } else if (m.role == "assistant") {
      const size_t think = m.content.rfind("</think>");
      markup(kDsAssistant);
      verbatim(think == std::string::npos ? std::string_view(m.content)
                                          : std::string_view(m.content).substr(think + 8));
      markup(kDsEnd);
    } else if (m.role == "tool") {
      is_tool = true;
      markup(first_output ? StrCat(kDsOutputsBegin, kDsOutputBegin) : StrCat("\n", kDsOutputBegin));
      verbatim(m.content);
      markup(kDsOutputEnd);
      first_output = false;
    }
  }
  if (is_tool) markup(kDsOutputsEnd);
  if (add_generation_prompt && !is_tool) markup(kDsAssistant);
}

// Llama 2's template: a leading system message goes into the first user turn as
// "<<SYS>>\n{system}\n<</SYS>>\n\n"; then "{bos}[INST] {content|strip} [/INST]" per user turn and
// " {content|strip} {eos}" per assistant turn; other roles print nothing, and there is no
// generation prompt (the last [/INST] is it). Only BOS and EOS are special tokens here; the
// brackets are plain text.
void ChatTemplate::RenderLlama2(std::span<const ChatMessage> messages,
                                const std::function<void(std::string_view)>& markup,
                                const std::function<void(std::string_view)>& verbatim) const {
  size_t first = 0;
  std::string system;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  if (has_system) {
    system = StrCat(kSys, "\n", messages[0].content, "\n<</SYS>>\n\n");
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const std::string content = i == first && has_system ? StrCat(system, m.content) : m.content;
    if (m.role == "user") {
      markup(bos_);
      verbatim(StrCat(kInst, " ", TrimPythonWhitespace(content), " [/INST]"));
    } else if (m.role == "assistant") {
      verbatim(StrCat(" ", TrimPythonWhitespace(content), " "));
      markup(eos_);
    }
  }
}

}  // namespace tandem::text
