#include "transfer/cuda_ipc/socket_channel.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/time/clock.h"
#include "transfer/cuda_ipc/cuda_ipc_wire.h"

namespace tandem::transfer {

SocketChannel::SocketChannel(TaskLoop* loop, Handlers handlers, absl::Duration first_frame_timeout,
                             absl::Duration write_timeout)
    : loop_(loop),
      handlers_(std::move(handlers)),
      first_frame_timeout_(first_frame_timeout),
      write_timeout_(write_timeout) {}

SocketChannel::~SocketChannel() { Shutdown(); }

absl::Status SocketChannel::Listen(const std::string& path) {
  absl::StatusOr<int> fd = cuda_ipc::ListenUnix(path);
  if (!fd.ok()) return fd.status();
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ::close(*fd);
    ::unlink(path.c_str());
    return absl::InternalError("cuda ipc: eventfd failed");
  }
  listen_fd_ = *fd;
  path_ = path;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void SocketChannel::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int n = ::poll(fds, 2, 1000);
    Reap();
    if ((fds[1].revents & POLLIN) != 0) return;
    if (n <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) Add(fd, /*accepted=*/true);
  }
}

absl::StatusOr<ConnectionId> SocketChannel::Connect(const std::string& path) {
  Reap();
  absl::StatusOr<int> fd = cuda_ipc::ConnectUnix(path);
  if (!fd.ok()) return fd.status();
  const ConnectionId conn = Add(*fd, /*accepted=*/false);
  if (conn == 0) return absl::UnavailableError("cuda ipc: the control channel is shutting down");
  return conn;
}

ConnectionId SocketChannel::Add(int fd, bool accepted) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shut_down_) {
    ::close(fd);
    return 0;
  }
  const ConnectionId conn = next_conn_++;
  Connection& c = open_[conn];
  c.fd = fd;
  c.reader = std::thread([this, conn, fd, accepted, exited = c.exited] {
    ReadLoop(conn, fd, accepted, exited);
  });
  return conn;
}

void SocketChannel::ReadLoop(ConnectionId conn, int fd, bool accepted,
                             std::shared_ptr<std::atomic<bool>> exited) {
  absl::Time deadline = accepted ? absl::Now() + first_frame_timeout_ : absl::InfiniteFuture();
  while (true) {
    absl::StatusOr<std::string> frame = cuda_ipc::ReadFrame(fd, deadline);
    if (!frame.ok()) {
      loop_->Post([this, conn, status = frame.status()] {
        if (IsOpen(conn)) handlers_.on_lost(conn, status);
      });
      break;
    }
    deadline = absl::InfiniteFuture();
    loop_->Post([this, conn, f = std::move(*frame)]() mutable {
      if (IsOpen(conn)) handlers_.on_frame(conn, std::move(f));
    });
  }
  exited->store(true);
}

absl::Status SocketChannel::Send(ConnectionId conn, std::string_view frame) {
  int fd = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = open_.find(conn);
    if (it == open_.end()) return absl::UnavailableError("cuda ipc: the connection is closed");
    fd = it->second.fd;
  }
  return cuda_ipc::WriteFrame(fd, frame, absl::Now() + write_timeout_);
}

void SocketChannel::Close(ConnectionId conn) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(conn);
  if (it == open_.end()) return;
  ::shutdown(it->second.fd, SHUT_RDWR);  // wakes its reader
  closing_.push_back(std::move(it->second));
  open_.erase(it);
}

bool SocketChannel::IsOpen(ConnectionId conn) const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_.contains(conn);
}

void SocketChannel::Reap() {
  std::vector<Connection> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = closing_.begin(); it != closing_.end();) {
      if (it->exited->load()) {
        done.push_back(std::move(*it));
        it = closing_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (Connection& c : done) {
    c.reader.join();
    ::close(c.fd);
  }
}

void SocketChannel::Shutdown() {
  std::vector<Connection> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    for (auto& [conn, c] : open_) all.push_back(std::move(c));
    open_.clear();
    for (Connection& c : closing_) all.push_back(std::move(c));
    closing_.clear();
  }
  if (acceptor_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
    acceptor_.join();
  }
  for (Connection& c : all) ::shutdown(c.fd, SHUT_RDWR);
  for (Connection& c : all) {
    c.reader.join();
    ::close(c.fd);
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

}  // namespace tandem::transfer
