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

void GgufWriter::AddTensor(const std::string& name, const std::vector<int64_t>& dims,
                           GgmlType type, std::vector<uint8_t> data) {
  tensors_.push_back({name, dims, type, std::move(data)});
}

std::vector<uint8_t> GgufWriter::Serialize() const {
  std::vector<uint8_t> out;
  Append<uint32_t>(out, 0x46554747);
  Append<uint32_t>(out, 3);
  Append<uint64_t>(out, tensors_.size());
  const bool custom_alignment = alignment_ != 32;
  Append<uint64_t>(out, kv_count_ + (custom_alignment ? 1 : 0));
  out.insert(out.end(), kv_bytes_.begin(), kv_bytes_.end());
  if (custom_alignment) {
    AppendString(out, "general.alignment");
    Append<uint32_t>(out, 4);
    Append<uint32_t>(out, alignment_);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    AppendString(out, t.name);
    Append<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) Append<uint64_t>(out, static_cast<uint64_t>(d));
    Append<uint32_t>(out, static_cast<uint32_t>(t.type));
    Append<uint64_t>(out, offset);
    offsets.push_back(offset);
    offset += (t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  const size_t data_start = out.size();
  for (size_t k = 0; k < tensors_.size(); ++k) {
    out.resize(data_start + offsets[k], 0);
    out.insert(out.end(), tensors_[k].data.begin(), tensors_[k].data.end());
  }
  out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  const std::vector<uint8_t> bytes = Serialize();
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return absl::PermissionDeniedError(StrCat("cannot write ", tmp));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok) return absl::DataLossError(StrCat("short write to ", tmp));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace tandem::gguf
