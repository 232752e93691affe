#include "controller/k8s/leader_election.h"

#include <chrono>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::controller {
namespace {

using json = nlohmann::json;

// metav1.MicroTime.
std::string MicroTime(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()); }

std::shared_ptr<spdlog::logger> Log() { return GetLogger("controller"); }

}  // namespace

absl::StatusOr<std::unique_ptr<LeaderElector>> LeaderElector::Create(KubeConfig config,
                                                                      LeaderElectionOptions options) {
  if (options.kube_namespace.empty() || options.identity.empty() || options.lease_name.empty()) {
    return absl::InvalidArgumentError("leader election needs a namespace, a Lease name and this replica's identity");
  }
  if (!(options.retry_period < options.renew_deadline && options.renew_deadline < options.lease_duration)) {
    return absl::InvalidArgumentError("leader election needs retry period < renew deadline < lease duration");
  }
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KubeClient> client, KubeClient::Create(std::move(config)));
  return std::unique_ptr<LeaderElector>(new LeaderElector(std::move(client), std::move(options)));
}

LeaderElector::LeaderElector(std::unique_ptr<KubeClient> client, LeaderElectionOptions options)
    : client_(std::move(client)), options_(std::move(options)) {}

LeaderElector::~LeaderElector() { Stop(); }

std::string LeaderElector::LeasePath(bool collection) const {
  std::string path = StrCat("/apis/coordination.k8s.io/v1/namespaces/", options_.kube_namespace, "/leases");
  return collection ? path : StrCat(path, "/", options_.lease_name);
}

bool LeaderElector::IsLeader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leader_ && absl::Now() - renewed_ < options_.renew_deadline;
}

bool LeaderElector::TryAcquireOrRenew() {
  const absl::Time now = absl::Now();
  KubeRequest get;
  get.path = LeasePath(false);
  absl::StatusOr<HttpClientResponse> current = client_->Send(get);
  if (!current.ok() || (current->status != 200 && current->status != 404)) {
    Log()->warn("leader election: reading Lease {}: {}", options_.lease_name,
                current.ok() ? KubeStatusMessage(*current) : std::string(current.status().message()));
    return false;
  }
  json lease = json::object();
  json spec = json::object();
  int transitions = 0;
  if (current->status == 200) {
    lease = json::parse(current->body, nullptr, /*allow_exceptions=*/false);
    if (!lease.is_object() || !lease.contains("metadata") || !lease["metadata"].is_object()) return false;
    spec = lease.value("spec", json::object());
    if (!spec.is_object()) spec = json::object();
    const std::string holder = spec.value("holderIdentity", "");
    const std::string seen = spec.dump();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (seen != observed_) {
        observed_ = seen;
        observed_at_ = now;
      }
      const int64_t duration_s = spec.value("leaseDurationSeconds", int64_t{0});
      const bool expired = now - observed_at_ > absl::Seconds(duration_s > 0 ? duration_s : 0);
      if (!holder.empty() && holder != options_.identity && !expired) {
        leader_ = false;
        return false;  // someone else holds it, and has renewed it lately (by our clock)
      }
    }
    transitions = spec.value("leaseTransitions", 0) + (holder == options_.identity ? 0 : 1);
  }
  const bool ours = spec.value("holderIdentity", "") == options_.identity;
  json next = {{"holderIdentity", options_.identity},
               {"leaseDurationSeconds", absl::ToInt64Seconds(options_.lease_duration)},
               {"acquireTime", ours ? spec.value("acquireTime", MicroTime(now)) : MicroTime(now)},
               {"renewTime", MicroTime(now)},
               {"leaseTransitions", transitions}};
  KubeRequest write;
  write.content_type = "application/json";
  if (current->status == 404) {
    write.method = "POST";
    write.path = LeasePath(true);
    write.body = json{{"apiVersion", "coordination.k8s.io/v1"},
                      {"kind", "Lease"},
                      {"metadata", {{"name", options_.lease_name}, {"namespace", options_.kube_namespace}}},
                      {"spec", next}}
                     .dump();
  } else {
    write.method = "PUT";
    write.path = LeasePath(false);
    lease["spec"] = next;  // metadata (with resourceVersion) as read: a concurrent write gets 409
    write.body = lease.dump();
  }
  absl::StatusOr<HttpClientResponse> written = client_->Send(write);
  const bool ok = written.ok() && (written->status == 200 || written->status == 201);
  std::lock_guard<std::mutex> lock(mu_);
  if (ok) {
    if (!leader_) Log()->info("leader election: {} now leads (Lease {})", options_.identity, options_.lease_name);
    leader_ = true;
    renewed_ = now;
    observed_ = next.dump();
    observed_at_ = now;
  } else if (written.ok() && written->status != 409) {
    Log()->warn("leader election: writing Lease {}: {}", options_.lease_name, KubeStatusMessage(*written));
  }
  return ok;
}

void LeaderElector::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    TryAcquireOrRenew();
    lock.lock();
    if (leader_ && absl::Now() - renewed_ >= options_.renew_deadline) {
      Log()->error("leader election: {} could not renew Lease {} for {}; standing down", options_.identity,
                   options_.lease_name, absl::FormatDuration(options_.renew_deadline));
      leader_ = false;
    }
    cv_.wait_for(lock, std::chrono::microseconds(absl::ToInt64Microseconds(options_.retry_period)),
                 [this] { return stop_; });
  }
}

void LeaderElector::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void LeaderElector::Abandon() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    leader_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LeaderElector::Release() {
  KubeRequest get;
  get.path = LeasePath(false);
  absl::StatusOr<HttpClientResponse> current = client_->Send(get);
  if (!current.ok() || current->status != 200) return false;
  json lease = json::parse(current->body, nullptr, /*allow_exceptions=*/false);
  if (!lease.is_object() || !lease.contains("spec") || !lease["spec"].is_object()) return false;
  if (lease["spec"].value("holderIdentity", "") != options_.identity) return false;
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = MicroTime(absl::Now());
  KubeRequest put;
  put.method = "PUT";
  put.path = LeasePath(false);
  put.content_type = "application/json";
  put.body = lease.dump();
  absl::StatusOr<HttpClientResponse> written = client_->Send(put);
  return written.ok() && written->status == 200;
}

void LeaderElector::Stop() {
  bool was_leader;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_leader = leader_;
  }
  Abandon();
  if (was_leader) {
    Log()->info("leader election: {} releasing Lease {}{}", options_.identity, options_.lease_name,
                Release() ? "" : " (failed: the next leader waits for it to expire)");
  }
}

}  // namespace tandem::controller
