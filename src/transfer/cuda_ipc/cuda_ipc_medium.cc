#include "transfer/cuda_ipc/cuda_ipc_medium.h"

#include <unistd.h>

#include <utility>

#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::transfer {
namespace {

constexpr std::string_view kNoSocket = "none";  // the socket path of a prefill-only worker
constexpr absl::Duration kSweepEvery = absl::Seconds(10);

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

}  // namespace

CudaIpcMedium::CudaIpcMedium(const CudaIpcMediumOptions& options, std::unique_ptr<PoolAccess> pool)
    : options_(options), pool_(std::move(pool)) {
  SocketChannel::Handlers handlers;
  handlers.on_frame = [this](ConnectionId conn, std::string frame) {
    events()->OnMessage(conn, frame);
  };
  handlers.on_lost = [this](ConnectionId conn, absl::Status s) { ReportLost(conn, s); };
  channel_ = std::make_unique<SocketChannel>(&loop(), std::move(handlers), options.handshake_timeout);
}

absl::Status CudaIpcMedium::Start(MediumEvents* events) {
  cuda_ipc::EndpointAddress a;
  a.epoch = options_.epoch;
  a.process_nonce = cuda_ipc::ProcessNonce();
  a.boot_id = cuda_ipc::BootId();
  a.owner_pointer = reinterpret_cast<uint64_t>(options_.block0);
  a.device = options_.device;
  a.num_blocks = options_.num_blocks;
  a.bytes_per_block = options_.bytes_per_block;
  a.ipc_handle.assign(cuda_ipc::kIpcHandleBytes, '\0');
  a.socket_path = kNoSocket;
  if (options_.accept_inbound) {
    TANDEM_RETURN_IF_ERROR(pool_->Export(&a));
    std::string dir = options_.socket_dir.empty() ? "/tmp" : options_.socket_dir;
    if (dir.back() == '/') dir.pop_back();
    a.socket_path = StrCat(dir, "/", SocketName(options_.worker_id, options_.epoch));
    TANDEM_RETURN_IF_ERROR(channel_->Listen(a.socket_path));
  }
  address_ = cuda_ipc::EncodeEndpointAddress(a);
  // Started last: a failure above leaves no thread that could reach `events`.
  StartLoop(events);
  GetLogger("transfer")->info("cuda ipc medium worker={} device={} socket={}", options_.worker_id,
                              options_.device, a.socket_path);
  return absl::OkStatus();
}

void CudaIpcMedium::Stop() {
  StopLoop(nullptr);
  channel_->Shutdown();
  (void)pool_->Sync();  // no copy into a peer's pool runs once we are gone
  outbound_.clear();
  mappings_.clear();
}

absl::StatusOr<PeerInfo> CudaIpcMedium::Resolve(const KvEndpoint& endpoint) {
  TANDEM_ASSIGN_OR_RETURN(cuda_ipc::EndpointAddress a,
                          cuda_ipc::DecodeEndpointAddress(endpoint.address));
  if (a.epoch != endpoint.epoch) {
    // The handshake checks the address's epoch (the one the IPC handle belongs to).
    return absl::FailedPreconditionError(StrCat("stale epoch ", endpoint.epoch,
                                                ": the endpoint's address belongs to epoch ",
                                                a.epoch));
  }
  if (a.socket_path == kNoSocket) {
    return absl::FailedPreconditionError("the destination accepts no transfers");
  }
  if (a.boot_id != cuda_ipc::BootId()) {
    return absl::FailedPreconditionError(
        "the destination is on another node (CUDA IPC works within one node)");
  }
  PeerInfo peer;
  peer.key = a.socket_path;
  peer.num_blocks = a.num_blocks;
  peer.bytes_per_block = a.bytes_per_block;
  return peer;
}

absl::StatusOr<ConnectionId> CudaIpcMedium::Connect(const KvEndpoint& endpoint, const PeerInfo&) {
  TANDEM_ASSIGN_OR_RETURN(cuda_ipc::EndpointAddress a,
                          cuda_ipc::DecodeEndpointAddress(endpoint.address));
  SweepMappings();
  TANDEM_ASSIGN_OR_RETURN(ConnectionId conn, channel_->Connect(a.socket_path));
  outbound_[conn] = Outbound{std::move(a), endpoint.worker_id, nullptr};
  return conn;
}

void CudaIpcMedium::SendControl(ConnectionId conn, std::string message, Completion on_sent) {
  const absl::Status sent = channel_->Send(conn, message);
  if (!sent.ok()) ReportLost(conn, sent);
  if (on_sent) loop().Defer([on_sent = std::move(on_sent), sent] { on_sent(sent); });
}

void CudaIpcMedium::ReportLost(ConnectionId conn, const absl::Status& status) {
  if (!channel_->IsOpen(conn)) return;
  channel_->Close(conn);
  outbound_.erase(conn);
  loop().Defer([this, conn, status] { events()->OnConnectionLost(conn, status); });
}

absl::StatusOr<std::shared_ptr<CudaIpcMedium::Mapping>> CudaIpcMedium::OpenMapping(
    const Outbound& peer) {
  auto it = mappings_.find(peer.worker_id);
  if (it != mappings_.end() && it->second->epoch == peer.address.epoch) return it->second;
  auto m = std::make_shared<Mapping>();
  m->epoch = peer.address.epoch;
  m->socket_path = peer.address.socket_path;
  if (peer.address.process_nonce == cuda_ipc::ProcessNonce()) {
    m->block0 = std::shared_ptr<uint8_t>(reinterpret_cast<uint8_t*>(peer.address.owner_pointer),
                                         [](uint8_t*) {});
  } else {
    absl::StatusOr<std::shared_ptr<uint8_t>> opened = pool_->Open(peer.address);
    if (!opened.ok()) {
      return absl::Status(opened.status().code(), StrCat("opening worker ", peer.worker_id,
                                                         "'s KV pool: ", ToStd(opened.status().message())));
    }
    m->block0 = std::move(*opened);
  }
  // A previous epoch's mapping closes once its last transfer lets go of it.
  mappings_[peer.worker_id] = m;
  return m;
}

void CudaIpcMedium::SweepMappings() {
  if (absl::Now() - last_sweep_ < kSweepEvery) return;
  last_sweep_ = absl::Now();
  for (auto it = mappings_.begin(); it != mappings_.end();) {
    if (it->second.use_count() > 1) {  // in use by a connection: not now (never map twice)
      ++it;
      continue;
    }
    absl::StatusOr<int> fd = cuda_ipc::ConnectUnix(it->second->socket_path);
    if (fd.ok()) {
      ::close(*fd);
      ++it;
      continue;
    }
    GetLogger("transfer")->info("cuda ipc: closing the mapping of worker {} (gone)", it->first);
    it = mappings_.erase(it);
  }
}

void CudaIpcMedium::WriteBlocks(ConnectionId conn, uint64_t, std::vector<BlockWrite> writes,
                                WriteFence fence, Completion on_done) {
  absl::Status status;
  auto it = outbound_.find(conn);
  if (it == outbound_.end()) {
    status = absl::UnavailableError("cuda ipc: the connection is closed");
  } else if (it->second.mapping == nullptr) {
    absl::StatusOr<std::shared_ptr<Mapping>> m = OpenMapping(it->second);
    status = m.status();
    if (m.ok()) it->second.mapping = std::move(*m);
  }
  if (status.ok()) {
    const std::vector<cuda_ipc::BlockRun> runs = cuda_ipc::CoalesceWrites(writes);
    status = pool_->Copy(it->second.mapping->block0.get(), runs, fence);
  }
  loop().Defer([on_done = std::move(on_done), status] { on_done(status); });
}

void CudaIpcMedium::Flush(ConnectionId, Completion on_done) {
  const absl::Status synced = pool_->Sync();  // a few milliseconds at most: copies are on-device
  loop().Defer([on_done = std::move(on_done), synced] { on_done(synced); });
}

}  // namespace tandem::transfer
