#include "transfer/ucx/ucx_medium.h"

#include <cstring>
#include <utility>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "transfer/ucx/ucx_wire.h"

namespace tandem::transfer {
namespace {

// Completes a WriteBlocks call once all its writes have (with the first error, if any).
struct WriteGroup {
  size_t left = 0;
  absl::Status status;
  Completion on_done;
  void Done(const absl::Status& s) {
    if (!s.ok() && status.ok()) status = s;
    if (--left == 0) on_done(status);
  }
};

}  // namespace

UcxMedium::UcxMedium(const UcxMediumOptions& options)
    : options_(options),
      base_(options.cache->host_base()),
      num_blocks_(options.cache->num_blocks()),
      bytes_per_block_(options.cache->layout().bytes_per_block()) {}

wire::DataPath UcxMedium::data_path() const {
  return options_.data_path == UcxDataPath::kRmaPut ? wire::DataPath::kOneSided
                                                     : wire::DataPath::kReceiverPlaced;
}

absl::Status UcxMedium::RegisterCache(UcxWorkerLoop& loop) {
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = base_;
  mp.length = static_cast<size_t>(num_blocks_ * bytes_per_block_);
  ucs_status_t st = ucp_mem_map(loop.context(), &mp, &memh_);
  if (st != UCS_OK) return UcsError(st, "ucp_mem_map of the KV cache");
  void* rkey = nullptr;
  size_t rkey_size = 0;
  st = ucp_rkey_pack(loop.context(), memh_, &rkey, &rkey_size);
  if (st != UCS_OK) {
    ucp_mem_unmap(loop.context(), memh_);
    memh_ = nullptr;
    return UcsError(st, "ucp_rkey_pack of the KV cache");
  }
  packed_rkey_.assign(static_cast<const char*>(rkey), rkey_size);
  ucp_rkey_buffer_release(rkey);
  return absl::OkStatus();
}

absl::Status UcxMedium::Start(MediumEvents* events) {
  events_ = events;
  UcxWorkerLoopOptions lo;
  lo.transports = options_.transports;
  lo.keepalive_interval = options_.keepalive_interval;
  lo.name = StrCat("tandem-kv-", options_.worker_id);
  lo.am_id = ucx::kControlAmId;
  lo.data_am_id = ucx::kDataAmId;
  auto loop = UcxWorkerLoop::Start(lo, [this](UcxWorkerLoop& loop) {
    loop_ = &loop;
    TANDEM_RETURN_IF_ERROR(RegisterCache(loop));
    loop.SetMessageHandler([this](std::string_view frame) { OnControl(frame); });
    loop.SetDataHandler([this](std::string_view header, void* data, size_t length, bool rndv) {
      return OnData(header, data, length, rndv);
    });
    loop.SetTicker([this](absl::Time now) { return events_->OnTick(now); });
    return absl::OkStatus();
  });
  if (!loop.ok()) return loop.status();
  owned_loop_ = std::move(*loop);
  ucx::EndpointAddress a;
  a.epoch = options_.epoch;
  a.remote_base = reinterpret_cast<uint64_t>(base_);
  a.num_blocks = num_blocks_;
  a.bytes_per_block = bytes_per_block_;
  a.rkey = packed_rkey_;                      // written on the loop thread before Start returned
  a.worker_address = loop_->worker_address();  // likewise
  address_ = ucx::EncodeEndpointAddress(a);
  return absl::OkStatus();
}

void UcxMedium::Stop() {
  owned_loop_->Stop([this] { events_->OnShutdown(); },
                    [this] {
                      if (memh_ != nullptr) ucp_mem_unmap(loop_->context(), memh_);
                      memh_ = nullptr;
                    });
}

absl::StatusOr<PeerInfo> UcxMedium::Resolve(const KvEndpoint& endpoint) {
  TANDEM_ASSIGN_OR_RETURN(ucx::EndpointAddress a, ucx::DecodeEndpointAddress(endpoint.address));
  PeerInfo peer;
  peer.key = a.worker_address;
  peer.num_blocks = a.num_blocks;
  peer.bytes_per_block = a.bytes_per_block;
  return peer;
}

UcxMedium::Conn* UcxMedium::Find(ConnectionId conn) {
  auto it = conns_.find(conn);
  return it == conns_.end() ? nullptr : &it->second;
}

void UcxMedium::Lost(ConnectionId conn, const absl::Status& status) {
  Conn* c = Find(conn);
  if (c == nullptr || c->lost) return;
  c->lost = true;
  events_->OnConnectionLost(conn, absl::UnavailableError(status.message()));
}

absl::StatusOr<ConnectionId> UcxMedium::Connect(const KvEndpoint& endpoint, const PeerInfo&) {
  TANDEM_ASSIGN_OR_RETURN(ucx::EndpointAddress a, ucx::DecodeEndpointAddress(endpoint.address));
  const ConnectionId id = next_conn_++;
  TANDEM_ASSIGN_OR_RETURN(ucp_ep_h ep, loop_->Connect(a.worker_address, [this, id](absl::Status s) {
    Lost(id, s);
  }));
  Conn c;
  c.ep = ep;
  c.outbound = true;
  c.remote_base = a.remote_base;
  const ucs_status_t st = ucp_ep_rkey_unpack(ep, a.rkey.data(), &c.rkey);
  if (st != UCS_OK) {
    loop_->Disconnect(ep);
    return UcsError(st, "ucp_ep_rkey_unpack of the destination's remote key");
  }
  conns_[id] = c;
  return id;
}

void UcxMedium::SendControl(ConnectionId conn, std::string message, Completion on_sent) {
  Conn* c = Find(conn);
  if (c == nullptr) {
    if (on_sent) {
      loop_->Defer([on_sent = std::move(on_sent)] {
        on_sent(absl::UnavailableError("kv transfer: the connection is closed"));
      });
    }
    return;
  }
  ucx::Route route;
  route.to_acceptor = c->outbound;
  if (c->outbound) {
    route.origin = options_.epoch;
    route.conn = conn;
    if (!c->heard) route.reply_address = loop_->worker_address();
  } else {
    route.conn = c->origin.second;
  }
  loop_->SendMessage(c->ep, ucx::EncodeRouted(route, message), std::move(on_sent));
}

void UcxMedium::OnControl(std::string_view frame) {
  absl::StatusOr<ucx::Routed> routed = ucx::DecodeRouted(frame);
  if (!routed.ok()) {
    GetLogger("transfer")->warn("dropped a UCX control message of {} bytes: {}", frame.size(),
                                routed.status().ToString());
    return;
  }
  const ucx::Route& route = routed->route;
  ConnectionId conn = route.conn;
  if (route.to_acceptor) {
    conn = Accept({route.origin, route.conn}, route.reply_address);
  } else if (Conn* c = Find(conn); c != nullptr && c->outbound) {
    c->heard = true;
  } else {
    conn = 0;
  }
  Conn* c = Find(conn);
  if (c == nullptr || c->lost) return;
  events_->OnMessage(conn, routed->message);
}

ConnectionId UcxMedium::Accept(const std::pair<uint64_t, uint64_t>& origin,
                               const std::string& reply_address) {
  if (auto it = inbound_.find(origin); it != inbound_.end()) return it->second;
  if (reply_address.empty()) {
    GetLogger("transfer")->warn("a UCX control message on an unknown connection");
    return 0;
  }
  const ConnectionId id = next_conn_++;
  auto ep = loop_->Connect(reply_address, [this, id](absl::Status s) { Lost(id, s); });
  if (!ep.ok()) {
    GetLogger("transfer")->warn("cannot answer a KV connection: {}", ep.status().ToString());
    return 0;
  }
  Conn c;
  c.ep = *ep;
  c.origin = origin;
  conns_[id] = c;
  inbound_[origin] = id;
  return id;
}

void UcxMedium::Close(ConnectionId conn) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  const Conn c = it->second;
  conns_.erase(it);
  if (!c.outbound) {
    inbound_.erase(c.origin);
    return loop_->Disconnect(c.ep);  // flushes what was sent first
  }
  if (loop_->EpFailed(c.ep)) {
    // UCX already completed the endpoint's outstanding operations with errors.
    if (c.rkey != nullptr) ucp_rkey_destroy(c.rkey);
    return loop_->Disconnect(c.ep);
  }
  // A remote key must outlive the operations that use it and die before its endpoint.
  loop_->Flush(c.ep, [this, c](absl::Status) {
    if (c.rkey != nullptr) ucp_rkey_destroy(c.rkey);
    loop_->Disconnect(c.ep);
  });
}

void UcxMedium::WriteBlocks(ConnectionId conn, uint64_t transfer_id, std::vector<BlockWrite> writes,
                            WriteFence, Completion on_done) {
  Conn* c = Find(conn);
  if (c == nullptr || !c->outbound || writes.empty()) {
    const absl::Status s = c == nullptr ? absl::UnavailableError("kv transfer: the connection is closed")
                                        : absl::OkStatus();
    loop_->Defer([on_done = std::move(on_done), s] { on_done(s); });
    return;
  }
  auto group = std::make_shared<WriteGroup>();
  group->left = writes.size();
  group->on_done = std::move(on_done);
  const size_t bytes = static_cast<size_t>(bytes_per_block_);
  for (const BlockWrite& w : writes) {
    const uint8_t* src = base_ + static_cast<int64_t>(w.src_block) * bytes_per_block_;
    auto done = [group](absl::Status s) { group->Done(s); };
    if (options_.data_path == UcxDataPath::kRmaPut) {
      const uint64_t remote =
          c->remote_base + static_cast<uint64_t>(static_cast<int64_t>(w.dst_block) * bytes_per_block_);
      loop_->Put(c->ep, src, bytes, remote, c->rkey, memh_, std::move(done));
      continue;
    }
    ucx::DataHeader header{options_.epoch, conn, wire::BlockHeader{transfer_id, w.index}};
    loop_->SendData(c->ep, ucx::EncodeDataHeader(header), src, bytes, memh_, std::move(done));
  }
}

void UcxMedium::Flush(ConnectionId conn, Completion on_done) {
  Conn* c = Find(conn);
  if (c == nullptr) {
    loop_->Defer([on_done = std::move(on_done)] {
      on_done(absl::UnavailableError("kv transfer: the connection is closed"));
    });
    return;
  }
  loop_->Flush(c->ep, std::move(on_done));
}

ucs_status_t UcxMedium::OnData(std::string_view header, void* data, size_t length, bool rndv) {
  // A rendezvous block we do not take fails the sender's write with the returned status.
  const ucs_status_t reject = rndv ? UCS_ERR_REJECTED : UCS_OK;
  absl::StatusOr<ucx::DataHeader> h = ucx::DecodeDataHeader(header);
  if (!h.ok()) return reject;
  auto it = inbound_.find({h->origin, h->conn});
  if (it == inbound_.end()) return reject;
  const ConnectionId conn = it->second;
  Conn* c = Find(conn);
  if (c == nullptr || c->lost) return reject;
  absl::StatusOr<int32_t> dst = events_->OnBlockOffered(conn, h->block, length);
  if (!dst.ok()) return reject;
  uint8_t* to = base_ + static_cast<int64_t>(*dst) * bytes_per_block_;
  const uint64_t transfer_id = h->block.transfer_id;
  if (!rndv) {
    std::memcpy(to, data, length);
    loop_->Defer([this, conn, transfer_id] {
      events_->OnBlockPlaced(conn, transfer_id, absl::OkStatus());
    });
    return UCS_OK;
  }
  loop_->ReceiveData(data, to, length, memh_, [this, conn, transfer_id](absl::Status s) {
    events_->OnBlockPlaced(conn, transfer_id, s);
  });
  return UCS_INPROGRESS;
}

}  // namespace tandem::transfer
