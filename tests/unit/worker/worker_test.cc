// The Worker gRPC API as the router and operators use it: KV leases (reserve, expire,
// release), the prefill-side handshake checks, decode from a lease, drain, grpc.health.v1.
#include <future>
#include <random>
#include <thread>

#include "engine/model_config.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "rpc/cluster_auth.h"
#include "testing/test_cluster.h"
#include "testing/tiny_model.h"

namespace tandem::testing {
namespace {

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClusterSpec spec;
    spec.model_path = TinyModelPath();
    spec.kv_blocks = 64;
    auto c = TestCluster::Start(spec);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(*c);
    prefill_ = cluster_->FindWorker(v1::WORKER_ROLE_PREFILL);
    decode_ = cluster_->FindWorker(v1::WORKER_ROLE_DECODE);
  }

  std::unique_ptr<v1::Worker::Stub> Stub(int i) {
    return v1::Worker::NewStub(
        rpc::ClusterChannel(StrCat("127.0.0.1:", cluster_->worker(i).grpc_port()), cluster_->cluster_token()));
  }

  double Free(int i) {
    auto v = cluster_->FreeBlocksFromMetrics(i);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }

  grpc::Status Reserve(int tokens, int lease_ms, v1::ReserveKvResponse* resp) {
    v1::ReserveKvRequest req;
    req.set_request_id(StrCat("r", ++ids_));
    req.set_num_tokens(tokens);
    req.set_lease_ms(lease_ms);
    grpc::ClientContext ctx;
    return Stub(decode_)->ReserveKv(&ctx, req, resp);
  }

  v1::PrefillRequest PrefillInto(const v1::ReserveKvResponse& lease, int tokens) {
    v1::PrefillRequest req;
    req.set_request_id(StrCat("p", ++ids_));
    std::mt19937 rng(ids_);
    for (int i = 0; i < tokens; ++i) req.add_prompt(3 + static_cast<int32_t>(rng() % 200));
    req.mutable_sampling()->set_temperature(0);
    req.mutable_sampling()->set_max_tokens(8);
    *req.mutable_destination()->mutable_endpoint() = lease.endpoint();
    req.mutable_destination()->set_lease_id(lease.lease_id());
    *req.mutable_destination()->mutable_block_ids() = lease.block_ids();
    return req;
  }

  void WaitFree(int i, double want, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (Free(i) != want && absl::Now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(Free(i), want);
  }

  double ExpiredLeases() {
    auto page = cluster_->Metrics(decode_);
    if (!page.ok()) return -1;
    auto v = MetricValue(*page, "tandem_worker_kv_leases_expired_total");
    return v.ok() ? *v : -1;
  }

  std::unique_ptr<TestCluster> cluster_;
  int prefill_ = -1, decode_ = -1;
  int ids_ = 0;
};

TEST_F(WorkerTest, UnusedLeaseExpiresAndFreesItsBlocks) {
  const double start = Free(decode_);
  const double prefill_start = Free(prefill_);
  v1::ReserveKvResponse lease;
  ASSERT_TRUE(Reserve(100, 300, &lease).ok());
  EXPECT_EQ(lease.block_ids_size(), 7);  // 100 tokens in blocks of 16
  // The worker's own count right after the reservation (the /metrics page may only be read after
  // the 300 ms lease has already expired on a loaded machine).
  EXPECT_EQ(lease.free_kv_blocks(), start - 7);
  // The /metrics gauge can lag the reservation itself (it may still read `start` before the
  // lease shows), so wait for the expiry to be counted first, then for the blocks to come back.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (ExpiredLeases() < 1 && absl::Now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(ExpiredLeases(), 1);
  WaitFree(decode_, start, absl::Seconds(5));
  // The expired lease cannot be written any more.
  v1::PrefillResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = Stub(prefill_)->Prefill(&ctx, PrefillInto(lease, 100), &resp);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error_message().find("unknown or expired"), std::string::npos) << s.error_message();
  // The refused prefill leaves nothing behind on the prefill worker either.
  WaitFree(prefill_, prefill_start, absl::Seconds(5));
}

TEST_F(WorkerTest, ReleasedLeaseFreesItsBlocksAtOnce) {
  const double start = Free(decode_);
  v1::ReserveKvResponse lease;
  ASSERT_TRUE(Reserve(40, 60000, &lease).ok());
  WaitFree(decode_, start - 3, absl::Seconds(2));
  v1::ReleaseKvRequest req;
  req.set_lease_id(lease.lease_id());
  v1::ReleaseKvResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(Stub(decode_)->ReleaseKv(&ctx, req, &resp).ok());
  WaitFree(decode_, start, absl::Seconds(2));
}

TEST_F(WorkerTest, ReservationBeyondTheFreeBlocksIsRefused) {
  v1::ReserveKvResponse first, second;
  ASSERT_TRUE(Reserve(40 * 16, 10000, &first).ok());
  grpc::Status s = Reserve(40 * 16, 1000, &second);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
}

// Hostile sizes are refused with a clear error and the worker keeps serving (one
// ReserveKv{num_tokens: 2147483647} used to overflow the block count and kill the process).
TEST_F(WorkerTest, OutOfBoundsReservationsAreRefusedAndTheWorkerKeepsServing) {
  v1::ReserveKvResponse lease;
  for (int tokens : {2147483647, -5, 0, 1025}) {  // the tiny model's context is 1024 tokens
    grpc::Status s = Reserve(tokens, 1000, &lease);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << tokens << ": " << s.error_message();
  }
  for (int lease_ms : {-1, 24 * 3600 * 1000}) {
    grpc::Status s = Reserve(16, lease_ms, &lease);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << lease_ms << ": " << s.error_message();
  }
  grpc::Status s = Reserve(1024, 0, &lease);  // the whole context, with the default lease time
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(lease.block_ids_size(), 64);
}

TEST_F(WorkerTest, MismatchedLayoutIsRefusedBeforeAnyBlockMoves) {
  v1::ReserveKvResponse lease;
  ASSERT_TRUE(Reserve(50, 60000, &lease).ok());
  const double prefill_free = Free(prefill_);
  for (int field = 0; field < 4; ++field) {
    v1::PrefillRequest req = PrefillInto(lease, 50);
    v1::KvLayout* layout = req.mutable_destination()->mutable_endpoint()->mutable_layout();
    std::string expect;
    switch (field) {
      case 0: layout->set_block_size(32); expect = "block"; break;
      case 1: layout->set_dtype("f32"); expect = "dtype"; break;
      case 2: layout->set_num_layers(layout->num_layers() + 1); expect = "layers"; break;
      case 3: layout->set_model_id("another-model"); expect = "model"; break;
    }
    v1::PrefillResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = Stub(prefill_)->Prefill(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_NE(s.error_message().find(expect), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(Free(prefill_), prefill_free);
  EXPECT_EQ(cluster_->in_process_transport(prefill_)->transfers_succeeded(), 0);
}

TEST_F(WorkerTest, StaleEpochIsRefusedAtTheHandshake) {
  v1::ReserveKvResponse lease;
  ASSERT_TRUE(Reserve(50, 60000, &lease).ok());
  v1::PrefillRequest req = PrefillInto(lease, 50);
  // As if the decode worker restarted after the lease was granted: a new process, a new epoch.
  auto* endpoint = req.mutable_destination()->mutable_endpoint();
  endpoint->set_epoch(endpoint->epoch() + 1);
  v1::PrefillResponse resp;
  grpc::ClientContext ctx;
  grpc::Status s = Stub(prefill_)->Prefill(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find("epoch"), std::string::npos) << s.error_message();
  // The lease was never written: decoding from it is refused.
  v1::DecodeRequest dreq;
  dreq.set_request_id("d1");
  dreq.set_lease_id(lease.lease_id());
  dreq.mutable_prompt()->CopyFrom(req.prompt());
  dreq.set_first_token(5);
  grpc::ClientContext dctx;
  auto reader = Stub(decode_)->Decode(&dctx, dreq);
  v1::TokensResponse msg;
  int tokens = 0;
  while (reader->Read(&msg)) tokens += msg.tokens_size();
  grpc::Status ds = reader->Finish();
  EXPECT_EQ(ds.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << ds.error_message();
  EXPECT_NE(ds.error_message().find("not fully arrived"), std::string::npos) << ds.error_message();
  EXPECT_EQ(tokens, 0);
}

TEST_F(WorkerTest, PrefillThenDecodeThroughTheWorkerApi) {
  v1::ReserveKvResponse lease;
  ASSERT_TRUE(Reserve(70, 60000, &lease).ok());
  v1::PrefillRequest req = PrefillInto(lease, 70);
  v1::PrefillResponse presp;
  grpc::ClientContext pctx;
  ASSERT_TRUE(Stub(prefill_)->Prefill(&pctx, req, &presp).ok());
  EXPECT_GE(presp.first_token(), 0);
  EXPECT_EQ(presp.transfer_bytes(),
            5 * cluster_->worker(prefill_).runner().Call<int64_t>(
                    [](Engine& e) { return e.kv_cache().layout().bytes_per_block(); }));
  v1::DecodeRequest dreq;
  dreq.set_request_id("d2");
  dreq.set_lease_id(lease.lease_id());
  dreq.mutable_prompt()->CopyFrom(req.prompt());
  dreq.set_first_token(presp.first_token());
  dreq.set_rng_draws(presp.rng_draws());
  *dreq.mutable_sampling() = req.sampling();
  grpc::ClientContext dctx;
  auto reader = Stub(decode_)->Decode(&dctx, dreq);
  v1::TokensResponse msg;
  std::vector<int32_t> tokens{presp.first_token()};
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&msg)) {
    tokens.insert(tokens.end(), msg.tokens().begin(), msg.tokens().end());
    if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) finish = msg.finish_reason();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(tokens.size(), 8u);

  // Same tokens as one engine computing it all.
  auto engine = std::move(*cluster_->NewEngine());
  GenerateRequest g;
  g.id = "ref";
  g.prompt.assign(req.prompt().begin(), req.prompt().end());
  g.sampling.temperature = 0;
  g.sampling.max_tokens = 8;
  ASSERT_TRUE(engine->Add(g).ok());
  std::vector<int32_t> want;
  while (engine->HasWork()) {
    auto step = engine->Step();
    ASSERT_TRUE(step.ok()) << step.status();
    for (const auto& o : *step) want.insert(want.end(), o.new_tokens.begin(), o.new_tokens.end());
  }
  EXPECT_EQ(tokens, want);
  // A lease is adopted once.
  grpc::ClientContext dctx2;
  auto again = Stub(decode_)->Decode(&dctx2, dreq);
  while (again->Read(&msg)) {
  }
  EXPECT_EQ(again->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(WorkerTest, DrainingWorkerRefusesNewWorkAndReportsDrained) {
  grpc::ClientContext ctx;
  v1::DrainResponse resp;
  ASSERT_TRUE(Stub(decode_)->Drain(&ctx, v1::DrainRequest(), &resp).ok());
  EXPECT_TRUE(resp.drained());
  v1::ReserveKvResponse lease;
  grpc::Status s = Reserve(10, 1000, &lease);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("draining"), std::string::npos);
  EXPECT_FALSE(cluster_->worker(decode_).Ready());
  // The router stops counting it once its heartbeat says so: no decode worker, not ready.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (cluster_->router().Ready() && absl::Now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(cluster_->router().Ready());
  auto r = cluster_->Generate({5, 6, 7, 8}, SamplingParams{.max_tokens = 2});
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
}

// grpc.health.v1.Health/Check with an empty request; the answer's field 1 is the status
// (SERVING = 1). Raw bytes: the health proto is not shipped with Debian's gRPC headers.
TEST_F(WorkerTest, ServesGrpcHealth) {
  for (int port : {cluster_->worker(prefill_).grpc_port(), cluster_->worker(decode_).grpc_port(),
                   cluster_->router().grpc_port()}) {
    grpc::GenericStub stub(grpc::CreateChannel(StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Slice empty("", 0);
    grpc::ByteBuffer request(&empty, 1), response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) { done.set_value(s); });
    grpc::Status s = done.get_future().get();
    ASSERT_TRUE(s.ok()) << "port " << port << ": " << s.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (const auto& slice : slices) bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << "port " << port;
  }
}

}  // namespace
}  // namespace tandem::testing
