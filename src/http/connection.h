// One accepted HTTP connection: reads and parses requests, dispatches them to handlers and
// writes their responses. Internal to the server (http_server.cc).
//
// Thread-safety: Start/Shutdown/ForceClose may be called from any thread; they post to the
// connection's strand, where all of its state lives. Handlers answer through an Exchange
// (connection.cc), which posts to the same strand.
//
// Ownership: the server's connection table holds each connection until it closes; pending
// asynchronous operations hold it too. Nothing here refers to the server after Close().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "http/http_server.h"
#include "http/request_parser.h"
#include "http/route_table.h"

namespace tandem::http::internal {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

struct ConnectionConfig {
  size_t max_header_bytes = 16 << 10;
  size_t max_body_bytes = 8 << 20;
  Clock::duration idle_timeout = std::chrono::seconds(60);
  Clock::duration read_timeout = std::chrono::seconds(30);
  Clock::duration write_timeout = std::chrono::seconds(60);
  // How long to keep draining input after the final response before closing (so a client
  // still sending a rejected body receives the response rather than a reset).
  Clock::duration linger_timeout = std::chrono::seconds(2);
  std::string server_name;
};

class Connection;

// What a connection needs from its server. Implemented by the server; called on the
// connection's strand.
class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;
  virtual const ConnectionConfig& config() const = 0;
  virtual const RouteTable& routes() const = 0;
  virtual bool stopping() const = 0;
  virtual void OnAccess(const HttpAccessRecord& record) = 0;
  // The connection closed its socket; the host drops its reference.
  virtual void OnConnectionClosed(Connection* connection) = 0;
};

class Exchange;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `socket` must use a strand executor.
  Connection(ConnectionHost* host, tcp::socket socket);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void Start();
  // The server is stopping: close now unless a response is in progress, else right after it.
  void Shutdown();
  void ForceClose();

 private:
  friend class Exchange;

  enum class Phase {
    kReadingRequest,  // waiting for / parsing a request
    kResponding,      // a handler or the server is answering; input is only watched
    kLingering,       // final response sent, write side shut down, draining until EOF
  };

  // Bytes to write: head, then body, then tail (any may be empty).
  struct Outgoing {
    std::string head;
    std::string body;
    std::string_view tail;
    size_t payload = 0;          // bytes counted in the exchange's queued_bytes
    bool ends_response = false;  // the response is complete once this is written
    bool close_after = false;    // close the connection once this is written
  };

  // Everything below runs on the strand.
  void BeginRequest();
  void ProcessInput();
  void MaybeSendContinue();
  void Dispatch();
  void RejectRequest(const RequestRejection& rejection);
  void EnsureReading();
  void OnRead(boost::system::error_code ec, size_t bytes);
  void Enqueue(Outgoing item);
  void DoWrite();
  void OnWrite(boost::system::error_code ec, size_t bytes);
  void ResponseComplete();
  void StartLingering();
  void Close(std::string_view reason);
  void FinishExchange(bool completed);

  void SetDeadline(Clock::time_point deadline);
  void StartTimerWait();
  void OnTimer(boost::system::error_code ec, uint64_t generation);

  // Called (via the strand) by the current exchange.
  void SendReply(const Exchange* exchange, int status, std::string content_type, std::string body,
                 HttpHeaders headers);
  void SendStreamHead(const Exchange* exchange, int status, std::string content_type,
                      HttpHeaders headers);
  void SendChunk(const Exchange* exchange, std::string chunk);
  void SendStreamEnd(const Exchange* exchange);
  void AbortStream(const Exchange* exchange);
  bool IsCurrent(const Exchange* exchange) const;

  ConnectionHost* const host_;
  const ConnectionConfig& config_;
  // The socket's strand, copied once so that exchanges may post to it from any thread. Never
  // copied into anything that may outlive the I/O context (an executor refers to it).
  const net::any_io_executor strand_;
  tcp::socket socket_;
  net::steady_timer timer_;
  std::string remote_;

  Phase phase_ = Phase::kReadingRequest;
  bool closed_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool shutting_down_ = false;

  // Input: read_chunk_ receives each read (never touched while a read is pending); input_
  // accumulates unparsed bytes, including pipelined requests.
  std::vector<char> read_chunk_;
  boost::beast::flat_buffer input_;
  RequestParser parser_;
  bool request_started_ = false;
  bool continue_sent_ = false;

  // The request being answered (null for a rejected request) and how its response is framed.
  std::shared_ptr<Exchange> exchange_;
  bool keep_alive_ = false;
  bool chunked_ = false;

  std::deque<Outgoing> queue_;
  std::vector<Outgoing> in_flight_;

  // One timer, one deadline: idle, read, write or linger, by phase. Clock::time_point::max()
  // means none. Stale waits are recognised by their generation.
  Clock::time_point deadline_ = Clock::time_point::max();
  uint64_t timer_generation_ = 0;
  bool timer_waiting_ = false;
};

}  // namespace tandem::http::internal
