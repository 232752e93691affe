// GGUF files (gguf/gguf_file.h) parsed from memory, then read the way tandem reads a model:
// every metadata value through each typed accessor, every tensor's bytes and the dequantization
// of its first row, and the tokenizer and chat template (LoadTextModel) used to encode, decode
// and render a short conversation.
//
// Checked (the reader's promise): a file that parses has every tensor's data inside the file,
// with a size that matches its type and shape.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "gguf/ggml_type.h"
#include "gguf/gguf_file.h"
#include "gguf/quant.h"
#include "text/text_model.h"

namespace {

using namespace tandem::gguf;

void ReadMetadata(const GgufFile& file) {
  for (const std::string& key : file.keys()) {
    const Value* v = file.Find(key);
    FUZZ_CHECK(v != nullptr);
    (void)GgufFile::Describe(*v);
    (void)file.GetUint(key);
    (void)file.GetInt(key);
    (void)file.GetFloat(key);
    (void)file.GetBool(key);
    (void)file.GetString(key);
    (void)file.GetStringArray(key);
    (void)file.GetIntArray(key);
    (void)file.GetFloatArray(key);
  }
}

void ReadTensors(const GgufFile& file) {
  const uint8_t* begin = file.file_data();
  const uint8_t* end = begin + file.file_size();
  uint8_t sum = 0;
  std::vector<float> row;
  for (const TensorInfo& t : file.tensors()) {
    FUZZ_CHECK(file.FindTensor(t.name) != nullptr);
    FUZZ_CHECK(t.num_bytes >= 0 && t.num_elements >= 0);
    FUZZ_CHECK(t.data >= begin && t.data <= end && t.num_bytes <= end - t.data);
    if (t.num_bytes > 0) sum ^= t.data[0] ^ t.data[t.num_bytes - 1];
    const auto traits = GetTypeTraits(static_cast<uint32_t>(t.type));
    FUZZ_CHECK(traits.has_value());
    const int64_t n = t.row_elements();
    if (!traits->supported || t.num_elements == 0 || n <= 0 || n > (1 << 16) || n % traits->block_size != 0) continue;
    FUZZ_CHECK(RowBytes(t.type, n) <= t.num_bytes);
    row.resize(static_cast<size_t>(n));
    (void)DequantizeRowRef(t.type, t.data, row.data(), n);
  }
  volatile uint8_t sink = sum;
  (void)sink;
}

void UseTextModel(const GgufFile& file) {
  auto model = tandem::text::LoadTextModel(file);
  if (!model.ok()) return;
  const tandem::text::Tokenizer& tok = *model->tokenizer;
  const std::vector<tandem::text::ChatMessage> messages = {{"user", "Hello, world! <|im_end|>"}};
  const std::string prompt = model->chat_template.Apply(messages, true);
  const std::vector<int32_t> ids = tok.Encode(prompt, true, true);
  for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
  (void)tok.Decode(ids, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  auto file = GgufFile::Parse(data, size, "fuzz.gguf");
  if (!file.ok()) return 0;
  ReadMetadata(**file);
  ReadTensors(**file);
  UseTextModel(**file);
  return 0;
}
