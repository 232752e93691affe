// The internal plane's credential: a shared cluster token that every internal gRPC call
// (Registry, RouterAdmin, Worker) carries in the `x-tandem-cluster-token` metadata entry and
// every internal service checks, in constant time, before it does anything.
//
// Why a shared token and not mutual TLS: it needs no certificate authority, rotation tooling or
// per-pod certificates, and `tandem up` can make one itself, so the credential is on by default
// everywhere. What it does not give: confidentiality (the plane is plaintext; in Kubernetes the
// NetworkPolicies in deploy/k8s keep it to the pods that need it) and per-worker identity (any
// holder of the token is a cluster member; a worker's registration is then protected by its
// epoch and address, see WorkerRegistry::Register).
//
// An empty token turns the check off (`--insecure-no-cluster-auth`, for development only).
//
// Thread-safety: ClusterAuth is immutable after construction; Check may be called concurrently.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/channel_arguments.h"
#include "metrics/metrics.h"

namespace tandem::rpc {

inline constexpr char kClusterTokenMetadata[] = "x-tandem-cluster-token";

// 32 random bytes from the system's CSPRNG, as 64 hex characters.
std::string NewClusterToken();

// Whether two secrets are equal, in time that depends only on their lengths.
bool SecretsEqual(std::string_view a, std::string_view b);

class ClusterAuth {
 public:
  // `unauthenticated`: counts refused calls by {service} (may be null).
  ClusterAuth(std::string token, metrics::CounterFamily* unauthenticated)
      : token_(std::move(token)), unauthenticated_(unauthenticated) {}

  bool enabled() const { return !token_.empty(); }
  // OK, or UNAUTHENTICATED (no token, or a wrong one); refusals are counted and logged.
  absl::Status Check(const grpc::ServerContextBase& ctx, std::string_view service) const;

 private:
  const std::string token_;
  metrics::CounterFamily* const unauthenticated_;
};

// A channel whose every call carries `token` (none when empty).
std::shared_ptr<grpc::Channel> ClusterChannel(const std::string& target, const std::string& token,
                                              const grpc::ChannelArguments& args = {});

}  // namespace tandem::rpc
