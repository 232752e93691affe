// KubernetesActuator: moves the prefill:decode ratio by changing spec.replicas of two
// Deployments through their scale subresource (autoscaling/v1 Scale,
// /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale).
//
// Writes are JSON merge patches (PATCH, Content-Type application/merge-patch+json) of
//   {"metadata": {"resourceVersion": "<as read>"}, "spec": {"replicas": N}}
// The resourceVersion in the patch is the optimistic-concurrency precondition: the apiserver
// answers 409 Conflict when the Deployment changed since it was read (another writer: kubectl, an
// HPA, a second controller), and the actuator then reads it again and decides afresh. PATCH rather
// than PUT so the only fields sent are the two it means to set. RBAC needed, in the namespace:
// apiGroups ["apps"], resources ["deployments/scale"], verbs ["get", "patch"].
//
// Scale-in drain: on Kubernetes the actuator only lowers spec.replicas; draining the pods the
// ReplicaSet picks to remove (stop taking work, finish in-flight requests) is their preStop hook's
// job, under terminationGracePeriodSeconds (deploy/k8s). Apply returns as soon as the apiserver has
// accepted the new counts, before any pod has started or stopped.
//
// Retries, each bounded: 429 after its Retry-After (capped); 5xx and transport errors with
// exponential backoff; 409 by re-reading. 401, 403, 404 and other 4xx are not retried: they
// return at once with an error saying what to fix. A write cut off mid-flight is safe to repeat:
// if the first attempt landed, the repeat's stale resourceVersion gets 409 and the re-read finds
// the target already set.
//
// Thread-compatible: the control loop calls it from one thread. (Concurrent calls would not
// corrupt anything — the apiserver serialises them through resourceVersion — but would race.)
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "controller/core/actuator.h"
#include "controller/k8s/kube_client.h"

namespace tandem::controller {

struct KubernetesActuatorOptions {
  std::string kube_namespace;      // --namespace; "" → the config's namespace, else "default"
  std::string prefill_deployment;  // --prefill-deployment (required)
  std::string decode_deployment;   // --decode-deployment (required)

  // Per request, for 429, 5xx and transport errors (the first try included).
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(250);  // doubles after each retry
  absl::Duration max_backoff = absl::Seconds(4);
  absl::Duration max_retry_after = absl::Seconds(10);  // a longer Retry-After is cut to this
  // Re-read-and-write rounds per Deployment after 409 Conflict.
  int max_conflict_retries = 5;
  absl::Duration request_timeout = absl::Seconds(10);
  // How to wait between retries; unset → absl::SleepFor. Tests record the waits instead.
  std::function<void(absl::Duration)> sleep;
};

class KubernetesActuator : public Actuator {
 public:
  // Validates the names (DNS-1123) and reads the token once; no request is sent yet.
  static absl::StatusOr<std::unique_ptr<KubernetesActuator>> Create(KubeConfig config,
                                                                   KubernetesActuatorOptions options);

  std::string name() const override { return "kubernetes"; }
  // spec.replicas of the prefill and decode Deployments (what was asked for, not pods ready).
  absl::StatusOr<InstanceCounts> Current() override;
  // Writes only the Deployments whose spec.replicas differs from `target`, the one growing first
  // (if the second write fails, the cluster is left with more capacity rather than less).
  absl::Status Apply(const InstanceCounts& target) override;

  const std::string& kube_namespace() const { return namespace_; }

 private:
  using Scale = KubeScale;
  KubernetesActuator(std::unique_ptr<KubeClient> client, KubernetesActuatorOptions options, std::string ns);

  std::string ScalePath(const std::string& deployment) const;
  absl::StatusOr<Scale> GetScale(const std::string& deployment);
  // Sets spec.replicas, starting from `read` (the Scale as last read).
  absl::Status ScaleTo(Role role, const std::string& deployment, int replicas, Scale read);
  // One request, repeated on 429, 5xx and transport errors; any other answer is returned.
  absl::StatusOr<HttpClientResponse> SendWithRetries(const KubeRequest& request);
  // The error for a final non-2xx answer: what was refused and what to fix.
  absl::Status ErrorFor(const KubeRequest& request, const HttpClientResponse& response,
                        const std::string& deployment) const;
  void Sleep(absl::Duration d) const;

  std::unique_ptr<KubeClient> client_;
  const KubernetesActuatorOptions options_;
  const std::string namespace_;
};

}  // namespace tandem::controller
