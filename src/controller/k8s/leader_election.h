// Leader election over a coordination.k8s.io/v1 Lease, so that of several controller replicas
// exactly one actuates (the others stand by and take over when it stops or dies).
//
// The protocol is the one Kubernetes' own controllers use (client-go's leaderelection):
//   * the Lease's spec names the holder (holderIdentity), how long a claim lasts
//     (leaseDurationSeconds) and when it was renewed (renewTime);
//   * the holder renews every retry_period with a PUT that carries the resourceVersion it read,
//     so two writers never both succeed (the loser gets 409 Conflict);
//   * another replica may take the Lease over once it has seen the same record unchanged for
//     lease_duration by its own clock (never by comparing the holder's timestamps with its own
//     clock: the replicas' clocks may differ);
//   * a holder that could not renew for renew_deadline (< lease_duration) stops acting as the
//     leader before anyone else may start;
//   * Stop() releases the Lease (an empty holder) so a standby takes over at its next try.
//
// Thread-safe. Runs its own thread between Start and Stop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/k8s/kube_client.h"

namespace tandem::controller {

struct LeaderElectionOptions {
  std::string kube_namespace;                   // required
  std::string lease_name = "tandem-controller";
  std::string identity;                         // this replica's (the pod's name); required
  absl::Duration lease_duration = absl::Seconds(15);
  absl::Duration renew_deadline = absl::Seconds(10);
  absl::Duration retry_period = absl::Seconds(2);
};

class LeaderElector {
 public:
  // InvalidArgument for a missing namespace or identity, or durations out of order
  // (retry_period < renew_deadline < lease_duration).
  static absl::StatusOr<std::unique_ptr<LeaderElector>> Create(KubeConfig config, LeaderElectionOptions options);
  ~LeaderElector();  // Stop()

  void Start();
  // Stops trying and releases the Lease if held.
  void Stop();
  // Stops trying without releasing (as a crashed replica would): for tests.
  void Abandon();
  // Whether this replica holds the Lease now (renewed within renew_deadline).
  bool IsLeader() const;
  const std::string& identity() const { return options_.identity; }

  // One round: create the Lease, renew it, or take it over when it has expired. True when
  // this replica holds it afterwards. (The thread calls it every retry_period.)
  bool TryAcquireOrRenew();

 private:
  LeaderElector(std::unique_ptr<KubeClient> client, LeaderElectionOptions options);
  void Loop();
  bool Release();
  std::string LeasePath(bool collection) const;

  std::unique_ptr<KubeClient> client_;
  const LeaderElectionOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool leader_ = false;
  absl::Time renewed_ = absl::InfinitePast();   // our last successful acquire or renew
  std::string observed_;                        // the last Lease spec seen (serialized)
  absl::Time observed_at_ = absl::InfinitePast();  // when it last changed, by our clock
  std::thread thread_;
};

}  // namespace tandem::controller
