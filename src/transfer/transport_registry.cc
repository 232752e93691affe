#include "transfer/transport_registry.h"

#include <functional>
#include <string_view>

#include "absl/strings/str_join.h"

#include "common/strings.h"
#include "transfer/in_process/in_process_kv_transport.h"
#if TANDEM_HAVE_UCX
#include "transfer/ucx/ucx_kv_transport.h"
#endif
#if TANDEM_HAVE_CUDA_IPC_TRANSFER
#include "transfer/cuda_ipc/cuda_ipc_kv_transport.h"
#endif
#if TANDEM_HAVE_STAGED_TRANSFER
#include "transfer/staged/staged_kv_transport.h"
#endif

namespace tandem::transfer {
namespace {

using Factory = std::function<absl::StatusOr<std::unique_ptr<KvTransport>>(const TransportOptions&)>;

struct Entry {
  std::string_view name;
  bool built;
  Factory make;
};

template <typename T>
absl::StatusOr<std::unique_ptr<KvTransport>> Upcast(absl::StatusOr<std::unique_ptr<T>> t) {
  if (!t.ok()) return t.status();
  return std::unique_ptr<KvTransport>(std::move(*t));
}

// A medium's options with the common fields of `o`.
template <typename Options>
Options From(const TransportOptions& o) {
  Options options;
  static_cast<KvTransportCommonOptions&>(options) = o;
  return options;
}

absl::StatusOr<std::unique_ptr<KvTransport>> MakeUcx(const TransportOptions& o) {
#if TANDEM_HAVE_UCX
  auto u = From<UcxKvTransportOptions>(o);
  u.transports = o.ucx_tls;
  return Upcast(UcxKvTransport::Create(u));
#else
  return absl::UnimplementedError("this tandem was built without UCX (install libucx-dev and rebuild)");
#endif
}

absl::StatusOr<std::unique_ptr<KvTransport>> MakeCudaIpc(const TransportOptions& o) {
#if TANDEM_HAVE_CUDA_IPC_TRANSFER
  auto c = From<CudaIpcKvTransportOptions>(o);
  c.socket_dir = o.socket_dir;
  return Upcast(CudaIpcKvTransport::Create(c));
#else
  return absl::UnimplementedError("this tandem was built without CUDA: no CUDA IPC KV transport");
#endif
}

absl::StatusOr<std::unique_ptr<KvTransport>> MakeStaged(const TransportOptions& o) {
#if TANDEM_HAVE_STAGED_TRANSFER
  auto s = From<StagedKvTransportOptions>(o);
  s.ucx.transports = o.ucx_tls;
  return Upcast(StagedKvTransport::Create(s));
#else
  return absl::UnimplementedError("this tandem was built without CUDA and UCX: no staged KV transport");
#endif
}

absl::StatusOr<std::unique_ptr<KvTransport>> MakeInProcess(const TransportOptions& o) {
  auto i = From<InProcessKvTransportOptions>(o);
  i.hub = o.in_process_hub;
  return Upcast(InProcessKvTransport::Create(i));
}

const std::vector<Entry>& Registry() {
  static const std::vector<Entry> entries = {
      {"ucx", TANDEM_HAVE_UCX != 0, MakeUcx},
      {"cuda-ipc", TANDEM_HAVE_CUDA_IPC_TRANSFER != 0, MakeCudaIpc},
      {"staged-ucx", TANDEM_HAVE_STAGED_TRANSFER != 0, MakeStaged},
      {"inprocess", true, MakeInProcess},
  };
  return entries;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvTransport>> MakeTransport(const TransportOptions& options) {
  for (const Entry& e : Registry()) {
    if (e.name == options.medium) return e.make(options);
  }
  return absl::InvalidArgumentError(StrCat("unknown KV transfer medium \"", options.medium,
                                           "\" (this build has: ",
                                           absl::StrJoin(AvailableMedia(), ", "), ")"));
}

std::vector<std::string> AvailableMedia() {
  std::vector<std::string> names;
  for (const Entry& e : Registry()) {
    if (e.built) names.emplace_back(e.name);
  }
  return names;
}

}  // namespace tandem::transfer
