#include "controller/loop/role_change_actuator.h"

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tandem::controller {

RoleChangeActuator::RoleChangeActuator(AdminClient* admin, absl::Duration drain_timeout)
    : admin_(admin), drain_timeout_(drain_timeout) {}

absl::StatusOr<InstanceCounts> RoleChangeActuator::Current() {
  TANDEM_ASSIGN_OR_RETURN(auto workers, admin_->ListWorkers());
  InstanceCounts c;
  for (const auto& w : workers) {
    if (w.load().draining()) continue;
    (w.info().role() == v1::WORKER_ROLE_PREFILL ? c.prefill : c.decode)++;
  }
  return c;
}

absl::Status RoleChangeActuator::Apply(const InstanceCounts& target) {
  TANDEM_ASSIGN_OR_RETURN(InstanceCounts current, Current());
  if (target == current) return absl::OkStatus();
  if (target.prefill + target.decode != current.prefill + current.decode) {
    return absl::FailedPreconditionError(
        StrCat("the role-change actuator only moves workers between roles: ", current.prefill, " prefill + ",
               current.decode, " decode cannot become ", target.prefill, " + ", target.decode));
  }
  const bool to_prefill = target.prefill > current.prefill;
  const v1::WorkerRole from = to_prefill ? v1::WORKER_ROLE_DECODE : v1::WORKER_ROLE_PREFILL;
  const v1::WorkerRole to = to_prefill ? v1::WORKER_ROLE_PREFILL : v1::WORKER_ROLE_DECODE;
  int moves = std::abs(target.prefill - current.prefill);
  TANDEM_ASSIGN_OR_RETURN(auto workers, admin_->ListWorkers());
  auto log = GetLogger("controller");
  while (moves > 0) {
    // The least loaded worker of the donor role drains fastest.
    const v1::WorkerStatus* pick = nullptr;
    for (const auto& w : workers) {
      if (w.info().role() != from || w.load().draining()) continue;
      if (pick == nullptr || DrainWork(w.load()) < DrainWork(pick->load())) pick = &w;
    }
    if (pick == nullptr) return absl::FailedPreconditionError("no worker left to change role");
    const std::string id = pick->info().worker_id();
    const auto drain_start = absl::Now();
    log->info("role change: draining {} before making it a {} worker", id, v1::WorkerRole_Name(to));
    if (absl::Status s = admin_->DrainAndWait(id, drain_timeout_); !s.ok()) {
      log->warn("draining {}: {}; changing its role anyway", id, s.message());
    }
    TANDEM_RETURN_IF_ERROR(admin_->SetWorkerRole(id, to));
    log->info("role change: {} is now a {} worker", id, v1::WorkerRole_Name(to));
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++report_.flips;
      report_.notes.push_back(StrCat(id, " flipped to ", to_prefill ? "prefill" : "decode", " after a drain of ",
                                     absl::FormatDuration(absl::Trunc(absl::Now() - drain_start, absl::Milliseconds(100))),
                                     " (the role-change actuator only flips)"));
    }
    for (auto& w : workers) {
      if (w.info().worker_id() == id) w.mutable_info()->set_role(to);
    }
    --moves;
  }
  return absl::OkStatus();
}

ActuationReport RoleChangeActuator::TakeReport() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(report_, {});
}

}  // namespace tandem::controller
