#include "transfer/ucx_wire.h"

#include <string>

#include "gtest/gtest.h"
#include "unit/transfer/transfer_test_util.h"

namespace tandem::transfer::wire {
namespace {

TEST(UcxWireTest, EndpointAddressRoundTrips) {
  EndpointAddress a;
  a.epoch = 0xfedcba9876543210ULL;
  a.remote_base = 0x7f0000001000ULL;
  a.num_blocks = 1234;
  a.bytes_per_block = 368640;
  a.worker_address = std::string("\x00\x01\xffworker", 9);
  a.rkey = std::string("\x10\x00rkey", 6);
  const std::string text = EncodeEndpointAddress(a);
  EXPECT_EQ(text.rfind("ucx1:", 0), 0u);
  for (char c : text) EXPECT_TRUE(std::isprint(static_cast<unsigned char>(c))) << text;
  auto b = DecodeEndpointAddress(text);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->epoch, a.epoch);
  EXPECT_EQ(b->remote_base, a.remote_base);
  EXPECT_EQ(b->num_blocks, a.num_blocks);
  EXPECT_EQ(b->bytes_per_block, a.bytes_per_block);
  EXPECT_EQ(b->worker_address, a.worker_address);
  EXPECT_EQ(b->rkey, a.rkey);
}

TEST(UcxWireTest, MalformedEndpointAddressesAreErrors) {
  EXPECT_FALSE(DecodeEndpointAddress("").ok());
  EXPECT_FALSE(DecodeEndpointAddress("inproc://x/1").ok());
  EXPECT_FALSE(DecodeEndpointAddress("ucx1:!!!not base64!!!").ok());
  EndpointAddress a;
  a.num_blocks = 1;
  a.bytes_per_block = 1;
  a.worker_address = "w";
  a.rkey = "r";
  const std::string text = EncodeEndpointAddress(a);
  for (size_t cut = 5; cut < text.size(); cut += 3) {
    EXPECT_FALSE(DecodeEndpointAddress(text.substr(0, cut)).ok()) << cut;
  }
}

TEST(UcxWireTest, MessagesRoundTrip) {
  Hello h;
  h.sender_epoch = 7;
  h.conn_id = 8;
  h.sender_worker_id = "prefill-3";
  h.sender_address = "addr";
  h.expected_epoch = 9;
  h.layout = testing::SmolLm2Layout();
  auto h2 = DecodeHello(Encode(h));
  ASSERT_TRUE(h2.ok()) << h2.status();
  EXPECT_EQ(h2->sender_epoch, 7u);
  EXPECT_EQ(h2->conn_id, 8u);
  EXPECT_EQ(h2->sender_worker_id, "prefill-3");
  EXPECT_EQ(h2->sender_address, "addr");
  EXPECT_EQ(h2->expected_epoch, 9u);
  EXPECT_TRUE(h2->layout == h.layout);

  Ack a;
  a.type = MessageType::kBeginAck;
  a.conn_id = 1;
  a.transfer_id = 2;
  a.status = absl::ResourceExhaustedError("no blocks");
  auto a2 = DecodeAck(Encode(a));
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->type, MessageType::kBeginAck);
  EXPECT_EQ(a2->transfer_id, 2u);
  EXPECT_EQ(a2->status, a.status);

  Begin b;
  b.sender_epoch = 1;
  b.conn_id = 2;
  b.transfer_id = 3;
  b.lease_id = "lease-9";
  b.num_blocks = 3;
  b.remaining_ms = 2500;
  b.blocks = {7, 0, 12};
  auto b2 = DecodeBegin(Encode(b));
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_EQ(b2->lease_id, "lease-9");
  EXPECT_EQ(b2->num_blocks, 3);
  EXPECT_EQ(b2->remaining_ms, 2500);
  EXPECT_EQ(b2->data_path, DataPath::kActiveMessage);
  EXPECT_EQ(b2->blocks, b.blocks);
  b.blocks.pop_back();  // a block list that disagrees with the count
  EXPECT_FALSE(DecodeBegin(Encode(b)).ok());
  b.data_path = DataPath::kRmaPut;
  b.blocks.clear();
  auto b3 = DecodeBegin(Encode(b));
  ASSERT_TRUE(b3.ok()) << b3.status();
  EXPECT_EQ(b3->data_path, DataPath::kRmaPut);

  BlockHeader bh;
  bh.sender_epoch = 11;
  bh.conn_id = 12;
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
  EXPECT_EQ(e2->status, e.status);
  EXPECT_EQ(e2->blocks_sent, 42);

  Bye y;
  y.conn_id = 4;
  auto y2 = DecodeBye(Encode(y));
  ASSERT_TRUE(y2.ok());
  EXPECT_EQ(y2->conn_id, 4u);
}

TEST(UcxWireTest, TruncatedOrForeignMessagesAreErrors) {
  Begin b;
  b.lease_id = "lease";
  const std::string bytes = Encode(b);
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_FALSE(DecodeBegin(bytes.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(DecodeBegin(bytes + "x").ok());  // trailing bytes
  EXPECT_FALSE(DecodeHello(bytes).ok());         // wrong type
  EXPECT_FALSE(PeekType("").ok());
  EXPECT_FALSE(PeekType(std::string(1, '\x63')).ok());
  std::string huge_string = bytes;
  huge_string[1 + 24] = '\xff';  // lease id length's low byte
  huge_string[1 + 27] = '\x7f';  // ... and high byte: far beyond the message
  EXPECT_FALSE(DecodeBegin(huge_string).ok());
}

}  // namespace
}  // namespace tandem::transfer::wire
