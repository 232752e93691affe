// The UCX medium's own wire pieces: the endpoint address it publishes and the routing in front of
// its active messages (the protocol's messages are tested in protocol/wire_test.cc).
#include "transfer/ucx/ucx_wire.h"

#include <string>

#include "gtest/gtest.h"

namespace tandem::transfer::ucx {
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

TEST(UcxWireTest, RoutesRoundTripAroundTheProtocolMessage) {
  Route to_acceptor;
  to_acceptor.origin = 7;
  to_acceptor.conn = 8;
  to_acceptor.reply_address = std::string("addr\0x", 6);
  const std::string frame = EncodeRouted(to_acceptor, "protocol-bytes");
  auto r = DecodeRouted(frame);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->route.to_acceptor);
  EXPECT_EQ(r->route.origin, 7u);
  EXPECT_EQ(r->route.conn, 8u);
  EXPECT_EQ(r->route.reply_address, to_acceptor.reply_address);
  EXPECT_EQ(r->message, "protocol-bytes");

  Route answer;
  answer.to_acceptor = false;
  answer.conn = 9;
  auto a = DecodeRouted(EncodeRouted(answer, ""));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->route.to_acceptor);
  EXPECT_EQ(a->route.conn, 9u);
  EXPECT_TRUE(a->message.empty());
}

TEST(UcxWireTest, MalformedRoutesAndBlockHeadersAreErrors) {
  EXPECT_FALSE(DecodeRouted("").ok());
  EXPECT_FALSE(DecodeRouted(std::string(1, '\x09')).ok());  // unknown kind
  Route route;
  route.reply_address = "reply";
  const std::string frame = EncodeRouted(route, "");
  for (size_t cut = 1; cut < frame.size(); ++cut) {
    EXPECT_FALSE(DecodeRouted(frame.substr(0, cut)).ok()) << cut;
  }
  DataHeader h;
  h.origin = 11;
  h.conn = 12;
  h.block = {13, 14};
  const std::string header = EncodeDataHeader(h);
  auto h2 = DecodeDataHeader(header);
  ASSERT_TRUE(h2.ok()) << h2.status();
  EXPECT_EQ(h2->origin, 11u);
  EXPECT_EQ(h2->conn, 12u);
  EXPECT_EQ(h2->block.transfer_id, 13u);
  EXPECT_EQ(h2->block.index, 14);
  for (size_t cut = 0; cut < header.size(); ++cut) {
    EXPECT_FALSE(DecodeDataHeader(header.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(DecodeDataHeader(header + "x").ok());
}

}  // namespace
}  // namespace tandem::transfer::ucx
