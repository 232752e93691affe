// UcxWorkerLoop: one thread that owns a UCP context and worker and makes every UCX call of a
// transport. Other threads hand it work with Post; UCX callbacks (active messages, endpoint
// errors, request completions) are turned into deferred tasks that run on the same thread after
// ucp_worker_progress returns, so handlers never re-enter UCX from inside a UCX callback.
// When idle the thread sleeps in poll() on the worker's event fd (ucp_worker_arm) and an
// eventfd that Post signals; it wakes at least every `max_sleep` so that UCX keepalive (which
// detects dead peers) and the owner's deadlines run.
//
// Transports: `transports` is UCX_TLS. "tcp,sm,self" keeps to TCP and shared memory (one
// machine, or any TCP network); "all" (UCX's default) lets UCX pick RDMA verbs (rc/dc/ud)
// where an HCA is present. Empty: the UCX_TLS environment variable, else UCX's default.
//
// UCX's own log messages (stdout by default) are sent to the "ucx" spdlog logger (stderr) from
// the first Start on, for the whole process.
//
// Thread-safety: Post, Stop and OnLoopThread may be called from any thread; every other method
// only on the loop thread (from a posted task or a handler). Stop must not be called from the
// loop thread. Ownership: the loop owns the context, the worker and every endpoint it connects.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ucp/api/ucp.h"

namespace tandem::transfer {

struct UcxWorkerLoopOptions {
  std::string transports;  // UCX_TLS; see above
  // UCX keepalive period for endpoints with peer error handling: how soon a dead peer is
  // noticed on an otherwise idle connection.
  absl::Duration keepalive_interval = absl::Seconds(1);
  absl::Duration max_sleep = absl::Milliseconds(100);
  std::string name = "tandem-kv";
  unsigned am_id = 0x7a;       // active messages for the message handler (copied, deferred)
  unsigned data_am_id = 0x7b;  // active messages for the data handler (in the UCX callback)
};

// A Status for a UCX error (UNAVAILABLE for connection-level failures).
absl::Status UcsError(ucs_status_t status, std::string_view context);

class UcxWorkerLoop {
 public:
  using Callback = std::function<void(absl::Status)>;

  // Starts the thread, creates the context and the worker on it, then runs `on_start` there
  // (register memory, install handlers). Fails if any of that fails.
  static absl::StatusOr<std::unique_ptr<UcxWorkerLoop>> Start(
      const UcxWorkerLoopOptions& options, std::function<absl::Status(UcxWorkerLoop&)> on_start);
  ~UcxWorkerLoop();  // Stop(nullptr) unless already stopped

  // --- any thread ---
  // Runs `task` on the loop thread. Returns false (dropping it) once Stop has begun.
  bool Post(std::function<void()> task);
  // Runs `on_stop` on the loop thread (fail what is pending; it may still send), lets queued
  // sends complete for a short while, closes every endpoint, runs `on_teardown` (release
  // memory registrations), destroys the worker and the context and joins the thread.
  void Stop(std::function<void()> on_stop, std::function<void()> on_teardown = nullptr);
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_id_; }

  // --- loop thread only ---
  ucp_context_h context() const { return context_; }
  ucp_worker_h worker() const { return worker_; }
  // This worker's address (ucp_worker_get_address), for peers' ucp_ep_create.
  const std::string& worker_address() const { return worker_address_; }
  // Every active message (payload copied) goes to `handler`.
  void SetMessageHandler(std::function<void(std::string_view payload)> handler);
  // Data messages (header + payload) go to `handler` inside the UCX callback: it must place
  // the payload now (copy it, or ReceiveData when `rndv`) and must not call other loop methods
  // except ReceiveData and Defer. Its return value follows ucp_am_recv_callback_t (an error
  // for a rendezvous message fails the sender's send with it).
  using DataHandler = std::function<ucs_status_t(std::string_view header, void* data,
                                                 size_t length, bool rndv)>;
  void SetDataHandler(DataHandler handler);
  // Called every iteration; returns when it next needs to run (its earliest deadline).
  void SetTicker(std::function<absl::Time(absl::Time now)> ticker);

  // An endpoint to `address` with peer error handling; `on_error` runs (once, on the loop
  // thread) if the connection fails before Disconnect.
  absl::StatusOr<ucp_ep_h> Connect(std::string_view address, Callback on_error);
  // Closes `ep` (flushing it unless it failed); no callback of it runs afterwards.
  void Disconnect(ucp_ep_h ep);
  // True once UCX reported `ep` failed (its operations were completed with errors).
  bool EpFailed(ucp_ep_h ep) const;
  // Sends `payload` as one active message; `on_done` (optional) gets the local completion.
  void SendMessage(ucp_ep_h ep, std::string payload, Callback on_done = nullptr);
  // An active message of `header` + [data, +length) to the peer's data handler (eager or
  // rendezvous, UCX decides); `on_done` gets the completion (after the receiver took the data
  // when rendezvous). `data` must stay valid until then.
  void SendData(ucp_ep_h ep, std::string header, const void* data, size_t length, ucp_mem_h memh,
                Callback on_done);
  // Receives a rendezvous data message (the data handler's `data`) into [buffer, +length).
  void ReceiveData(void* descriptor, void* buffer, size_t length, ucp_mem_h memh,
                   Callback on_done);
  // RMA write of [buffer, +length) to `remote_addr`; `on_done` gets the local completion.
  void Put(ucp_ep_h ep, const void* buffer, size_t length, uint64_t remote_addr, ucp_rkey_h rkey,
           ucp_mem_h memh, Callback on_done);
  // Completes once every operation issued on `ep` is complete at the remote side.
  void Flush(ucp_ep_h ep, Callback on_done);
  // Runs `fn` on the loop thread after the current handler returns.
  void Defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }

 private:
  struct EpEntry {
    UcxWorkerLoop* loop = nullptr;
    ucp_ep_h ep = nullptr;
    uint64_t serial = 0;
    Callback on_error;
    bool failed = false;
    bool closing = false;
  };
  struct Completion {
    UcxWorkerLoop* loop = nullptr;
    Callback on_done;
    std::string payload;  // keeps an active message's bytes (or header) alive until it is sent
  };

  explicit UcxWorkerLoop(const UcxWorkerLoopOptions& options);
  absl::Status Init(std::function<absl::Status(UcxWorkerLoop&)>& on_start);
  void Run(std::function<absl::Status(UcxWorkerLoop&)> on_start);
  void Loop();
  void Shutdown();
  void Teardown();
  bool RunPosted();
  bool RunDeferred();
  void WaitForEvents(absl::Time next_deadline);
  void LogEndpoint(ucp_ep_h ep);
  // Completes `request` (a ucs_status_ptr_t of an nbx call made with `c` as user data).
  void Track(ucs_status_ptr_t request, Completion* c);

  static void OnSendComplete(void* request, ucs_status_t status, void* user_data);
  static void OnReceiveComplete(void* request, ucs_status_t status, size_t length, void* user_data);
  static ucs_status_t OnDataMessage(void* arg, const void* header, size_t header_length,
                                    void* data, size_t length, const ucp_am_recv_param_t* param);
  static void OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void OnCloseComplete(void* request, ucs_status_t status, void* user_data);
  static ucs_status_t OnActiveMessage(void* arg, const void* header, size_t header_length,
                                      void* data, size_t length, const ucp_am_recv_param_t* param);

  const UcxWorkerLoopOptions options_;
  std::thread thread_;
  std::thread::id thread_id_;
  int wake_fd_ = -1;

  // Loop-thread state.
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int worker_fd_ = -1;
  std::string worker_address_;
  std::function<void(std::string_view)> message_handler_;
  DataHandler data_handler_;
  std::function<absl::Time(absl::Time)> ticker_;
  std::vector<std::function<void()>> deferred_;
  std::unordered_map<ucp_ep_h, std::unique_ptr<EpEntry>> eps_;
  uint64_t next_ep_serial_ = 1;
  int64_t closing_eps_ = 0;      // close requests not yet complete
  int64_t pending_requests_ = 0;  // sends, puts and flushes not yet complete

  std::mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool stop_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_stop_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_teardown_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::transfer
