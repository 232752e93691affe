#include "transfer/ucx/ucx_worker_loop.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <mutex>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>

#include "absl/time/clock.h"
#include "common/check.h"
#include "common/logging.h"
#include "common/strings.h"
#include "ucs/debug/log_def.h"

namespace tandem::transfer {
namespace {

// How long Stop lets queued sends (a final "transfer end", say) complete, and then how long
// it waits for endpoints to close, before destroying the worker regardless.
constexpr absl::Duration kDrainSends = absl::Milliseconds(500);
constexpr absl::Duration kDrainCloses = absl::Seconds(1);

// UCX prints its own warnings and errors on stdout by default, where programs put their output
// (the worker's machine-readable start-up line, generated text). Route them to our logger.
ucs_log_func_rc_t ForwardUcxLog(const char* file, unsigned line, const char* function,
                                ucs_log_level_t level, const ucs_log_component_config_t* comp,
                                const char* format, va_list ap) {
  char text[1024];
  std::vsnprintf(text, sizeof(text), format, ap);
  spdlog::level::level_enum to = spdlog::level::debug;
  if (level <= UCS_LOG_LEVEL_ERROR) {
    to = spdlog::level::err;
  } else if (level == UCS_LOG_LEVEL_WARN) {
    to = spdlog::level::warn;
  } else if (level <= UCS_LOG_LEVEL_INFO) {
    to = spdlog::level::info;
  }
  const char* base = std::strrchr(file, '/');
  GetLogger("ucx")->log(to, "{}:{} {}", base != nullptr ? base + 1 : file, line, text);
  return UCS_LOG_FUNC_RC_STOP;
}

void InstallUcxLogForwarding() {
  static std::once_flag once;
  std::call_once(once, [] { ucs_log_push_handler(&ForwardUcxLog); });
}

// Request parameters for an operation on host memory (registered as `memh` when given) whose
// completion goes to OnSendComplete-style callbacks with `c` as user data.
ucp_request_param_t HostMemoryParam(void* c, ucp_mem_h memh) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                   UCP_OP_ATTR_FIELD_MEMORY_TYPE;
  p.memory_type = UCS_MEMORY_TYPE_HOST;
  if (memh != nullptr) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    p.memh = memh;
  }
  p.user_data = c;
  return p;
}

}  // namespace

absl::Status UcsError(ucs_status_t status, std::string_view context) {
  std::string message = StrCat(context, ": ", ucs_status_string(status));
  switch (status) {
    case UCS_ERR_NO_MEMORY:
      return absl::ResourceExhaustedError(message);
    case UCS_ERR_INVALID_PARAM:
      return absl::InvalidArgumentError(message);
    // UCX's timeouts (keepalive, connection) mean the peer stopped answering: the caller's own
    // deadline is reported by the transport as DEADLINE_EXCEEDED, never by UCX.
    case UCS_ERR_CANCELED:
      return absl::CancelledError(message);
    default:
      return absl::UnavailableError(message);
  }
}

UcxWorkerLoop::UcxWorkerLoop(const UcxWorkerLoopOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<UcxWorkerLoop>> UcxWorkerLoop::Start(
    const UcxWorkerLoopOptions& options, std::function<absl::Status(UcxWorkerLoop&)> on_start) {
  std::unique_ptr<UcxWorkerLoop> loop(new UcxWorkerLoop(options));
  loop->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->wake_fd_ < 0) {
    return absl::InternalError(StrCat("eventfd: ", std::strerror(errno)));
  }
  std::promise<void> started;
  absl::Status init_status;
  loop->thread_ = std::thread([&, raw = loop.get()] {
    init_status = raw->Init(on_start);
    const bool ok = init_status.ok();
    started.set_value();
    if (!ok) {
      raw->Teardown();
      return;
    }
    raw->Loop();
  });
  loop->thread_id_ = loop->thread_.get_id();
  started.get_future().wait();
  if (!init_status.ok()) {
    loop->thread_.join();
    std::lock_guard<std::mutex> lock(loop->mu_);
    loop->stopped_ = true;
    return init_status;
  }
  return loop;
}

UcxWorkerLoop::~UcxWorkerLoop() {
  Stop(nullptr);
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status UcxWorkerLoop::Init(std::function<absl::Status(UcxWorkerLoop&)>& on_start) {
  InstallUcxLogForwarding();
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return UcsError(st, "ucp_config_read");
  if (!options_.transports.empty()) {
    st = ucp_config_modify(config, "TLS", options_.transports.c_str());
    if (st != UCS_OK) {
      ucp_config_release(config);
      return UcsError(st, StrCat("UCX_TLS=", options_.transports));
    }
  }
  const std::string keepalive =
      StrCat(absl::ToInt64Milliseconds(options_.keepalive_interval), "ms");
  st = ucp_config_modify(config, "KEEPALIVE_INTERVAL", keepalive.c_str());
  if (st != UCS_OK) GetLogger("transfer")->warn("UCX keepalive not set: {}", ucs_status_string(st));

  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = options_.name.c_str();
  st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (st != UCS_OK) return UcsError(st, "ucp_init");

  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;  // only this thread touches the worker
  st = ucp_worker_create(context_, &wp, &worker_);
  if (st != UCS_OK) return UcsError(st, "ucp_worker_create");
  st = ucp_worker_get_efd(worker_, &worker_fd_);
  if (st != UCS_OK) return UcsError(st, "ucp_worker_get_efd");

  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  st = ucp_worker_get_address(worker_, &address, &address_length);
  if (st != UCS_OK) return UcsError(st, "ucp_worker_get_address");
  worker_address_.assign(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(worker_, address);

  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                  UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  hp.id = options_.am_id;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  hp.cb = &UcxWorkerLoop::OnActiveMessage;
  hp.arg = this;
  st = ucp_worker_set_am_recv_handler(worker_, &hp);
  if (st != UCS_OK) return UcsError(st, "ucp_worker_set_am_recv_handler");
  hp.id = options_.data_am_id;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  hp.cb = &UcxWorkerLoop::OnDataMessage;
  st = ucp_worker_set_am_recv_handler(worker_, &hp);
  if (st != UCS_OK) return UcsError(st, "ucp_worker_set_am_recv_handler (data)");
  return on_start(*this);
}

bool UcxWorkerLoop::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_requested_) return false;
    posted_.push_back(std::move(task));
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  return true;
}

void UcxWorkerLoop::Stop(std::function<void()> on_stop, std::function<void()> on_teardown) {
  TANDEM_CHECK(!OnLoopThread()) << "UcxWorkerLoop::Stop called on the loop thread";
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stop_requested_ = true;
    on_stop_ = std::move(on_stop);
    on_teardown_ = std::move(on_teardown);
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void UcxWorkerLoop::SetMessageHandler(std::function<void(std::string_view)> handler) {
  message_handler_ = std::move(handler);
}

void UcxWorkerLoop::SetDataHandler(DataHandler handler) { data_handler_ = std::move(handler); }

void UcxWorkerLoop::SetTicker(std::function<absl::Time(absl::Time)> ticker) {
  ticker_ = std::move(ticker);
}

void UcxWorkerLoop::Loop() {
  for (;;) {
    bool busy = RunPosted();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_requested_) break;
    }
    while (ucp_worker_progress(worker_) != 0) {
      busy = true;
      RunDeferred();
    }
    busy |= RunDeferred();
    const absl::Time next = ticker_ ? ticker_(absl::Now()) : absl::InfiniteFuture();
    busy |= RunDeferred();
    if (!busy) WaitForEvents(next);
  }
  Shutdown();
}

bool UcxWorkerLoop::RunPosted() {
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(posted_);
  }
  for (auto& task : tasks) {
    task();
    RunDeferred();
  }
  return !tasks.empty();
}

bool UcxWorkerLoop::RunDeferred() {
  bool ran = false;
  while (!deferred_.empty()) {
    std::vector<std::function<void()>> batch;
    batch.swap(deferred_);
    for (auto& fn : batch) fn();
    ran = true;
  }
  return ran;
}

void UcxWorkerLoop::WaitForEvents(absl::Time next_deadline) {
  const ucs_status_t st = ucp_worker_arm(worker_);
  if (st == UCS_ERR_BUSY) return;  // events are pending: progress again
  absl::Duration wait = std::min(next_deadline - absl::Now(), options_.max_sleep);
  if (st != UCS_OK) {
    GetLogger("transfer")->warn("ucp_worker_arm: {}", ucs_status_string(st));
    wait = std::min(wait, absl::Milliseconds(1));
  }
  const int timeout_ms =
      wait <= absl::ZeroDuration() ? 0 : static_cast<int>(absl::ToInt64Milliseconds(wait) + 1);
  pollfd fds[2] = {{worker_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  const int n = poll(fds, st == UCS_OK ? 2 : 1, timeout_ms);
  if (n > 0 && (fds[1].revents & POLLIN) != 0) {
    uint64_t drained = 0;
    [[maybe_unused]] ssize_t r = read(wake_fd_, &drained, sizeof(drained));
  }
}

void UcxWorkerLoop::Shutdown() {
  RunPosted();  // tasks posted before Stop still run (their completions are reported)
  std::function<void()> on_stop, on_teardown;
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_stop = std::move(on_stop_);
    on_teardown = std::move(on_teardown_);
  }
  if (on_stop) on_stop();
  RunDeferred();
  const absl::Time sends_deadline = absl::Now() + kDrainSends;
  while (pending_requests_ > 0 && absl::Now() < sends_deadline) {
    ucp_worker_progress(worker_);
    RunDeferred();
  }
  std::vector<ucp_ep_h> eps;
  for (const auto& [ep, entry] : eps_) {
    if (!entry->closing) eps.push_back(ep);
  }
  for (ucp_ep_h ep : eps) Disconnect(ep);
  const absl::Time close_deadline = absl::Now() + kDrainCloses;
  while (closing_eps_ > 0 && absl::Now() < close_deadline) {
    ucp_worker_progress(worker_);
    RunDeferred();
  }
  if (closing_eps_ > 0) {
    GetLogger("transfer")->warn("{} UCX endpoints still closing at shutdown", closing_eps_);
  }
  if (on_teardown) on_teardown();
  Teardown();
}

void UcxWorkerLoop::Teardown() {
  deferred_.clear();
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  worker_ = nullptr;
  eps_.clear();
  if (context_ != nullptr) ucp_cleanup(context_);
  context_ = nullptr;
}

absl::StatusOr<ucp_ep_h> UcxWorkerLoop::Connect(std::string_view address, Callback on_error) {
  auto entry = std::make_unique<EpEntry>();
  entry->loop = this;
  entry->serial = next_ep_serial_++;
  entry->on_error = std::move(on_error);
  ucp_ep_params_t p{};
  p.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                 UCP_EP_PARAM_FIELD_ERR_HANDLER;
  p.address = reinterpret_cast<const ucp_address_t*>(address.data());
  p.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  p.err_handler.cb = &UcxWorkerLoop::OnEpError;
  p.err_handler.arg = entry.get();
  ucp_ep_h ep = nullptr;
  const ucs_status_t st = ucp_ep_create(worker_, &p, &ep);
  if (st != UCS_OK) return UcsError(st, "ucp_ep_create");
  entry->ep = ep;
  LogEndpoint(ep);
  eps_[ep] = std::move(entry);
  return ep;
}

void UcxWorkerLoop::LogEndpoint(ucp_ep_h ep) {
  // Which UCX transports carry this connection (lanes, protocol thresholds): debug level only.
  auto logger = GetLogger("transfer");
  if (!logger->should_log(spdlog::level::debug)) return;
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  if (f == nullptr) return;
  ucp_ep_print_info(ep, f);
  std::fclose(f);
  logger->debug("new UCX endpoint:\n{}", std::string_view(text, size));
  std::free(text);
}

void UcxWorkerLoop::Disconnect(ucp_ep_h ep) {
  auto it = eps_.find(ep);
  if (it == eps_.end() || it->second->closing) return;
  EpEntry* entry = it->second.get();
  entry->closing = true;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  if (entry->failed) {
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
  }
  p.cb.send = &UcxWorkerLoop::OnCloseComplete;
  p.user_data = entry;
  const ucs_status_ptr_t r = ucp_ep_close_nbx(ep, &p);
  if (r == nullptr || UCS_PTR_IS_ERR(r)) {
    eps_.erase(it);
    return;
  }
  ++closing_eps_;
}

bool UcxWorkerLoop::EpFailed(ucp_ep_h ep) const {
  auto it = eps_.find(ep);
  return it == eps_.end() || it->second->failed;
}

void UcxWorkerLoop::OnCloseComplete(void* request, ucs_status_t status, void* user_data) {
  auto* entry = static_cast<EpEntry*>(user_data);
  UcxWorkerLoop* loop = entry->loop;
  ucp_request_free(request);
  --loop->closing_eps_;
  loop->eps_.erase(entry->ep);  // deletes `entry`
}

void UcxWorkerLoop::OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* entry = static_cast<EpEntry*>(arg);
  entry->failed = true;
  if (entry->closing) return;
  UcxWorkerLoop* loop = entry->loop;
  const uint64_t serial = entry->serial;
  loop->Defer([loop, ep, serial, status] {
    auto it = loop->eps_.find(ep);
    if (it == loop->eps_.end() || it->second->serial != serial || it->second->closing) return;
    Callback on_error = it->second->on_error;
    if (on_error) on_error(UcsError(status, "UCX endpoint failed"));
  });
}

void UcxWorkerLoop::Track(ucs_status_ptr_t request, Completion* c) {
  if (request == nullptr || UCS_PTR_IS_ERR(request)) {
    const ucs_status_t st = request == nullptr ? UCS_OK : UCS_PTR_STATUS(request);
    Callback on_done = std::move(c->on_done);
    delete c;
    if (on_done) {
      Defer([on_done = std::move(on_done), st] {
        on_done(st == UCS_OK ? absl::OkStatus() : UcsError(st, "UCX request failed"));
      });
    }
    return;
  }
  ++pending_requests_;
}

void UcxWorkerLoop::OnSendComplete(void* request, ucs_status_t status, void* user_data) {
  auto* c = static_cast<Completion*>(user_data);
  UcxWorkerLoop* loop = c->loop;
  ucp_request_free(request);
  --loop->pending_requests_;
  if (c->on_done) {
    loop->Defer([on_done = std::move(c->on_done), status] {
      on_done(status == UCS_OK ? absl::OkStatus() : UcsError(status, "UCX request failed"));
    });
  }
  delete c;
}

void UcxWorkerLoop::SendMessage(ucp_ep_h ep, std::string payload, Callback on_done) {
  auto* c = new Completion{this, std::move(on_done), std::move(payload)};
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                   UCP_OP_ATTR_FIELD_FLAGS;
  p.flags = UCP_AM_SEND_FLAG_EAGER;  // small control messages; no rendezvous to receive
  p.cb.send = &UcxWorkerLoop::OnSendComplete;
  p.user_data = c;
  Track(ucp_am_send_nbx(ep, options_.am_id, nullptr, 0, c->payload.data(), c->payload.size(), &p),
        c);
}

void UcxWorkerLoop::SendData(ucp_ep_h ep, std::string header, const void* data, size_t length,
                             ucp_mem_h memh, Callback on_done) {
  auto* c = new Completion{this, std::move(on_done), std::move(header)};
  ucp_request_param_t p = HostMemoryParam(c, memh);
  p.cb.send = &UcxWorkerLoop::OnSendComplete;
  Track(ucp_am_send_nbx(ep, options_.data_am_id, c->payload.data(), c->payload.size(), data,
                        length, &p),
        c);
}

void UcxWorkerLoop::ReceiveData(void* descriptor, void* buffer, size_t length, ucp_mem_h memh,
                                Callback on_done) {
  auto* c = new Completion{this, std::move(on_done), {}};
  ucp_request_param_t p = HostMemoryParam(c, memh);
  p.cb.recv_am = &UcxWorkerLoop::OnReceiveComplete;
  Track(ucp_am_recv_data_nbx(worker_, descriptor, buffer, length, &p), c);
}

void UcxWorkerLoop::OnReceiveComplete(void* request, ucs_status_t status, size_t length,
                                      void* user_data) {
  OnSendComplete(request, status, user_data);
}

ucs_status_t UcxWorkerLoop::OnDataMessage(void* arg, const void* header, size_t header_length,
                                          void* data, size_t length,
                                          const ucp_am_recv_param_t* param) {
  auto* loop = static_cast<UcxWorkerLoop*>(arg);
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  if (!loop->data_handler_) return rndv ? UCS_ERR_UNSUPPORTED : UCS_OK;
  std::string_view h(static_cast<const char*>(header), header_length);
  return loop->data_handler_(h, data, length, rndv);
}

void UcxWorkerLoop::Put(ucp_ep_h ep, const void* buffer, size_t length, uint64_t remote_addr,
                        ucp_rkey_h rkey, ucp_mem_h memh, Callback on_done) {
  auto* c = new Completion{this, std::move(on_done), {}};
  ucp_request_param_t p = HostMemoryParam(c, memh);
  p.cb.send = &UcxWorkerLoop::OnSendComplete;
  Track(ucp_put_nbx(ep, buffer, length, remote_addr, rkey, &p), c);
}

void UcxWorkerLoop::Flush(ucp_ep_h ep, Callback on_done) {
  auto* c = new Completion{this, std::move(on_done), {}};
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &UcxWorkerLoop::OnSendComplete;
  p.user_data = c;
  Track(ucp_ep_flush_nbx(ep, &p), c);
}

ucs_status_t UcxWorkerLoop::OnActiveMessage(void* arg, const void* header, size_t header_length,
                                            void* data, size_t length,
                                            const ucp_am_recv_param_t* param) {
  auto* loop = static_cast<UcxWorkerLoop*>(arg);
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0) {
    // Our peers send eager messages only; a rendezvous one is not ours. Dropped.
    GetLogger("transfer")->warn("dropped a rendezvous active message of {} bytes", length);
    return UCS_OK;
  }
  std::string payload(static_cast<const char*>(data), length);
  loop->Defer([loop, payload = std::move(payload)] {
    if (loop->message_handler_) loop->message_handler_(payload);
  });
  return UCS_OK;
}

}  // namespace tandem::transfer
