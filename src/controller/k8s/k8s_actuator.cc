#include "controller/k8s/k8s_actuator.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <utility>
#include <vector>

#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tandem::controller {
namespace {

bool IsAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// RFC 1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
bool IsDnsLabel(std::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsAlnum(c) || c == '-'; });
}

// RFC 1123 subdomain (Deployment names): dot-separated labels, ≤ 253.
bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (size_t start = 0;;) {
    const size_t dot = s.find('.', start);
    if (!IsDnsLabel(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// Retry-After in seconds (the apiserver sends integers); nullopt when absent or an HTTP date.
std::optional<absl::Duration> RetryAfter(const HttpClientResponse& response) {
  const auto it = response.headers.find("retry-after");
  if (it == response.headers.end()) return std::nullopt;
  int seconds = 0;
  const char* end = it->second.data() + it->second.size();
  const auto [ptr, ec] = std::from_chars(it->second.data(), end, seconds);
  if (ec != std::errc() || ptr != end || seconds < 0) return std::nullopt;
  return absl::Seconds(seconds);
}

bool IsRetryableStatus(int status) { return status == 429 || status >= 500; }

// curl reports an untrusted server certificate as a transport error like any other; a wrong CA
// does not fix itself within seconds, so it is not retried.
bool IsCertificateError(const absl::Status& status) {
  const std::string_view m = ToStd(status.message());
  return m.find("certificate") != std::string_view::npos || m.find("CA cert") != std::string_view::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KubernetesActuator>> KubernetesActuator::Create(KubeConfig config,
                                                                              KubernetesActuatorOptions options) {
  std::string ns = options.kube_namespace;
  if (ns.empty()) ns = config.default_namespace.empty() ? "default" : config.default_namespace;
  if (!IsDnsLabel(ns)) {
    return absl::InvalidArgumentError(StrCat("namespace \"", ns, "\" is not a valid Kubernetes namespace name"));
  }
  for (const auto& [flag, name] : {std::pair{"prefill", &options.prefill_deployment},
                                   std::pair{"decode", &options.decode_deployment}}) {
    if (name->empty()) return absl::InvalidArgumentError(StrCat("no ", flag, " Deployment name given"));
    if (!IsDnsSubdomain(*name)) {
      return absl::InvalidArgumentError(
          StrCat(flag, " Deployment \"", *name, "\" is not a valid Kubernetes object name"));
    }
  }
  if (options.max_attempts < 1 || options.max_conflict_retries < 0) {
    return absl::InvalidArgumentError("max_attempts must be ≥ 1 and max_conflict_retries ≥ 0");
  }
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KubeClient> client, KubeClient::Create(std::move(config)));
  return std::unique_ptr<KubernetesActuator>(
      new KubernetesActuator(std::move(client), std::move(options), std::move(ns)));
}

KubernetesActuator::KubernetesActuator(std::unique_ptr<KubeClient> client, KubernetesActuatorOptions options,
                                       std::string ns)
    : client_(std::move(client)), options_(std::move(options)), namespace_(std::move(ns)) {}

void KubernetesActuator::Sleep(absl::Duration d) const {
  if (options_.sleep) {
    options_.sleep(d);
  } else {
    absl::SleepFor(d);
  }
}

std::string KubernetesActuator::ScalePath(const std::string& deployment) const {
  return StrCat("/apis/apps/v1/namespaces/", namespace_, "/deployments/", deployment, "/scale");
}

absl::StatusOr<InstanceCounts> KubernetesActuator::Current() {
  TANDEM_ASSIGN_OR_RETURN(const Scale prefill, GetScale(options_.prefill_deployment));
  TANDEM_ASSIGN_OR_RETURN(const Scale decode, GetScale(options_.decode_deployment));
  return InstanceCounts{prefill.replicas, decode.replicas};
}

absl::Status KubernetesActuator::Apply(const InstanceCounts& target) {
  if (target.prefill < 0 || target.decode < 0) {
    return absl::InvalidArgumentError(StrCat("negative target prefill=", target.prefill, " decode=", target.decode));
  }
  struct Step {
    Role role;
    const std::string* deployment;
    int replicas;
    Scale read;
  };
  std::vector<Step> steps;
  TANDEM_ASSIGN_OR_RETURN(Scale prefill, GetScale(options_.prefill_deployment));
  TANDEM_ASSIGN_OR_RETURN(Scale decode, GetScale(options_.decode_deployment));
  steps.push_back({Role::kPrefill, &options_.prefill_deployment, target.prefill, std::move(prefill)});
  steps.push_back({Role::kDecode, &options_.decode_deployment, target.decode, std::move(decode)});
  // Growth first: a failure between the two writes then leaves spare capacity, not a shortfall.
  std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
    return (a.replicas - a.read.replicas) > (b.replicas - b.read.replicas);
  });
  for (Step& step : steps) {
    if (step.read.replicas == step.replicas) continue;
    TANDEM_RETURN_IF_ERROR(ScaleTo(step.role, *step.deployment, step.replicas, std::move(step.read)));
  }
  return absl::OkStatus();
}

absl::StatusOr<KubernetesActuator::Scale> KubernetesActuator::GetScale(const std::string& deployment) {
  KubeRequest request;
  request.method = "GET";
  request.path = ScalePath(deployment);
  request.timeout = absl::ToChronoMilliseconds(options_.request_timeout);
  TANDEM_ASSIGN_OR_RETURN(const HttpClientResponse response, SendWithRetries(request));
  if (response.status != 200) return ErrorFor(request, response, deployment);
  absl::StatusOr<KubeScale> scale = ParseKubeScale(response.body);
  if (!scale.ok()) {
    return absl::InternalError(StrCat("GET ", request.path, ": the answer is not a Scale object: ",
                                      response.body.substr(0, 200)));
  }
  return *std::move(scale);
}

absl::Status KubernetesActuator::ScaleTo(Role role, const std::string& deployment, int replicas, Scale read) {
  for (int round = 0;; ++round) {
    if (round > 0) {
      TANDEM_ASSIGN_OR_RETURN(read, GetScale(deployment));
    }
    if (read.replicas == replicas) return absl::OkStatus();  // someone else got there first
    nlohmann::json patch;
    patch["metadata"]["resourceVersion"] = read.resource_version;
    patch["spec"]["replicas"] = replicas;
    KubeRequest request;
    request.method = "PATCH";
    request.path = ScalePath(deployment);
    request.body = patch.dump();
    request.content_type = "application/merge-patch+json";
    request.timeout = absl::ToChronoMilliseconds(options_.request_timeout);
    TANDEM_ASSIGN_OR_RETURN(const HttpClientResponse response, SendWithRetries(request));
    if (response.status >= 200 && response.status < 300) {
      GetLogger("controller")
          ->info("kubernetes scaled namespace={} deployment={} role={} from={} to={}", namespace_, deployment,
                 RoleName(role), read.replicas, replicas);
      return absl::OkStatus();
    }
    if (response.status != 409) return ErrorFor(request, response, deployment);
    if (round >= options_.max_conflict_retries) {
      return absl::AbortedError(StrCat("Deployment ", namespace_, "/", deployment, " kept changing under us: ",
                                       round + 1, " writes refused with 409 Conflict (",
                                       KubeStatusMessage(response), ")"));
    }
    GetLogger("controller")
        ->info("kubernetes conflict namespace={} deployment={} resource_version={}; reading it again", namespace_,
               deployment, read.resource_version);
  }
}

absl::StatusOr<HttpClientResponse> KubernetesActuator::SendWithRetries(const KubeRequest& request) {
  absl::Duration backoff = options_.initial_backoff;
  std::string last_failure;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<HttpClientResponse> response = client_->Send(request);
    absl::Duration wait = backoff;
    if (!response.ok()) {
      const absl::Status& s = response.status();
      if (IsCertificateError(s)) {
        return absl::UnavailableError(
            StrCat(s.message(), " (the API server's TLS certificate is not trusted",
                   client_->config().ca_file.empty() ? "" : StrCat(" with CA ", client_->config().ca_file), ")"));
      }
      if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) return s;
      last_failure = std::string(ToStd(s.message()));
    } else if (IsRetryableStatus(response->status)) {
      last_failure = StrCat("HTTP ", response->status, ": ", KubeStatusMessage(*response));
      if (auto retry_after = RetryAfter(*response)) wait = std::min(*retry_after, options_.max_retry_after);
    } else {
      return response;
    }
    if (attempt >= options_.max_attempts) {
      return absl::UnavailableError(StrCat("Kubernetes API ", request.method, " ", request.path, ": gave up after ",
                                           attempt, " attempts; last: ", last_failure));
    }
    GetLogger("controller")
        ->warn("kubernetes retry method={} path={} attempt={} wait_s={} reason=\"{}\"", request.method, request.path,
               attempt, absl::ToDoubleSeconds(wait), last_failure);
    Sleep(wait);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status KubernetesActuator::ErrorFor(const KubeRequest& request, const HttpClientResponse& response,
                                          const std::string& deployment) const {
  const std::string message = KubeStatusMessage(response);
  const std::string verb = request.method == "GET" ? "get" : "patch";
  switch (response.status) {
    case 401:
      return absl::UnauthenticatedError(
          StrCat("the Kubernetes API at ", client_->config().server, " refused ", client_->CredentialDescription(),
                 " (401 Unauthorized: ", message, "); the token is invalid, expired or revoked"));
    case 403:
      return absl::PermissionDeniedError(StrCat(
          "the Kubernetes API forbids `", verb, "` on deployments/scale of ", namespace_, "/", deployment, " (",
          message, "); grant the controller's service account a Role in namespace ", namespace_,
          " with apiGroups [\"apps\"], resources [\"deployments/scale\"], verbs [\"get\", \"patch\"], and a "
          "RoleBinding to it"));
    case 404:
      return absl::NotFoundError(StrCat("Deployment \"", deployment, "\" not found in namespace \"", namespace_,
                                        "\" (", message, "); check the Deployment name and namespace"));
    default:
      return absl::InternalError(StrCat("Kubernetes API ", request.method, " ", request.path, ": HTTP ",
                                        response.status, ": ", message));
  }
}

}  // namespace tandem::controller
