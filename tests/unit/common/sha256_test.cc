#include "common/sha256.h"

#include "gtest/gtest.h"

namespace tandem {
namespace {

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(ToHex(Sha256::Of("", 0)),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ToHex(Sha256::Of("abc", 3)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, IncrementalEqualsOneShot) {
  Sha256 h;
  h.Update("ab");
  h.Update("c");
  EXPECT_EQ(h.Finish(), Sha256::Of("abc", 3));
  h.Update("abc");  // reusable after Finish
  EXPECT_EQ(h.Finish(), Sha256::Of("abc", 3));
}

}  // namespace
}  // namespace tandem
