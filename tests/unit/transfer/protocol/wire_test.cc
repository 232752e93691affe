// The hand-off protocol's one message schema (every medium carries these): round trips, and
// truncated, foreign or out-of-range input refused (never a crash).
#include "transfer/protocol/wire.h"

#include <string>

#include "gtest/gtest.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer::wire {
namespace {

TEST(ProtocolWireTest, MessagesRoundTrip) {
  Hello h;
  h.sender_worker_id = "prefill-3";
  h.expected_epoch = 9;
  h.layout = testing::SmolLm2Layout();
  auto h2 = DecodeHello(Encode(h));
  ASSERT_TRUE(h2.ok()) << h2.status();
  EXPECT_EQ(h2->sender_worker_id, "prefill-3");
  EXPECT_EQ(h2->expected_epoch, 9u);
  EXPECT_TRUE(h2->layout == h.layout);

  Ack a;
  a.type = MessageType::kBeginAck;
  a.transfer_id = 2;
  a.status = absl::ResourceExhaustedError("no blocks");
  auto a2 = DecodeAck(Encode(a));
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->type, MessageType::kBeginAck);
  EXPECT_EQ(a2->transfer_id, 2u);
  EXPECT_EQ(a2->status, a.status);
  auto end_ack = DecodeAck(Encode(Ack{MessageType::kEndAck, 7, absl::FailedPreconditionError("stale")}));
  ASSERT_TRUE(end_ack.ok()) << end_ack.status();
  EXPECT_EQ(end_ack->type, MessageType::kEndAck);
  EXPECT_EQ(end_ack->status, absl::FailedPreconditionError("stale"));

  Begin b;
  b.transfer_id = 3;
  b.lease_id = "lease-9";
  b.request_id = "req-1";
  b.num_blocks = 3;
  b.remaining_ms = 2500;
  b.blocks = {7, 0, 12};
  auto b2 = DecodeBegin(Encode(b));
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_EQ(b2->transfer_id, 3u);
  EXPECT_EQ(b2->lease_id, "lease-9");
  EXPECT_EQ(b2->request_id, "req-1");
  EXPECT_EQ(b2->num_blocks, 3);
  EXPECT_EQ(b2->remaining_ms, 2500);
  EXPECT_EQ(b2->data_path, DataPath::kReceiverPlaced);
  EXPECT_EQ(b2->blocks, b.blocks);
  b.data_path = DataPath::kOneSided;
  auto b3 = DecodeBegin(Encode(b));
  ASSERT_TRUE(b3.ok()) << b3.status();
  EXPECT_EQ(b3->data_path, DataPath::kOneSided);
  b.blocks.pop_back();  // a block list that disagrees with the count
  EXPECT_FALSE(DecodeBegin(Encode(b)).ok());

  BlockHeader bh;
  bh.transfer_id = 13;
  bh.index = 14;
  auto bh2 = DecodeBlockHeader(Encode(bh));
  ASSERT_TRUE(bh2.ok());
  EXPECT_EQ(bh2->transfer_id, 13u);
  EXPECT_EQ(bh2->index, 14);
  EXPECT_FALSE(DecodeBlockHeader(Encode(bh).substr(1)).ok());

  End e;
  e.transfer_id = 5;
  e.status = absl::DeadlineExceededError("late");
  e.blocks_sent = 42;
  auto e2 = DecodeEnd(Encode(e));
  ASSERT_TRUE(e2.ok());
  EXPECT_EQ(e2->transfer_id, 5u);
  EXPECT_EQ(e2->status, e.status);
  EXPECT_EQ(e2->blocks_sent, 42);

  EXPECT_TRUE(DecodeBye(Encode(Bye{})).ok());
  EXPECT_EQ(*PeekType(Encode(Bye{})), MessageType::kBye);
}

TEST(ProtocolWireTest, TruncatedOrForeignMessagesAreErrors) {
  Begin b;
  b.lease_id = "lease";
  const std::string bytes = Encode(b);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(DecodeBegin(bytes.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(DecodeBegin(bytes + "x").ok());  // trailing bytes
  EXPECT_FALSE(DecodeHello(bytes).ok());         // wrong type
  EXPECT_FALSE(DecodeAck(Encode(End{})).ok());   // an end is not an acknowledgement
  EXPECT_FALSE(DecodeBye(Encode(Bye{}) + "x").ok());
  EXPECT_FALSE(PeekType("").ok());
  EXPECT_FALSE(PeekType(std::string(1, '\x63')).ok());
  std::string huge_string = bytes;
  huge_string[1 + 8] = '\xff';   // lease id length's low byte
  huge_string[1 + 11] = '\x7f';  // ... and high byte: far beyond the message
  EXPECT_FALSE(DecodeBegin(huge_string).ok());
  std::string bad_code = Encode(Ack{MessageType::kBeginAck, 1, absl::OkStatus()});
  bad_code[1 + 8] = 99;  // status code out of range
  EXPECT_FALSE(DecodeAck(bad_code).ok());
  std::string bad_path = Encode(Begin{});
  bad_path[bad_path.size() - 5] = 7;  // data path byte: no such path
  EXPECT_FALSE(DecodeBegin(bad_path).ok());
  End negative;
  negative.blocks_sent = -1;
  EXPECT_FALSE(DecodeEnd(Encode(negative)).ok());
}

TEST(ProtocolWireTest, AnEndCarriesItsBlocksChecksumsAndAnOlderEndDecodesWithout) {
  End e;
  e.transfer_id = 8;
  e.blocks_sent = 3;
  e.digests = {1, 0xfedcba9876543210ULL, 3};
  auto e2 = DecodeEnd(Encode(e));
  ASSERT_TRUE(e2.ok()) << e2.status();
  EXPECT_EQ(e2->digests, e.digests);
  EXPECT_EQ(e2->blocks_sent, 3);
  // An end without checksums (checksums off, or a sender from before them): none, not an error.
  End plain;
  plain.blocks_sent = 3;
  auto plain2 = DecodeEnd(Encode(plain));
  ASSERT_TRUE(plain2.ok()) << plain2.status();
  EXPECT_TRUE(plain2->digests.empty());
  // Truncated checksums, trailing bytes and a count beyond the message are refused.
  const std::string bytes = Encode(e);
  EXPECT_FALSE(DecodeEnd(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(DecodeEnd(bytes + "x").ok());
  std::string huge = bytes;
  huge[huge.size() - 3 * 8 - 1] = '\x7f';  // the count's high byte: 2^31 checksums
  EXPECT_FALSE(DecodeEnd(huge).ok());
}

TEST(ProtocolWireTest, HugeBlockCountIsRefusedBeforeReading) {
  Begin b;
  b.num_blocks = 1;
  b.blocks = {0};
  std::string bytes = Encode(b);
  // The block list's count (4 bytes before the one block) claims 2^31 entries.
  bytes[bytes.size() - 8] = '\x00';
  bytes[bytes.size() - 5] = '\x7f';
  EXPECT_FALSE(DecodeBegin(bytes).ok());
}

}  // namespace
}  // namespace tandem::transfer::wire
