// Writes GGUF v3 files: used by the project's tool that makes tiny random-weight test models
// and by tests that build corrupt files on purpose. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gguf/ggml_type.h"

namespace tandem::gguf {

struct Value;

class GgufWriter {
 public:
  void SetUint32(const std::string& key, uint32_t v);
  void SetUint64(const std::string& key, uint64_t v);
  void SetInt32(const std::string& key, int32_t v);
  void SetFloat32(const std::string& key, float v);
  void SetBool(const std::string& key, bool v);
  void SetString(const std::string& key, const std::string& v);
  void SetStringArray(const std::string& key, const std::vector<std::string>& v);
  void SetInt32Array(const std::string& key, const std::vector<int32_t>& v);
  void SetFloat32Array(const std::string& key, const std::vector<float>& v);
  // Copies a value read from another file (any type, arrays included; nested arrays are not
  // supported and return false).
  bool CopyValue(const std::string& key, const struct Value& v);

  // `data` holds the tensor in `type`'s layout: dims[0] elements per row.
  void AddTensor(const std::string& name, const std::vector<int64_t>& dims, GgmlType type,
                 std::vector<uint8_t> data);

  void set_alignment(uint32_t alignment) { alignment_ = alignment; }

  std::vector<uint8_t> Serialize() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    GgmlType type;
    std::vector<uint8_t> data;
  };
  void Emit(const std::function<void(const uint8_t*, size_t)>& sink) const;
  void Key(const std::string& key, uint32_t type);
  template <typename T>
  void Put(T v);
  void PutString(const std::string& s);

  uint32_t alignment_ = 32;
  uint64_t kv_count_ = 0;
  std::vector<uint8_t> kv_bytes_;
  std::vector<Tensor> tensors_;
};

}  // namespace tandem::gguf
