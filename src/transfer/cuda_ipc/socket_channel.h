// SocketChannel: the CUDA IPC medium's control channel, Unix stream sockets carrying one frame
// per protocol message (cuda_ipc_wire.h). It listens on a path (accepting on a thread of its
// own), connects to peers' paths, reads each connection on a thread of its own and hands every
// frame, and the connection's end, to a TaskLoop. A closed socket is how each side learns that
// the other died. Writes are made on the caller's thread, bounded by `write_timeout`.
//
// An accepted connection must send its first frame within `first_frame_timeout` (else it is
// reported lost); later frames may take as long as they like.
//
// Thread-safety: every method may be called from any thread (the medium calls them on its
// loop's thread). Handlers run on the loop. Ownership: owns its sockets and threads; Shutdown
// (or the destructor) closes and joins them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transfer/protocol/medium.h"
#include "transfer/protocol/task_loop.h"

namespace tandem::transfer {

class SocketChannel {
 public:
  struct Handlers {
    std::function<void(ConnectionId, std::string frame)> on_frame;
    // The peer closed the connection, it failed, or its first frame did not come in time.
    std::function<void(ConnectionId, absl::Status)> on_lost;
  };

  SocketChannel(TaskLoop* loop, Handlers handlers, absl::Duration first_frame_timeout,
                absl::Duration write_timeout = absl::Seconds(1));
  ~SocketChannel();  // Shutdown()
  SocketChannel(const SocketChannel&) = delete;
  SocketChannel& operator=(const SocketChannel&) = delete;

  // Listens on `path` (replacing a stale socket file) and accepts connections from now on.
  absl::Status Listen(const std::string& path);
  // A connection to the peer listening on `path` (UNAVAILABLE if nobody does).
  absl::StatusOr<ConnectionId> Connect(const std::string& path);
  // Writes one frame; an error means the connection is broken.
  absl::Status Send(ConnectionId conn, std::string_view frame);
  // Closes `conn`; no handler runs for it afterwards (IsOpen turns false at once).
  void Close(ConnectionId conn);
  bool IsOpen(ConnectionId conn) const;
  // Stops accepting, closes every connection, joins every thread and removes the socket file.
  void Shutdown();

 private:
  struct Connection {
    int fd = -1;
    std::thread reader;
    std::shared_ptr<std::atomic<bool>> exited = std::make_shared<std::atomic<bool>>(false);
  };

  // Registers `fd` and starts its reader.
  ConnectionId Add(int fd, bool accepted);
  void ReadLoop(ConnectionId conn, int fd, bool accepted, std::shared_ptr<std::atomic<bool>> exited);
  void AcceptLoop();
  // Joins the readers of closed connections that have exited and closes their sockets.
  void Reap();

  TaskLoop* const loop_;
  const Handlers handlers_;
  const absl::Duration first_frame_timeout_;
  const absl::Duration write_timeout_;

  mutable std::mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  ConnectionId next_conn_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<ConnectionId, Connection> open_ ABSL_GUARDED_BY(mu_);
  std::vector<Connection> closing_ ABSL_GUARDED_BY(mu_);

  std::string path_;  // set by Listen
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  std::thread acceptor_;
};

}  // namespace tandem::transfer
