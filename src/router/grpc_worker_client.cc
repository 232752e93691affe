#include "router/grpc_worker_client.h"

#include <utility>

#include "grpcpp/create_channel.h"
#include "rpc/cluster_auth.h"
#include "rpc/convert.h"

namespace tandem::router {
namespace {

void SetDeadline(grpc::ClientContext& ctx, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) ctx.set_deadline(absl::ToChronoTime(deadline));
}

using AsyncStub = v1::Worker::StubInterface::async_interface;
template <typename Req, typename Resp>
using AsyncUnary = void (AsyncStub::*)(grpc::ClientContext*, const Req*, Resp*, std::function<void(grpc::Status)>);

// One unary call: its context, request and response live until the answer (and as long as a
// canceller may still cancel it).
template <typename Req, typename Resp>
void StartUnary(v1::Worker::Stub* stub, AsyncUnary<Req, Resp> method, Req request, absl::Time deadline,
                std::shared_ptr<CallCanceller> cancel, std::function<void(absl::StatusOr<Resp>)> done) {
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };
  auto call = std::make_shared<Call>();
  call->req = std::move(request);
  SetDeadline(call->ctx, deadline);
  (stub->async()->*method)(&call->ctx, &call->req, &call->resp, [call, done = std::move(done)](grpc::Status s) {
    if (s.ok()) {
      done(std::move(call->resp));
    } else {
      done(rpc::FromGrpc(s));
    }
  });
  if (cancel) cancel->SetAction([call] { call->ctx.TryCancel(); });
}

// Reads a stream of TokensResponse (Decode or GenerateTokens) into a handler; deletes itself
// when the call is done.
template <typename Req>
class TokenReader : public grpc::ClientReadReactor<v1::TokensResponse> {
 public:
  TokenReader(Req request, absl::Time deadline, WorkerClient::TokenStreamHandler handler)
      : ctx_(std::make_shared<grpc::ClientContext>()), request_(std::move(request)), handler_(std::move(handler)) {
    SetDeadline(*ctx_, deadline);
  }

  // `method` is the stub's async method, e.g. &AsyncStub::Decode.
  template <typename Method>
  void Start(v1::Worker::Stub* stub, Method method, const std::shared_ptr<CallCanceller>& cancel) {
    (stub->async()->*method)(ctx_.get(), &request_, this);
    StartRead(&msg_);
    StartCall();
    if (cancel) cancel->SetAction([ctx = ctx_] { ctx->TryCancel(); });
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // end of stream: OnDone follows
    handler_.on_message(msg_);
    msg_.Clear();
    StartRead(&msg_);
  }
  void OnDone(const grpc::Status& status) override {
    handler_.on_done(rpc::FromGrpc(status));
    delete this;
  }

 private:
  std::shared_ptr<grpc::ClientContext> ctx_;  // shared with the canceller, which may outlive the call
  Req request_;
  WorkerClient::TokenStreamHandler handler_;
  v1::TokensResponse msg_;
};

}  // namespace

std::shared_ptr<WorkerClient> GrpcWorkerClient::Connect(const std::string& address, const std::string& cluster_token) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::Channel> channel = rpc::ClusterChannel(address, cluster_token, args);
  return std::make_shared<GrpcWorkerClient>(std::shared_ptr<v1::Worker::Stub>(v1::Worker::NewStub(channel)), channel);
}

void GrpcWorkerClient::ReserveKv(const v1::ReserveKvRequest& request, absl::Time deadline, ReserveDone done) {
  StartUnary<v1::ReserveKvRequest, v1::ReserveKvResponse>(stub_.get(), &AsyncStub::ReserveKv, request, deadline,
                                                          nullptr, std::move(done));
}

void GrpcWorkerClient::Prefill(const v1::PrefillRequest& request, absl::Time deadline,
                               std::shared_ptr<CallCanceller> cancel, PrefillDone done) {
  StartUnary<v1::PrefillRequest, v1::PrefillResponse>(stub_.get(), &AsyncStub::Prefill, request, deadline,
                                                      std::move(cancel), std::move(done));
}

void GrpcWorkerClient::Decode(const v1::DecodeRequest& request, absl::Time deadline,
                              std::shared_ptr<CallCanceller> cancel, TokenStreamHandler handler) {
  auto* reader = new TokenReader<v1::DecodeRequest>(request, deadline, std::move(handler));
  reader->Start(stub_.get(), &AsyncStub::Decode, cancel);
}

void GrpcWorkerClient::GenerateTokens(const v1::GenerateTokensRequest& request, absl::Time deadline,
                                      std::shared_ptr<CallCanceller> cancel, TokenStreamHandler handler) {
  auto* reader = new TokenReader<v1::GenerateTokensRequest>(request, deadline, std::move(handler));
  reader->Start(stub_.get(), &AsyncStub::GenerateTokens, cancel);
}

void GrpcWorkerClient::ReleaseKv(const std::string& lease_id) {
  v1::ReleaseKvRequest req;
  req.set_lease_id(lease_id);
  StartUnary<v1::ReleaseKvRequest, v1::ReleaseKvResponse>(stub_.get(), &AsyncStub::ReleaseKv, std::move(req),
                                                          absl::Now() + absl::Seconds(5), nullptr,
                                                          [](absl::StatusOr<v1::ReleaseKvResponse>) {});
}

void GrpcWorkerClient::Drain(absl::Time deadline, DrainDone done) {
  StartUnary<v1::DrainRequest, v1::DrainResponse>(stub_.get(), &AsyncStub::Drain, v1::DrainRequest(), deadline,
                                                  nullptr, std::move(done));
}

void GrpcWorkerClient::SetRole(v1::WorkerRole role, absl::Time deadline, StatusDone done) {
  v1::SetRoleRequest req;
  req.set_role(role);
  StartUnary<v1::SetRoleRequest, v1::SetRoleResponse>(
      stub_.get(), &AsyncStub::SetRole, std::move(req), deadline, nullptr,
      [done = std::move(done)](absl::StatusOr<v1::SetRoleResponse> r) { done(r.status()); });
}

}  // namespace tandem::router
