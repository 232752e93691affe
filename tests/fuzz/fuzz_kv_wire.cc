// Every decoder of bytes a KV-transfer peer sends: the hand-off protocol's messages
// (transfer/protocol/wire.h), the UCX medium's routed control messages, data headers and
// endpoint addresses (transfer/ucx/ucx_wire.h), and the CUDA IPC medium's endpoint addresses
// and socket frames (transfer/cuda_ipc/cuda_ipc_wire.h, through a socketpair).
//
// Input: byte 0 picks the decoder, the rest is what the peer sent. Checked: whatever decodes
// encodes back to a message that decodes to the same fields, and byte for byte to the input
// where the encoding is canonical (fixed-width fields, nothing left over).
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/clock.h"
#include "fuzz_support.h"
#include "transfer/cuda_ipc/cuda_ipc_wire.h"
#include "transfer/protocol/wire.h"
#include "transfer/ucx/ucx_wire.h"

namespace {

namespace wire = tandem::transfer::wire;
namespace ucx = tandem::transfer::ucx;
namespace cuda_ipc = tandem::transfer::cuda_ipc;

// A protocol message as the receiver (or, for acknowledgements, the sender) dispatches it.
void DecodeMessage(std::string_view p) {
  auto type = wire::PeekType(p);
  if (!type.ok()) return;
  switch (*type) {
    case wire::MessageType::kHello:
      if (auto m = wire::DecodeHello(p); m.ok()) {
        FUZZ_CHECK(wire::Encode(*m) == p);
      }
      break;
    case wire::MessageType::kHelloAck:
    case wire::MessageType::kBeginAck:
    case wire::MessageType::kEndAck:
      if (auto m = wire::DecodeAck(p); m.ok()) {
        auto again = wire::DecodeAck(wire::Encode(*m));
        FUZZ_CHECK(again.ok() && again->type == m->type && again->transfer_id == m->transfer_id &&
                   again->status == m->status);
      }
      break;
    case wire::MessageType::kBegin:
      if (auto m = wire::DecodeBegin(p); m.ok()) {
        FUZZ_CHECK(m->num_blocks >= 0 && m->blocks.size() == static_cast<size_t>(m->num_blocks));
        FUZZ_CHECK(wire::Encode(*m) == p);
      }
      break;
    case wire::MessageType::kEnd:
      if (auto m = wire::DecodeEnd(p); m.ok()) {
        FUZZ_CHECK(m->blocks_sent >= 0);
        auto again = wire::DecodeEnd(wire::Encode(*m));
        FUZZ_CHECK(again.ok() && again->transfer_id == m->transfer_id && again->status == m->status &&
                   again->blocks_sent == m->blocks_sent);
      }
      break;
    case wire::MessageType::kBye:
      if (auto m = wire::DecodeBye(p); m.ok()) FUZZ_CHECK(wire::Encode(*m) == p);
      break;
  }
}

void DecodeBlockHeader(std::string_view p) {
  if (auto m = wire::DecodeBlockHeader(p); m.ok()) FUZZ_CHECK(wire::Encode(*m) == p);
}

// The UCX medium's control active message: the route, then a protocol message.
void DecodeUcxControl(std::string_view p) {
  auto routed = ucx::DecodeRouted(p);
  if (!routed.ok()) return;
  const std::string_view message = routed->message;
  FUZZ_CHECK(message.data() >= p.data() && message.data() + message.size() == p.data() + p.size());
  FUZZ_CHECK(ucx::EncodeRouted(routed->route, message) == p);
  DecodeMessage(message);
}

void DecodeUcxDataHeader(std::string_view p) {
  auto h = ucx::DecodeDataHeader(p);
  if (h.ok()) FUZZ_CHECK(ucx::EncodeDataHeader(*h) == p);
}

void DecodeUcxAddress(std::string_view p) {
  auto a = ucx::DecodeEndpointAddress(p);
  if (!a.ok()) return;
  FUZZ_CHECK(a->num_blocks > 0 && a->bytes_per_block > 0);
  auto again = ucx::DecodeEndpointAddress(ucx::EncodeEndpointAddress(*a));
  FUZZ_CHECK(again.ok() && again->epoch == a->epoch && again->remote_base == a->remote_base &&
             again->num_blocks == a->num_blocks && again->bytes_per_block == a->bytes_per_block &&
             again->worker_address == a->worker_address && again->rkey == a->rkey);
}

void DecodeCudaIpcAddress(std::string_view p) {
  auto a = cuda_ipc::DecodeEndpointAddress(p);
  if (!a.ok()) return;
  FUZZ_CHECK(a->ipc_handle.size() == cuda_ipc::kIpcHandleBytes);
  FUZZ_CHECK(cuda_ipc::EncodeEndpointAddress(*a) == p);  // lowercase hex: canonical
}

// The CUDA IPC control channel: length-prefixed frames from a socket, each a protocol message.
void ReadCudaIpcFrames(std::string_view p) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return;
  size_t sent = 0;
  while (sent < p.size()) {  // a stream socket pair holds far more than a fuzz input
    const ssize_t n = ::send(fds[1], p.data() + sent, p.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fds[1], SHUT_WR);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  size_t read = 0;
  for (;;) {
    absl::StatusOr<std::string> frame = cuda_ipc::ReadFrame(fds[0], deadline);
    if (!frame.ok()) break;
    read += 4 + frame->size();
    FUZZ_CHECK(read <= sent);
    DecodeMessage(*frame);
  }
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::QuietLogs();
  if (size == 0) return 0;
  const std::string_view p(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0:
      DecodeMessage(p);
      break;
    case 1:
      DecodeBlockHeader(p);
      break;
    case 2:
      DecodeUcxControl(p);
      break;
    case 3:
      DecodeUcxDataHeader(p);
      break;
    case 4:
      DecodeUcxAddress(p);
      break;
    case 5:
      DecodeCudaIpcAddress(p);
      break;
    case 6:
      ReadCudaIpcFrames(p);
      break;
  }
  return 0;
}
