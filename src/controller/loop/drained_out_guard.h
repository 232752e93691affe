// Recovery from a drained-out cluster: when every registered worker of a role (prefill, or
// decode-capable) has been draining for longer than `grace` and none of those drains is the
// actuator's own, nothing can serve that role, and nothing will undo it (a drained worker only
// leaves draining through SetRole). The guard restores them: SetWorkerRole(id, its own role)
// ends the drain. An operator's deliberate drain of a whole role is undone too: to take a role
// away, scale it (the actuator's drains are exempt), not drain it.
//
// Thread-safety: Check from the controller's thread only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/core/actuator.h"
#include "controller/loop/admin_client.h"

namespace tandem::controller {

class DrainedOutGuard {
 public:
  // `admin` and `actuator` must outlive the guard.
  DrainedOutGuard(AdminClient* admin, const Actuator* actuator, absl::Duration grace)
      : admin_(admin), actuator_(actuator), grace_(grace) {}

  // Looks at the workers now; returns the ids it restored (empty most of the time), or the
  // admin API's error.
  absl::StatusOr<std::vector<std::string>> Check(absl::Time now);

 private:
  AdminClient* const admin_;
  const Actuator* const actuator_;
  const absl::Duration grace_;
  std::map<std::string, absl::Time> draining_since_;  // workers seen draining, not the actuator's
};

}  // namespace tandem::controller
