// Reader for GGUF model files (versions 2 and 3): metadata, tensor infos and tensor data
// viewed in place through a read-only mmap.
//
// Every length, count and offset read from the file is checked against the bytes that are
// there, so a corrupt or truncated file yields a DataLoss/InvalidArgument error naming what is
// wrong and where, never a crash or an out-of-bounds read.
//
// Thread-safety: immutable after Open(); every const method may be called concurrently.
// Views (string_view, tensor data pointers) stay valid while the GgufFile lives.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/strings.h"
#include "absl/status/statusor.h"
#include "common/mapped_file.h"
#include "gguf/ggml_type.h"

namespace tandem::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
std::string_view ValueTypeName(ValueType t);

// One metadata value. Arrays of numbers are kept as a view of their raw bytes and converted
// on access; arrays of strings as views.
struct Value {
  ValueType type = ValueType::kUint8;
  // Scalars.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string_view s;
  // Arrays.
  ValueType elem_type = ValueType::kUint8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;            // numeric elements, little-endian, unaligned
  std::vector<std::string_view> strings;   // string elements

  bool is_integer() const;
  bool is_float() const { return type == ValueType::kFloat32 || type == ValueType::kFloat64; }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // dims[0] is the contiguous (row) dimension
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;        // relative to the data section
  int64_t num_elements = 0;
  int64_t num_bytes = 0;
  const uint8_t* data = nullptr;

  int64_t rows() const;       // product of dims[1..]
  int64_t row_elements() const { return dims.empty() ? 0 : dims[0]; }
};

class GgufFile {
 public:
  // Maps and parses the file at `path`.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes owned by the caller (they must outlive the result). For tests and fuzzing.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const uint8_t* data, size_t size,
                                                         std::string name);

  uint32_t version() const { return version_; }
  const std::string& path() const { return name_; }
  size_t file_size() const { return size_; }
  uint64_t alignment() const { return alignment_; }
  const uint8_t* file_data() const { return data_; }

  const std::vector<std::string>& keys() const { return key_order_; }
  const Value* Find(std::string_view key) const;

  // Typed accessors: NotFound when the key is missing, InvalidArgument on a type mismatch.
  absl::StatusOr<uint64_t> GetUint(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;  // accepts integers too
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  absl::StatusOr<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;

  // As above, with a default when the key is missing (a type mismatch is still an error).
  absl::StatusOr<uint64_t> GetUintOr(std::string_view key, uint64_t def) const;
  absl::StatusOr<double> GetFloatOr(std::string_view key, double def) const;
  absl::StatusOr<bool> GetBoolOr(std::string_view key, bool def) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

  // Human-readable one-line description of a value (for `tandem model info` and errors).
  static std::string Describe(const Value& v, size_t max_elements = 8);

 private:
  GgufFile() = default;
  absl::Status ParseAll();

  std::unique_ptr<MappedFile> file_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  StringMap<Value> kv_;
  std::vector<std::string> key_order_;
  std::vector<TensorInfo> tensors_;
  StringMap<size_t> tensor_index_;
};

}  // namespace tandem::gguf
