// WorkerClient over the worker's gRPC service (tandem.v1.Worker), with gRPC's callback API:
// no thread waits for a worker. Each call gets its own ClientContext with the given deadline
// (none for absl::InfiniteFuture()); a CallCanceller cancels it with TryCancel, which the
// worker sees as the call's cancellation. Callbacks run on gRPC's callback threads.
//
// Thread-safe; shares the channel (and its connection) among all calls to the worker.
#pragma once

#include <memory>
#include <string>

#include "router/worker_client.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::router {

class GrpcWorkerClient final : public WorkerClient {
 public:
  // A client for the worker serving at `address` (host:port), over an insecure channel.
  // Every call carries `cluster_token` (rpc/cluster_auth.h; empty: none).
  static std::shared_ptr<WorkerClient> Connect(const std::string& address, const std::string& cluster_token);
  explicit GrpcWorkerClient(std::shared_ptr<v1::Worker::Stub> stub, std::shared_ptr<grpc::Channel> channel = nullptr)
      : stub_(std::move(stub)), channel_(std::move(channel)) {}

  // The channel the stub calls over (null when built from a stub alone): ConnectionMonitor
  // watches it.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  void ReserveKv(const v1::ReserveKvRequest& request, absl::Time deadline, ReserveDone done) override;
  void Prefill(const v1::PrefillRequest& request, absl::Time deadline, std::shared_ptr<CallCanceller> cancel,
               PrefillDone done) override;
  void Decode(const v1::DecodeRequest& request, absl::Time deadline, std::shared_ptr<CallCanceller> cancel,
              TokenStreamHandler handler) override;
  void GenerateTokens(const v1::GenerateTokensRequest& request, absl::Time deadline,
                      std::shared_ptr<CallCanceller> cancel, TokenStreamHandler handler) override;
  void ReleaseKv(const std::string& lease_id) override;
  void Drain(absl::Time deadline, DrainDone done) override;
  void SetRole(v1::WorkerRole role, absl::Time deadline, StatusDone done) override;

 private:
  std::shared_ptr<v1::Worker::Stub> stub_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace tandem::router
