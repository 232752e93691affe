// What the UCX medium puts on the wire besides the protocol's messages (transfer/protocol/wire.h):
// the endpoint address it publishes, and the routing in front of every active message that tells
// the receiving worker which connection it belongs to. Every decoder checks lengths and returns an
// error for malformed input (bytes from the network never crash the process).
//
//   control active message (kControlAmId) = Route + one protocol message
//     connector -> acceptor: the connector's epoch and connection id, and (until it has heard
//     back) its worker address, which the acceptor connects to for its answers;
//     acceptor -> connector: the connector's connection id.
//   data active message (kDataAmId): header = DataHeader (connector's epoch and connection id +
//     the protocol's BlockHeader), payload = the block.
// Thread-safety: plain functions and values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "transfer/protocol/wire.h"

namespace tandem::transfer::ucx {

inline constexpr unsigned kControlAmId = 0x7a;
inline constexpr unsigned kDataAmId = 0x7b;

// Everything a peer needs to write into this worker's cache (KvEndpoint::address holds it,
// as "ucx1:" + web-safe base64 of the binary form).
struct EndpointAddress {
  uint64_t epoch = 0;
  uint64_t remote_base = 0;    // address of block 0 in the owner's process
  int64_t num_blocks = 0;
  int64_t bytes_per_block = 0;
  std::string worker_address;  // ucp_worker_get_address
  std::string rkey;            // ucp_rkey_pack of the cache's memory
};
std::string EncodeEndpointAddress(const EndpointAddress& a);
absl::StatusOr<EndpointAddress> DecodeEndpointAddress(std::string_view text);

// Which connection a control message belongs to.
struct Route {
  bool to_acceptor = true;    // connector -> acceptor, else the acceptor's answer
  uint64_t origin = 0;        // the connector's epoch (to_acceptor only)
  uint64_t conn = 0;          // the connector's connection id
  std::string reply_address;  // to_acceptor: the connector's worker address, or empty
};
std::string EncodeRouted(const Route& route, std::string_view message);
struct Routed {
  Route route;
  std::string_view message;  // points into the decoded frame
};
absl::StatusOr<Routed> DecodeRouted(std::string_view frame);

struct DataHeader {
  uint64_t origin = 0;  // the connector's epoch
  uint64_t conn = 0;    // the connector's connection id
  wire::BlockHeader block;
};
std::string EncodeDataHeader(const DataHeader& h);
absl::StatusOr<DataHeader> DecodeDataHeader(std::string_view header);

}  // namespace tandem::transfer::ucx
