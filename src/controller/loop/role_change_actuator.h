// RoleChangeActuator: moves the prefill:decode ratio without starting or stopping anything —
// drains a worker through the router's admin API, then flips its role (the worker keeps its
// loaded model and KV cache). It can only move instances between roles: a target with another
// total is refused with FailedPrecondition (combine with an actuator that adds instances, or use
// the local actuator, which flips or restarts by measured cost).
//
// Thread-safe; Apply blocks until the flips it started are done (one worker at a time).
#pragma once

#include <mutex>

#include "absl/time/time.h"
#include "controller/core/actuator.h"
#include "controller/loop/admin_client.h"

namespace tandem::controller {

class RoleChangeActuator final : public Actuator {
 public:
  RoleChangeActuator(AdminClient* admin, absl::Duration drain_timeout = absl::Seconds(120));

  std::string name() const override { return "role-change"; }
  // Registered workers that take work, by role (mixed workers count as decode).
  absl::StatusOr<InstanceCounts> Current() override;
  absl::Status Apply(const InstanceCounts& target) override;
  ActuationReport TakeReport() override;

 private:
  AdminClient* admin_;
  const absl::Duration drain_timeout_;
  std::mutex mu_;
  ActuationReport report_;
};

}  // namespace tandem::controller
