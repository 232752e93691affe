// Actuator: what the controller changes to move the prefill:decode ratio. Implementations:
// local processes (local_actuator.h), the Kubernetes scale subresource (k8s_actuator.h), and
// in-place role change through the router's admin API (role_change_actuator.h).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/core/signals.h"

namespace tandem::controller {

// How an Apply moved workers between roles (ActuationReport is what the decision log and the
// tandem_controller_role_moves_total metric show).
struct ActuationReport {
  int flips = 0;     // workers drained and given the other role in place
  int restarts = 0;  // workers of one role stopped (drained first) for a new one of the other
  std::vector<std::string> notes;  // per move: which worker, how, and why (the figures compared)
};

class Actuator {
 public:
  virtual ~Actuator() = default;

  // "local", "kubernetes", "role-change": the decision log's `actuator` field.
  virtual std::string name() const = 0;

  // The instance counts the actuator has asked for (Kubernetes: spec.replicas of each
  // Deployment; local: processes running or starting, not those draining).
  virtual absl::StatusOr<InstanceCounts> Current() = 0;

  // Moves towards `target`. Idempotent: a target equal to Current() changes nothing. Scale-in
  // drains first (the instance stops taking work and finishes what it has before it stops);
  // the call may return before a draining instance has stopped. An error leaves the counts
  // as they were or part of the way; the controller retries at its next tick.
  virtual absl::Status Apply(const InstanceCounts& target) = 0;

  // Workers this actuator is draining right now (before stopping them or changing their role):
  // the drained-out guard leaves these alone.
  virtual std::vector<std::string> Draining() const { return {}; }

  // How the role moves since the last call were made (flip or restart, and why); empty for an
  // actuator that only scales.
  virtual ActuationReport TakeReport() { return {}; }
};

}  // namespace tandem::controller
