#include "transfer/cuda_ipc_kv_transport.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/status_macros.h"
#include "common/logging.h"
#include "common/strings.h"
#include "transfer/cuda_ipc_wire.h"

namespace tandem::transfer {
namespace {

namespace wire = cuda_ipc;

absl::Status CudaError(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(StrCat("cuda ipc: ", what, ": ", cudaGetErrorName(e), " (",
                                    cudaGetErrorString(e), ")"));
}

uint64_t RandomEpoch() {
  std::random_device rd;
  uint64_t e = 0;
  while (e == 0) e = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return e;
}

std::string SocketName(const std::string& worker_id, uint64_t epoch) {
  std::string safe;
  for (char c : worker_id) {
    if (safe.size() >= 40) break;
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    safe.push_back(ok ? c : '_');
  }
  return StrCat("tandem-kv-", safe, "-", fmt::format("{:016x}", epoch), ".sock");
}

// A destination pool as this process sees it. Closing the IPC mapping waits for the last
// transfer that uses it (shared_ptr).
struct IpcMapping {
  uint64_t epoch = 0;
  std::string socket_path;  // the owner's control socket: gone when the owner is
  uint8_t* block0 = nullptr;
  void* opened = nullptr;  // cudaIpcOpenMemHandle's pointer; null for the same-process shortcut
  int device = 0;          // the device current when it was opened
  ~IpcMapping() {
    if (opened != nullptr) {
      cudaSetDevice(device);
      cudaIpcCloseMemHandle(opened);
    }
  }
};

// Shared by a transfer's handle and the thread that runs it.
struct SendState {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<BlockCopy> queued ABSL_GUARDED_BY(mu);
  // Recorded at each Send on the legacy default stream: the copies of `queued` wait for them, so
  // they follow every kernel the process queued before Send on blocking streams (the engine's).
  std::vector<cudaEvent_t> fences ABSL_GUARDED_BY(mu);
  absl::Status invalid ABSL_GUARDED_BY(mu);  // a bad Send: fails the transfer
  bool finish_requested ABSL_GUARDED_BY(mu) = false;
  std::function<void(absl::Status)> done ABSL_GUARDED_BY(mu);
  bool abandoned ABSL_GUARDED_BY(mu) = false;  // the handle is gone
  bool cancelled ABSL_GUARDED_BY(mu) = false;  // the transport is shutting down
  bool exited ABSL_GUARDED_BY(mu) = false;     // the thread ended with `outcome`, `done` not called
  absl::Status outcome ABSL_GUARDED_BY(mu);

  ~SendState() {
    // Fences never waited on (the transfer failed first); destroying a pending event is allowed.
    for (cudaEvent_t e : fences) cudaEventDestroy(e);
  }
};

// Records a fence on the legacy default stream of `device` from the calling thread (whose current
// device is restored).
absl::StatusOr<cudaEvent_t> RecordFence(int device) {
  int current = -1;
  TANDEM_RETURN_IF_ERROR(CudaError(cudaGetDevice(&current), "cudaGetDevice"));
  if (current != device) TANDEM_RETURN_IF_ERROR(CudaError(cudaSetDevice(device), "cudaSetDevice"));
  cudaEvent_t event = nullptr;
  absl::Status st = CudaError(cudaEventCreateWithFlags(&event, cudaEventDisableTiming),
                              "cudaEventCreate");
  if (st.ok()) {
    st = CudaError(cudaEventRecord(event, cudaStreamLegacy), "cudaEventRecord");
    if (!st.ok()) cudaEventDestroy(event);
  }
  if (current != device) cudaSetDevice(current);
  if (!st.ok()) return st;
  return event;
}

}  // namespace

struct CudaIpcKvTransport::Core {
  KvLayoutInfo layout;
  std::string worker_id;
  uint64_t epoch = 0;
  int device = 0;
  uint8_t* block0 = nullptr;
  int64_t num_blocks = 0;
  int64_t bytes_per_block = 0;
  KvLeaseHandler* handler = nullptr;
  absl::Duration lease_grace;
  absl::Duration handshake_timeout;
  std::string socket_path;  // empty: not listening
  int listen_fd = -1;
  int wake_fd = -1;
  std::thread acceptor;

  std::mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  uint64_t next_thread ABSL_GUARDED_BY(mu) = 1;
  std::map<uint64_t, std::thread> threads ABSL_GUARDED_BY(mu);
  std::vector<uint64_t> finished ABSL_GUARDED_BY(mu);
  std::set<int> open_fds ABSL_GUARDED_BY(mu);  // control connections, shut down on stop
  std::map<uint64_t, std::weak_ptr<SendState>> sends ABSL_GUARDED_BY(mu);
  std::mutex mappings_mu;
  std::map<std::string, std::shared_ptr<IpcMapping>> mappings ABSL_GUARDED_BY(mappings_mu);
  absl::Time last_sweep ABSL_GUARDED_BY(mappings_mu) = absl::Now();

  // Runs `fn` on a new thread joined at shutdown; false (fn not run) when stopping.
  bool Spawn(std::function<void()> fn);
  void Reap();
  void TrackFd(int fd);
  void CloseFd(int fd);
  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu);
    return stopping;
  }
  void Shutdown();

  // Receiver.
  void AcceptLoop();
  void Serve(int fd);
  absl::Status CheckBegin(const wire::Begin& m) const;

  // Sender.
  absl::StatusOr<std::shared_ptr<IpcMapping>> OpenMapping(const std::string& worker_id,
                                                          const wire::EndpointAddress& a);
  // Closes the cached mappings of peers that are gone (their control socket refuses), at most
  // every 10 s: a restarted decode worker comes back under a new worker id, and an open mapping
  // would otherwise keep its old pool alive in the driver for as long as this process lives.
  void SweepMappings();
  void RunTransfer(std::shared_ptr<SendState> state, KvDestination destination,
                   wire::EndpointAddress address, absl::Time deadline);
  absl::Status CopyLoop(SendState& state, const KvDestination& destination,
                        const IpcMapping& mapping, cudaStream_t stream, absl::Time deadline,
                        int64_t* blocks_written);
};

bool CudaIpcKvTransport::Core::Spawn(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu);
  if (stopping) return false;
  const uint64_t id = next_thread++;
  threads.emplace(id, std::thread([this, id, fn = std::move(fn)] {
                    fn();
                    std::lock_guard<std::mutex> l(mu);
                    finished.push_back(id);
                  }));
  return true;
}

void CudaIpcKvTransport::Core::Reap() {
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (uint64_t id : finished) {
      auto it = threads.find(id);
      if (it == threads.end()) continue;
      done.push_back(std::move(it->second));
      threads.erase(it);
    }
    finished.clear();
  }
  for (std::thread& t : done) t.join();
}

void CudaIpcKvTransport::Core::TrackFd(int fd) {
  std::lock_guard<std::mutex> lock(mu);
  open_fds.insert(fd);
  if (stopping) ::shutdown(fd, SHUT_RDWR);
}

void CudaIpcKvTransport::Core::CloseFd(int fd) {
  {
    std::lock_guard<std::mutex> lock(mu);
    open_fds.erase(fd);
  }
  ::close(fd);
}

void CudaIpcKvTransport::Core::Shutdown() {
  std::map<uint64_t, std::thread> all;
  {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
    for (int fd : open_fds) ::shutdown(fd, SHUT_RDWR);
    for (auto& [id, weak] : sends) {
      if (auto s = weak.lock()) {
        std::lock_guard<std::mutex> l(s->mu);
        s->cancelled = true;
        s->cv.notify_all();
      }
    }
  }
  if (acceptor.joinable()) {
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof(one));
    acceptor.join();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    all.swap(threads);
  }
  for (auto& [id, t] : all) t.join();
  if (listen_fd >= 0) ::close(listen_fd);
  if (wake_fd >= 0) ::close(wake_fd);
  if (!socket_path.empty()) ::unlink(socket_path.c_str());
  std::lock_guard<std::mutex> lock(mappings_mu);
  mappings.clear();
}

// ----- receiver (decode side) -----------------------------------------------------------------

void CudaIpcKvTransport::Core::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    const int n = ::poll(fds, 2, 1000);
    Reap();
    if (Stopping() || (fds[1].revents & POLLIN) != 0) return;
    if (n <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    TrackFd(fd);
    if (!Spawn([this, fd] { Serve(fd); })) CloseFd(fd);
  }
}

absl::Status CudaIpcKvTransport::Core::CheckBegin(const wire::Begin& m) const {
  if (m.expected_epoch != epoch) {
    return absl::FailedPreconditionError(
        StrCat("stale KV endpoint: worker ", worker_id, " is at epoch ", epoch,
               ", the sender expected ", m.expected_epoch, " (the worker restarted)"));
  }
  if (std::string diff = layout.Mismatch(m.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat("KV layout mismatch (destination vs source): ", diff));
  }
  if (m.num_blocks > num_blocks) {
    return absl::InvalidArgumentError(
        StrCat("lease of ", m.num_blocks, " blocks exceeds the pool of ", num_blocks));
  }
  return absl::OkStatus();
}

void CudaIpcKvTransport::Core::Serve(int fd) {
  auto log = GetLogger("transfer");
  auto frame = wire::ReadFrame(fd, absl::Now() + handshake_timeout);
  if (!frame.ok()) {
    CloseFd(fd);
    return;
  }
  auto begin = wire::DecodeBegin(*frame);
  absl::Status refusal = begin.ok() ? CheckBegin(*begin) : begin.status();
  if (refusal.ok()) refusal = handler->TransferStarting(begin->lease_id, begin->num_blocks);
  const absl::Status sent = wire::WriteFrame(
      fd, wire::Encode(wire::Ack{wire::MessageType::kBeginAck, refusal}),
      absl::Now() + handshake_timeout);
  if (!refusal.ok()) {
    log->warn("cuda ipc: refused a transfer{}: {}",
              begin.ok() ? StrCat(" lease=", begin->lease_id, " from=", begin->sender_worker_id)
                         : std::string(),
              refusal.ToString());
    CloseFd(fd);
    return;
  }
  const std::string& lease = begin->lease_id;
  absl::Status end_status = sent;
  bool got_end = false;
  if (sent.ok()) {
    const absl::Time lease_deadline =
        absl::Now() + absl::Milliseconds(std::max<int64_t>(begin->remaining_ms, 0)) + lease_grace;
    auto end_frame = wire::ReadFrame(fd, lease_deadline);
    if (!end_frame.ok()) {
      end_status = end_frame.status().code() == absl::StatusCode::kDeadlineExceeded
                       ? absl::DeadlineExceededError(
                             StrCat("kv lease ", lease, ": sender ", begin->sender_worker_id,
                                    " did not finish within its deadline plus grace"))
                       : absl::UnavailableError(StrCat(
                             "kv lease ", lease, ": ",
                             Stopping() ? "the transport is shutting down"
                                        : StrCat("sender ", begin->sender_worker_id,
                                                 " disconnected before finishing")));
    } else if (auto end = wire::DecodeEnd(*end_frame); !end.ok()) {
      end_status = end.status();
    } else {
      got_end = true;
      end_status = end->status;
    }
  }
  handler->TransferEnded(lease, end_status);
  if (got_end) {
    (void)wire::WriteFrame(fd, wire::Encode(wire::Ack{wire::MessageType::kEndAck, end_status}),
                           absl::Now() + handshake_timeout);
  }
  if (!end_status.ok()) log->warn("cuda ipc: lease={} ended: {}", lease, end_status.ToString());
  CloseFd(fd);
}

// ----- sender (prefill side) ------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<IpcMapping>> CudaIpcKvTransport::Core::OpenMapping(
    const std::string& peer, const wire::EndpointAddress& a) {
  std::lock_guard<std::mutex> lock(mappings_mu);
  auto it = mappings.find(peer);
  if (it != mappings.end() && it->second->epoch == a.epoch) return it->second;
  auto m = std::make_shared<IpcMapping>();
  m->epoch = a.epoch;
  m->socket_path = a.socket_path;
  m->device = device;
  if (a.process_nonce == wire::ProcessNonce()) {
    m->block0 = reinterpret_cast<uint8_t*>(a.owner_pointer);
  } else {
    cudaIpcMemHandle_t handle;
    static_assert(sizeof(handle) == wire::kIpcHandleBytes);
    std::memcpy(&handle, a.ipc_handle.data(), sizeof(handle));
    void* ptr = nullptr;
    absl::Status st = CudaError(cudaIpcOpenMemHandle(&ptr, handle, cudaIpcMemLazyEnablePeerAccess),
                                StrCat("cudaIpcOpenMemHandle of worker ", peer, "'s KV pool"));
    if (!st.ok()) return st;
    m->opened = ptr;
    m->block0 = static_cast<uint8_t*>(ptr) + a.alloc_offset;
  }
  // A previous epoch's mapping closes once its last transfer lets go of it.
  mappings[peer] = m;
  return m;
}

void CudaIpcKvTransport::Core::SweepMappings() {
  std::vector<std::shared_ptr<IpcMapping>> dropped;  // closed outside the lock
  {
    std::lock_guard<std::mutex> lock(mappings_mu);
    if (absl::Now() - last_sweep < absl::Seconds(10)) return;
    last_sweep = absl::Now();
    for (auto it = mappings.begin(); it != mappings.end();) {
      if (it->second.use_count() > 1) {  // in use by a transfer: not now (never map twice)
        ++it;
        continue;
      }
      auto fd = wire::ConnectUnix(it->second->socket_path);
      if (fd.ok()) {
        ::close(*fd);
        ++it;
        continue;
      }
      GetLogger("transfer")->info("cuda ipc: closing the mapping of worker {} (gone)", it->first);
      dropped.push_back(std::move(it->second));
      it = mappings.erase(it);
    }
  }
}

absl::Status CudaIpcKvTransport::Core::CopyLoop(SendState& state, const KvDestination& destination,
                                                const IpcMapping& mapping, cudaStream_t stream,
                                                absl::Time deadline, int64_t* blocks_written) {
  while (true) {
    std::vector<BlockCopy> batch;
    std::vector<cudaEvent_t> fences;
    bool finishing = false;
    {
      std::unique_lock<std::mutex> lock(state.mu);
      const auto ready = [&state] {
        return !state.queued.empty() || state.finish_requested || state.abandoned ||
               state.cancelled || !state.invalid.ok();
      };
      // Waits in bounded slices: absl::InfiniteFuture() must not overflow the chrono clock.
      while (!ready()) {
        const absl::Time now = absl::Now();
        if (now >= deadline) return absl::DeadlineExceededError("the deadline passed before Finish");
        state.cv.wait_for(lock, absl::ToChronoMilliseconds(
                                    std::min(deadline - now, absl::Seconds(1)) + absl::Milliseconds(1)));
      }
      if (!state.invalid.ok()) return state.invalid;
      if (state.cancelled) return absl::CancelledError("the transport is shutting down");
      if (state.abandoned && !state.finish_requested) {
        return absl::CancelledError("the transfer was dropped without Finish");
      }
      batch.swap(state.queued);
      fences.swap(state.fences);
      finishing = state.finish_requested;
    }
    absl::Status waited;
    for (cudaEvent_t e : fences) {
      if (waited.ok()) waited = CudaError(cudaStreamWaitEvent(stream, e, 0), "cudaStreamWaitEvent");
      cudaEventDestroy(e);  // released once it completes
    }
    if (!waited.ok()) return waited;
    if (absl::Now() > deadline) return absl::DeadlineExceededError("the deadline passed");
    for (const wire::BlockRun& run : wire::CoalesceCopies(batch, destination.blocks)) {
      const size_t bytes = static_cast<size_t>(run.count) * static_cast<size_t>(bytes_per_block);
      uint8_t* dst = mapping.block0 + static_cast<int64_t>(run.dst_block) * bytes_per_block;
      const uint8_t* src = block0 + static_cast<int64_t>(run.src_block) * bytes_per_block;
      absl::Status st = CudaError(
          cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
      if (!st.ok()) return st;
      *blocks_written += run.count;
    }
    if (finishing) return absl::OkStatus();
  }
}

void CudaIpcKvTransport::Core::RunTransfer(std::shared_ptr<SendState> state,
                                           KvDestination destination,
                                           wire::EndpointAddress address, absl::Time deadline) {
  const std::string context = StrCat("kv transfer lease=", destination.lease_id,
                                     " to worker=", destination.endpoint.worker_id);
  const absl::Time ack_deadline = std::min(deadline, absl::Now() + handshake_timeout);
  absl::Status status = CudaError(cudaSetDevice(device), "cudaSetDevice");
  int fd = -1;
  bool pinned = false;
  if (status.ok()) {
    auto connected = wire::ConnectUnix(address.socket_path);
    status = connected.status();
    if (connected.ok()) {
      fd = *connected;
      TrackFd(fd);
    }
  }
  if (status.ok()) {
    wire::Begin begin;
    begin.expected_epoch = address.epoch;
    begin.layout = layout;
    begin.sender_worker_id = worker_id;
    begin.lease_id = destination.lease_id;
    begin.num_blocks = static_cast<int32_t>(destination.blocks.size());
    begin.remaining_ms = deadline == absl::InfiniteFuture()
                             ? int64_t{1} << 50  // "none": about 35,000 years
                             : absl::ToInt64Milliseconds(deadline - absl::Now());
    status = wire::WriteFrame(fd, wire::Encode(begin), ack_deadline);
    absl::StatusOr<std::string> reply =
        status.ok() ? wire::ReadFrame(fd, ack_deadline) : absl::StatusOr<std::string>(status);
    absl::StatusOr<wire::Ack> ack = reply.ok() ? wire::DecodeAck(*reply) : reply.status();
    status = ack.ok() ? ack->status : ack.status();
    if (ack.ok() && ack->type != wire::MessageType::kBeginAck) {
      status = absl::InternalError("cuda ipc: unexpected acknowledgement");
    }
    pinned = status.ok();
  }
  std::shared_ptr<IpcMapping> mapping;
  if (status.ok()) {
    auto m = OpenMapping(destination.endpoint.worker_id, address);
    status = m.status();
    if (m.ok()) mapping = *m;
  }
  cudaStream_t stream = nullptr;
  if (status.ok()) {
    status = CudaError(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                       "cudaStreamCreate");
  }
  int64_t written = 0;
  if (status.ok()) status = CopyLoop(*state, destination, *mapping, stream, deadline, &written);
  if (stream != nullptr) {
    // Always before telling the destination anything: no copy may still run after kEnd.
    absl::Status synced = CudaError(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    if (status.ok()) status = synced;
    cudaStreamDestroy(stream);
  }
  if (status.ok() && absl::Now() > deadline) status = absl::DeadlineExceededError("the deadline passed");
  if (pinned) {
    const absl::Status sent = wire::WriteFrame(
        fd, wire::Encode(wire::End{status, written}), absl::Now() + absl::Seconds(1));
    if (status.ok()) {
      absl::StatusOr<std::string> reply =
          sent.ok() ? wire::ReadFrame(fd, absl::Now() + handshake_timeout)
                    : absl::StatusOr<std::string>(sent);
      absl::StatusOr<wire::Ack> ack = reply.ok() ? wire::DecodeAck(*reply) : reply.status();
      status = ack.ok() ? ack->status : ack.status();
      if (ack.ok() && ack->type != wire::MessageType::kEndAck) {
        status = absl::InternalError("cuda ipc: unexpected acknowledgement");
      }
    }
  }
  if (fd >= 0) CloseFd(fd);
  if (!status.ok()) {
    status = absl::Status(status.code(), StrCat(context, ": ", ToStd(status.message())));
  }
  std::function<void(absl::Status)> done;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->finish_requested) {
      done = std::move(state->done);
    } else {
      state->exited = true;
      state->outcome = status;
    }
  }
  if (done) done(status);
}

namespace {

// The caller's handle: queues work for the transfer's thread.
class CudaIpcTransferHandle final : public KvTransfer {
 public:
  CudaIpcTransferHandle(std::shared_ptr<SendState> state, size_t destination_blocks,
                        int64_t local_blocks, int device)
      : state_(std::move(state)),
        destination_blocks_(destination_blocks),
        local_blocks_(local_blocks),
        device_(device) {}

  ~CudaIpcTransferHandle() override {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->abandoned = true;
    state_->cv.notify_all();
  }

  void Send(std::span<const BlockCopy> copies) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->finish_requested || state_->exited) return;
    for (const BlockCopy& c : copies) {
      if (c.index < 0 || static_cast<size_t>(c.index) >= destination_blocks_ || c.src_block < 0 ||
          c.src_block >= local_blocks_) {
        if (state_->invalid.ok()) {
          state_->invalid = absl::InvalidArgumentError(
              StrCat("bad block copy src_block=", c.src_block, " index=", c.index, " (",
                     local_blocks_, " local blocks, ", destination_blocks_, " destination blocks)"));
        }
        state_->cv.notify_all();
        return;
      }
    }
    if (copies.empty()) return;
    auto fence = RecordFence(device_);
    if (!fence.ok()) {
      if (state_->invalid.ok()) state_->invalid = fence.status();
      state_->cv.notify_all();
      return;
    }
    state_->fences.push_back(*fence);
    state_->queued.insert(state_->queued.end(), copies.begin(), copies.end());
    state_->cv.notify_all();
  }

  void Finish(std::function<void(absl::Status)> done) override {
    absl::Status outcome;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->finish_requested) {
        outcome = absl::FailedPreconditionError("kv transfer: Finish called twice");
      } else {
        state_->finish_requested = true;
        if (!state_->exited) {
          state_->done = std::move(done);
          state_->cv.notify_all();
          return;
        }
        outcome = state_->outcome;
      }
    }
    done(outcome);
  }

 private:
  std::shared_ptr<SendState> state_;
  const size_t destination_blocks_;
  const int64_t local_blocks_;
  const int device_;
};

// Finds the cudaMalloc allocation that holds `block0` (the IPC handle names the allocation). The
// driver function is looked up through the runtime so that nothing links libcuda directly: the
// binaries then load (and GPU tests skip) on machines without a driver.
absl::Status ExportPool(uint8_t* block0, int64_t pool_bytes, wire::EndpointAddress* a) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  TANDEM_RETURN_IF_ERROR(CudaError(
      cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &fn, 12000, cudaEnableDefault, &found),
      "looking up cuMemGetAddressRange"));
  if (fn == nullptr || found != cudaDriverEntryPointSuccess) {
    return absl::InternalError("cuda ipc: the driver has no cuMemGetAddressRange");
  }
  CUdeviceptr base = 0;
  size_t size = 0;
  if (CUresult r = reinterpret_cast<PFN_cuMemGetAddressRange_v3020>(fn)(
          &base, &size, reinterpret_cast<CUdeviceptr>(block0));
      r != CUDA_SUCCESS) {
    return absl::InternalError(
        StrCat("cuda ipc: cuMemGetAddressRange of the KV pool failed (CUresult ", static_cast<int>(r), ")"));
  }
  const uint64_t offset = reinterpret_cast<uint64_t>(block0) - static_cast<uint64_t>(base);
  if (offset + static_cast<uint64_t>(pool_bytes) > size) {
    return absl::InvalidArgumentError("cuda ipc: the KV pool spans more than one allocation");
  }
  cudaIpcMemHandle_t handle;
  TANDEM_RETURN_IF_ERROR(CudaError(cudaIpcGetMemHandle(&handle, reinterpret_cast<void*>(base)),
                                   "cudaIpcGetMemHandle of the KV pool (it must come from cudaMalloc)"));
  a->ipc_handle.assign(reinterpret_cast<const char*>(&handle), sizeof(handle));
  a->alloc_offset = offset;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaIpcKvTransport>> CudaIpcKvTransport::Create(
    const CudaIpcKvTransportOptions& options) {
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->device_base() == nullptr || cache->device() < 0 ||
      cache->num_blocks() <= 0) {
    return absl::InvalidArgumentError("CudaIpcKvTransport: a non-empty device-memory KV cache is required");
  }
  if (cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block() ||
      cache->block_format() != options.layout.block_format) {
    return absl::InvalidArgumentError(StrCat("CudaIpcKvTransport: the layout (",
                                             options.layout.Describe(), ") does not describe the cache"));
  }
  auto core = std::make_unique<Core>();
  core->layout = options.layout;
  core->worker_id = options.worker_id;
  core->epoch = options.epoch != 0 ? options.epoch : RandomEpoch();
  core->device = cache->device();
  core->block0 = cache->device_base();
  core->num_blocks = cache->num_blocks();
  core->bytes_per_block = cache->layout().bytes_per_block();
  core->handler = options.lease_handler;
  core->lease_grace = options.lease_grace;
  core->handshake_timeout = options.handshake_timeout;
  TANDEM_RETURN_IF_ERROR(CudaError(cudaSetDevice(core->device), "cudaSetDevice"));
  TANDEM_RETURN_IF_ERROR(CudaError(cudaFree(nullptr), "CUDA context creation"));

  wire::EndpointAddress address;
  address.epoch = core->epoch;
  address.process_nonce = wire::ProcessNonce();
  address.boot_id = wire::BootId();
  address.owner_pointer = reinterpret_cast<uint64_t>(core->block0);
  address.device = core->device;
  address.num_blocks = core->num_blocks;
  address.bytes_per_block = core->bytes_per_block;
  address.ipc_handle.assign(wire::kIpcHandleBytes, '\0');
  address.socket_path = "none";
  if (core->handler != nullptr) {
    TANDEM_RETURN_IF_ERROR(ExportPool(core->block0, core->num_blocks * core->bytes_per_block, &address));
    std::string dir = options.socket_dir.empty() ? "/tmp" : options.socket_dir;
    if (dir.back() == '/') dir.pop_back();
    core->socket_path = StrCat(dir, "/", SocketName(options.worker_id, core->epoch));
    auto fd = wire::ListenUnix(core->socket_path);
    if (!fd.ok()) return fd.status();
    core->listen_fd = *fd;
    core->wake_fd = ::eventfd(0, EFD_CLOEXEC);
    if (core->wake_fd < 0) {
      ::close(core->listen_fd);
      ::unlink(core->socket_path.c_str());
      return absl::InternalError("cuda ipc: eventfd failed");
    }
    address.socket_path = core->socket_path;
    Core* raw = core.get();
    core->acceptor = std::thread([raw] { raw->AcceptLoop(); });
  }
  auto transport = std::unique_ptr<CudaIpcKvTransport>(new CudaIpcKvTransport(std::move(core)));
  transport->endpoint_.worker_id = options.worker_id;
  transport->endpoint_.epoch = address.epoch;
  transport->endpoint_.layout = options.layout;
  transport->endpoint_.address = wire::EncodeEndpointAddress(address);
  GetLogger("transfer")->info(
      "cuda ipc kv transport worker={} epoch={} device={} blocks={} bytes_per_block={} socket={}",
      options.worker_id, address.epoch, address.device, address.num_blocks,
      address.bytes_per_block, address.socket_path);
  return transport;
}

CudaIpcKvTransport::CudaIpcKvTransport(std::unique_ptr<Core> core) : core_(std::move(core)) {}

CudaIpcKvTransport::~CudaIpcKvTransport() { core_->Shutdown(); }

absl::StatusOr<std::unique_ptr<KvTransfer>> CudaIpcKvTransport::StartTransfer(
    const KvDestination& destination, absl::Time deadline) {
  const std::string context = StrCat("kv transfer lease=", destination.lease_id,
                                     " to worker=", destination.endpoint.worker_id);
  if (std::string diff = core_->layout.Mismatch(destination.endpoint.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat(context, ": KV layout mismatch (source vs destination): ", diff));
  }
  auto address = wire::DecodeEndpointAddress(destination.endpoint.address);
  if (!address.ok()) {
    return absl::InvalidArgumentError(StrCat(context, ": ", ToStd(address.status().message())));
  }
  if (address->epoch != destination.endpoint.epoch) {
    // The handshake checks the address's epoch (the one the IPC handle belongs to).
    return absl::FailedPreconditionError(
        StrCat(context, ": inconsistent endpoint (epoch ", destination.endpoint.epoch,
               ", its address's epoch ", address->epoch, ")"));
  }
  if (address->socket_path == "none") {
    return absl::FailedPreconditionError(StrCat(context, ": the destination accepts no transfers"));
  }
  if (address->boot_id != wire::BootId()) {
    return absl::FailedPreconditionError(
        StrCat(context, ": the destination is on another node (CUDA IPC works within one node)"));
  }
  if (address->bytes_per_block != core_->bytes_per_block) {
    return absl::FailedPreconditionError(StrCat(context, ": the destination's blocks hold ",
                                                address->bytes_per_block, " bytes, ours ",
                                                core_->bytes_per_block));
  }
  for (int32_t b : destination.blocks) {
    if (b < 0 || b >= address->num_blocks) {
      return absl::InvalidArgumentError(StrCat(context, ": destination block ", b,
                                               " outside its cache of ", address->num_blocks,
                                               " blocks"));
    }
  }
  core_->Reap();
  core_->SweepMappings();
  auto state = std::make_shared<SendState>();
  Core* core = core_.get();
  {
    std::lock_guard<std::mutex> lock(core->mu);
    // Forget finished transfers' entries (their states are gone).
    for (auto it = core->sends.begin(); it != core->sends.end();) {
      it = it->second.expired() ? core->sends.erase(it) : std::next(it);
    }
    core->sends.emplace(reinterpret_cast<uint64_t>(state.get()), state);
  }
  if (!core->Spawn([core, state, destination, address = std::move(*address), deadline]() mutable {
        core->RunTransfer(std::move(state), std::move(destination), std::move(address), deadline);
      })) {
    return absl::UnavailableError(StrCat(context, ": the transport is shutting down"));
  }
  return std::unique_ptr<KvTransfer>(
      new CudaIpcTransferHandle(state, destination.blocks.size(), core_->num_blocks, core_->device));
}

}  // namespace tandem::transfer
