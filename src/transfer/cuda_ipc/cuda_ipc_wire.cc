#include "transfer/cuda_ipc/cuda_ipc_wire.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/time/clock.h"
#include "common/strings.h"
#include "transfer/protocol/byte_codec.h"
#include "transfer/protocol/epoch.h"

namespace tandem::transfer::cuda_ipc {
namespace {

// Lengths, status codes and int32 fields are 8 bytes wide; a length is bounded only by the input.
constexpr wire::ByteFormat kFormat{.word_bytes = 8};

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(StrCat("cuda ipc: malformed ", what));
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string EncodeEndpointAddress(const EndpointAddress& a) {
  wire::ByteWriter w(kFormat);
  w.Put(a.epoch, a.process_nonce, a.boot_id, a.socket_path, a.ipc_handle, a.alloc_offset,
        a.owner_pointer, a.device, a.num_blocks, a.bytes_per_block);
  return StrCat(kAddressPrefix, Hex(w.Take()));
}

absl::StatusOr<EndpointAddress> DecodeEndpointAddress(std::string_view text) {
  if (text.substr(0, kAddressPrefix.size()) != kAddressPrefix) {
    return absl::InvalidArgumentError(
        StrCat("not a CUDA IPC endpoint address (want prefix ", kAddressPrefix, ")"));
  }
  text.remove_prefix(kAddressPrefix.size());
  if (text.size() % 2 != 0) return Malformed("endpoint address (odd hex length)");
  std::string bytes;
  bytes.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    const int hi = HexDigit(text[i]);
    const int lo = HexDigit(text[i + 1]);
    if (hi < 0 || lo < 0) return Malformed("endpoint address (bad hex digit)");
    bytes.push_back(static_cast<char>((hi << 4) | lo));
  }
  wire::ByteReader r(bytes, kFormat);
  EndpointAddress a;
  r.Get(a.epoch, a.process_nonce, a.boot_id, a.socket_path, a.ipc_handle, a.alloc_offset,
        a.owner_pointer, a.device, a.num_blocks, a.bytes_per_block);
  if (!r.ok() || !r.AtEnd()) return Malformed("endpoint address");
  if (a.ipc_handle.size() != kIpcHandleBytes || a.num_blocks <= 0 || a.bytes_per_block <= 0 ||
      a.socket_path.empty()) {
    return Malformed("endpoint address (fields out of range)");
  }
  return a;
}

std::vector<BlockRun> CoalesceWrites(std::span<const BlockWrite> writes) {
  std::vector<BlockRun> runs;
  for (const BlockWrite& w : writes) {
    if (!runs.empty()) {
      BlockRun& last = runs.back();
      if (last.src_block + last.count == w.src_block && last.dst_block + last.count == w.dst_block) {
        ++last.count;
        continue;
      }
    }
    runs.push_back({w.src_block, w.dst_block, 1});
  }
  return runs;
}

namespace {

// Waits until `fd` is ready for `events` or `deadline` passes.
absl::Status WaitFd(int fd, short events, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("cuda ipc: control channel timed out");
    // Capped before converting: an infinite deadline must not overflow the milliseconds.
    const int64_t ms =
        left > absl::Minutes(1) ? 60'000 : absl::ToInt64Milliseconds(left) + 1;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(ms));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(StrCat("cuda ipc: poll: ", std::strerror(errno)));
    if (n == 0) continue;
    if ((p.revents & events) != 0) return absl::OkStatus();
    return absl::UnavailableError("cuda ipc: the peer closed the control channel");
  }
}

absl::Status WriteAll(int fd, const char* data, size_t n, absl::Time deadline) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      data += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (absl::Status s = WaitFd(fd, POLLOUT, deadline); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(StrCat("cuda ipc: control channel write: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, char* data, size_t n, absl::Time deadline) {
  while (n > 0) {
    if (absl::Status s = WaitFd(fd, POLLIN, deadline); !s.ok()) return s;
    const ssize_t r = ::recv(fd, data, n, MSG_DONTWAIT);
    if (r > 0) {
      data += r;
      n -= static_cast<size_t>(r);
      continue;
    }
    if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (r == 0) return absl::UnavailableError("cuda ipc: the peer closed the control channel");
    return absl::UnavailableError(StrCat("cuda ipc: control channel read: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(StrCat("cuda ipc: socket path too long or empty: ", path));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

absl::Status WriteFrame(int fd, std::string_view payload, absl::Time deadline) {
  if (payload.size() > kMaxFrameBytes) return absl::InvalidArgumentError("cuda ipc: frame too large");
  char header[4];
  const auto n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) header[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  if (absl::Status s = WriteAll(fd, header, 4, deadline); !s.ok()) return s;
  return WriteAll(fd, payload.data(), payload.size(), deadline);
}

absl::StatusOr<std::string> ReadFrame(int fd, absl::Time deadline) {
  char header[4];
  if (absl::Status s = ReadAll(fd, header, 4, deadline); !s.ok()) return s;
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(static_cast<uint8_t>(header[i])) << (8 * i);
  if (n > kMaxFrameBytes) return Malformed(StrCat("frame (", n, " bytes)"));
  std::string payload(n, '\0');
  if (absl::Status s = ReadAll(fd, payload.data(), n, deadline); !s.ok()) return s;
  return payload;
}

absl::StatusOr<int> ConnectUnix(const std::string& path) {
  auto addr = UnixAddress(path);
  if (!addr.ok()) return addr.status();
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(StrCat("cuda ipc: socket: ", std::strerror(errno)));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        StrCat("cuda ipc: cannot reach the destination's control socket ", path, ": ",
               std::strerror(err)));
  }
  return fd;
}

absl::StatusOr<int> ListenUnix(const std::string& path) {
  auto addr = UnixAddress(path);
  if (!addr.ok()) return addr.status();
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(StrCat("cuda ipc: socket: ", std::strerror(errno)));
  ::unlink(path.c_str());  // a stale socket file of a dead process with the same name
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0 ||
      ::listen(fd, 64) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        StrCat("cuda ipc: cannot listen on ", path, ": ", std::strerror(err)));
  }
  return fd;
}

uint64_t ProcessNonce() {
  static const uint64_t nonce = RandomEpoch();
  return nonce;
}

const std::string& BootId() {
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string s;
    std::getline(in, s);
    return s;
  }();
  return id;
}

}  // namespace tandem::transfer::cuda_ipc
