#include "transfer/ucx_kv_transport.h"

#include <atomic>
#include <random>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "transfer/ucx_local_cache.h"
#include "transfer/ucx_receiver.h"
#include "transfer/ucx_sender.h"
#include "transfer/ucx_wire.h"
#include "transfer/ucx_worker_loop.h"

namespace tandem::transfer {

struct UcxKvTransport::Core {
  UcxLocalCache local;
  std::string packed_rkey;
  // Created on the loop thread, used only there (until the loop stops).
  std::unique_ptr<UcxSender> sender;
  std::unique_ptr<UcxReceiver> receiver;
  std::unique_ptr<UcxWorkerLoop> loop;  // declared last: stopped before the rest is destroyed
  std::atomic<uint64_t> next_transfer_id{1};

  ~Core() {
    if (loop != nullptr) loop->Stop(nullptr);
  }

  void Dispatch(std::string_view payload);
};

void UcxKvTransport::Core::Dispatch(std::string_view payload) {
  auto type = wire::PeekType(payload);
  absl::Status status = type.status();
  if (type.ok()) {
    switch (*type) {
      case wire::MessageType::kHello: {
        auto m = wire::DecodeHello(payload);
        if ((status = m.status()).ok()) receiver->OnHello(*m);
        break;
      }
      case wire::MessageType::kBegin: {
        auto m = wire::DecodeBegin(payload);
        if ((status = m.status()).ok()) receiver->OnBegin(*m);
        break;
      }
      case wire::MessageType::kEnd: {
        auto m = wire::DecodeEnd(payload);
        if ((status = m.status()).ok()) receiver->OnEnd(*m);
        break;
      }
      case wire::MessageType::kBye: {
        auto m = wire::DecodeBye(payload);
        if ((status = m.status()).ok()) receiver->OnBye(*m);
        break;
      }
      case wire::MessageType::kHelloAck:
      case wire::MessageType::kBeginAck:
      case wire::MessageType::kEndAck: {
        auto m = wire::DecodeAck(payload);
        if ((status = m.status()).ok()) sender->OnAck(*m);
        break;
      }
    }
  }
  if (!status.ok()) {
    GetLogger("transfer")->warn("dropped a kv transfer message of {} bytes: {}", payload.size(),
                                status.ToString());
  }
}

namespace {

using Core = UcxKvTransport::Core;

// The caller's handle; every call becomes a task on the transport's loop.
class UcxTransferHandle final : public KvTransfer {
 public:
  UcxTransferHandle(std::shared_ptr<Core> core, uint64_t id, std::string lease_id,
                    size_t destination_blocks)
      : core_(std::move(core)),
        id_(id),
        lease_id_(std::move(lease_id)),
        destination_blocks_(destination_blocks) {}

  ~UcxTransferHandle() override {
    Core* core = core_.get();
    const uint64_t id = id_;
    core_->loop->Post([core, id] { core->sender->Abandon(id); });
  }

  void Send(std::span<const BlockCopy> copies) override {
    if (finish_called_.load()) {
      GetLogger("transfer")->error("kv transfer lease={}: Send after Finish ignored", lease_id_);
      return;
    }
    std::vector<BlockCopy> batch(copies.begin(), copies.end());
    Core* core = core_.get();
    const uint64_t id = id_;
    for (const BlockCopy& c : batch) {
      if (c.index < 0 || static_cast<size_t>(c.index) >= destination_blocks_ || c.src_block < 0 ||
          c.src_block >= core->local.num_blocks) {
        absl::Status invalid = absl::InvalidArgumentError(
            StrCat("bad block copy src_block=", c.src_block, " index=", c.index, " (",
                   core->local.num_blocks, " local blocks, ", destination_blocks_,
                   " destination blocks)"));
        core_->loop->Post([core, id, invalid] { core->sender->Fail(id, invalid); });
        return;
      }
    }
    core_->loop->Post([core, id, batch = std::move(batch)] { core->sender->Send(id, batch); });
  }

  void Finish(std::function<void(absl::Status)> done) override {
    if (finish_called_.exchange(true)) {
      done(absl::FailedPreconditionError("kv transfer: Finish called twice"));
      return;
    }
    Core* core = core_.get();
    const uint64_t id = id_;
    auto shared_done = std::make_shared<std::function<void(absl::Status)>>(std::move(done));
    if (!core_->loop->Post([core, id, shared_done] { core->sender->Finish(id, *shared_done); })) {
      (*shared_done)(absl::CancelledError(
          StrCat("kv transfer lease=", lease_id_, ": the transport was destroyed")));
    }
  }

 private:
  std::shared_ptr<Core> core_;
  const uint64_t id_;
  const std::string lease_id_;
  const size_t destination_blocks_;
  std::atomic<bool> finish_called_{false};
};

uint64_t RandomEpoch() {
  std::random_device rd;
  uint64_t e = 0;
  while (e == 0) e = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return e;
}

// Registers the cache and packs its remote key (loop thread).
absl::Status RegisterCache(UcxWorkerLoop& loop, Core& core) {
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = core.local.base;
  mp.length = static_cast<size_t>(core.local.num_blocks * core.local.bytes_per_block);
  ucs_status_t st = ucp_mem_map(loop.context(), &mp, &core.local.memh);
  if (st != UCS_OK) return UcsError(st, "ucp_mem_map of the KV cache");
  void* rkey = nullptr;
  size_t rkey_size = 0;
  st = ucp_rkey_pack(loop.context(), core.local.memh, &rkey, &rkey_size);
  if (st != UCS_OK) {
    ucp_mem_unmap(loop.context(), core.local.memh);
    core.local.memh = nullptr;
    return UcsError(st, "ucp_rkey_pack of the KV cache");
  }
  core.packed_rkey.assign(static_cast<const char*>(rkey), rkey_size);
  ucp_rkey_buffer_release(rkey);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<UcxKvTransport>> UcxKvTransport::Create(
    const UcxKvTransportOptions& options) {
  KvCacheStorage* cache = options.cache;
  if (cache == nullptr || cache->host_base() == nullptr || cache->num_blocks() <= 0) {
    return absl::InvalidArgumentError("UcxKvTransport: a non-empty host-memory KV cache is required");
  }
  if (cache->layout().bytes_per_block() != options.layout.layout.bytes_per_block() ||
      cache->block_format() != options.layout.block_format) {
    return absl::InvalidArgumentError(StrCat("UcxKvTransport: the layout (",
                                             options.layout.Describe(),
                                             ") does not describe the cache"));
  }
  auto core = std::make_shared<Core>();
  core->local.worker_id = options.worker_id;
  core->local.epoch = options.epoch != 0 ? options.epoch : RandomEpoch();
  core->local.layout = options.layout;
  core->local.base = cache->host_base();
  core->local.num_blocks = cache->num_blocks();
  core->local.bytes_per_block = cache->layout().bytes_per_block();

  UcxWorkerLoopOptions loop_options;
  loop_options.transports = options.transports;
  loop_options.keepalive_interval = options.keepalive_interval;
  loop_options.am_id = wire::kAmId;
  loop_options.name = StrCat("tandem-kv-", options.worker_id);
  loop_options.data_am_id = wire::kDataAmId;
  KvLeaseHandler* handler = options.lease_handler;
  const absl::Duration grace = options.lease_grace;
  const wire::DataPath path = options.data_path == UcxDataPath::kRmaPut
                                  ? wire::DataPath::kRmaPut
                                  : wire::DataPath::kActiveMessage;
  Core* raw = core.get();
  auto loop = UcxWorkerLoop::Start(loop_options, [raw, handler, grace, path](UcxWorkerLoop& loop) {
    TANDEM_RETURN_IF_ERROR(RegisterCache(loop, *raw));
    raw->sender = std::make_unique<UcxSender>(&loop, &raw->local, path);
    raw->receiver = std::make_unique<UcxReceiver>(&loop, &raw->local, handler, grace);
    loop.SetMessageHandler([raw](std::string_view payload) { raw->Dispatch(payload); });
    loop.SetDataHandler([raw](std::string_view header, void* data, size_t length, bool rndv) {
      return raw->receiver->OnBlock(header, data, length, rndv);
    });
    loop.SetTicker([raw](absl::Time now) {
      return std::min(raw->sender->Tick(now), raw->receiver->Tick(now));
    });
    return absl::OkStatus();
  });
  if (!loop.ok()) return loop.status();
  core->loop = std::move(*loop);

  auto transport = std::unique_ptr<UcxKvTransport>(new UcxKvTransport(core));
  wire::EndpointAddress address;
  address.epoch = core->local.epoch;
  address.remote_base = reinterpret_cast<uint64_t>(core->local.base);
  address.num_blocks = core->local.num_blocks;
  address.bytes_per_block = core->local.bytes_per_block;
  address.rkey = core->packed_rkey;
  // worker_address() is written once on the loop thread before Start returns.
  address.worker_address = core->loop->worker_address();
  transport->endpoint_.worker_id = options.worker_id;
  transport->endpoint_.epoch = core->local.epoch;
  transport->endpoint_.layout = options.layout;
  transport->endpoint_.address = wire::EncodeEndpointAddress(address);
  GetLogger("transfer")->info("ucx kv transport worker={} epoch={} blocks={} bytes_per_block={}",
                              options.worker_id, core->local.epoch, core->local.num_blocks,
                              core->local.bytes_per_block);
  return transport;
}

UcxKvTransport::UcxKvTransport(std::shared_ptr<Core> core) : core_(std::move(core)) {}

UcxKvTransport::~UcxKvTransport() {
  Core* core = core_.get();
  TANDEM_CHECK(!core->loop->OnLoopThread()) << "UcxKvTransport destroyed from its own callback";
  core->loop->Stop(
      [core] {
        core->sender->Shutdown();
        core->receiver->Shutdown();
      },
      [core] {
        if (core->local.memh != nullptr) ucp_mem_unmap(core->loop->context(), core->local.memh);
        core->local.memh = nullptr;
      });
}

absl::StatusOr<std::unique_ptr<KvTransfer>> UcxKvTransport::StartTransfer(
    const KvDestination& destination, absl::Time deadline) {
  const std::string context = StrCat("kv transfer lease=", destination.lease_id,
                                     " to worker=", destination.endpoint.worker_id);
  if (std::string diff = core_->local.layout.Mismatch(destination.endpoint.layout); !diff.empty()) {
    return absl::FailedPreconditionError(
        StrCat(context, ": KV layout mismatch (source vs destination): ", diff));
  }
  auto address = wire::DecodeEndpointAddress(destination.endpoint.address);
  if (!address.ok()) {
    return absl::InvalidArgumentError(StrCat(context, ": ", ToStd(address.status().message())));
  }
  if (address->bytes_per_block != core_->local.bytes_per_block) {
    return absl::FailedPreconditionError(
        StrCat(context, ": the destination's blocks hold ", address->bytes_per_block,
               " bytes, ours ", core_->local.bytes_per_block));
  }
  for (int32_t b : destination.blocks) {
    if (b < 0 || b >= address->num_blocks) {
      return absl::InvalidArgumentError(StrCat(context, ": destination block ", b,
                                               " outside its cache of ", address->num_blocks,
                                               " blocks"));
    }
  }
  OutboundRequest request;
  request.id = core_->next_transfer_id.fetch_add(1);
  request.destination = destination;
  request.address = std::move(*address);
  request.deadline = deadline;
  const uint64_t id = request.id;
  Core* core = core_.get();
  if (!core_->loop->Post([core, request = std::move(request)]() mutable {
        core->sender->Start(std::move(request));
      })) {
    return absl::UnavailableError(StrCat(context, ": the transport is shutting down"));
  }
  return std::unique_ptr<KvTransfer>(
      new UcxTransferHandle(core_, id, destination.lease_id, destination.blocks.size()));
}

}  // namespace tandem::transfer
