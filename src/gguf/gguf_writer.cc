#include "gguf/gguf_writer.h"

#include <cstdio>
#include <cstring>

#include "common/strings.h"
#include "gguf/gguf_file.h"

namespace tandem::gguf {
namespace {

template <typename T>
void Append(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);
}

void AppendString(std::vector<uint8_t>& out, const std::string& s) {
  Append<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

template <typename T>
void GgufWriter::Put(T v) {
  Append(kv_bytes_, v);
}

void GgufWriter::PutString(const std::string& s) { AppendString(kv_bytes_, s); }

void GgufWriter::Key(const std::string& key, uint32_t type) {
  ++kv_count_;
  PutString(key);
  Put<uint32_t>(type);
}

void GgufWriter::SetUint32(const std::string& key, uint32_t v) { Key(key, 4); Put(v); }
void GgufWriter::SetUint64(const std::string& key, uint64_t v) { Key(key, 10); Put(v); }
void GgufWriter::SetInt32(const std::string& key, int32_t v) { Key(key, 5); Put(v); }
void GgufWriter::SetFloat32(const std::string& key, float v) { Key(key, 6); Put(v); }
void GgufWriter::SetBool(const std::string& key, bool v) { Key(key, 7); Put<uint8_t>(v ? 1 : 0); }
void GgufWriter::SetString(const std::string& key, const std::string& v) { Key(key, 8); PutString(v); }

void GgufWriter::SetStringArray(const std::string& key, const std::vector<std::string>& v) {
  Key(key, 9);
  Put<uint32_t>(8);
  Put<uint64_t>(v.size());
  for (const auto& s : v) PutString(s);
}

void GgufWriter::SetInt32Array(const std::string& key, const std::vector<int32_t>& v) {
  Key(key, 9);
  Put<uint32_t>(5);
  Put<uint64_t>(v.size());
  for (int32_t x : v) Put(x);
}

void GgufWriter::SetFloat32Array(const std::string& key, const std::vector<float>& v) {
  Key(key, 9);
  Put<uint32_t>(6);
  Put<uint64_t>(v.size());
  for (float x : v) Put(x);
}

bool GgufWriter::CopyValue(const std::string& key, const Value& v) {
  const auto scalar_size = [](ValueType t) -> size_t {
    switch (t) {
      case ValueType::kUint8: case ValueType::kInt8: case ValueType::kBool: return 1;
      case ValueType::kUint16: case ValueType::kInt16: return 2;
      case ValueType::kUint32: case ValueType::kInt32: case ValueType::kFloat32: return 4;
      case ValueType::kUint64: case ValueType::kInt64: case ValueType::kFloat64: return 8;
      default: return 0;
    }
  };
  switch (v.type) {
    case ValueType::kString:
      SetString(key, std::string(v.s));
      return true;
    case ValueType::kArray: {
      if (v.elem_type == ValueType::kArray) return false;
      Key(key, 9);
      Put<uint32_t>(static_cast<uint32_t>(v.elem_type));
      Put<uint64_t>(v.count);
      if (v.elem_type == ValueType::kString) {
        for (std::string_view s : v.strings) PutString(std::string(s));
      } else {
        kv_bytes_.insert(kv_bytes_.end(), v.raw, v.raw + v.count * scalar_size(v.elem_type));
      }
      return true;
    }
    case ValueType::kFloat32: SetFloat32(key, static_cast<float>(v.f)); return true;
    case ValueType::kFloat64: Key(key, 12); Put<double>(v.f); return true;
    case ValueType::kBool: SetBool(key, v.b); return true;
    default: {
      const size_t n = scalar_size(v.type);
      if (n == 0) return false;
      Key(key, static_cast<uint32_t>(v.type));
      const uint64_t bits = v.u;  // little-endian: the low n bytes are the value
      for (size_t i = 0; i < n; ++i) kv_bytes_.push_back(static_cast<uint8_t>(bits >> (8 * i)));
      return true;
    }
  }
}

void GgufWriter::AddTensor(const std::string& name, const std::vector<int64_t>& dims,
                           GgmlType type, std::vector<uint8_t> data) {
  tensors_.push_back({name, dims, type, std::move(data)});
}

// Writes the file through `sink` (header, metadata, tensor infos, aligned tensor data) without
// building it in memory.
void GgufWriter::Emit(const std::function<void(const uint8_t*, size_t)>& sink) const {
  std::vector<uint8_t> head;
  Append<uint32_t>(head, 0x46554747);
  Append<uint32_t>(head, 3);
  Append<uint64_t>(head, tensors_.size());
  const bool custom_alignment = alignment_ != 32;
  Append<uint64_t>(head, kv_count_ + (custom_alignment ? 1 : 0));
  head.insert(head.end(), kv_bytes_.begin(), kv_bytes_.end());
  if (custom_alignment) {
    AppendString(head, "general.alignment");
    Append<uint32_t>(head, 4);
    Append<uint32_t>(head, alignment_);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    AppendString(head, t.name);
    Append<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) Append<uint64_t>(head, static_cast<uint64_t>(d));
    Append<uint32_t>(head, static_cast<uint32_t>(t.type));
    Append<uint64_t>(head, offset);
    offsets.push_back(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  head.resize((head.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  sink(head.data(), head.size());
  const std::vector<uint8_t> zeros(alignment_, 0);
  for (const auto& t : tensors_) {
    sink(t.data.data(), t.data.size());
    const size_t pad = (alignment_ - t.data.size() % alignment_) % alignment_;
    sink(zeros.data(), pad);
  }
}

std::vector<uint8_t> GgufWriter::Serialize() const {
  std::vector<uint8_t> out;
  Emit([&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); });
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return absl::PermissionDeniedError(StrCat("cannot write ", tmp));
  bool ok = true;
  Emit([&](const uint8_t* p, size_t n) { ok = ok && std::fwrite(p, 1, n, f) == n; });
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return absl::DataLossError(StrCat("short write to ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace tandem::gguf
