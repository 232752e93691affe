#include "gguf/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/strings.h"
#include "common/status_macros.h"

namespace tandem::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;
constexpr size_t kMaxNameLength = 1024;
constexpr int kMaxArrayNesting = 4;
// Counts read from the file are only bounded by the bytes left, which in a multi-GB model
// allows hundreds of millions of entries: reserve at most this many up front, and let a larger
// (real or corrupt) count grow the vector as entries are actually read.
constexpr uint64_t kMaxReserve = 1 << 16;

size_t ScalarSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

// Bounds-checked little-endian cursor over the file bytes.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  absl::Status Error(std::string_view what) const {
    return absl::DataLossError(StrCat(name_, ": corrupt GGUF at byte ", pos_, ": ", what));
  }

  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    if (remaining() < sizeof(T)) {
      return absl::DataLossError(StrCat(name_, ": truncated GGUF: ", what, " at byte ", pos_,
                                              " needs ", sizeof(T), " bytes, file has ", size_));
    }
    T v;
    std::memcpy(&v, data_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }

  absl::StatusOr<std::string_view> ReadString(std::string_view what) {
    TANDEM_ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    if (len > remaining()) {
      return Error(StrCat(what, " claims ", len, " bytes but only ", remaining(), " remain"));
    }
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return s;
  }

  absl::Status Skip(uint64_t n, std::string_view what) {
    if (n > remaining()) return Error(StrCat(what, " runs past the end of the file"));
    pos_ += n;
    return absl::OkStatus();
  }

  const uint8_t* here() const { return data_ + pos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
};

absl::StatusOr<Value> ReadValue(Cursor& c, ValueType type, std::string_view key, int depth);

absl::Status ReadScalar(Cursor& c, ValueType type, Value& v, std::string_view key) {
  switch (type) {
    case ValueType::kUint8: { TANDEM_ASSIGN_OR_RETURN(v.u, c.Read<uint8_t>(key)); v.i = static_cast<int64_t>(v.u); break; }
    case ValueType::kUint16: { TANDEM_ASSIGN_OR_RETURN(v.u, c.Read<uint16_t>(key)); v.i = static_cast<int64_t>(v.u); break; }
    case ValueType::kUint32: { TANDEM_ASSIGN_OR_RETURN(v.u, c.Read<uint32_t>(key)); v.i = static_cast<int64_t>(v.u); break; }
    case ValueType::kUint64: { TANDEM_ASSIGN_OR_RETURN(v.u, c.Read<uint64_t>(key)); v.i = static_cast<int64_t>(v.u); break; }
    case ValueType::kInt8: { TANDEM_ASSIGN_OR_RETURN(v.i, c.Read<int8_t>(key)); v.u = static_cast<uint64_t>(v.i); break; }
    case ValueType::kInt16: { TANDEM_ASSIGN_OR_RETURN(v.i, c.Read<int16_t>(key)); v.u = static_cast<uint64_t>(v.i); break; }
    case ValueType::kInt32: { TANDEM_ASSIGN_OR_RETURN(v.i, c.Read<int32_t>(key)); v.u = static_cast<uint64_t>(v.i); break; }
    case ValueType::kInt64: { TANDEM_ASSIGN_OR_RETURN(v.i, c.Read<int64_t>(key)); v.u = static_cast<uint64_t>(v.i); break; }
    case ValueType::kFloat32: { TANDEM_ASSIGN_OR_RETURN(float f, c.Read<float>(key)); v.f = f; break; }
    case ValueType::kFloat64: { TANDEM_ASSIGN_OR_RETURN(v.f, c.Read<double>(key)); break; }
    case ValueType::kBool: {
      TANDEM_ASSIGN_OR_RETURN(uint8_t b, c.Read<uint8_t>(key));
      if (b > 1) return c.Error(StrCat(key, ": bool value ", int{b}));
      v.b = b != 0;
      break;
    }
    case ValueType::kString: { TANDEM_ASSIGN_OR_RETURN(v.s, c.ReadString(key)); break; }
    default:
      return c.Error(StrCat(key, ": unknown value type ", static_cast<uint32_t>(type)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Value> ReadValue(Cursor& c, ValueType type, std::string_view key, int depth) {
  Value v;
  v.type = type;
  if (type != ValueType::kArray) {
    TANDEM_RETURN_IF_ERROR(ReadScalar(c, type, v, key));
    return v;
  }
  if (depth >= kMaxArrayNesting) return c.Error(StrCat(key, ": arrays nested too deeply"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t elem, c.Read<uint32_t>(key));
  TANDEM_ASSIGN_OR_RETURN(v.count, c.Read<uint64_t>(key));
  v.elem_type = static_cast<ValueType>(elem);
  if (const size_t sz = ScalarSize(v.elem_type); sz > 0) {
    if (v.count > c.remaining() / sz) {
      return c.Error(StrCat(key, ": array of ", v.count, " elements does not fit in the file"));
    }
    v.raw = c.here();
    TANDEM_RETURN_IF_ERROR(c.Skip(v.count * sz, key));
  } else if (v.elem_type == ValueType::kString) {
    if (v.count > c.remaining() / 8) {
      return c.Error(StrCat(key, ": array of ", v.count, " strings does not fit in the file"));
    }
    v.strings.reserve(std::min(v.count, kMaxReserve));
    for (uint64_t k = 0; k < v.count; ++k) {
      TANDEM_ASSIGN_OR_RETURN(auto s, c.ReadString(key));
      v.strings.push_back(s);
    }
  } else if (v.elem_type == ValueType::kArray) {
    if (v.count > c.remaining() / 12) {
      return c.Error(StrCat(key, ": array of ", v.count, " arrays does not fit in the file"));
    }
    for (uint64_t k = 0; k < v.count; ++k) {  // parsed for validation, not kept
      TANDEM_ASSIGN_OR_RETURN(auto inner, ReadValue(c, ValueType::kArray, key, depth + 1));
      (void)inner;
    }
  } else {
    return c.Error(StrCat(key, ": unknown array element type ", elem));
  }
  return v;
}

template <typename T>
T LoadRaw(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

int64_t RawInt(ValueType t, const uint8_t* p) {
  switch (t) {
    case ValueType::kUint8: return LoadRaw<uint8_t>(p);
    case ValueType::kInt8: return LoadRaw<int8_t>(p);
    case ValueType::kUint16: return LoadRaw<uint16_t>(p);
    case ValueType::kInt16: return LoadRaw<int16_t>(p);
    case ValueType::kUint32: return LoadRaw<uint32_t>(p);
    case ValueType::kInt32: return LoadRaw<int32_t>(p);
    case ValueType::kUint64: return static_cast<int64_t>(LoadRaw<uint64_t>(p));
    case ValueType::kInt64: return LoadRaw<int64_t>(p);
    case ValueType::kBool: return LoadRaw<uint8_t>(p) != 0;
    default: return 0;
  }
}

bool IsIntegerType(ValueType t) {
  switch (t) {
    case ValueType::kUint8: case ValueType::kInt8: case ValueType::kUint16: case ValueType::kInt16:
    case ValueType::kUint32: case ValueType::kInt32: case ValueType::kUint64: case ValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool IsSignedType(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 ||
         t == ValueType::kInt64;
}

}  // namespace

std::string_view ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return "unknown";
}

bool Value::is_integer() const { return IsIntegerType(type); }

int64_t TensorInfo::rows() const {
  int64_t r = 1;
  for (size_t k = 1; k < dims.size(); ++k) r *= dims[k];
  return r;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  auto f = std::unique_ptr<GgufFile>(new GgufFile());
  f->data_ = mapped->data();
  f->size_ = mapped->size();
  f->name_ = path;
  f->file_ = std::move(mapped);
  TANDEM_RETURN_IF_ERROR(f->ParseAll());
  return f;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(const uint8_t* data, size_t size,
                                                          std::string name) {
  auto f = std::unique_ptr<GgufFile>(new GgufFile());
  f->data_ = data;
  f->size_ = size;
  f->name_ = std::move(name);
  TANDEM_RETURN_IF_ERROR(f->ParseAll());
  return f;
}

namespace {

// One tensor-info entry: name, shape, type (with its block rule) and aligned offset.
absl::StatusOr<TensorInfo> ReadTensorInfo(Cursor& c, uint64_t alignment) {
  TensorInfo t;
  TANDEM_ASSIGN_OR_RETURN(auto name, c.ReadString("tensor name"));
  if (name.empty() || name.size() > kMaxNameLength) return c.Error("bad tensor name length");
  t.name = std::string(name);
  TANDEM_ASSIGN_OR_RETURN(uint32_t n_dims, c.Read<uint32_t>(t.name));
  if (n_dims == 0 || n_dims > kMaxDims) {
    return c.Error(StrCat("tensor ", t.name, " has ", n_dims, " dimensions (1..4 allowed)"));
  }
  t.num_elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    TANDEM_ASSIGN_OR_RETURN(uint64_t dim, c.Read<uint64_t>(t.name));
    if (dim == 0 || dim > (uint64_t{1} << 40) ||
        static_cast<uint64_t>(t.num_elements) > (uint64_t{1} << 50) / dim) {
      return c.Error(StrCat("tensor ", t.name, " has an invalid dimension ", dim));
    }
    t.dims.push_back(static_cast<int64_t>(dim));
    t.num_elements *= static_cast<int64_t>(dim);
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t type, c.Read<uint32_t>(t.name));
  auto traits = GetTypeTraits(type);
  if (!traits) return c.Error(StrCat("tensor ", t.name, " has unknown type id ", type));
  t.type = traits->type;
  if (t.dims[0] % traits->block_size != 0) {
    return c.Error(StrCat("tensor ", t.name, " row of ", t.dims[0], " elements is not a multiple of the ",
                          traits->name, " block size ", traits->block_size));
  }
  t.num_bytes = t.num_elements / traits->block_size * traits->block_bytes;
  TANDEM_ASSIGN_OR_RETURN(t.offset, c.Read<uint64_t>(t.name));
  if (t.offset % alignment != 0) {
    return c.Error(StrCat("tensor ", t.name, " offset ", t.offset, " is not aligned to ", alignment));
  }
  return t;
}

}  // namespace

absl::Status GgufFile::ParseAll() {
  Cursor c(data_, size_, name_);
  TANDEM_ASSIGN_OR_RETURN(uint32_t magic, c.Read<uint32_t>("magic"));
  if (magic != kMagic) {
    return absl::InvalidArgumentError(StrCat(name_, ": not a GGUF file (bad magic)"));
  }
  TANDEM_ASSIGN_OR_RETURN(version_, c.Read<uint32_t>("version"));
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(
        StrCat(name_, ": GGUF version ", version_, " is not supported (2 and 3 are)"));
  }
  TANDEM_ASSIGN_OR_RETURN(uint64_t n_tensors, c.Read<uint64_t>("tensor count"));
  TANDEM_ASSIGN_OR_RETURN(uint64_t n_kv, c.Read<uint64_t>("metadata count"));
  // Each entry needs at least 12 (kv) or 24 (tensor info) bytes: reject absurd counts early.
  if (n_kv > c.remaining() / 12) return c.Error(StrCat("metadata count ", n_kv, " is impossible"));
  if (n_tensors > c.remaining() / 24) return c.Error(StrCat("tensor count ", n_tensors, " is impossible"));

  for (uint64_t k = 0; k < n_kv; ++k) {
    TANDEM_ASSIGN_OR_RETURN(auto key, c.ReadString("metadata key"));
    if (key.empty() || key.size() > kMaxNameLength) return c.Error("bad metadata key length");
    TANDEM_ASSIGN_OR_RETURN(uint32_t type, c.Read<uint32_t>(key));
    TANDEM_ASSIGN_OR_RETURN(Value v, ReadValue(c, static_cast<ValueType>(type), key, 0));
    std::string key_str(key);
    if (kv_.contains(key_str)) return c.Error(StrCat("duplicate metadata key ", key));
    key_order_.push_back(key_str);
    kv_.emplace(std::move(key_str), std::move(v));
  }

  if (const Value* a = Find("general.alignment")) {
    if (!a->is_integer() || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > (1u << 20)) {
      return absl::DataLossError(StrCat(name_, ": general.alignment must be a power of two"));
    }
    alignment_ = a->u;
  }

  tensors_.reserve(std::min(n_tensors, kMaxReserve));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TANDEM_ASSIGN_OR_RETURN(TensorInfo t, ReadTensorInfo(c, alignment_));
    if (tensor_index_.contains(t.name)) return c.Error(StrCat("duplicate tensor ", t.name));
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  for (auto& t : tensors_) {
    const uint64_t begin = data_start + t.offset;  // cannot overflow after the first two checks
    if (data_start > size_ || t.offset > size_ - data_start ||
        static_cast<uint64_t>(t.num_bytes) > size_ - begin) {
      return absl::DataLossError(StrCat(
          name_, ": truncated GGUF: tensor ", t.name, " needs bytes [", begin, ", ",
          begin + t.num_bytes, ") but the file has ", size_));
    }
    t.data = data_ + begin;
  }
  return absl::OkStatus();
}

const Value* GgufFile::Find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
absl::Status Missing(std::string_view key, const std::string& file) {
  return absl::NotFoundError(StrCat(file, ": metadata key '", key, "' is missing"));
}
absl::Status Mismatch(std::string_view key, const Value& v, std::string_view want,
                      const std::string& file) {
  return absl::InvalidArgumentError(StrCat(file, ": metadata key '", key, "' is ",
                                                 ValueTypeName(v.type), ", expected ", want));
}
}  // namespace

absl::StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (!v->is_integer() || (IsSignedType(v->type) && v->i < 0)) {
    return Mismatch(key, *v, "a non-negative integer", name_);
  }
  return v->u;
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (!v->is_integer()) return Mismatch(key, *v, "an integer", name_);
  if (v->type == ValueType::kUint64 && v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Mismatch(key, *v, "an int64", name_);
  }
  return v->i;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (v->is_float()) return v->f;
  if (v->is_integer()) return IsSignedType(v->type) ? static_cast<double>(v->i) : static_cast<double>(v->u);
  return Mismatch(key, *v, "a number", name_);
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (v->type != ValueType::kBool) return Mismatch(key, *v, "bool", name_);
  return v->b;
}

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (v->type != ValueType::kString) return Mismatch(key, *v, "string", name_);
  return v->s;
}

absl::StatusOr<std::vector<std::string_view>> GgufFile::GetStringArray(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (v->type != ValueType::kArray || v->elem_type != ValueType::kString) {
    return Mismatch(key, *v, "array of strings", name_);
  }
  return v->strings;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (v->type != ValueType::kArray || !(IsIntegerType(v->elem_type) || v->elem_type == ValueType::kBool)) {
    return Mismatch(key, *v, "array of integers", name_);
  }
  const size_t sz = ScalarSize(v->elem_type);
  std::vector<int64_t> out(v->count);
  for (uint64_t k = 0; k < v->count; ++k) out[k] = RawInt(v->elem_type, v->raw + k * sz);
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const Value* v = Find(key);
  if (!v) return Missing(key, name_);
  if (v->type != ValueType::kArray ||
      (v->elem_type != ValueType::kFloat32 && v->elem_type != ValueType::kFloat64)) {
    return Mismatch(key, *v, "array of floats", name_);
  }
  std::vector<float> out(v->count);
  for (uint64_t k = 0; k < v->count; ++k) {
    out[k] = v->elem_type == ValueType::kFloat32 ? LoadRaw<float>(v->raw + 4 * k)
                                                 : static_cast<float>(LoadRaw<double>(v->raw + 8 * k));
  }
  return out;
}

absl::StatusOr<uint64_t> GgufFile::GetUintOr(std::string_view key, uint64_t def) const {
  return Find(key) ? GetUint(key) : absl::StatusOr<uint64_t>(def);
}
absl::StatusOr<double> GgufFile::GetFloatOr(std::string_view key, double def) const {
  return Find(key) ? GetFloat(key) : absl::StatusOr<double>(def);
}
absl::StatusOr<bool> GgufFile::GetBoolOr(std::string_view key, bool def) const {
  return Find(key) ? GetBool(key) : absl::StatusOr<bool>(def);
}

std::string GgufFile::Describe(const Value& v, size_t max_elements) {
  switch (v.type) {
    case ValueType::kString: {
      std::string s(v.s.substr(0, 120));
      return StrCat("\"", s, v.s.size() > 120 ? "...\"" : "\"");
    }
    case ValueType::kBool: return v.b ? "true" : "false";
    case ValueType::kFloat32: case ValueType::kFloat64: return StrCat(v.f);
    case ValueType::kArray: {
      std::vector<std::string> parts;
      for (uint64_t k = 0; k < std::min<uint64_t>(v.count, max_elements); ++k) {
        if (v.elem_type == ValueType::kString) {
          parts.push_back(StrCat("\"", v.strings[k].substr(0, 40), "\""));
        } else if (v.elem_type == ValueType::kFloat32) {
          parts.push_back(StrCat(LoadRaw<float>(v.raw + 4 * k)));
        } else if (v.elem_type == ValueType::kFloat64) {
          parts.push_back(StrCat(LoadRaw<double>(v.raw + 8 * k)));
        } else if (ScalarSize(v.elem_type) > 0) {
          parts.push_back(StrCat(RawInt(v.elem_type, v.raw + k * ScalarSize(v.elem_type))));
        } else {
          parts.push_back("[...]");
        }
      }
      return StrCat("[", fmt::format("{}", fmt::join(parts, ", ")), v.count > max_elements ? ", ..." : "",
                          "] (", v.count, " ", ValueTypeName(v.elem_type), ")");
    }
    default:
      return IsSignedType(v.type) ? StrCat(v.i) : StrCat(v.u);
  }
}

}  // namespace tandem::gguf
