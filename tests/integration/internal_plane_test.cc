// The internal plane as an outsider meets it: every Registry, RouterAdmin and Worker call
// without the cluster token (or with a wrong one) is refused with UNAUTHENTICATED and counted,
// nothing it asked for happens, and the cluster keeps serving; the public gRPC port serves none
// of the internal services. A cluster member cannot take
// over another live worker's registration, and request ids are the router's, never a client's.
#include <functional>
#include <string>
#include <vector>

#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "rpc/cluster_auth.h"
#include "tandem/v1/generate.grpc.pb.h"
#include "tandem/v1/registry.grpc.pb.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

class InternalPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterSpec spec;
    spec.model_path = TinyModelPath();
    auto c = TestCluster::Start(spec);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    decode_ = cluster_->FindWorker(v1::WORKER_ROLE_DECODE);
  }

  std::string RouterAddress() const { return StrCat("127.0.0.1:", cluster_->router().internal_port()); }
  std::string DecodeAddress() const { return StrCat("127.0.0.1:", cluster_->worker(decode_).grpc_port()); }

  // Every internal method, called over `channel`; each entry returns the call's status.
  std::vector<std::pair<std::string, std::function<grpc::Status()>>> Calls(std::shared_ptr<grpc::Channel> router,
                                                                            std::shared_ptr<grpc::Channel> worker) {
    auto reg = std::shared_ptr<v1::Registry::Stub>(v1::Registry::NewStub(router));
    auto admin = std::shared_ptr<v1::RouterAdmin::Stub>(v1::RouterAdmin::NewStub(router));
    auto w = std::shared_ptr<v1::Worker::Stub>(v1::Worker::NewStub(worker));
    const std::string victim = cluster_->worker(decode_).worker_id();
    auto unary = [](auto fn) {
      return [fn] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        return fn(&ctx);
      };
    };
    std::vector<std::pair<std::string, std::function<grpc::Status()>>> calls;
    calls.emplace_back("Registry/Register", unary([reg, victim](grpc::ClientContext* ctx) {
      v1::RegisterRequest req;  // a made-up worker taking the decode worker's id
      req.mutable_info()->set_worker_id(victim);
      req.mutable_info()->set_role(v1::WORKER_ROLE_DECODE);
      req.mutable_info()->set_grpc_address("127.0.0.1:1");
      v1::RegisterResponse resp;
      return reg->Register(ctx, req, &resp);
    }));
    calls.emplace_back("Registry/Heartbeat", unary([reg, victim](grpc::ClientContext* ctx) {
      v1::HeartbeatRequest req;
      req.set_worker_id(victim);
      v1::HeartbeatResponse resp;
      return reg->Heartbeat(ctx, req, &resp);
    }));
    calls.emplace_back("RouterAdmin/ListWorkers", unary([admin](grpc::ClientContext* ctx) {
      v1::ListWorkersResponse resp;
      return admin->ListWorkers(ctx, v1::ListWorkersRequest(), &resp);
    }));
    calls.emplace_back("RouterAdmin/DrainWorker", unary([admin, victim](grpc::ClientContext* ctx) {
      v1::DrainWorkerRequest req;
      req.set_worker_id(victim);
      v1::DrainWorkerResponse resp;
      return admin->DrainWorker(ctx, req, &resp);
    }));
    calls.emplace_back("RouterAdmin/SetWorkerRole", unary([admin, victim](grpc::ClientContext* ctx) {
      v1::SetWorkerRoleRequest req;
      req.set_worker_id(victim);
      req.set_role(v1::WORKER_ROLE_PREFILL);
      v1::SetWorkerRoleResponse resp;
      return admin->SetWorkerRole(ctx, req, &resp);
    }));
    calls.emplace_back("Worker/ReserveKv", unary([w](grpc::ClientContext* ctx) {
      v1::ReserveKvRequest req;
      req.set_request_id("outsider");
      req.set_num_tokens(2147483647);
      v1::ReserveKvResponse resp;
      return w->ReserveKv(ctx, req, &resp);
    }));
    calls.emplace_back("Worker/ReleaseKv", unary([w](grpc::ClientContext* ctx) {
      v1::ReleaseKvRequest req;
      req.set_lease_id("1");
      v1::ReleaseKvResponse resp;
      return w->ReleaseKv(ctx, req, &resp);
    }));
    calls.emplace_back("Worker/Prefill", unary([w](grpc::ClientContext* ctx) {
      v1::PrefillResponse resp;
      return w->Prefill(ctx, v1::PrefillRequest(), &resp);
    }));
    calls.emplace_back("Worker/Decode", unary([w](grpc::ClientContext* ctx) {
      v1::DecodeRequest req;
      req.set_request_id("outsider");
      auto reader = w->Decode(ctx, req);
      v1::TokensResponse msg;
      while (reader->Read(&msg)) {
      }
      return reader->Finish();
    }));
    calls.emplace_back("Worker/GenerateTokens", unary([w](grpc::ClientContext* ctx) {
      v1::GenerateTokensRequest req;
      req.set_request_id("outsider");
      req.add_prompt(5);
      auto reader = w->GenerateTokens(ctx, req);
      v1::TokensResponse msg;
      while (reader->Read(&msg)) {
      }
      return reader->Finish();
    }));
    calls.emplace_back("Worker/Cancel", unary([w](grpc::ClientContext* ctx) {
      v1::CancelResponse resp;
      return w->Cancel(ctx, v1::CancelRequest(), &resp);
    }));
    calls.emplace_back("Worker/Drain", unary([w](grpc::ClientContext* ctx) {
      v1::DrainResponse resp;
      return w->Drain(ctx, v1::DrainRequest(), &resp);
    }));
    calls.emplace_back("Worker/SetRole", unary([w](grpc::ClientContext* ctx) {
      v1::SetRoleRequest req;
      req.set_role(v1::WORKER_ROLE_PREFILL);
      v1::SetRoleResponse resp;
      return w->SetRole(ctx, req, &resp);
    }));
    return calls;
  }

  double Refused(int worker, const std::string& method) {
    auto page = cluster_->Metrics(worker);
    EXPECT_TRUE(page.ok()) << page.status();
    const std::string name = worker < 0 ? "tandem_router_unauthenticated_calls_total"
                                        : "tandem_worker_unauthenticated_calls_total";
    auto v = MetricValue(page.ok() ? *page : "", StrCat(name, "{service=\"", method, "\"}"));
    return v.ok() ? *v : 0;
  }

  std::unique_ptr<TestCluster> cluster_;
  int decode_ = -1;
};

TEST_F(InternalPlaneTest, EveryInternalCallWithoutTheClusterTokenIsRefusedAndChangesNothing) {
  for (const std::string& token : {std::string(), std::string("a-wrong-token-of-the-right-size!")}) {
    for (auto& [method, call] : Calls(rpc::ClusterChannel(RouterAddress(), token),
                                      rpc::ClusterChannel(DecodeAddress(), token))) {
      const grpc::Status s = call();
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << method << " with token '" << token << "': " << s.error_message();
    }
  }
  for (const std::string method : {"Registry/Register", "RouterAdmin/DrainWorker", "RouterAdmin/SetWorkerRole"}) {
    EXPECT_EQ(Refused(-1, method), 2) << method;
  }
  for (const std::string method : {"Worker/ReserveKv", "Worker/Decode", "Worker/Drain", "Worker/SetRole"}) {
    EXPECT_EQ(Refused(decode_, method), 2) << method;
  }
  // Nothing was drained, re-roled or hijacked: the cluster answers as before.
  EXPECT_EQ(cluster_->worker(decode_).service().role(), v1::WORKER_ROLE_DECODE);
  EXPECT_FALSE(cluster_->worker(decode_).service().draining());
  auto r = cluster_->Generate({5, 6, 7, 8, 9}, SamplingParams{.temperature = 0, .max_tokens = 4});
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens.size(), 4u);
}

TEST_F(InternalPlaneTest, WithTheTokenTheCallsAreServed) {
  auto admin = v1::RouterAdmin::NewStub(rpc::ClusterChannel(RouterAddress(), cluster_->cluster_token()));
  grpc::ClientContext ctx;
  v1::ListWorkersResponse resp;
  ASSERT_TRUE(admin->ListWorkers(&ctx, v1::ListWorkersRequest(), &resp).ok());
  EXPECT_EQ(resp.workers_size(), 2);
}

// The planes have ports of their own: the public gRPC port (the one clients are given) serves no
// internal service even with the token, and the internal port serves no Generate.
TEST_F(InternalPlaneTest, ThePublicPortServesNoInternalServiceAndTheInternalPortNoGenerate) {
  const std::string public_address = StrCat("127.0.0.1:", cluster_->router().grpc_port());
  ASSERT_NE(public_address, RouterAddress());
  for (auto& [method, call] : Calls(rpc::ClusterChannel(public_address, cluster_->cluster_token()),
                                    rpc::ClusterChannel(DecodeAddress(), cluster_->cluster_token()))) {
    if (method.rfind("Worker/", 0) == 0) continue;
    EXPECT_EQ(call().error_code(), grpc::StatusCode::UNIMPLEMENTED) << method << " on the public port";
  }
  auto generate = v1::TandemGenerate::NewStub(rpc::ClusterChannel(RouterAddress(), cluster_->cluster_token()));
  v1::GenerateRequest req;
  req.mutable_token_ids()->add_ids(5);
  grpc::ClientContext ctx;
  auto reader = generate->Generate(&ctx, req);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNIMPLEMENTED) << "Generate on the internal port";
  EXPECT_EQ(cluster_->router().registry().CountRole(v1::WORKER_ROLE_DECODE), 1) << "the public port changed the registry";
}

// With --no-admin-api nobody, token or not, can drain or re-role workers through the router.
TEST(InternalPlaneAdminOffTest, WithoutTheAdminApiEvenTheTokenCannotDrain) {
  ClusterSpec spec;
  spec.model_path = TinyModelPath();
  spec.admin_api = false;
  auto c = TestCluster::Start(spec);
  ASSERT_TRUE(c.ok()) << c.status();
  auto admin = v1::RouterAdmin::NewStub(
      rpc::ClusterChannel(StrCat("127.0.0.1:", (*c)->router().internal_port()), (*c)->cluster_token()));
  grpc::ClientContext ctx;
  v1::DrainWorkerRequest req;
  req.set_worker_id((*c)->worker((*c)->FindWorker(v1::WORKER_ROLE_DECODE)).worker_id());
  v1::DrainWorkerResponse resp;
  EXPECT_EQ(admin->DrainWorker(&ctx, req, &resp).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  auto r = (*c)->Generate({5, 6, 7}, SamplingParams{.temperature = 0, .max_tokens = 2});
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
}

// A cluster member (it has the token) cannot take a live worker's id from another address; a
// worker re-registering itself from its own address is still welcome.
TEST_F(InternalPlaneTest, ALiveWorkersRegistrationCannotBeTakenOver) {
  auto reg = v1::Registry::NewStub(rpc::ClusterChannel(RouterAddress(), cluster_->cluster_token()));
  auto victim = cluster_->router().registry().Find(cluster_->worker(decode_).worker_id());
  ASSERT_NE(victim, nullptr);
  v1::RegisterRequest req;
  *req.mutable_info() = victim->info;
  req.mutable_info()->set_grpc_address("127.0.0.1:1");
  req.mutable_info()->set_epoch(victim->info.epoch() + 1);
  v1::RegisterResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = reg->Register(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_EQ(cluster_->router().registry().Find(victim->info.worker_id())->info.grpc_address(),
            victim->info.grpc_address());

  *req.mutable_info() = victim->info;  // the same worker again
  grpc::ClientContext again;
  EXPECT_TRUE(reg->Register(&again, req, &resp).ok());
}

// The router names every request itself: a client's request_id could collide with another's.
TEST_F(InternalPlaneTest, RequestIdsAreTheRoutersNotTheClients) {
  auto stub = cluster_->NewGenerateStub();
  std::set<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    v1::GenerateRequest req;
    req.set_request_id("same-id-from-a-client");
    req.mutable_token_ids()->add_ids(5);
    req.mutable_token_ids()->add_ids(6);
    req.mutable_sampling()->set_max_tokens(2);
    req.mutable_sampling()->set_temperature(0);
    grpc::ClientContext ctx;
    auto reader = stub->Generate(&ctx, req);
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) ids.insert(msg.request_id());
    ASSERT_TRUE(reader->Finish().ok());
  }
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids.count("same-id-from-a-client"), 0u);
}

}  // namespace
}  // namespace tandem::testing
