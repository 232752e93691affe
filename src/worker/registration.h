// Keeps a worker registered with the router: registers, then heartbeats its load; registers
// again whenever the router does not know it (the router restarted) or cannot be reached.
// Thread-safe; runs its own thread between Start and Stop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/time/time.h"
#include "tandem/v1/registry.grpc.pb.h"

namespace tandem::worker {

class RouterRegistration {
 public:
  struct Options {
    std::string router_address;  // host:port of the router's gRPC server
    absl::Duration interval = absl::Milliseconds(500);
    std::string cluster_token;  // sent with every call (empty: none)
  };
  RouterRegistration(Options options, std::function<v1::WorkerInfo()> info, std::function<v1::WorkerLoad()> load);
  ~RouterRegistration();

  void Start();
  void Stop();
  bool registered() const { return registered_.load(); }

 private:
  void Loop();

  const Options options_;
  std::function<v1::WorkerInfo()> info_;
  std::function<v1::WorkerLoad()> load_;
  std::atomic<bool> registered_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tandem::worker
