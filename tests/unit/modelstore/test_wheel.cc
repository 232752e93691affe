#include "test_wheel.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/sha256.h"
#include "gtest/gtest.h"

namespace tandem::testing {
namespace {

void Put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>(v >> 8));
}
void Put32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string RawDeflate(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

ScratchDir::ScratchDir() {
  std::string pattern = ::testing::TempDir() + "/tandem_modelstore_XXXXXX";
  char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr) << "mkdtemp " << pattern;
  path_ = std::filesystem::path(pattern).lexically_normal().string();
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  // Tests may leave read-only directories behind; make them removable first.
  for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0755);
  }
  std::filesystem::remove_all(path_, ec);
}

std::string MakeZip(const std::vector<WheelMember>& members) {
  std::string zip, central;
  for (const auto& m : members) {
    const std::string payload = m.deflate ? RawDeflate(m.content) : m.content;
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(m.content.data()), m.content.size()));
    const uint16_t method = m.deflate ? 8 : 0;
    const auto offset = static_cast<uint32_t>(zip.size());
    Put32(zip, 0x04034b50); Put16(zip, 20); Put16(zip, 0); Put16(zip, method);
    Put16(zip, 0); Put16(zip, 0); Put32(zip, crc);
    Put32(zip, payload.size()); Put32(zip, m.content.size());
    Put16(zip, m.name.size()); Put16(zip, 0);
    zip += m.name + payload;
    Put32(central, 0x02014b50); Put16(central, 20); Put16(central, 20); Put16(central, 0);
    Put16(central, method); Put16(central, 0); Put16(central, 0); Put32(central, crc);
    Put32(central, payload.size()); Put32(central, m.content.size());
    Put16(central, m.name.size()); Put16(central, 0); Put16(central, 0); Put16(central, 0);
    Put16(central, 0); Put32(central, 0); Put32(central, offset);
    central += m.name;
  }
  const auto cd_offset = static_cast<uint32_t>(zip.size());
  zip += central;
  Put32(zip, 0x06054b50); Put16(zip, 0); Put16(zip, 0); Put16(zip, members.size());
  Put16(zip, members.size()); Put32(zip, central.size()); Put32(zip, cd_offset); Put16(zip, 0);
  return zip;
}

std::string PseudoRandomBytes(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : out) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return out;
}

BundledModel FakeModel(const std::string& content) {
  BundledModel model;
  model.name = "test-model";
  model.package = "test-model";
  model.version = "1.0";
  model.wheel_member = "test_model/model.gguf";
  model.file_name = "model.gguf";
  model.sha256 = ToHex(Sha256::Of(content.data(), content.size()));
  model.size_bytes = content.size();
  return model;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << "writing " << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace tandem::testing
