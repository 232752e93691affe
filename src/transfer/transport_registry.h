// The one place that knows which KV transfer media this build has: makes a KvTransport by
// medium name from the options every medium shares (cache, layout, worker id, lease handler)
// plus the few settings one medium needs. The worker (tandem worker), the test cluster and the
// benchmarks make their transports here.
//
// Media (KvTransport::name() of what they make):
//   "ucx"         UCX over `ucx_tls` (host caches; the cross-host default)
//   "cuda-ipc"    CUDA IPC (device caches, workers on one node; CUDA builds)
//   "staged-ucx"  device caches over UCX through pinned host mirrors (CUDA + UCX builds)
//   "inprocess"   transports of one process through `in_process_hub` (tests)
// Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tandem/kv_transport.h"
#include "transfer/protocol/protocol_transport.h"

namespace tandem::transfer {

class InProcessKvHub;

// The common fields (cache, layout, worker id, lease handler, epoch) plus the few settings one
// medium needs.
struct TransportOptions : KvTransportCommonOptions {
  std::string medium = "ucx";
  std::string ucx_tls;                             // ucx, staged-ucx: UCX_TLS (empty: UCX's choice)
  std::shared_ptr<InProcessKvHub> in_process_hub;  // inprocess: required
  std::string socket_dir = "/tmp";                 // cuda-ipc: where the control socket lives
};

// The transport of `options.medium`; UNIMPLEMENTED for a medium this build lacks,
// INVALID_ARGUMENT for an unknown name.
absl::StatusOr<std::unique_ptr<KvTransport>> MakeTransport(const TransportOptions& options);

// The media this build can make, in the order listed above.
std::vector<std::string> AvailableMedia();

}  // namespace tandem::transfer
