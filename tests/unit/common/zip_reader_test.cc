#include "common/zip_reader.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace tandem {
namespace {

void Put16(std::string& s, uint16_t v) { s.push_back(v & 0xff); s.push_back(v >> 8); }
void Put32(std::string& s, uint32_t v) { for (int i = 0; i < 4; ++i) s.push_back((v >> (8 * i)) & 0xff); }

std::string RawDeflate(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = in.size();
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = out.size();
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

struct Member {
  std::string name, content;
  bool deflate;
};

// A minimal but valid zip writer, enough to exercise the reader.
std::string MakeZip(const std::vector<Member>& members, uint32_t crc_xor = 0) {
  std::string zip, central;
  for (const auto& m : members) {
    const std::string payload = m.deflate ? RawDeflate(m.content) : m.content;
    const uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(m.content.data()), m.content.size()) ^ crc_xor;
    const uint32_t offset = zip.size();
    Put32(zip, 0x04034b50); Put16(zip, 20); Put16(zip, 0); Put16(zip, m.deflate ? 8 : 0);
    Put16(zip, 0); Put16(zip, 0); Put32(zip, crc); Put32(zip, payload.size()); Put32(zip, m.content.size());
    Put16(zip, m.name.size()); Put16(zip, 0);
    zip += m.name + payload;
    Put32(central, 0x02014b50); Put16(central, 20); Put16(central, 20); Put16(central, 0);
    Put16(central, m.deflate ? 8 : 0); Put16(central, 0); Put16(central, 0); Put32(central, crc);
    Put32(central, payload.size()); Put32(central, m.content.size()); Put16(central, m.name.size());
    Put16(central, 0); Put16(central, 0); Put16(central, 0); Put16(central, 0); Put32(central, 0);
    Put32(central, offset);
    central += m.name;
  }
  const uint32_t cd_offset = zip.size();
  zip += central;
  Put32(zip, 0x06054b50); Put16(zip, 0); Put16(zip, 0); Put16(zip, members.size());
  Put16(zip, members.size()); Put32(zip, central.size()); Put32(zip, cd_offset); Put16(zip, 0);
  return zip;
}

std::string WriteTemp(const std::string& bytes) {
  static int counter = 0;
  auto path = std::filesystem::temp_directory_path() /
              ("tandem_zip_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path;
}

std::string ExtractAll(const ZipArchive& zip, const std::string& name, absl::Status* status) {
  std::string out;
  const ZipEntry* e = zip.Find(name);
  if (!e) {
    *status = absl::NotFoundError(name);
    return out;
  }
  *status = zip.Extract(*e, [&](const uint8_t* p, size_t n) {
    out.append(reinterpret_cast<const char*>(p), n);
    return absl::OkStatus();
  });
  return out;
}

TEST(ZipReaderTest, ExtractsStoredAndDeflatedEntries) {
  std::string big;
  for (int i = 0; i < 300000; ++i) big += static_cast<char>('a' + (i * 7) % 26);
  auto path = WriteTemp(MakeZip({{"a.txt", "hello", false}, {"dir/big.bin", big, true}}));
  auto zip = ZipArchive::Open(path);
  ASSERT_TRUE(zip.ok()) << zip.status();
  ASSERT_EQ((*zip)->entries().size(), 2u);
  absl::Status s;
  EXPECT_EQ(ExtractAll(**zip, "a.txt", &s), "hello");
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(ExtractAll(**zip, "dir/big.bin", &s), big);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ((*zip)->Find("missing"), nullptr);
}

TEST(ZipReaderTest, ReportsProgressUpToTotal) {
  std::string big(3 << 20, 'x');
  auto path = WriteTemp(MakeZip({{"big", big, true}}));
  auto zip = ZipArchive::Open(path);
  ASSERT_TRUE(zip.ok());
  uint64_t last = 0, total = 0;
  int calls = 0;
  ASSERT_TRUE((*zip)->Extract(*(*zip)->Find("big"),
                              [](const uint8_t*, size_t) { return absl::OkStatus(); },
                              [&](uint64_t done, uint64_t t) {
                                EXPECT_GE(done, last);
                                last = done;
                                total = t;
                                ++calls;
                              }).ok());
  EXPECT_EQ(last, big.size());
  EXPECT_EQ(total, big.size());
  EXPECT_GE(calls, 3);
}

TEST(ZipReaderTest, DetectsCrcMismatch) {
  auto path = WriteTemp(MakeZip({{"a", "payload", true}}, /*crc_xor=*/1));
  auto zip = ZipArchive::Open(path);
  ASSERT_TRUE(zip.ok());
  absl::Status s;
  ExtractAll(**zip, "a", &s);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("CRC"), std::string::npos) << s;
}

TEST(ZipReaderTest, RejectsTruncatedAndGarbageFiles) {
  const std::string good = MakeZip({{"a", std::string(1000, 'q'), true}});
  for (size_t cut : {size_t{0}, size_t{10}, good.size() / 2, good.size() - 5}) {
    auto zip = ZipArchive::Open(WriteTemp(good.substr(0, cut)));
    if (zip.ok()) {  // a cut inside the payload can keep the directory intact only if...
      absl::Status s;
      ExtractAll(**zip, "a", &s);
      EXPECT_FALSE(s.ok()) << "cut at " << cut;
    }
  }
  EXPECT_FALSE(ZipArchive::Open(WriteTemp(std::string(5000, '\x50'))).ok());
}

}  // namespace
}  // namespace tandem
