#include "controller/loop/drained_out_guard.h"

#include <algorithm>
#include <set>

#include "common/logging.h"
#include "common/strings.h"

namespace tandem::controller {
namespace {

// The capacity a role stands for: prefill, or decode (decode and mixed workers).
std::string Pool(v1::WorkerRole role) { return role == v1::WORKER_ROLE_PREFILL ? "prefill" : "decode"; }

}  // namespace

absl::StatusOr<std::vector<std::string>> DrainedOutGuard::Check(absl::Time now) {
  absl::StatusOr<std::vector<v1::WorkerStatus>> workers = admin_->ListWorkers();
  if (!workers.ok()) return workers.status();
  const std::vector<std::string> mine = actuator_ != nullptr ? actuator_->Draining() : std::vector<std::string>{};
  std::map<std::string, int> serving;                             // pool -> workers taking work
  std::map<std::string, std::vector<const v1::WorkerStatus*>> stuck;  // pool -> foreign drains past grace
  std::set<std::string> seen;
  for (const v1::WorkerStatus& w : *workers) {
    const std::string& id = w.info().worker_id();
    const std::string pool = Pool(w.info().role());
    if (!w.load().draining()) {
      ++serving[pool];
      continue;
    }
    if (std::find(mine.begin(), mine.end(), id) != mine.end()) continue;
    seen.insert(id);
    const absl::Time since = draining_since_.emplace(id, now).first->second;
    if (now - since >= grace_) stuck[pool].push_back(&w);
  }
  std::erase_if(draining_since_, [&](const auto& e) { return !seen.contains(e.first); });
  std::vector<std::string> restored;
  for (const auto& [pool, list] : stuck) {
    if (serving[pool] > 0) continue;  // the role still has capacity: a drain is not an outage
    for (const v1::WorkerStatus* w : list) {
      const std::string& id = w->info().worker_id();
      GetLogger("controller")->warn("every {} worker is draining and {} has been for {}: restoring it", pool, id,
                                    absl::FormatDuration(now - draining_since_[id]));
      if (absl::Status s = admin_->SetWorkerRole(id, w->info().role()); !s.ok()) {
        GetLogger("controller")->error("restoring {}: {}", id, s.message());
        continue;
      }
      draining_since_.erase(id);
      restored.push_back(id);
    }
  }
  return restored;
}

}  // namespace tandem::controller
