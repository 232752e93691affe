// A whole tandem cluster in one test process: a router and prefill/decode/mixed workers, each
// on its own loopback gRPC and HTTP ports as in production, with the KV cache moved by the
// in-process transport (so tests can inject transfer faults) or by UCX.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/sampling.h"
#include "gguf/gguf_file.h"
#include "router/router.h"
#include "tandem/v1/generate.grpc.pb.h"
#include "transfer/in_process/in_process_kv_transport.h"
#include "worker/worker.h"

namespace tandem::testing {

struct ClusterSpec {
  std::string model_path;  // required
  int prefill = 1;
  int decode = 1;
  int mixed = 0;
  int64_t kv_blocks = 256;  // per worker
  int token_budget = 256;
  int max_num_seqs = 64;
  int threads = 1;          // per worker engine
  int32_t local_prefill_threshold = 0;
  absl::Duration transfer_timeout = absl::Seconds(20);
  bool ucx = false;          // UCX instead of the in-process transport
  std::string api_key;       // the router's
  // The internal plane's credential, shared by the router and every worker (empty: none).
  std::string cluster_token = "test-cluster-token-0123456789";
  bool admin_api = true;  // the router's RouterAdmin service
  int32_t default_max_tokens = 0;  // the router's, for requests without max_tokens
  absl::Duration queue_timeout = absl::Seconds(60);  // the router's (also bounds a migration's wait)
  int max_migrations = 3;                            // the router's
  int routers = 1;  // routers serving the same workers (each worker registers with every one)
  absl::Duration worker_expiry = absl::Seconds(2);  // the routers' heartbeat expiry
};

// One worker's engine settings where they differ from the cluster's (0: the spec's).
struct WorkerShape {
  int32_t block_size = 0;  // tokens per KV block (`tandem worker --block-size`); 0: the default
  int64_t kv_blocks = 0;   // 0: ClusterSpec::kv_blocks
};

struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
};

class TestCluster {
 public:
  static absl::StatusOr<std::unique_ptr<TestCluster>> Start(const ClusterSpec& spec);
  ~TestCluster();

  router::RouterProcess& router(int i = 0) { return *routers_[i]; }
  int num_routers() const { return static_cast<int>(routers_.size()); }
  bool has_router(int i) const { return routers_[i] != nullptr; }  // false once stopped
  // Stops router `i` at once (its calls in flight are cancelled): as if its process was killed.
  void StopRouter(int i);
  const std::string& cluster_token() const { return spec_.cluster_token; }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  worker::WorkerProcess& worker(int i) { return *workers_[i]; }
  bool has_worker(int i) const { return workers_[i] != nullptr; }  // false once killed
  // The worker's in-process transport (null with UCX).
  transfer::InProcessKvTransport* in_process_transport(int i) { return transports_[i]; }
  // Index of the first worker with `role`, or -1.
  int FindWorker(v1::WorkerRole role) const;

  // A new worker (registered with the router once its first heartbeat lands).
  absl::Status AddWorker(v1::WorkerRole role, WorkerShape shape = {});
  // Stops worker `i` at once (no drain) and forgets it: as if its process was killed.
  void KillWorker(int i);

  // Generates through the router's public gRPC API, waiting for the whole answer.
  // Generates through router `router`'s public gRPC API, waiting for the whole answer.
  GenerateResult Generate(const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                          absl::Duration timeout = absl::Seconds(120), const std::string& authorization = "",
                          int router = 0);
  std::unique_ptr<v1::TandemGenerate::Stub> NewGenerateStub(int router = 0) const;

  // `tandem_worker_kv_blocks{state="free"}` read from worker i's /metrics over HTTP.
  absl::StatusOr<double> FreeBlocksFromMetrics(int i) const;
  // A whole /metrics page of worker i (or of the router for i = -1).
  absl::StatusOr<std::string> Metrics(int i) const;
  // Router r's /metrics page.
  absl::StatusOr<std::string> RouterMetrics(int r) const;

  // Waits until every router knows every worker and is ready.
  absl::Status WaitReady(absl::Duration timeout = absl::Seconds(30));

  const gguf::GgufFile& file() const { return *file_; }
  // An engine configured like the workers' (for reference outputs).
  absl::StatusOr<std::unique_ptr<Engine>> NewEngine(WorkerShape shape = {}) const;

 private:
  TestCluster() = default;

  ClusterSpec spec_;
  std::unique_ptr<gguf::GgufFile> file_;
  std::vector<int32_t> eog_ids_;
  std::vector<std::string> token_pieces_;  // JSON mode
  std::shared_ptr<transfer::InProcessKvHub> hub_;
  std::vector<std::unique_ptr<router::RouterProcess>> routers_;
  std::vector<int> router_grpc_ports_;  // kept after a router stops: calls to it then fail to connect
  std::vector<std::unique_ptr<worker::WorkerProcess>> workers_;
  std::vector<transfer::InProcessKvTransport*> transports_;
  int next_worker_ = 0;
};

// Reads a sample's value from a Prometheus text page: `series` is the name with labels exactly
// as exposed, e.g. `tandem_worker_kv_blocks{state="free"}`.
absl::StatusOr<double> MetricValue(const std::string& page, const std::string& series);

}  // namespace tandem::testing
